"""The shared check machinery: messages a learner can act on, and no way to patch a pass."""
from __future__ import annotations

import importlib
import subprocess
import sys
import time

import numpy as np
import pytest

from safety_roadmap.checks import _core
from safety_roadmap.checks._core import Case, CheckFailure, Mistake, NotAttempted, compare, run_check
from safety_roadmap.checks.linear_algebra import check_cosine_similarity
from safety_roadmap.reference.linear_algebra import cosine_similarity

from .conftest import ROOT


def double(x):
    return 2 * x


CASES = [Case((np.arange(3.0),), "three numbers"), Case((np.ones((2, 2)),), "a 2x2 matrix")]


def test_pass_prints_one_line(capsys) -> None:
    run_check("double", double, double, CASES)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["✓ double: all 2 quick checks passed"]


def test_failure_names_case_shapes_expected_got_and_likely_cause() -> None:
    with pytest.raises(CheckFailure) as info:
        run_check("double", lambda x: 3 * x, double, CASES, mistakes=[Mistake("you tripled it.", lambda x: 3 * x)])
    msg = str(info.value)
    assert "case 1 of 2 (three numbers; inputs: array shape (3,) float64)" in msg
    assert "expected [0., 2., 4.]" in msg and "got      [0., 3., 6.]" in msg
    assert "max abs difference 2" in msg
    assert "Likely cause: you tripled it." in msg


def test_learner_exception_becomes_a_failure_naming_the_case() -> None:
    def broken(x):
        return x @ np.ones(5)

    with pytest.raises(CheckFailure, match=r"`double` raised ValueError: .*\n  on case 1 of 2 \(three numbers"):
        run_check("double", broken, double, CASES)


def test_not_implemented_reads_as_not_attempted() -> None:
    def stub(x):
        raise NotImplementedError()

    with pytest.raises(NotAttempted, match="not attempted yet"):
        run_check("double", stub, double, CASES)


def test_an_unsolved_helper_is_named_not_the_caller() -> None:
    namespace: dict = {"__name__": "__main__"}  # as in a notebook
    exec("def helper(x):\n    raise NotImplementedError()\n\n"
         "def uses_helper(x):\n    return 2 * helper(x)\n", namespace)
    with pytest.raises(NotAttempted, match="`double` calls `helper`, which is not attempted yet"):
        run_check("double", namespace["uses_helper"], double, CASES)


def test_in_place_mutation_is_caught() -> None:
    def sneaky(x):
        x *= 2
        return x

    with pytest.raises(CheckFailure, match="changed its input argument 1 in place"):
        run_check("double", sneaky, double, CASES)


def test_non_callable_answer() -> None:
    with pytest.raises(CheckFailure, match="expected a function"):
        run_check("double", 42, double, CASES)


@pytest.mark.parametrize("got,expected,fragment", [
    (np.zeros((3, 2)), np.zeros((2, 3)), "the transpose of what was expected"),
    (np.zeros(6), np.zeros((2, 3)), "same number of elements"),
    (np.array([1.0, np.nan]), np.array([1.0, 2.0]), "nan or inf where finite numbers were expected"),
    ("text", np.zeros(2), "expected array shape (2,) float64, got 'text'"),
    ((1.0,), (1.0, 2.0), "expected a tuple of 2 values"),
    (np.array(["a", "b"]), np.zeros(2), "expected numbers"),
])
def test_compare_explains_differences(got, expected, fragment) -> None:
    problem = compare(got, expected)
    assert problem is not None and fragment in problem


def test_compare_accepts_within_tolerance_and_equal_infinities() -> None:
    assert compare(np.array([1.0 + 1e-9, np.inf]), np.array([1.0, np.inf])) is None
    assert compare(np.float32(2.0), 2.0) is None
    assert compare(np.array([-np.inf]), np.array([np.inf])) is not None


def test_patched_numpy_cannot_make_a_wrong_answer_pass() -> None:
    original = np.allclose
    np.allclose = lambda *a, **k: True
    try:
        with pytest.raises(CheckFailure, match="`numpy.allclose` has been replaced"):
            check_cosine_similarity(cosine_similarity)
    finally:
        np.allclose = original
    check_cosine_similarity(cosine_similarity)  # restored: checks run again


def test_numpy_patched_before_the_checks_were_imported_is_caught() -> None:
    code = (
        "import numpy as np\n"
        "np.array_equal = lambda *a, **k: True\n"
        "from safety_roadmap.checks.linear_algebra import check_cosine_similarity\n"
        "check_cosine_similarity(lambda a, b: (a * b).sum(-1))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode != 0
    assert "`numpy.array_equal` has been replaced" in run.stderr


def test_trust_covers_other_modules() -> None:
    import math

    _core.trust(math)
    original = math.sqrt
    math.sqrt = lambda x: 0.0
    try:
        with pytest.raises(CheckFailure, match="`math.sqrt` has been replaced"):
            _core.guard()
    finally:
        math.sqrt = original
    _core.guard()


@pytest.mark.parametrize("answer", ["b", "B", " b ", "(b)"])
def test_choice_accepts_any_spelling_of_the_right_letter(answer) -> None:
    _core.check_choice("q", answer, _core.choice_digest("q", "b"), "abcd")


@pytest.mark.parametrize("answer,exc,fragment", [
    ("a", CheckFailure, "is not the best answer"),
    ("e", CheckFailure, 'should be one letter, "a", "b", "c" or "d"'),
    (3, CheckFailure, "should be one letter"),
    (None, NotAttempted, "not attempted yet"),
])
def test_choice_rejects_wrong_and_malformed_answers(answer, exc, fragment) -> None:
    with pytest.raises(exc, match=fragment):
        _core.check_choice("q", answer, _core.choice_digest("q", "b"), "abcd")


def test_layout_helpers() -> None:
    x = np.arange(6.0).reshape(2, 3)
    nc = _core.non_contiguous(x)
    assert not nc.flags.c_contiguous and np.array_equal(nc, x)
    ro = _core.read_only(x)
    assert not ro.flags.writeable and np.array_equal(ro, x)
    assert "non-contiguous" in _core.describe(nc) and "read-only" in _core.describe(ro)


def test_importing_a_checks_module_is_fast() -> None:
    code = ("import time; t = time.perf_counter(); import safety_roadmap.checks.linear_algebra; "
            "import sys; bad = [m for m in ('nbgrader', 'nbformat', 'transformer_lens', 'torch') if m in sys.modules]; "
            "print(time.perf_counter() - t, bad)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    seconds, heavy = run.stdout.split(" ", 1)
    assert heavy.strip() == "[]", f"checks import pulled in {heavy}"
    assert float(seconds) < 1.5, f"importing the checks took {seconds}s"


def test_a_library_rewrapping_its_own_function_is_not_tampering() -> None:
    """torch._dynamo re-wraps torch.manual_seed when the first optimizer is built: no false alarm."""
    import torch

    _core.trust(torch)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # imports torch._dynamo
    _core.guard()
    original = torch.manual_seed
    torch.manual_seed = lambda seed: None
    try:
        with pytest.raises(CheckFailure, match="`torch.manual_seed` has been replaced"):
            _core.guard()
    finally:
        torch.manual_seed = original


# --------------------------------------------------------------------------- class 6: messages that point at the real mistake

def test_likely_cause_is_silent_when_the_mistake_coincides_with_the_right_answer() -> None:
    """"Forgot to normalise" gives the right answer on a unit vector: on a case like that, a
    failure cannot be blamed on it, whatever the learner did."""
    unit = [Case((np.array([1.0, 0.0, 0.0]),), "a unit vector")]
    forgot = Mistake("you forgot to normalise.", lambda x: x)
    with pytest.raises(CheckFailure) as info:
        run_check("normalise", lambda x: -x, lambda x: x / np.linalg.norm(x), unit, mistakes=[forgot])
    assert "Likely cause" not in str(info.value)


def test_likely_cause_is_named_only_when_the_learner_made_that_mistake() -> None:
    cases = [Case((np.array([3.0, 4.0]),), "a vector of length 5")]
    forgot = Mistake("you forgot to normalise.", lambda x: x)
    reference = lambda x: x / np.linalg.norm(x)  # noqa: E731
    with pytest.raises(CheckFailure) as made_it:
        run_check("normalise", lambda x: x, reference, cases, mistakes=[forgot])
    assert "Likely cause: you forgot to normalise." in str(made_it.value)
    with pytest.raises(CheckFailure) as other:
        run_check("normalise", lambda x: x / 2, reference, cases, mistakes=[forgot])
    assert "Likely cause" not in str(other.value)


def test_preview_is_centred_on_the_largest_difference() -> None:
    expected = np.arange(100.0)
    got = expected.copy()
    got[73] = -1.0
    msg = compare(got, expected)
    assert "at index (73,)" in msg
    assert "73." in msg.split("expected", 1)[1] and "-1." in msg.split("got", 1)[1]
    assert "flat entries" in msg  # says where the window is
    assert "[0., 1., 2." not in msg  # not the first few entries, which all match


def test_preview_of_a_short_array_is_whole() -> None:
    assert _core.preview(np.array([1.0, 2.0, 3.0]), around=2) == "[1., 2., 3.]"
