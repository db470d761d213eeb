"""Learner progress: `roadmap grade` records, `roadmap status` shows the map, bad files are left alone.

Every test points $SAFETY_ROADMAP_PROGRESS_DB at a temporary file: none touches the real home.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from safety_roadmap import progress
from safety_roadmap.curriculum import load_curriculum
from safety_roadmap.grading import ExerciseResult, NotebookResult

from . import cohort_fixture as fx

from .cli_tools import cli, one_line


@pytest.fixture()
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = fx.make_course(tmp_path / "course")
    monkeypatch.setenv("SAFETY_ROADMAP_ROOT", str(root))
    monkeypatch.setenv(progress.DB_ENV, str(tmp_path / "data" / "progress.sqlite3"))
    return root


def result(chapter: str, **points: float) -> NotebookResult:
    full = {"double": 2, "add_one": 1, "square": 1, "total": 2}
    res = NotebookResult(notebook=f"/somewhere/{chapter}.ipynb", chapter=chapter)
    for ex in fx.CHAPTER_EXERCISES[chapter]:
        p = points.get(ex, 0)
        res.exercises.append(ExerciseResult(ex, p, full[ex], "passed" if p == full[ex] else "failed", ""))
    return res


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_database_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(progress.DB_ENV, str(tmp_path / "mine.db"))
    assert progress.db_path() == tmp_path / "mine.db"
    monkeypatch.setenv(progress.DB_ENV, "~/x.db")
    assert progress.db_path() == Path.home() / "x.db"
    monkeypatch.delenv(progress.DB_ENV)
    from platformdirs import user_data_path
    assert progress.db_path() == user_data_path("safety-roadmap", appauthor=False) / "progress.sqlite3"


def test_status_before_any_grading_creates_nothing(course: Path) -> None:
    status = progress.learner_status(load_curriculum(course / "curriculum.yaml"))
    assert not progress.db_path().exists()
    [alpha], [beta] = status.phases[0].chapters, status.phases[1].chapters
    assert alpha.unlocked and not alpha.started and alpha.points == 0 and alpha.max_points == 3
    assert not beta.unlocked and beta.prerequisites == [fx.ALPHA]
    assert status.next == fx.ALPHA and status.points == 0 and status.max_points == 6
    assert all(p.checkpoints == [] for p in status.phases)


def test_grades_add_up_to_the_map(course: Path) -> None:
    cur = load_curriculum(course / "curriculum.yaml")
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    progress.record(result(fx.ALPHA, double=2), when=t0)
    status = progress.learner_status(cur)
    alpha = status.phases[0].chapters[0]
    assert (alpha.points, alpha.complete, alpha.attempts) == (2, False, 1)
    assert {e.id: e.status for e in alpha.exercises} == {"double": "passed", "add_one": "failed"}
    assert status.next == fx.ALPHA and not status.phases[1].chapters[0].unlocked

    # a later attempt that breaks `double` but solves `add_one`: each exercise keeps its best
    progress.record(result(fx.ALPHA, add_one=1), when=t0 + timedelta(hours=1))
    status = progress.learner_status(cur)
    alpha, beta = status.phases[0].chapters[0], status.phases[1].chapters[0]
    assert (alpha.points, alpha.complete, alpha.attempts) == (3, True, 2)
    assert alpha.last_graded == (t0 + timedelta(hours=1)).isoformat(timespec="seconds")
    assert status.phases[0].complete and status.phases[0].checkpoints == fx.CURRICULUM["phases"][0]["checkpoints"]
    assert beta.unlocked and status.next == fx.BETA and status.phases[1].checkpoints == []

    text = progress.format_status(status, cur.title)
    assert "✓ 01_alpha" in text and "3/3" in text and "<- next" in text.split("02_beta")[1].splitlines()[0]
    assert "Can you double a vector without looking it up?" in text
    as_json = json.loads(json.dumps(status.to_json()))
    assert as_json["next"] == fx.BETA and as_json["points"] == 3 and as_json["max_points"] == 6
    assert as_json["phases"][0]["chapters"][0]["exercises"][1] == {
        "id": "add_one", "points": 1.0, "max_points": 1.0, "status": "passed"}

    progress.record(result(fx.BETA, square=1, total=2))
    status = progress.learner_status(cur)
    assert status.next is None and all(p.complete for p in status.phases)
    assert "Every chapter is complete." in progress.format_status(status, cur.title)


def test_status_command_table_and_json(course: Path, capsys: pytest.CaptureFixture) -> None:
    progress.record(result(fx.ALPHA, double=2, add_one=1))
    rc, out, err = cli(capsys, "status")
    assert rc == 0 and err == ""
    assert "Phase 1: Basics  (complete)" in out and "02_beta" in out and str(progress.db_path()) in out
    rc, out, _ = cli(capsys, "status", "--json")
    data = json.loads(out)
    assert rc == 0 and data["next"] == fx.BETA and data["database"] == str(progress.db_path())


@pytest.mark.parametrize("make,fragment", [
    (lambda p: p.write_bytes(b"not a database at all" * 10), "is not an SQLite file"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: sqlite3.connect(p).execute("CREATE TABLE photos (id INTEGER)").connection.commit(),
     "not a roadmap progress database"),
    (lambda p: _meta(p, "safety-roadmap-progress", "0"), "format 0 is older"),
    (lambda p: _meta(p, "safety-roadmap-progress", "7"), "format 7 is newer"),
    (lambda p: _meta(p, "someone-else", "1"), "not a roadmap progress database"),
    (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x07" * 3000), "damaged"),
])
def test_bad_database_files_are_reported_and_left_alone(course: Path, capsys: pytest.CaptureFixture,
                                                         make, fragment: str) -> None:
    path = progress.db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    make(path)
    before = digest(path)
    with pytest.raises(progress.ProgressError, match=fragment):
        progress.record(result(fx.ALPHA, double=2))
    rc, out, err = cli(capsys, "status")
    assert rc == 1 and out == ""
    one_line(err, "roadmap status: error:", str(path), fragment, "left as it is")
    assert digest(path) == before, "a bad progress file must never be replaced or changed"


def _meta(path: Path, fmt: str, version: str) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("format", fmt), ("version", version)])
    con.commit()
    con.close()


def test_database_path_that_is_a_folder(course: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.setenv(progress.DB_ENV, str(course))
    rc, _, err = cli(capsys, "status")
    assert rc == 1
    one_line(err, "is a folder", progress.DB_ENV)


@pytest.mark.slow
def test_grade_records_progress(course: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """`roadmap grade` records; a bad progress file still gets the grades printed, one error line, untouched."""
    learner = fx.learner_version(course, fx.ALPHA)
    fx.solve(learner, "double")
    path = tmp_path / "my work.ipynb"
    path.write_text(json.dumps(learner))

    db = tmp_path / "progress.sqlite3"
    monkeypatch.setenv(progress.DB_ENV, str(db))
    rc, out, err = cli(capsys, "grade", str(path), "--timeout", "60", "--no-record")
    assert rc == 0 and "2/3" in out and not db.exists(), err
    rc, out, err = cli(capsys, "grade", str(path), "--timeout", "60")
    assert rc == 0 and err == "", err
    status = progress.learner_status(load_curriculum(course / "curriculum.yaml"), db)
    assert status.phases[0].chapters[0].points == 2 and status.phases[0].chapters[0].attempts == 1

    bad = tmp_path / "bad.sqlite3"
    bad.write_text("garbage")
    monkeypatch.setenv(progress.DB_ENV, str(bad))
    rc, out, err = cli(capsys, "grade", str(path), "--timeout", "60")
    assert rc == 1 and "2/3" in out   # the grades are still shown
    one_line(err, "progress not recorded", str(bad))
    assert bad.read_text() == "garbage"


def test_status_warns_when_a_chapter_is_complete_before_its_prerequisites(course: Path, capsys) -> None:
    """Issue 13: chapter 13 complete while 12 is locked used to pass without a word."""
    progress.record(result(fx.BETA, square=1, total=2))
    rc, out, err = cli(capsys, "status")
    assert rc == 0 and err == ""
    [warning] = [line for line in out.splitlines() if line.startswith("Warning:")]
    assert f"{fx.BETA} is complete, but its prerequisite {fx.ALPHA} is not" in warning
    rc, out, _ = cli(capsys, "status", "--json")
    assert [w for w in json.loads(out)["warnings"] if fx.BETA in w and fx.ALPHA in w]
    progress.record(result(fx.ALPHA, double=2, add_one=1))
    rc, out, _ = cli(capsys, "status")
    assert "Warning:" not in out
