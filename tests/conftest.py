"""Shared fixtures: the project root and its validated curriculum."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from safety_roadmap.curriculum import Curriculum, load_curriculum

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Never touch the real user's progress database: every `roadmap grade` in the tests
    (in process or as a subprocess, which inherits the environment) records into a scratch file."""
    scratch = Path(tempfile.mkdtemp(prefix="roadmap-test-progress-"))
    os.environ["SAFETY_ROADMAP_PROGRESS_DB"] = str(scratch / "progress.db")
    # One BLAS/OpenMP thread per process: the suite runs two workers on two cores, each executing
    # notebooks in kernels that inherit this; oversubscribed threads made torch checks 50x slower.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the run so that `pytest -n N --dist worksteal` keeps every core busy to the end.

    Work stealing first hands each of the N workers one contiguous share of the collection, in order, then
    lets an idle worker take the tail of a busy one's queue. So each share starts with its own part of the
    slow tests (whole notebooks, claims re-runs, cohorts, hubs: dealt out to the shortest share) and ends
    with quick ones, which are what gets stolen. A minute-long test left for last would keep one core busy
    alone."""
    slow = [item for item in items if item.get_closest_marker("slow")]
    fast = [item for item in items if not item.get_closest_marker("slow")]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    # tests sharing a module-scoped fixture (a Dask cluster, a trained model) stay on one worker: split, the
    # fixture would be built twice
    units: dict[str, list[pytest.Item]] = {}
    for item in slow:
        units.setdefault(item.nodeid.split("::")[0] if _uses_module_fixture(item) else item.nodeid, []).append(item)
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    # grouped units first: the front of a queue is never stolen, so a group is not split after all
    for unit in sorted(units.values(), key=lambda unit: len(unit) == 1):
        min(shares, key=len).extend(unit)
    left = len(items)
    for i, share in enumerate(shares):              # the sizes worksteal's first distribution uses
        size = left // (workers - i)
        take = max(0, size - len(share))
        share.extend(fast[:take])
        del fast[:take]
        left -= len(share)
    shares[-1].extend(fast)
    items[:] = [item for share in shares for item in share]


def _uses_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return bool(info) and any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values())


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def curriculum() -> Curriculum:
    return load_curriculum(ROOT / "curriculum.yaml")


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test, as the chapters run (tiny models: one thread is fastest)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
