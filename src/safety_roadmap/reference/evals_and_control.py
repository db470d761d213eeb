"""Reference solutions for chapter 16 (evaluations, sandbagging and AI control).

The toy worlds the chapter runs on (the addition task and its models, the gridworld, the control
game's fixed parts) live in `safety_roadmap.evals_toys`; this module holds the exercises' answers.
"""
from __future__ import annotations

import copy
import math
from statistics import NormalDist
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..evals_toys import GRID, accuracy, features, step, usefulness

# --------------------------------------------------------------------------- exercises: error bars

def iid_standard_error(scores: np.ndarray) -> float:
    """Standard error of the mean score, treating items as independent: std (ddof=1) / sqrt(n)."""
    scores = np.asarray(scores, dtype=float)
    return float(scores.std(ddof=1) / math.sqrt(scores.size))


def clustered_standard_error(scores: np.ndarray, clusters: np.ndarray) -> float:
    """Cluster-robust standard error of the mean: sqrt(sum over clusters of (sum of the cluster's
    deviations from the overall mean)^2) / n."""
    scores = np.asarray(scores, dtype=float)
    deviations = scores - scores.mean()
    _, index = np.unique(np.asarray(clusters), return_inverse=True)
    per_cluster = np.bincount(index.reshape(-1), weights=deviations)
    return float(math.sqrt((per_cluster ** 2).sum()) / scores.size)


def paired_difference(scores_a: np.ndarray, scores_b: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """Mean of A minus B on the same items, and its clustered standard error (of the differences)."""
    diff = np.asarray(scores_a, dtype=float) - np.asarray(scores_b, dtype=float)
    return float(diff.mean()), clustered_standard_error(diff, clusters)


def items_needed(delta: float, sd: float, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True) -> int:
    """Items needed to detect a true mean difference `delta` when per-item differences have standard
    deviation `sd` (normal approximation): ceil(((z_alpha + z_power) * sd / delta)^2)."""
    z = NormalDist()
    z_alpha = z.inv_cdf(1 - alpha / 2) if two_sided else z.inv_cdf(1 - alpha)
    return math.ceil(((z_alpha + z.inv_cdf(power)) * sd / abs(delta)) ** 2)


def contamination_z(scores_original: np.ndarray, scores_paraphrase: np.ndarray, clusters: np.ndarray) -> float:
    """How many standard errors the original items beat their paraphrases by (paired, clustered)."""
    diff, se = paired_difference(scores_original, scores_paraphrase, clusters)
    return diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))


# --------------------------------------------------------------------------- exercises: sandbagging

def finetune_recovery(model: nn.Module, x_few: torch.Tensor, y_few: torch.Tensor, x_eval: torch.Tensor,
                      y_eval: torch.Tensor, steps: int = 30, lr: float = 1e-3) -> tuple[float, float]:
    """Accuracy on (x_eval, y_eval) before and after fine-tuning a *copy* of `model` on the few
    examples (full batch, Adam(lr), cross-entropy, `steps` steps). The model passed in is untouched."""
    before = accuracy(model, x_eval, y_eval)
    tuned = copy.deepcopy(model).train()
    opt = torch.optim.Adam(tuned.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(tuned(x_few), y_few)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, accuracy(tuned.eval(), x_eval, y_eval)


def noise_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scales: Sequence[float], n_draws: int,
                generator: torch.Generator) -> np.ndarray:
    """Mean accuracy over `n_draws` noisy copies of `model`, for each noise scale. For each scale, for
    each draw, for each parameter in `model.parameters()` order: add scale * randn(shape, generator)."""
    out = []
    for scale in scales:
        total = 0.0
        for _ in range(n_draws):
            noisy = copy.deepcopy(model)
            with torch.no_grad():
                for p in noisy.parameters():
                    p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
            total += accuracy(noisy, x, y)
        out.append(total / n_draws)
    return np.array(out)


# --------------------------------------------------------------------------- goal misgeneralisation

def goal_reach_rate(W: np.ndarray, goal: tuple[int, int], max_steps: int = 20) -> float:
    """Share of the grid's cells from which the greedy agent (argmax of W @ features, the first
    action on ties) reaches `goal` within `max_steps` moves. Starting on the goal counts as reached."""
    reached = 0
    for x in range(GRID):
        for y in range(GRID):
            pos = (x, y)
            for _ in range(max_steps):
                if pos == tuple(goal):
                    break
                pos = step(pos, int((W @ features(pos, goal)).argmax()))
            reached += pos == tuple(goal)
    return reached / (GRID * GRID)


# --------------------------------------------------------------------------- AI control

def outcome_probabilities(audit_threshold: float, defer_threshold: float, separation: float) -> tuple[float, float, float]:
    """For one backdoored output: P(audited), P(deferred to the trusted model), P(it gets through).
    Audit comes first: a score above the audit threshold is audited even if it is above the defer one."""
    z = NormalDist()
    audited = 1 - z.cdf(audit_threshold - separation)
    above_defer = 1 - z.cdf(min(defer_threshold, audit_threshold) - separation)
    deferred = above_defer - audited
    return audited, deferred, 1 - audited - deferred


def deployment_safety(p_attack: float, n_tasks: int, audit_threshold: float, defer_threshold: float,
                      separation: float) -> float:
    """P(the blue team wins a deployment of n_tasks): no backdoor gets through before one is caught.
    Per task: no attack (1 - p), attack caught (p * audited: blue wins, the game ends), attack
    deferred (p * deferred: harmless, go on), attack through (p * through: red wins, the game ends)."""
    audited, deferred, through = outcome_probabilities(audit_threshold, defer_threshold, separation)
    go_on = (1 - p_attack) + p_attack * deferred
    red_now = p_attack * through
    if go_on >= 1.0:
        return 1.0
    red = red_now * (1 - go_on ** n_tasks) / (1 - go_on)
    return 1.0 - red


def simulate_safety(p_attack: float, n_tasks: int, audit_threshold: float, defer_threshold: float,
                    separation: float, n_runs: int, generator: np.random.Generator) -> float:
    """Monte Carlo estimate of deployment_safety: `n_runs` deployments; in each, per task draw
    attack ~ Bernoulli(p) then score ~ N(separation if attack else 0, 1) from `generator`
    (two arrays of shape [n_runs, n_tasks], attacks first)."""
    attacks = generator.random((n_runs, n_tasks)) < p_attack
    scores = generator.standard_normal((n_runs, n_tasks)) + separation * attacks
    caught = attacks & (scores > audit_threshold)
    through = attacks & (scores <= min(defer_threshold, audit_threshold))
    first_caught = np.where(caught.any(1), caught.argmax(1), n_tasks)
    first_through = np.where(through.any(1), through.argmax(1), n_tasks)
    return float((first_through >= first_caught).mean())


def worst_case_safety(n_tasks: int, audit_threshold: float, defer_threshold: float, separation: float,
                      p_grid: Sequence[float]) -> tuple[float, float]:
    """The red team's best response: (lowest safety over the attack rates in p_grid, that rate)."""
    values = [deployment_safety(p, n_tasks, audit_threshold, defer_threshold, separation) for p in p_grid]
    i = int(np.argmin(values))
    return float(values[i]), float(p_grid[i])


def safety_usefulness_frontier(defer_thresholds: Sequence[float], n_tasks: int, audit_threshold: float,
                               separation: float, trusted_quality: float,
                               p_grid: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """For each defer threshold: the usefulness kept, and the safety against the red team's best
    response (the lowest deployment safety over the attack rates in p_grid)."""
    use = np.array([usefulness(audit_threshold, td, trusted_quality) for td in defer_thresholds])
    safe = np.array([worst_case_safety(n_tasks, audit_threshold, td, separation, p_grid)[0]
                     for td in defer_thresholds])
    return use, safe


