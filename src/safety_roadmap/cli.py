"""The `roadmap` command: list the course, build learner notebooks, keep your workspace, grade your
work, see your progress, hints and (if you insist) solutions; and, for instructors, grade a cohort.

Heavy imports (nbgrader, nbformat) happen inside the subcommands that need
them, so `roadmap list` answers at once.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from .errors import RoadmapError


def _load():
    from .curriculum import load_curriculum
    from .paths import curriculum_path, project_root

    root = project_root()
    return load_curriculum(curriculum_path(root)), root


def cmd_list(args: argparse.Namespace) -> int:
    cur, _ = _load()
    if args.json:
        print(json.dumps(cur.model_dump(), indent=2))
        return 0
    print(cur.title)
    for i, phase in enumerate(cur.phases, 1):
        print(f"\nPhase {i}: {phase.title}")
        if not phase.chapters:
            print("  (chapters coming soon)")
        for ch in phase.chapters:
            flags = " (optional)" if ch.optional else ""
            needs = f"  needs: {', '.join(ch.prerequisites)}" if ch.prerequisites else ""
            print(f"  {ch.id:<28} {ch.title}{flags}")
            print(f"  {'':<28} {ch.hours:g} h, difficulty {ch.difficulty}/5, "
                  f"{len(ch.exercises)} exercises ({ch.max_points} points){needs}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from .build import build

    cur, root = _load()
    for path in build(cur, root, args.chapters or None):
        print(f"wrote {path.relative_to(root)}")
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from .grading import format_table, grade_notebook
    from .progress import record

    cur, root = _load()
    results, failed, unrecorded = [], False, None
    paths = args.paths or _started_notebooks(cur, root)
    for raw in paths:
        try:
            res = grade_notebook(Path(raw), cur, root, timeout=args.timeout)
        except RoadmapError as exc:
            print(f"roadmap grade: error: {exc}", file=sys.stderr)
            failed = True
            continue
        results.append(res)
        if not args.json:
            print(format_table(res))
        if res.problem:
            print(f"roadmap grade: error: {res.notebook}: {res.problem}", file=sys.stderr)
            failed = True
        if args.record and unrecorded is None:
            try:
                record(res)
            except RoadmapError as exc:
                unrecorded = exc
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    if unrecorded is not None:
        print(f"roadmap grade: error: progress not recorded: {unrecorded}", file=sys.stderr)
        failed = True
    return 1 if failed else 0


def _started_notebooks(cur, root: Path) -> list[Path]:
    """What `roadmap grade` with no argument grades: the workspace notebooks the learner has changed."""
    from .workspace import started, workspace_dir

    ws = workspace_dir(root)
    found = started(cur, root, ws) if ws.is_dir() else []
    if not found:
        raise RoadmapError(f"nothing to grade: no notebook in {ws} has an answer written yet (name a "
                           "notebook, e.g. `roadmap grade path/to/01_linear_algebra.ipynb`)")
    print(f"grading the {len(found)} notebook(s) in {ws} where you have written answers", file=sys.stderr)
    return found


def _shown(path: Path) -> str:
    """A path as the learner would type it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def cmd_status(args: argparse.Namespace) -> int:
    from .progress import format_status, learner_status
    from .workspace import workspace_dir

    cur, root = _load()
    status = learner_status(cur)
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(format_status(status, cur.title, _shown(workspace_dir(root))))
    return 0


def cmd_workspace(args: argparse.Namespace) -> int:
    from .workspace import sync, workspace_dir

    cur, root = _load()
    ws = workspace_dir(root)
    added = sync(cur, root, ws)
    if added:
        print(f"{_shown(ws)}: added {len(added)} chapter notebook(s): {', '.join(p.stem for p in added)}")
    else:
        print(f"{_shown(ws)}: up to date (your notebooks were left as they are)")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    from .workspace import reset, workspace_dir

    cur, root = _load()
    done = reset(cur, root, workspace_dir(root), args.chapter, args.exercise)
    print(f"reset {done.exercise} in {_shown(done.notebook)} ({done.cells} answer cell(s) back to the release); "
          f"your previous notebook is saved as {_shown(done.backup)}. If it is open in JupyterLab: "
          "File > Reload Notebook from Disk.")
    return 0


def cmd_solution(args: argparse.Namespace) -> int:
    from .progress import learner_status, record_solution_view, solution_views
    from .workspace import solution_text

    cur, root = _load()
    chapter, exercise, text = solution_text(cur, root, args.chapter, args.exercise)
    if exercise not in solution_views().get(chapter.id, []) and not args.yes:
        passed = any(e.id == exercise and e.status == "passed"
                     for p in learner_status(cur).phases for c in p.chapters if c.id == chapter.id
                     for e in c.exercises)
        why = ("you have passed it, so compare it with yours" if passed else
               f"you have not passed it yet: `roadmap hint {chapter.id} {exercise}` gives a nudge instead")
        question = (f"Show the reference solution to {exercise} ({chapter.id})? {why[0].upper() + why[1:]}. "
                    "It is recorded in your progress. [y/N] ")
        if not sys.stdin.isatty():
            raise RoadmapError(f"showing the reference solution to {exercise} needs a yes: run it in a terminal, "
                               "or add --yes")
        if input(question).strip().lower() not in ("y", "yes"):
            print("Not shown.")
            return 1
    record_solution_view(chapter.id, exercise)
    print(f"Reference solution to {exercise} ({chapter.id}):\n")
    print(text, end="")
    return 0


def cmd_hint(args: argparse.Namespace) -> int:
    from .hints import hint

    cur, root = _load()
    print(hint(cur, root, args.chapter, args.exercise, args.number), end="")
    return 0


def cmd_portfolio(args: argparse.Namespace) -> int:
    from .portfolio import build
    from .workspace import workspace_dir

    cur, root = _load()
    ws = workspace_dir(root)
    built = build(cur, Path(args.out), ws, [Path(p) for p in args.paths] or None, pdf=args.pdf, name=args.name,
                  ws_shown=_shown(ws))
    for warning in built.warnings:
        print(f"roadmap portfolio: warning: {warning}", file=sys.stderr)
    what = f"{len(built.chapters)} chapter(s): {', '.join(built.chapters)}" if built.chapters else \
        "no chapter with work yet; the page says how to start"
    print(f"wrote {_shown(built.index)}: {what}")
    print(f"wrote {_shown(built.pdf)}" if built.pdf else f"PDF skipped: {built.pdf_skipped}")
    return 0


def cmd_cohort_init(args: argparse.Namespace) -> int:
    from .cohort.create import init_cohort

    cur, root = _load()
    for line in init_cohort(Path(args.dir), cur, root, args.chapters or None, timeout=args.timeout,
                            trust_config=args.trust_config):
        print(line)
    print(f"Ready: {args.dir}. Students work on release/<chapter>/<chapter>.ipynb; put what they hand in at "
          f"submitted/<student>/<chapter>/<chapter>.ipynb (`nbgrader collect` does), then "
          f"`roadmap cohort grade {args.dir}`.")
    return 0


def cmd_cohort_grade(args: argparse.Namespace) -> int:
    from .cohort.grade import grade_cohort

    run = grade_cohort(Path(args.dir), workers=args.workers, timeout=args.timeout, memory_mb=args.memory_mb,
                       force=args.force, students=args.student or None, assignments=args.assignment or None,
                       use_sandbox=args.sandbox, accept_flagged=args.accept_flagged, trust_config=args.trust_config,
                       scheduler=args.scheduler)
    if not run.sandboxed:
        print("WARNING: --no-sandbox: student code ran unsandboxed, with this user's access to files and network")
    skipped = f", skipped {len(run.skipped)} unchanged (--force regrades them)" if run.skipped else ""
    print(f"graded {len(run.graded)} submission(s){skipped} in {run.seconds:.0f} s")
    if run.flags:
        verdict = "kept as nbgrader scored them (--accept-flagged)" if args.accept_flagged else \
            "scored 0 pending your review (--accept-flagged keeps nbgrader's scores; a manual grade overrides)"
        print(f"{len(run.flags)} submission(s) with integrity flags, flagged exercises {verdict}:")
        for key in sorted(run.flags):
            for line in run.flags[key]:
                print(f"  {key}: {line}")
    if run.problems:
        print(f"{len(run.problems)} submission(s) with problems (each graded as far as it could be):")
        for key in sorted(run.problems):
            for line in run.problems[key]:
                print(f"  {key}: {line}")
    for err in run.errors:
        print(f"roadmap cohort grade: error: {err}", file=sys.stderr)
    if run.graded or run.skipped:
        print(f"Next: `roadmap cohort report {args.dir}`")
    return 1 if run.errors else 0


def cmd_cohort_report(args: argparse.Namespace) -> int:
    from .cohort.report import report_cohort

    rep = report_cohort(Path(args.dir), trust_config=args.trust_config)
    print(rep.text, end="")
    print(f"\nwrote {rep.grades_csv}, {rep.exercises_csv.name}, {rep.summary_txt.name}, "
          f"and {len(rep.feedback)} feedback page(s) under {Path(args.dir) / 'feedback'} (hidden tests removed)")
    for err in rep.errors:
        print(f"roadmap cohort report: error: {err}", file=sys.stderr)
    return 1 if rep.errors else 0


class _Parser(argparse.ArgumentParser):
    """Usage mistakes in one line on stderr (exit status 2), like every other roadmap error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive(kind: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number of {kind}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number of {kind}, got {text!r}")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="roadmap", description="The AI Safety Roadmap course: list, build, your workspace, grade, status, "
                "hints, reset, solutions, portfolio; cohort grading for instructors.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="the phases and chapters, with hours, difficulty and prerequisites")
    s.add_argument("--json", action="store_true", help="print the curriculum as JSON")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("build", help="regenerate notebooks/ from solutions/ (all chapters, or those named)")
    s.add_argument("chapters", nargs="*", metavar="CHAPTER", help="chapter ids, e.g. 01_linear_algebra")
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("workspace", help="create your workspace (copies of the chapter notebooks), or add the "
                       "chapters a course update brought; never overwrites your files")
    s.set_defaults(func=cmd_workspace)

    s = sub.add_parser("grade", help="self-grade your notebook(s) with the hidden tests")
    s.add_argument("paths", nargs="*", metavar="NOTEBOOK", help="your chapter notebook(s), wherever they are "
                   "(default: the workspace notebooks where you have written answers)")
    s.add_argument("--json", action="store_true", help="print results as JSON, one object per notebook")
    s.add_argument("--timeout", type=int, default=None, metavar="SECONDS",
                   help="per-cell time limit (default 120)")
    s.add_argument("--no-record", dest="record", action="store_false",
                   help="do not record the result in your progress (see `roadmap status`)")
    s.set_defaults(func=cmd_grade)

    s = sub.add_parser("status", help="your progress: points per chapter, what is unlocked, what to do next")
    s.add_argument("--json", action="store_true", help="print it as JSON")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("hint", help="print the N-th hint for an exercise (without the solution)")
    s.add_argument("chapter", metavar="CHAPTER", help="chapter id (or a unique prefix such as 01)")
    s.add_argument("exercise", metavar="EXERCISE", help="exercise id, or the function or class its test cell checks")
    s.add_argument("number", metavar="N", nargs="?", type=int, default=1, help="which hint (default 1)")
    s.set_defaults(func=cmd_hint)

    s = sub.add_parser("reset", help="put one exercise's answer cell(s) in your workspace notebook back to the "
                       "release (the notebook is backed up first)")
    s.add_argument("chapter", metavar="CHAPTER", help="chapter id (or a unique prefix such as 01)")
    s.add_argument("exercise", metavar="EXERCISE", help="exercise id, or the function or class its test cell checks")
    s.set_defaults(func=cmd_reset)

    s = sub.add_parser("solution", help="print an exercise's reference solution (asks first; recorded in your "
                       "progress)")
    s.add_argument("chapter", metavar="CHAPTER", help="chapter id (or a unique prefix such as 01)")
    s.add_argument("exercise", metavar="EXERCISE", help="exercise id, or the function or class its test cell checks")
    s.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    s.set_defaults(func=cmd_solution)

    s = sub.add_parser("portfolio", help="build a static page (and a PDF when Chromium is installed) of your work: "
                       "scores, figures, written answers, checkpoint answers; never solutions or hidden tests")
    s.add_argument("paths", nargs="*", metavar="NOTEBOOK", help="your notebooks, or folders holding them "
                   "(default: the chapters in your workspace that have figures, written answers or a grade)")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and portfolio.pdf")
    s.add_argument("--name", default=None, help="your name, for the page's title")
    s.add_argument("--no-pdf", dest="pdf", action="store_false", help="write only index.html")
    s.set_defaults(func=cmd_portfolio)

    s = sub.add_parser("cohort", help="instructors: grade a cohort with nbgrader (init, grade, report)")
    csub = s.add_subparsers(dest="cohort_command", required=True, metavar="ACTION")
    c = csub.add_parser("init", help="create an nbgrader course folder with the chapters as assignments")
    c.add_argument("dir", metavar="DIR", help="the course folder to create (new or empty)")
    c.add_argument("chapters", nargs="*", metavar="CHAPTER", help="chapter ids (default: all)")
    c.add_argument("--timeout", type=_positive("seconds"), default=120, metavar="SECONDS",
                   help="per-cell time limit written to nbgrader_config.py (default 120)")
    c.add_argument("--trust-config", action="store_true",
                   help="accept the current nbgrader_config.py after you reviewed a change to it")
    c.set_defaults(func=cmd_cohort_init)
    c = csub.add_parser("grade", help="autograde every submission in DIR/submitted/, in parallel")
    c.add_argument("dir", metavar="DIR", help="the cohort's course folder")
    c.add_argument("--workers", type=_positive("workers"), default=None, metavar="N",
                   help="parallel grading processes (default: half the CPU cores, at most 4)")
    c.add_argument("--timeout", type=_positive("seconds"), default=None, metavar="SECONDS",
                   help="per-cell time limit (default: nbgrader_config.py's Execute.timeout)")
    c.add_argument("--memory-mb", type=_positive("megabytes"), default=None, metavar="MB",
                   help="address-space limit per kernel (default: physical memory / (workers + 1), 2-8 GiB)")
    c.add_argument("--force", action="store_true", help="regrade submissions that have not changed")
    c.add_argument("--student", action="append", metavar="ID", help="grade only this student (repeatable)")
    c.add_argument("--assignment", action="append", metavar="CHAPTER", help="grade only this chapter (repeatable)")
    c.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                   help="run student code without the bubblewrap sandbox (only if you trust every submission)")
    c.add_argument("--accept-flagged", action="store_true",
                   help="keep nbgrader's scores for exercises with integrity flags (default: 0 pending review)")
    c.add_argument("--trust-config", action="store_true",
                   help="accept the current nbgrader_config.py after you reviewed a change to it")
    c.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="grade on a Dask cluster: its scheduler's address, e.g. tcp://10.0.0.5:8786 "
                        "(default: on this machine)")
    c.set_defaults(func=cmd_cohort_grade)
    c = csub.add_parser("report", help="grades CSV, per-exercise summary, feedback HTML without hidden tests")
    c.add_argument("dir", metavar="DIR", help="the cohort's course folder")
    c.add_argument("--trust-config", action="store_true",
                   help="accept the current nbgrader_config.py after you reviewed a change to it")
    c.set_defaults(func=cmd_cohort_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "timeout", None) is None and args.command == "grade":
        from .grading import DEFAULT_TIMEOUT
        args.timeout = DEFAULT_TIMEOUT
    if getattr(args, "timeout", 1) is not None and getattr(args, "timeout", 1) <= 0:
        print("roadmap: error: --timeout must be a positive number of seconds", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except RoadmapError as exc:
        name = f"{args.command} {args.cohort_command}" if args.command == "cohort" else args.command
        print(f"roadmap {name}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `roadmap status | head`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # a folder that cannot be created, a file that cannot be written...
        name = f"{args.command} {args.cohort_command}" if args.command == "cohort" else args.command
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"roadmap {name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("roadmap: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
