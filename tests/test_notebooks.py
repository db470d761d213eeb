"""The chapters themselves: release in sync and leak-free, reference answers full marks, stubs zero.

Grading executes whole notebooks through nbgrader (seconds to a minute each; once per chapter),
so these tests are marked `slow`; `make test` runs them in parallel.
"""
from __future__ import annotations

import ast
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


@pytest.mark.parametrize("chapter_id", CHAPTERS)
def test_release_hands_out_no_reference_answers(chapter_id: str) -> None:
    """A chapter's own answers reach a learner only when they choose them (a commented "stuck?" line, `roadmap
    solution`): no released code imports the chapter's reference module whole, or a name an exercise of the
    chapter asks the learner to write. (Helpers and earlier chapters' building blocks may come from
    reference modules; experiment drivers live in `safety_roadmap.toys` and take the learner's functions.)"""
    own = f"safety_roadmap.reference.{chapter_id.split('_', 1)[1]}"
    source = nbt.load(ROOT / "solutions" / f"{chapter_id}.ipynb")
    answers = set().union(*(_defined(nbt.source(c)) for c in source["cells"]
                            if ((c.get("metadata") or {}).get("nbgrader") or {}).get("solution")
                            and c["cell_type"] == "code"))
    release = nbt.load(ROOT / "notebooks" / f"{chapter_id}.ipynb")
    for number, cell in enumerate(release["cells"], 1):
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse(re.sub(r"^[ \t]*[%!].*$", "", nbt.source(cell), flags=re.M))):
            whole = (isinstance(node, ast.Import) and any(a.name == own for a in node.names)) or (
                isinstance(node, ast.ImportFrom) and node.module == own.rsplit(".", 1)[0]
                and any(a.name == own.rsplit(".", 1)[1] for a in node.names))
            named = isinstance(node, ast.ImportFrom) and node.module == own and {a.name for a in node.names} & answers
            assert not whole, f"notebooks/{chapter_id}.ipynb cell {number} imports {own} whole"
            assert not named, f"notebooks/{chapter_id}.ipynb cell {number} imports answers {sorted(named)} from {own}"


def _defined(code: str) -> set[str]:
    """The names a code cell defines at its top level (functions, classes, assignments)."""
    out: set[str] = set()
    for node in ast.parse(re.sub(r"^[ \t]*[%!].*$", "", code, flags=re.M)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return out


def _names(code: str) -> set[str]:
    """Every identifier a code cell mentions (magics dropped so the cell parses)."""
    tree = ast.parse(re.sub(r"^[ \t]*[%!].*$", "", code, flags=re.M))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


@pytest.mark.parametrize("chapter_id", CHAPTERS)
def test_each_test_cell_checks_what_its_own_exercise_defines(chapter_id: str) -> None:
    """A test cell passes the check the learner's own answer: the name it hands to `check_*` is one its
    exercise's cells (its solution cells up to the test cell) define or use. A test cell wired to another
    exercise's function would pass with a stub in place, and only this catches it without executing."""
    nb = nbt.load(ROOT / "solutions" / f"{chapter_id}.ipynb")
    for index, cell in enumerate(nb["cells"]):
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if cell["cell_type"] != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        own = nbt.solution_cells_before(nb, meta["grade_id"])
        assert own, f"{chapter_id}: test cell {meta['grade_id']!r} has no solution cell before it"
        mentioned = set().union(*(_names(nbt.source(c)) for c in nb["cells"][own[0]:index] if c["cell_type"] == "code"))
        checked = {a.id for n in ast.walk(ast.parse(nbt.source(cell))) if isinstance(n, ast.Call)
                   and isinstance(n.func, ast.Name) and n.func.id.startswith("check_")
                   for a in n.args if isinstance(a, ast.Name)}
        assert checked, f"{chapter_id}: test cell {meta['grade_id']!r} calls no check_* on a name"
        assert checked <= mentioned, (f"{chapter_id}: test cell {meta['grade_id']!r} checks {sorted(checked - mentioned)}, "
                                      "which its own exercise's cells never define or use")


@pytest.mark.slow
@pytest.mark.parametrize("chapter_id", CHAPTERS)
def test_learner_notebook_with_the_reference_answers_grades_exactly(chapter_id: str, tmp_path) -> None:
    """One execution per chapter proves both directions (the chapter is the slowest thing CI runs, so it runs
    once). The learner's notebook gets the reference answer of every exercise but the last pasted in, as a
    learner would write them, and is saved under a name the learner chose. Graded with the hidden tests:
    every pasted answer scores its full points in the very notebook learners get, so the references pass
    and the release is wired to its checks; the last exercise, still holding its stub, reads "not attempted"
    and scores 0. (Each reference passing its thorough check on its own, and each stub reading "not
    attempted", is also proven exercise by exercise in test_exercises.py and test_mutation.py; the last
    exercise's reference there.)"""
    chapter = CURRICULUM.chapter(chapter_id)
    *solved, left = chapter.exercises
    learner = nbt.load(ROOT / "notebooks" / f"{chapter_id}.ipynb")
    source = nbt.load(ROOT / "solutions" / f"{chapter_id}.ipynb")
    for exercise in solved:
        learner = nbt.solve_exercise(learner, source, exercise.id)
    path = nbt.save(learner, tmp_path / "my attempt (renamed).ipynb")
    result = grade_notebook(path, CURRICULUM, ROOT)
    by_id = {e.id: e for e in result.exercises}
    wrong = {e.id: (by_id[e.id].status, by_id[e.id].points, by_id[e.id].message) for e in solved
             if by_id[e.id].status != PASSED or by_id[e.id].points != e.points}
    assert not wrong, f"reference answers that do not score in the learner's notebook: {wrong}"
    assert (by_id[left.id].status, by_id[left.id].points) == (NOT_ATTEMPTED, 0), by_id[left.id]
    assert result.max_points == chapter.max_points
    assert json.loads(json.dumps(result.to_json()))["points"] == chapter.max_points - left.points
