"""`roadmap cohort grade`: autograde every submission, in parallel, into one gradebook.

How the work is split, and why:

- The parent snapshots each submission (`submitted/<student>/<assignment>/`)
  before any student code runs, and skips those whose bytes, source and settings
  are unchanged since the last run (unless `force`).
- Worker processes (`worker.py`) execute submissions in private scratch courses,
  each with its own kernel, per-cell timeouts and a memory cap. They never open
  the course's gradebook. They are this machine's (`executor.LocalPool`) or, with
  `scheduler`, a Dask cluster's (`executor.DaskExecutor`: tasks carry everything as bytes).
- The parent alone writes grades, one submission at a time, by running nbgrader's
  own autograde on the executed notebook with execution switched off
  (`SaveAutoGrades`, `AssignLatePenalties`): SQLite has a single writer, and the
  scores are exactly what nbgrader computes. It writes into a private working copy
  of the gradebook, which replaces `gradebook.db` once no student code is running
  any more (also after Ctrl-C, so finished work is kept).
- A submission that cannot be graded (no notebook, corrupt JSON, a grading process
  that died or ran past its overall limit) is recorded with zero points, as nbgrader
  does for a missing notebook, and reported; it never stops the others.
- Each kernel runs in a bubblewrap sandbox (`..sandbox`): it sees no course
  folder, gradebook, config or other student, has no network, and every process it
  starts dies with it. Without bwrap, grading refuses unless `sandbox=False`
  (`--no-sandbox`), which the report's header then states. If `gradebook.db`
  changed while submissions ran, the changed file is set aside, not merged.
- Every kernel is armed for tamper detection with a secret per submission; the
  parent checks the executed notebook's attestations and scans the student's code
  (`integrity.py`). Flagged exercises score 0 pending review unless
  `accept_flagged`; the flags are kept in `.roadmap/graded.json` for the report.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import grading, sandbox
from ..errors import RoadmapError
from . import executor as executors, integrity, layout

GiB = 1024 ** 3
MAX_SUBMISSION_BYTES = 200 * 1024 ** 2
STARTUP_SLACK = 120  # seconds a worker may spend starting (imports, kernel start) on top of the cell limits


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def default_memory_mb(workers: int) -> int:
    """Physical memory shared among the kernels (and the parent), between 2 and 8 GiB each."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux or macOS
        total = 8 * GiB
    return int(min(8 * GiB, max(2 * GiB, total // (workers + 1))) // 1024 ** 2)


@dataclass
class Submission:
    student: str
    assignment: str
    folder: Path
    notebooks: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    problem: str = ""          # set when it cannot be executed at all (missing or corrupt notebook)
    digest: str = ""
    secret: str = field(default_factory=integrity.new_secret)   # signs its checks' attestations; never stored

    @property
    def key(self) -> str:
        return f"{self.student}/{self.assignment}"

    def task(self) -> dict[str, Any]:
        return {"key": self.key, "student": self.student, "assignment": self.assignment,
                "files": self.files, "notebooks": self.notebooks, "secret": self.secret}


@dataclass
class GradeRun:
    graded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)   # submission key -> what went wrong
    errors: list[str] = field(default_factory=list)                # not a student's fault: the run itself
    flags: dict[str, list[str]] = field(default_factory=dict)      # submission key -> integrity flag lines
    sandboxed: bool = True
    seconds: float = 0.0


# --------------------------------------------------------------------------- finding submissions


def _grade_ids(course_dir: Path) -> dict[str, set[str]]:
    """assignment -> the grade ids of its graded cells (plain SQL, nbgrader's schema)."""
    con = sqlite3.connect(f"file:{course_dir / layout.GRADEBOOK}?mode=ro", uri=True)
    try:
        out: dict[str, set[str]] = {}
        for a, gid in con.execute("SELECT a.name, b.name FROM base_cell b JOIN notebook n ON b.notebook_id = n.id "
                                  "JOIN assignment a ON n.assignment_id = a.id WHERE b.type = 'GradeCell'"):
            out.setdefault(str(a), set()).add(str(gid))
        return out
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def metadata_problem(nb: dict[str, Any], assignment: str, ids: dict[str, set[str]]) -> str:
    """Why nbgrader would refuse this notebook's cell metadata, in words ('' when it looks fine)."""
    found: list[str] = []
    for i, cell in enumerate(nb.get("cells", []), 1):
        meta = (cell.get("metadata") or {}).get("nbgrader")
        if isinstance(meta, dict) and (meta.get("grade") or meta.get("solution") or meta.get("locked")):
            if not meta.get("grade_id"):
                return (f"cell {i} has nbgrader metadata without a grade id (KeyError: 'grade_id'): the cell's "
                        "metadata was edited; start again from the released notebook")
            if meta.get("grade"):
                found.append(str(meta["grade_id"]))
    mine = ids.get(assignment, set())
    strangers = [gid for gid in found if gid not in mine]
    if found and mine and set(found) & mine and strangers:
        return (f"its graded cell {strangers[0]!r} is not one of {assignment}'s (a grade id was renamed: nbgrader "
                "fails with KeyError: 'grade_id'); start again from the released notebook")
    if found and mine and not set(found) & mine:
        other = max(ids, key=lambda a: len(ids[a] & set(found)))
        if ids[other] & set(found):
            return f"this is {other}'s notebook (its graded cells are {other}'s), handed in as {assignment}"
        return f"none of its graded cells belong to {assignment} (renamed grade ids?)"
    return ""


def explain(out: dict[str, Any]) -> str:
    """The real reason nbgrader gave up, from a worker's log: the exception it raised, without temp paths."""
    log = f"{out.get('log') or ''}"
    if out.get("error"):
        return str(out["error"])
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        m = re.match(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Invalid)\w*): (.+)$", line)
        if m and "There was an error processing" not in line and "see the the above traceback" not in line:
            text = f"{m.group(1)}: {m.group(2)}"
            break
    else:
        text = grading._explain_failure({"log": log})
    if "KeyError: 'grade_id'" in text:
        text += " (a cell's grade id was renamed or removed)"
    if "checksum" in text.lower() or "inconsistent" in text.lower():
        text += " (a test or read-only cell was edited or unlocked)"
    return re.sub(r"(/[\w.+-]+)*/roadmap-(?:cohort|dask)-[\w]+(/[\w.+-]+)*", "<the submission>", text)[:400]


def _registered(course_dir: Path) -> tuple[dict[str, list[str]], set[tuple[str, str]]]:
    """assignment -> its notebook names; and the (student, assignment) pairs the gradebook has graded.

    Read with plain SQL (nbgrader's schema), so a run with nothing to do never imports nbgrader."""
    path = course_dir / layout.GRADEBOOK
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names: dict[str, list[str]] = {a: [] for (a,) in con.execute("SELECT name FROM assignment")}
            for a, nb in con.execute("SELECT a.name, n.name FROM notebook n JOIN assignment a ON n.assignment_id = a.id"):
                names.setdefault(a, []).append(nb)
            done = set(con.execute("SELECT s.student_id, a.name FROM submitted_assignment s "
                                   "JOIN assignment a ON s.assignment_id = a.id").fetchall())
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise RoadmapError(f"{path}: not a readable nbgrader gradebook ({exc})") from None
    return {a: sorted(nbs) for a, nbs in names.items()}, {(str(s), str(a)) for s, a in done}


def _ignored(rel: Path) -> bool:
    return any(part in layout.IGNORE or part.startswith(".") for part in rel.parts)


def _snapshot(folder: Path) -> tuple[dict[str, bytes], str]:
    """The submission's files (nbgrader's ignore list and links left out), read once, before any code runs."""
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_symlink() or not path.is_file() or _ignored(rel):
            continue
        total += path.stat().st_size
        if total > MAX_SUBMISSION_BYTES:
            return {}, f"submission is larger than {MAX_SUBMISSION_BYTES // 1024 ** 2} MB; not graded"
        files[rel.as_posix()] = path.read_bytes()
    return files, ""


def _notebook_problem(sub: Submission) -> str:
    """Why the submission's notebooks cannot be executed at all, or ''."""
    for name in sub.notebooks:
        rel = f"{name}.ipynb"
        if rel not in sub.files:
            others = sorted(f for f in sub.files if f.endswith(".ipynb"))
            found = f" (found {', '.join(others)}: rename it to {rel})" if others else ""
            return f"missing notebook: no {rel} in submitted/{sub.key}/{found}"
        try:
            nb = json.loads(sub.files[rel].decode("utf-8"))
        except UnicodeDecodeError:
            return f"corrupt notebook: {rel} is not UTF-8 text"
        except ValueError as exc:
            line = getattr(exc, "lineno", "?")
            return f"corrupt notebook: {rel} is not valid JSON (line {line}): {str(exc).split(':')[0]}"
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or "nbformat" not in nb:
            return f"corrupt notebook: {rel} is JSON but not a notebook (no 'cells' and 'nbformat')"
    return ""


def _metadata_problem(sub: Submission, ids: dict[str, set[str]]) -> str:
    for name in sub.notebooks:
        problem = metadata_problem(json.loads(sub.files[f"{name}.ipynb"].decode("utf-8")), sub.assignment, ids)
        if problem:
            return f"not gradable: {name}.ipynb: {problem}"
    return ""


def _digest(files: dict[str, bytes], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
    return h.hexdigest()


def _source_fingerprint(course_dir: Path, assignment: str) -> str:
    h = hashlib.sha256()
    src = course_dir / "source" / assignment
    for path in sorted(src.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def find_submissions(course_dir: Path, notebooks: dict[str, list[str]], *, settings_key: str,
                     students: Iterable[str] | None = None,
                     assignments: Iterable[str] | None = None) -> tuple[list[Submission], dict[str, list[str]]]:
    """Every `submitted/<student>/<assignment>/` folder, snapshotted; and problems with the layout itself."""
    root = course_dir / "submitted"
    wanted_students = set(students or [])
    wanted = set(assignments or notebooks)
    problems: dict[str, list[str]] = {}
    subs: list[Submission] = []
    fingerprints = {a: _source_fingerprint(course_dir, a) for a in wanted}
    ids = _grade_ids(course_dir)
    if not root.is_dir():
        return subs, problems
    for student_dir in sorted(root.iterdir()):
        student = student_dir.name
        if not student_dir.is_dir() or student.startswith(".") or (wanted_students and student not in wanted_students):
            continue
        for folder in sorted(student_dir.iterdir()):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            if folder.name not in notebooks:
                problems.setdefault(f"{student}/{folder.name}", []).append(
                    f"unknown assignment '{folder.name}' (the gradebook has: {', '.join(sorted(notebooks))}); "
                    "not graded")
                continue
            if folder.name not in wanted:
                continue
            sub = Submission(student, folder.name, folder, notebooks[folder.name])
            sub.files, sub.problem = _snapshot(folder)
            sub.problem = sub.problem or _notebook_problem(sub) or _metadata_problem(sub, ids)
            sub.digest = _digest(sub.files, f"{settings_key}|{fingerprints[folder.name]}|{sub.problem}")
            subs.append(sub)
    return subs, problems


# --------------------------------------------------------------------------- what an executed notebook tells us


def execution_problems(nb: dict[str, Any], timeout: int | None, memory_mb: int) -> list[str]:
    """Kernel deaths, timeouts, stuck kernels and memory errors seen in an executed notebook, one line each."""
    out: list[str] = []
    for i, cell in enumerate(nb.get("cells", []), 1):
        for o in cell.get("outputs", []):
            if o.get("output_type") != "error":
                continue
            name = o.get("ename")
            if name == "DeadKernelError":
                out.append(f"the kernel died in cell {i} (exit(), a crash, or out of memory); "
                           "the cells after it were not run")
            elif name == "CellTimeoutError":
                out.append(f"cell {i} ran past the {timeout} s time limit and was interrupted")
            elif name == "MemoryError":
                out.append(f"cell {i} ran out of memory (limit {memory_mb} MB per kernel)")
            elif name == "CellNotRun" and "busy" in (o.get("evalue") or "") and not any("still busy" in p for p in out):
                out.append("the kernel was still busy after the interrupt: the cells after it were not run")
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- the gradebook: one writer, watched


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class GradebookGuard:
    """Notice any change to `gradebook.db` made while this run's student code was running."""

    def __init__(self, course_dir: Path) -> None:
        self.db = course_dir / layout.GRADEBOOK
        self.dir = layout.state_dir(course_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.digest = _sha(self.db)

    def install(self, working: Path) -> str:
        """Replace gradebook.db with our working copy; '' or a line saying what was set aside."""
        message = ""
        if _sha(self.db) != self.digest:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            aside = self.dir / f"gradebook.changed-{stamp}.db"
            shutil.copyfile(self.db, aside)
            message = (f"{self.db.name} was changed by something other than this run while submissions were "
                       f"executing: that change was not kept; the changed file "
                       f"is {aside.relative_to(self.dir.parent)}")
        shutil.copyfile(self.db, self.dir / "gradebook.before-last-run.db")
        incoming = self.dir / "gradebook.incoming.db"
        shutil.copyfile(working, incoming)
        os.replace(incoming, self.db)
        self.digest = _sha(self.db)
        return message


def make_template(gradebook: Path, dest: Path) -> None:
    """A copy of the gradebook with the assignments (source cells, checksums) but no students."""
    from nbgrader.api import Gradebook

    shutil.copyfile(gradebook, dest)
    with Gradebook(f"sqlite:///{dest}") as gb:
        for student in [s.id for s in gb.students]:
            gb.remove_student(student)
    con = sqlite3.connect(dest)
    try:
        con.execute("VACUUM")  # deleted rows must not linger in free pages
    finally:
        con.close()


def _timestamp(sub: Submission) -> str | None:
    raw = sub.files.get("timestamp.txt", b"").decode("utf-8", "replace").strip()
    return raw or None


def record_zero(course_dir: Path, sub: Submission, db: Path) -> None:
    """Register the submission with zero points on every test, as nbgrader does for a missing notebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}", layout.COURSE_ID) as gb:
        gb.update_or_create_student(sub.student)
        kwargs = {"timestamp": _timestamp(sub)} if _timestamp(sub) else {}
        try:
            submission = gb.update_or_create_submission(sub.assignment, sub.student, **kwargs)
        except (ValueError, TypeError):
            submission = gb.update_or_create_submission(sub.assignment, sub.student)
        for nb in submission.notebooks:
            for grade in nb.grades:
                grade.auto_score = 0
                grade.needs_manual_grade = False
        gb.db.commit()
    for step in ("autograded", "feedback"):  # what an earlier, gradable version of it left behind
        stale = course_dir / step / sub.student / sub.assignment
        if stale.exists():
            shutil.rmtree(stale)


def score_flagged(db: Path, sub: Submission, flagged: set[str]) -> list[str]:
    """Score the flagged exercises 0 and mark them for manual grading (a grade entered in formgrader
    overrides); return the grade ids changed."""
    from nbgrader.api import Gradebook

    done = []
    with Gradebook(f"sqlite:///{db}", layout.COURSE_ID) as gb:
        submission = gb.find_submission(sub.assignment, sub.student)
        for nb in submission.notebooks:
            for grade in nb.grades:
                if grade.name in flagged:
                    grade.auto_score = 0
                    grade.needs_manual_grade = True
                    done.append(grade.name)
        gb.db.commit()
    return done


def release_lines(course_dir: Path, assignment: str) -> set[str]:
    """Every line of the assignment's released notebooks (never flagged by the source scan)."""
    lines: set[str] = set()
    for path in (course_dir / "release" / assignment).glob("*.ipynb"):
        try:
            lines |= integrity.course_lines(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass
    return lines


def well_formed(out: dict[str, Any], sub: Submission) -> str:
    """'' when a worker's result holds exactly the expected notebooks, each a notebook; else what is wrong."""
    notebooks = out.get("notebooks")
    if not isinstance(notebooks, dict) or set(notebooks) - set(sub.notebooks):
        return "the grading process returned something other than this assignment's notebooks"
    for name, text in notebooks.items():
        try:
            nb = json.loads(text)
        except (TypeError, ValueError):
            return f"the executed {name}.ipynb is not valid JSON"
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            return f"the executed {name}.ipynb is not a notebook"
    return ""


class Merger:
    """Write one executed submission into the course: nbgrader's autograde with execution switched off."""

    def __init__(self, course_dir: Path, staging: Path, file_config: Any, db: Path) -> None:
        from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, SaveAutoGrades

        self.course_dir, self.staging = course_dir, staging
        cfg = layout.make_config(course_dir, file_config=file_config, db_path=db)
        cfg.CourseDirectory.submitted_directory = str(staging)
        cfg.Autograde.sanitize_preprocessors = []
        cfg.Autograde.autograde_preprocessors = [SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
        self.api = layout.api(cfg)

    def merge(self, sub: Submission, notebooks: dict[str, str]) -> str:
        """'' on success, else why nbgrader refused."""
        folder = self.staging / sub.student / sub.assignment
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for rel, data in sub.files.items():  # the student's other files and timestamp, as submitted
            if not rel.endswith(".ipynb"):
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(data)
        for name, text in notebooks.items():
            (folder / f"{name}.ipynb").write_text(text, encoding="utf-8")
        result = self.api.autograde(sub.assignment, sub.student, force=True, create=True)
        shutil.rmtree(folder, ignore_errors=True)
        if result.get("success"):
            return ""
        return explain({"log": f"{result.get('log') or ''}\n{result.get('error') or ''}"})


# --------------------------------------------------------------------------- the run


def grade_cohort(course_dir: Path, *, workers: int | None = None, timeout: int | None = None,
                 memory_mb: int | None = None, force: bool = False, students: list[str] | None = None,
                 assignments: list[str] | None = None, progress: bool | None = None,
                 use_sandbox: bool = True, accept_flagged: bool = False, trust_config: bool = False,
                 scheduler: str | None = None, say: Callable[[str], None] = print) -> GradeRun:
    """Autograde the cohort's submissions; return what was graded, skipped and went wrong.
    `scheduler`: a Dask scheduler's address; the submissions then run on its workers (`executor.py`)."""
    start = time.monotonic()
    if scheduler and workers:
        raise RoadmapError("--workers sets this machine's grading processes; with --scheduler the cluster's "
                           "workers grade (start as many `dask worker`s as you want)")
    course_dir = layout.require_cohort(course_dir)
    workers = workers or default_workers()
    if workers < 1:
        raise RoadmapError("--workers must be at least 1")
    if trust_config and (course_dir / layout.CONFIG_FILE).exists():
        layout.trust_config(course_dir)
    file_config = layout.load_file_config(course_dir)
    cfg = layout.make_config(course_dir, timeout=timeout, file_config=file_config)
    timeout = int(cfg.Execute.timeout) if "timeout" in cfg.Execute else grading.DEFAULT_TIMEOUT
    if timeout <= 0:
        raise RoadmapError("--timeout must be a positive number of seconds")
    memory_key = str(memory_mb) if memory_mb else "auto"   # the default follows --workers: not part of a result
    if memory_mb is not None and memory_mb < 256:
        raise RoadmapError("--memory-mb must be at least 256 (a Python kernel with NumPy needs more than that)")
    notebooks, done = _registered(course_dir)
    if not notebooks:
        raise RoadmapError(f"{course_dir}: the gradebook has no assignments; add chapters with "
                           f"`roadmap cohort init {course_dir} CHAPTER`")
    for a in assignments or []:
        if a not in notebooks:
            raise RoadmapError(f"no assignment '{a}' in this course (it has: {', '.join(sorted(notebooks))})")
    for s in students or []:
        if not (course_dir / "submitted" / s).is_dir():
            raise RoadmapError(f"no student '{s}' in {course_dir / 'submitted'}")

    state_path = layout.state_dir(course_dir) / layout.STATE_FILE
    state = layout.read_json(state_path, {"version": 1, "submissions": {}})
    recorded: dict[str, Any] = state.setdefault("submissions", {})
    settings_key = f"timeout={timeout}|memory={memory_key}|sandbox={bool(use_sandbox)}|integrity=1"
    subs, layout_problems = find_submissions(course_dir, notebooks, settings_key=settings_key,
                                             students=students, assignments=assignments)
    run = GradeRun(problems=dict(layout_problems), sandboxed=bool(use_sandbox))
    todo = []
    for sub in subs:
        prior = recorded.get(sub.key, {})
        same_verdict = not prior.get("flags") or bool(prior.get("accepted")) == bool(accept_flagged)
        if not force and prior.get("digest") == sub.digest and (sub.student, sub.assignment) in done and same_verdict:
            run.skipped.append(sub.key)
            if prior.get("problems"):
                run.problems[sub.key] = list(prior["problems"])
            if prior.get("flags"):
                run.flags[sub.key] = integrity.describe([integrity.Flag(**f) for f in prior["flags"]])
        else:
            todo.append(sub)
    if not subs:
        say(f"no submissions in {course_dir / 'submitted'} (expected submitted/<student>/<assignment>/"
            "<assignment>.ipynb, as `nbgrader collect` leaves them)")
    if not todo:
        run.seconds = time.monotonic() - start
        return run

    client = None
    if scheduler:     # the workers check their own sandbox (executor.refuse)
        client = executors.connect(scheduler)
        memory_mb = memory_mb or executors.default_memory_mb(client, 2048, 8192)
        link = executors.dashboard(client)
        say(f"grading on the Dask cluster at {scheduler}" + (f"; dashboard: {link}" if link else ""))
    elif use_sandbox:   # checked once there is student code to run
        require_sandbox(course_dir)
    memory_mb = memory_mb or default_memory_mb(workers)
    lock = _lock(course_dir)
    try:
        _grade(course_dir, todo, run, state, state_path, workers=workers, timeout=timeout, memory_mb=memory_mb,
               file_config=file_config, progress=progress, use_sandbox=use_sandbox, accept_flagged=accept_flagged,
               client=client, scheduler=scheduler)
    finally:
        lock.close()
        if client is not None:
            executors.close(client)
    run.errors = list(dict.fromkeys(e for e in run.errors if e))
    run.seconds = time.monotonic() - start
    return run


def _grade(course_dir: Path, todo: list[Submission], run: GradeRun, state: dict[str, Any], state_path: Path, *,
           workers: int, timeout: int, memory_mb: int, file_config: Any, progress: bool | None,
           use_sandbox: bool = True, accept_flagged: bool = False, client: Any = None,
           scheduler: str | None = None) -> None:
    """Grade `todo` into a private copy of the gradebook; install it (and the bookkeeping) at the end."""
    recorded: dict[str, Any] = state["submissions"]
    guard = GradebookGuard(course_dir)
    by_key = {s.key: s for s in todo}
    run_tmp = Path(tempfile.mkdtemp(prefix="roadmap-cohort-"))
    working = run_tmp / "private" / layout.GRADEBOOK
    working.parent.mkdir()
    shutil.copyfile(course_dir / layout.GRADEBOOK, working)
    bar = _progress(len(todo), progress)
    pool: executors.Executor | None = None
    lost = False

    def write(sub: Submission, grade: Callable[[], list[str]], flags: list[integrity.Flag] | None = None) -> None:
        problems = grade()
        recorded[sub.key] = {"digest": sub.digest, "problems": problems, "sandboxed": bool(use_sandbox),
                             "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        run.problems.pop(sub.key, None)
        run.flags.pop(sub.key, None)
        if problems:
            run.problems[sub.key] = problems
        if flags:
            recorded[sub.key].update(flags=integrity.as_dicts(flags), accepted=bool(accept_flagged))
            run.flags[sub.key] = integrity.describe(flags)
        run.graded.append(sub.key)
        bar.update(1)

    def unusable(sub: Submission, why: str) -> Callable[[], list[str]]:
        def grade() -> list[str]:
            record_zero(course_dir, sub, working)
            return [f"{why}; scored 0"]
        return grade

    try:
        merger = Merger(course_dir, run_tmp / "staging", file_config, working)

        lines = {a: release_lines(course_dir, a) for a in {s.assignment for s in todo}}

        def on_result(key: str, out: dict[str, Any]) -> None:
            sub = by_key[key]
            if out.get("fatal"):   # not the student's doing: left ungraded, for the next run
                run.errors.append(str(out["fatal"]))
                bar.update(1)
                return
            malformed = well_formed(out, sub) if out.get("ok") else ""
            if not out.get("ok") or malformed:
                write(sub, unusable(sub, f"could not be graded: {malformed or explain(out)}"))
                return
            flags: list[integrity.Flag] = []
            for text in out["notebooks"].values():
                flags += integrity.verify(json.loads(text), sub.secret, lines[sub.assignment])

            def grade() -> list[str]:
                problems: list[str] = []
                for text in out["notebooks"].values():
                    problems += execution_problems(json.loads(text), timeout, memory_mb)
                refused = merger.merge(sub, out["notebooks"])
                if refused:
                    record_zero(course_dir, sub, working)
                    problems.append(f"nbgrader could not record it: {refused}; scored 0")
                elif flags and not accept_flagged:
                    score_flagged(working, sub, {f.exercise for f in flags if f.exercise})
                return problems
            write(sub, grade, flags)

        for sub in [s for s in todo if s.problem]:
            write(sub, unusable(sub, sub.problem))
        runnable = [s for s in todo if not s.problem]
        if runnable:
            template = run_tmp / "template.db"
            make_template(working, template)
            settings = {"course_dir": str(course_dir), "template_db": str(template), "run_tmp": str(run_tmp),
                        "timeout": timeout, "memory_limit": memory_mb * 1024 ** 2, "sandbox": bool(use_sandbox)}
            if client is not None:
                bundles = {a: executors.bundle(course_dir, a, template_db=template, file_config=file_config,
                                               source_fingerprint=_source_fingerprint(course_dir, a),
                                               timeout=timeout, memory_limit=memory_mb * 1024 ** 2,
                                               use_sandbox=use_sandbox)
                           for a in {s.assignment for s in runnable}}
                pool = executors.DaskExecutor(client, bundles, str(scheduler))
            else:
                pool = executors.LocalPool(min(workers, len(runnable)), settings)
            jobs = [(s.task(), STARTUP_SLACK + timeout * (_code_cells(s) + 2)) for s in runnable]
            pool.run(jobs, on_result)
    except BaseException as exc:
        lost = isinstance(exc, executors.SchedulerLost)
        if pool is not None:
            pool.kill()
            pool = None
        raise
    finally:
        # No student code may run once the gradebook is swapped in: stop the workers first.
        if pool is not None:
            pool.close()
        bar.close()
        if run.graded and not lost:   # a lost scheduler: the gradebook stays as it was
            run.errors.append(guard.install(working))
            layout.write_json(state_path, state)
        shutil.rmtree(run_tmp, ignore_errors=True)


def require_sandbox(course_dir: Path) -> None:
    """One line naming the fix when bubblewrap cannot sandbox student code here, or would show the course."""
    why = sandbox.unavailable()
    if why:
        raise RoadmapError(f"cannot sandbox student code: {why}")
    shown = sandbox.exposes(course_dir)
    if shown:
        raise RoadmapError(f"{course_dir} lies inside {shown}, which the sandbox shows to student code; "
                           "move the course folder elsewhere (for example under your home folder)")


def _lock(course_dir: Path) -> Any:
    """Hold .roadmap/grade.lock for the run: two runs on one course would overwrite each other's grades."""
    path = layout.state_dir(course_dir) / "grade.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a")
    try:
        import fcntl

        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # pragma: no cover - not POSIX: no lock
        pass
    except OSError:
        fh.close()
        raise RoadmapError(f"another `roadmap cohort grade` is already grading {course_dir}; "
                           "wait for it to finish") from None
    return fh


def _code_cells(sub: Submission) -> int:
    n = 0
    for name in sub.notebooks:
        try:
            nb = json.loads(sub.files[f"{name}.ipynb"])
            n += sum(1 for c in nb["cells"] if c.get("cell_type") == "code")
        except (KeyError, ValueError, TypeError):
            pass
    return max(n, 1)


def _progress(total: int, enabled: bool | None) -> Any:
    from ..progressbar import tqdm

    return tqdm(total=total, desc="grading", unit="submission", file=sys.stderr,
                disable=(None if enabled is None else not enabled), leave=False)
