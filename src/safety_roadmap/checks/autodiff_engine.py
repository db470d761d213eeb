"""Checks for chapter 05_autodiff_engine. Each `check_<exercise>(obj, thorough=False)`.

Scalar exercises receive the learner's `Value` class. Each check exercises only the
piece that exercise asks for: the other operations in a test expression are wired
by the check itself through the notebook's skeleton protocol (``Value(data, _inputs, _op)``,
``._inputs``, ``._backward``), so an exercise can pass before the others are done.
Every gradient is compared with ``torch.autograd`` on the same expression.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional

from ..reference.autodiff_engine import topological_order
from ._core import (Case, CheckFailure, Mistake, call, compare, describe, guard, non_contiguous,
                    read_only, rng_for, run_check, trust)

trust(torch)
trust(torch.nn.functional)

#: For mutation testing: the Value methods each exercise teaches (the reference is one class, so a mutant in
#: another exercise's method says nothing about this exercise's check).
MUTATION_SCOPE = {"value_add_mul": ("__add__", "__mul__", "__radd__", "__rmul__"), "value_backward": ("backward",),
                  "value_pow": ("__pow__",), "value_unary_ops": ("exp", "log", "relu", "tanh")}

__all__ = ["check_value_add_mul", "check_value_backward", "check_value_pow", "check_value_unary_ops",
           "check_unbroadcast", "check_matmul_backward", "check_log_softmax_backward"]

_F64 = torch.float64


# --------------------------------------------------------------------------- scalar machinery

class _TorchOps:
    """The same expressions, evaluated by PyTorch."""
    add = staticmethod(lambda a, b: a + b)
    mul = staticmethod(lambda a, b: a * b)
    tanh = staticmethod(torch.tanh)
    exp = staticmethod(torch.exp)

    @staticmethod
    def const(x: float) -> torch.Tensor:
        return torch.tensor(float(x), dtype=_F64)


class _WiredOps:
    """Operations built by the check on the learner's class, following the skeleton's protocol."""

    def __init__(self, cls: type):
        self.cls = cls

    def _node(self, data: float, inputs: tuple, op: str, local: Sequence[float]) -> Any:
        out = self.cls(data, inputs, op)

        def _backward() -> None:
            for node, d in zip(inputs, local):
                node.grad += d * out.grad
        out._backward = _backward
        return out

    def const(self, x: float) -> Any:
        return self.cls(x)

    def add(self, a: Any, b: Any) -> Any:
        return self._node(a.data + b.data, (a, b), "+", (1.0, 1.0))

    def mul(self, a: Any, b: Any) -> Any:
        return self._node(a.data * b.data, (a, b), "*", (b.data, a.data))

    def tanh(self, a: Any) -> Any:
        t = math.tanh(a.data)
        return self._node(t, (a,), "tanh", (1 - t * t,))

    def exp(self, a: Any) -> Any:
        e = math.exp(a.data)
        return self._node(e, (a,), "exp", (e,))


def _backprop(root: Any) -> None:
    """The check's own reverse pass (used when the exercise is an operation, not `backward`)."""
    for node in reversed(topological_order(root)):
        if node is root:
            node.grad = 1.0
        node._backward()


@dataclass
class _Expr:
    label: str
    build: Callable[..., Any]          # build(ops, *leaves) -> root
    values: tuple[float, ...]
    hint_if_wrong: str = ""            # said when this case fails (e.g. a reuse case)


def _fmt(values: Sequence[float]) -> str:
    return ", ".join(f"{n}={v:g}" for n, v in zip("abcdefgh", values))


def _run_scalar(name: str, cls: Any, cases: list[_Expr], *, learner_backward: bool, thorough: bool,
                mistakes: Sequence[tuple[str, type]] = (), quiet: bool = False) -> None:
    """Evaluate every expression with the learner's class and with torch; compare value and leaf gradients."""
    __tracebackhide__ = True
    guard()
    if not isinstance(cls, type):
        if callable(cls):  # a stub function standing in for the class
            call(cls, name, (1.0,), None, "creating Value(1.0)")
        raise CheckFailure(f"expected the class `Value`, got {describe(cls)}")
    for i, case in enumerate(cases, 1):
        where = f"case {i} of {len(cases)} ({case.label}, with {_fmt(case.values)})"
        got = _evaluate(name, cls, case, learner_backward, where)
        expected = _torch_result(case)
        problem = _compare_scalar(got, expected)
        if problem:
            msg = f"`{name}` is wrong on {where}:\n  {problem}"
            leaf_grads = got[1]
            value_ok = compare(got[0], expected[0], rtol=1e-9, atol=1e-12) is None
            if value_ok and not any(leaf_grads) and any(expected[1]):
                msg += ("\n  Likely cause: no gradient reached the inputs. " + (
                    "Set self.grad = 1.0 first, then call every node's _backward in reverse topological order."
                    if learner_backward else
                    "Create `out` with its inputs (Value(data, (self, other), op)) and assign out._backward."))
            else:
                for hint, wrong_cls in mistakes:
                    try:
                        wrong = _evaluate(name, wrong_cls, case, learner_backward, where)
                    except Exception:
                        continue
                    if _compare_scalar(got, wrong) is None:
                        msg += f"\n  Likely cause: {hint}"
                        break
                else:
                    if case.hint_if_wrong:
                        msg += f"\n  Likely cause: {case.hint_if_wrong}"
            raise CheckFailure(msg)
    if not quiet:
        kind = "thorough" if thorough else "quick"
        print(f"✓ {name}: all {len(cases)} {kind} checks passed (gradients match torch.autograd)")


def _evaluate(name: str, cls: type, case: _Expr, learner_backward: bool, where: str) -> tuple[float, list[float]]:
    __tracebackhide__ = True
    leaves = [call(cls, "Value", (v,), None, where) for v in case.values]
    ops = _WiredOps(cls)
    root = call(case.build, name, (ops, *leaves), None, where)
    if not hasattr(root, "data") or not hasattr(root, "grad"):
        raise CheckFailure(f"`{name}` on {where}: expected a Value as the result, got {describe(root)}")
    for leaf in leaves:
        if not hasattr(leaf, "_inputs") or not hasattr(leaf, "_backward"):
            raise CheckFailure("`Value` has no `_inputs` or `_backward` attribute: keep the skeleton's __init__, "
                               "which the checks (and `backward`) rely on.")
    if learner_backward:
        if not callable(getattr(root, "backward", None)):
            raise CheckFailure("`Value` has no method `backward`: run the cell that sets Value.backward = backward.")
        call(root.backward, "backward", (), None, where)
    else:
        call(_backprop, name, (root,), None, where)
    changed = [v for leaf, v in zip(leaves, case.values) if leaf.data != float(v)]
    if changed:
        raise CheckFailure(f"`{name}` changed an input's .data on {where}; an operation must build a new Value.")
    return float(root.data), [float(leaf.grad) for leaf in leaves]


def _torch_result(case: _Expr) -> tuple[float, list[float]]:
    leaves = [torch.tensor(float(v), dtype=_F64, requires_grad=True) for v in case.values]
    root = case.build(_TorchOps, *leaves)
    grads = torch.autograd.grad(root, leaves, allow_unused=True)
    return float(root.detach()), [0.0 if g is None else float(g) for g in grads]


def _compare_scalar(got: tuple[float, list[float]], expected: tuple[float, list[float]]) -> str | None:
    problem = compare(got[0], expected[0], rtol=1e-9, atol=1e-12, what="the result's .data")
    if problem:
        return problem
    for name, g, e in zip("abcdefgh", got[1], expected[1]):
        problem = compare(g, e, rtol=1e-8, atol=1e-12, what=f"{name}.grad (torch.autograd says {e:.6g})")
        if problem:
            return problem
    return None


class _MistakeValue:
    """A reference-style Value whose operations can be swapped for known-wrong ones (for hints)."""

    def __init__(self, data: float, _inputs: tuple = (), _op: str = ""):
        self.data = float(data)
        self.grad = 0.0
        self._inputs = tuple(_inputs)
        self._backward: Callable[[], None] = lambda: None
        self._op = _op

    def _node(self, data: float, inputs: tuple, op: str, push: Callable[[Any], None]) -> "_MistakeValue":
        out = type(self)(data, inputs, op)
        out._backward = lambda: push(out)
        return out

    def _wrap(self, other: Any) -> "_MistakeValue":
        return other if isinstance(other, _MistakeValue) else type(self)(other)

    def _add_grads(self, out, other):
        self.grad += out.grad
        other.grad += out.grad

    def _mul_grads(self, out, other):
        self.grad += other.data * out.grad
        other.grad += self.data * out.grad

    def __add__(self, other):
        other = self._wrap(other)
        return self._node(self.data + other.data, (self, other), "+", lambda out: self._add_grads(out, other))

    def __mul__(self, other):
        other = self._wrap(other)
        return self._node(self.data * other.data, (self, other), "*", lambda out: self._mul_grads(out, other))

    __radd__ = __add__
    __rmul__ = __mul__

    def _pow_grad(self, out, k):
        self.grad += k * self.data ** (k - 1) * out.grad

    def __pow__(self, k):
        return self._node(self.data ** k, (self,), f"**{k}", lambda out: self._pow_grad(out, k))

    def _unary(self, data, op, local):
        def push(out):
            self.grad += local(out) * out.grad
        return self._node(data, (self,), op, push)

    def exp(self):
        return self._unary(math.exp(self.data), "exp", lambda out: out.data)

    def log(self):
        return self._unary(math.log(self.data), "log", lambda out: 1 / self.data)

    def relu(self):
        return self._unary(max(self.data, 0.0), "relu", lambda out: float(self.data > 0))

    def tanh(self):
        return self._unary(math.tanh(self.data), "tanh", lambda out: 1 - out.data ** 2)

    def backward(self):
        _backprop(self)


def _variant(name: str, **methods: Callable[..., Any]) -> type:
    return type(name, (_MistakeValue,), methods)


# --------------------------------------------------------------------------- exercise 1: + and *

def _add_mul_cases(thorough: bool) -> list[_Expr]:
    reuse = "A Value used more than once must collect gradient from every use: `+=` in _backward, never `=`."
    cases = [_Expr("a * b + c", lambda o, a, b, c: a * b + c, (2.0, -3.0, 10.0)),
             _Expr("(a * b) * c: the product's gradient is c, not 1", lambda o, a, b, c: (a * b) * c, (1.5, 2.0, -4.0)),
             _Expr("a * a: a used twice", lambda o, a: a * a, (3.0,), reuse),
             _Expr("2 * a + 3 + b * 4: numbers on either side", lambda o, a, b: 2 * a + 3 + b * 4, (0.5, -1.25)),
             _Expr("2 + a * b: a number on the left of +", lambda o, a, b: 2 + a * b, (1.5, -2.0))]
    if thorough:
        def shared(o, a, b):
            e = a * b
            return (e + e) * e + a
        cases += [_Expr("a + a + a", lambda o, a: a + a + a, (7.0,), reuse),
                  _Expr("e = a * b; (e + e) * e + a", shared, (1.1, -0.7), reuse),
                  _Expr("(a + b) * (a + 2)", lambda o, a, b: (a + b) * (a + 2), (-2.0, 5.0), reuse),
                  _Expr("0.5 * a * b * a", lambda o, a, b: 0.5 * a * b * a, (3.0, 4.0), reuse),
                  _Expr("tiny and huge numbers", lambda o, a, b, c: a * b + c * a, (1e-8, 1e8, -3e3)),
                  _Expr("a * b + b * c + c * a", lambda o, a, b, c: a * b + b * c + c * a, (0.3, -0.2, 0.9), reuse),
                  _Expr("a + 1 with an integer input", lambda o, a: a + 1, (4,))]
    return cases


def _no_inputs_node(self, data, inputs, op, push):
    out = type(self)(data, (), op)   # the new node does not record where it came from
    out._backward = lambda: push(out)
    return out


_ADD_MUL_MISTAKES = [
    ("`=` instead of `+=` in _backward: a Value used twice keeps only the last contribution.",
     _variant("Overwrite", _add_grads=lambda s, out, o: (setattr(s, "grad", out.grad), setattr(o, "grad", out.grad)),
              _mul_grads=lambda s, out, o: (setattr(s, "grad", o.data * out.grad), setattr(o, "grad", s.data * out.grad)))),
    ("the local gradients of * are swapped: d(a*b)/da = b, so a.grad gets other.data * out.grad.",
     _variant("Swapped", _mul_grads=lambda s, out, o: (setattr(s, "grad", s.grad + s.data * out.grad),
                                                        setattr(o, "grad", o.grad + o.data * out.grad)))),
    ("the chain rule needs out.grad: multiply each local derivative by out.grad.",
     _variant("NoChain", _add_grads=lambda s, out, o: (setattr(s, "grad", s.grad + 1.0), setattr(o, "grad", o.grad + 1.0)),
              _mul_grads=lambda s, out, o: (setattr(s, "grad", s.grad + o.data), setattr(o, "grad", o.grad + s.data)))),
    ("the new Value does not record its inputs, so backpropagation cannot find them: create it with "
     "Value(data, (self, other), op).", _variant("NoInputs", _node=_no_inputs_node)),
]


def check_value_add_mul(cls: Any, thorough: bool = False) -> None:
    """Value's + and * (and 2 + v, 2 * v): values and gradients match torch."""
    __tracebackhide__ = True
    _run_scalar("Value + and *", cls, _add_mul_cases(thorough), learner_backward=False, thorough=thorough,
                mistakes=_ADD_MUL_MISTAKES)


# --------------------------------------------------------------------------- exercise 2: backward

def _backward_cases(thorough: bool) -> list[_Expr]:
    order = ("Order matters: a node's _backward may run only after every node that uses it has run. Visit nodes "
             "in reverse topological order, each exactly once.")

    def diamond(o, a, b):
        y = o.mul(a, o.const(2.0))
        return o.mul(o.mul(y, o.const(3.0)), o.add(y, b))

    def shared_deep(o, a, b):
        e = o.mul(a, b)
        f = o.tanh(e)
        g = o.add(f, e)
        return o.mul(g, o.add(f, o.mul(g, a)))

    cases = [_Expr("(a * b + c) * d, a chain", lambda o, a, b, c, d: o.mul(o.add(o.mul(a, b), c), d),
                   (2.0, -1.0, 0.5, 3.0)),
             _Expr("y = 2a; (3y) * (y + b): y feeds two paths", diamond, (0.7, -1.3), order),
             _Expr("a alone: d a / d a = 1", lambda o, a: a, (5.0,))]
    if thorough:
        def long_chain(o, a):
            x = a
            for _ in range(300):
                x = o.mul(x, o.const(1.001))
            return x

        def wide(o, *xs):
            total = o.const(0.0)
            for j, x in enumerate(xs):
                total = o.add(total, o.mul(x, o.const(j + 1.0)))
            return o.mul(total, total)

        def ladder(o, a):
            x = a
            for _ in range(12):
                x = o.add(o.mul(x, x), x)   # each step reuses x twice
                x = o.tanh(x)
            return x

        cases += [_Expr("e = a*b, f = tanh(e), g = f + e, g * (f + g*a): nested reuse", shared_deep, (0.4, 0.9), order),
                  _Expr("a chain of 300 multiplications", long_chain, (1.0,)),
                  _Expr("(1a + 2b + ... + 6f) squared", wide, (0.1, -0.2, 0.3, 0.4, -0.5, 0.6)),
                  _Expr("12 steps of x = tanh(x * x + x)", ladder, (0.3,), order),
                  _Expr("exp(a) * exp(a) * b", lambda o, a, b: o.mul(o.mul(o.exp(a), o.exp(a)), b), (0.2, 1.5), order)]
    return cases


def _bw_no_seed(self):
    for node in reversed(topological_order(self)):
        node._backward()


def _bw_bfs(self):
    self.grad = 1.0
    queue, seen = [self], {id(self)}
    while queue:
        node = queue.pop(0)
        node._backward()
        for child in node._inputs:
            if id(child) not in seen:
                seen.add(id(child))
                queue.append(child)


def _bw_forward_order(self):
    self.grad = 1.0
    for node in topological_order(self):
        node._backward()


def _bw_no_visited(self):
    order = []

    def visit(node):
        for child in node._inputs:
            visit(child)
        order.append(node)
    visit(self)
    self.grad = 1.0
    for node in reversed(order):
        node._backward()


_BACKWARD_MISTAKES = [
    ("nodes were visited in the order they were found (breadth first), not in reverse topological order, so a "
     "node shared by two paths passed its gradient on before it had received all of it.",
     _variant("Bfs", backward=_bw_bfs)),
    ("only part of the graph passed its gradient on. Call _backward on EVERY node, in reverse topological "
     "order: the output first, and each node only after everything that uses it.",
     _variant("ForwardOrder", backward=_bw_forward_order)),
    ("a node reached by two paths went into the order twice, so its gradient was passed on twice. Keep a "
     "`visited` set while building the topological order.", _variant("NoVisited", backward=_bw_no_visited)),
]


def check_value_backward(cls: Any, thorough: bool = False) -> None:
    """Value.backward(): reverse topological order, root gradient 1, every node once."""
    __tracebackhide__ = True
    cases = _backward_cases(thorough)
    _run_scalar("Value.backward", cls, cases, learner_backward=True, thorough=thorough,
                mistakes=_BACKWARD_MISTAKES, quiet=True)
    _check_keeps_old_grads(cls)
    kind = "thorough" if thorough else "quick"
    print(f"✓ Value.backward: all {len(cases) + 1} {kind} checks passed (gradients match torch.autograd)")


def _check_keeps_old_grads(cls: Any) -> None:
    """The prompt: backward() does not reset old gradients. Leaves that already hold a gradient must end
    with old + new (what lets a training loop sum gradients over several losses before a step)."""
    __tracebackhide__ = True
    where = "L = a * b + a with a = 2, b = -3, where a.grad = 0.5 and b.grad = -1 before L.backward()"
    a, b = cls(2.0), cls(-3.0)
    a.grad, b.grad = 0.5, -1.0
    loss = a * b + a
    call(lambda: cls.backward(loss), "Value.backward", (), None, where)
    want = (0.5 + (-3.0 + 1.0), -1.0 + 2.0)
    got = (float(a.grad), float(b.grad))
    if abs(got[0] - want[0]) > 1e-12 or abs(got[1] - want[1]) > 1e-12:
        fresh = (-3.0 + 1.0, 2.0)
        cause = ("\n  Likely cause: your backward() sets every gradient to 0 before it starts, so the old ones are "
                 "lost. Only the output's .grad is set (to 1.0); every other node accumulates with +=."
                 if max(abs(g - f) for g, f in zip(got, fresh)) < 1e-12 else "")
        raise CheckFailure(f"`Value.backward` on {where}: expected a.grad = {want[0]:g}, b.grad = {want[1]:g} "
                           f"(old + new), got {got[0]:g}, {got[1]:g}.{cause}")


# --------------------------------------------------------------------------- exercise 3: **

def _pow_cases(thorough: bool) -> list[_Expr]:
    cases = [_Expr("a ** 2", lambda o, a: a ** 2, (3.0,)),
             _Expr("(a ** 3) * b: the power's gradient is b, not 1", lambda o, a, b: o.mul(a ** 3, b), (-1.5, 2.0)),
             _Expr("a ** 0.5", lambda o, a: a ** 0.5, (2.25,))]
    if thorough:
        cases += [_Expr("a ** -1", lambda o, a: a ** -1, (4.0,)),
                  _Expr("a ** -2.5", lambda o, a: a ** -2.5, (1.7,)),
                  _Expr("a ** 2 + a ** 3: a used twice", lambda o, a: o.add(a ** 2, a ** 3), (1.2,),
                        "A Value used more than once must collect gradient from every use: `+=`, never `=`."),
                  _Expr("(a ** 2) ** 1.5", lambda o, a: (a ** 2) ** 1.5, (0.8,)),
                  _Expr("a ** 1", lambda o, a: a ** 1, (-3.0,)),
                  _Expr("a ** 0", lambda o, a: a ** 0, (5.0,)),
                  _Expr("a ** 3.0 with a negative base", lambda o, a: a ** 3.0, (-2.0,)),
                  _Expr("a ** 7 * b with tiny a", lambda o, a, b: o.mul(a ** 7, b), (0.01, 3.0))]
    return cases


_POW_MISTAKES = [
    ("d(a**k)/da = k * a**(k-1): the exponent drops by one.",
     _variant("PowNoMinusOne", _pow_grad=lambda s, out, k: setattr(s, "grad", s.grad + k * s.data ** k * out.grad))),
    ("d(a**k)/da = k * a**(k-1): the factor k is missing.",
     _variant("PowNoK", _pow_grad=lambda s, out, k: setattr(s, "grad", s.grad + s.data ** (k - 1) * out.grad))),
    ("the chain rule needs out.grad: multiply k * a**(k-1) by out.grad.",
     _variant("PowNoChain", _pow_grad=lambda s, out, k: setattr(s, "grad", s.grad + k * s.data ** (k - 1)))),
]


def check_value_pow(cls: Any, thorough: bool = False) -> None:
    """Value ** k for int and float k."""
    __tracebackhide__ = True
    _run_scalar("Value ** k", cls, _pow_cases(thorough), learner_backward=False, thorough=thorough,
                mistakes=_POW_MISTAKES)


# --------------------------------------------------------------------------- exercise 4: exp, log, relu, tanh

def _unary_cases(thorough: bool) -> list[tuple[str, _Expr]]:
    reuse = "A Value used more than once must collect gradient from every use: `+=`, never `=`."
    cases = [("exp", _Expr("a.exp()", lambda o, a: a.exp(), (0.7,))),
             ("log", _Expr("a.log()", lambda o, a: a.log(), (2.5,))),
             ("relu", _Expr("a.relu() * b, a > 0", lambda o, a, b: o.mul(a.relu(), b), (1.5, -2.0))),
             ("relu", _Expr("a.relu() * b, a < 0", lambda o, a, b: o.mul(a.relu(), b), (-0.5, 3.0))),
             ("tanh", _Expr("a.tanh() * b", lambda o, a, b: o.mul(a.tanh(), b), (0.6, 2.0)))]
    if thorough:
        cases += [("exp", _Expr("a.exp() * b", lambda o, a, b: o.mul(a.exp(), b), (-1.2, 4.0))),
                  ("exp", _Expr("exp(a) + exp(a)", lambda o, a: o.add(a.exp(), a.exp()), (0.1,), reuse)),
                  ("log", _Expr("a.log() * b, small a", lambda o, a, b: o.mul(a.log(), b), (1e-3, 0.5))),
                  ("log", _Expr("a.exp().log()", lambda o, a: a.exp().log(), (1.3,))),
                  ("relu", _Expr("(a * b).relu() + a", lambda o, a, b: o.add(o.mul(a, b).relu(), a), (2.0, 0.25))),
                  ("relu", _Expr("a.relu() with a huge a", lambda o, a: a.relu(), (1e6,))),
                  ("relu", _Expr("a.relu() * b at exactly a = 0 (the table says: derivative 0 unless x > 0)",
                                 lambda o, a, b: o.mul(a.relu(), b), (0.0, 2.0))),
                  ("tanh", _Expr("a.tanh(), large a", lambda o, a: a.tanh(), (4.0,))),
                  ("tanh", _Expr("tanh(a) * tanh(a)", lambda o, a: o.mul(a.tanh(), a.tanh()), (-0.9,), reuse)),
                  ("tanh", _Expr("tanh(tanh(a) * b)", lambda o, a, b: o.mul(a.tanh(), b).tanh(), (0.5, 3.0))),
                  ("all", _Expr("log(1 + exp(a)) * relu(b) * tanh(a)", lambda o, a, b: o.mul(
                      o.mul(o.add(o.const(1.0), a.exp()).log(), b.relu()), a.tanh()), (0.3, 0.8)))]
    return cases


_UNARY_MISTAKES = [
    ("tanh'(x) = 1 - tanh(x)**2: square the OUTPUT t, not the input x.",
     _variant("TanhInput", tanh=lambda s: s._unary(math.tanh(s.data), "tanh", lambda out: 1 - s.data ** 2))),
    ("exp'(x) = exp(x): the local gradient is the output, not the input x.",
     _variant("ExpInput", exp=lambda s: s._unary(math.exp(s.data), "exp", lambda out: s.data))),
    ("log'(x) = 1 / x: divide by the input, not by the output.",
     _variant("LogOutput", log=lambda s: s._unary(math.log(s.data), "log", lambda out: 1 / out.data))),
    ("the mask is the wrong way round: relu passes the gradient where x > 0 and blocks it where x < 0.",
     _variant("ReluFlipped", relu=lambda s: s._unary(max(s.data, 0.0), "relu", lambda out: float(s.data < 0)))),
    ("the new Value does not record its input, so backpropagation cannot reach it: create it with "
     "Value(data, (self,), op).", _variant("UnaryNoInputs", _node=_no_inputs_node)),
    ("relu'(x) is 1 where x > 0 and 0 elsewhere, not relu(x) itself.",
     _variant("ReluOutput", relu=lambda s: s._unary(max(s.data, 0.0), "relu", lambda out: out.data))),
]


def check_value_unary_ops(cls: Any, thorough: bool = False) -> None:
    """Value.exp(), .log(), .relu(), .tanh(): values and gradients match torch."""
    __tracebackhide__ = True
    by_op: dict[str, list[_Expr]] = {}
    for op, case in _unary_cases(thorough):
        by_op.setdefault(op, []).append(case)
    for op, cases in by_op.items():
        label = f"Value.{op}()" if op != "all" else "Value's functions combined"
        _run_scalar(label, cls, cases, learner_backward=False, thorough=thorough, mistakes=_UNARY_MISTAKES,
                    quiet=True)
    kind = "thorough" if thorough else "quick"
    n = sum(len(c) for c in by_op.values())
    print(f"✓ Value.exp/log/relu/tanh: all {n} {kind} checks passed (gradients match torch.autograd)")


# --------------------------------------------------------------------------- tensor level

def _t(x: np.ndarray, grad: bool = True) -> torch.Tensor:
    return torch.tensor(np.asarray(x, dtype=np.float64), dtype=_F64, requires_grad=grad)


def _torch_unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    b = torch.zeros(tuple(shape), dtype=_F64, requires_grad=True)
    (torch.broadcast_to(b, grad.shape) * _t(grad, grad=False)).sum().backward()
    return b.grad.numpy()


def _unbroadcast_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 51)
    g = lambda *s: rng.normal(size=s)  # noqa: E731
    cases = [Case((g(3, 4), (4,)), "a bias of shape (4,) added to a (3, 4) batch"),
             Case((g(3, 4), (3, 1)), "a (3, 1) column stretched across 4 columns"),
             Case((g(2, 3), (2, 3)), "no broadcasting at all"),
             Case((g(2, 3), ()), "a scalar input (shape ())")]
    if thorough:
        cases += [Case((g(3, 4), (1, 4)), "a (1, 4) row stretched down 3 rows"),
                  Case((g(2, 3, 4), (3, 1)), "(3, 1) broadcast to (2, 3, 4): a new leading axis AND a stretched one"),
                  Case((g(2, 3, 4), (2, 1, 4)), "a stretched middle axis"),
                  Case((g(2, 3), ()), "a scalar (shape ()) added to everything"),
                  Case((g(5,), (1,)), "shape (1,) stretched to (5,)"),
                  Case((g(2, 3), (1, 3)), "a (1, 3) row stretched down 2 rows"),
                  Case((g(3, 2, 2), (2, 1)), "(2, 1) broadcast to (3, 2, 2): a stretched axis of size 2"),
                  Case((g(4, 1, 3), (1, 1, 3)), "(1, 1, 3) to (4, 1, 3)"),
                  Case((g(2, 2, 3, 4), (4,)), "three new leading axes"),
                  Case((read_only(g(3, 5)), (5,)), "a read-only gradient"),
                  Case((non_contiguous(g(4, 6)), (1, 6)), "a strided (sliced) gradient")]
    return cases


def check_unbroadcast(fn: Callable[..., Any], thorough: bool = False) -> None:
    """unbroadcast(grad, shape): sum a broadcast result's gradient back down to `shape` (compared with torch)."""
    __tracebackhide__ = True
    run_check("unbroadcast", fn, _torch_unbroadcast, _unbroadcast_cases(thorough), rtol=1e-10, atol=1e-12,
              thorough=thorough, mistakes=[
                  Mistake("you summed the new leading axes but not the stretched size-1 axes: sum those too, "
                          "with keepdims=True.",
                          lambda g, s: g.sum(axis=tuple(range(g.ndim - len(s)))) if g.ndim > len(s) else g),
                  Mistake("you averaged; every copy made by broadcasting contributes in full, so SUM.",
                          lambda g, s: _torch_unbroadcast(g, s) * (np.prod(s) / g.size) if g.size else g),
              ])


def _torch_matmul_backward(grad_out: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ta, tb = _t(a), _t(b)
    (ta @ tb).backward(_t(grad_out, grad=False))
    return ta.grad.numpy(), tb.grad.numpy()


def _matmul_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 52)
    g = lambda *s: rng.normal(size=s)  # noqa: E731

    def case(a_shape, k_m, label, transform=lambda x: x):
        a = g(*a_shape)
        b = g(*k_m)
        return Case((transform(g(*a_shape[:-1], k_m[1])), transform(a), transform(b)), label)

    cases = [case((3, 3), (3, 3), "square matrices"),
             case((4, 3), (3, 5), "a [4, 3] @ b [3, 5]"),
             case((2, 4, 3), (3, 5), "a batch of 2: a [2, 4, 3] @ b [3, 5]")]
    if thorough:
        cases += [case((1, 3), (3, 1), "a [1, 3] @ b [3, 1]"),
                  case((2, 3, 4, 2), (2, 6), "two batch axes: a [2, 3, 4, 2] @ b [2, 6]"),
                  case((5, 4, 4), (4, 4), "batch 5 of square matrices"),
                  case((3, 2, 5), (5, 3), "read-only inputs", read_only),
                  Case((g(4, 2), non_contiguous(g(4, 3)), g(3, 2)), "a strided (sliced) a")]
    return cases


def check_matmul_backward(fn: Callable[..., Any], thorough: bool = False) -> None:
    """matmul_backward(grad_out, a, b) for a [..., n, k] @ b [k, m] -> (grad_a, grad_b), compared with torch."""
    __tracebackhide__ = True

    def cmp(got: Any, expected: Any, case: Case) -> str | None:
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return f"expected a tuple (grad_a, grad_b), got {describe(got)}"
        for name, gv, ev in zip(("grad_a", "grad_b"), got, expected):
            problem = compare(gv, ev, rtol=1e-9, atol=1e-12, what=name)
            if problem:
                if name == "grad_b" and isinstance(gv, np.ndarray) and gv.shape[-2:] == ev.shape and gv.ndim > 2:
                    problem += ("\n  Likely cause: grad_b still has the batch axes. b is shared by every matrix in "
                                "the batch, so sum their contributions: flatten a and grad_out to 2-D first.")
                return problem
        return None

    run_check("matmul_backward", fn, _torch_matmul_backward, _matmul_cases(thorough), compare_fn=cmp,
              thorough=thorough, mistakes=[
                  Mistake("grad_a needs b transposed: grad_out @ b.T.",
                          lambda go, a, b: (go @ b, _torch_matmul_backward(go, a, b)[1])),
                  Mistake("grad_b is a.T @ grad_out (shape [k, m]); you have the transpose.",
                          lambda go, a, b: (go @ b.T, (go.reshape(-1, go.shape[-1]).T @ a.reshape(-1, a.shape[-1])))),
              ])


def _torch_log_softmax_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    tx = _t(x)
    torch.log_softmax(tx, dim=-1).backward(_t(grad_out, grad=False))
    return tx.grad.numpy()


def _log_softmax_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 53)
    g = lambda *s: rng.normal(size=s)  # noqa: E731
    one_hot = -np.eye(5)[rng.integers(0, 5, size=4)] / 4
    cases = [Case((g(4, 5), g(4, 5)), "batch 4, 5 classes"),
             Case((one_hot, g(4, 5)), "grad_out = -one_hot / batch (the NLL loss)"),
             Case((g(6,), g(6,)), "a single vector of 6 logits (no batch axis)")]
    if thorough:
        cases += [Case((g(2, 3, 6), g(2, 3, 6)), "two batch axes"),
                  Case((g(1, 2), g(1, 2)), "2 classes"),
                  Case((g(3, 4), g(3, 4) * 1000), "huge logits (exp overflows unless you shift by the max)"),
                  Case((g(3, 4), np.zeros((3, 4))), "all-zero logits"),
                  Case((g(2, 3), np.array([[1000.0, 999.0, 0.0], [-2000.0, -1999.0, -2001.0]])),
                       "rows on very different scales (max 1000 and -1999): shift each row by its own max"),
                  Case((g(7,), g(7,)), "a single vector of 7 logits"),
                  Case((read_only(g(2, 5)), read_only(g(2, 5))), "read-only inputs"),
                  Case((g(3, 4), non_contiguous(g(3, 4))), "strided (sliced) logits")]
    return cases


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def check_log_softmax_backward(fn: Callable[..., Any], thorough: bool = False) -> None:
    """log_softmax_backward(grad_out, x) -> dL/dx for out = log_softmax(x, axis=-1), compared with torch."""
    __tracebackhide__ = True
    run_check("log_softmax_backward", fn, _torch_log_softmax_backward, _log_softmax_cases(thorough),
              rtol=1e-8, atol=1e-12, thorough=thorough, mistakes=[
                  Mistake("the second term is softmax(x) times the SUM of grad_out over the row; you dropped the sum.",
                          lambda go, x: go - _softmax(x)),
                  Mistake("you kept only the diagonal of the Jacobian: every output depends on every logit in its row.",
                          lambda go, x: go * (1 - _softmax(x))),
                  Mistake("softmax runs along the last axis (classes), not axis 0.",
                          lambda go, x: go - _softmax(x, axis=0) * go.sum(axis=0, keepdims=True) if x.ndim > 1 else go),
              ])
