"""`roadmap cohort grade --scheduler`: grading on a real Dask cluster (issue 20).

One cluster for the module (`dask scheduler` + two `dask worker --nthreads 1` on localhost,
free ports, always torn down) and one small cohort of the tiny fixture's chapter 01: perfect,
partial, blank, looping, cheating (an in-kernel tamper) and corrupt. The local run of that
cohort is the reference: the Dask run must give the same gradebook, problems and flags.
The tests run in file order; the last one stops the scheduler.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from safety_roadmap import sandbox
from safety_roadmap.cohort import executor
from safety_roadmap.cohort.create import init_cohort
from safety_roadmap.curriculum import load_curriculum
from safety_roadmap.errors import RoadmapError

from . import cohort_fixture as fx
from .cli_tools import one_line
from .dask_cluster import Cluster, free_port

pytest.importorskip("distributed")

TIMEOUT, MEMORY = "3", "1024"   # per-cell seconds (the looper costs this), MB per kernel
CH = fx.ALPHA


def make_cohort(course_dir: Path) -> dict[tuple[str, str], dict[str, float]]:
    """Six students for chapter 01; their expected points."""
    def released() -> dict[str, Any]:
        return fx.release(course_dir, CH)
    fx.submit(course_dir, "perfect", CH, fx.solve(fx.solve(released(), "double"), "add_one"))
    fx.submit(course_dir, "partial", CH, fx.solve(fx.solve(released(), "add_one"), "double", fx.WRONG.format(fn="double")))
    fx.submit(course_dir, "blank", CH, released())
    fx.submit(course_dir, "looper", CH, fx.solve(fx.solve(released(), "double"), "add_one",
                                                 "while True:\n    pass\ndef add_one(x):\n    return x + 1"))
    fx.submit(course_dir, "cheater", CH, fx.solve(fx.solve(released(), "double", fx.IN_KERNEL["rebind_check"]),
                                                  "add_one"))
    fx.submit(course_dir, "corrupt", CH, '{"cells": [{"cell_type": "code", "sour')
    return {("perfect", CH): {"double": 2, "add_one": 1}, ("partial", CH): {"double": 0, "add_one": 1},
            ("blank", CH): {"double": 0, "add_one": 0}, ("looper", CH): {"double": 2, "add_one": 0},
            ("cheater", CH): {"double": 0, "add_one": 0}, ("corrupt", CH): {"double": 0, "add_one": 0}}


def roadmap(*args: str, root: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, SAFETY_ROADMAP_ROOT=str(root), SAFETY_ROADMAP_PROGRESS_DB=str(root / "progress.db"))
    return subprocess.run([sys.executable, "-m", "safety_roadmap", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def grade_args(course_dir: Path, *extra: str) -> list[str]:
    return ["cohort", "grade", str(course_dir), "--timeout", TIMEOUT, "--memory-mb", MEMORY, *extra]


def scores(course_dir: Path) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    for student, assignment, _, cell, auto, manual, _ in fx.gradebook_state(course_dir / "gradebook.db")["grades"]:
        out.setdefault((student, assignment), {})[cell] = manual if manual is not None else auto
    return out


def per_submission(stdout: str) -> list[str]:
    """The report's lines about single submissions (problems, flags), without timings."""
    return sorted(line.strip() for line in stdout.splitlines() if line.startswith("  "))


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = fx.make_course(tmp / "course")
        self.pristine = tmp / "pristine"
        init_cohort(self.pristine, load_curriculum(self.root / "curriculum.yaml"), self.root, [CH])
        self.expected = make_cohort(self.pristine)
        self.cluster: Cluster | None = None
        self.local: Path | None = None
        self.local_stdout = ""

    def copy(self, name: str, students: list[str] | None = None) -> Path:
        dest = self.tmp / name
        shutil.copytree(self.pristine, dest)
        for folder in (dest / "submitted").iterdir():
            if students is not None and folder.name not in students:
                shutil.rmtree(folder)
        return dest


# --------------------------------------------------------------------------- no cluster needed


def test_scheduler_and_workers_exclude_each_other_and_an_absent_scheduler_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from .cli_tools import cli

    rc, _, err = cli(capsys, "cohort", "grade", str(tmp_path), "--workers", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert rc == 1
    one_line(err, "--workers sets this machine's grading processes; with --scheduler the cluster's workers grade")
    with pytest.raises(RoadmapError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:\d+ .*dask scheduler"):
        executor.connect(f"tcp://127.0.0.1:{free_port()}", timeout=1)


class FakeFuture:
    def __init__(self, result: Any = None, exc: BaseException | None = None, status: str = "finished") -> None:
        self._result, self._exc, self.status = result, exc, "error" if exc else status

    def done(self) -> bool:
        return True

    def result(self) -> Any:
        return self._result

    def exception(self) -> BaseException | None:
        return self._exc


class FakeClient:
    status = "running"

    def __init__(self, answers: dict[str, FakeFuture]) -> None:
        self.answers, self.submitted = answers, []

    def submit(self, fn: Any, task: dict[str, Any], bundle: dict[str, Any], **kwargs: Any) -> FakeFuture:
        self.submitted.append((fn, task, bundle, kwargs))
        return self.answers[task["key"]]

    def cancel(self, futures: Any, force: bool = False) -> None:
        pass

    def scatter(self, data: list[Any], **kwargs: Any) -> list[Any]:
        assert kwargs == {"broadcast": True, "hash": False}
        return data


def test_every_dask_outcome_reaches_the_submitter() -> None:
    """A worker lost twice (KilledWorker) is reported, never dropped; another install, a failed task, or a
    result for another source fingerprint are run errors (left ungraded), not a student's zero."""
    from distributed.scheduler import KilledWorker

    bundle = {"source_fingerprint": "src-1"}
    answers = {"ok/a": FakeFuture({"ok": True, "notebooks": {}, "source_fingerprint": "src-1"}),
               "lost/a": FakeFuture(exc=KilledWorker("roadmap-grade-x", "tcp://w:1", 1)),
               "other/a": FakeFuture(exc=executor.WorkerMismatch("tcp://w:2 runs safety_roadmap 0.0.1 ...")),
               "broken/a": FakeFuture(exc=ModuleNotFoundError("No module named 'safety_roadmap'")),
               "stale/a": FakeFuture({"ok": True, "notebooks": {}, "source_fingerprint": "src-0"})}
    client = FakeClient(answers)
    got: dict[str, dict[str, Any]] = {}
    executor.DaskExecutor(client, {"a": bundle}, "tcp://s:1").run(
        [({"key": k, "assignment": "a"}, 60.0) for k in answers], lambda key, out: got.setdefault(key, out))
    assert set(got) == set(answers)
    assert all(kw["retries"] == 0 and kw["pure"] is False for *_, kw in client.submitted)
    assert all(task["limit"] == 60.0 and b is bundle and fn is executor.run_remote for fn, task, b, _ in client.submitted)
    assert got["ok/a"]["ok"] is True
    assert not got["lost/a"]["ok"] and "lost again on the scheduler's retry (KilledWorker)" in got["lost/a"]["error"]
    assert got["other/a"]["fatal"] == "other/a: not graded: tcp://w:2 runs safety_roadmap 0.0.1 ..."
    assert "ModuleNotFoundError: No module named 'safety_roadmap'" in got["broken/a"]["fatal"]
    assert "another version of the chapter's source notebook" in got["stale/a"]["fatal"]

    client.status = "connecting"   # the scheduler went away
    with pytest.raises(executor.SchedulerLost, match="nothing was written to the gradebook"):
        executor.DaskExecutor(client, {"a": bundle}, "tcp://s:1").run([({"key": "ok/a", "assignment": "a"}, 1.0)],
                                                                      lambda key, out: None)


def test_a_worker_from_another_install_fails_the_task_naming_both_versions() -> None:
    """Checked in the task itself (no notebook runs): what a worker with other code would answer."""
    bundle = {"version": "0.0.1", "fingerprint": "f" * 64, "sandbox": False}
    why = executor.refuse(bundle)
    assert f"runs safety_roadmap {executor.version()}" in why and "submitter safety_roadmap 0.0.1 (ffffffffffff)" in why
    with pytest.raises(executor.WorkerMismatch, match="install the submitter's version on every worker"):
        executor.run_remote({"key": "s/a"}, bundle)
    assert executor.refuse(dict(bundle, version=executor.version(), fingerprint=executor.package_fingerprint())) == ""


def test_a_dask_task_past_its_overall_limit_ends_its_kernel_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask cannot stop a running task: the task's own watchdog kills what it started (the kernel), the grading
    call returns, and the outcome is the local pool's "stopped after N s". Its scratch course is built from bytes."""
    from safety_roadmap.cohort import worker

    seen: dict[str, Any] = {}

    def stuck_grading(task: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
        seen.update(settings, data=(Path(settings["course_dir"]) / "source" / "a" / "data" / "x.csv").read_bytes(),
                    template=Path(settings["template_db"]).read_bytes())
        kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        kernel.wait()
        return {"ok": True, "notebooks": {"a": "{}"}}

    monkeypatch.setattr(worker, "autograde_submission", stuck_grading)
    monkeypatch.setattr(worker, "_become_subreaper", lambda: None)
    bundle = {"assignment": "a", "template_db": b"template", "data_files": {"data/x.csv": b"1,2"},
              "file_config": None, "source_fingerprint": "src-1", "timeout": 5, "memory_limit": 0, "sandbox": False,
              "version": executor.version(), "fingerprint": executor.package_fingerprint()}
    start = time.monotonic()
    out = executor.run_remote({"key": "s/a", "student": "s", "assignment": "a", "limit": 1.5}, bundle)
    assert time.monotonic() - start < 30
    assert out["ok"] is False and out["error"] == "stopped after 2 s, the overall limit for one submission"
    assert out["source_fingerprint"] == "src-1" and out["notebooks"] == {}
    assert seen["data"] == b"1,2" and seen["template"] == b"template" and seen["timeout"] == 5
    assert not Path(seen["run_tmp"]).exists()   # the scratch course is gone


# --------------------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    if sandbox.unavailable():
        pytest.skip(f"no sandbox here: {sandbox.unavailable()}")
    s = Setup(tmp_path_factory.mktemp("dask"))
    s.cluster = Cluster(s.tmp / "cluster", workers=2)
    try:
        s.cluster.start()
        # the local run is the reference (graded while the cluster's workers sit idle)
        s.local = s.copy("local")
        run = roadmap(*grade_args(s.local, "--workers", "2"), root=s.root)
        assert run.returncode == 0, run.stdout + run.stderr
        s.local_stdout = run.stdout
        assert scores(s.local) == s.expected
        yield s
    finally:
        s.cluster.close()


@pytest.mark.slow
def test_a_dask_run_grades_exactly_like_the_local_run(setup: Setup) -> None:
    course = setup.copy("dask")
    run = roadmap(*grade_args(course, "--scheduler", setup.cluster.address), root=setup.root)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith(f"grading on the Dask cluster at {setup.cluster.address}")
    assert "graded 6 submission(s)" in run.stdout and "Traceback" not in run.stderr
    local = fx.gradebook_state(setup.local / "gradebook.db")
    assert fx.gradebook_state(course / "gradebook.db") == local          # grades, comments, timestamps
    assert per_submission(run.stdout) == per_submission(setup.local_stdout)
    lines = per_submission(run.stdout)
    assert any(line.startswith(f"cheater/{CH}: ") and "double" in line for line in lines), lines
    assert any(f"looper/{CH}: cell" in line and "time limit" in line for line in lines), lines
    assert any(f"corrupt/{CH}: corrupt notebook" in line for line in lines), lines
    # the executed notebooks came back to the submitter, which alone wrote them
    assert (course / "autograded" / "perfect" / CH / f"{CH}.ipynb").is_file()
    # which executor graded is no part of a submission's fingerprint: a later local run regrades nothing
    assert len(digests(course)) == 6 and digests(course) == digests(setup.local)


def digests(course_dir: Path) -> dict[str, str]:
    state = json.loads((course_dir / ".roadmap" / "graded.json").read_text())["submissions"]
    return {key: entry["digest"] for key, entry in state.items()}


def _processing_for(client: Any, seconds: float) -> str:
    """The name of a worker that has been running one task for `seconds` (its kernel is running)."""
    since: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        busy = {addr for addr, keys in client.processing().items() if keys}
        since = {a: since.get(a, time.monotonic()) for a in busy}
        for addr, start in since.items():
            if time.monotonic() - start >= seconds:
                return str(client.scheduler_info(n_workers=-1)["workers"][addr]["name"])
        time.sleep(0.2)
    raise AssertionError("no worker picked up a task within 120 s")


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_no_submission(setup: Setup) -> None:
    course = setup.copy("killed", ["partial", "looper"])
    env = dict(os.environ, SAFETY_ROADMAP_ROOT=str(setup.root))
    proc = subprocess.Popen([sys.executable, "-m", "safety_roadmap",
                             *grade_args(course, "--scheduler", setup.cluster.address)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with setup.cluster.client() as client:
            victim = _processing_for(client, 1.5)
            setup.cluster.kill_worker(victim)
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert "graded 2 submission(s)" in out, out
    # the lost task ran again on the other worker: every submission graded, as locally
    want = {k: v for k, v in setup.expected.items() if k[0] in ("partial", "looper")}
    assert scores(course) == want


@pytest.mark.slow
def test_a_lost_scheduler_stops_the_run_with_one_line_and_an_untouched_gradebook(setup: Setup) -> None:
    course = setup.copy("lost", ["looper"])
    gradebook = (course / "gradebook.db").read_bytes()
    env = dict(os.environ, SAFETY_ROADMAP_ROOT=str(setup.root))
    proc = subprocess.Popen([sys.executable, "-m", "safety_roadmap",
                             *grade_args(course, "--scheduler", setup.cluster.address)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with setup.cluster.client() as client:
            _processing_for(client, 1.0)
        setup.cluster.kill_scheduler()
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, out + err
    one_line(err, "roadmap cohort grade: error: lost the connection to the Dask scheduler at",
             "nothing was written to the gradebook")
    assert (course / "gradebook.db").read_bytes() == gradebook
    assert not (course / ".roadmap" / "graded.json").exists()
