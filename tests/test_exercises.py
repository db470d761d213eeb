"""Every exercise, proven both ways: realistic wrong answers fail, correct alternatives pass.

For each chapter in curriculum.yaml, `tests/mutants/<checks module>.py` holds the
mutants and alternatives; `safety_roadmap.checks.<module>.check_<exercise>` is
the check the notebook's hidden test calls with `thorough=True`.
"""
from __future__ import annotations

import importlib
import time
from typing import Any

import pytest

from safety_roadmap.checks._core import CheckFailure, NotAttempted
from safety_roadmap.curriculum import load_curriculum

from .conftest import ROOT

CURRICULUM = load_curriculum(ROOT / "curriculum.yaml")


def checks_module_name(chapter_id: str) -> str:
    """01_linear_algebra -> linear_algebra (the checks, reference and mutants modules share it)."""
    return chapter_id.split("_", 1)[1]


def _exercises() -> list[tuple[str, str]]:
    return [(ch.id, ex.id) for ch in CURRICULUM.chapters for ex in ch.exercises]


def _load(chapter_id: str, exercise_id: str) -> tuple[Any, Any]:
    name = checks_module_name(chapter_id)
    checks = importlib.import_module(f"safety_roadmap.checks.{name}")
    mutants = importlib.import_module(f"tests.mutants.{name}")
    check = getattr(checks, f"check_{exercise_id}", None)
    assert check is not None, f"safety_roadmap.checks.{name} has no check_{exercise_id}"
    return check, mutants


def _label(obj: Any) -> str:
    """A test id that is the same in every process (pytest-xdist insists): never a memory address."""
    if hasattr(obj, "__name__"):
        return obj.__name__
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return repr(obj)
    return type(obj).__name__


@pytest.mark.parametrize("chapter_id,exercise_id", _exercises())
def test_each_exercise_has_mutants_and_an_alternative(chapter_id: str, exercise_id: str) -> None:
    _, mutants = _load(chapter_id, exercise_id)
    assert len(mutants.MUTANTS.get(exercise_id, [])) >= 2, f"{exercise_id}: needs at least two mutants"
    assert len(mutants.ALTERNATIVES.get(exercise_id, [])) >= 1, f"{exercise_id}: needs a correct alternative"


def _cases(kind: str) -> list[Any]:
    out = []
    for chapter_id, exercise_id in _exercises():
        _, mutants = _load(chapter_id, exercise_id)
        table = mutants.MUTANTS if kind == "mutant" else mutants.ALTERNATIVES
        for i, impl in enumerate(table.get(exercise_id, [])):
            out.append(pytest.param(chapter_id, exercise_id, impl,
                                    id=f"{chapter_id}-{exercise_id}-{_label(impl)}-{i}"))
    return out


@pytest.mark.parametrize("chapter_id,exercise_id,mutant", _cases("mutant"))
def test_hidden_check_rejects_mutant(chapter_id: str, exercise_id: str, mutant: Any, capsys) -> None:
    check, _ = _load(chapter_id, exercise_id)
    with pytest.raises(CheckFailure) as info:
        check(mutant, thorough=True)
    message = str(info.value)
    assert exercise_id in message or "`" in message, "a failure should name what failed"
    assert len(message) > 30, "a failure message should say what went wrong"
    assert "✓" not in capsys.readouterr().out


@pytest.mark.parametrize("chapter_id,exercise_id,alternative", _cases("alternative"))
def test_checks_accept_correct_alternative(chapter_id: str, exercise_id: str, alternative: Any, capsys) -> None:
    check, _ = _load(chapter_id, exercise_id)
    check(alternative)  # the quick check first, untimed: it also warms up lazy imports and model caches
    start = time.process_time()   # CPU time: what the check costs, not how busy the machine is
    check(alternative, thorough=True)
    elapsed = time.process_time() - start
    assert "✓" in capsys.readouterr().out
    assert elapsed < 2.0, f"the thorough check of {exercise_id} took {elapsed:.2f} s of CPU; it must answer in well under a second"


@pytest.mark.parametrize("chapter_id,exercise_id", _exercises())
def test_not_implemented_reads_as_not_attempted(chapter_id: str, exercise_id: str) -> None:
    check, mutants = _load(chapter_id, exercise_id)
    sample = mutants.ALTERNATIVES[exercise_id][0]
    if not callable(sample):  # a concept question: an unanswered one is None
        with pytest.raises(NotAttempted, match="not attempted"):
            check(None)
        return

    def stub(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError()

    with pytest.raises(NotAttempted, match="not attempted"):
        check(stub)
