"""Helpers for tests that edit notebooks the way a learner would."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_SOLUTION = re.compile(r"^[ \t]*### BEGIN SOLUTION[ \t]*\n|^[ \t]*### END SOLUTION[ \t]*\n?", re.M)


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save(nb: dict[str, Any], path: Path) -> Path:
    Path(path).write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return Path(path)


def source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def grade_id(cell: dict[str, Any]) -> str | None:
    return ((cell.get("metadata") or {}).get("nbgrader") or {}).get("grade_id")


def solution_cells_before(nb: dict[str, Any], test_id: str) -> list[int]:
    """Indices of the solution cells between the previous test cell and test `test_id`."""
    out: list[int] = []
    for i, cell in enumerate(nb["cells"]):
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if meta.get("grade") and meta.get("grade_id") == test_id:
            return out
        if meta.get("grade"):
            out = []
        elif meta.get("solution"):
            out.append(i)
    raise KeyError(test_id)


def solve_exercise(learner: dict[str, Any], source_nb: dict[str, Any], test_id: str) -> dict[str, Any]:
    """Copy the reference answer for one exercise from the source chapter into a learner notebook."""
    by_id = {grade_id(c): c for c in source_nb["cells"] if grade_id(c)}
    for i in solution_cells_before(learner, test_id):
        ref = by_id[grade_id(learner["cells"][i])]
        learner["cells"][i]["source"] = _SOLUTION.sub("", source(ref))
    return learner
