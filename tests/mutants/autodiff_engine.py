"""Mutants and alternatives for chapter 05_autodiff_engine.

Scalar mutants are `Value` classes with one realistic bug each (the check receives the class).
"""
from __future__ import annotations

import math

import numpy as np

from safety_roadmap.reference import autodiff_engine as ref
from safety_roadmap.reference.autodiff_engine import Value, topological_order

# --------------------------------------------------------------------------- + and *


class AddOverwrites(Value):
    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward():
            self.grad = out.grad   # overwrites: a + a gets 1 instead of 2
            other.grad = out.grad
        out._backward = _backward
        return out

    __radd__ = __add__


class MulOverwrites(Value):
    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad = other.data * out.grad
            other.grad = self.data * out.grad
        out._backward = _backward
        return out

    __rmul__ = __mul__


class MulSwapped(Value):
    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad += self.data * out.grad
            other.grad += other.data * out.grad
        out._backward = _backward
        return out

    __rmul__ = __mul__


class MulNoChain(Value):
    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad += other.data   # forgets out.grad
            other.grad += self.data
        out._backward = _backward
        return out

    __rmul__ = __mul__


class AddForgetsInputs(Value):
    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data)   # no link back to self and other

        def _backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    __radd__ = __add__


class NoReversedOps(Value):
    __radd__ = None   # 2 + v raises TypeError
    __rmul__ = None


# --------------------------------------------------------------------------- backward


class BackwardNoSeed(Value):
    def backward(self):
        for node in reversed(topological_order(self)):
            node._backward()   # self.grad was never set to 1


class BackwardBreadthFirst(Value):
    def backward(self):
        self.grad = 1.0
        queue, seen = [self], {id(self)}
        while queue:
            node = queue.pop(0)
            node._backward()
            for child in node._inputs:
                if id(child) not in seen:
                    seen.add(id(child))
                    queue.append(child)


class BackwardForwardOrder(Value):
    def backward(self):
        self.grad = 1.0
        for node in topological_order(self):   # not reversed
            node._backward()


class BackwardNoVisitedSet(Value):
    def backward(self):
        order = []

        def visit(node):
            for child in node._inputs:
                visit(child)
            order.append(node)
        visit(self)
        self.grad = 1.0
        for node in reversed(order):
            node._backward()


class BackwardLeavesOnly(Value):
    def backward(self):
        self.grad = 1.0
        self._backward()   # only the last operation


# --------------------------------------------------------------------------- **


def _pow_with(local):
    def __pow__(self, k):
        out = Value(self.data ** k, (self,), f"**{k}")

        def _backward():
            self.grad += local(self.data, k) * out.grad
        out._backward = _backward
        return out
    return __pow__


class PowNoMinusOne(Value):
    __pow__ = _pow_with(lambda x, k: k * x ** k)


class PowNoK(Value):
    __pow__ = _pow_with(lambda x, k: x ** (k - 1))


class PowNoChain(Value):
    def __pow__(self, k):
        out = Value(self.data ** k, (self,), f"**{k}")

        def _backward():
            self.grad += k * self.data ** (k - 1)
        out._backward = _backward
        return out


class PowOverwrites(Value):
    def __pow__(self, k):
        out = Value(self.data ** k, (self,), f"**{k}")

        def _backward():
            self.grad = k * self.data ** (k - 1) * out.grad
        out._backward = _backward
        return out


class PowIntOnly(Value):
    def __pow__(self, k):
        k = int(k)   # silently truncates 0.5 to 0
        return Value.__pow__(self, k)


# --------------------------------------------------------------------------- exp, log, relu, tanh


def _unary(fn, local, op):
    def method(self):
        out = Value(fn(self.data), (self,), op)

        def _backward():
            self.grad += local(self.data, out.data) * out.grad
        out._backward = _backward
        return out
    return method


class TanhUsesInput(Value):
    tanh = _unary(math.tanh, lambda x, t: 1 - x ** 2, "tanh")


class ExpUsesInput(Value):
    exp = _unary(math.exp, lambda x, e: x, "exp")


class LogUsesOutput(Value):
    log = _unary(math.log, lambda x, y: 1 / y if y else 0.0, "log")


class ReluUsesOutput(Value):
    relu = _unary(lambda x: max(x, 0.0), lambda x, y: y, "relu")


class ReluWrongSide(Value):
    relu = _unary(lambda x: max(x, 0.0), lambda x, y: float(x < 0), "relu")


class TanhOverwrites(Value):
    def tanh(self):
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward():
            self.grad = (1 - t * t) * out.grad
        out._backward = _backward
        return out


# --------------------------------------------------------------------------- tensor level


def ub_leading_only(grad, shape):
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    return grad


def ub_no_keepdims(grad, shape):
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1)
    return grad.sum(axis=axes)


def ub_mean(grad, shape):
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.mean(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1)
    return grad.mean(axis=stretched, keepdims=True) if stretched else grad


def mm_grad_b_not_summed(grad_out, a, b):
    return grad_out @ b.T, np.swapaxes(a, -1, -2) @ grad_out


def mm_no_transpose_a(grad_out, a, b):
    return grad_out @ b, ref.matmul_backward(grad_out, a, b)[1]


def mm_dot_T(grad_out, a, b):
    return grad_out @ b.T, a.T @ grad_out   # only right for 2-D a


def mm_grad_b_transposed(grad_out, a, b):
    g2, a2 = grad_out.reshape(-1, grad_out.shape[-1]), a.reshape(-1, a.shape[-1])
    return grad_out @ b.T, (g2.T @ a2).T.T if g2.shape[1] == a2.shape[1] else g2.T @ a2


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def ls_dropped_sum(grad_out, x):
    return grad_out - _softmax(x)


def ls_diagonal_only(grad_out, x):
    return grad_out * (1 - _softmax(x))


def ls_wrong_axis(grad_out, x):
    return grad_out - _softmax(x, axis=0) * grad_out.sum(axis=0, keepdims=True)


def ls_unstable(grad_out, x):
    with np.errstate(all="ignore"):
        e = np.exp(x)   # overflows for large logits
        return grad_out - e / e.sum(axis=-1, keepdims=True) * grad_out.sum(axis=-1, keepdims=True)


MUTANTS = {
    "value_add_mul": [AddOverwrites, MulOverwrites, MulSwapped, MulNoChain, AddForgetsInputs, NoReversedOps],
    "value_backward": [BackwardNoSeed, BackwardBreadthFirst, BackwardForwardOrder, BackwardNoVisitedSet,
                       BackwardLeavesOnly],
    "value_pow": [PowNoMinusOne, PowNoK, PowNoChain, PowOverwrites, PowIntOnly],
    "value_unary_ops": [TanhUsesInput, ExpUsesInput, LogUsesOutput, ReluUsesOutput, ReluWrongSide, TanhOverwrites],
    "unbroadcast": [ub_leading_only, ub_no_keepdims, ub_mean],
    "matmul_backward": [mm_grad_b_not_summed, mm_no_transpose_a, mm_dot_T],
    "log_softmax_backward": [ls_dropped_sum, ls_diagonal_only, ls_wrong_axis, ls_unstable],
}

# --------------------------------------------------------------------------- correct alternatives


class Scalar:
    """A differently written engine: inputs kept in a set, local derivatives stored as numbers,
    and backward by Kahn's algorithm (counting how many users each node still waits for)."""

    def __init__(self, data, _inputs=(), _op=""):
        self.data = float(data)
        self.grad = 0.0
        self._inputs = set(_inputs)
        self._op = _op
        self._local = {}   # input -> d self / d input (summed when the same input appears twice)
        self._backward = self._push

    def _push(self):
        for node, d in self._local.items():
            node.grad += d * self.grad

    @classmethod
    def _make(cls, data, pairs, op):
        out = cls(data, [p for p, _ in pairs], op)
        for node, d in pairs:
            out._local[node] = out._local.get(node, 0.0) + d
        return out

    @staticmethod
    def _lift(x):
        return x if isinstance(x, Scalar) else Scalar(x)

    def __add__(self, other):
        other = self._lift(other)
        return self._make(self.data + other.data, [(self, 1.0), (other, 1.0)], "+")

    def __radd__(self, other):
        return self._lift(other) + self

    def __mul__(self, other):
        other = self._lift(other)
        return self._make(self.data * other.data, [(self, other.data), (other, self.data)], "*")

    def __rmul__(self, other):
        return self._lift(other) * self

    def __pow__(self, k):
        return self._make(self.data ** k, [(self, k * self.data ** (k - 1))], "pow")

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + -self._lift(other)

    def __truediv__(self, other):
        return self * self._lift(other) ** -1

    def exp(self):
        e = math.exp(self.data)
        return self._make(e, [(self, e)], "exp")

    def log(self):
        return self._make(math.log(self.data), [(self, 1.0 / self.data)], "log")

    def relu(self):
        return self._make(self.data * (self.data > 0), [(self, 1.0 if self.data > 0 else 0.0)], "relu")

    def tanh(self):
        t = (math.exp(2 * self.data) - 1) / (math.exp(2 * self.data) + 1) if abs(self.data) < 20 else math.copysign(1, self.data)
        return self._make(t, [(self, 1 - t * t)], "tanh")

    def backward(self):
        waiting, stack, seen = {}, [self], {id(self)}
        nodes = []
        while stack:
            node = stack.pop()
            nodes.append(node)
            for child in node._inputs:
                waiting[id(child)] = waiting.get(id(child), 0) + 1
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append(child)
        self.grad = 1.0
        ready = [self]
        while ready:
            node = ready.pop()
            node._backward()
            for child in node._inputs:
                waiting[id(child)] -= 1
                if waiting[id(child)] == 0:
                    ready.append(child)


def ub_loops(grad, shape):
    grad = np.array(grad, dtype=float)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def mm_einsum(grad_out, a, b):
    k, m = b.shape
    return np.einsum("...nm,km->...nk", grad_out, b), np.einsum("ik,im->km", a.reshape(-1, k), grad_out.reshape(-1, m))


def ls_jacobian(grad_out, x):
    s = _softmax(x)
    eye = np.eye(x.shape[-1])
    jac = eye - s[..., None, :]   # d log_softmax_i / d x_j = delta_ij - s_j
    return np.einsum("...i,...ij->...j", grad_out, jac)


ALTERNATIVES = {
    "value_add_mul": [Scalar, Value],
    "value_backward": [Scalar, Value],
    "value_pow": [Scalar, Value],
    "value_unary_ops": [Scalar, Value],
    "unbroadcast": [ub_loops, ref.unbroadcast],
    "matmul_backward": [mm_einsum, ref.matmul_backward],
    "log_softmax_backward": [ls_jacobian, ref.log_softmax_backward],
}


# --------------------------------------------------------------------------- contract-class mutants (issue 12)


class ReluGradAtZero(Value):
    # passes the gradient at exactly x = 0; the prompt's table says 1 only if x > 0
    relu = _unary(lambda x: max(x, 0.0), lambda x, y: float(x >= 0), "relu")


MUTANTS["value_unary_ops"].append(ReluGradAtZero)


def ls_global_max(grad_out, x):
    # shifts by the max of the whole array: a row far below it underflows to 0 / 0
    e = np.exp(x - x.max())
    with np.errstate(invalid="ignore"):
        s = e / e.sum(axis=-1, keepdims=True)
    return grad_out - s * grad_out.sum(axis=-1, keepdims=True)


MUTANTS["log_softmax_backward"].append(ls_global_max)


class BackwardZeroesFirst(Value):
    def backward(self):
        order = topological_order(self)
        for node in order:  # "clean slate": wipes gradients the caller had accumulated
            node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            node._backward()


MUTANTS["value_backward"].append(BackwardZeroesFirst)
