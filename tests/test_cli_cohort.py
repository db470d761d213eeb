"""`roadmap cohort ...` from the command line: the first steps, and every kind of bad input.

Each bad input gives one clear line on stderr, a non-zero exit, and changes nothing on disk.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest


from . import cohort_fixture as fx

from .cli_tools import cli


@pytest.fixture()
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = fx.make_course(tmp_path / "course")
    monkeypatch.setenv("SAFETY_ROADMAP_ROOT", str(root))
    monkeypatch.setenv("SAFETY_ROADMAP_PROGRESS_DB", str(tmp_path / "progress.db"))
    return root


def one_line_error(result: tuple[int, str, str], *fragments: str) -> None:
    rc, _, err = result
    assert rc != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def cohort(course: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    rc, out, err = cli(capsys, "cohort", "init", str(tmp_path / "cohort"))
    assert rc == 0, err
    assert "01_alpha: source/01_alpha/, release/01_alpha/ and the gradebook entry" in out
    assert "roadmap cohort grade" in out
    return tmp_path / "cohort"


def test_an_empty_cohort_grades_and_reports_nothing(cohort: Path, capsys) -> None:
    rc, out, err = cli(capsys, "cohort", "grade", str(cohort))
    assert rc == 0 and err == ""
    assert "no submissions in" in out and "graded 0 submission(s)" in out
    rc, out, err = cli(capsys, "cohort", "report", str(cohort))
    assert rc == 0 and err == "", err
    assert "no graded submissions yet" in out
    assert (cohort / "reports" / "grades.csv").read_text().startswith("assignment,duedate,timestamp,student_id")


@pytest.mark.parametrize("args,fragments", [
    (["cohort"], ["roadmap cohort: error:", "required"]),
    (["cohort", "grade"], ["the following arguments are required: DIR"]),
    (["cohort", "frobnicate", "x"], ["invalid choice: 'frobnicate'"]),
    (["cohort", "grade", "{cohort}", "--workers", "0"], ["--workers", "positive"]),
    (["cohort", "grade", "{cohort}", "--workers", "two"], ["--workers", "whole number"]),
    (["cohort", "grade", "{cohort}", "--timeout", "-3"], ["--timeout", "positive"]),
    (["cohort", "grade", "{cohort}", "--memory-mb", "12"], ["--memory-mb must be at least 256"]),
    (["cohort", "grade", "{cohort}", "--assignment", "03_gamma"], ["no assignment '03_gamma'", "01_alpha, 02_beta"]),
    (["cohort", "grade", "{cohort}", "--student", "nobody"], ["no student 'nobody'"]),
    (["cohort", "grade", "{tmp}/nowhere"], ["no such folder", "roadmap cohort init"]),
    (["cohort", "grade", "{tmp}"], ["not a cohort course folder"]),
    (["cohort", "grade", "{cohort}/nbgrader_config.py"], ["is a file"]),
    (["cohort", "report", "{tmp}/nowhere"], ["roadmap cohort report: error:", "no such folder"]),
    (["cohort", "report", "{course}"], ["not a cohort course folder"]),
    (["cohort", "init", "{course}"], ["exists and is not empty"]),
    (["cohort", "init", "{tmp}/new", "99_nope"], ["no chapter '99_nope'"]),
    (["cohort", "init", "{cohort}/nbgrader_config.py"], ["is a file, not a folder"]),
    (["cohort", "init", "{tmp}/new", "--timeout", "0"], ["--timeout", "positive"]),
])
def test_bad_cohort_input_is_one_line(cohort: Path, course: Path, tmp_path: Path, capsys, args, fragments) -> None:
    before = tree(tmp_path)
    args = [a.format(cohort=cohort, tmp=tmp_path, course=course) for a in args]
    one_line_error(cli(capsys, *args), *fragments)
    assert tree(tmp_path) == before, "a rejected command must not change anything"
    assert not (tmp_path / "new").exists()


def test_broken_config_and_gradebook_are_one_line(cohort: Path, capsys) -> None:
    config = cohort / "nbgrader_config.py"
    saved = config.read_text()
    config.write_text(saved + "\nc.Execute.timeout = = 3\n")
    one_line_error(cli(capsys, "cohort", "grade", str(cohort), "--trust-config"), "nbgrader_config.py: cannot be loaded")
    config.write_text(saved)
    assert cli(capsys, "cohort", "grade", str(cohort), "--trust-config")[0] == 0
    (cohort / "gradebook.db").write_bytes(b"this is no database")
    one_line_error(cli(capsys, "cohort", "grade", str(cohort)), "gradebook.db: not a readable nbgrader gradebook")
    assert (cohort / "gradebook.db").read_bytes() == b"this is no database"


def test_status_and_hint_need_the_course(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SAFETY_ROADMAP_ROOT", str(tmp_path / "nowhere"))
    monkeypatch.setenv("SAFETY_ROADMAP_PROGRESS_DB", str(tmp_path / "progress.db"))
    for args in (["status"], ["hint", "01_alpha", "double"], ["cohort", "init", str(tmp_path / "c")]):
        one_line_error(cli(capsys, *args), "SAFETY_ROADMAP_ROOT")
    assert not (tmp_path / "c").exists() and not (tmp_path / "progress.db").exists()


def test_a_changed_config_is_never_run_until_trusted(cohort: Path, capsys) -> None:
    """nbgrader_config.py is Python: code appended to it (by anyone) must not run in the next command."""
    config = cohort / "nbgrader_config.py"
    marker = cohort.parent / "config-code-ran"
    config.write_text(config.read_text() + f"\nopen({str(marker)!r}, 'w').write('ran')\n")
    for command in ("grade", "report"):
        one_line_error(cli(capsys, "cohort", command, str(cohort)), "nbgrader_config.py changed since it was last "
                       "trusted", "--trust-config", ".roadmap/nbgrader_config.trusted.py")
    assert not marker.exists()
    assert not (cohort / "reports").exists()
    # the instructor reviewed the change and accepts it
    rc, _, err = cli(capsys, "cohort", "report", str(cohort), "--trust-config")
    assert rc == 0, err
    assert marker.exists()
    assert (cohort / ".roadmap" / "nbgrader_config.trusted.py").read_text() == config.read_text()
    assert cli(capsys, "cohort", "grade", str(cohort))[0] == 0
