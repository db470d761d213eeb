"""`roadmap grade`: self-grading with the hidden tests, through nbgrader's own autograder.

The learner's notebook is copied into a private scratch course whose gradebook
holds the source chapter (hidden tests included). nbgrader restores any test
cell the learner changed, puts the hidden tests back, executes the notebook
with a per-cell timeout and scores it. We then read the gradebook for points
and the executed notebook for each test's whole check message. If the kernel
dies, the cells before it keep their results and the cell that killed it is named.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import course
from .curriculum import Chapter, Curriculum
from .errors import RoadmapError

DEFAULT_TIMEOUT = 120  # seconds per cell: a chapter's longest training cell fits well inside
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

PASSED, FAILED, NOT_ATTEMPTED, TIMED_OUT, NOT_RUN = "passed", "failed", "not attempted", "timed out", "not run"
_DEAD, _NOT_RUN = "DeadKernelError", "CellNotRun"


@dataclass
class ExerciseResult:
    id: str
    points: float
    max_points: float
    status: str
    message: str = ""


@dataclass
class NotebookResult:
    notebook: str
    chapter: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    problem: str = ""   # why grading stopped early (the kernel died), else ""

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self) -> float:
        return sum(e.max_points for e in self.exercises)

    def to_json(self) -> dict[str, Any]:
        return {"notebook": self.notebook, "chapter": self.chapter,
                "exercises": [asdict(e) for e in self.exercises],
                "points": self.points, "max_points": self.max_points, "problem": self.problem}


def read_notebook(path: Path) -> dict:
    """The notebook's JSON, or a one-line RoadmapError saying why it is unusable."""
    path = Path(path)
    if not path.exists():
        raise RoadmapError(f"{path}: no such file")
    if path.is_dir():
        raise RoadmapError(f"{path}: is a folder, not a notebook")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RoadmapError(f"{path}: not a notebook (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise RoadmapError(f"{path}: not a notebook: corrupt JSON at line {exc.lineno}, column {exc.colno} "
                           "(restore it from a checkpoint or re-copy it from notebooks/)") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or "nbformat" not in nb:
        raise RoadmapError(f"{path}: not a notebook (JSON without 'cells' and 'nbformat')")
    return nb


def identify_chapter(nb: dict, cur: Curriculum, path: Path) -> Chapter:
    """The chapter whose exercises the notebook's graded cells belong to (the file name is ignored)."""
    ids = set()
    for cell in nb["cells"]:
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if isinstance(meta, dict) and meta.get("grade_id"):
            ids.add(meta["grade_id"])
    best, overlap = None, 0
    for ch in cur.chapters:
        n = len(ids & {e.id for e in ch.exercises})
        if n > overlap:
            best, overlap = ch, n
    if best is None:
        raise RoadmapError(f"{path}: not a notebook of this course (none of its cells belongs to a chapter's "
                           "exercises; `roadmap list` shows the chapters)")
    return best


def _first_line(text: str) -> str:
    for line in _ANSI.sub("", text).splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


def _message(evalue: str) -> str:
    """The check's whole message, without terminal colours or trailing blanks (a learner's only clue
    when a hidden test fails, so nothing of it is dropped)."""
    lines = [line.rstrip() for line in _ANSI.sub("", evalue).splitlines()]
    return "\n".join(lines).strip("\n").strip()


def _errors_by_exercise(executed: dict, chapter: Chapter) -> dict[str, tuple[str, str, bool]]:
    """grade_id -> (ename, message, a cell since the previous test timed out)."""
    wanted = {e.id for e in chapter.exercises}
    out: dict[str, tuple[str, str, bool]] = {}
    timed_out = False
    for cell in executed.get("cells", []):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if any(o.get("ename") == "CellTimeoutError" for o in errors):
            timed_out = True
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        gid = meta.get("grade_id")
        if meta.get("grade") and gid in wanted:
            err = errors[-1] if errors else {}
            out[gid] = (err.get("ename", ""), _message(err.get("evalue", "")), timed_out)
            timed_out = False
    return out


def _dead_cell(executed: dict) -> str:
    """"cell N (...)" for the cell during which the kernel died, or "" when it did not."""
    for i, cell in enumerate(executed.get("cells", []), 1):
        if any(o.get("ename") == _DEAD for o in cell.get("outputs", [])):
            src = cell.get("source", "")
            first = _first_line("".join(src) if isinstance(src, list) else str(src))[:60]
            gid = ((cell.get("metadata") or {}).get("nbgrader") or {}).get("grade_id")
            what = f"the answer cell '{gid}', " if gid else ""
            return f"cell {i} ({what}starting `{first}`)"
    return ""


def _status(ename: str, evalue: str, timed_out: bool, score: float, max_score: float) -> tuple[str, str]:
    if not ename and score >= max_score:
        return PASSED, ""
    if timed_out or ename == "CellTimeoutError":
        return TIMED_OUT, "a cell ran longer than the per-cell time limit (an endless loop?)"
    if ename == _NOT_RUN:
        return NOT_RUN, evalue
    if ename in ("NotAttempted", "NotImplementedError"):
        return NOT_ATTEMPTED, evalue or "not attempted yet"
    if not ename:
        return FAILED, "partial credit"
    return FAILED, f"{ename}: {evalue}" if evalue else ename


def grade_notebook(path: Path, cur: Curriculum, root: Path, *, timeout: int = DEFAULT_TIMEOUT) -> NotebookResult:
    """Autograde one learner notebook against its chapter's hidden tests."""
    path = Path(path)
    nb = read_notebook(path)
    chapter = identify_chapter(nb, cur, path)
    source = root / "solutions" / f"{chapter.id}.ipynb"
    if not source.exists():
        raise RoadmapError(f"solutions/{chapter.id}.ipynb is missing from the course files; cannot grade")
    with tempfile.TemporaryDirectory(prefix="roadmap-grade-") as tmp:
        scratch = Path(tmp)
        course.add_source(scratch, chapter.id, source)
        course.generate(scratch, chapter.id, database=True)
        submitted = scratch / "submitted" / course.LEARNER_ID / chapter.id
        submitted.mkdir(parents=True)
        (submitted / f"{chapter.id}.ipynb").write_text(course.dump_notebook(nb), encoding="utf-8")
        cfg = course.make_config(scratch, timeout=timeout)
        cfg.Autograde.autograde_preprocessors = _pipeline()
        api = course.api_from_config(cfg)
        result = api.autograde(chapter.id, course.LEARNER_ID, force=True, create=True)
        if not result.get("success"):
            raise RoadmapError(f"{path}: {_explain_failure(result)}")
        scores = _scores(api, chapter.id)
        executed_path = scratch / "autograded" / course.LEARNER_ID / chapter.id / f"{chapter.id}.ipynb"
        executed = json.loads(executed_path.read_text(encoding="utf-8")) if executed_path.exists() else {}
    errors = _errors_by_exercise(executed, chapter)
    res = NotebookResult(notebook=str(path), chapter=chapter.id)
    dead = _dead_cell(executed)
    if dead:
        res.problem = (f"the kernel died in {dead}: it called exit(), crashed Python or ran out of memory. "
                       "The cells before it were graded; fix that cell, then grade again.")
    for ex in chapter.exercises:
        score, max_score = scores.get(ex.id, (0.0, float(ex.points)))
        ename, evalue, timed_out = errors.get(ex.id, ("", "", False))
        if ex.id not in errors:
            ename, evalue = "Missing", "the test cell was not found or did not run"
        if ename == _NOT_RUN and dead:
            evalue = f"the kernel died earlier, in {dead}"
        status, message = _status(ename, evalue, timed_out, score, max_score)
        res.exercises.append(ExerciseResult(ex.id, float(score), float(max_score), status, message))
    return res


def _pipeline() -> list[Any]:
    """nbgrader's autograde steps, with an executor that survives a dead kernel."""
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, Execute, IgnorePattern,
                                        LimitOutput, SaveAutoGrades)
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbformat.notebooknode import NotebookNode

    class KeepResultsExecute(Execute):
        """Execute, but when the kernel dies keep what ran and mark the later test cells not run, and
        when a cell's output is still arriving at the time limit record a timeout and go on (nbgrader's own
        executor discards the whole notebook in both cases)."""

        def preprocess(self, nb: Any, resources: Any = None, km: Any = None) -> Any:
            self._dead = False
            return super().preprocess(nb, resources, km)

        def preprocess_cell(self, cell: Any, resources: Any, index: int) -> Any:
            if cell.cell_type == "code" and self._dead:
                meta = cell.metadata.get("nbgrader", {})
                cell.outputs = [_error(_NOT_RUN, "the kernel died in an earlier cell")] if meta.get("grade") else []
                return cell, self.resources
            try:
                return super().preprocess_cell(cell, resources, index)
            except DeadKernelError:
                self._dead = True
                cell.outputs.append(_error(_DEAD, "the kernel died while running this cell"))
                return cell, self.resources
            except CellTimeoutError:
                cell.outputs.append(_error("CellTimeoutError", "the cell ran past the per-cell time limit"))
                return cell, self.resources

    def _error(ename: str, evalue: str) -> Any:
        return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])

    return [KeepResultsExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
            AssignLatePenalties, CheckCellMetadata]


def _explain_failure(result: dict[str, Any]) -> str:
    """One line saying why nbgrader gave up on a notebook."""
    text = f"{result.get('log') or ''}\n{result.get('error') or ''}"
    if "DeadKernelError" in text or "Kernel died" in text:
        return ("grading stopped: the notebook's kernel died (a cell called exit(), crashed Python, or ran out "
                "of memory). Fix or remove that cell, then grade again.")
    reasons = [line.split("]", 1)[-1].strip() for line in text.splitlines()
               if line.startswith("[ERROR]") and "see the the above traceback" not in line]
    return "nbgrader could not grade it: " + (reasons[0] if reasons else _first_line(text[-500:]) or "unknown error")


def _scores(api: Any, chapter_id: str) -> dict[str, tuple[float, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(api.coursedir.db_url) as gb:
        nb = gb.find_submission_notebook(chapter_id, chapter_id, course.LEARNER_ID)
        return {g.name: (float(g.score or 0.0), float(g.max_score or 0.0)) for g in nb.grades}


def format_table(result: NotebookResult, width: int | None = None) -> str:
    """The per-exercise table a learner reads after `roadmap grade`; long messages wrap under the
    status column so every line of a check's message is there."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    rows = [("exercise", "points", "status")]
    for e in result.exercises:
        status = f"{e.status}: {e.message}" if e.status in (FAILED, NOT_RUN) and e.message else e.status
        rows.append((e.id, f"{_num(e.points)}/{_num(e.max_points)}", status))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    indent = " " * (2 + w0 + 2 + w1 + 2)
    lines = [f"{result.notebook}  (chapter {result.chapter})"]
    for a, b, c in rows:
        wrapped = _wrap(c, max(40, width - len(indent)))
        lines.append(f"  {a:<{w0}}  {b:>{w1}}  {wrapped[0]}".rstrip())
        lines += [indent + line for line in wrapped[1:]]
    lines.append(f"  {'total':<{w0}}  {_num(result.points) + '/' + _num(result.max_points):>{w1}}")
    return "\n".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    """Each line of `text` wrapped to `width`, keeping its own indentation on continuation lines."""
    out: list[str] = []
    for line in text.splitlines() or [""]:
        lead = line[:len(line) - len(line.lstrip())]
        out += textwrap.wrap(line, width, subsequent_indent=lead + "  ", break_long_words=False,
                             break_on_hyphens=False) or [""]
    return out


def _num(x: float) -> str:
    return f"{x:g}"
