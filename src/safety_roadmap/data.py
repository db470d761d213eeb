"""Offline data for the chapters: nothing here downloads anything.

`load_digits` serves the 8x8 handwritten digits that scikit-learn ships inside
its package (1,797 images), split and scaled the same way for every learner.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Images as float rows in [0, 1] and integer labels, train and test."""
    x_train: np.ndarray  # [n_train, 64] float32
    y_train: np.ndarray  # [n_train] int64
    x_test: np.ndarray   # [n_test, 64] float32
    y_test: np.ndarray   # [n_test] int64

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Split:
    """The scikit-learn 8x8 digits, pixels scaled to [0, 1], a fixed stratified-enough shuffle split.

    1,797 images of 64 pixels, 10 classes. The same `seed` gives the same split everywhere.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    from sklearn.datasets import load_digits as _sk_digits  # imported here: sklearn is slow to import

    bunch = _sk_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Split(x[train], y[train], x[test], y[test])
