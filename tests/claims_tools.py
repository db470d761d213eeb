"""Shared pieces of the chapters' claims tests (tests/test_chapter_NN_claims.py)."""
from __future__ import annotations

import json

from .conftest import ROOT


class Claims:
    """Records every claim that fails for one seed, so a run reports all of them, not only the first.

    Use: `claim = Claims(seed)`, then `claim(ok, "what the notebook says: the numbers")`; `claim.failed`
    holds one readable line per failed claim."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.failed: list[str] = []

    def __call__(self, ok: bool, text: str) -> None:
        if not ok:
            self.failed.append(f"seed {self.seed}: {text}")


def notebook_code(chapter_id: str) -> str:
    """All code cells of a source chapter, joined: for checking that a claims test runs the notebook's sizes."""
    nb = json.loads((ROOT / "solutions" / f"{chapter_id}.ipynb").read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
