"""`roadmap cohort report`: grades CSV, a per-exercise summary, and feedback without hidden tests.

Scores come from the gradebook (so manual grades entered in formgrader count);
each test's first failure line comes from the autograded notebook, read the same
way `roadmap grade` reads it for a learner.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .. import grading
from ..errors import RoadmapError
from . import feedback, layout

NOT_GRADABLE = "not gradable"
MANUAL = "needs manual grading"
FLAGGED = "flagged: pending review"
SUMMARY_COLUMNS = ["assignment", "exercise", "max_points", "submissions", "mean_points", "share_passing",
                   "passed", "failed", "not_attempted", "timed_out", "not_gradable", "flagged",
                   "most_common_failure", "most_common_failure_count"]
FLAG_COLUMN = "integrity_flags"   # added to nbgrader's grades.csv: the flagged exercises, ';'-separated


@dataclass
class ExerciseOutcome:
    student: str
    assignment: str
    exercise: str
    points: float
    max_points: float
    status: str
    message: str = ""


@dataclass
class ExerciseSummary:
    assignment: str
    exercise: str
    max_points: float
    submissions: int = 0
    mean_points: float = 0.0
    share_passing: float = 0.0
    passed: int = 0
    failed: int = 0
    not_attempted: int = 0
    timed_out: int = 0
    not_gradable: int = 0
    flagged: int = 0
    most_common_failure: str = ""
    most_common_failure_count: int = 0

    def row(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class Report:
    grades_csv: Path
    exercises_csv: Path
    summary_txt: Path
    feedback: list[Path] = field(default_factory=list)
    summaries: list[ExerciseSummary] = field(default_factory=list)
    outcomes: list[ExerciseOutcome] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)
    flags: dict[str, list[str]] = field(default_factory=dict)
    unsandboxed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    text: str = ""


def collect_outcomes(course_dir: Path) -> list[ExerciseOutcome]:
    """Every (student, assignment, test) the gradebook holds, with status and first failure line."""
    from nbgrader.api import Gradebook, SubmittedAssignment

    state = layout.read_json(layout.state_dir(course_dir) / layout.STATE_FILE, {}).get("submissions", {})
    out: list[ExerciseOutcome] = []
    with Gradebook(f"sqlite:///{course_dir / layout.GRADEBOOK}", layout.COURSE_ID) as gb:
        subs = sorted(gb.db.query(SubmittedAssignment).all(), key=lambda s: (s.assignment.name, s.student.id))
        for sub in subs:
            student, assignment = sub.student.id, sub.assignment.name
            record = state.get(f"{student}/{assignment}", {})
            problems = record.get("problems", [])
            flagged = {} if record.get("accepted") else {f["exercise"]: f["reason"] for f in record.get("flags", [])}
            for nb in sub.notebooks:
                grades = sorted(nb.grades, key=lambda g: g.name)
                path = course_dir / "autograded" / student / assignment / f"{nb.name}.ipynb"
                executed = _load(path)
                shim = SimpleNamespace(exercises=[SimpleNamespace(id=g.name) for g in grades])
                errors = grading._errors_by_exercise(executed, shim) if executed else {}
                order = {c: i for i, c in enumerate(_grade_order(executed))}
                for g in sorted(grades, key=lambda g: order.get(g.name, len(order))):
                    score, max_score = float(g.score or 0.0), float(g.max_score or 0.0)
                    if g.name in flagged and g.manual_score is None:
                        status, message = FLAGGED, flagged[g.name]
                    elif executed is None:
                        status = NOT_GRADABLE
                        message = problems[0] if problems else "no autograded notebook"
                    elif g.name in errors:
                        status, message = grading._status(*errors[g.name], score, max_score)
                    elif g.needs_manual_grade:
                        status, message = MANUAL, ""
                    else:
                        status, message = (grading.PASSED, "") if score >= max_score else (grading.FAILED, "")
                    out.append(ExerciseOutcome(student, assignment, g.name, score, max_score, status, message))
    return out


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _grade_order(nb: dict[str, Any] | None) -> list[str]:
    """Grade ids in notebook order (the order a student meets them)."""
    ids = []
    for cell in (nb or {}).get("cells", []):
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if meta.get("grade") and meta.get("grade_id"):
            ids.append(meta["grade_id"])
    return ids


def summarise(outcomes: list[ExerciseOutcome]) -> list[ExerciseSummary]:
    """Per assignment and exercise: mean, share passing, counts by status, the most common failure."""
    groups: dict[tuple[str, str], list[ExerciseOutcome]] = {}
    for o in outcomes:
        groups.setdefault((o.assignment, o.exercise), []).append(o)
    rows = []
    for (assignment, exercise), items in groups.items():
        s = ExerciseSummary(assignment, exercise, max(o.max_points for o in items), submissions=len(items))
        s.mean_points = sum(o.points for o in items) / len(items)
        by = Counter(o.status for o in items)
        s.passed, s.failed = by[grading.PASSED], by[grading.FAILED]
        s.not_attempted, s.timed_out, s.not_gradable = by[grading.NOT_ATTEMPTED], by[grading.TIMED_OUT], by[NOT_GRADABLE]
        s.flagged = by[FLAGGED]
        s.share_passing = s.passed / len(items)
        failures = Counter(o.message for o in items if o.status in (grading.FAILED, grading.TIMED_OUT) and o.message)
        if failures:
            s.most_common_failure, s.most_common_failure_count = failures.most_common(1)[0]
        rows.append(s)
    return rows


def export_grades(course_dir: Path, dest: Path) -> None:
    """nbgrader's own CSV export: one row per student and assignment, nbgrader's columns."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins.export import CsvExportPlugin

    plugin = CsvExportPlugin(config=layout.make_config(course_dir))
    plugin.to = str(dest)
    with Gradebook(f"sqlite:///{course_dir / layout.GRADEBOOK}", layout.COURSE_ID) as gb:
        plugin.export(gb)


def add_flag_column(grades_csv: Path, flags: dict[str, list[str]]) -> None:
    """nbgrader's grades.csv plus one column: the exercises flagged in that submission."""
    with grades_csv.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
        fields = list(rows[0]) if rows else None
    if fields is None:
        with grades_csv.open(newline="", encoding="utf-8") as fh:
            fields = next(csv.reader(fh), [])
    with grades_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*fields, FLAG_COLUMN])
        writer.writeheader()
        for row in rows:
            row[FLAG_COLUMN] = ";".join(flags.get(f"{row['student_id']}/{row['assignment']}", []))
            writer.writerow(row)


def write_feedback(course_dir: Path, assignments: list[str]) -> tuple[list[Path], list[str]]:
    """nbgrader's feedback HTML per autograded submission, hidden tests removed and then checked for."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import GetGrades

    cfg = layout.make_config(course_dir)
    cfg.GenerateFeedback.preprocessors = [feedback.HideHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]
    api = layout.api(cfg)
    written: list[Path] = []
    errors: list[str] = []
    for assignment in assignments:
        if not any((course_dir / "autograded").glob(f"*/{assignment}/*.ipynb")):
            continue
        result = api.generate_feedback(assignment, force=True)
        if not result.get("success"):
            errors.append(f"feedback for {assignment}: {grading._explain_failure(result)}")
        hidden: set[str] = set()
        for src in (course_dir / "source" / assignment).glob("*.ipynb"):
            hidden |= feedback.hidden_lines(_load(src) or {})
        for page in sorted((course_dir / "feedback").glob(f"*/{assignment}/*.html")):
            leaks = feedback.leaked(page.read_text(encoding="utf-8", errors="replace"), hidden)
            if leaks:  # never hand out a page that shows a hidden test, whatever produced it
                page.unlink()
                errors.append(f"{page.relative_to(course_dir)}: removed, it showed hidden test line {leaks[0]!r}")
            else:
                written.append(page)
    return written, errors


def format_flags(flags: dict[str, list[str]], unsandboxed: list[str]) -> list[str]:
    """The top of summary.txt: what the instructor must look at before trusting the scores."""
    lines: list[str] = []
    if unsandboxed:
        lines += [f"WARNING: {len(unsandboxed)} submission(s) were graded with --no-sandbox (student code ran with "
                  f"your access to files and network): {', '.join(sorted(unsandboxed)[:10])}", ""]
    if flags:
        lines.append(f"INTEGRITY FLAGS: {len(flags)} submission(s). Flagged exercises scored 0 pending your review; "
                     "a manual grade in formgrader overrides, `roadmap cohort grade --accept-flagged` keeps "
                     "nbgrader's scores.")
        for key in sorted(flags):
            for line in flags[key]:
                lines.append(f"  {key}: {line}")
        lines.append("")
    else:
        lines += ["Integrity flags: none.", ""]
    return lines


def format_summary(summaries: list[ExerciseSummary], problems: dict[str, list[str]],
                   outcomes: list[ExerciseOutcome], flags: dict[str, list[str]] | None = None,
                   unsandboxed: list[str] | None = None) -> str:
    lines: list[str] = format_flags(flags or {}, unsandboxed or [])
    totals: dict[tuple[str, str], list[float]] = {}
    for o in outcomes:
        t = totals.setdefault((o.assignment, o.student), [0.0, 0.0])
        t[0] += o.points
        t[1] += o.max_points
    for assignment in sorted({s.assignment for s in summaries}):
        rows = [s for s in summaries if s.assignment == assignment]
        scores = [v for (a, _), v in totals.items() if a == assignment]
        mean = sum(v[0] for v in scores) / len(scores) if scores else 0.0
        lines.append(f"{assignment}: {len(scores)} submission(s), mean {mean:.3g}/{scores[0][1]:g}" if scores
                     else f"{assignment}: no submissions")
        w = max(len(s.exercise) for s in rows)
        lines.append(f"  {'exercise':<{w}}  {'mean':>9}  {'passing':>7}  most common failure")
        for s in rows:
            common = (f"{s.most_common_failure[:90]} (x{s.most_common_failure_count})"
                      if s.most_common_failure else "")
            lines.append(f"  {s.exercise:<{w}}  {s.mean_points:>5.2f}/{s.max_points:<3g}  "
                         f"{100 * s.share_passing:>6.0f}%  {common}")
        lines.append("")
    if not summaries:
        lines.append("no graded submissions yet (`roadmap cohort grade` first)")
    if problems:
        lines.append("Submissions with problems:")
        for key in sorted(problems):
            for p in problems[key]:
                lines.append(f"  {key}: {p}")
    return "\n".join(lines).rstrip() + "\n"


def report_cohort(course_dir: Path, *, trust_config: bool = False) -> Report:
    """Write reports/grades.csv, reports/exercises.csv, reports/summary.txt and feedback/ HTML."""
    from .integrity import Flag, describe

    course_dir = layout.require_cohort(course_dir)
    if trust_config and (course_dir / layout.CONFIG_FILE).exists():
        layout.trust_config(course_dir)
    layout.verified_config_bytes(course_dir)   # refuse before anything runs the file
    out = course_dir / layout.REPORTS
    out.mkdir(exist_ok=True)
    rep = Report(out / "grades.csv", out / "exercises.csv", out / "summary.txt")
    assignments = layout.assignments(course_dir)
    if not assignments:
        raise RoadmapError(f"{course_dir}: the gradebook has no assignments")
    state = layout.read_json(layout.state_dir(course_dir) / layout.STATE_FILE, {}).get("submissions", {})
    rep.flags = {k: describe([Flag(**f) for f in v["flags"]]) for k, v in state.items() if v.get("flags")}
    rep.unsandboxed = [k for k, v in state.items() if v.get("sandboxed") is False]
    export_grades(course_dir, rep.grades_csv)
    add_flag_column(rep.grades_csv, {k: sorted({f["exercise"] for f in v["flags"] if f["exercise"]})
                                     for k, v in state.items() if v.get("flags")})
    rep.outcomes = collect_outcomes(course_dir)
    rep.summaries = summarise(rep.outcomes)
    with rep.exercises_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for s in rep.summaries:
            writer.writerow(s.row())
    rep.problems = {k: v["problems"] for k, v in state.items() if v.get("problems")}
    rep.feedback, rep.errors = write_feedback(course_dir, assignments)
    rep.text = format_summary(rep.summaries, rep.problems, rep.outcomes, rep.flags, rep.unsandboxed)
    rep.summary_txt.write_text(rep.text, encoding="utf-8")
    return rep
