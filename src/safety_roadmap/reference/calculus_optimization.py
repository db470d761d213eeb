"""Reference solutions for chapter 02 (calculus and optimisation), and the gradient-check
utility later chapters reuse.

Numerical derivatives here always work in float64 on a private copy of the input:
the caller's array is never modified, and integer or float32 inputs are handled.

Later chapters can verify any hand-written gradient with::

    from safety_roadmap.reference.calculus_optimization import gradient_check_report
    report = gradient_check_report(loss_of_w, grad_of_w, w)   # loss_of_w: array -> scalar
    print(report)                       # max relative error, worst entry, both values there
    assert report.ok, report            # ok: max relative error below 1e-6 by default

For a PyTorch model, wrap it so that `f` takes and returns NumPy values, e.g.
``f = lambda w: float(loss(torch.from_numpy(w)))``; do it in float64, because central
differences in float32 are good to about 1e-4 at best.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

ScalarFn = Callable[[np.ndarray], float]
VectorFn = Callable[[np.ndarray], np.ndarray]

#: |a| + |n| below this counts as "both zero" in `relative_error` (so 0 vs 0 is agreement, not 0/0).
RELATIVE_ERROR_FLOOR = 1e-8


# --------------------------------------------------------------------------- numerical derivatives

def numerical_gradient(f: ScalarFn, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of a scalar function `f` at `x` (any shape) -> float64, x's shape.

    Each entry is (f(x + h e_i) - f(x - h e_i)) / (2h): error O(h^2), against O(h) for a forward difference.
    """
    x = np.array(x, dtype=np.float64)  # a private float64 copy: never perturb the caller's array
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        f_plus = float(f(x))
        x[idx] = old - h
        f_minus = float(f(x))
        x[idx] = old  # restore exactly (old + h - 2h + h need not round back to old)
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


def numerical_jacobian(f: VectorFn, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference Jacobian of `f`: [n] -> [m] at `x` [n]: J[i, j] = d f_i / d x_j, shape [m, n]."""
    x = np.array(x, dtype=np.float64).reshape(-1)
    columns = []
    for j in range(x.shape[0]):
        step = np.zeros_like(x)
        step[j] = h
        f_plus = np.asarray(f(x + step), dtype=np.float64).reshape(-1)
        f_minus = np.asarray(f(x - step), dtype=np.float64).reshape(-1)
        columns.append((f_plus - f_minus) / (2 * h))  # column j: how every output moves with x_j
    return np.stack(columns, axis=1)


# --------------------------------------------------------------------------- gradient checking

def relative_error(a: np.ndarray, b: np.ndarray, floor: float = RELATIVE_ERROR_FLOOR) -> np.ndarray:
    """Elementwise |a - b| / max(|a| + |b|, floor): 0 when equal, 1 when wholly different (e.g. opposite signs)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), floor)


def gradient_check(f: ScalarFn, grad_f: VectorFn, x: np.ndarray, h: float = 1e-5) -> float:
    """Largest relative error between the analytic gradient `grad_f(x)` and a central difference of `f`."""
    x = np.array(x, dtype=np.float64)
    analytic = np.asarray(grad_f(x.copy()), dtype=np.float64)
    numeric = numerical_gradient(f, x, h)
    return float(relative_error(analytic, numeric).max())


@dataclass
class GradientCheck:
    """The outcome of `gradient_check_report`: print it, or test `.ok`."""
    max_relative_error: float
    worst_index: tuple[int, ...]
    analytic: np.ndarray
    numerical: np.ndarray
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.max_relative_error <= self.tolerance)

    def __str__(self) -> str:
        i = self.worst_index
        verdict = "OK" if self.ok else "MISMATCH"
        return (f"gradient check {verdict}: max relative error {self.max_relative_error:.2e} "
                f"(tolerance {self.tolerance:.0e}) at index {i}: analytic {self.analytic[i]:.6g}, "
                f"numerical {self.numerical[i]:.6g}")


def gradient_check_report(f: ScalarFn, grad_f: VectorFn, x: np.ndarray, h: float = 1e-5,
                          tolerance: float = 1e-6) -> GradientCheck:
    """Compare `grad_f(x)` with a central difference of `f` and say where they disagree most.

    Rough guide in float64 with h = 1e-5: below 1e-7 the gradient is right; 1e-7 to 1e-4 look closer
    (kinks such as ReLU at 0, or a badly scaled f); above 1e-4 something is almost surely wrong.
    """
    x = np.array(x, dtype=np.float64)
    analytic = np.asarray(grad_f(x.copy()), dtype=np.float64)
    numeric = numerical_gradient(f, x, h)
    if analytic.shape != numeric.shape:
        raise ValueError(f"grad_f returned shape {analytic.shape}, but x has shape {x.shape}")
    err = relative_error(analytic, numeric)
    if err.size == 0:
        return GradientCheck(0.0, (), analytic, numeric, tolerance)
    ranked = np.where(np.isnan(err), np.inf, err)  # a nan (e.g. grad_f returned nan) counts as the worst entry
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ranked)), err.shape))
    return GradientCheck(float(err[worst]), worst, analytic, numeric, tolerance)


# --------------------------------------------------------------------------- the chain rule by hand

def neuron_backward(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Loss and gradients of one tanh neuron with mean squared error.

    w [n], b scalar, x [B, n], y [B]:  z = x @ w + b,  a = tanh(z),  loss = mean((a - y)^2)
    -> (loss, dloss/dw [n], dloss/db)
    """
    z = x @ w + b                          # [B]
    a = np.tanh(z)                         # [B]
    loss = float(np.mean((a - y) ** 2))
    dloss_da = 2 * (a - y) / x.shape[0]    # [B]
    dloss_dz = dloss_da * (1 - a ** 2)     # [B]  tanh'(z) = 1 - tanh(z)^2
    return loss, x.T @ dloss_dz, float(dloss_dz.sum())


# --------------------------------------------------------------------------- optimisation

def rosenbrock(p: np.ndarray, a: float = 1.0, b: float = 100.0) -> np.ndarray:
    """Rosenbrock's banana valley at points p [..., 2] -> [...]; minimum 0 at (a, a^2)."""
    x, y = p[..., 0], p[..., 1]
    return (a - x) ** 2 + b * (y - x ** 2) ** 2


def rosenbrock_grad(p: np.ndarray, a: float = 1.0, b: float = 100.0) -> np.ndarray:
    """Gradient of `rosenbrock` at points p [..., 2] -> [..., 2]."""
    x, y = p[..., 0], p[..., 1]
    dx = -2 * (a - x) - 4 * b * x * (y - x ** 2)
    dy = 2 * b * (y - x ** 2)
    return np.stack([dx, dy], axis=-1)


def gradient_descent(grad_fn: VectorFn, x0: np.ndarray, lr: float, num_steps: int) -> np.ndarray:
    """Plain gradient descent x <- x - lr * grad_fn(x); returns the path [num_steps + 1, d], x0 first."""
    x = np.array(x0, dtype=np.float64)
    path = [x.copy()]
    for _ in range(num_steps):
        x = x - lr * grad_fn(x)
        path.append(x.copy())
    return np.stack(path)


def max_stable_learning_rate(H: np.ndarray) -> float:
    """Largest learning rate for which gradient descent on 0.5 x^T H x (H symmetric positive
    definite) does not diverge: 2 / largest eigenvalue of H."""
    return float(2.0 / np.linalg.eigvalsh(H)[-1])


def momentum_descent(grad_fn: VectorFn, x0: np.ndarray, lr: float, beta: float, num_steps: int) -> np.ndarray:
    """Heavy-ball momentum in PyTorch's convention (v_0 = 0):
    v <- beta * v + grad_fn(x);  x <- x - lr * v.  Returns the path [num_steps + 1, d], x0 first."""
    x = np.array(x0, dtype=np.float64)
    v = np.zeros_like(x)
    path = [x.copy()]
    for _ in range(num_steps):
        v = beta * v + grad_fn(x)
        x = x - lr * v
        path.append(x.copy())
    return np.stack(path)
