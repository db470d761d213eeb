"""A learner's progress: every `roadmap grade` result, kept in a small SQLite file, and the map it implies.

The file lives in the user's data directory (platformdirs), or wherever
$SAFETY_ROADMAP_PROGRESS_DB points. It is only ever created when missing; a file
that is damaged, belongs to something else, or has another format version gets
a one-line error and is left exactly as it is.

A chapter's points are the best each exercise has scored in any grading; a
chapter is complete when every exercise has scored full points; a chapter is
unlocked when its prerequisites are complete; a phase's self-assessment
checkpoints are shown once its (non-optional) chapters are complete. A reference
solution the learner chose to see (`roadmap solution`) is recorded and shown too,
and so is a chapter completed before its prerequisites (a warning, not a lock).
"""
from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .curriculum import Curriculum
from .errors import RoadmapError

DB_ENV = "SAFETY_ROADMAP_PROGRESS_DB"
FORMAT = "safety-roadmap-progress"
VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
_LEAVE = f"it was left as it is: move it aside, or set ${DB_ENV} to use another file"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chapter TEXT NOT NULL,
    notebook TEXT NOT NULL,
    graded_at TEXT NOT NULL,
    points REAL NOT NULL,
    max_points REAL NOT NULL
);
CREATE TABLE exercise_results (
    attempt_id INTEGER NOT NULL REFERENCES attempts(id),
    exercise TEXT NOT NULL,
    points REAL NOT NULL,
    max_points REAL NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (attempt_id, exercise)
);
CREATE INDEX attempts_by_chapter ON attempts (chapter);
"""
# Added after format version 1 shipped: created on first use, so older files need no migration.
_VIEWS = """CREATE TABLE IF NOT EXISTS solution_views (
    chapter TEXT NOT NULL, exercise TEXT NOT NULL, viewed_at TEXT NOT NULL, PRIMARY KEY (chapter, exercise))"""


class ProgressError(RoadmapError):
    """The progress database cannot be used (and was not touched)."""


def db_path() -> Path:
    """$SAFETY_ROADMAP_PROGRESS_DB, else progress.sqlite3 in the user's data directory."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_path

    return user_data_path("safety-roadmap", appauthor=False) / "progress.sqlite3"


def _check(path: Path, con: sqlite3.Connection) -> None:
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            raise ProgressError(f"{path}: not a roadmap progress database (an SQLite file from an older "
                                f"roadmap or another program); {_LEAVE}")
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        integrity = con.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise ProgressError(f"{path}: the progress database is damaged ({exc}); {_LEAVE}") from None
    if integrity != "ok":
        raise ProgressError(f"{path}: the progress database is damaged ({integrity}); {_LEAVE}")
    if meta.get("format") != FORMAT:
        raise ProgressError(f"{path}: not a roadmap progress database (format {meta.get('format')!r}); {_LEAVE}")
    try:
        version = int(meta.get("version", "0"))
    except ValueError:
        version = 0
    if version < VERSION:
        raise ProgressError(f"{path}: progress database format {version} is older than this roadmap reads "
                            f"({VERSION}); {_LEAVE}")
    if version > VERSION:
        raise ProgressError(f"{path}: progress database format {version} is newer than this roadmap reads "
                            f"({VERSION}); it was left as it is: update the course (`git pull`, then `make install`), "
                            f"or set ${DB_ENV} to use another file")


def connect(path: Path | None = None, *, create: bool = False) -> sqlite3.Connection | None:
    """An open, checked connection; None when the file does not exist and `create` is False."""
    path = Path(path) if path is not None else db_path()
    if path.is_dir():
        raise ProgressError(f"{path}: is a folder; ${DB_ENV} must name a file")
    if not path.exists():
        if not create:
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(path, timeout=30)
            with con:
                con.executescript(_SCHEMA)
                con.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                [("format", FORMAT), ("version", str(VERSION))])
        except (OSError, sqlite3.Error) as exc:
            raise ProgressError(f"{path}: cannot create the progress database ({exc})") from None
        return con
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise ProgressError(f"{path}: cannot read the progress database ({exc.strerror or exc})") from None
    if head != _SQLITE_MAGIC:
        what = "is empty" if not head else "is not an SQLite file (corrupted?)"
        raise ProgressError(f"{path}: {what}, so not a roadmap progress database; {_LEAVE}")
    con = sqlite3.connect(path, timeout=30)
    try:
        _check(path, con)
    except ProgressError:
        con.close()
        raise
    return con


def record(result: Any, path: Path | None = None, *, when: datetime | None = None) -> int:
    """Store one `roadmap grade` result (a grading.NotebookResult); return the attempt's id."""
    when = when or datetime.now(timezone.utc)
    con = connect(path, create=True)
    assert con is not None
    with closing(con), con:
        cur = con.execute("INSERT INTO attempts (chapter, notebook, graded_at, points, max_points) "
                          "VALUES (?, ?, ?, ?, ?)",
                          (result.chapter, str(Path(result.notebook).resolve()), when.isoformat(timespec="seconds"),
                           float(result.points), float(result.max_points)))
        attempt = int(cur.lastrowid)
        con.executemany("INSERT INTO exercise_results (attempt_id, exercise, points, max_points, status, message) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [(attempt, e.id, float(e.points), float(e.max_points), e.status, e.message or "")
                         for e in result.exercises])
    return attempt


def record_solution_view(chapter: str, exercise: str, path: Path | None = None, *,
                         when: datetime | None = None) -> None:
    """Note that the learner saw the reference solution of an exercise (the first time is kept)."""
    when = when or datetime.now(timezone.utc)
    con = connect(path, create=True)
    assert con is not None
    with closing(con), con:
        con.execute(_VIEWS)
        con.execute("INSERT OR IGNORE INTO solution_views (chapter, exercise, viewed_at) VALUES (?, ?, ?)",
                    (chapter, exercise, when.isoformat(timespec="seconds")))


def solution_views(path: Path | None = None) -> dict[str, list[str]]:
    """chapter -> the exercises whose reference solution the learner has seen."""
    con = connect(path, create=False)
    if con is None:
        return {}
    with closing(con):
        return _views(con)


def _views(con: sqlite3.Connection) -> dict[str, list[str]]:
    if not con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'solution_views'").fetchone():
        return {}
    out: dict[str, list[str]] = {}
    for ch, ex in con.execute("SELECT chapter, exercise FROM solution_views ORDER BY viewed_at, exercise"):
        out.setdefault(ch, []).append(ex)
    return out


# --------------------------------------------------------------------------- the learner's map


@dataclass
class ExerciseProgress:
    id: str
    points: float
    max_points: float
    status: str  # passed / failed / not attempted / timed out / not graded yet


@dataclass
class ChapterProgress:
    id: str
    title: str
    optional: bool
    prerequisites: list[str]
    points: float
    max_points: float
    attempts: int
    last_graded: str | None
    complete: bool = False
    unlocked: bool = False
    exercises: list[ExerciseProgress] = field(default_factory=list)
    solutions_viewed: list[str] = field(default_factory=list)

    @property
    def started(self) -> bool:
        return self.attempts > 0


@dataclass
class PhaseProgress:
    id: str
    title: str
    complete: bool
    checkpoints: list[str]          # the self-assessment questions, once the phase is complete
    chapters: list[ChapterProgress]


@dataclass
class Status:
    database: str
    phases: list[PhaseProgress]
    next: str | None
    warnings: list[str] = field(default_factory=list)

    @property
    def points(self) -> float:
        return sum(c.points for p in self.phases for c in p.chapters)

    @property
    def max_points(self) -> float:
        return sum(c.max_points for p in self.phases for c in p.chapters)

    def to_json(self) -> dict[str, Any]:
        phases = []
        for p in self.phases:
            d = asdict(p)
            for c, cd in zip(p.chapters, d["chapters"]):
                cd["started"] = c.started
            phases.append(d)
        return {"database": self.database, "points": self.points, "max_points": self.max_points,
                "next": self.next, "warnings": self.warnings, "phases": phases}


def _history(con: sqlite3.Connection | None) -> tuple[dict[tuple[str, str], tuple[float, str]], dict[str, tuple[int, str]]]:
    """(chapter, exercise) -> (best points, latest status); chapter -> (attempts, last graded)."""
    best: dict[tuple[str, str], tuple[float, str]] = {}
    chapters: dict[str, tuple[int, str]] = {}
    if con is None:
        return best, chapters
    for ch, n, last in con.execute("SELECT chapter, COUNT(*), MAX(graded_at) FROM attempts GROUP BY chapter"):
        chapters[ch] = (int(n), last)
    rows = con.execute("SELECT a.chapter, r.exercise, r.points, r.status FROM exercise_results r "
                       "JOIN attempts a ON a.id = r.attempt_id ORDER BY a.id")
    for ch, ex, pts, status in rows:
        prev = best.get((ch, ex))
        best[(ch, ex)] = (max(float(pts), prev[0] if prev else 0.0), status)
    return best, chapters


def learner_status(cur: Curriculum, path: Path | None = None) -> Status:
    """Phases, chapters, points earned, what is unlocked and what to do next."""
    path = Path(path) if path is not None else db_path()
    con = connect(path, create=False)
    try:
        best, attempts = _history(con)
        viewed = _views(con) if con is not None else {}
    except sqlite3.DatabaseError as exc:
        raise ProgressError(f"{path}: the progress database is damaged ({exc}); {_LEAVE}") from None
    finally:
        if con is not None:
            con.close()
    by_id: dict[str, ChapterProgress] = {}
    phases: list[PhaseProgress] = []
    for phase in cur.phases:
        chapters = []
        for ch in phase.chapters:
            n, last = attempts.get(ch.id, (0, None))
            cp = ChapterProgress(ch.id, ch.title, ch.optional, list(ch.prerequisites), 0.0, float(ch.max_points),
                                 n, last, solutions_viewed=list(viewed.get(ch.id, [])))
            for ex in ch.exercises:
                pts, status = best.get((ch.id, ex.id), (0.0, "not graded yet"))
                pts = min(pts, float(ex.points))
                if pts >= ex.points:
                    status = "passed"
                cp.exercises.append(ExerciseProgress(ex.id, pts, float(ex.points), status))
                cp.points += pts
            cp.complete = n > 0 and all(e.points >= e.max_points for e in cp.exercises)
            chapters.append(cp)
            by_id[ch.id] = cp
        phases.append(PhaseProgress(phase.id, phase.title, False, [], chapters))
    warnings = []
    for cp in by_id.values():
        cp.unlocked = all(by_id[r].complete for r in cp.prerequisites if r in by_id)
        missing = [r for r in cp.prerequisites if r in by_id and not by_id[r].complete]
        if cp.complete and missing:
            many = len(missing) > 1
            warnings.append(f"{cp.id} is complete, but its prerequisite{'s' if many else ''} {', '.join(missing)} "
                            f"{'are' if many else 'is'} not complete yet: the chapter builds on "
                            f"{'them' if many else 'it'}, so work through {'them' if many else 'it'} too.")
    for phase, pp in zip(cur.phases, phases):
        required = [c for c in pp.chapters if not c.optional] or pp.chapters
        pp.complete = bool(required) and all(c.complete for c in required)
        pp.checkpoints = list(phase.checkpoints) if pp.complete else []
    order = [c for p in phases for c in p.chapters]
    candidates = [c for c in order if c.unlocked and not c.complete]
    nxt = next((c for c in candidates if not c.optional), candidates[0] if candidates else None)
    return Status(str(path), phases, nxt.id if nxt else None, warnings)


def format_status(status: Status, title: str, workspace: str = "workspace") -> str:
    """The terminal table `roadmap status` prints (`workspace`: where the learner's notebooks are)."""
    lines = [title, ""]
    rows = []
    for i, phase in enumerate(status.phases, 1):
        rows.append(None)
        rows.append((f"Phase {i}: {phase.title}" + ("  (complete)" if phase.complete else ""),))
        if not phase.chapters:
            rows.append(("  (chapters coming soon)",))
        for c in phase.chapters:
            if c.complete:
                mark, state = "✓", "complete"
            elif not c.unlocked:
                mark, state = " ", "locked: needs " + ", ".join(r for r in c.prerequisites)
            elif c.started:
                mark, state = "▸", "in progress"
            else:
                mark, state = "▸", "unlocked"
            if c.optional:
                state += " (optional)"
            if c.solutions_viewed:
                state += f"; solution seen: {', '.join(c.solutions_viewed)}"
            if c.id == status.next:
                state += "  <- next"
            rows.append((f"  {mark} {c.id}", c.title, f"{c.points:g}/{c.max_points:g}", state))
    widths = [max((len(r[i]) for r in rows if r and len(r) > 1), default=0) for i in range(4)]
    for r in rows:
        if r is None:
            if len(lines) > 2:
                lines.append("")
        elif len(r) == 1:
            lines.append(r[0])
        else:
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}")
    done = sum(1 for p in status.phases for c in p.chapters if c.complete)
    total = sum(len(p.chapters) for p in status.phases)
    lines += ["", f"Total: {status.points:g}/{status.max_points:g} points; {done} of {total} chapters complete."]
    if status.next:
        lines.append(f"Next: {status.next}. Work in {workspace}/{status.next}.ipynb (`make lab` opens it), then "
                     f"`roadmap grade {workspace}/{status.next}.ipynb`.")
    elif total and done == total:
        lines.append("Every chapter is complete.")
    lines += [f"Warning: {w}" for w in status.warnings]
    for i, phase in enumerate(status.phases, 1):
        if phase.checkpoints:
            lines += ["", f"Phase {i} is complete. Self-assessment: can you answer these?"]
            lines += [f"  - {q}" for q in phase.checkpoints]
    lines += ["", f"(progress is kept in {status.database})"]
    return "\n".join(lines)
