"""Reference solutions for chapter 17 (research methods: pre-registration, seed sweeps, intervals,
controls and multiple comparisons).

The experiments the chapter runs (the toy model of superposition and the SAEs trained on it, from
chapter 14) live in `safety_roadmap.toys.research_methods`; this module holds the exercises' answers.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import stats

PREREGISTRATION_FIELDS = ("hypothesis", "metric", "prediction", "refuted_if", "refutation_threshold", "n_seeds",
                          "confirmation_data")

# The chapter's model pre-registration (the check accepts any that is complete; instructors grade the content).
PREREGISTRATION = {
    "hypothesis": "An SAE with 20 latents and L1 coefficient 0.3 recovers the toy model's features reliably: "
                  "not only for one lucky initialisation, and far better than random directions.",
    "metric": "recovered features: true feature directions with cosine >= 0.9 to some decoder row, out of the "
              "represented ones; measured per SAE seed, same toy model and training data.",
    "prediction": "every one of 5 SAE seeds recovers at least 85 % of the represented features, and the mean "
                  "exceeds the random-decoder control by more than 5 features (95 % t-interval above 5).",
    "refuted_if": "any seed recovers less than 85 % of the represented features, or the t-interval of "
                  "(SAE - random control) reaches below 5 features.",
    "refutation_threshold": 0.85,
    "n_seeds": 5,
    "confirmation_data": "seeds 0-4 are the confirmation run, decided before running; the latent scan selects "
                         "latents on one batch of inputs and confirms them on a fresh batch.",
}


# --------------------------------------------------------------------------- the seed-sweep harness

def seed_sweep(experiment: Callable[[int], Mapping[str, float]], seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """Run `experiment(seed)` once per seed, in the order given, and stack each metric across seeds.

    -> {metric: float array [len(seeds)]}, entry i from seeds[i]. Raises ValueError for no seeds, a repeated
    seed, or a run whose metric names differ from the first run's.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seed_sweep needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"repeated seeds in {seeds}: a repeated run is not a replication")
    results: dict[str, list[float]] = {}
    for i, seed in enumerate(seeds):
        metrics = experiment(seed)
        if i == 0:
            results = {name: [] for name in metrics}
        elif set(metrics) != set(results):
            raise ValueError(f"seed {seed} returned metrics {sorted(metrics)}, the first seed {sorted(results)}")
        for name, value in metrics.items():
            results[name].append(float(value))
    return {name: np.array(values, dtype=float) for name, values in results.items()}


# --------------------------------------------------------------------------- intervals

def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t-based confidence interval of the mean of `values` (at least 2 of them)."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        raise ValueError("a t-interval needs at least two values")
    mean = float(x.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def bootstrap_ci(values: np.ndarray, n_boot: int, confidence: float, generator: np.random.Generator
                 ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample with replacement n_boot times (one index array
    generator.integers(0, n, size=(n_boot, n))), take each resample's mean, return the (1-c)/2 and (1+c)/2
    quantiles (np.quantile's default method)."""
    x = np.asarray(values, dtype=float)
    index = generator.integers(0, x.size, size=(n_boot, x.size))
    means = x[index].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


# --------------------------------------------------------------------------- controls

def random_direction_control(true_dirs: np.ndarray, n_latents: int, n_draws: int, threshold: float,
                             generator: np.random.Generator) -> np.ndarray:
    """How many true directions a *random* decoder "recovers": for each of n_draws decoders of n_latents
    Gaussian rows (drawn as one array generator.standard_normal((n_draws, n_latents, d))), the number of
    true directions whose best cosine similarity with a row is >= threshold. -> int array [n_draws]"""
    true = np.asarray(true_dirs, dtype=float)
    true = true / np.linalg.norm(true, axis=1, keepdims=True)
    rows = generator.standard_normal((n_draws, n_latents, true.shape[1]))
    rows = rows / np.linalg.norm(rows, axis=-1, keepdims=True)
    best = np.einsum("td,nld->ntl", true, rows).max(axis=-1)       # [n_draws, n_true]
    return (best >= threshold).sum(axis=1)


def permutation_pvalue(values: np.ndarray, labels: np.ndarray, n_perm: int, generator: np.random.Generator
                       ) -> tuple[float, float]:
    """(effect, p): effect = mean of values where labels is True minus mean where False; p = two-sided
    permutation p-value (1 + #{|shuffled effect| >= |effect| - 1e-9}) / (n_perm + 1), with each shuffle
    generator.permutation(labels)."""
    x = np.asarray(values, dtype=float)
    lab = np.asarray(labels).astype(bool)

    def effect_of(mask: np.ndarray) -> float:
        return float(x[mask].mean() - x[~mask].mean())

    observed = effect_of(lab)
    extreme = sum(abs(effect_of(generator.permutation(lab))) >= abs(observed) - 1e-9 for _ in range(n_perm))
    return observed, (1 + extreme) / (n_perm + 1)


# --------------------------------------------------------------------------- multiple comparisons

def holm(p_values: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Holm's step-down correction: which hypotheses to reject, controlling the family-wise error rate.
    Sorted ascending, p_(i) (i = 0, 1, ...) is rejected while p_(i) <= alpha / (m - i); stop at the first
    that is not. -> bool array in the input's order."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    reject = np.zeros(p.size, dtype=bool)
    for i, idx in enumerate(order):
        if p[idx] > alpha / (p.size - i):
            break
        reject[idx] = True
    return reject


def benjamini_hochberg(p_values: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Benjamini-Hochberg step-up: controls the false discovery rate. With p sorted ascending, find the
    largest k (1-based) with p_(k) <= k * alpha / m and reject the k smallest. -> bool array, input order."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    passes = p[order] <= alpha * np.arange(1, p.size + 1) / p.size
    reject = np.zeros(p.size, dtype=bool)
    if passes.any():
        k = int(np.flatnonzero(passes).max()) + 1
        reject[order[:k]] = True
    return reject
