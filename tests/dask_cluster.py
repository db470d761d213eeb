"""A real Dask cluster on localhost for tests: `dask scheduler` + `dask worker --nthreads 1` processes.

Each process gets its own session (process group), so a test can kill one worker, or the
scheduler, with everything it started; `close()` always ends them all. Ports are free ones
picked by the OS; no dashboard (it would need bokeh, and a port).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2",
               # a task whose worker died is retried once elsewhere, then reported (KilledWorker)
               DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    return env


class Cluster:
    """`with Cluster(tmp, workers=2) as c:` -> c.address; c.kill_worker(name); c.kill_scheduler()."""

    def __init__(self, folder: Path, workers: int = 2) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.n = workers
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.procs: dict[str, subprocess.Popen] = {}

    def _spawn(self, name: str, *args: str) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=log,
                                            env=_env(), start_new_session=True, cwd=self.folder)

    def start(self, timeout: float = 60) -> "Cluster":
        port = self.address.rsplit(":", 1)[1]
        self._spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard",
                    "--dashboard-address", "127.0.0.1:0")   # not 8787: another cluster may hold it
        for i in range(self.n):
            self._spawn(f"w{i}", "worker", self.address, "--nthreads", "1", "--nworkers", "1", "--name", f"w{i}",
                        "--no-dashboard", "--local-directory", str(self.folder / f"w{i}"))
        with self.client(timeout) as client:
            client.wait_for_workers(self.n, timeout=timeout)
        return self

    def client(self, timeout: float = 30) -> Any:
        from distributed import Client

        deadline = time.monotonic() + timeout
        while True:
            try:
                return Client(self.address, timeout="5s", set_as_default=False)
            except OSError:
                if time.monotonic() > deadline or self.procs["scheduler"].poll() is not None:
                    raise RuntimeError(f"no Dask scheduler at {self.address}: {self.log('scheduler')}") from None
                time.sleep(0.3)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def _kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(30)

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker's whole process group (its nanny, the worker process and the kernel)."""
        self._kill(name)

    def kill_scheduler(self) -> None:
        self._kill("scheduler")

    def close(self) -> None:
        for name in self.procs:
            self._kill(name)

    def __enter__(self) -> "Cluster":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.close()
