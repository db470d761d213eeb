"""Chapter 10's claims, re-run from the reference experiment functions on three seeds.

Every figure title or sentence of solutions/10_reward_hacking_and_rlhf.ipynb that states an outcome
is asserted here; seed 0 is the run the notebook shows (the notebook calls the same experiment
functions with the learner's answers, which equal the reference's). One seed trains the SFT model,
the reward models and every policy once, at the notebook's sizes (about 12 s of CPU), so the tests
are marked slow.
"""
from __future__ import annotations

import pytest
import torch

from safety_roadmap.reference import reward_hacking_and_rlhf as ref
from safety_roadmap.toys import reward_hacking_and_rlhf as toy

from .claims_tools import Claims, notebook_code

SEEDS = [0, 1, 2]
RL_STEPS = DPO_STEPS = 60   # the notebook's RL_STEPS and DPO_STEPS
BETAS = [0.0, 0.1, 0.3, 1.0]


def _claims(seed: int) -> list[str]:
    """Every claim that fails for `seed`, as a readable line (empty when all hold)."""
    torch.set_num_threads(1)
    claim = Claims(seed)

    # section 1: Goodhart in the gridworld
    curves = ref.goodhart_experiment(seed)
    weak, strong = curves[0.1], curves[1.0]
    claim(bool((weak[:, 0] == weak[:, 1]).all()) and bool((weak[:, 0] <= 1).all()),
          f"eps = 0.1: the greedy policy never tampers, proxy == true throughout: {weak.tolist()}")
    claim(strong[-1].tolist() == [3.0, -1.0], f"eps = 1: proxy ends at +3 and true at -1: {strong[-1]}")
    claim(bool((strong[:5, 0] == strong[:5, 1]).all()),
          f"for the first few episodes both curves coincide: {strong[:5].tolist()}")

    # sections 2-3: the reward model
    world = ref.build_world(seed)
    values = world["human_rm"].word_value.weight[:, 0].numpy()
    liked = values[list(toy.TIPS) + list(toy.FLATTERY)]
    claim(liked.min() > values[list(toy.FILLER)].max(),
          f"every tip and every compliment is valued above every filler word: {values.round(2).tolist()}")

    # section 4: over-optimisation and its components
    runs = ref.rlhf_sweep(world, BETAS, RL_STEPS)
    h = runs[0.0]["history"]
    peak = int(h["gold"].argmax())
    start, end = h["gold"][:3].mean(), h["gold"][-3:].mean()
    claim(h["reward"][-3:].mean() > h["reward"][peak] + 0.5,
          f"beta = 0: the reward model's score keeps climbing after the gold peak: {h['reward'][peak]} -> "
          f"{h['reward'][-3:].mean()}")
    claim(h["gold"][peak] - end >= 1.5 and end < start,
          f"beta = 0: gold peaks, then collapses below where it started: {start:.2f} -> {h['gold'][peak]:.2f} -> "
          f"{end:.2f}")
    rep = h["repetition"][-3:].mean() - h["repetition"][peak]
    flat = h["flattery"][-3:].mean() - h["flattery"][peak]
    tips = h["distinct tips"][-3:].mean() - h["distinct tips"][peak]
    claim(rep <= -2.0 and abs(flat) <= 0.3 and tips < 0,
          f"after the peak repetition falls steeply, distinct tips fall, flattery barely moves: {rep:.2f}, "
          f"{tips:.2f}, {flat:.2f}")
    ev = {b: runs[b]["eval"] for b in BETAS}
    kls = [ev[b]["kl"] for b in BETAS]
    claim(all(a > b for a, b in zip(kls, kls[1:])), f"KL falls as beta grows: {kls}")
    claim(ev[0.1]["gold"] > ev[0.0]["gold"] and ev[0.3]["gold"] > ev[0.0]["gold"],
          f"beta 0.1 and 0.3 end with a higher gold score than beta 0: {[ev[b]['gold'] for b in BETAS]}")
    claim(ev[1.0]["gold"] < ev[0.3]["gold"], f"too tight a leash (beta 1) leaves gold on the table: {ev[1.0]['gold']}, "
                                             f"{ev[0.3]['gold']}")
    sft = ref.evaluate_policy(world["sft"], world["sft"], 1000, seed)
    compliments = {k: e["amazing"] + e["brilliant"] for k, e in [("sft", sft), ("0.3", ev[0.3])]}
    claim(compliments["0.3"] > compliments["sft"], f"at beta 0.3 the policy flatters more than SFT: {compliments}")

    # section 5: DPO on the same pairs
    dpo = ref.dpo_sweep(world, BETAS[1:], DPO_STEPS)
    claim(all(dpo[b]["kl"] > ev[b]["kl"] for b in (0.3, 1.0)),
          f"for beta 0.3 and 1 DPO ends further from SFT than RLHF: {[(dpo[b]['kl'], ev[b]['kl']) for b in BETAS[1:]]}")
    claim(dpo[0.1]["gold"] > ev[0.1]["gold"], f"at beta 0.1 DPO's gold beats RLHF's: {dpo[0.1]['gold']}, {ev[0.1]['gold']}")
    claim(max(d["gold"] for d in dpo.values()) >= max(e["gold"] for e in ev.values()),
          "DPO's best point is at least as good as RLHF's best")

    # section 6: constitutions
    fb = ref.feedback_experiment(world, ref.my_constitution, 400, 0.3, RL_STEPS)
    ai, human = fb["AI feedback"], fb["human feedback"]
    claim(ai["agreement"] > human["agreement"],
          f"same pairs and noise: the constitution's reward model agrees with gold more: {ai['agreement']}, "
          f"{human['agreement']}")
    claim(ai["eval"]["flattery"] > -0.05 and ai["eval"]["flattery"] > human["eval"]["flattery"],
          f"the constitution's policy stops flattering: {ai['eval']['flattery']}, {human['eval']['flattery']}")
    claim(ai["eval"]["gold"] > human["eval"]["gold"], "the constitution's policy ends with a higher gold score")
    for name, result in fb.items():
        v = result["reward_model"].word_value.weight[:, 0].numpy()
        below = v[list(toy.FLATTERY)].max() < v[list(toy.FILLER)].min()
        claim(below == (name == "AI feedback"), f"only the constitution's reward model values compliments below "
                                                f"filler ({name}): {v.round(2).tolist()}")
    loop = ref.feedback_experiment(world, ref.LOOPHOLE_CONSTITUTION, 400, 0.3, RL_STEPS, with_human=False)
    le = loop["AI feedback"]["eval"]
    claim(le["brilliant"] >= 2 * sft["brilliant"] + 0.3 and le["amazing"] < sft["amazing"],
          f"the loophole policy says 'brilliant' far more than SFT and 'amazing' less: {le}, {sft}")
    claim(le["gold"] < ai["eval"]["gold"], f"the loophole policy's gold is lower: {le['gold']}, {ai['eval']['gold']}")
    return claim.failed


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_chapter_10_claims_hold(seed: int) -> None:
    failed = _claims(seed)
    assert not failed, "\n".join(failed)


def test_the_claims_run_at_the_notebooks_sizes() -> None:
    """The claims above re-run the notebook's settings through the reference module: if a knob in the notebook
    changes, this says which constant to update here (and in the reference module's defaults)."""
    import json
    import re

    text = notebook_code("10_reward_hacking_and_rlhf")
    expected = {"N_AGENTS": "5", "EPISODES": "1000", "SFT_STEPS": "150", "N_HUMAN_PAIRS": "400", "RL_STEPS": "60",
                "BETAS": "[0.1, 0.3, 1.0]", "DPO_STEPS": "60", "BETA_FEEDBACK": "0.3", "N_FEEDBACK_PAIRS": "400",
                "SEED": "0"}
    for name, value in expected.items():
        m = re.search(rf"^{name} = ([^#\n]+?)\s*(#|$)", text, re.M)
        assert m, f"the notebook no longer sets {name}: update tests/test_chapter_10_claims.py"
        assert m.group(1) == value, f"the notebook has {name} = {m.group(1)}, the claims test runs {value}"
    assert RL_STEPS == int(expected["RL_STEPS"]) and BETAS[1:] == json.loads(expected["BETAS"])
