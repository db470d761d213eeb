"""The check contract (CONVENTIONS.md, classes 1 and 2), proven for every exercise at once.

For each exercise whose reference is a function, this builds learner mistakes *from the
reference itself*, so no exercise can be forgotten:

- **a hard-coded parameter** (class 1): the reference, except that one scalar parameter keeps the
  first value it was ever given. A thorough check that never varies that parameter, or never
  notices when it is ignored, lets a learner who ignores `num_iters`, `eps` or `top_k` through.
- **a generator not honoured** (class 2): the reference, except that the `rng`/`generator` it is
  handed is replaced by a fresh fixed-seed one (ignores the seed), a copy (the caller's generator is
  never advanced), or one seeded from the global RNG (not reproducible).

The thorough check must reject each. A mutant that genuinely cannot change the result goes in
`tests/mutation_allowlist.yaml` with the reviewer's reason, like any equivalent mutant.
"""
from __future__ import annotations

import copy
import functools
import inspect
import random
import re
from typing import Any, Callable

import numpy as np
import pytest

from safety_roadmap.checks._core import CheckFailure

from . import mutation

ALLOW = mutation.Allowlist.load()
RNG_NAMES = {"rng", "generator", "gen", "random_state"}
_SCALAR_WORDS = {"int", "float", "bool", "str", "None", "Optional", "Literal"}
_UNSET = object()


def _function_targets() -> list[mutation.Target]:
    return [t for t in mutation.all_targets() if mutation.mutable(t) and inspect.isfunction(t.reference())]


def _maybe_scalar(param: inspect.Parameter) -> bool:
    """False when the annotation says the parameter is an array, tensor, model or callable."""
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return True
    words = set(re.findall(r"[A-Za-z_][\w.]*", ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))))
    return bool(words) and words <= _SCALAR_WORDS


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str)) and not isinstance(value, np.ndarray)


def _params(kinds: str) -> list[Any]:
    out = []
    for t in _function_targets():
        for name, param in inspect.signature(t.reference()).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if kinds == "rng" and name in RNG_NAMES:
                for how in ("fresh", "copy", "global"):
                    out.append(pytest.param(t, name, how, id=f"{t.key}-{name}-{how}"))
            elif kinds == "scalar" and name not in RNG_NAMES and _maybe_scalar(param):
                out.append(pytest.param(t, name, id=f"{t.key}-{name}"))
    return out


def _wrap(reference: Callable[..., Any], substitute: Callable[[inspect.BoundArguments], None]) -> Callable[..., Any]:
    sig = inspect.signature(reference)

    @functools.wraps(reference)
    def mutant(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        substitute(bound)
        return reference(*bound.args, **bound.kwargs)

    return mutant


def _survives(target: mutation.Target, impl: Callable[..., Any]) -> bool:
    try:
        target.check()(impl, thorough=True)
    except CheckFailure:
        return False
    return True


def _allowed(target: mutation.Target, mutant_id: str) -> None:
    reason = ALLOW.entries.get(target.key, {}).get(mutant_id)
    if reason:
        pytest.skip(f"allow-listed: {reason}")


@pytest.mark.parametrize("target,param", _params("scalar"))
def test_thorough_check_varies_every_scalar_parameter(target: mutation.Target, param: str, capsys) -> None:
    _allowed(target, f"contract: hard-coded `{param}`")
    seen: list[Any] = []
    first: list[Any] = []

    def freeze(bound: inspect.BoundArguments) -> None:
        value = bound.arguments.get(param, _UNSET)
        if value is _UNSET or not _is_scalar(value):
            return
        seen.append(value)
        if not first:
            first.append(value)
        bound.arguments[param] = first[0]

    survived = _survives(target, _wrap(target.reference(), freeze))
    capsys.readouterr()
    if not seen:
        pytest.skip(f"`{param}` never receives a scalar in the thorough check")
    values = sorted({repr(v) for v in seen})
    assert not survived, (
        f"{target.key}: a learner who hard-codes `{param}` passes the thorough check. "
        + (f"It only ever passes `{param}`={values[0]}: vary it (at least two non-default values, "
           "including documented edges)." if len(values) == 1 else
           f"It passes `{param}` in {values} but never notices when it is ignored: compare the outputs "
           "across those values with the reference's."))


def _fresh_like(g: Any, seed: int) -> Any:
    if isinstance(g, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(g, random.Random):
        return random.Random(seed)
    import torch

    if isinstance(g, torch.Generator):
        return torch.Generator(device=g.device).manual_seed(seed)
    return None


def _copy_of(g: Any) -> Any:
    import torch

    if isinstance(g, torch.Generator):
        twin = torch.Generator(device=g.device)
        twin.set_state(g.get_state())
        return twin
    return copy.deepcopy(g)


@pytest.mark.parametrize("target,param,how", _params("rng"))
def test_thorough_check_enforces_the_randomness_contract(target: mutation.Target, param: str, how: str,
                                                          capsys) -> None:
    _allowed(target, f"contract: rng-{how} `{param}`")
    handed: list[Any] = []

    def replace(bound: inspect.BoundArguments) -> None:
        g = bound.arguments.get(param)
        if g is None or _fresh_like(g, 0) is None:
            return
        handed.append(g)
        if how == "fresh":
            bound.arguments[param] = _fresh_like(g, 12345)
        elif how == "copy":
            bound.arguments[param] = _copy_of(g)
        else:
            bound.arguments[param] = _fresh_like(g, int(np.random.randint(2**31 - 1)))

    survived = _survives(target, _wrap(target.reference(), replace))
    capsys.readouterr()
    if not handed:
        pytest.skip(f"the thorough check never hands `{param}` a generator")
    what = {"fresh": "ignores the generator it is given (uses its own fixed seed)",
            "copy": "draws from a copy of the generator, so the caller's generator never advances",
            "global": "draws from the global random state instead of the generator it is given"}[how]
    assert not survived, (f"{target.key}: a learner whose code {what} passes the thorough check. Check that the "
                          "same seed gives the same output, different seeds different outputs, and that the "
                          "generator passed in is the one consumed.")
