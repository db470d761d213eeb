"""Instructor cohorts end to end: `roadmap cohort init / grade / report` on a synthetic cohort.

The course is the tiny two-chapter fixture (`cohort_fixture.py`), so these tests do not
depend on the real chapters. The slow tests run the real pipeline: worker processes,
kernels, nbgrader's autograder and gradebook.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from safety_roadmap import sandbox
from safety_roadmap.cohort import feedback, grade, integrity, layout
from safety_roadmap.cohort.create import init_cohort
from safety_roadmap.cohort.report import collect_outcomes
from safety_roadmap.curriculum import load_curriculum
from safety_roadmap.errors import RoadmapError

from . import cohort_fixture as fx

TIMEOUT = "6"      # seconds per cell: the endless loops cost this much
MEMORY = "1024"    # MB of address space per kernel: plenty for NumPy, not for the memory bomb
EXPORT_COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                  "raw_score", "late_submission_penalty", "score", "max_score"]


def roadmap(*args: str, root: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, SAFETY_ROADMAP_ROOT=str(root), SAFETY_ROADMAP_PROGRESS_DB=str(root / "progress.db"))
    return subprocess.run([sys.executable, "-m", "safety_roadmap", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def make_cohort_dir(tmp_path: Path) -> tuple[Path, Path]:
    root = fx.make_course(tmp_path / "course")
    course_dir = tmp_path / "cohort"
    init_cohort(course_dir, load_curriculum(root / "curriculum.yaml"), root)
    return root, course_dir


def scores(course_dir: Path) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    for student, assignment, _, cell, auto, manual, _ in fx.gradebook_state(course_dir / "gradebook.db")["grades"]:
        out.setdefault((student, assignment), {})[cell] = manual if manual is not None else auto
    return out


def snapshot_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- init (no notebook runs)


def test_init_makes_an_nbgrader_course(tmp_path: Path) -> None:
    root, course_dir = make_cohort_dir(tmp_path)
    for chapter in (fx.ALPHA, fx.BETA):
        assert (course_dir / "source" / chapter / f"{chapter}.ipynb").is_file()
        released = (course_dir / "release" / chapter / f"{chapter}.ipynb").read_text()
        assert "BEGIN SOLUTION" not in released and fx.HIDDEN_MARK not in released
    assert layout.assignments(course_dir) == [fx.ALPHA, fx.BETA]
    config = (course_dir / "nbgrader_config.py").read_text()
    assert "add_missing_cells = True" in config and "HideHiddenTests" in config
    cfg = layout.load_file_config(course_dir)
    assert cfg.CourseDirectory.course_id == layout.COURSE_ID
    # running it again, or naming a chapter that is already there, changes nothing
    before = snapshot_files(course_dir / "source") | {"gb": (course_dir / "gradebook.db").read_bytes()}
    lines = init_cohort(course_dir, load_curriculum(root / "curriculum.yaml"), root, [fx.ALPHA])
    assert lines == [f"{fx.ALPHA}: already in the course (left unchanged)"]
    assert snapshot_files(course_dir / "source") | {"gb": (course_dir / "gradebook.db").read_bytes()} == before


def test_init_refuses_a_folder_in_use_and_unknown_chapters(tmp_path: Path) -> None:
    root = fx.make_course(tmp_path / "course")
    cur = load_curriculum(root / "curriculum.yaml")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(RoadmapError, match="not empty"):
        init_cohort(busy, cur, root)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    with pytest.raises(RoadmapError, match="no chapter '99_nope'"):
        init_cohort(tmp_path / "new", cur, root, ["99_nope"])
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- pieces (no notebook runs)


def test_feedback_stripping_removes_hidden_source_and_tracebacks() -> None:
    src = "check(f)\n### BEGIN HIDDEN TESTS\ncheck(f, thorough=True)  # secret\n### END HIDDEN TESTS\nprint('ok')"
    assert feedback.strip_hidden(src) == "check(f)\n# (hidden tests were run here)\nprint('ok')"
    nb = {"cells": [{"source": src}]}
    assert feedback.hidden_lines(nb) == {"check(f, thorough=True)  # secret"}
    # syntax highlighting splits a line into spans; the leak check must still see it
    page = '<span class="n">check</span><span class="p">(</span>f, thorough=True)  <span># secret</span>'
    assert feedback.leaked(page, feedback.hidden_lines(nb)) == ["check(f, thorough=True)  # secret"]
    assert feedback.leaked("<p>check(f)</p>", feedback.hidden_lines(nb)) == []


def test_unusable_submissions_are_recognised_before_anything_runs(tmp_path: Path) -> None:
    folder = tmp_path / "submitted" / "s" / "a"
    folder.mkdir(parents=True)
    (folder / "Untitled.ipynb").write_text("{}")
    sub = grade.Submission("s", "a", folder, ["a"])
    sub.files, _ = grade._snapshot(folder)
    assert "missing notebook" in grade._notebook_problem(sub) and "rename it to a.ipynb" in grade._notebook_problem(sub)
    sub.files = {"a.ipynb": b'{"cells": ['}
    assert grade._notebook_problem(sub).startswith("corrupt notebook: a.ipynb is not valid JSON")
    sub.files = {"a.ipynb": b"\xff\xfe"}
    assert "not UTF-8" in grade._notebook_problem(sub)
    sub.files = {"a.ipynb": b'{"hello": 1}'}
    assert "not a notebook" in grade._notebook_problem(sub)


def test_notebooks_nbgrader_would_refuse_are_named_before_anything_runs(tmp_path: Path) -> None:
    _, course_dir = make_cohort_dir(tmp_path)
    ids = grade._grade_ids(course_dir)
    assert ids == {fx.ALPHA: {"double", "add_one"}, fx.BETA: {"square", "total"}}
    assert grade.metadata_problem(fx.release(course_dir, fx.ALPHA), fx.ALPHA, ids) == ""
    other = grade.metadata_problem(fx.release(course_dir, fx.BETA), fx.ALPHA, ids)
    assert other == f"this is {fx.BETA}'s notebook (its graded cells are {fx.BETA}'s), handed in as {fx.ALPHA}"
    renamed = fx.edit(fx.release(course_dir, fx.ALPHA), "double",
                      lambda c: c["metadata"]["nbgrader"].update(grade_id="double_v2"))
    assert "'double_v2' is not one of 01_alpha's" in grade.metadata_problem(renamed, fx.ALPHA, ids)
    no_id = fx.edit(fx.release(course_dir, fx.ALPHA), "double", lambda c: c["metadata"]["nbgrader"].pop("grade_id"))
    assert "KeyError: 'grade_id'" in grade.metadata_problem(no_id, fx.ALPHA, ids)


def test_nbgrader_failures_show_the_real_cause_without_temporary_paths() -> None:
    log = ("[AutogradeApp | ERROR] There was an error processing assignment: /tmp/roadmap-cohort-x1/grade-y/"
           "course/submitted/s/01_alpha\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
           "RuntimeError: Inconsistent checksums for cell double\n"
           "[AutogradeApp | ERROR] There was an error processing assignment '01_alpha' for student 's'\n"
           "nbgrader.api.NbGraderException: Please see the the above traceback for details on the specific errors")
    text = grade.explain({"log": log})
    assert text.startswith("RuntimeError: Inconsistent checksums for cell double (a test or read-only cell")
    assert "/tmp" not in text
    assert grade.explain({"log": "KeyError: 'grade_id'"}).endswith("(a cell's grade id was renamed or removed)")


def test_execution_problems_are_named() -> None:
    def err(name: str, value: str = "") -> dict:
        return {"output_type": "error", "ename": name, "evalue": value, "traceback": []}
    nb = {"cells": [{"outputs": [err("CellTimeoutError")]}, {"outputs": [err("MemoryError")]},
                    {"outputs": [err("DeadKernelError")]}, {"outputs": [err("NameError")]}]}
    found = grade.execution_problems(nb, 6, 1024)
    assert found == ["cell 1 ran past the 6 s time limit and was interrupted",
                     "cell 2 ran out of memory (limit 1024 MB per kernel)",
                     "the kernel died in cell 3 (exit(), a crash, or out of memory); the cells after it were not run"]


def test_template_gradebook_keeps_assignments_and_no_students(tmp_path: Path) -> None:
    _, course_dir = make_cohort_dir(tmp_path)
    sub = grade.Submission("someone", fx.ALPHA, course_dir, [fx.ALPHA])
    grade.record_zero(course_dir, sub, course_dir / "gradebook.db")
    assert fx.gradebook_state(course_dir / "gradebook.db")["students"]
    grade.make_template(course_dir / "gradebook.db", tmp_path / "template.db")
    state = fx.gradebook_state(tmp_path / "template.db")
    assert state["students"] == [] and state["grades"] == []
    assert b"someone" not in (tmp_path / "template.db").read_bytes()   # not even in free pages
    assert layout.assignments(course_dir) == [fx.ALPHA, fx.BETA]


# --------------------------------------------------------------------------- the whole cohort

def grade_args(course_dir: Path, *extra: str, workers: str = "2") -> list[str]:
    return ["cohort", "grade", str(course_dir), "--workers", workers, "--timeout", TIMEOUT, "--memory-mb", MEMORY,
            *extra]


def outputs(course_dir: Path, student: str, chapter: str = fx.ALPHA) -> str:
    """Everything a submission's cells printed, as graded (its own code's findings included)."""
    nb = json.loads((course_dir / "autograded" / student / chapter / f"{chapter}.ipynb").read_text())
    return "\n".join("".join(o.get("text", "")) if isinstance(o.get("text", ""), (str, list)) else ""
                     for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.slow
def test_cohort_end_to_end(tmp_path: Path) -> None:
    """One graded cohort, many assertions: honest students, broken kernels, and every cheat of issue 19."""
    if sandbox.unavailable():
        pytest.skip(f"no sandbox here: {sandbox.unavailable()}")
    root, course_dir = make_cohort_dir(tmp_path)
    expected = fx.make_cohort(course_dir)
    expected.update(fx.make_broken_kernels(course_dir))
    cheats, in_kernel = fx.make_cheaters(course_dir)
    expected.update(cheats)
    (course_dir / "submitted" / "perfect" / "99_typo").mkdir()   # a folder for an assignment that does not exist
    # the same honest submissions, graded by plain nbgrader in a copy of the course (before any grading)
    plain = tmp_path / "plain"
    shutil.copytree(course_dir, plain, ignore=shutil.ignore_patterns("submitted"))
    for student in ("perfect", "partial", "untouched"):
        shutil.copytree(course_dir / "submitted" / student, plain / "submitted" / student)
    shutil.rmtree(plain / "submitted" / "perfect" / "99_typo")
    protected = {p: p.read_bytes() for p in [course_dir / "nbgrader_config.py",
                                              *(course_dir / "submitted").rglob("*.ipynb"),
                                              *(course_dir / "source").rglob("*")] if p.is_file()}

    run = roadmap(*grade_args(course_dir), root=root)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "WARNING" not in run.stdout
    out = run.stdout
    (tmp_path / "grade-stdout.txt").write_text(out)   # for a look afterwards (pytest --basetemp keeps it)
    assert f"graded {len(expected)} submission(s)" in out

    # every score, exactly: cheats gained nothing, honest work lost nothing
    got = scores(course_dir)
    assert got == expected
    check_problems_are_named(out)
    check_sandbox_held(course_dir, protected, out)
    check_in_kernel_cheats_are_flagged(course_dir, in_kernel, out)
    check_report(root, course_dir, expected, in_kernel)
    check_same_as_plain_nbgrader(course_dir, plain)
    check_reruns(root, course_dir)


def check_problems_are_named(out: str) -> None:
    for key, fragment in [(f"corrupt/{fx.ALPHA}", "corrupt notebook"), (f"missing/{fx.BETA}", "rename it to"),
                          (f"looper/{fx.ALPHA}", "ran past the 6 s time limit"),
                          (f"looper/{fx.BETA}", "still busy after the interrupt"),
                          (f"crasher/{fx.ALPHA}", "the kernel died in cell"),
                          (f"hog/{fx.BETA}", "ran out of memory (limit 1024 MB"),
                          ("perfect/99_typo", "unknown assignment '99_typo'")]:
        assert any(line.strip().startswith(f"{key}:") and fragment in line for line in out.splitlines()), (key, out)


def check_sandbox_held(course_dir: Path, protected: dict[Path, bytes], out: str) -> None:
    """Writes outside the submission failed, reads found nothing, and no process outlived its sandbox."""
    import psutil

    for path, data in protected.items():
        assert path.read_bytes() == data, f"{path} was changed by a submission"
    vandal = outputs(course_dir, "vandal")
    assert "WROTE" not in vandal and vandal.count("BLOCKED") == 4, vandal
    finder = outputs(course_dir, "finder")
    assert "WROTE" not in finder and "FOUND []" in finder, finder
    reader = outputs(course_dir, "reader")
    assert "CANNOT READ" in reader and "\nREAD " not in reader and not reader.startswith("READ"), reader
    assert str(course_dir) not in reader and "NET blocked" in reader, reader
    procs = [line for line in reader.splitlines() if line.startswith("PROC")]
    assert 1 <= len(procs) <= 3, procs          # its own PID namespace: bwrap's init and the kernel
    assert not any(fx.ESCAPE_MARK in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))
    assert "gradebook.db was changed" not in out


def check_in_kernel_cheats_are_flagged(course_dir: Path, in_kernel: set[str], out: str) -> None:
    """Each in-kernel cheat passed its test cells as nbgrader sees them, yet scores 0 and is flagged."""
    for student in in_kernel:
        nb = json.loads((course_dir / "autograded" / student / fx.ALPHA / f"{fx.ALPHA}.ipynb").read_text())
        tests = [c for c in nb["cells"] if integrity.is_test(c)]
        if student != "patch_core":   # its guard replacement makes nothing raise...
            assert any(integrity.passes(c) for c in tests), student   # ...nbgrader alone would have given points
        lines = [line for line in out.splitlines() if line.strip().startswith(f"{student}/{fx.ALPHA}:")]
        flagged = {ex.strip() for line in lines for ex in line.split(":")[1].split(",")}
        assert {"double", "add_one"} <= flagged, (student, lines)
    honest = [line for line in out.splitlines() if line.strip().startswith(("perfect/", "partial/", "untouched/"))]
    assert honest == [] or all("unknown assignment" in line for line in honest), honest
    state = json.loads((course_dir / ".roadmap" / "graded.json").read_text())["submissions"]
    # and the old "tampered" student (numpy patched): the guard's alarm is a flag too
    assert {k for k, v in state.items() if v.get("flags")} == {f"{s}/{fx.ALPHA}" for s in in_kernel} | {
        f"tampered/{fx.ALPHA}", f"tampered/{fx.BETA}"}
    reasons = " ".join(f["reason"] for f in state[f"transformer/{fx.ALPHA}"]["flags"])
    assert "never ran" in reasons and "input transformer" in reasons
    assert "outside its test cell" in " ".join(f["reason"] for f in state[f"reference_quiz/{fx.ALPHA}"]["flags"])
    assert "reference solutions" in " ".join(f["reason"] for f in state[f"reference_quiz/{fx.ALPHA}"]["flags"])


def check_report(root: Path, course_dir: Path, expected: dict, in_kernel: set[str]) -> None:
    rep = roadmap("cohort", "report", str(course_dir), root=root)
    assert rep.returncode == 0, rep.stderr
    summary_text = (course_dir / "reports" / "summary.txt").read_text()
    assert summary_text.startswith(f"INTEGRITY FLAGS: {len(in_kernel) + 2} submission(s)")
    with (course_dir / "reports" / "grades.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [*EXPORT_COLUMNS, "integrity_flags"]
    students = sorted({s for s, _ in expected})
    assert sorted((r["student_id"], r["assignment"]) for r in rows) == sorted(
        (s, a) for s in students for a in (fx.ALPHA, fx.BETA))
    for r in rows:
        want = sum(expected.get((r["student_id"], r["assignment"]), {}).values())
        assert float(r["score"]) == want, r
        assert float(r["max_score"]) == 3.0
        flagged = (r["student_id"] in in_kernel and r["assignment"] == fx.ALPHA) or r["student_id"] == "tampered"
        both = "add_one;double" if r["assignment"] == fx.ALPHA else "square;total"
        assert r["integrity_flags"] == (both if flagged else ""), r
    assert {r["timestamp"] for r in rows if (r["student_id"], r["assignment"]) in expected} == {"2026-01-15 12:00:00"}
    assert next(r for r in rows if (r["student_id"], r["assignment"]) == ("hog", fx.ALPHA))["timestamp"] == ""

    with (course_dir / "reports" / "exercises.csv").open() as fh:
        summary = {(r["assignment"], r["exercise"]): r for r in csv.DictReader(fh)}
    for (assignment, exercise), row in summary.items():
        values = [pts[exercise] for (s, a), pts in expected.items() if a == assignment]
        full = {"double": 2, "add_one": 1, "square": 1, "total": 2}[exercise]
        assert int(row["submissions"]) == len(values)
        assert float(row["mean_points"]) == pytest.approx(sum(values) / len(values), abs=1e-3)
        assert float(row["share_passing"]) == pytest.approx(sum(v == full for v in values) / len(values), abs=1e-3)
        assert int(row["flagged"]) == (len(in_kernel) + 1 if assignment == fx.ALPHA else 1)
    square = summary[(fx.BETA, "square")]     # partial and hog made the same mistake
    assert square["most_common_failure"].startswith("CheckFailure: `square` is wrong on case 1 of 1")
    assert square["most_common_failure_count"] == "2"
    assert summary[(fx.ALPHA, "double")]["not_gradable"] == "2"   # corrupt and missing
    assert "square" in rep.stdout and "most common failure" in rep.stdout

    outcomes = {(o.student, o.assignment, o.exercise): o for o in collect_outcomes(course_dir)}
    patched = outcomes[("tampered", fx.ALPHA, "double")]
    assert patched.points == 0 and "has been replaced" in patched.message
    assert outcomes[("looper", fx.ALPHA, "add_one")].status == "timed out"
    assert outcomes[("corrupt", fx.BETA, "total")].status == "not gradable"
    assert outcomes[("transformer", fx.ALPHA, "double")].status == "flagged: pending review"

    hidden = feedback.hidden_lines(json.loads((root / "solutions" / f"{fx.ALPHA}.ipynb").read_text()))
    hidden |= feedback.hidden_lines(json.loads((root / "solutions" / f"{fx.BETA}.ipynb").read_text()))
    assert hidden
    pages = sorted((course_dir / "feedback").rglob("*.html"))
    graded = [k for k in expected if k[0] not in ("corrupt", "missing")]
    assert len(pages) == len(graded)
    for page in pages:
        text = feedback.visible_text(page.read_text())
        assert fx.HIDDEN_MARK not in text, page
        assert feedback.leaked(page.read_text(), hidden) == [], page
        assert "hidden tests were run here" in text
    # ...though the notebooks they were made from do hold the hidden tests (so the check above means something)
    assert fx.HIDDEN_MARK in (course_dir / "autograded" / "perfect" / fx.ALPHA / f"{fx.ALPHA}.ipynb").read_text()


def check_same_as_plain_nbgrader(course_dir: Path, plain: Path) -> None:
    """Honest submissions score exactly what plain `nbgrader autograde` gives them."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    for chapter in (fx.ALPHA, fx.BETA):
        done = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", chapter], cwd=plain, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    ours = [g for g in fx.gradebook_state(course_dir / "gradebook.db")["grades"]
            if g[0] in ("perfect", "partial", "untouched")]
    assert ours and ours == fx.gradebook_state(plain / "gradebook.db")["grades"]


def check_reruns(root: Path, course_dir: Path) -> None:
    # a second run, with another worker count, changes nothing at all
    gradebook_bytes = (course_dir / "gradebook.db").read_bytes()
    autograded = snapshot_files(course_dir / "autograded")
    again = roadmap(*grade_args(course_dir, workers="1"), root=root)
    assert again.returncode == 0, again.stderr
    assert "graded 0 submission(s), skipped" in again.stdout
    assert (course_dir / "gradebook.db").read_bytes() == gradebook_bytes
    assert snapshot_files(course_dir / "autograded") == autograded

    # regrading with --force ends in the same gradebook state (merges and zero-scores alike)
    state = fx.gradebook_state(course_dir / "gradebook.db")
    forced = roadmap(*grade_args(course_dir, "--force", "--student", "partial", "--student", "corrupt"), root=root)
    assert forced.returncode == 0, forced.stderr
    assert "graded 4 submission(s)" in forced.stdout
    assert fx.gradebook_state(course_dir / "gradebook.db") == state

    # the instructor accepts a flagged submission: nbgrader's own scores come back, the flags stay listed
    accepted = roadmap(*grade_args(course_dir, "--accept-flagged", "--student", "transformer"), root=root)
    assert accepted.returncode == 0, accepted.stderr
    assert "graded 1 submission(s)" in accepted.stdout and "--accept-flagged" in accepted.stdout
    assert scores(course_dir)[("transformer", fx.ALPHA)] == {"double": 2, "add_one": 1}


@pytest.mark.slow
def test_unsandboxed_grading_is_announced_and_still_keeps_the_gradebook(tmp_path: Path) -> None:
    """--no-sandbox: code that writes to the real gradebook (found by path) changes nobody's grade; the run
    says what happened, keeps the evidence, and the report's header says the cohort ran unsandboxed."""
    root, course_dir = make_cohort_dir(tmp_path)
    nb = fx.release(course_dir, fx.ALPHA)
    for ex in ("double", "add_one"):
        fx.solve(nb, ex)
    fx.submit(course_dir, "honest", fx.ALPHA, nb)
    db = course_dir / "gradebook.db"
    vandal = fx.solve(fx.release(course_dir, fx.ALPHA), "double",
                      f"import sqlite3\ncon = sqlite3.connect({str(db)!r})\n"
                      "con.execute('UPDATE grade SET auto_score = 99')\n"
                      "con.execute(\"INSERT INTO student (id) VALUES ('intruder')\")\n"
                      "con.commit()\ncon.close()\n"
                      "def double(x):\n    return 2 * x")
    fx.submit(course_dir, "vandal", fx.ALPHA, vandal)

    run = roadmap(*grade_args(course_dir, "--no-sandbox"), root=root)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.startswith("WARNING: --no-sandbox")
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "gradebook.db was changed by something other than this run" in errors[0], run.stderr
    assert scores(course_dir) == {("honest", fx.ALPHA): {"double": 2, "add_one": 1},
                                  ("vandal", fx.ALPHA): {"double": 2, "add_one": 0}}
    assert "intruder" not in [s[0] for s in fx.gradebook_state(db)["students"]]
    aside = list((course_dir / ".roadmap").glob("gradebook.changed-*.db"))
    assert len(aside) == 1 and ("intruder", None, None, None) in fx.gradebook_state(aside[0])["students"]
    rep = roadmap("cohort", "report", str(course_dir), root=root)
    assert rep.returncode == 0, rep.stderr
    assert (course_dir / "reports" / "summary.txt").read_text().startswith("WARNING: 2 submission(s) were graded "
                                                                           "with --no-sandbox")


def test_two_grading_runs_never_overlap(tmp_path: Path) -> None:
    _, course_dir = make_cohort_dir(tmp_path)
    held = grade._lock(course_dir)
    try:
        with pytest.raises(RoadmapError, match="already grading"):
            grade._lock(course_dir)
    finally:
        held.close()
    grade._lock(course_dir).close()   # free again once the first run is done
