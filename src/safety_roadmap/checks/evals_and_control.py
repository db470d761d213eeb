"""Checks for chapter 16_evals_and_control. Each `check_<exercise>(fn, thorough=False)`.

Statistics are compared with the reference on generated scores whose clusters are unsorted, of
unequal sizes and labelled with strings as well as numbers. Model-taking exercises run on small
models built here from fixed seeds; random ones are compared draw for draw with the reference
given an identical generator, and must leave that generator where the reference leaves it.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

import numpy as np
import torch

from .. import evals_toys as toys
from ..reference import evals_and_control as ref
from ._core import (Case, CheckFailure, Mistake, call, check_choice, compare, describe, guard, non_contiguous,
                    rng_for, run_check, trust)
from ._torch import torch_check

trust(torch)

__all__ = ["check_iid_standard_error", "check_clustered_standard_error", "check_paired_difference",
           "check_items_needed", "check_contamination_z", "check_noise_sweep", "check_finetune_recovery",
           "check_goal_reach_rate", "check_outcome_probabilities", "check_deployment_safety",
           "check_simulate_safety", "check_safety_usefulness_frontier", "check_misgeneralisation_quiz"]


# --------------------------------------------------------------------------- scores and clusters

def _clustered_scores(rng: np.random.Generator, n_clusters: int, sizes: tuple[int, int], binary: bool = True,
                      labels: str = "int") -> tuple[np.ndarray, np.ndarray]:
    """Scores whose clusters differ in difficulty, shuffled so a cluster's items are not adjacent."""
    size = rng.integers(sizes[0], sizes[1] + 1, size=n_clusters)
    cluster = np.repeat(np.arange(n_clusters), size)
    difficulty = rng.uniform(0.1, 0.95, size=n_clusters)[cluster]
    scores = (rng.random(cluster.size) < difficulty).astype(float) if binary else difficulty + rng.normal(0, .2, cluster.size)
    order = rng.permutation(cluster.size)
    scores, cluster = scores[order], cluster[order]
    if labels == "str":
        names = np.array([f"template-{i}" for i in rng.permutation(n_clusters)])
        return scores, names[cluster]
    if labels == "sparse":
        return scores, (cluster * 7 + 100)
    return scores, cluster


def _se_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 161)
    cases = [Case((np.array([1.0, 0.0, 1.0, 1.0]),), "four items, three right"),
             Case((rng.integers(0, 2, 50).astype(float),), "50 pass/fail items")]
    if thorough:
        cases += [Case((np.array([1.0, 0.0]),), "two items"),
                  Case((np.ones(30),), "every item right (no spread at all)"),
                  Case((rng.normal(0.6, 0.2, 400),), "400 partial-credit scores"),
                  Case((rng.integers(0, 2, 1001),), "1001 integer scores"),
                  Case((non_contiguous(rng.integers(0, 2, (1, 40)).astype(float))[0],), "a strided (sliced) array")]
    return cases


def check_iid_standard_error(fn: Callable[..., Any], thorough: bool = False) -> None:
    """iid_standard_error(scores [n]) -> float."""
    __tracebackhide__ = True
    run_check("iid_standard_error", fn, ref.iid_standard_error, _se_cases(thorough), rtol=1e-6, atol=1e-12,
              thorough=thorough, mistakes=[
                  Mistake("you used the population standard deviation (ddof=0); the prompt asks for ddof=1.",
                          lambda s: float(np.asarray(s, float).std() / math.sqrt(len(s)))),
                  Mistake("you divided the standard deviation by n; the standard error divides by sqrt(n).",
                          lambda s: float(np.asarray(s, float).std(ddof=1) / len(s))),
                  Mistake("you returned the standard deviation of the scores, not of their mean.",
                          lambda s: float(np.asarray(s, float).std(ddof=1))),
              ])


def _cluster_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 162)
    cases = [Case((np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0]), np.array([0, 0, 1, 1, 2, 2])),
                  "three templates of two items, the first all right, the second all wrong"),
             Case(_clustered_scores(rng, 12, (3, 6)), "12 templates of 3-6 items, shuffled")]
    if thorough:
        cases += [Case(_clustered_scores(rng, 8, (1, 9), labels="str"), "templates named by strings"),
                  Case(_clustered_scores(rng, 20, (2, 12), binary=False, labels="sparse"),
                       "partial-credit scores, template ids 100, 107, 114, ..."),
                  Case((rng.integers(0, 2, 30).astype(float), np.arange(30)), "every item its own template"),
                  Case((rng.integers(0, 2, 25).astype(float), np.zeros(25, int)), "one template for every item"),
                  Case(_clustered_scores(rng, 40, (5, 5)), "40 templates of 5 items")]
    return cases


def _iid_pop(s: np.ndarray, c: np.ndarray) -> float:
    s = np.asarray(s, float)
    return float(s.std(ddof=1) / math.sqrt(s.size))


def _uncentred(s: np.ndarray, c: np.ndarray) -> float:
    s = np.asarray(s, float)
    _, idx = np.unique(c, return_inverse=True)
    return float(math.sqrt((np.bincount(idx, weights=s) ** 2).sum()) / s.size)


def _means_se(s: np.ndarray, c: np.ndarray) -> float:
    s = np.asarray(s, float)
    _, idx = np.unique(c, return_inverse=True)
    means = np.bincount(idx, weights=s) / np.bincount(idx)
    return float(means.std(ddof=1) / math.sqrt(means.size)) if means.size > 1 else 0.0


def check_clustered_standard_error(fn: Callable[..., Any], thorough: bool = False) -> None:
    """clustered_standard_error(scores [n], clusters [n]) -> float."""
    __tracebackhide__ = True
    run_check("clustered_standard_error", fn, ref.clustered_standard_error, _cluster_cases(thorough), rtol=1e-6,
              atol=1e-12, thorough=thorough, mistakes=[
                  Mistake("you computed the ordinary (iid) standard error; the clusters must change the answer.",
                          _iid_pop),
                  Mistake("you summed each cluster's raw scores; sum each cluster's *deviations from the overall "
                          "mean* (scores - scores.mean()) before squaring.", _uncentred),
                  Mistake("you took the standard error of the cluster means, which weighs a 1-item template like "
                          "a 9-item one; sum the deviations within each cluster instead.", _means_se),
              ])


def _paired_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 163)
    cases = []
    for label, n, sizes, kind in [("12 shared templates", 12, (3, 6), "int"),
                                  ("30 templates, string names", 30, (2, 8), "str")][: 2 if thorough else 1]:
        a, c = _clustered_scores(rng, n, sizes, labels=kind)
        flip = rng.random(a.size) < 0.2  # B agrees with A on most items: pairing matters
        cases.append(Case((a, np.where(flip, 1 - a, a), c), f"two models on the same items, {label}"))
    if thorough:
        a, c = _clustered_scores(rng, 15, (4, 4), binary=False, labels="sparse")
        cases += [Case((a, a - 0.1 + rng.normal(0, 0.01, a.size), c), "B is A minus a little, partial credit"),
                  Case((rng.integers(0, 2, 40).astype(float), rng.integers(0, 2, 40).astype(float), np.arange(40)),
                       "unrelated models, every item its own template")]
    return cases


def check_paired_difference(fn: Callable[..., Any], thorough: bool = False) -> None:
    """paired_difference(scores_a, scores_b, clusters) -> (mean of a - b, its clustered standard error)."""
    __tracebackhide__ = True
    run_check("paired_difference", fn, ref.paired_difference, _paired_cases(thorough), rtol=1e-6, atol=1e-12,
              thorough=thorough, mistakes=[
                  Mistake("you subtracted the wrong way round: the prompt asks for A minus B.",
                          lambda a, b, c: ref.paired_difference(b, a, c)),
                  Mistake("you combined the two models' separate standard errors as if they were run on different "
                          "items; compute one standard error of the per-item differences.",
                          lambda a, b, c: (float(np.mean(a) - np.mean(b)), math.hypot(
                              ref.clustered_standard_error(a, c), ref.clustered_standard_error(b, c)))),
                  Mistake("you ignored the clusters: use the clustered standard error of the differences.",
                          lambda a, b, c: (float(np.mean(a) - np.mean(b)),
                                           ref.iid_standard_error(np.asarray(a, float) - np.asarray(b, float)))),
              ])


def _power_cases(thorough: bool) -> list[Case]:
    cases = [Case((0.05, 0.4), "detect a 5-point difference, sd 0.4"),
             Case((0.1, 0.5, 0.05, 0.8, False), "a one-sided test")]
    if thorough:
        cases += [Case((0.02, 0.3, 0.01, 0.9), "alpha 0.01, power 0.9"),
                  Case((-0.05, 0.4), "a negative difference (its size is what matters)"),
                  Case((0.2, 0.5, 0.1, 0.5, True), "alpha 0.1, power 0.5"),
                  Case((0.5, 0.1), "a huge difference: very few items"),
                  Case((0.03, 0.45, 0.05, 0.95, False), "one-sided, power 0.95")]
        cases += [Case((0.05, 0.4), "keyword arguments", dict(alpha=0.02, power=0.85, two_sided=True))]
    return cases


def _compare_int(got: Any, expected: Any, case: Case) -> str | None:
    if isinstance(got, bool) or not isinstance(got, (int, np.integer)):
        return f"expected a whole number of items (an int), got {describe(got)}"
    return None if int(got) == expected else f"expected {expected} items, got {int(got)}"


def check_items_needed(fn: Callable[..., Any], thorough: bool = False) -> None:
    """items_needed(delta, sd, alpha=0.05, power=0.8, two_sided=True) -> int."""
    __tracebackhide__ = True
    from statistics import NormalDist

    def one_sided(d, s, alpha=0.05, power=0.8, two_sided=True):
        return ref.items_needed(d, s, alpha, power, False)

    def no_power(d, s, alpha=0.05, power=0.8, two_sided=True):
        za = NormalDist().inv_cdf(1 - alpha / 2 if two_sided else 1 - alpha)
        return math.ceil((za * s / abs(d)) ** 2)

    def rounded(d, s, alpha=0.05, power=0.8, two_sided=True):
        z = NormalDist()
        za = z.inv_cdf(1 - alpha / 2) if two_sided else z.inv_cdf(1 - alpha)
        return round(((za + z.inv_cdf(power)) * s / abs(d)) ** 2)

    run_check("items_needed", fn, ref.items_needed, _power_cases(thorough), compare_fn=_compare_int,
              thorough=thorough, mistakes=[
                  Mistake("you used the one-sided critical value; a two-sided test splits alpha between the tails "
                          "(z at 1 - alpha/2).", one_sided),
                  Mistake("you left out the power term: add z at `power` to the critical value.", no_power),
                  Mistake("you rounded to the nearest whole item; round *up* (math.ceil), or the test is "
                          "under-powered.", rounded),
              ])


def _contamination_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 164)
    cases = []
    for n, kind in [(10, "int"), (25, "str")][: 2 if thorough else 1]:
        para, c = _clustered_scores(rng, n, (2, 6), labels=kind)
        orig = np.where(rng.random(para.size) < 0.4, 1.0, para)  # memorised: originals right more often
        cases.append(Case((orig, para, c), f"originals beat their paraphrases, {n} templates"))
    cases.append(Case((np.array([1.0, 0.0, 1.0, 1.0]), np.array([1.0, 0.0, 1.0, 1.0]), np.array([0, 0, 1, 1])),
                      "originals and paraphrases score the same"))
    if thorough:
        para, c = _clustered_scores(rng, 12, (3, 3), labels="sparse")
        cases += [Case((np.zeros_like(para), np.where(rng.random(para.size) < 0.5, 1.0, 0.0), c),
                       "paraphrases beat the originals (a negative z)"),
                  Case((np.ones(6), np.zeros(6), np.array([0, 0, 1, 1, 2, 2])),
                       "every original right, every paraphrase wrong (no spread: the z is infinite)")]
    return cases


def check_contamination_z(fn: Callable[..., Any], thorough: bool = False) -> None:
    """contamination_z(scores_original, scores_paraphrase, clusters) -> float."""
    __tracebackhide__ = True
    run_check("contamination_z", fn, ref.contamination_z, _contamination_cases(thorough), rtol=1e-6, atol=1e-9,
              thorough=thorough, mistakes=[
                  Mistake("you divided by the iid standard error: the items share templates, so use the clustered "
                          "one (paired_difference gives it).",
                          lambda o, p, c: (np.mean(o) - np.mean(p)) / ref.iid_standard_error(
                              np.asarray(o, float) - np.asarray(p, float))),
                  Mistake("you returned the difference itself, not how many standard errors it is.",
                          lambda o, p, c: ref.paired_difference(o, p, c)[0]),
                  Mistake("you subtracted the originals from the paraphrases; contamination shows as a *positive* z.",
                          lambda o, p, c: ref.contamination_z(p, o, c)),
              ])


# --------------------------------------------------------------------------- sandbagging

def _small_adder(seed: int, hidden: int, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = toys.Adder(hidden).to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # larger weights than at initialisation, so noise changes some answers
    return model


def _data(seed: int, n: int, marker: bool, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 100, n), rng.integers(0, 100, n)
    return toys.encode(a, b, marker).to(dtype), torch.as_tensor(toys.tens_digit(a, b))


def _state(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def _unchanged(before: list[torch.Tensor], model: torch.nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values()))


@torch_check
def check_noise_sweep(fn: Callable[..., Any], thorough: bool = False) -> None:
    """noise_sweep(model, x, y, scales, n_draws, generator) -> array [len(scales)]."""
    __tracebackhide__ = True
    guard()
    specs = [(1, 16, [0.0, 0.5, 2.0], 3, 10, "float32")]
    if thorough:
        specs += [(2, 32, [1.0, 0.1], 2, 11, "float32"), (3, 8, [0.3], 5, 12, "float64"),
                  (4, 16, [0.0, 0.2, 0.4, 0.8, 1.6], 1, 13, "float32")]
    for i, (seed, hidden, scales, draws, gseed, dt) in enumerate(specs, 1):
        dtype = torch.float64 if dt == "float64" else torch.float32
        where = (f"case {i} of {len(specs)} (a {dt} model with {hidden} hidden units, scales {scales}, "
                 f"{draws} draws, generator seeded {gseed})")
        model = _small_adder(seed, hidden, dtype)
        x, y = _data(seed, 120, False, dtype)
        before = _state(model)
        g_ref, g_learner = torch.Generator().manual_seed(gseed), torch.Generator().manual_seed(gseed)
        expected = ref.noise_sweep(copy.deepcopy(model), x, y, scales, draws, g_ref)
        got = call(fn, "noise_sweep", (model, x, y, list(scales), draws, g_learner), None, where)
        if not _unchanged(before, model):
            raise CheckFailure(f"`noise_sweep` changed the model it was given on {where}. Add the noise to a copy "
                               "(copy.deepcopy(model)) for every draw, or the next draw starts from a noisy model.")
        problem = compare(np.asarray(got, dtype=float) if not isinstance(got, torch.Tensor) else got.double(),
                          expected, rtol=1e-6, atol=1e-9)
        if problem:
            cause = ""
            g2 = torch.Generator().manual_seed(gseed)
            squared = ref.noise_sweep(copy.deepcopy(model), x, y, [s ** 2 for s in scales], draws, g2)
            if np.asarray(got, float).shape == squared.shape and np.allclose(np.asarray(got, float), squared) \
                    and not np.allclose(squared, expected):
                cause = ("\n  Likely cause: you used the scale as a variance; torch.randn has standard deviation 1, "
                         "so multiply it by `scale` itself.")
            raise CheckFailure(f"`noise_sweep` is wrong on {where}:\n  {problem}{cause}\n  Draw the noise in the "
                               "order the prompt gives (scale, then draw, then each parameter in "
                               "model.parameters() order) from `generator`, so it matches draw for draw.")
        if not torch.equal(g_ref.get_state(), g_learner.get_state()):
            raise CheckFailure(f"`noise_sweep` on {where} did not draw its noise from the `generator` it was given "
                               "(its state is not where the reference leaves it): pass generator=generator to "
                               "torch.randn, and don't create or re-seed one.")
    print(f"✓ noise_sweep: all {len(specs)} {'thorough' if thorough else 'quick'} checks passed")


@torch_check
def check_finetune_recovery(fn: Callable[..., Any], thorough: bool = False) -> None:
    """finetune_recovery(model, x_few, y_few, x_eval, y_eval, steps=30, lr=1e-3) -> (before, after)."""
    __tracebackhide__ = True
    guard()
    specs = [(6, 16, 200, 10, 3e-2)]
    if thorough:
        specs += [(7, 32, 300, 15, 1e-2), (8, 16, 100, 25, 5e-3), (9, 16, 50, 1, 1e-1), (10, 16, 100, None, None)]
    for i, (seed, hidden, n_few, steps, lr) in enumerate(specs, 1):
        label = "the default steps and lr" if steps is None else f"steps={steps}, lr={lr}"
        where = f"case {i} of {len(specs)} ({hidden} hidden units, {n_few} fine-tuning examples, {label})"
        model = _small_adder(seed, hidden)
        x_few, y_few = _data(seed + 100, n_few, True)
        x_eval, y_eval = _data(seed + 200, 300, True)
        kwargs = {} if steps is None else {"steps": steps, "lr": lr}
        torch.manual_seed(0)
        expected = ref.finetune_recovery(copy.deepcopy(model), x_few, y_few, x_eval, y_eval, **kwargs)
        before = _state(model)
        torch.manual_seed(0)
        got = call(fn, "finetune_recovery", (model, x_few, y_few, x_eval, y_eval), kwargs, where)
        if not _unchanged(before, model) or model.training:
            raise CheckFailure(f"`finetune_recovery` changed the model it was given on {where} (its weights or its "
                               "eval mode). Fine-tune a copy (copy.deepcopy(model)): the caller still needs the "
                               "original to compare against.")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailure(f"`finetune_recovery` should return (accuracy before, accuracy after); got "
                               f"{describe(got)} on {where}")
        problem = compare(float(got[0]), expected[0], rtol=0, atol=1e-6, what="accuracy before fine-tuning")
        if problem is None:
            problem = compare(float(got[1]), expected[1], rtol=0, atol=0.004, what="accuracy after fine-tuning")
        if problem:
            hint = ""
            if abs(float(got[1]) - expected[0]) < 1e-6 and abs(expected[1] - expected[0]) > 0.004:
                hint = "\n  Likely cause: nothing was trained: check that every step calls backward() and opt.step()."
            elif isinstance(got[0], (int, float)) and abs(float(got[0]) - expected[1]) < 1e-6:
                hint = "\n  Likely cause: before and after are swapped."
            raise CheckFailure(f"`finetune_recovery` is wrong on {where}:\n  {problem}{hint}\n  The prompt fixes the "
                               "recipe: full batch, Adam(lr), cross-entropy, `steps` steps, zero_grad every step.")
    print(f"✓ finetune_recovery: all {len(specs)} {'thorough' if thorough else 'quick'} checks passed")


# --------------------------------------------------------------------------- goal misgeneralisation

def _grid_cases(thorough: bool) -> list[Case]:
    fixed = toys.train_grid_agent([(4, 4)], episodes=200, seed=1)
    cases = [Case((fixed, (4, 4)), "an agent trained on goal (4, 4), tested there"),
             Case((fixed, (0, 0)), "the same agent, goal moved to (0, 0)")]
    if thorough:
        rng = rng_for(thorough, 165)
        diverse = toys.train_grid_agent([(x, y) for x in range(5) for y in range(5)], episodes=300, seed=2)
        cases += [Case((diverse, (1, 3)), "an agent trained on every goal, goal (1, 3)"),
                  Case((np.zeros((4, toys.N_FEATURES)), (2, 4)), "an untrained agent (all ties: it always moves up)"),
                  Case((rng.normal(size=(4, toys.N_FEATURES)), (3, 1)), "random weights"),
                  Case((diverse, (0, 4), 3), "max_steps = 3: far cells can't make it"),
                  Case((fixed, (4, 0), 1), "max_steps = 1"),
                  Case((diverse, (2, 2)), "keyword max_steps", {"max_steps": 2})]
    return cases


def check_goal_reach_rate(fn: Callable[..., Any], thorough: bool = False) -> None:
    """goal_reach_rate(W [4, 31], goal, max_steps=20) -> float in [0, 1]."""
    __tracebackhide__ = True

    def not_counting_start(W, goal, max_steps=20):
        return ref.goal_reach_rate(W, goal, max_steps) - 1 / 25

    def training_goal(W, goal, max_steps=20):
        return ref.goal_reach_rate(W, (4, 4), max_steps)

    run_check("goal_reach_rate", fn, ref.goal_reach_rate, _grid_cases(thorough), rtol=0, atol=1e-9,
              thorough=thorough, mistakes=[
                  Mistake("you measured on the training layout (goal (4, 4)); use the `goal` you are given: "
                          "misgeneralisation only shows where the goal has moved.", training_goal),
                  Mistake("a start on the goal should count as reached.", not_counting_start),
              ])


# --------------------------------------------------------------------------- AI control

def _threshold_cases(thorough: bool) -> list[Case]:
    cases = [Case((2.05, 1.0, 2.0), "audit above 2.05, defer above 1.0, separation 2"),
             Case((2.05, 2.05, 2.0), "no deferral band (both thresholds 2.05)")]
    if thorough:
        cases += [Case((2.33, 0.5, 1.0), "a weak monitor (separation 1)"),
                  Case((1.64, 0.0, 3.5), "a strong monitor"),
                  Case((2.05, 3.0, 2.0), "the defer threshold above the audit one (no deferral)"),
                  Case((2.05, -1.0, 0.0), "a monitor that can't tell (separation 0)"),
                  Case((2.88, 1.2, -0.5), "backdoors look *less* suspicious than benign outputs")]
    return cases


def check_outcome_probabilities(fn: Callable[..., Any], thorough: bool = False) -> None:
    """outcome_probabilities(audit_threshold, defer_threshold, separation) -> (audited, deferred, through)."""
    __tracebackhide__ = True
    from statistics import NormalDist

    def defer_first(ta, td, sep):
        z = NormalDist()
        deferred = 1 - z.cdf(td - sep)
        return 0.0, deferred, 1 - deferred

    run_check("outcome_probabilities", fn, ref.outcome_probabilities, _threshold_cases(thorough), rtol=1e-7,
              atol=1e-10, thorough=thorough, mistakes=[
                  Mistake("you deferred before auditing: an output above the *audit* threshold goes to a human "
                          "first, even though it is also above the defer threshold.", defer_first),
              ])


def _safety_cases(thorough: bool) -> list[Case]:
    cases = [Case((0.01, 1000, 2.05, 1.0, 2.0), "p=0.01, 1000 tasks"),
             Case((0.001, 100, 2.05, 2.05, 2.0), "a rare attacker, no deferral")]
    if thorough:
        cases += [Case((0.0, 1000, 2.05, 1.0, 2.0), "an honest policy (p = 0)"),
                  Case((1.0, 50, 1.64, 0.5, 1.5), "attacks on every task"),
                  Case((0.05, 1, 2.05, 1.0, 2.0), "a single task"),
                  Case((0.002, 5000, 2.33, 0.0, 3.0), "5000 tasks, a strong monitor"),
                  Case((0.02, 300, 2.05, 3.0, 2.0), "defer threshold above the audit threshold"),
                  Case((0.3, 20, 1.28, -0.5, 0.5), "a weak monitor, a wide deferral band")]
    return cases


def check_deployment_safety(fn: Callable[..., Any], thorough: bool = False) -> None:
    """deployment_safety(p_attack, n_tasks, audit_threshold, defer_threshold, separation) -> float."""
    __tracebackhide__ = True

    def per_output(p, n, ta, td, sep):
        return 1 - p * ref.outcome_probabilities(ta, td, sep)[2]

    def never_caught(p, n, ta, td, sep):
        return (1 - p * ref.outcome_probabilities(ta, td, sep)[2]) ** n

    run_check("deployment_safety", fn, ref.deployment_safety, _safety_cases(thorough), rtol=1e-7, atol=1e-10,
              thorough=thorough, mistakes=[
                  Mistake("you computed the safety of one output; safety is about the whole deployment of "
                          "n_tasks tasks.", per_output),
                  Mistake("a caught backdoor ends the game (the blue team shuts the model down); you treated it "
                          "like a deferred one, so later tasks could still lose.", never_caught),
              ])


@torch_check
def check_simulate_safety(fn: Callable[..., Any], thorough: bool = False) -> None:
    """simulate_safety(p_attack, n_tasks, audit_threshold, defer_threshold, separation, n_runs, generator)."""
    __tracebackhide__ = True
    guard()
    specs = [(0.01, 200, 2.05, 1.0, 2.0, 300, 1)]
    if thorough:
        specs += [(0.1, 50, 1.64, 0.0, 1.0, 500, 2), (0.0, 100, 2.05, 1.0, 2.0, 50, 3),
                  (0.02, 400, 2.33, 3.0, 3.0, 200, 4), (1.0, 10, 1.0, 0.5, 0.5, 400, 5)]
    for i, (p, n, ta, td, sep, runs, seed) in enumerate(specs, 1):
        where = (f"case {i} of {len(specs)} (p={p}, {n} tasks, audit > {ta}, defer > {td}, separation {sep}, "
                 f"{runs} runs, generator seeded {seed})")
        g_ref, g_learner = np.random.default_rng(seed), np.random.default_rng(seed)
        expected = ref.simulate_safety(p, n, ta, td, sep, runs, g_ref)
        got = call(fn, "simulate_safety", (p, n, ta, td, sep, runs, g_learner), None, where)
        problem = compare(got, expected, rtol=0, atol=1e-12, what="simulated safety")
        if problem:
            raise CheckFailure(f"`simulate_safety` is wrong on {where}:\n  {problem}\n  Draw attacks first "
                               "(one uniform per run and task, an attack where it is below p), then scores "
                               "(one standard normal per run and task, plus separation where there is an attack); a run is safe when its "
                               "first caught backdoor comes before its first one that got through (or none got "
                               "through).")
        if g_ref.bit_generator.state != g_learner.bit_generator.state:
            raise CheckFailure(f"`simulate_safety` on {where} did not draw from the `generator` it was given exactly "
                               "as the prompt says (two arrays of shape (n_runs, n_tasks)).")
    print(f"✓ simulate_safety: all {len(specs)} {'thorough' if thorough else 'quick'} checks passed")


def _frontier_cases(thorough: bool) -> list[Case]:
    grid = np.geomspace(1e-4, 0.5, 30)
    cases = [Case((np.array([2.05, 1.0, 0.0]), 1000, 2.05, 2.0, 0.5, grid), "three defer thresholds")]
    if thorough:
        cases += [Case((np.linspace(-1, 2.33, 7), 300, 2.33, 1.0, 0.2, grid), "a weak monitor, a poor trusted model"),
                  Case((np.array([3.0, 1.5]), 5000, 1.64, 3.0, 0.8, np.array([0.5, 0.001, 0.02])),
                       "an unsorted grid of attack rates"),
                  Case((np.array([2.05, 0.5]), 20, 2.05, 2.0, 0.5, np.array([0.001, 0.01, 0.03])),
                       "a short deployment (20 tasks) against rare attackers: n_tasks matters"),
                  Case((np.array([1.0]), 3, 2.33, 1.5, 0.9, np.array([0.2, 0.05])), "three tasks")]
    return cases


def check_safety_usefulness_frontier(fn: Callable[..., Any], thorough: bool = False) -> None:
    """safety_usefulness_frontier(defer_thresholds, n_tasks, audit_threshold, separation, trusted_quality,
    p_grid) -> (usefulness [k], worst-case safety [k])."""
    __tracebackhide__ = True

    def best_case(tds, n, ta, sep, q, grid):
        use = np.array([toys.usefulness(ta, td, q) for td in tds])
        return use, np.array([max(ref.deployment_safety(p, n, ta, td, sep) for p in grid) for td in tds])

    def middle_p(tds, n, ta, sep, q, grid):
        use = np.array([toys.usefulness(ta, td, q) for td in tds])
        p = float(np.median(grid))
        return use, np.array([ref.deployment_safety(p, n, ta, td, sep) for td in tds])

    run_check("safety_usefulness_frontier", fn, ref.safety_usefulness_frontier, _frontier_cases(thorough), rtol=1e-7,
              atol=1e-10, thorough=thorough, mistakes=[
                  Mistake("you took the *best* case over attack rates; the red team picks the rate that is worst for "
                          "you (the minimum).", best_case),
                  Mistake("you fixed one attack rate; take the minimum of safety over every rate in p_grid.", middle_p),
              ])


_QUIZ_DIGEST = "d6f210da1d80100a35d5736722b57d37b0ae6c733bc57f664a20d0a73edaab9b"  # sha256 of "misgeneralisation_quiz:<letter>"


def check_misgeneralisation_quiz(answer: Any, thorough: bool = False) -> None:
    """misgeneralisation_quiz: one letter."""
    __tracebackhide__ = True
    check_choice("misgeneralisation_quiz", answer, _QUIZ_DIGEST, "abcd")
