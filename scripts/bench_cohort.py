"""Benchmark cohort grading (not a test): plain nbgrader vs `roadmap cohort grade`.

How to run it, from the checkout (it takes a few minutes at the default size):

    .venv/bin/python scripts/bench_cohort.py                 # 20 students x 2 chapters
    .venv/bin/python scripts/bench_cohort.py --students 4    # a quick look
    .venv/bin/python scripts/bench_cohort.py --keep /tmp/b   # keep the course folders to inspect
    .venv/bin/python scripts/bench_cohort.py --only local,dask   # just the pool against Dask (2 workers each)

The cohort is the tiny two-chapter course from tests/cohort_fixture.py (so the numbers do
not depend on which real chapters exist yet), with students cycling through a perfect,
a partial and an untouched submission. The same cohort is graded up to five ways, each on a
fresh copy of the same course folder:

  1. plain `nbgrader autograde "*" --student S`, one student at a time (nbgrader's CLI);
  2. `roadmap cohort grade --workers 1`;
  3. `roadmap cohort grade --workers 2`;
  4. `roadmap cohort grade --workers 1 --no-sandbox` (so 2 - 4 is what the sandbox costs);
  5. `roadmap cohort grade --scheduler ...` on a Dask cluster of 2 `dask worker --nthreads 1`
     started on this machine (the same number of worker processes as 3; the cluster's start is
     not timed, its workers' first imports are, as the local pool's are);

and the per-submission floor is measured: starting a kernel and executing the notebook
once with nbclient, nothing else. The script prints wall times, ratios, and each way's
cost per submission above that floor; it also checks that all the ways end with the
same scores (and a markdown table: submissions per minute). Timings on a shared machine are noisy: compare ratios within one run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import cohort_fixture as fx  # noqa: E402


def build(base: Path, students: int) -> tuple[Path, Path, int]:
    from safety_roadmap.cohort.create import init_cohort
    from safety_roadmap.curriculum import load_curriculum

    root = fx.make_course(base / "course")
    course_dir = base / "cohort"
    init_cohort(course_dir, load_curriculum(root / "curriculum.yaml"), root, timeout=60)
    n = 0
    for i in range(students):
        for chapter, exercises in fx.CHAPTER_EXERCISES.items():
            nb = fx.release(course_dir, chapter)
            kind = i % 3
            if kind == 0:
                for ex in exercises:
                    fx.solve(nb, ex)
            elif kind == 1:
                fx.solve(nb, exercises[0])
            fx.submit(course_dir, f"student{i:02d}", chapter, nb)
            n += 1
    return root, course_dir, n


def floor_seconds(root: Path, repeats: int = 3) -> dict[str, float]:
    """Median time to start a kernel and execute each chapter's notebook once (nbclient, no nbgrader)."""
    import nbformat
    from nbclient import NotebookClient

    out = {}
    for chapter in fx.CHAPTER_EXERCISES:
        times = []
        for _ in range(repeats):
            nb = nbformat.read(str(root / "solutions" / f"{chapter}.ipynb"), as_version=4)
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": tmp}},
                               extra_arguments=["--HistoryManager.hist_file=:memory:",
                                                "--IPKernelApp.log_level=ERROR"]).execute()
                times.append(time.perf_counter() - start)
        out[chapter] = statistics.median(times)
    return out


def plain_nbgrader(course_dir: Path) -> float:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    nbgrader = str(Path(sys.executable).parent / "nbgrader")
    students = sorted(p.name for p in (course_dir / "submitted").iterdir())
    start = time.perf_counter()
    for s in students:
        run = subprocess.run([nbgrader, "autograde", "*", "--student", s, "--force"], cwd=course_dir, env=env,
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"nbgrader autograde failed for {s}:\n{run.stderr[-2000:]}")
    return time.perf_counter() - start


def roadmap(course_dir: Path, root: Path, workers: int | None, *extra: str) -> float:
    env = dict(os.environ, SAFETY_ROADMAP_ROOT=str(root))
    start = time.perf_counter()
    count = ["--workers", str(workers)] if workers else []
    run = subprocess.run([sys.executable, "-m", "safety_roadmap", "cohort", "grade", str(course_dir),
                          *count, "--timeout", "60", *extra], env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"roadmap cohort grade --workers {workers} failed:\n{run.stdout}\n{run.stderr}")
    return took


def dask_seconds(course_dir: Path, root: Path, workers: int, base: Path) -> float:
    """`roadmap cohort grade --scheduler` on a fresh local Dask cluster with `workers` single-thread workers."""
    from tests.dask_cluster import Cluster

    with Cluster(base / "dask-cluster", workers=workers) as cluster:
        return roadmap(course_dir, root, None, "--scheduler", cluster.address)


def bwrap_start_seconds(base: Path, repeats: int = 5) -> float:
    """Best-of-N cost of starting one Python process inside the sandbox rather than outside it."""
    from safety_roadmap import sandbox

    (base / "box").mkdir(exist_ok=True)
    plain = [sys.executable, "-c", "pass"]
    boxed = sandbox.wrap(plain, writable=base / "box", shared=base)

    def best(cmd: list[str]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        return min(times)
    return best(boxed) - best(plain)


def scores(course_dir: Path) -> list[tuple]:
    return [g[:4] + (g[4],) for g in fx.gradebook_state(course_dir / "gradebook.db")["grades"]]


WAYS = {   # name -> (label, worker processes)
    "plain": ("plain nbgrader autograde, one student at a time", 1),
    "w1": ("roadmap cohort grade --workers 1", 1),
    "local": ("roadmap cohort grade --workers 2 (local pool)", 2),
    "w1-unsandboxed": ("roadmap cohort grade --workers 1 --no-sandbox", 1),
    "dask": ("roadmap cohort grade --scheduler (Dask, 2 workers)", 2),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", type=int, default=20)
    ap.add_argument("--keep", type=Path, default=None, help="build the course folders here and keep them")
    ap.add_argument("--only", default=",".join(WAYS), help=f"comma-separated subset of {','.join(WAYS)}")
    args = ap.parse_args()
    ways = [w for w in args.only.split(",") if w]
    unknown = [w for w in ways if w not in WAYS]
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(unknown)} (choose from {', '.join(WAYS)})")
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-cohort-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        root, course_dir, n = build(base, args.students)
        copies = {}
        for name in ways:
            copies[name] = base / f"cohort-{name}"
            shutil.copytree(course_dir, copies[name])
        print(f"cohort: {args.students} students x {len(fx.CHAPTER_EXERCISES)} chapters = {n} submissions "
              f"(tiny fixture course); {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}",
              flush=True)
        floor = floor_seconds(root)
        per_sub = statistics.mean(floor.values())
        print("floor (kernel start + executing the notebook once, nbclient): "
              + ", ".join(f"{c} {t:.2f} s" for c, t in floor.items())
              + f" -> {per_sub * n:.1f} s for the cohort in one process", flush=True)
        run = {"plain": lambda c: plain_nbgrader(c), "w1": lambda c: roadmap(c, root, 1),
               "local": lambda c: roadmap(c, root, 2), "w1-unsandboxed": lambda c: roadmap(c, root, 1, "--no-sandbox"),
               "dask": lambda c: dask_seconds(c, root, 2, base)}
        results = {}
        for name in ways:
            results[name] = run[name](copies[name])
            print(f"  {WAYS[name][0]}: {results[name]:.1f} s", flush=True)
        print(f"\n| way | wall s | submissions/min | s per submission per worker above the floor |")
        print("|---|---:|---:|---:|")
        for name, took in results.items():
            label, workers = WAYS[name]
            overhead = took * workers / n - per_sub
            print(f"| {label} | {took:.1f} | {60 * n / took:.1f} | {overhead:+.2f} |")
        if "local" in results and "dask" in results:
            print(f"\nDask / local pool with 2 worker processes each: {results['dask'] / results['local']:.2f}x the wall "
                  f"time (1.00 = parity)")
        if "w1" in results and "w1-unsandboxed" in results:
            print(f"sandbox: {(results['w1'] - results['w1-unsandboxed']) / n:+.2f} s per submission end to end "
                  f"(noisy); starting one process in bwrap costs {bwrap_start_seconds(base) * 1000:.0f} ms")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        graded = [scores(copies[name]) for name in ways]
        same = all(g == graded[0] for g in graded)
        print(f"all {len(ways)} ways give the same scores: {same}")
        if not same:
            raise SystemExit(1)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
