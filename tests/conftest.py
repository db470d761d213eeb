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
    """Slow tests (whole notebooks, claims re-runs, cohorts) first, quick ones last: with `--dist worksteal`
    an idle worker takes the tail of a busy one's queue, and a quick tail balances best. (Dealing the slow tests
    evenly between the workers' first shares measured slower in fresh-clone runs than this.)"""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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
