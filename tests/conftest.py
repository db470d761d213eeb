"""Shared fixtures: the project root and its validated curriculum."""
from __future__ import annotations

from pathlib import Path

import pytest

from safety_roadmap.curriculum import Curriculum, load_curriculum

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def curriculum() -> Curriculum:
    return load_curriculum(ROOT / "curriculum.yaml")
