"""The learner's workspace (issue 13): created from the release, updated without touching their work,
one exercise reset from the release with a backup, reference solutions behind an "are you sure",
and `roadmap grade` with no argument grading what they changed."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest

from safety_roadmap import progress, workspace
from safety_roadmap.grading import NotebookResult

from . import notebook_tools as nbt
from .cli_tools import cli, one_line
from .conftest import ROOT

CH = "01_linear_algebra"


@pytest.fixture()
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(ROOT / "curriculum.yaml", root)
    shutil.copytree(ROOT / "solutions", root / "solutions")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    monkeypatch.setenv("SAFETY_ROADMAP_ROOT", str(root))
    monkeypatch.setenv(workspace.WORKSPACE_ENV, str(tmp_path / "ws"))
    monkeypatch.setenv(progress.DB_ENV, str(tmp_path / "progress.sqlite3"))
    monkeypatch.chdir(tmp_path)
    return root


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cell(nb: dict, grade_id: str) -> dict:
    return next(c for c in nb["cells"] if nbt.grade_id(c) == grade_id)


def test_workspace_is_created_then_updated_without_touching_learner_files(course: Path, capsys, tmp_path) -> None:
    ws = tmp_path / "ws"
    later = course / "notebooks" / "13_activation_patching.ipynb"
    held_back = later.read_bytes()
    later.unlink()                                    # a chapter the course has not shipped yet
    rc, out, err = cli(capsys, "workspace")
    assert rc == 0 and err == "" and "added" in one_line(out)
    assert (ws / f"{CH}.ipynb").read_bytes() == (course / "notebooks" / f"{CH}.ipynb").read_bytes()
    assert not (ws / later.name).exists()

    mine = ws / f"{CH}.ipynb"
    mine.write_text(mine.read_text().replace("raise NotImplementedError()", "return 42  # mine"), encoding="utf-8")
    before = digest(mine)
    later.write_bytes(held_back)                      # the course update brings chapter 13
    rc, out, _ = cli(capsys, "workspace")
    assert rc == 0 and one_line(out, "added 1 chapter", "13_activation_patching")
    assert digest(mine) == before and (ws / later.name).exists()
    rc, out, _ = cli(capsys, "workspace")
    assert rc == 0 and "up to date" in out and digest(mine) == before


def test_workspace_that_is_a_file_is_one_line(course: Path, capsys, tmp_path) -> None:
    (tmp_path / "ws").write_text("not a folder")
    rc, out, err = cli(capsys, "workspace")
    assert rc == 1 and out == "" and one_line(err, "is a file, not a folder")


def test_reset_restores_one_exercise_and_keeps_a_backup(course: Path, capsys, tmp_path) -> None:
    cli(capsys, "workspace")
    path = tmp_path / "ws" / f"{CH}.ipynb"
    nb = nbt.load(path)
    cell(nb, "project_onto_solution")["source"] = "def project_onto(x, direction):\n    return 'my broken try'"
    cell(nb, "project_onto_solution")["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x\n"}]
    cell(nb, "cosine_similarity_solution")["source"] = "def cosine_similarity(a, b):\n    return 'keep me'"
    nbt.save(nb, path)
    old = path.read_text()

    rc, out, err = cli(capsys, "reset", "01", "project_onto")
    assert rc == 0 and err == ""
    line = one_line(out, "reset project_onto", "1 answer cell", "saved as")
    after, release = nbt.load(path), nbt.load(course / "notebooks" / f"{CH}.ipynb")
    assert cell(after, "project_onto_solution")["source"] == cell(release, "project_onto_solution")["source"]
    assert cell(after, "project_onto_solution")["outputs"] == []
    assert "keep me" in nbt.source(cell(after, "cosine_similarity_solution"))   # the rest is untouched
    [backup] = (tmp_path / "ws" / workspace.BACKUPS).iterdir()
    assert backup.read_text() == old and backup.name in line


@pytest.mark.parametrize("args,fragment", [
    (["01", "no_such_exercise"], "valid names: cosine_similarity"),
    (["99", "project_onto"], "no chapter '99'"),
    (["01"], "required"),
])
def test_bad_reset_is_one_line_and_changes_nothing(course: Path, capsys, tmp_path, args, fragment) -> None:
    cli(capsys, "workspace")
    path = tmp_path / "ws" / f"{CH}.ipynb"
    before = digest(path)
    rc, out, err = cli(capsys, "reset", *args)
    assert rc != 0 and out == "" and one_line(err, fragment)
    assert digest(path) == before and not (tmp_path / "ws" / workspace.BACKUPS).exists()


def test_reset_without_a_workspace_or_with_a_deleted_cell(course: Path, capsys, tmp_path) -> None:
    rc, _, err = cli(capsys, "reset", "01", "project_onto")
    assert rc == 1 and one_line(err, "does not exist", "make lab")
    cli(capsys, "workspace")
    path = tmp_path / "ws" / f"{CH}.ipynb"
    nb = nbt.load(path)
    nb["cells"] = [c for c in nb["cells"] if nbt.grade_id(c) != "project_onto_solution"]
    nbt.save(nb, path)
    before = digest(path)
    rc, _, err = cli(capsys, "reset", "01", "project_onto")
    assert rc == 1 and one_line(err, "no cell 'project_onto_solution'", "nothing was changed")
    assert digest(path) == before


def test_solution_asks_first_and_is_recorded(course: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))           # not a terminal: cannot ask
    rc, out, err = cli(capsys, "solution", "01", "project_onto")
    assert rc == 1 and out == "" and one_line(err, "--yes")
    assert progress.solution_views() == {}

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    rc, out, _ = cli(capsys, "solution", "01", "project_onto")
    assert rc == 1 and "not passed it yet" in out and "Not shown." in out and "def project_onto" not in out
    assert progress.solution_views() == {}

    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    rc, out, _ = cli(capsys, "solution", "01", "project_onto")
    assert rc == 0 and "def project_onto" in out and "BEGIN SOLUTION" not in out
    assert progress.solution_views() == {CH: ["project_onto"]}

    monkeypatch.setattr("sys.stdin", io.StringIO(""))           # seen before: no second question
    rc, again, _ = cli(capsys, "solution", "01", "project_onto")
    assert rc == 0 and "def project_onto" in again
    rc, out, _ = cli(capsys, "solution", "04", "sgd_step", "--yes")   # by function name
    assert rc == 0 and "mlp_sgd_step" in out and "def sgd_step" in out

    rc, out, _ = cli(capsys, "status")
    assert rc == 0 and "solution seen: project_onto" in out
    rc, out, _ = cli(capsys, "status", "--json")
    chapters = {c["id"]: c for p in json.loads(out)["phases"] for c in p["chapters"]}
    assert chapters[CH]["solutions_viewed"] == ["project_onto"]
    assert chapters["04_mlp_from_scratch"]["solutions_viewed"] == ["mlp_sgd_step"]


def test_grade_without_arguments_grades_the_changed_workspace_notebooks(course: Path, capsys, monkeypatch,
                                                                         tmp_path) -> None:
    cli(capsys, "workspace")
    rc, out, err = cli(capsys, "grade")
    assert rc == 1 and out == "" and one_line(err, "nothing to grade")
    opened = tmp_path / "ws" / "02_calculus_optimization.ipynb"   # opened and saved, nothing answered
    nb = nbt.load(opened)
    nb["metadata"]["widgets"] = {}
    nbt.save(nb, opened)
    mine = tmp_path / "ws" / f"{CH}.ipynb"
    nb = nbt.load(mine)
    cell(nb, "cosine_similarity_solution")["source"] = "def cosine_similarity(a, b):\n    return 0"
    nbt.save(nb, mine)
    graded = []

    def fake_grade(path, cur, root, *, timeout):
        graded.append(Path(path))
        return NotebookResult(str(path), CH)

    monkeypatch.setattr("safety_roadmap.grading.grade_notebook", fake_grade)
    rc, out, err = cli(capsys, "grade", "--no-record")
    assert rc == 0 and graded == [mine] and "grading the 1 notebook(s) in" in err, err


@pytest.mark.skipif(shutil.which("make") is None, reason="`make` is not installed")
def test_make_lab_opens_the_workspace_and_shows_install_progress() -> None:
    import subprocess

    def dry(*targets: str) -> str:
        return subprocess.run(["make", "-n", "-B", *targets, "VENV=/nonexistent-venv"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout

    install = dry("/nonexistent-venv/.installed")
    installs = [line for line in install.splitlines() if "pip install" in line]
    assert len(installs) == 2, installs   # PyTorch with pip, the rest with uv
    for line in installs:
        assert "--quiet" not in line and " -q" not in line, "the first `make lab` must not install silently"
    assert "==> Setting up" in install and "takes a few minutes" in install
    lab = dry("lab").splitlines()
    assert any(line.endswith("roadmap workspace") for line in lab)
    assert any("jupyter lab workspace" in line for line in lab)
    assert "/workspace/" in (ROOT / ".gitignore").read_text().splitlines()
