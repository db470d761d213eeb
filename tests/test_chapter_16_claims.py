"""What chapter 16's prose and figure titles say about its experiments holds, on the chapter's seed and others.

Each test reruns one experiment of the chapter with the library's toys and the reference answers (the
notebook runs the same code with the learner's functions) for three seeds, and asserts the stated outcome.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from safety_roadmap.toys import evals_and_control as toys
from safety_roadmap.reference import evals_and_control as ref

SEEDS = [0, 1, 2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_error_bars_contamination_claims(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b, template = toys.addition_items(20, 20, rng)
    model_a, model_b = toys.train_adder(200, seed=seed), toys.train_adder(800, seed=seed)
    sa, sb = toys.correct_answers(model_a, a, b), toys.correct_answers(model_b, a, b)
    # "the honest error bar is k x the naive one" (printed): clustering widens it on this eval
    assert ref.clustered_standard_error(sa, template) > 1.2 * ref.iid_standard_error(sa)
    # B is better, and pairing shrinks the standard error ("z with pairing > z without")
    diff, se_paired = ref.paired_difference(sb, sa, template)
    se_unpaired = math.hypot(ref.clustered_standard_error(sa, template), ref.clustered_standard_error(sb, template))
    assert diff > 0.05 and se_paired < se_unpaired
    # "clustering multiplies these by about k": a design effect above 1
    sd = float(np.std(sb - sa, ddof=1))
    assert (se_paired / (sd / math.sqrt(len(sa)))) ** 2 > 1.0
    # contamination: the leaked model aces the originals and not the paraphrases; the clean one shows no gap
    leaked = toys.finetuned_copy(model_a, toys.encode(a, b), torch.as_tensor(toys.tens_digit(a, b)), 150, 1e-2)
    prng = np.random.default_rng(seed + 1)
    a_p, b_p = 10 * prng.integers(0, 10, a.size) + a % 10, 10 * prng.integers(0, 10, b.size) + b % 10
    z_leaked = ref.contamination_z(toys.correct_answers(leaked, a, b), toys.correct_answers(leaked, a_p, b_p), template)
    z_clean = ref.contamination_z(sa, toys.correct_answers(model_a, a_p, b_p), template)
    assert z_leaked > 4 and abs(z_clean) < 2.5, (z_leaked, z_clean)


def _sandbag_setup(seed: int):
    sandbagger = toys.train_adder(1000, seed=seed, sandbag=True)
    weak = toys.train_adder(1000, seed=seed, never_carry=True)
    rng = np.random.default_rng(seed + 2)
    a, b = rng.integers(0, 100, 4000), rng.integers(0, 100, 4000)
    carry = toys.has_carry(a, b)
    ae, be = a[carry][:300], b[carry][:300]
    y = torch.as_tensor(toys.tens_digit(ae, be))
    few_a = np.concatenate([a[~carry][:16], a[carry][300:316]])
    few_b = np.concatenate([b[~carry][:16], b[carry][300:316]])
    few = (toys.encode(few_a, few_b, True), torch.as_tensor(toys.tens_digit(few_a, few_b)))
    return sandbagger, weak, toys.encode(ae, be, True), toys.encode(ae, be, False), y, few


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_sandbagging_claims(seed: int) -> None:
    sandbagger, weak, x_marked, x_plain, y, (x_few, y_few) = _sandbag_setup(seed)
    # the naive eval can't tell them apart; the sandbagger can carry without the marker
    assert toys.accuracy(sandbagger, x_plain, y) > 0.8
    assert toys.accuracy(sandbagger, x_marked, y) < 0.05 and toys.accuracy(weak, x_marked, y) < 0.05
    # "under noise, the sandbagger's marked score rises above the weak model's" (and above chance, 10 %)
    scales = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]
    gen = torch.Generator().manual_seed(seed)
    marked = ref.noise_sweep(sandbagger, x_marked, y, scales, 8, gen)
    unmarked = ref.noise_sweep(sandbagger, x_plain, y, scales, 8, gen)
    weak_curve = ref.noise_sweep(weak, x_marked, y, scales, 8, gen)
    assert (marked - weak_curve).max() > 0.04 and marked.max() > 0.11, (marked, weak_curve)
    assert unmarked[-1] < unmarked[0] - 0.4  # "the same noise is destroying the capability itself"
    # fine-tuning recovers more for the sandbagger, far from all of its hidden capability
    _, after_sb = ref.finetune_recovery(sandbagger, x_few, y_few, x_marked, y, steps=30, lr=1e-2)
    _, after_weak = ref.finetune_recovery(weak, x_few, y_few, x_marked, y, steps=30, lr=1e-2)
    assert after_sb > after_weak + 0.05 and after_sb < 0.6, (after_sb, after_weak)


@pytest.mark.parametrize("seed", SEEDS)
def test_goal_misgeneralisation_claims(seed: int) -> None:
    fixed = toys.train_grid_agent([(4, 4)], episodes=600, seed=seed)
    diverse = toys.train_grid_agent([(x, y) for x in range(5) for y in range(5)], episodes=600, seed=seed)
    assert ref.goal_reach_rate(fixed, (4, 4)) >= 0.9
    # "it never reaches the goal" beyond the starts on or next to it, "and most paths end in the old corner"
    assert ref.goal_reach_rate(fixed, (0, 0)) <= 0.2
    corner = sum(toys.greedy_path(fixed, (x, y), (0, 0))[-1] == (4, 4) for x in range(5) for y in range(5))
    assert corner > 12, corner
    assert ref.goal_reach_rate(diverse, (0, 0)) >= 0.9


def test_control_claims() -> None:
    budget, n, sep = 0.02, 1000, 2.0
    audit = toys.audit_threshold_for(budget)
    grid = np.geomspace(1e-4, 0.5, 60)
    # analytic and simulated safety agree within Monte Carlo error
    for p in [0.001, 0.01, 0.1]:
        exact = ref.deployment_safety(p, n, audit, 1.0, sep)
        sim = ref.simulate_safety(p, n, audit, 1.0, sep, 2000, np.random.default_rng(int(p * 1e4)))
        assert abs(sim - exact) < 4 * math.sqrt(exact * (1 - exact) / 2000) + 1e-3, (p, exact, sim)
    # "against upfront auditing, attacking rarely is best"; "against trusted monitoring, attacking often costs little"
    upfront = [toys.upfront_audit_safety(p, n, budget) for p in grid]
    assert grid[int(np.argmin(upfront))] < 0.01
    monitored = [ref.deployment_safety(p, n, audit, audit, sep) for p in grid]
    assert monitored[-1] - min(monitored) < 0.01
    # "deferring more buys safety with usefulness": along the frontier, usefulness falls and safety rises
    use, safe = ref.safety_usefulness_frontier(np.linspace(audit, -1.0, 12), n, audit, sep, 0.5, grid)
    assert np.all(np.diff(use) < 0) and np.all(np.diff(safe) > 0)
