"""Chapter 13's checks explain the failures learners actually hit (issue 13, items 1 and 6)."""
from __future__ import annotations

import pytest

from safety_roadmap.checks._core import CheckFailure
from safety_roadmap.curriculum import load_curriculum

from .conftest import ROOT
from .mutants import activation_patching as mutants


def test_a_dict_keyed_by_hook_name_gets_the_aliasing_explained() -> None:
    """Storing activations under `hook.name` and reading them back under the registered name raises a
    KeyError under TransformerLens 4; the check says why and what to do instead."""
    from safety_roadmap.checks.activation_patching import check_attribution_patch_resid

    with pytest.raises(CheckFailure) as failure:
        check_attribution_patch_resid(mutants.attr_keyed_by_hook_name)
    message = str(failure.value)
    assert "KeyError" in message and "blocks.0.hook_in" in message and "functools.partial" in message


def test_grade_ids_are_the_function_names() -> None:
    """`roadmap hint 13_activation_patching <function>` works because every exercise's grade id is the
    name its test cell checks."""
    from tests import mutation

    chapter = load_curriculum(ROOT / "curriculum.yaml").chapter("13_activation_patching")
    targets = mutation.all_targets(["13_activation_patching"])
    assert {t.exercise for t in targets} == {e.id for e in chapter.exercises}
    assert all(t.name == t.exercise for t in targets), [(t.exercise, t.name) for t in targets if t.name != t.exercise]
