"""The machinery every chapter's checks share.

A check runs the learner's function and the reference on the same generated
cases and, on the first disagreement, raises `CheckFailure` with a message a
learner can act on: which case, the inputs' shapes, expected vs got, and a
likely cause when the output matches a known mistake.

Everything here compares with Python operators and ndarray methods bound at
import time, and refuses to run once a trusted module's functions have been
replaced in the notebook (``np.allclose = lambda *a, **k: True``), so a learner
cannot patch their way to a pass.
"""
from __future__ import annotations

import copy as _copy
import hashlib as _hashlib
import types as _types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as _np

_ndarray = _np.ndarray
_asarray = _np.asarray
_array_equal = _np.array_equal
_isfinite = _np.isfinite
_unravel = _np.unravel_index
_printoptions = _np.printoptions
_array2string = _np.array2string
_isinstance = isinstance
_errstate = _np.errstate


def _learner_lines(exc: BaseException | None) -> list[str]:
    """Where the learner's own code (a notebook cell) raised `exc`, as "Cell In[7], line 3, in f" lines."""
    import linecache

    out: list[str] = []
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        code = tb.tb_frame.f_code
        if tb.tb_frame.f_globals.get("__name__") == "__main__":
            where = code.co_filename
            try:
                from IPython import get_ipython

                where = " ".join(get_ipython().compile.format_code_name(where) or (where,))
            except Exception:  # not in IPython, or a cell IPython did not compile
                pass
            out.append(f"  {where}, line {tb.tb_lineno}, in {code.co_name}")
            text = linecache.getline(code.co_filename, tb.tb_lineno).strip()
            if text:
                out.append(f"    {text}")
        tb = tb.tb_next
    return out


def _render_traceback_(self: BaseException) -> list[str]:
    """What IPython shows when a check fails: its message once, plus where the learner's code raised
    when it crashed; never the library's frames (IPython calls this instead of formatting a traceback)."""
    lines = [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]
    own = _learner_lines(self.__cause__)
    return lines + (["", "Where your code raised it:", *own] if own else [])


class CheckFailure(AssertionError):
    """The learner's answer is wrong; the message says how."""

    _render_traceback_ = _render_traceback_


class NotAttempted(NotImplementedError):
    """The exercise still raises NotImplementedError."""

    _render_traceback_ = _render_traceback_


# --------------------------------------------------------------------------- tamper guard

import sys as _sys

from . import _integrity

_TRUSTED: dict[str, dict[str, Any]] = {}


def _is_ours(obj: Any) -> bool:
    """False for anything a notebook defined (notebook code lives in `__main__`), True otherwise.

    Only notebook-made replacements are flagged, so trusting a module that re-exports other
    libraries' functions never raises a false alarm."""
    mod = getattr(obj, "__module__", None) or ""
    return mod.split(".")[0] != "__main__"


def trust(module: _types.ModuleType) -> None:
    """Snapshot a module's public callables; later checks refuse to run if one is replaced."""
    name = module.__name__
    if name in _TRUSTED:
        return
    snap: dict[str, Any] = {}
    # vars(), not dir()/getattr(): numpy loads some submodules lazily on attribute access (f2py, testing...),
    # and touching them all would add a second to every checks import.
    for attr, obj in list(vars(module).items()):
        if not attr.startswith("_") and callable(obj) and not isinstance(obj, _types.ModuleType):
            snap[attr] = obj
    foreign = {attr for attr, obj in snap.items() if not _is_ours(obj)}
    _TRUSTED[name] = {"module": module, "snapshot": snap, "foreign": foreign}


def _library_swap(now: Any, library: str) -> bool:
    """True when a changed attribute was replaced by the library itself (torch._dynamo re-wraps
    torch.manual_seed the first time an optimizer is built): that is not tampering."""
    mod = getattr(now, "__module__", None) or ""
    return mod.split(".")[0] == library and _is_ours(now)


def _replaced() -> str:
    """'' or a message naming a trusted module's function that was swapped out in this session."""
    for name, info in _TRUSTED.items():
        module, foreign, library = info["module"], info["foreign"], name.split(".")[0]
        for attr, original in info["snapshot"].items():
            now = getattr(module, attr, None)
            if attr in foreign or (now is not original and not _library_swap(now, library)):
                return (f"`{name}.{attr}` has been replaced in this notebook, so no check can be trusted. "
                        f"Delete the line that assigns to `{name}.{attr}`, restart the kernel and run all cells.")
    return ""


def guard() -> None:
    """Raise CheckFailure if a trusted module's function was swapped out in this session, or the checks
    themselves were tampered with (`_integrity.inspect`: checks modules, `sys.modules`, `__import__`,
    IPython transformers); in cohort grading, also attest that a real check ran."""
    __tracebackhide__ = True
    problem = _integrity.inspect(_sys._getframe(1), _replaced())
    if problem:
        raise CheckFailure(problem if "no check can be trusted" in problem else
                           f"{problem}, so no check can be trusted. Delete that code, restart the kernel and "
                           "run all cells.")


trust(_np)
trust(_np.linalg)
trust(_np.random)


# --------------------------------------------------------------------------- describing values

def describe(x: Any) -> str:
    """A short description of an input or output: type, shape, dtype, layout."""
    if _isinstance(x, (bool, int, float, str)):
        return repr(x)
    arr = _to_numpy(x)
    if arr is None:
        return f"{type(x).__name__} {x!r}"[:80]
    flags = []
    if _isinstance(x, _ndarray):
        if not x.flags.c_contiguous:
            flags.append("non-contiguous")
        if not x.flags.writeable:
            flags.append("read-only")
    kind = type(x).__name__ if not _isinstance(x, _ndarray) else "array"
    extra = f", {', '.join(flags)}" if flags else ""
    return f"{kind} shape {tuple(arr.shape)} {arr.dtype}{extra}"


def preview(x: Any, n: int = 6, around: int | None = None) -> str:
    """At most `n` numbers of `x`, flattened. With `around` (a flat index), the window is centred
    there, so a learner sees the entries that actually differ, not the first few that often match."""
    arr = _to_numpy(x)
    if arr is None:
        return repr(x)[:120]
    if arr.ndim == 0:
        return f"{arr.item():.6g}"
    flat = arr.reshape(-1)
    start = 0
    if around is not None and flat.size > n:
        start = max(0, min(int(around) - n // 2, flat.size - n))
    window = flat[start:start + n]
    with _printoptions(precision=4, suppress=False, threshold=n, linewidth=200):
        text = _array2string(window, separator=", ")
    head = "[..., " if start > 0 else "["
    tail = ", ...]" if start + n < flat.size else "]"
    text = head + text[1:-1] + tail
    if start > 0:
        text += f" (flat entries {start}-{start + len(window) - 1} of {flat.size})"
    return text


def _to_numpy(x: Any) -> Any:
    """An ndarray view of arrays, tensors and numbers; None for anything else."""
    if _isinstance(x, _ndarray):
        return x
    if _isinstance(x, (bool, int, float, _np.generic)):
        return _asarray(x)
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return None


# --------------------------------------------------------------------------- comparing values

def compare(got: Any, expected: Any, *, rtol: float = 1e-6, atol: float = 1e-8, what: str = "output") -> str | None:
    """None when `got` matches `expected`; otherwise one paragraph saying how it differs."""
    if _isinstance(expected, tuple):
        if not _isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"{what}: expected a tuple of {len(expected)} values, got {describe(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = compare(g, e, rtol=rtol, atol=atol, what=f"{what}[{i}]")
            if problem:
                return problem
        return None
    exp = _to_numpy(expected)
    if exp is None:
        return None if got == expected else f"{what}: expected {expected!r}, got {got!r}"
    g = _to_numpy(got)
    if g is None:
        return f"{what}: expected {describe(expected)}, got {describe(got)}"
    if g.shape != exp.shape:
        hint = ""
        if g.shape == exp.shape[::-1] and len(exp.shape) == 2:
            hint = " (the transpose of what was expected: check which axis is which)"
        elif g.size == exp.size:
            hint = " (same number of elements: a missing or extra reshape, or the axes are in the wrong order)"
        return f"{what}: expected shape {tuple(exp.shape)}, got shape {tuple(g.shape)}{hint}"
    if g.dtype.kind not in "fciub":
        return f"{what}: expected numbers, got dtype {g.dtype}"
    if exp.dtype.kind == "b" or g.dtype.kind == "b":
        if _array_equal(g, exp):
            return None
        return f"{what}: expected {preview(exp)}, got {preview(g)}"
    g64 = g.astype(complex if g.dtype.kind == "c" else float).reshape(-1)  # flat: scalars index too
    e64 = exp.astype(complex if exp.dtype.kind == "c" else float).reshape(-1)
    g_fin, e_fin = _isfinite(g64), _isfinite(e64)
    if not _array_equal(g_fin, e_fin):
        bad = int((~g_fin & e_fin).sum())
        if bad:
            return (f"{what}: {bad} value(s) are nan or inf where finite numbers were expected "
                    f"(got {preview(g)}): look for a division by zero, an overflow in exp, or log(0)")
        return f"{what}: expected some nan/inf values, got finite numbers: {preview(g)}"
    with _errstate(invalid="ignore", over="ignore"):
        diff = abs(g64 - e64)
    diff[~e_fin] = 0.0
    tol = atol + rtol * abs(e64)
    tol[~e_fin] = 0.0
    if (diff <= tol).all() and _array_equal(g64[~e_fin], e64[~e_fin], equal_nan=True):
        return None
    worst = int((diff - tol).argmax()) if diff.size else 0
    at = _unravel(worst, exp.shape) if exp.ndim else ()
    return (f"{what}: values differ (max abs difference {float(diff[worst]):.3g} at index {tuple(int(i) for i in at)}, "
            f"tolerance {atol:g} + {rtol:g}*|expected|)\n"
            f"    expected {preview(exp, around=worst)}\n    got      {preview(g, around=worst)}")


# --------------------------------------------------------------------------- running a check

@dataclass
class Case:
    """One input to an exercise: positional args and a label a learner understands."""
    args: tuple
    label: str
    kwargs: dict = field(default_factory=dict)


@dataclass
class Mistake:
    """A recognisable wrong answer: if the learner's output matches `fn`'s, say `hint`."""
    hint: str
    fn: Callable[..., Any]


def _copy_args(args: Sequence[Any]) -> list[Any]:
    out = []
    for a in args:
        if _isinstance(a, _ndarray):
            out.append(a.copy())
        elif hasattr(a, "clone") and type(a).__module__.startswith("torch"):
            out.append(a.clone())
        else:
            out.append(_copy.deepcopy(a))
    return out


def _same(a: Any, b: Any) -> bool:
    x, y = _to_numpy(a), _to_numpy(b)
    if x is None or y is None:
        return True
    if x.shape != y.shape:
        return False
    numeric = x.dtype.kind in "fc" and y.dtype.kind in "fc"  # equal_nan refuses strings and objects
    return _array_equal(x, y, equal_nan=numeric)


def call(fn: Callable[..., Any], name: str, args: Sequence[Any], kwargs: dict | None, where: str) -> Any:
    """Call the learner's function; turn NotImplementedError and crashes into check messages."""
    __tracebackhide__ = True
    try:
        return fn(*args, **(kwargs or {}))
    except NotAttempted:
        raise
    except NotImplementedError as exc:
        inner = _raising_function(exc)
        own = {getattr(fn, "__name__", ""), *name.replace(".", " ").replace("`", " ").split()}
        if inner and not inner.startswith("__") and inner not in own and inner != "<lambda>":
            raise NotAttempted(f"`{name}` calls `{inner}`, which is not attempted yet: solve that exercise "
                               "first (or write the step inline), then run this cell again.") from None
        raise NotAttempted(f"`{name}` is not attempted yet: replace `raise NotImplementedError()` "
                           "with your code, run that cell, then run this one again.") from None
    except Exception as exc:  # the learner's code crashed: show which case made it crash
        raise CheckFailure(f"`{name}` raised {type(exc).__name__}: {exc}\n  on {where}") from exc


def _raising_function(exc: BaseException) -> str | None:
    """The name of the function whose own body raised `exc` (the innermost traceback frame)."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_name if tb.tb_frame.f_globals.get("__name__") == "__main__" else None


_NO_EXPECTED = object()


def likely_cause(mistakes: Sequence[Mistake], got: Any, wrong_answer: Callable[[Mistake], Any],
                 same: Callable[[Any, Any], str | None], expected: Any = _NO_EXPECTED) -> str:
    """"\n  Likely cause: ..." for the first known mistake whose answer matches `got`, else "".

    With `expected`, a mistake is named only when it is *distinguishable* on this case (its answer
    differs from the right one): a mistake that coincides with the right answer here, as "forgot to
    normalise" does on unit vectors, says nothing about what the learner did."""
    for m in mistakes:
        try:
            with _errstate(all="ignore"):  # a known mistake may overflow: keep its warnings quiet
                wrong = wrong_answer(m)
        except Exception:
            continue
        try:
            if same(got, wrong) is not None:
                continue
            if expected is not _NO_EXPECTED and same(expected, wrong) is None:
                continue
        except Exception:
            continue
        return f"\n  Likely cause: {m.hint}"
    return ""


def run_check(name: str, fn: Callable[..., Any], reference: Callable[..., Any], cases: Iterable[Case], *,
              rtol: float = 1e-6, atol: float = 1e-8, mistakes: Sequence[Mistake] = (),
              compare_fn: Callable[..., str | None] | None = None, thorough: bool = False) -> None:
    """Run `fn` and `reference` on every case; raise CheckFailure at the first disagreement."""
    __tracebackhide__ = True
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cmp = compare_fn or (lambda got, exp, case: compare(got, exp, rtol=rtol, atol=atol))
    cases = list(cases)
    for i, case in enumerate(cases, 1):
        shapes = ", ".join(describe(a) for a in case.args)
        where = f"case {i} of {len(cases)} ({case.label}; inputs: {shapes})"
        pristine = _copy_args(case.args)
        expected = reference(*_copy_args(case.args), **case.kwargs)
        got = call(fn, name, case.args, case.kwargs, where)
        for j, (before, after) in enumerate(zip(pristine, case.args)):
            if not _same(before, after):
                raise CheckFailure(f"`{name}` changed its input argument {j + 1} in place on {where}. "
                                   "Work on a copy (or build a new array) instead of writing into the input.")
        problem = cmp(got, expected, case)
        if problem:
            cause = likely_cause(mistakes, got, lambda m: m.fn(*_copy_args(pristine), **case.kwargs),
                                 lambda g, wrong: cmp(g, wrong, case), expected)
            raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}{cause}")
    kind = "thorough" if thorough else "quick"
    print(f"✓ {name}: all {len(cases)} {kind} checks passed")


def check_choice(name: str, answer: Any, digest: str, options: str) -> None:
    """Check a multiple-choice answer against the SHA-256 of the right letter (so reading the
    library does not give the answer away at a glance)."""
    __tracebackhide__ = True
    guard()
    choices = ", ".join(f'"{o}"' for o in options[:-1]) + f' or "{options[-1]}"'
    if answer is None or answer is Ellipsis:
        raise NotAttempted(f"`{name}` is not attempted yet: set it to {choices}.")
    letter = str(answer).strip().lower().strip("()")
    if len(letter) != 1 or letter not in options:
        raise CheckFailure(f"`{name}` should be one letter, {choices}; got {answer!r}")
    if _hashlib.sha256(f"{name}:{letter}".encode()).hexdigest() != digest:
        raise CheckFailure(f"`{name}` = {letter!r} is not the best answer. Re-read the question and try again.")
    print(f"✓ {name}: correct")


def choice_digest(name: str, letter: str) -> str:
    """The digest `check_choice` expects; used when writing a chapter's checks."""
    return _hashlib.sha256(f"{name}:{letter.strip().lower()}".encode()).hexdigest()


def rng_for(thorough: bool, salt: int = 0) -> _np.random.Generator:
    """A fixed-seed generator: the same cases every run, different for quick and thorough checks."""
    return _np.random.default_rng((20240 if thorough else 7) + salt)


def non_contiguous(x: _ndarray) -> _ndarray:
    """The same values as `x`, laid out with a stride (as a learner gets from slicing)."""
    wide = _np.empty(x.shape[:-1] + (x.shape[-1] * 2,), dtype=x.dtype)
    wide[..., ::2] = x
    return wide[..., ::2]


def read_only(x: _ndarray) -> _ndarray:
    y = x.copy()
    y.flags.writeable = False
    return y

