"""Chapter 11's claims, re-run from the reference experiment function on three seeds.

Every sentence or figure title of solutions/11_red_teaming_and_robustness.ipynb that states an outcome
is asserted here; seed 0 is the run the notebook shows. `chapter_experiment` trains the filter, runs
every attack and both defences (including the REROUTE_ON_PREFIX comparison) exactly as the notebook
does: about 12 s of CPU per seed on one core, so the tests are marked slow.
"""
from __future__ import annotations

import pytest
import torch

from safety_roadmap.reference import red_teaming_and_robustness as ref

from .claims_tools import Claims

SEEDS = [0, 1, 2]


def _claims(seed: int) -> list[str]:
    """Every claim that fails for `seed`, as a readable line (empty when all hold)."""
    torch.set_num_threads(1)
    out = ref.chapter_experiment(seed, reroute_on_prefix=(False, True))
    n, results = out["n"], out["results"]
    claim = Claims(seed)

    clean = out["clean"]
    claim(clean["harmful"] >= 0.98 and clean["benign (ordinary)"] <= 0.02
          and clean["benign (safety questions)"] <= 0.02,
          f"on held-out traffic the filter looks perfect: {clean}")

    rand = out["random"]
    claim(0 < rand[1024] and rand[4] < rand[1024],
          f"random search finds some holes with many queries, but slowly: {rand}")
    gcg = out["gcg_suffix"]
    claim(gcg["max_cost"] <= 129 and gcg["k"] >= rand[1024],
          f"with at most 129 forward passes the gradient search breaks as many requests as random search with "
          f"1024: GCG {gcg}, random {rand}")
    claim(gcg["with_safety_word"] == 1.0,
          f"the successful suffixes use the filter's blind spot, safety words after the topic: {gcg}")
    prefix = out["gcg_prefix"]
    claim(prefix["with_safety_word"] >= 0.9, f"the successful prefixes put a safety word before the payload: {prefix}")
    claim(prefix["k"] >= 0.95 * n and prefix["max_cost"] <= 17,
          f"the prefix search breaks all or nearly all fresh requests, in a single step: {prefix} of {n}")

    monitor_suffix, monitor_prefix = results[("probe monitor, adaptive", "suffix")], results[
        ("probe monitor, adaptive", "prefix")]
    claim(monitor_suffix["asr_fresh"] == 0.0, f"the monitor holds against the adaptive suffix attacker: {monitor_suffix}")
    claim(monitor_prefix["asr_fresh"] >= 0.95,
          f"the monitor fails against the adaptive prefix attacker on (nearly) all requests: {monitor_prefix}")
    claim(monitor_suffix["false_refusal_rate"] <= 0.04,
          f"the monitor's false refusals stay near its 2% budget: {monitor_suffix['false_refusal_rate']}")
    catches = out["monitor_catches"]
    claim(catches["suffix"] == 1.0 and catches["prefix"] <= 0.05,
          f"prefix attacks land below the monitor's threshold, suffix attacks cannot: {catches}")

    claim(out["rerouted_clean"]["rerouting"]["harmful"] >= 0.98
          and out["rerouted_clean"]["rerouting"]["benign (safety questions)"] <= 0.05,
          f"the rerouted filter still refuses harmful requests and passes safety questions: {out['rerouted_clean']}")
    for kind in ("transferred", "adaptive"):
        suffix = results[(f"rerouting, {kind}", "suffix")]
        claim(suffix["asr_training"] == 0.0, f"rerouting refuses the suffix attacks it was trained on: {suffix}")
        claim(suffix["asr_fresh"] == 0.0, f"rerouting stops {kind} suffix attacks: {suffix}")
        claim(suffix["false_refusal_rate"] <= 0.03, f"rerouting's false refusals stay within a few percent: {suffix}")
        pre = results[(f"rerouting, {kind}", "prefix")]
        claim(pre["asr_fresh"] >= 0.95, f"{kind} prefix attacks still get through the rerouted filter: {pre}")
        with_prefix = results[(f"rerouting+prefix, {kind}", "prefix")]
        claim(with_prefix["asr_fresh"] >= 0.95 and with_prefix["asr_training"] >= 0.9,
              f"rerouting on prefix attacks too still lets {kind} prefix attacks (and its own training attacks) "
              f"through: {with_prefix}")
    safety = out["rerouted_clean"]["rerouting+prefix"]["benign (safety questions)"]
    claim(safety >= 0.3, f"rerouting on prefix attacks refuses a large share (> 30%) of safety questions: {safety}")
    return claim.failed


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_chapter_11_claims_hold(seed: int) -> None:
    failed = _claims(seed)
    assert not failed, "\n".join(failed)
