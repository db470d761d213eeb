"""Reference solutions for chapter 05 (an autodiff engine, scalar then tensor).

The public interface of `Value` (tests written against it must run unchanged):

- ``Value(x)`` wraps a Python number; ``.data`` is the number (a float), ``.grad`` starts at 0.0;
- ``+ - * /`` between Values and numbers, in either order (``2 + v``, ``2 * v``, ``1 - v``, ``1 / v``),
  ``-v``, and ``v ** k`` for an int or float exponent ``k``;
- ``v.relu()``, ``v.tanh()``, ``v.exp()``, ``v.log()``;
- ``v.backward()`` sets ``v.grad = 1`` and runs every node's local backward rule in reverse
  topological order; gradients ACCUMULATE (``+=``) so a node used twice gets both contributions.
  Like PyTorch, it does not zero old gradients first: reset ``.grad`` between training steps.

Internals the chapter's checks also rely on (the notebook's skeleton defines them the same way):
``_inputs`` (the nodes this one was computed from), ``_backward`` (a closure that pushes this node's
``.grad`` into its children's), ``_op`` (a label for printing).
"""
from __future__ import annotations

import math
import random
from typing import Callable, Iterable

import numpy as np


class Value:
    """A scalar that remembers how it was computed, so that gradients can flow back through it."""

    def __init__(self, data: float, _inputs: Iterable["Value"] = (), _op: str = ""):
        self.data = float(data)
        self.grad = 0.0
        self._inputs = tuple(_inputs)
        self._backward: Callable[[], None] = lambda: None
        self._op = _op

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    # ----------------------------------------------------------------- binary operations
    def __add__(self, other: "Value | float") -> "Value":
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward() -> None:
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other: "Value | float") -> "Value":
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def __pow__(self, k: float) -> "Value":
        if not isinstance(k, (int, float)):
            raise TypeError("Value ** k supports int or float exponents only")
        out = Value(self.data ** k, (self,), f"**{k}")

        def _backward() -> None:
            self.grad += k * self.data ** (k - 1) * out.grad
        out._backward = _backward
        return out

    def __neg__(self) -> "Value":
        return self * -1.0

    def __sub__(self, other: "Value | float") -> "Value":
        return self + (-other)

    def __truediv__(self, other: "Value | float") -> "Value":
        other = other if isinstance(other, Value) else Value(other)
        return self * other ** -1

    def __radd__(self, other: float) -> "Value":
        return self + other

    def __rmul__(self, other: float) -> "Value":
        return self * other

    def __rsub__(self, other: float) -> "Value":
        return (-self) + other

    def __rtruediv__(self, other: float) -> "Value":
        return Value(other) / self

    # ----------------------------------------------------------------- unary functions
    def relu(self) -> "Value":
        out = Value(self.data if self.data > 0 else 0.0, (self,), "relu")

        def _backward() -> None:
            self.grad += (self.data > 0) * out.grad
        out._backward = _backward
        return out

    def tanh(self) -> "Value":
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward() -> None:
            self.grad += (1.0 - t * t) * out.grad
        out._backward = _backward
        return out

    def exp(self) -> "Value":
        e = math.exp(self.data)
        out = Value(e, (self,), "exp")

        def _backward() -> None:
            self.grad += e * out.grad
        out._backward = _backward
        return out

    def log(self) -> "Value":
        out = Value(math.log(self.data), (self,), "log")

        def _backward() -> None:
            self.grad += out.grad / self.data
        out._backward = _backward
        return out

    # ----------------------------------------------------------------- reverse mode
    def backward(self) -> None:
        """Fill in .grad of every node this one depends on (d self / d node)."""
        for node in reversed(topological_order(self)):
            if node is self:
                node.grad = 1.0
            node._backward()


def topological_order(root) -> list:
    """Every node reachable from `root` through `_inputs`, each after all of its inputs.

    Iterative (no recursion limit on long chains); works for any objects with `_inputs`.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for child in node._inputs:
            if id(child) not in visited:
                stack.append((child, False))
    return order


# --------------------------------------------------------------------------- a network of Values

class Neuron:
    """w . x + b, then tanh (or nothing, for an output neuron)."""

    def __init__(self, n_in: int, nonlinear: bool = True, rng: random.Random | None = None):
        rng = rng or random.Random(0)
        self.w = [Value(rng.uniform(-1, 1) / math.sqrt(n_in)) for _ in range(n_in)]
        self.b = Value(0.0)
        self.nonlinear = nonlinear

    def __call__(self, x: list) -> Value:
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.tanh() if self.nonlinear else act

    def parameters(self) -> list[Value]:
        return self.w + [self.b]


class Layer:
    def __init__(self, n_in: int, n_out: int, nonlinear: bool = True, rng: random.Random | None = None):
        self.neurons = [Neuron(n_in, nonlinear, rng) for _ in range(n_out)]

    def __call__(self, x: list) -> list[Value]:
        return [n(x) for n in self.neurons]

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]


class ScalarMLP:
    """Layers of tanh neurons and a linear output layer, all made of `Value`s."""

    def __init__(self, sizes: list[int], seed: int = 0):
        rng = random.Random(seed)
        self.layers = [Layer(a, b, nonlinear=i < len(sizes) - 2, rng=rng)
                       for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]

    def __call__(self, x: list) -> list[Value]:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]


# --------------------------------------------------------------------------- tensor level: backward rules

def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` (the gradient of a broadcast result) back down to an input's `shape`."""
    shape = tuple(shape)
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def matmul_backward(grad_out: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """out = a @ b with a [..., n, k] and b [k, m]: return (dL/da [..., n, k], dL/db [k, m])."""
    grad_a = grad_out @ b.T
    grad_b = a.reshape(-1, a.shape[-1]).T @ grad_out.reshape(-1, grad_out.shape[-1])
    return grad_a, grad_b


def log_softmax(x: np.ndarray) -> np.ndarray:
    """log(softmax(x)) along the last axis, stable for any finite x."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_softmax_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """out = log_softmax(x) along the last axis: return dL/dx given dL/d(out), same shape."""
    return grad_out - np.exp(log_softmax(x)) * grad_out.sum(axis=-1, keepdims=True)


class Tensor:
    """A minimal array autodiff: the same graph idea as `Value`, one node per array operation."""

    def __init__(self, data, _inputs: Iterable["Tensor"] = (), _op: str = ""):
        self.data = np.asarray(data, dtype=np.float64)
        self.grad = np.zeros_like(self.data)
        self._inputs = tuple(_inputs)
        self._backward: Callable[[], None] = lambda: None
        self._op = _op

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Tensor(shape={self.shape}, op={self._op!r})"

    @staticmethod
    def _wrap(x) -> "Tensor":
        return x if isinstance(x, Tensor) else Tensor(x)

    def __add__(self, other) -> "Tensor":
        other = self._wrap(other)
        out = Tensor(self.data + other.data, (self, other), "+")

        def _backward() -> None:
            self.grad += unbroadcast(out.grad, self.shape)
            other.grad += unbroadcast(out.grad, other.shape)
        out._backward = _backward
        return out

    def __mul__(self, other) -> "Tensor":
        other = self._wrap(other)
        out = Tensor(self.data * other.data, (self, other), "*")

        def _backward() -> None:
            self.grad += unbroadcast(out.grad * other.data, self.shape)
            other.grad += unbroadcast(out.grad * self.data, other.shape)
        out._backward = _backward
        return out

    __radd__ = __add__
    __rmul__ = __mul__

    def __matmul__(self, other: "Tensor") -> "Tensor":
        out = Tensor(self.data @ other.data, (self, other), "@")

        def _backward() -> None:
            grad_a, grad_b = matmul_backward(out.grad, self.data, other.data)
            self.grad += grad_a
            other.grad += grad_b
        out._backward = _backward
        return out

    def sum(self) -> "Tensor":
        out = Tensor(self.data.sum(), (self,), "sum")

        def _backward() -> None:
            self.grad += np.broadcast_to(out.grad, self.shape)
        out._backward = _backward
        return out

    def relu(self) -> "Tensor":
        out = Tensor(np.maximum(self.data, 0.0), (self,), "relu")

        def _backward() -> None:
            self.grad += out.grad * (self.data > 0)
        out._backward = _backward
        return out

    def log_softmax(self) -> "Tensor":
        out = Tensor(log_softmax(self.data), (self,), "log_softmax")

        def _backward() -> None:
            self.grad += log_softmax_backward(out.grad, self.data)
        out._backward = _backward
        return out

    def backward(self) -> None:
        for node in reversed(topological_order(self)):
            if node is self:
                node.grad = np.ones_like(self.data)
            node._backward()
