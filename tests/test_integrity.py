"""Tamper detection without running a cohort: the source scan, the parent's verifier, and the armed
kernel-side guard (in a subprocess, since arming changes the checks for the rest of the process)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from safety_roadmap.checks import _core, _integrity
from safety_roadmap.cohort import integrity

from . import cohort_fixture as fx

STUCK = "# from safety_roadmap.reference.linear_algebra import cosine_similarity  # stuck? uncomment to continue"


# --------------------------------------------------------------------------- the source scan


@pytest.mark.parametrize("source,fragment", [
    ("from safety_roadmap.reference.linear_algebra import *", "reference solutions"),
    (STUCK.lstrip("# "), "reference solutions"),
    ("import safety_roadmap.checks.linear_algebra as la\nla.check_x = print", "checks module"),
    ("import importlib\nm = importlib.import_module('safety_roadmap.' + 'checks')", "imports modules by name"),
    ("x = 'safety_roadmap.reference.linear_algebra'", "named in a string"),
    ("import sys\nsys.modules['numpy'] = None", "sys.modules"),
    ("import builtins\nbuiltins.print = len", "builtins"),
    ("__builtins__.__import__ = len", "builtins"),
    ("get_ipython().input_transformers_post.append(f)", "input transformer"),
    ("import gc\nobjs = gc.get_objects()", "(gc)"),
    ("import ctypes", "ctypes"),
    ("key = some_check.__closure__[0].cell_contents", "internals"),
    ("%time x = __import__('os')", "import machinery"),
])
def test_scan_flags_code_that_touches_the_grading_machinery(source: str, fragment: str) -> None:
    found = integrity.scan(source)
    assert found and any(fragment in why for _, why in found), found


@pytest.mark.parametrize("source", [
    STUCK,                                                     # the commented "stuck?" line the chapters carry
    "import numpy as np\nimport gc\ngc.collect()\nx = np.linalg.norm(np.ones(3))  # sys.modules in a comment",
    "def f(x):\n    '''uses safety_roadmap.checks? no: prose in a docstring is a string, but not a module name'''",
    "%matplotlib inline\nimport matplotlib.pyplot as plt",
    "this is not python (",
])
def test_scan_leaves_ordinary_code_alone(source: str) -> None:
    if "safety_roadmap.checks?" in source:   # a module name in a string is flagged, deliberately
        assert integrity.scan(source)
        return
    assert integrity.scan(source) == []


def test_scan_skips_lines_the_course_itself_ships() -> None:
    course_line = "from safety_roadmap.reference.calculus_optimization import gradient_check_report"
    assert integrity.scan(course_line + "\nprint(1)", {course_line}) == []
    assert integrity.scan(course_line + "\nimport ctypes", {course_line}) == [(2, integrity.MODULES["ctypes"] +
                                                                               " (`ctypes`)")]


# --------------------------------------------------------------------------- the parent's verifier

KEY = "ab" * 32


def attestation(n: int, label: str = "run_check", thorough: bool = False, key: str = KEY) -> dict:
    payload = {"kind": "check", "n": n, "label": label, "thorough": thorough,
               "mac": _integrity.sign(bytes.fromhex(key), n, label, thorough)}
    return {"output_type": "display_data", "metadata": {}, "data": {integrity.MIME: payload, "text/plain": ""}}


def grade_cell(gid: str, outputs: list, source: str = "check(f)") -> dict:
    meta = {"grade": True, "solution": False, "locked": True, "grade_id": gid, "points": 1, "schema_version": 3}
    return {"cell_type": "code", "source": source, "outputs": outputs, "metadata": {"nbgrader": meta}}


def answer_cell(source: str, outputs: list | None = None) -> dict:
    meta = {"grade": False, "solution": True, "locked": False, "grade_id": "a", "schema_version": 3}
    return {"cell_type": "code", "source": source, "outputs": outputs or [], "metadata": {"nbgrader": meta}}


ERROR = {"output_type": "error", "ename": "CheckFailure", "evalue": "wrong", "traceback": []}


def reasons(cells: list) -> list[tuple[str, str]]:
    return [(f.exercise, f.reason) for f in integrity.verify({"cells": cells}, KEY)]


def test_verify_accepts_real_checks_and_failures() -> None:
    cells = [answer_cell("def f(x):\n    return x"), grade_cell("one", [attestation(1)]),
             grade_cell("two", [attestation(2), attestation(3, thorough=True)], "check(f)\ncheck(f, thorough=True)"),
             grade_cell("three", [ERROR])]                           # a failing test needs no attestation
    assert reasons(cells) == []


@pytest.mark.parametrize("cells,exercise,fragment", [
    ([grade_cell("one", [{"output_type": "stream", "name": "stdout", "text": "✓ one: passed"}])], "one", "never ran"),
    ([grade_cell("one", [attestation(1, key="cd" * 32)])], "one", "forged"),
    ([grade_cell("one", [attestation(1)]), grade_cell("two", [attestation(1)])], "two", "replayed"),
    ([answer_cell("loop()", [attestation(1)]), grade_cell("q", [ERROR])], "q", "outside its test cell"),
    ([grade_cell("one", [attestation(1)], "check(f)\ncheck(f, thorough=True)")], "one", "hidden (thorough)"),
    ([grade_cell("one", [{"output_type": "display_data", "data": {integrity.MIME: {"kind": "alarm", "what": "x"}}},
                        ERROR])], "one", "saw tampering"),
    ([answer_cell("import ctypes"), grade_cell("one", [ERROR]), grade_cell("two", [ERROR])], "two", "ctypes"),
])
def test_verify_flags_each_way_of_faking_a_pass(cells: list, exercise: str, fragment: str) -> None:
    found = reasons(cells)
    assert any(ex == exercise and fragment in why for ex, why in found), found


def test_a_scan_hit_flags_every_later_exercise_only() -> None:
    cells = [grade_cell("before", [ERROR]), answer_cell("import ctypes"), grade_cell("one", [ERROR]),
             grade_cell("two", [ERROR])]
    assert sorted({ex for ex, _ in reasons(cells)}) == ["one", "two"]


# --------------------------------------------------------------------------- the guard in the kernel


def notebook_function(fn):
    fn.__module__ = "__main__"   # what a function defined in a notebook cell looks like
    return fn


def test_guard_refuses_checks_replaced_in_the_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    from safety_roadmap.checks import linear_algebra

    monkeypatch.setattr(linear_algebra, "check_cosine_similarity", notebook_function(lambda fn, thorough=False: None))
    with pytest.raises(_core.CheckFailure, match="replaced by a function defined in the notebook"):
        linear_algebra.check_project_onto(lambda x, d: x)


def test_guard_refuses_a_fake_checks_module_and_import_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import types

    monkeypatch.setitem(sys.modules, "safety_roadmap.checks.fake_chapter", types.ModuleType("fake"))
    with pytest.raises(_core.CheckFailure, match="is not the course's module"):
        _core.guard()
    monkeypatch.delitem(sys.modules, "safety_roadmap.checks.fake_chapter")
    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", notebook_function(lambda *a, **k: real(*a, **k)))
    with pytest.raises(_core.CheckFailure, match="__import__"):
        _core.guard()


ARMED = textwrap.dedent('''
    import builtins, json, sys
    from safety_roadmap.checks import _core, _integrity
    published = []
    _integrity.arm(sys.argv[1], "linear_algebra")
    _integrity._PUBLISH[:] = [published.append]       # no IPython here: collect what would be published
    from safety_roadmap.checks import linear_algebra as la
    from safety_roadmap.reference import linear_algebra as ref
    out = {"key_deleted": not __import__("os").path.exists(sys.argv[1])}

    def attempt(name, fn):
        try:
            fn()
            out[name] = "passed"
        except AssertionError as exc:
            out[name] = str(exc)[:200]

    attempt("honest", lambda: la.check_cosine_similarity(lambda a, b: ref.cosine_similarity(a, b)))
    attempt("reference", lambda: la.check_cosine_similarity(ref.cosine_similarity))
    original = _core.compare
    _core.compare = len                               # not from the notebook, but not the original either
    attempt("core_patched", lambda: la.check_cosine_similarity(lambda a, b: a))
    _core.compare = original
    saved = sys.modules["safety_roadmap.checks._core"]
    sys.modules["safety_roadmap.checks._core"] = __import__("numpy")
    attempt("sys_modules", lambda: la.check_cosine_similarity(lambda a, b: a))
    sys.modules["safety_roadmap.checks._core"] = saved
    out["published"] = published
    print(json.dumps(out))
''')


def test_an_armed_kernel_attests_real_checks_and_raises_alarms(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(bytes.fromhex(KEY))
    done = subprocess.run([sys.executable, "-c", ARMED, str(key)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["key_deleted"] and out["honest"] == "passed"
    assert "reference solution" in out["reference"]
    assert "`safety_roadmap.checks._core.compare` was replaced" in out["core_patched"]
    assert "sys.modules" in out["sys_modules"]
    checks = [p for p in out["published"] if p["kind"] == "check"]
    alarms = [p for p in out["published"] if p["kind"] == "alarm"]
    assert [p["n"] for p in checks] == list(range(1, len(checks) + 1)) and len(checks) >= 2   # wrapper + run_check
    assert all(p["mac"] == _integrity.sign(bytes.fromhex(KEY), p["n"], p["label"], p["thorough"]) for p in checks)
    assert len(alarms) == 3


def test_the_fixture_cheaters_are_what_the_issue_lists() -> None:
    assert set(fx.IN_KERNEL) == {"rebind_check", "patch_core", "fake_module", "import_hook", "transformer",
                                 "reference_quiz"}
