#!/usr/bin/env python
"""Mutation score of every exercise's thorough check (see tests/mutation.py for how and why).

    python scripts/mutation_score.py                       # every exercise, every mutant (make mutation)
    python scripts/mutation_score.py --chapter 01 03       # chapters whose ids start with these
    python scripts/mutation_score.py --exercise power_iteration --show-survivors
    python scripts/mutation_score.py --sample 4 --seed 0   # the fixed sample `make test` runs

Prints one row per exercise (generated, run, killed, allowed, survived, score) and exits 1 when an
exercise scores under --fail-under (default 95). Survivors are real check gaps to fix, or
equivalent mutants to list in tests/mutation_allowlist.yaml with a one-line reason.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass


def _score(args: tuple) -> dict:
    from tests import mutation

    target, k, seed, timeout = args
    s = mutation.score_target(target, k=k, seed=seed, timeout=timeout)
    return {
        "chapter": target.chapter, "exercise": target.exercise, "generated": s.generated, "run": s.run,
        "killed": s.killed, "allowed": len(s.allowed), "survived": len(s.survivors), "score": round(s.percent, 1),
        "seconds": round(s.seconds, 1),
        "survivors": [{"mutant": o.mutant.id, "line": o.mutant.line} for o in s.survivors],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chapter", nargs="*", default=None, help="chapter id prefixes (default: all)")
    p.add_argument("--exercise", nargs="*", default=None, help="exercise ids (default: all)")
    p.add_argument("--sample", type=int, default=None, help="run at most N mutants per exercise (fixed sample)")
    p.add_argument("--seed", type=int, default=0, help="the sample's seed")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds a mutant may take before it counts as caught")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--fail-under", type=float, default=95.0, help="exit 1 if an exercise scores below this percent")
    p.add_argument("--show-survivors", action="store_true", help="list each surviving mutant")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    a = p.parse_args(argv)

    from tests import mutation

    targets = [t for t in mutation.all_targets(a.chapter, a.exercise) if mutation.mutable(t)]
    if not targets:
        print("no exercise with a reference function or class matches", file=sys.stderr)
        return 2
    tasks = [(t, a.sample, a.seed, a.timeout) for t in targets]
    if a.jobs > 1:
        import multiprocessing as mp
        with ProcessPoolExecutor(a.jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker) as pool:
            rows = list(pool.map(_score, tasks))
    else:
        _init_worker()
        rows = [_score(t) for t in tasks]

    width = max(len(f"{r['chapter']}/{r['exercise']}") for r in rows)
    print(f"{'exercise':<{width}}  gen  run  killed  allowed  survived  score")
    for r in rows:
        flag = "" if r["score"] >= a.fail_under else "   <-- under target"
        print(f"{r['chapter'] + '/' + r['exercise']:<{width}}  {r['generated']:>3}  {r['run']:>3}  {r['killed']:>6}  "
              f"{r['allowed']:>7}  {r['survived']:>8}  {r['score']:>5.1f}%{flag}")
        if a.show_survivors:
            for s in r["survivors"]:
                print(f"    survived (reference line {s['line']}): {s['mutant']}")
    total_run = sum(r["run"] - r["allowed"] for r in rows)
    total_killed = sum(r["killed"] for r in rows)
    below = [r for r in rows if r["score"] < a.fail_under]
    print(f"\n{len(rows)} exercises, {total_killed}/{total_run} non-allowed mutants killed "
          f"({100.0 * total_killed / max(total_run, 1):.1f}%); {len(below)} under {a.fail_under:g}%")
    skipped = [t.key for t in mutation.all_targets(a.chapter, a.exercise) if not mutation.mutable(t)]
    if skipped:
        print(f"not mutated (no reference function or class: quizzes, trained artefacts): {len(skipped)}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
