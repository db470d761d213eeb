"""Tamper detection inside the kernel: is the check that is running the one the course shipped?

Python code in a notebook can replace anything in its own process, so this cannot
make cheating impossible; it makes the usual ways loud and the rest costly:

- `inspect()` (called by `_core.guard()`, i.e. at the start of every check) refuses
  to run a check when a checks or reference module in `sys.modules` is not the
  course's file, a checks module's function was defined in the notebook,
  `builtins.__import__` or IPython's input/AST transformers were replaced, or the
  function handed to the check is the course's own reference solution.
- In cohort grading the kernel is *armed* before any student code runs
  (`arm()`, via IPython's `exec_lines`): it reads a per-run secret from a file and
  deletes it, imports the chapter's checks, wraps each `check_*` so it always
  passes through `inspect()`, and snapshots the modules, `sys.modules`,
  `__import__` and transformers. From then on every check that starts publishes an
  attestation (a MIME bundle in the cell's output) carrying an HMAC of a counter
  under that secret. The grader, outside the kernel, reads them from the executed
  notebook: a test cell that passed without a valid, fresh attestation (turned into
  `pass`, a fake module printing ✓) or an attestation outside a test cell is flagged.
"""
from __future__ import annotations

import builtins as _builtins
import functools as _functools
import hashlib as _hashlib
import hmac as _hmac
import os as _os
import sys as _sys
import types as _types
from typing import Any, Callable

MIME = "application/vnd.roadmap.attestation+json"
PACKAGE = "safety_roadmap"
WATCHED = (f"{PACKAGE}.checks", f"{PACKAGE}.reference")
_HERE = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))   # .../safety_roadmap
_ORIGINAL_IMPORT = _builtins.__import__
_PUBLISH: list[Callable[[dict], None]] = []   # set when armed
_attest: Callable[[str, bool], None] | None = None
_baseline_problem: Callable[[], str] | None = None


def sign(key: bytes, n: int, label: str, thorough: bool) -> str:
    """The MAC the grader expects for attestation number `n` (shared with the grader's verifier)."""
    return _hmac.new(key, f"{n}|{label}|{int(bool(thorough))}".encode(), _hashlib.sha256).hexdigest()


def _from_notebook(obj: Any) -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "__main__"


def _ipython() -> Any:
    mod = _sys.modules.get("IPython")
    getter = getattr(mod, "get_ipython", None) if mod is not None else None
    try:
        return getter() if getter else None
    except Exception:
        return None


def _transformers(ip: Any) -> list[Any]:
    out: list[Any] = []
    for attr in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers"):
        out += list(getattr(ip, attr, None) or [])
    manager = getattr(ip, "input_transformer_manager", None)
    out += list(getattr(manager, "cleanup_transforms", None) or []) + list(getattr(manager, "line_transforms", None) or [])
    return out


_VERIFIED: dict[str, Any] = {}     # sys.modules name -> the module object already found to be the course's file
_NAMES: list[Any] = [0, []]        # (len(sys.modules) when listed, the watched names then)


def _module_problem(name: str, mod: Any) -> str:
    if _VERIFIED.get(name) is mod:
        return ""
    if not isinstance(mod, _types.ModuleType):
        return f"`sys.modules[{name!r}]` is not a module"
    path = getattr(mod, "__file__", None) or ""
    if not _os.path.abspath(path).startswith(_HERE + _os.sep):
        return f"`sys.modules[{name!r}]` is not the course's module (it was replaced)"
    _VERIFIED[name] = mod
    return ""


def _attribute_problem(name: str, mod: Any) -> str:
    for attr, obj in list(vars(mod).items()):
        if callable(obj) and _from_notebook(obj):
            return f"`{name}.{attr}` was replaced by a function defined in the notebook"
    return ""


def _watched_names() -> list[str]:
    if _NAMES[0] != len(_sys.modules):
        _NAMES[:] = [len(_sys.modules), [n for n in list(_sys.modules) if n.startswith(WATCHED)]]
    return _NAMES[1]


def _modules_problem(frame: Any) -> str:
    """A watched `sys.modules` entry that is not the course's file, or a function defined in the notebook
    inside a checks module the running check uses (its own and those of the frames that called it)."""
    for name in _watched_names():
        mod = _sys.modules.get(name)
        problem = _module_problem(name, mod) if mod is not None else ""
        if problem:
            return problem
    seen = set()
    for _ in range(6):
        if frame is None:
            break
        name = frame.f_globals.get("__name__", "")
        if name.startswith(WATCHED) and name not in seen:
            seen.add(name)
            problem = _attribute_problem(name, _sys.modules.get(name))
            if problem:
                return problem
        frame = frame.f_back
    return ""


def _handed_in_reference(frame: Any) -> str:
    """The check's `fn` argument is the course's reference solution itself."""
    for _ in range(6):
        if frame is None or frame.f_globals.get("__name__") == "__main__":
            return ""
        fn = frame.f_locals.get("fn")
        if fn is not None and (getattr(fn, "__module__", None) or "").startswith(WATCHED[1]):
            return (f"the function being checked is the course's reference solution "
                    f"(`{fn.__module__}.{getattr(fn, '__name__', '?')}`), not your own code")
        frame = frame.f_back
    return ""


def _thorough(frame: Any) -> bool:
    for _ in range(6):
        if frame is None:
            return False
        if frame.f_locals.get("thorough") is True:
            return True
        frame = frame.f_back
    return False


def inspect(frame: Any = None, problem: str = "") -> str:
    """'' when nothing the checks rely on was tampered with, else what was (`problem`: one the caller
    found already). Armed: also publish an attestation, or an alarm naming the problem."""
    frame = frame or _sys._getframe(1)
    problem = problem or _modules_problem(frame)
    if not problem and (_builtins.__import__ is not _ORIGINAL_IMPORT and _from_notebook(_builtins.__import__)):
        problem = "`builtins.__import__` was replaced in the notebook"
    if not problem:
        ip = _ipython()
        if ip is not None and any(_from_notebook(t) for t in _transformers(ip)):
            problem = "an IPython input transformer defined in the notebook rewrites cells before they run"
    if not problem and _baseline_problem is not None:
        problem = _baseline_problem()
    if not problem and _attest is not None:   # only in cohort grading: the project's own tests pass the reference
        problem = _handed_in_reference(frame)
    if _attest is not None:
        label = frame.f_locals.get("name") if frame is not None else None
        label = label if isinstance(label, str) else (frame.f_code.co_name if frame is not None else "?")
        if problem:
            for publish in _PUBLISH:
                publish({"kind": "alarm", "what": problem[:300]})
        else:
            _attest(label, _thorough(frame))
    return problem


def _wrap(check: Callable[..., Any], guard: Callable[[], None]) -> Callable[..., Any]:
    @_functools.wraps(check)
    def checked(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        name = check.__name__   # noqa: F841 - read by inspect() through this frame, as are fn and thorough
        fn = args[0] if args else kwargs.get("fn")   # noqa: F841
        thorough = kwargs.get("thorough", args[1] if len(args) > 1 else False)   # noqa: F841
        guard()
        return check(*args, **kwargs)
    return checked


def arm(secret_path: str, chapter: str = "") -> None:
    """Cohort grading only: read and delete the per-run secret, then watch and attest (see module doc)."""
    global _attest, _baseline_problem
    try:
        with open(secret_path, "rb") as fh:
            key = fh.read()
        _os.unlink(secret_path)
    except OSError:
        return
    import importlib

    from . import _core
    chapter_mod = None
    if chapter:
        try:
            chapter_mod = importlib.import_module(f"{PACKAGE}.checks.{chapter}")
        except ImportError:
            chapter_mod = None
    guard = _core.guard
    if chapter_mod is not None:
        for attr, obj in list(vars(chapter_mod).items()):
            if attr.startswith("check_") and callable(obj):
                setattr(chapter_mod, attr, _wrap(obj, guard))
    ip = _ipython()
    modules = {n: m for n, m in _sys.modules.items()
               if m is not None and (n.startswith(WATCHED) or n in ("numpy", "numpy.linalg", "numpy.random", "torch"))}
    functions = {(n, a): o for n, m in modules.items() if n.startswith(WATCHED)   # functions, classes, modules
                 for a, o in list(vars(m).items()) if not a.startswith("__") and (callable(o) or isinstance(o, _types.ModuleType))}
    transformers = _transformers(ip) if ip is not None else []
    importer = _builtins.__import__
    publish_display = None
    if ip is not None:
        display_pub = ip.display_pub
        publish_display = display_pub.publish
    counter = [0]

    def publish(payload: dict) -> None:
        if publish_display is not None:
            publish_display({MIME: payload, "text/plain": ""}, metadata={})

    def attest(label: str, thorough: bool) -> None:
        counter[0] += 1
        n = counter[0]
        for send in _PUBLISH:
            send({"kind": "check", "n": n, "label": label, "thorough": bool(thorough),
                  "mac": sign(key, n, label, thorough)})

    def changed() -> str:
        for name, mod in modules.items():
            if _sys.modules.get(name) is not mod:
                return f"`sys.modules[{name!r}]` was replaced"
        for (name, attr), obj in functions.items():
            if getattr(modules[name], attr, None) is not obj:
                return f"`{name}.{attr}` was replaced"
        if _builtins.__import__ is not importer:
            return "`builtins.__import__` was replaced"
        if ip is not None and [id(t) for t in _transformers(ip)] != [id(t) for t in transformers]:
            return "IPython's input transformers were changed"
        return ""

    _PUBLISH[:] = [publish]
    _attest, _baseline_problem = attest, changed
