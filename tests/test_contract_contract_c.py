"""Claims in chapters 10-12 that the checks library cannot see, held against the chapters' own code.

Chapter 12's ablation section says: removing one induction head barely changes the loss on the
second copy, while removing either group (the previous-token heads, or the induction heads) breaks
induction. The outcome depends on training, so it is checked for three seeds, with the notebook's
own training code (executed from the source chapter, so the test follows any edit to it).
"""
from __future__ import annotations

import copy
import json
import math

import pytest

from .conftest import ROOT

CH12 = ROOT / "solutions" / "12_interpretability_tools.ipynb"
DEFINES = ("VOCAB, SEQ_LEN =", "def periodic_batch(", "def train(", "def repeated_tokens(")


def _chapter_12_namespace() -> dict:
    """Run the setup cell and the cells that define the data, the model and training (the first of
    which also trains the chapter's seed-0 model), in one namespace, with plots off."""
    import matplotlib

    matplotlib.use("Agg")
    cells = [c for c in json.loads(CH12.read_text())["cells"] if c["cell_type"] == "code"]
    source = lambda c: "".join(c["source"])   # noqa: E731
    chosen = [cells[0]] + [c for c in cells if any(d in source(c) for d in DEFINES)]
    namespace: dict = {}
    for cell in chosen:
        code = "\n".join(line for line in source(cell).splitlines() if not line.lstrip().startswith("%"))
        exec(compile(code, str(CH12), "exec"), namespace)
    return namespace


@pytest.mark.slow
def test_chapter_12_ablation_claims_hold_for_three_seeds() -> None:
    from safety_roadmap.reference.interpretability_tools import ablate_heads, induction_score, prev_token_score

    ns = _chapter_12_namespace()
    torch, period = ns["torch"], 10
    rep = ns["repeated_tokens"](64, period)
    uniform = math.log(ns["VOCAB"])
    for seed in range(3):
        if seed == 0:
            model = ns["model"]
        else:
            cfg = copy.copy(ns["cfg"])
            cfg.seed = seed
            model, _ = ns["train"](ns["TransformerBridge"].boot_native(cfg), ns["TRAIN_STEPS"], seed=seed)
        with torch.no_grad():
            _, cache = model.run_with_cache(rep)
            prev = prev_token_score(cache["pattern", 0])
            ind = induction_score(cache["pattern", 1], period)
            prev_heads = [(0, h) for h in range(len(prev)) if prev[h] > 0.3]     # the chapter's selection rule
            ind_heads = [(1, h) for h in range(len(ind)) if ind[h] > 0.5]

            def loss(heads: list) -> float:
                logits = ablate_heads(model, rep, heads)
                return float(ns["per_token_loss"](logits, rep)[:, period:].mean())

            singles = [loss([(1, h)]) for h in range(len(ind))]
            assert prev_heads and len(ind_heads) >= 2, f"seed {seed}: scores {prev}, {ind}"
            assert max(singles) < 0.5, f"seed {seed}: one induction head ablated gives losses {singles}"
            assert loss(ind_heads) > uniform, f"seed {seed}: all induction heads ablated"
            assert loss(prev_heads) > uniform, f"seed {seed}: previous-token heads {prev_heads} ablated"
