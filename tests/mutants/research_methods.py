"""Mutants and alternatives for chapter 17_research_methods."""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy import stats

from safety_roadmap.reference import research_methods as ref

# --------------------------------------------------------------------------- pre-registration

_GOOD = dict(ref.PREREGISTRATION)


def _without(field: str) -> dict:
    return {k: v for k, v in _GOOD.items() if k != field}


@dataclass
class PreregRecord:
    hypothesis: str
    metric: str
    prediction: str
    refuted_if: str
    refutation_threshold: float
    n_seeds: int
    confirmation_data: str


# --------------------------------------------------------------------------- seed_sweep


def sweep_sorted(experiment, seeds):
    return ref.seed_sweep(experiment, sorted(seeds))


def sweep_no_duplicate_check(experiment, seeds):
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds")
    out: dict[str, list[float]] = {}
    for seed in seeds:
        m = experiment(seed)
        if out and set(m) != set(out):
            raise ValueError("metrics differ")
        for k, v in m.items():
            out.setdefault(k, []).append(float(v))
    return {k: np.array(v) for k, v in out.items()}


def sweep_first_keys_only(experiment, seeds):
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError("bad seeds")
    runs = [dict(experiment(s)) for s in seeds]
    return {k: np.array([float(r[k]) for r in runs]) for k in runs[0]}


def sweep_keeps_dicts(experiment, seeds):
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError("bad seeds")
    runs = [experiment(s) for s in seeds]   # the dicts themselves, read at the end
    for r in runs[1:]:
        if set(r) != set(runs[0]):
            raise ValueError("metrics differ")
    return {k: np.array([float(r[k]) for r in runs]) for k in runs[0]}


def sweep_lists(experiment, seeds):
    return {k: v.tolist() for k, v in ref.seed_sweep(experiment, seeds).items()}


def sweep_twice(experiment, seeds):
    seeds = list(seeds)
    if seeds:
        experiment(seeds[0])   # a dry run "to learn the metric names"
    return ref.seed_sweep(experiment, seeds)


def sweep_key_error(experiment, seeds):
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError("bad seeds")
    out: dict[str, list[float]] = {}
    for i, seed in enumerate(seeds):
        m = experiment(seed)
        for k in (m if i == 0 else out):
            out.setdefault(k, []).append(float(m[k]))
    return {k: np.array(v) for k, v in out.items()}


def sweep_pandas_style(experiment, seeds):
    seeds = list(seeds)
    if len(seeds) == 0:
        raise ValueError("seed_sweep needs seeds")
    if len(np.unique(seeds)) < len(seeds):
        raise ValueError("repeated seed")
    rows, names = [], None
    for seed in seeds:
        m = experiment(seed)
        if names is None:
            names = sorted(m)
        elif sorted(m) != names:
            raise ValueError(f"seed {seed}: metrics {sorted(m)} != {names}")
        rows.append([float(m[k]) for k in names])
    table = np.array(rows, dtype=float)
    return {k: table[:, j].copy() for j, k in enumerate(names)}


# --------------------------------------------------------------------------- t_interval


def t_z(values, confidence=0.95):
    x = np.asarray(values, float)
    if x.size < 2:
        raise ValueError("two values")
    half = NormalDist().inv_cdf((1 + confidence) / 2) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def t_ddof0(values, confidence=0.95):
    x = np.asarray(values, float)
    if x.size < 2:
        raise ValueError("two values")
    half = stats.t.ppf((1 + confidence) / 2, x.size - 1) * x.std() / math.sqrt(x.size)
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def t_one_tail(values, confidence=0.95):
    x = np.asarray(values, float)
    if x.size < 2:
        raise ValueError("two values")
    half = stats.t.ppf(confidence, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def t_no_error_for_one(values, confidence=0.95):
    x = np.asarray(values, float)
    if x.size < 2:
        return float(x.mean()), float(x.mean()), float(x.mean())
    return ref.t_interval(x, confidence)


def t_fixed_95(values, confidence=0.95):
    return ref.t_interval(values, 0.95)


def t_manual(values, confidence=0.95):
    xs = [float(v) for v in np.asarray(values).reshape(-1)]
    n = len(xs)
    if n < 2:
        raise ValueError("need at least two values")
    mean = sum(xs) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in xs) / (n - 1))
    crit = stats.t(df=n - 1).isf((1 - confidence) / 2)
    return mean, mean - crit * sd / math.sqrt(n), mean + crit * sd / math.sqrt(n)


# --------------------------------------------------------------------------- bootstrap_ci


def boot_swapped(values, n_boot, confidence, generator):
    x = np.asarray(values, float)
    means = x[generator.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [confidence / 2, 1 - confidence / 2])
    return float(lo), float(hi)


def boot_permutation(values, n_boot, confidence, generator):
    x = np.asarray(values, float)
    means = np.array([x[generator.permutation(x.size)].mean() for _ in range(n_boot)])
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def boot_choice(values, n_boot, confidence, generator):
    x = np.asarray(values, float)
    means = np.array([generator.choice(x, size=x.size).mean() for _ in range(n_boot)])
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def boot_global(values, n_boot, confidence, generator):
    return ref.bootstrap_ci(values, n_boot, confidence, np.random.default_rng())


def boot_percent_method(values, n_boot, confidence, generator):
    x = np.asarray(values, float)
    means = x[generator.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2], method="nearest")
    return float(lo), float(hi)


def boot_loop(values, n_boot, confidence, generator):
    x = np.asarray(values, float)
    means = np.empty(n_boot)
    for b in range(n_boot):
        means[b] = x[generator.integers(0, x.size, size=x.size)].mean()
    return (float(np.percentile(means, 100 * (1 - confidence) / 2)),
            float(np.percentile(means, 100 * (1 + confidence) / 2)))


# --------------------------------------------------------------------------- random_direction_control


def _unit(a, axis=-1):
    return a / np.linalg.norm(a, axis=axis, keepdims=True)


def rdc_unnormalised(true_dirs, n_latents, n_draws, threshold, generator):
    true = _unit(np.asarray(true_dirs, float))
    rows = generator.standard_normal((n_draws, n_latents, true.shape[1]))
    return (np.einsum("td,nld->ntl", true, rows).max(axis=2) >= threshold).sum(axis=1)


def rdc_true_unnormalised(true_dirs, n_latents, n_draws, threshold, generator):
    true = np.asarray(true_dirs, float)
    rows = _unit(generator.standard_normal((n_draws, n_latents, true.shape[1])))
    return (np.einsum("td,nld->ntl", true, rows).max(axis=2) >= threshold).sum(axis=1)


def rdc_abs(true_dirs, n_latents, n_draws, threshold, generator):
    true = _unit(np.asarray(true_dirs, float))
    rows = _unit(generator.standard_normal((n_draws, n_latents, true.shape[1])))
    return (np.abs(np.einsum("td,nld->ntl", true, rows)).max(axis=2) >= threshold).sum(axis=1)


def rdc_per_latent(true_dirs, n_latents, n_draws, threshold, generator):
    true = _unit(np.asarray(true_dirs, float))
    rows = _unit(generator.standard_normal((n_draws, n_latents, true.shape[1])))
    return (np.einsum("td,nld->ntl", true, rows).max(axis=1) >= threshold).sum(axis=1)


def rdc_uniform(true_dirs, n_latents, n_draws, threshold, generator):
    true = _unit(np.asarray(true_dirs, float))
    rows = _unit(generator.uniform(-1, 1, (n_draws, n_latents, true.shape[1])))
    return (np.einsum("td,nld->ntl", true, rows).max(axis=2) >= threshold).sum(axis=1)


def rdc_loop(true_dirs, n_latents, n_draws, threshold, generator):
    true = np.asarray(true_dirs, float)
    true = true / np.linalg.norm(true, axis=1)[:, None]
    counts = []
    for _ in range(n_draws):
        rows = generator.standard_normal((n_latents, true.shape[1]))
        rows /= np.linalg.norm(rows, axis=1)[:, None]
        cos = true @ rows.T
        counts.append(int((cos.max(axis=1) >= threshold).sum()))
    return np.array(counts)


# --------------------------------------------------------------------------- permutation_pvalue


def _effect(x, mask):
    return float(x[mask].mean() - x[~mask].mean())


def perm_one_sided(values, labels, n_perm, generator):
    x, lab = np.asarray(values, float), np.asarray(labels).astype(bool)
    obs = _effect(x, lab)
    hits = sum(_effect(x, generator.permutation(lab)) >= obs - 1e-9 for _ in range(n_perm))
    return obs, (1 + hits) / (n_perm + 1)


def perm_no_plus_one(values, labels, n_perm, generator):
    x, lab = np.asarray(values, float), np.asarray(labels).astype(bool)
    obs = _effect(x, lab)
    hits = sum(abs(_effect(x, generator.permutation(lab))) >= abs(obs) - 1e-9 for _ in range(n_perm))
    return obs, hits / n_perm


def perm_strict(values, labels, n_perm, generator):
    x, lab = np.asarray(values, float), np.asarray(labels).astype(bool)
    obs = _effect(x, lab)
    hits = sum(abs(_effect(x, generator.permutation(lab))) > abs(obs) + 1e-9 for _ in range(n_perm))
    return obs, (1 + hits) / (n_perm + 1)


def perm_shuffles_values(values, labels, n_perm, generator):
    x, lab = np.asarray(values, float), np.asarray(labels).astype(bool)
    obs = _effect(x, lab)
    hits = sum(abs(_effect(generator.permutation(x), lab)) >= abs(obs) - 1e-9 for _ in range(n_perm))
    return obs, (1 + hits) / (n_perm + 1)


def perm_reversed(values, labels, n_perm, generator):
    e, p = ref.permutation_pvalue(values, labels, n_perm, generator)
    return -e, p


def perm_int_labels(values, labels, n_perm, generator):
    # uses the labels as given: with 0/1 integers, x[labels] indexes positions 0 and 1
    x, lab = np.asarray(values, float), np.asarray(labels)
    obs = float(x[lab].mean() - x[~lab.astype(bool)].mean())
    hits = 0
    for _ in range(n_perm):
        s = generator.permutation(lab)
        hits += abs(float(x[s].mean() - x[~s.astype(bool)].mean())) >= abs(obs) - 1e-9
    return obs, (1 + hits) / (n_perm + 1)


def perm_vectorised(values, labels, n_perm, generator):
    x, lab = np.asarray(values, float), np.asarray(labels).astype(bool)
    obs = x[lab].mean() - x[~lab].mean()
    shuffled = np.stack([generator.permutation(lab) for _ in range(n_perm)])   # [n_perm, n]
    on = (shuffled * x).sum(1) / shuffled.sum(1)
    off = (~shuffled * x).sum(1) / (~shuffled).sum(1)
    extreme = int((np.abs(on - off) >= abs(obs) - 1e-9).sum())
    return float(obs), (extreme + 1) / (n_perm + 1)


# --------------------------------------------------------------------------- holm and benjamini_hochberg


def holm_no_stop(p_values, alpha=0.05):
    p = np.asarray(p_values, float)
    rank = np.argsort(np.argsort(p, kind="stable"), kind="stable")
    return p <= alpha / (p.size - rank)


def holm_bonferroni(p_values, alpha=0.05):
    p = np.asarray(p_values, float)
    return p <= alpha / p.size


def holm_sorted_output(p_values, alpha=0.05):
    return ref.holm(np.sort(np.asarray(p_values, float)), alpha)


def holm_off_by_one(p_values, alpha=0.05):
    p = np.asarray(p_values, float)
    order = np.argsort(p)
    out = np.zeros(p.size, bool)
    for i, idx in enumerate(order):
        if p[idx] > alpha / (p.size - i + 1):
            break
        out[idx] = True
    return out


def holm_strict(p_values, alpha=0.05):
    p = np.asarray(p_values, float)
    order = np.argsort(p)
    out = np.zeros(p.size, bool)
    for i, idx in enumerate(order):
        if p[idx] >= alpha / (p.size - i):
            break
        out[idx] = True
    return out


def holm_adjusted(p_values, alpha=0.05):
    # adjusted p-values: running max of (m - i) p_(i), capped at 1, compared with alpha
    p = np.asarray(p_values, float).reshape(-1)
    order = np.argsort(p)
    adj = np.minimum(1.0, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
    out = np.empty(p.size, bool)
    out[order] = adj <= alpha
    return out


def bh_step_down(p_values, alpha=0.05):
    p = np.asarray(p_values, float)
    order = np.argsort(p)
    out = np.zeros(p.size, bool)
    for i, idx in enumerate(order):
        if p[idx] > alpha * (i + 1) / p.size:
            break
        out[idx] = True
    return out


def bh_independent(p_values, alpha=0.05):
    p = np.asarray(p_values, float)
    rank = np.argsort(np.argsort(p, kind="stable"), kind="stable") + 1
    return p <= alpha * rank / p.size


def bh_sorted_output(p_values, alpha=0.05):
    return ref.benjamini_hochberg(np.sort(np.asarray(p_values, float)), alpha)


def bh_zero_based(p_values, alpha=0.05):
    p = np.asarray(p_values, float)
    order = np.argsort(p)
    passes = p[order] <= alpha * np.arange(p.size) / p.size
    out = np.zeros(p.size, bool)
    if passes.any():
        out[order[: int(np.nonzero(passes)[0].max()) + 1]] = True
    return out


def bh_adjusted(p_values, alpha=0.05):
    p = np.asarray(p_values, float).reshape(-1)
    m = p.size
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m, bool)
    out[order] = adj <= alpha
    return out


MUTANTS = {
    "preregistration": [_without("refuted_if"), {**_GOOD, "refutation_threshold": "85 %"},
                        {**_GOOD, "n_seeds": 1}, {**_GOOD, "hypothesis": "TODO"}, {**_GOOD, "n_seeds": 5.0},
                        {**_GOOD, "refutation_threshold": True}],
    "seed_sweep": [sweep_sorted, sweep_no_duplicate_check, sweep_first_keys_only, sweep_keeps_dicts, sweep_lists,
                   sweep_twice, sweep_key_error],
    "t_interval": [t_z, t_ddof0, t_one_tail, t_no_error_for_one, t_fixed_95],
    "bootstrap_ci": [boot_swapped, boot_permutation, boot_global, boot_percent_method],
    "random_direction_control": [rdc_unnormalised, rdc_true_unnormalised, rdc_abs, rdc_per_latent, rdc_uniform],
    "permutation_pvalue": [perm_one_sided, perm_no_plus_one, perm_strict, perm_shuffles_values, perm_reversed,
                           perm_int_labels],
    "holm": [holm_no_stop, holm_bonferroni, holm_sorted_output, holm_off_by_one, holm_strict],
    "benjamini_hochberg": [bh_step_down, bh_independent, bh_sorted_output, bh_zero_based],
}

ALTERNATIVES = {
    "preregistration": [PreregRecord(**_GOOD), {**_GOOD, "refutation_threshold": 12, "n_seeds": np.int64(10)}],
    "seed_sweep": [sweep_pandas_style],
    "t_interval": [t_manual],
    "bootstrap_ci": [boot_loop, boot_choice],
    "random_direction_control": [rdc_loop],
    "permutation_pvalue": [perm_vectorised],
    "holm": [holm_adjusted],
    "benjamini_hochberg": [bh_adjusted],
}
