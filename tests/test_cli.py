"""The `roadmap` command as a learner meets it: list, build, grade, and every kind of bad input.

Each bad input must give exactly one clear line on stderr, a non-zero exit,
and leave the learner's file untouched.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from . import notebook_tools as nbt
from .conftest import ROOT

CHAPTER = "01_linear_algebra"


def roadmap(*args: str, cwd: Path | None = None, root: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SAFETY_ROADMAP_ROOT", None)
    env.pop("SAFETY_ROADMAP_WORKSPACE", None)   # a course copy's own workspace/, never the developer's
    if root is not None:
        env["SAFETY_ROADMAP_ROOT"] = str(root)
    return subprocess.run([sys.executable, "-m", "safety_roadmap", *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(run: subprocess.CompletedProcess, *fragments: str) -> None:
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{run.stderr}"
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(ROOT / "curriculum.yaml", root)
    shutil.copytree(ROOT / "solutions", root / "solutions")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    return root


# --------------------------------------------------------------------------- list


def test_list_shows_phases_and_chapters(curriculum) -> None:
    run = roadmap("list")
    assert run.returncode == 0, run.stderr
    assert "Phase 1: Core technical skills" in run.stdout
    assert CHAPTER in run.stdout and "difficulty 2/5" in run.stdout
    as_json = json.loads(roadmap("list", "--json").stdout)
    assert [c["id"] for p in as_json["phases"] for c in p["chapters"]] == [c.id for c in curriculum.chapters]


def test_list_from_another_directory(tmp_path: Path) -> None:
    run = roadmap("list", cwd=tmp_path)
    assert run.returncode == 0 and CHAPTER in run.stdout


def test_malformed_curriculum_is_one_line(tmp_path: Path) -> None:
    root = copy_course(tmp_path)
    text = (root / "curriculum.yaml").read_text().replace("hours: 5", "hours: -5", 1)
    (root / "curriculum.yaml").write_text(text)
    one_line_error(roadmap("list", root=root), "curriculum.yaml", "phases[0].chapters[0].hours", "> 0")
    (root / "curriculum.yaml").write_text("phases: [\n")
    one_line_error(roadmap("list", root=root), "not valid YAML")


def test_missing_course_root_is_one_line(tmp_path: Path) -> None:
    one_line_error(roadmap("list", root=tmp_path / "nowhere"), "SAFETY_ROADMAP_ROOT")


def test_usage_errors_exit_non_zero(tmp_path: Path) -> None:
    assert roadmap().returncode == 2
    one_line_error(roadmap("grade", root=copy_course(tmp_path)), "nothing to grade")   # no workspace yet
    one_line_error(roadmap("grade", "x.ipynb", "--timeout", "0"), "--timeout")


# --------------------------------------------------------------------------- build


def test_build_reproduces_the_committed_notebook(tmp_path: Path) -> None:
    root = copy_course(tmp_path)
    (root / "notebooks" / f"{CHAPTER}.ipynb").unlink()
    run = roadmap("build", CHAPTER, root=root)
    assert run.returncode == 0, run.stderr
    assert digest(root / "notebooks" / f"{CHAPTER}.ipynb") == digest(ROOT / "notebooks" / f"{CHAPTER}.ipynb")


def test_build_strips_outputs_from_the_source(tmp_path: Path) -> None:
    root = copy_course(tmp_path)
    src = root / "solutions" / f"{CHAPTER}.ipynb"
    nb = nbt.load(src)
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hello\n"}]
    code["execution_count"] = 3
    nbt.save(nb, src)
    run = roadmap("build", CHAPTER, root=root)
    assert run.returncode == 0 and "cleaned outputs" in run.stdout
    assert digest(src) == digest(ROOT / "solutions" / f"{CHAPTER}.ipynb")


def test_build_unknown_chapter_is_one_line(tmp_path: Path) -> None:
    one_line_error(roadmap("build", "99_nothing", root=copy_course(tmp_path)), "no chapter '99_nothing'")


# --------------------------------------------------------------------------- grade: bad input


@pytest.mark.parametrize("content,fragment", [
    ('{"cells": [', "corrupt JSON at line"),
    ('{"hello": "world"}', "not a notebook"),
    ("\x89PNG\x00\x00binary", "not a notebook"),
    ('[1, 2, 3]', "not a notebook"),
])
def test_grade_rejects_files_that_are_not_notebooks(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "mine.ipynb"
    path.write_bytes(content.encode("latin-1"))
    before = digest(path)
    one_line_error(roadmap("grade", str(path)), str(path), fragment)
    assert digest(path) == before, "grading must never change the learner's file"


def test_grade_rejects_a_notebook_of_no_chapter(tmp_path: Path) -> None:
    nb = nbt.load(ROOT / "notebooks" / f"{CHAPTER}.ipynb")
    nb["cells"] = [c for c in nb["cells"] if "nbgrader" not in c.get("metadata", {})]
    path = nbt.save(nb, tmp_path / "plain.ipynb")
    one_line_error(roadmap("grade", str(path)), "not a notebook of this course")


def test_grade_missing_file_and_folder(tmp_path: Path) -> None:
    one_line_error(roadmap("grade", str(tmp_path / "gone.ipynb")), "no such file")
    one_line_error(roadmap("grade", str(tmp_path)), "is a folder")


# --------------------------------------------------------------------------- grade: learner code that misbehaves


@pytest.mark.slow
def test_grade_stops_an_endless_loop_and_grades_the_rest(tmp_path: Path) -> None:
    learner = nbt.load(ROOT / "notebooks" / f"{CHAPTER}.ipynb")
    learner = nbt.solve_exercise(learner, nbt.load(ROOT / "solutions" / f"{CHAPTER}.ipynb"), "mix_values")
    for cell in learner["cells"]:
        if nbt.grade_id(cell) == "project_onto_solution":
            cell["source"] = "def project_onto(x, direction):\n    pass\n\nwhile True:\n    pass"
    nbt.save(learner, tmp_path / "loops.ipynb")
    before = digest(tmp_path / "loops.ipynb")
    # 10 s per cell: long enough for the setup cell on a loaded 2-core machine (4 s was not, at load 15)
    run = roadmap("grade", "loops.ipynb", "--timeout", "10", "--json", cwd=tmp_path)  # relative path, other cwd
    assert run.returncode == 0, run.stderr
    [result] = json.loads(run.stdout)
    status = {e["id"]: e["status"] for e in result["exercises"]}
    assert status["project_onto"] == "timed out"
    assert status["mix_values"] == "passed"
    assert status["cosine_similarity"] == "not attempted"
    assert result["chapter"] == CHAPTER and result["points"] == 2 and result["max_points"] == 16
    assert digest(tmp_path / "loops.ipynb") == before


@pytest.fixture(scope="module")
def graded_mistakes(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path, str]:
    """One `roadmap grade --json` run shared by the tests below (grading is the slow part): a wrong
    cosine_similarity, a project_onto that crashes, and a later answer cell that kills the kernel;
    plus a missing second file. Returns (the run, the notebook, its digest before grading)."""
    tmp = tmp_path_factory.mktemp("mistakes")
    learner = nbt.load(ROOT / "notebooks" / f"{CHAPTER}.ipynb")
    for cell in learner["cells"]:
        if nbt.grade_id(cell) == "cosine_similarity_solution":
            cell["source"] = "def cosine_similarity(a, b):\n    return (a * b).sum(-1)"
        if nbt.grade_id(cell) == "project_onto_solution":
            cell["source"] = "def project_onto(x, direction):\n    return x @ no_such_name"
        if nbt.grade_id(cell) == "low_rank_approximation_solution":
            cell["source"] = "import os\nos._exit(1)"
    path = nbt.save(learner, tmp / "mistakes.ipynb")
    before = digest(path)
    return roadmap("grade", str(path), str(tmp / "missing.ipynb"), "--json", "--no-record"), path, before


@pytest.mark.slow
def test_grade_keeps_the_cells_before_a_dead_kernel_and_names_its_cell(graded_mistakes) -> None:
    """Issue 19: a kernel that dies no longer throws away the exercises graded before it."""
    run, path, before = graded_mistakes
    assert run.returncode == 1 and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(errors) == 2 and "missing.ipynb: no such file" in errors[1]   # the next file is still tried
    for fragment in ("mistakes.ipynb: the kernel died in cell", "low_rank_approximation_solution", "import os",
                     "cells before it were graded"):
        assert fragment in errors[0], errors[0]
    [result] = json.loads(run.stdout)
    status = {e["id"]: e["status"] for e in result["exercises"]}
    assert status["cosine_similarity"] == "failed" and status["remove_direction"] == "not attempted"
    assert status["low_rank_approximation"] == status["mix_values"] == "not run"
    assert "kernel died earlier, in cell" in result["exercises"][-1]["message"]
    assert "kernel died" in result["problem"] and result["max_points"] == 16
    assert digest(path) == before


@pytest.mark.slow
def test_grade_shows_the_whole_check_message(graded_mistakes) -> None:
    """Issue 13 item 2: the table and --json keep every line of a failure, and a crash its "on case N"."""
    run, _, _ = graded_mistakes
    [result] = json.loads(run.stdout)
    msg = {e["id"]: e["message"] for e in result["exercises"]}
    assert msg["cosine_similarity"].startswith("CheckFailure: `cosine_similarity` is wrong on case")
    assert "\n" in msg["cosine_similarity"] and "expected" in msg["cosine_similarity"]
    assert "got" in msg["cosine_similarity"].split("\n", 1)[1]
    assert "Likely cause: you returned the plain dot product" in msg["cosine_similarity"]
    assert "NameError" in msg["project_onto"] and "on case 1 of" in msg["project_onto"]
    from safety_roadmap.grading import ExerciseResult, NotebookResult, format_table

    table = format_table(NotebookResult(result["notebook"], CHAPTER,
                                        [ExerciseResult(**e) for e in result["exercises"]]), width=80)
    assert all(len(line) <= 80 for line in table.splitlines()[1:])   # the first names the file
    flat = " ".join(table.split())
    for line in msg["cosine_similarity"].splitlines() + msg["project_onto"].splitlines():
        assert " ".join(line.split()) in flat, line
    assert "0/16" in table.splitlines()[-1]
