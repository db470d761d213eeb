"""An instructor can grade chapter 18's write-up in nbgrader's formgrader.

Generates the assignment with a gradebook, as `roadmap cohort create` does, and reads the gradebook:
the five write-up cells are manually graded cells (markdown, grade + solution) with their points, next
to the five autograded test cells; the released notebook asks for the answers without the model answers.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from safety_roadmap import course
from safety_roadmap.curriculum import load_curriculum

from .conftest import ROOT

CHAPTER = "18_capstone"
WRITE_UP = {"capstone_claim": 2, "capstone_method": 3, "capstone_evidence": 3, "capstone_limitations": 3,
            "capstone_code_quality": 2}


@pytest.mark.slow
def test_generated_assignment_has_the_manual_cells_with_points(tmp_path: Path) -> None:
    from nbgrader.api import Gradebook

    course.add_source(tmp_path, CHAPTER, ROOT / "solutions" / f"{CHAPTER}.ipynb")
    released = course.generate(tmp_path, CHAPTER, database=True)
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        nb = gb.find_notebook(CHAPTER, CHAPTER)
        grade_cells = {c.name: c for c in nb.grade_cells}
        solution_cells = {c.name for c in nb.solution_cells}
        manual = {name: c.max_score for name, c in grade_cells.items()
                  if c.cell_type == "markdown" and name in solution_cells}
        auto = {name: c.max_score for name, c in grade_cells.items() if c.cell_type == "code"}
    assert manual == WRITE_UP
    chapter = load_curriculum(ROOT / "curriculum.yaml").chapter(CHAPTER)
    assert auto == {e.id: e.points for e in chapter.exercises}
    assert sum(manual.values()) == sum(auto.values()) == 13   # the notebook's "13 + 13 points" says so

    cells = {c["metadata"].get("nbgrader", {}).get("grade_id"): "".join(c["source"])
             for c in json.loads(released.read_text(encoding="utf-8"))["cells"]}
    for name in WRITE_UP:
        assert cells[name].strip() == "YOUR ANSWER HERE", name     # no model answer reaches the learner
