"""Offline data for the chapters: nothing here downloads anything.

`load_digits` serves the 8x8 handwritten digits that scikit-learn ships inside
its package (1,797 images), split and scaled the same way for every learner.
`load_mnist` / `load_mnist_idx` read real MNIST IDX files a learner already has
on disk (opt-in; they never download).
"""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

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


# --------------------------------------------------------------------------- real MNIST, from files on disk

# IDX type codes (third byte of the magic number) -> big-endian NumPy dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IDXFormatError(ValueError):
    """A file is not a well-formed IDX file (wrong magic number, truncated, unexpected shape)."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the format MNIST ships in), plain or gzip-compressed, into an array.

    The header is two zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian uint32; the data follows. Reads the local file only: nothing is ever downloaded.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file. load_mnist_idx reads MNIST files you already have on disk "
            "(e.g. train-images-idx3-ubyte.gz); it never downloads them.")
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXFormatError(f"{path}: looks gzip-compressed but cannot be decompressed ({exc}): "
                                 "the download was probably cut short") from None
    if len(raw) < 4:
        raise IDXFormatError(f"{path}: only {len(raw)} bytes, too short for an IDX header")
    zero, code, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise IDXFormatError(
            f"{path}: not an IDX file (magic number 0x{raw[:4].hex()}; expected 0x0000TTNN with a type code "
            f"TT in {sorted(hex(c) for c in _IDX_DTYPES)} and NN dimensions, e.g. 0x00000803 for MNIST images)")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IDXFormatError(f"{path}: truncated header: {ndim} dimensions need {header_len} bytes, file has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header_len
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise IDXFormatError(f"{path}: {what}: header says shape {shape} of {dtype.name} ({expected} bytes of data), "
                             f"found {found} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape).astype(dtype.newbyteorder("="))


def load_mnist_idx(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-style images and labels from two local IDX files (plain or .gz).

    Returns x [n, rows * cols] float32 scaled to [0, 1] (like `load_digits`) and y [n] int64.
    Opt-in: for learners who have downloaded MNIST themselves; nothing here downloads.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        hint = " (did you swap the images and labels files?)" if images.ndim == 1 and labels.ndim == 3 else ""
        raise IDXFormatError(f"{images_path}: expected images of shape [n, rows, cols], got {images.shape}{hint}")
    if labels.ndim != 1:
        raise IDXFormatError(f"{labels_path}: expected labels of shape [n], got {labels.shape}")
    if len(images) != len(labels):
        raise IDXFormatError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    x = images.reshape(len(images), -1).astype(np.float32)
    if images.dtype == np.uint8:
        x /= 255.0
    return x, labels.astype(np.int64)


def load_mnist(directory: str | Path) -> Split:
    """The standard MNIST train/test files from `directory` (each may end in .gz) as a `Split`.

    Expects train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    t10k-labels-idx1-ubyte. Images become rows of 784 floats in [0, 1].
    """
    directory = Path(directory)

    def find(name: str) -> Path:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.exists():
                return candidate
        raise FileNotFoundError(f"{directory}: neither {name} nor {name}.gz is there. load_mnist reads MNIST "
                                "files you already have on disk; it never downloads them.")

    x_train, y_train = load_mnist_idx(*(find(n) for n in MNIST_FILES["train"]))
    x_test, y_test = load_mnist_idx(*(find(n) for n in MNIST_FILES["test"]))
    return Split(x_train, y_train, x_test, y_test)
