"""Helpers for writing a source chapter: cells with nbgrader metadata that validates.

Used by contributors (for example from a scratch script or a REPL) to start a
new chapter in `solutions/`; the notebook itself is then the source of truth.

    nb = new_chapter([md("# Title"), setup("import numpy as np"),
                      solution("softmax", "def softmax(x):\\n    ### BEGIN SOLUTION\\n    ...\\n    ### END SOLUTION"),
                      test("test_softmax", 2, "check_softmax(softmax)\\n### BEGIN HIDDEN TESTS\\n...")])
    write_chapter(nb, Path("solutions/NN_slug.ipynb"))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .course import dump_notebook

SCHEMA = 3


def _meta(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": locked,
                            "schema_version": SCHEMA, "solution": solution}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _cell(kind: str, text: str, metadata: dict[str, Any]) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "metadata": metadata, "source": text.strip("\n")}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def md(text: str, grade_id: str | None = None) -> dict[str, Any]:
    """Prose. With a grade_id it is locked, so learners cannot delete or edit it."""
    meta = _meta(grade_id, grade=False, solution=False, locked=True) if grade_id else {}
    return _cell("markdown", text, meta)


def code(text: str, grade_id: str | None = None) -> dict[str, Any]:
    """Ordinary code (demos, plots). With a grade_id it is locked."""
    meta = _meta(grade_id, grade=False, solution=False, locked=True) if grade_id else {}
    return _cell("code", text, meta)


def solution(grade_id: str, text: str) -> dict[str, Any]:
    """The learner's answer cell; the reference sits between ### BEGIN/END SOLUTION."""
    return _cell("code", text, _meta(grade_id, grade=False, solution=True, locked=False))


def test(grade_id: str, points: int, text: str) -> dict[str, Any]:
    """An autograded, locked test cell: a visible check, then ### BEGIN HIDDEN TESTS."""
    return _cell("code", text, _meta(grade_id, grade=True, solution=False, locked=True, points=points))


def free_text(grade_id: str, points: int, model_answer: str) -> dict[str, Any]:
    """A manually graded markdown answer cell; its source is the model answer, which the
    learner's version replaces with "YOUR ANSWER HERE". Not an `exercises:` entry in
    curriculum.yaml (those are the autograded code cells)."""
    return _cell("markdown", model_answer, _meta(grade_id, grade=True, solution=True, locked=False, points=points))


def new_chapter(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write_chapter(nb: dict[str, Any], path: Path) -> None:
    for i, cell in enumerate(nb["cells"]):
        cell.setdefault("id", f"cell-{i:03d}")
    Path(path).write_text(dump_notebook(nb), encoding="utf-8")
