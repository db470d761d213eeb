"""The `roadmap` command: list the course, build learner notebooks, grade your work.

Heavy imports (nbgrader, nbformat) happen inside the subcommands that need
them, so `roadmap list` answers at once.
"""
from __future__ import annotations

import argparse
import json
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

    cur, root = _load()
    results, failed = [], False
    for raw in args.paths:
        try:
            res = grade_notebook(Path(raw), cur, root, timeout=args.timeout)
        except RoadmapError as exc:
            print(f"roadmap grade: error: {exc}", file=sys.stderr)
            failed = True
            continue
        results.append(res)
        if not args.json:
            print(format_table(res))
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roadmap", description="The AI Safety Roadmap course: list, build, grade.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="the phases and chapters, with hours, difficulty and prerequisites")
    s.add_argument("--json", action="store_true", help="print the curriculum as JSON")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("build", help="regenerate notebooks/ from solutions/ (all chapters, or those named)")
    s.add_argument("chapters", nargs="*", metavar="CHAPTER", help="chapter ids, e.g. 01_linear_algebra")
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("grade", help="self-grade your notebook(s) with the hidden tests")
    s.add_argument("paths", nargs="+", metavar="NOTEBOOK", help="your chapter notebook(s), wherever they are")
    s.add_argument("--json", action="store_true", help="print results as JSON, one object per notebook")
    s.add_argument("--timeout", type=int, default=None, metavar="SECONDS",
                   help="per-cell time limit (default 120)")
    s.set_defaults(func=cmd_grade)
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
        print(f"roadmap {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("roadmap: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
