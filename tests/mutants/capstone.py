"""Mutants and alternatives for chapter 18_capstone.

Trials are sized to fail (or pass) fast: the mutants train tiny SAEs, and the other-option alternative
(sandbagging) caches its one trained model per seed, as a learner's trial may.
"""
from __future__ import annotations

import copy
import functools

import matplotlib.pyplot as plt
import numpy as np
import torch

from safety_roadmap.reference import capstone as ref
from safety_roadmap.reference.evals_and_control import noise_sweep
from safety_roadmap.reference.superposition_and_saes import SparseAutoencoder, feature_recovery, train_sae
from safety_roadmap.toys import evals_and_control as adder_toys
from safety_roadmap.toys.capstone import OPTIONS, replicates, same_condition

# --------------------------------------------------------------------------- run_trial


def _mmcs(density, seed, steps=30, global_rng=False):
    if global_rng:
        dirs = torch.randn(ref.N_FEATURES, ref.D_MODEL)
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
        acts = ((torch.rand(ref.N_SAMPLES, ref.N_FEATURES) < density) * torch.rand(ref.N_SAMPLES, ref.N_FEATURES)) @ dirs
    else:
        dirs, acts = ref.feature_data(float(density), seed)
    sae = SparseAutoencoder(ref.D_MODEL, ref.N_LATENTS, seed=seed)
    train_sae(sae, acts, ref.L1, steps, batch_size=ref.BATCH, lr=ref.LR, seed=seed)
    return float(feature_recovery(sae.W_dec.detach(), dirs)[0].mean())


def trial_not_marked(condition, seed):
    return _mmcs(condition, seed)


@replicates("sae_density")
def trial_global_rng(condition, seed):
    # seeds the SAE but draws the data from the global generator: another run, another table
    return _mmcs(condition, seed, global_rng=True)


@replicates("sae_density")
def trial_constant(condition, seed):
    return 0.93


@replicates("sae_density")
def trial_ignores_condition(condition, seed):
    return _mmcs(0.1, seed)


@replicates("sae_density")
def trial_fixed_seed(condition, seed):
    return _mmcs(condition, 0)


@replicates("sae_density")
def trial_percent(condition, seed):
    return 100 * _mmcs(condition, seed)


@replicates("sae_density")
def trial_numpy_data(condition, seed):
    """Another valid SAE trial: NumPy draws the data, the SAE is wider and trains a little longer."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(ref.N_FEATURES, ref.D_MODEL))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    x = (rng.random((600, ref.N_FEATURES)) < condition) * rng.random((600, ref.N_FEATURES))
    acts = torch.tensor(x @ dirs, dtype=torch.float32)
    sae = SparseAutoencoder(ref.D_MODEL, 32, seed=seed + 100)
    train_sae(sae, acts, 0.1, 25, batch_size=128, lr=2e-2, seed=seed)
    best, _ = feature_recovery(sae.W_dec.detach(), torch.tensor(dirs, dtype=torch.float32))
    return best.mean().item()


@functools.lru_cache(maxsize=None)
def _sandbagger(seed):
    return adder_toys.train_adder(200, seed=seed, sandbag=True, n_train=3000)


@replicates("sandbag_noise")
def trial_sandbag_noise(condition, seed):
    """Another option: a sandbagger's accuracy on marked carry items under weight noise (8 noisy copies)."""
    rng = np.random.default_rng(1000 + seed)
    a, b = rng.integers(0, 100, 3000), rng.integers(0, 100, 3000)
    carry = adder_toys.has_carry(a, b)
    a, b = a[carry][:300], b[carry][:300]
    y = torch.as_tensor(adder_toys.tens_digit(a, b))
    gen = torch.Generator().manual_seed(seed)
    return float(noise_sweep(_sandbagger(seed), adder_toys.encode(a, b, marker=True), y, [condition], 8, gen)[0])


# --------------------------------------------------------------------------- run_sweep


def sweep_one_seed(trial, conditions, seeds):
    return [{"condition": c, "seed": seeds[0], "metric": trial(c, seeds[0])} for c in conditions]


def sweep_missing_last(trial, conditions, seeds):
    return [{"condition": c, "seed": s, "metric": trial(c, s)} for s in seeds for c in list(conditions)[:-1]]


def sweep_constant(trial, conditions, seeds):
    value = trial(conditions[0], seeds[0])
    return [{"condition": c, "seed": s, "metric": value} for s in seeds for c in conditions]


def sweep_swapped(trial, conditions, seeds):
    return [{"condition": c, "seed": s, "metric": trial(s, c)} for s in seeds for c in conditions]


def sweep_first_seed_reused(trial, conditions, seeds):
    first = list(seeds)[0]
    return [{"condition": c, "seed": s, "metric": trial(c, first)} for s in seeds for c in conditions]


def sweep_runs_twice(trial, conditions, seeds):
    rows = [{"condition": c, "seed": s, "metric": trial(c, s)} for s in seeds for c in conditions]
    trial(conditions[0], list(seeds)[0])     # "just checking": a second, wasted experiment
    return rows


def sweep_wide(trial, conditions, seeds):
    table = {}
    for c in conditions:
        table[c] = {s: trial(c, s) for s in seeds}
    return table


def sweep_condition_major(trial, conditions, seeds):
    import time
    rows = []
    for c in conditions:
        for s in seeds:
            start = time.perf_counter()
            value = trial(c, s)
            rows.append({"seed": int(s), "condition": c, "metric": value, "seconds": time.perf_counter() - start})
    return rows


# --------------------------------------------------------------------------- results_table (the learner's data)

_rng = np.random.default_rng(18)
_SAE = OPTIONS["sae_density"]
_GOOD = [{"condition": c, "seed": s, "metric": float(0.94 - 0.12 * c + _rng.normal(0, 0.01))}
         for s in range(3) for c in _SAE.conditions]
ONE_SEED = [r for r in _GOOD if r["seed"] == 0]
MISSING_CONDITION = [r for r in _GOOD if r["condition"] != 0.4]
CONSTANT = [dict(r, metric=0.93) for r in _GOOD]
SEED_COPIES = [dict(r, metric=next(g["metric"] for g in _GOOD if g["seed"] == 0 and g["condition"] == r["condition"]))
               for r in _GOOD]
PERCENT = [dict(r, metric=100 * r["metric"]) for r in _GOOD]
INCOMPLETE_GRID = [r for r in _GOOD if not (r["seed"] == 2 and r["condition"] == 0.1)]
WIDE = {c: {s: r["metric"] for s in range(3) for r in _GOOD if r["seed"] == s and r["condition"] == c}
        for c in _SAE.conditions}
_SANDBAG = OPTIONS["sandbag_noise"]
OTHER_OPTION = [{"condition": c, "seed": s, "metric": float(np.clip(0.02 + 0.8 * c + _rng.normal(0, 0.03), 0, 1)),
                 "n_items": 300} for c in _SANDBAG.conditions for s in (5, 6, 7, 8)]


# --------------------------------------------------------------------------- plot_results


def _points_and_means(results, option, ax, means=True):
    conditions = list(dict.fromkeys(r["condition"] for r in results))
    for x, c in enumerate(conditions):
        ys = [r["metric"] for r in results if r["condition"] == c]
        ax.scatter([x] * len(ys), ys)
    if means:
        ax.plot(range(len(conditions)),
                [np.mean([r["metric"] for r in results if r["condition"] == c]) for c in conditions])
    return conditions


def plot_no_labels(results, option):
    fig, ax = plt.subplots()
    _points_and_means(results, option, ax)
    ax.set_title(option.title)
    return fig


def plot_no_title(results, option):
    fig, ax = plt.subplots()
    _points_and_means(results, option, ax)
    ax.set_xlabel(option.condition_name)
    ax.set_ylabel(option.metric)
    return fig


def plot_seeds_only(results, option):
    fig, ax = plt.subplots()
    _points_and_means(results, option, ax, means=False)
    ax.set_xlabel(option.condition_name)
    ax.set_ylabel(option.metric)
    ax.set_title("every seed")
    return fig


def plot_means_only(results, option):
    conditions = list(dict.fromkeys(r["condition"] for r in results))
    means = [np.mean([r["metric"] for r in results if r["condition"] == c]) for c in conditions]
    fig, ax = plt.subplots()
    ax.plot(range(len(conditions)), means, "o-")
    ax.set_xlabel(option.condition_name)
    ax.set_ylabel(option.metric)
    ax.set_title("mean over seeds")
    return fig


def plot_first_seed(results, option):
    seed = results[0]["seed"]
    rows = [r for r in results if r["seed"] == seed]
    fig, ax = plt.subplots()
    ax.plot([str(r["condition"]) for r in rows], [r["metric"] for r in rows], "o-")
    ax.set_xlabel(option.condition_name)
    ax.set_ylabel(option.metric)
    ax.set_title(f"seed {seed}")
    return fig


def plot_errorbars(results, option):
    """Another valid figure: one line per seed, plus the mean with a standard-deviation bar."""
    conditions = list(dict.fromkeys(r["condition"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    grid = np.array([[next(r["metric"] for r in results if r["seed"] == s and same_condition(r["condition"], c))
                      for c in conditions] for s in seeds])
    fig, ax = plt.subplots()
    for s, row in zip(seeds, grid):
        ax.plot(range(len(conditions)), row, color="0.7", lw=1)
    ax.errorbar(range(len(conditions)), grid.mean(0), yerr=grid.std(0), fmt="o", color="black")
    ax.set_xticks(range(len(conditions)), [str(c) for c in conditions])
    ax.set_xlabel(option.condition_name)
    ax.set_ylabel(option.metric)
    fig.suptitle(f"{len(seeds)} seeds per condition")
    return fig


# --------------------------------------------------------------------------- state_claim


def _paired(results, baseline, treatment):
    base = {r["seed"]: r["metric"] for r in results if same_condition(r["condition"], baseline)}
    treat = {r["seed"]: r["metric"] for r in results if same_condition(r["condition"], treatment)}
    return [treat[s] - base[s] for s in base if s in treat]


def _form(baseline, treatment, diffs, effect, direction):
    agree = sum(1 for d in diffs if effect and d * effect > 0)
    return {"baseline": baseline, "treatment": treatment, "n_seeds": len(diffs), "effect": effect,
            "direction": direction, "seeds_agreeing": agree}


def _direction(diffs):
    return "increases" if all(d > 0 for d in diffs) else "decreases" if all(d < 0 for d in diffs) else "mixed"


def claim_unpaired(results, baseline, treatment):
    base = [r["metric"] for r in results if same_condition(r["condition"], baseline)]
    treat = [r["metric"] for r in results if same_condition(r["condition"], treatment)]
    diffs = _paired(results, baseline, treatment)
    return _form(baseline, treatment, diffs, float(np.mean(treat) - np.mean(base)), _direction(diffs))


def claim_flipped(results, baseline, treatment):
    diffs = [-d for d in _paired(results, baseline, treatment)]
    return _form(baseline, treatment, diffs, float(np.mean(diffs)), _direction(diffs))


def claim_direction_from_mean(results, baseline, treatment):
    diffs = _paired(results, baseline, treatment)
    effect = float(np.mean(diffs))
    return _form(baseline, treatment, diffs, effect, "increases" if effect > 0 else "decreases")


def claim_exact_match(results, baseline, treatment):
    base = {r["seed"]: r["metric"] for r in results if r["condition"] == baseline}
    treat = {r["seed"]: r["metric"] for r in results if r["condition"] == treatment}
    diffs = [treat[s] - base[s] for s in base if s in treat]
    effect = float(np.mean(diffs)) if diffs else float("nan")
    return _form(baseline, treatment, diffs, effect, _direction(diffs) if diffs else "mixed")


def claim_first_seed_agrees(results, baseline, treatment):
    diffs = _paired(results, baseline, treatment)
    effect = float(np.mean(diffs))
    out = _form(baseline, treatment, diffs, effect, _direction(diffs))
    out["seeds_agreeing"] = sum(1 for d in diffs if d * diffs[0] > 0)    # agreement with the first seed
    return out


def claim_numpy(results, baseline, treatment):
    """Another valid version: arrays aligned on sorted seeds."""
    rows = copy.deepcopy(list(results))
    seeds = sorted({r["seed"] for r in rows})
    def column(cond):
        return {r["seed"]: r["metric"] for r in rows if np.isclose(float(r["condition"]), float(cond))} \
            if not isinstance(cond, str) else {r["seed"]: r["metric"] for r in rows if r["condition"] == cond}
    b, t = column(baseline), column(treatment)
    both = [s for s in seeds if s in b and s in t]
    d = np.array([t[s] - b[s] for s in both])
    effect = float(d.mean())
    direction = "increases" if (d > 0).all() else "decreases" if (d < 0).all() else "mixed"
    return {"direction": direction, "effect": np.float64(effect), "n_seeds": len(both),
            "seeds_agreeing": int((np.sign(d) == np.sign(effect)).sum()) if effect != 0 else 0,
            "baseline": baseline, "treatment": treatment, "note": "paired by seed"}


MUTANTS = {
    "run_trial": [trial_not_marked, trial_global_rng, trial_constant, trial_ignores_condition, trial_fixed_seed,
                  trial_percent],
    "run_sweep": [sweep_one_seed, sweep_missing_last, sweep_constant, sweep_swapped, sweep_first_seed_reused,
                  sweep_runs_twice],
    "results_table": [ONE_SEED, MISSING_CONDITION, CONSTANT, SEED_COPIES, PERCENT, INCOMPLETE_GRID],
    "plot_results": [plot_no_labels, plot_no_title, plot_means_only, plot_first_seed, plot_seeds_only],
    "state_claim": [claim_unpaired, claim_flipped, claim_direction_from_mean, claim_exact_match,
                    claim_first_seed_agrees],
}

ALTERNATIVES = {
    "run_trial": [trial_numpy_data, trial_sandbag_noise],
    "run_sweep": [sweep_wide, sweep_condition_major],
    "results_table": [WIDE, OTHER_OPTION],
    "plot_results": [plot_errorbars],
    "state_claim": [claim_numpy],
}
