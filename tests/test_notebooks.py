"""The chapters themselves: release in sync and leak-free, sources full marks, stubs zero.

Grading executes whole notebooks through nbgrader (seconds to a minute each),
so these tests are marked `slow`; `make test` runs them in parallel.
"""
from __future__ import annotations

import json
import re

import pytest

from safety_roadmap.build import release_text
from safety_roadmap.curriculum import check_against_notebooks, load_curriculum
from safety_roadmap.grading import NOT_ATTEMPTED, PASSED, grade_notebook

from . import notebook_tools as nbt
from .conftest import ROOT

CURRICULUM = load_curriculum(ROOT / "curriculum.yaml")
CHAPTERS = [c.id for c in CURRICULUM.chapters]


def test_curriculum_matches_the_notebooks() -> None:
    check_against_notebooks(CURRICULUM, ROOT / "solutions")


@pytest.mark.parametrize("chapter_id", CHAPTERS)
def test_release_is_exactly_what_the_build_produces(chapter_id: str) -> None:
    committed = (ROOT / "notebooks" / f"{chapter_id}.ipynb").read_text(encoding="utf-8")
    rebuilt = release_text(ROOT / "solutions" / f"{chapter_id}.ipynb", chapter_id)
    assert committed == rebuilt, f"notebooks/{chapter_id}.ipynb is stale: run `roadmap build {chapter_id}`"


@pytest.mark.parametrize("chapter_id", CHAPTERS)
def test_source_is_committed_clean(chapter_id: str) -> None:
    nb = nbt.load(ROOT / "solutions" / f"{chapter_id}.ipynb")
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"solutions/{chapter_id}.ipynb has outputs: run `roadmap build`"


@pytest.mark.parametrize("chapter_id", CHAPTERS)
def test_release_leaks_no_solution_hidden_test_or_output(chapter_id: str) -> None:
    source = nbt.load(ROOT / "solutions" / f"{chapter_id}.ipynb")
    release = nbt.load(ROOT / "notebooks" / f"{chapter_id}.ipynb")
    released_text = "\n".join(nbt.source(c) for c in release["cells"])
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "thorough=True"):
        assert marker not in released_text, f"notebooks/{chapter_id}.ipynb leaks {marker!r}"
    for cell in release["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None
    # every line of every reference answer is gone from the learner's version
    for cell in source["cells"]:
        text = nbt.source(cell)
        for block in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", text, re.S):
            for line in block.splitlines():
                line = line.strip()
                if len(line) > 12 and not line.startswith("#"):
                    assert line not in released_text, f"notebooks/{chapter_id}.ipynb leaks solution line {line!r}"


@pytest.mark.slow
@pytest.mark.parametrize("chapter_id", CHAPTERS)
def test_reference_solutions_score_full_marks(chapter_id: str) -> None:
    result = grade_notebook(ROOT / "solutions" / f"{chapter_id}.ipynb", CURRICULUM, ROOT)
    failures = [(e.id, e.status, e.message) for e in result.exercises if e.status != PASSED]
    assert not failures
    assert result.points == result.max_points == CURRICULUM.chapter(chapter_id).max_points


@pytest.mark.slow
@pytest.mark.parametrize("chapter_id", CHAPTERS)
def test_learner_notebook_scores_zero_until_an_exercise_is_solved(chapter_id: str, tmp_path) -> None:
    """One execution proves both halves: the learner's notebook with one exercise solved (copied in
    from the source, as a learner would write it, and saved under a name the learner chose) scores
    exactly that exercise's points, and every exercise still holding its stub reads "not attempted"
    and scores 0. (Grading the untouched release separately would execute the chapter a third time.)"""
    chapter = CURRICULUM.chapter(chapter_id)
    target = chapter.exercises[len(chapter.exercises) // 2]
    learner = nbt.load(ROOT / "notebooks" / f"{chapter_id}.ipynb")
    source = nbt.load(ROOT / "solutions" / f"{chapter_id}.ipynb")
    path = nbt.save(nbt.solve_exercise(learner, source, target.id), tmp_path / "renamed by the learner.ipynb")
    result = grade_notebook(path, CURRICULUM, ROOT)
    scored = {e.id: e.points for e in result.exercises if e.points}
    assert scored == {target.id: target.points}
    stubs = {e.id: (e.status, e.message) for e in result.exercises if e.id != target.id}
    assert {status for status, _ in stubs.values()} == {NOT_ATTEMPTED}, stubs
    assert json.loads(json.dumps(result.to_json()))["points"] == target.points
