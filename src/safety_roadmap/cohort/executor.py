"""Where `roadmap cohort grade` runs submissions: this machine's worker processes, or a Dask cluster.

One small interface (`Executor`): `run(jobs, on_result)` takes (task, overall time limit) pairs
and calls `on_result(key, outcome)` in the submitter as each submission finishes; `close()`
stops the workers, `kill()` stops them now. The submitter alone turns outcomes into grades.

- `LocalPool` (no `--scheduler`): N spawned processes on this machine, each grading one
  submission at a time (`worker.worker_main`).
- `DaskExecutor` (`--scheduler tcp://HOST:PORT`): one Dask task per submission
  (`run_remote`), on whatever cluster the scheduler has (`dask worker`s, dask-jobqueue,
  dask-kubernetes).

Why both, rather than a Dask `LocalCluster` for local grading too: the local pool does
things a LocalCluster does not do for us. It kills a worker's whole process tree when a
submission passes its overall limit and starts a fresh worker at once (Dask cannot stop a
running task; its nanny restarts only a worker that died); it tells "the grading process
could not start" (a broken install: every worker would fail alike) from "it died while
running this submission"; and it starts in about a second with no scheduler, ports or
nanny processes, which matters for a 30-submission class on a laptop. The per-kernel
memory cap, the sandbox and the integrity attestations live in `worker.py` and act the same
under both executors; the overall deadline on a Dask worker is a watchdog inside the task
that kills the kernel (`run_remote`).

What a Dask task carries (no shared filesystem): the submission's files, the chapter's
source fingerprint, the template gradebook (assignments, no students), the assignment's
data files and the settings, all as bytes or plain values, plus the submitter's
`safety_roadmap` version and package fingerprint. A worker whose version or fingerprint
differs fails the task with both named (`WorkerMismatch`); the submission is left ungraded
and the run exits non-zero. A worker lost mid-task is the scheduler's to retry
(`distributed.scheduler.allowed-failures`; set it to 1 for "once elsewhere"); when it gives
up (`KilledWorker`) the submission is reported and scored 0, never dropped. A lost
scheduler ends the run with one line and leaves the gradebook untouched (`SchedulerLost`).
The tasks hold each submission's attestation secret: use TLS (`tls://`) across an untrusted
network.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import multiprocessing
import os
import queue
import shutil
import tempfile
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any, Callable, Protocol

from ..errors import RoadmapError

Jobs = list[tuple[dict[str, Any], float]]
OnResult = Callable[[str, dict[str, Any]], None]


class Executor(Protocol):
    def run(self, jobs: Jobs, on_result: OnResult) -> None: ...
    def close(self) -> None: ...
    def kill(self) -> None: ...


class SchedulerLost(RoadmapError):
    """The Dask scheduler went away mid-run: nothing of this run is written."""


class WorkerMismatch(RuntimeError):
    """A Dask worker cannot grade like the submitter would (another version, no sandbox)."""


# --------------------------------------------------------------------------- what both sides must agree on


def version() -> str:
    from .. import __version__

    return __version__


@functools.lru_cache(maxsize=1)
def package_fingerprint() -> str:
    """sha256 over the `safety_roadmap` package's Python files (checks, guard, grader): two installs
    with the same fingerprint grade alike, whatever their version string says."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- this machine: a process pool


def kill_all(procs: list[Any], timeout: float = 10) -> None:
    """SIGKILL these psutil processes and reap them (any may have gone already)."""
    import psutil

    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=timeout)


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        proc = psutil.Process(pid)
        kill_all(proc.children(recursive=True) + [proc])
    except psutil.NoSuchProcess:
        return


class LocalPool:
    """N worker processes; a worker that dies or overruns is replaced, and only its submission suffers."""

    def __init__(self, n: int, settings: dict[str, Any]) -> None:
        from . import worker

        self.ctx = multiprocessing.get_context("spawn")
        self.target = worker.worker_main
        self.settings = settings
        self.results = self.ctx.Queue()
        self.workers: dict[int, tuple[Any, Any]] = {}
        self.ready: set[int] = set()
        self.next_id = 0
        for _ in range(n):
            self._start()

    def _start(self) -> int:
        wid, self.next_id = self.next_id, self.next_id + 1
        tasks = self.ctx.Queue()
        proc = self.ctx.Process(target=self.target, args=(wid, tasks, self.results, self.settings), daemon=True)
        proc.start()
        self.workers[wid] = (proc, tasks)
        return wid

    def _replace(self, wid: int) -> None:
        proc, _ = self.workers.pop(wid)
        _kill_tree(proc.pid)
        proc.join(5)
        self._start()

    def run(self, jobs: Jobs, on_result: OnResult) -> None:
        """Run (task, time limit) jobs; call on_result(key, outcome) in the parent as each finishes."""
        pending = deque(jobs)
        busy: dict[int, tuple[str, float, float]] = {}  # worker -> (key, deadline, limit)
        while pending or busy:
            for wid, (_, tasks) in list(self.workers.items()):
                if wid not in busy and pending:
                    task, limit = pending.popleft()
                    tasks.put(task)
                    busy[wid] = (task["key"], time.monotonic() + limit, limit)
            try:
                wid, key, out = self.results.get(timeout=0.5)
            except queue.Empty:
                pass
            else:
                if key is None:
                    self.ready.add(wid)
                elif wid in busy and busy[wid][0] == key:
                    del busy[wid]
                    on_result(key, out)
                continue
            for wid, (key, deadline, limit) in list(busy.items()):
                proc = self.workers[wid][0]
                if not proc.is_alive():
                    del busy[wid]
                    last = self._last_log_line(wid)
                    if wid not in self.ready:  # it never got going: every other worker would fail the same way
                        raise RoadmapError(f"a grading process could not start (exit code {proc.exitcode})"
                                           + (f": {last}" if last else ""))
                    self._replace(wid)
                    on_result(key, {"ok": False, "notebooks": {}, "error":
                                    f"the grading process died (exit code {proc.exitcode}) while running it"
                                    + (f" ({last})" if last else "")})
                elif time.monotonic() > deadline:
                    del busy[wid]
                    self._replace(wid)
                    on_result(key, {"ok": False, "notebooks": {}, "error": overrun(limit)})

    def _last_log_line(self, wid: int) -> str:
        try:
            text = (Path(self.settings["run_tmp"]) / f"worker-{wid}.log").read_text(errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][:200] if lines else ""

    def close(self) -> None:
        for proc, tasks in self.workers.values():
            try:
                tasks.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 30
        for proc, _ in self.workers.values():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                _kill_tree(proc.pid)
        self.workers.clear()

    def kill(self) -> None:
        for proc, _ in self.workers.values():
            _kill_tree(proc.pid)
        self.workers.clear()


def overrun(limit: float) -> str:
    return f"stopped after {limit:.0f} s, the overall limit for one submission"


# --------------------------------------------------------------------------- a Dask cluster


def close(client: Any) -> None:
    try:
        client.close(timeout=3)
    except Exception:  # noqa: BLE001 - the scheduler may be gone already
        pass


def connect(address: str, *, timeout: float = 20, wait_workers: float = 60) -> Any:
    """A Dask client for `address`, with at least one worker; one clear line when that fails."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - a dependency of the project
        raise RoadmapError("--scheduler needs the `distributed` package (pip install distributed)") from None
    _quiet()
    try:
        client = Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise RoadmapError(f"cannot reach the Dask scheduler at {address} ({_one_line(exc)}); start one with "
                           "`dask scheduler`, or leave out --scheduler to grade on this machine") from None
    try:
        client.wait_for_workers(1, timeout=wait_workers)
    except (TimeoutError, OSError) as exc:
        client.close(timeout=5)
        raise RoadmapError(f"the Dask scheduler at {address} has no workers after {wait_workers:.0f} s "
                           f"({_one_line(exc) or 'none connected'}); start some with `dask worker {address}`") \
            from None
    return client


def default_memory_mb(client: Any, floor: int, ceiling: int) -> int:
    """Per-kernel memory cap on a cluster: the smallest worker's memory per thread, within [floor, ceiling] MB."""
    per_thread = [w.get("memory_limit", 0) / max(1, w.get("nthreads", 1))
                  for w in client.scheduler_info(n_workers=-1).get("workers", {}).values()]
    per_thread = [m for m in per_thread if m > 0]
    if not per_thread:
        return ceiling
    return int(min(ceiling, max(floor, min(per_thread) // 1024 ** 2)))


def dashboard(client: Any) -> str:
    """The cluster's dashboard address, or '' when its scheduler runs none."""
    try:
        if "dashboard" in client.scheduler_info(n_workers=0).get("services", {}):
            return str(client.dashboard_link)
    except Exception:  # noqa: BLE001 - only a courtesy
        pass
    return ""


def bundle(course_dir: Path, assignment: str, *, template_db: Path, file_config: Any, source_fingerprint: str,
           timeout: int, memory_limit: int, use_sandbox: bool) -> dict[str, Any]:
    """Everything a remote worker needs to grade one assignment's submissions, as bytes and plain values."""
    src = Path(course_dir) / "source" / assignment
    data = {p.relative_to(src).as_posix(): p.read_bytes()
            for p in sorted(src.rglob("*")) if p.is_file() and not p.is_symlink() and p.suffix != ".ipynb"}
    return {"assignment": assignment, "template_db": template_db.read_bytes(), "data_files": data,
            "file_config": file_config, "source_fingerprint": source_fingerprint, "timeout": timeout,
            "memory_limit": memory_limit, "sandbox": bool(use_sandbox), "version": version(),
            "fingerprint": package_fingerprint()}


class DaskExecutor:
    """One Dask task per submission on the cluster behind `client`; outcomes come back here."""

    def __init__(self, client: Any, bundles: dict[str, dict[str, Any]], address: str) -> None:
        self.client, self.bundles, self.address = client, bundles, address
        self.futures: dict[Any, str] = {}

    def run(self, jobs: Jobs, on_result: OnResult) -> None:
        from distributed.scheduler import KilledWorker

        run_id = os.urandom(4).hex()
        # each assignment's bundle (template gradebook, data files) goes to every worker once, not with each
        # of its hundreds of tasks; a replica on every worker survives the loss of any one of them
        shared = {a: self.client.scatter([b], broadcast=True, hash=False)[0] for a, b in self.bundles.items()}
        for task, limit in jobs:
            future = self.client.submit(run_remote, dict(task, limit=limit), shared[task["assignment"]],
                                        key=f"roadmap-grade-{run_id}-{task['key'].replace('/', '-')}",
                                        pure=False, retries=0)
            self.futures[future] = task["key"]
        pending = set(self.futures)
        while pending:
            done = {f for f in pending if f.done()}
            pending -= done
            if not done:
                time.sleep(0.2)
            if self.client.status not in ("running", "newly-created") or any(f.status == "cancelled" for f in done):
                raise SchedulerLost(f"lost the connection to the Dask scheduler at {self.address} mid-run; "
                                    "nothing was written to the gradebook: rerun when the scheduler is back")
            for future in done:
                key = self.futures[future]
                if future.status == "finished":
                    out = future.result()
                    want = self.bundles[key.split("/", 1)[1]]["source_fingerprint"]
                    if out.get("source_fingerprint") != want:
                        out = {"ok": False, "fatal": f"{key}: the worker graded it against another version "
                                                     "of the chapter's source notebook; not recorded"}
                    on_result(key, out)
                    continue
                exc = future.exception()
                if isinstance(exc, KilledWorker):
                    on_result(key, {"ok": False, "notebooks": {}, "error":
                                    "the Dask worker running it was lost, and lost again on the scheduler's "
                                    "retry (KilledWorker)"})
                elif isinstance(exc, WorkerMismatch):
                    on_result(key, {"ok": False, "fatal": f"{key}: not graded: {exc}"})
                else:
                    on_result(key, {"ok": False, "fatal": f"{key}: not graded: the Dask task failed "
                                                          f"({type(exc).__name__}: {_one_line(exc)})"})

    def close(self) -> None:
        self._end()

    def kill(self) -> None:
        self._end()

    def _end(self) -> None:
        try:
            if self.futures and self.client.status == "running":
                self.client.cancel(list(self.futures), force=True)
        except Exception:  # noqa: BLE001 - the scheduler may be gone already
            pass
        self.futures.clear()   # the client is its creator's to close


def _quiet() -> None:
    """Dask logs reconnects and shutdowns as warnings: the command says what matters in one line."""
    for name in ("distributed", "distributed.client", "distributed.core", "distributed.comm",
                 "distributed.batched", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


# --------------------------------------------------------------------------- the worker side of a Dask task


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # noqa: BLE001 - run outside a worker (tests)
        return "this worker"


def refuse(bundle: dict[str, Any]) -> str:
    """Why this worker must not grade for this submitter ('' when it may): version, code, sandbox."""
    mine, theirs = (version(), package_fingerprint()), (bundle.get("version"), bundle.get("fingerprint"))
    if mine != theirs:
        return (f"{_worker_name()} runs safety_roadmap {mine[0]} (package fingerprint {mine[1][:12]}), the "
                f"submitter safety_roadmap {theirs[0]} ({str(theirs[1])[:12]}): install the submitter's version "
                "on every worker")
    if bundle.get("sandbox"):
        from .. import sandbox

        why = sandbox.unavailable()
        if why:
            return f"{_worker_name()} cannot sandbox student code: {why}"
        shown = sandbox.exposes(Path(tempfile.gettempdir()))
        if shown:
            return (f"{_worker_name()}'s temporary folder lies inside {shown}, which the sandbox shows to "
                    "student code; set TMPDIR elsewhere on the worker")
    return ""


def run_remote(task: dict[str, Any], bundle: dict[str, Any]) -> dict[str, Any]:
    """The Dask task: grade one submission from bytes in a private scratch course; return the executed
    notebooks (the submitter merges them). Raises WorkerMismatch when this worker must not grade it."""
    why = refuse(bundle)
    if why:
        raise WorkerMismatch(why)
    from . import worker

    start = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="roadmap-dask-"))
    before = _children()
    overran = threading.Event()

    def watchdog() -> None:   # Dask cannot stop a running task: end its kernel, and nbclient returns
        overran.set()
        _kill_new_children(before)

    timer = threading.Timer(float(task.get("limit") or 0) or 1e9, watchdog)
    timer.daemon = True
    try:
        course = scratch / "course"
        (scratch / "template.db").write_bytes(bundle["template_db"])
        for rel, data in bundle["data_files"].items():
            target = course / "source" / bundle["assignment"] / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (course / "source" / bundle["assignment"]).mkdir(parents=True, exist_ok=True)
        settings = {"course_dir": str(course), "template_db": str(scratch / "template.db"),
                    "run_tmp": str(scratch), "timeout": bundle["timeout"], "memory_limit": bundle["memory_limit"],
                    "sandbox": bundle["sandbox"], "file_config": bundle["file_config"]}
        worker._become_subreaper()
        timer.start()
        try:
            out = worker.autograde_submission(task, settings)
        except Exception as exc:  # noqa: BLE001 - the submitter must hear about it, as from a local worker
            out = {"ok": False, "notebooks": {}, "log": traceback.format_exc()[-4000:],
                   "error": f"{type(exc).__name__}: {exc}"}
        if overran.is_set():
            out = {"ok": False, "notebooks": {}, "error": overrun(float(task["limit"]))}
    finally:
        timer.cancel()
        _kill_new_children(before)
        shutil.rmtree(scratch, ignore_errors=True)
    out.update(seconds=time.monotonic() - start, source_fingerprint=bundle["source_fingerprint"],
               worker=_worker_name())
    return out


def _children() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def _kill_new_children(before: set[int]) -> None:
    """Kill what this task started (its kernel, and orphans reparented to us), nothing the worker had."""
    import psutil

    kill_all([p for p in psutil.Process().children(recursive=True) if p.pid not in before], timeout=5)
