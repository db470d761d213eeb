"""Reference answers for chapter 18 (the capstone), and the experiment its notebook runs end to end.

The reference replication is the option "sae_density" (toys.capstone.OPTIONS): SAEs trained on synthetic
data with known features, at growing feature density. A results table is a list of rows
`{"condition": c, "seed": s, "metric": m}` (long layout), one per (condition, seed).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..toys.capstone import METRIC, Option, replicates, same_condition
from .superposition_and_saes import SparseAutoencoder, feature_recovery, train_sae

# The SAE experiment's sizes at the notebook's default (FULL = False) setting.
N_FEATURES, D_MODEL, N_LATENTS = 12, 6, 24     # 12 known directions squeezed into 6 dimensions; 2x latents
N_SAMPLES, SAE_STEPS, BATCH, LR, L1 = 2000, 100, 64, 2e-2, 0.1


def feature_data(density: float, seed: int, n: int = N_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth for one trial: unit feature directions [N_FEATURES, D_MODEL] and n activations
    [n, D_MODEL], each a sum of the directions of the features that fire (probability `density`
    each, magnitude uniform in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(N_FEATURES, D_MODEL, generator=g)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    on = torch.rand(n, N_FEATURES, generator=g) < density
    magnitude = torch.rand(n, N_FEATURES, generator=g)
    return dirs, (on * magnitude) @ dirs


@replicates("sae_density")
def run_trial(condition: float, seed: int) -> float:
    """One SAE trained on data of feature density `condition`: the mean, over true features, of the best
    cosine similarity with any decoder row (MMCS). Everything random comes from `seed`."""
    dirs, acts = feature_data(float(condition), seed)
    sae = SparseAutoencoder(D_MODEL, N_LATENTS, seed=seed)
    train_sae(sae, acts, L1, SAE_STEPS, batch_size=BATCH, lr=LR, seed=seed)
    with torch.no_grad():
        best, _ = feature_recovery(sae.W_dec, dirs)
    return float(best.mean())


def run_sweep(trial: Callable[[Any, int], float], conditions: Sequence[Any], seeds: Sequence[int]
              ) -> list[dict[str, Any]]:
    """Call `trial(condition, seed)` once for every condition and seed. -> rows {condition, seed, metric}."""
    return [{"condition": c, "seed": s, METRIC: float(trial(c, s))} for s in seeds for c in conditions]


def values(results: Sequence[dict[str, Any]], condition: Any) -> dict[int, float]:
    """seed -> metric of the rows at `condition`."""
    return {row["seed"]: float(row[METRIC]) for row in results if same_condition(row["condition"], condition)}


def state_claim(results: Sequence[dict[str, Any]], baseline: Any, treatment: Any) -> dict[str, Any]:
    """The claim in the capstone's pre-specified form, computed from a long results table.

    Pairs the two conditions within each seed that has both: effect = mean over those seeds of
    metric(treatment) - metric(baseline); direction = "increases" if every paired difference is > 0,
    "decreases" if every one is < 0, else "mixed"; seeds_agreeing = how many differences share the
    sign of the effect (0 when the effect is 0).
    """
    base, treat = values(results, baseline), values(results, treatment)
    paired = [treat[s] - base[s] for s in base if s in treat]
    effect = sum(paired) / len(paired) if paired else float("nan")
    if paired and all(d > 0 for d in paired):
        direction = "increases"
    elif paired and all(d < 0 for d in paired):
        direction = "decreases"
    else:
        direction = "mixed"
    agreeing = sum(1 for d in paired if (d > 0 and effect > 0) or (d < 0 and effect < 0))
    return {"baseline": baseline, "treatment": treatment, "n_seeds": len(paired), "effect": effect,
            "direction": direction, "seeds_agreeing": agreeing}


def plot_results(results: Sequence[dict[str, Any]], option: Option) -> Any:
    """Every seed's value as a point and the mean per condition as a line, the conditions evenly spaced
    in the order they first appear (the options' numeric conditions grow roughly geometrically, so even
    spacing reads like a log axis), labelled from `option`. -> a matplotlib Figure."""
    import matplotlib.pyplot as plt

    conditions = list(dict.fromkeys(row["condition"] for row in results))
    fig, ax = plt.subplots()
    means = []
    for x, c in enumerate(conditions):
        ys = list(values(results, c).values())
        ax.scatter([x] * len(ys), ys, color="tab:blue", alpha=0.6)
        means.append(sum(ys) / len(ys))
    ax.plot(range(len(conditions)), means, color="black", label="mean over seeds")
    ax.set_xticks(range(len(conditions)), [str(c) for c in conditions])
    ax.set_xlabel(option.condition_name)
    ax.set_ylabel(option.metric)
    ax.set_title(f"{option.title}?\nEach dot is one seed; the line is their mean")
    return fig
