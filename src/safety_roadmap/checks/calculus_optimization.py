"""Checks for chapter 02_calculus_optimization. Each `check_<exercise>(fn, thorough=False)`."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..reference import calculus_optimization as ref
from ._core import Case, Mistake, compare, non_contiguous, read_only, rng_for, run_check

__all__ = ["check_numerical_gradient", "check_numerical_jacobian", "check_neuron_backward", "check_gradient_check",
           "check_gradient_descent", "check_max_stable_learning_rate", "check_rosenbrock_grad",
           "check_momentum_descent"]


class _Formula:
    """A function the checks hand to the learner's code, printed as its formula in failure messages."""

    def __init__(self, fn: Callable[..., Any], text: str) -> None:
        self.fn, self.text = fn, text

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __repr__(self) -> str:
        return self.text


_Formula.__name__ = "function"  # describe() prints "function f(x) = ..."


def _vec(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    return rng.normal(size=shape) * scale


# --------------------------------------------------------------------------- test functions

def _cubes() -> _Formula:
    return _Formula(lambda x: np.sum(x ** 3), "f(x) = sum(x**3)")


def _sin_sq() -> _Formula:
    return _Formula(lambda x: np.sum(np.sin(x) * x ** 2), "f(x) = sum(sin(x) * x**2)")


def _logsumexp() -> _Formula:
    return _Formula(lambda x: np.log(np.sum(np.exp(x - x.max()))) + x.max(), "f(x) = log(sum(exp(x)))")


def _tanh_layer(v: np.ndarray) -> _Formula:
    return _Formula(lambda W: np.sum(np.tanh(W @ v)), f"f(W) = sum(tanh(W @ v)), v of length {v.shape[0]}")


def _ignores_last() -> _Formula:
    return _Formula(lambda x: x[0] ** 2 + 3.0 * x[1], "f(x) = x[0]**2 + 3*x[1] (x[2] plays no part)")


def _scaled_cos(scale: float) -> _Formula:
    return _Formula(lambda x: scale * np.sum(np.cos(x)), f"f(x) = {scale:g} * sum(cos(x))")


def _exp_sum() -> _Formula:
    return _Formula(lambda x: np.sum(np.exp(x)), "f(x) = sum(exp(x))")


# --------------------------------------------------------------------------- numerical gradient

def _grad_forward(f: Callable, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    x = np.array(x, dtype=np.float64)
    fx, g = float(f(x)), np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp = x.copy()
        xp[idx] += h
        g[idx] = (float(f(xp)) - fx) / h
    return g


def _grad_in_own_dtype(f: Callable, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    x = np.array(x)  # keeps int / float32
    g = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (float(f(xp)) - float(f(xm))) / (2 * h)
    return g


def _numgrad_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 21)
    cases = [Case((_cubes(), np.array([1.0, 2.0, -1.0])), "f(x) = sum(x**3) at (1, 2, -1)"),
             Case((_sin_sq(), _vec(rng, (5,))), "a random point in 5-D"),
             Case((_tanh_layer(np.array([1.0, -2.0])), np.array([[0.5, 1.0], [-1.0, 0.2], [0.3, 0.0]])),
                  "x is a 3x2 matrix"),
             Case((_cubes(), np.array([2, -1])), "x holds integers (np.array([2, -1]))")]
    if thorough:
        v = _vec(rng, (4,))
        cases += [Case((_tanh_layer(v), _vec(rng, (3, 4))), "x is a 3x4 matrix"),
                  Case((_logsumexp(), _vec(rng, (6,), 3.0)), "log-sum-exp in 6-D"),
                  Case((_cubes(), np.array([1, 2, 3])), "x holds integers (np.array([1, 2, 3]))"),
                  Case((_exp_sum(), _vec(rng, (4,)).astype(np.float32)), "x is float32"),
                  Case((_ignores_last(), _vec(rng, (3,))), "f does not depend on x[2]"),
                  Case((_sin_sq(), read_only(_vec(rng, (4,)))), "a read-only x"),
                  Case((_sin_sq(), non_contiguous(_vec(rng, (2, 3)))), "a strided (sliced) x"),
                  Case((_scaled_cos(1e6), _vec(rng, (5,))), "a function with large values"),
                  Case((_sin_sq(), _vec(rng, (3,))), "a large step h = 0.01", {"h": 1e-2}),
                  Case((_exp_sum(), _vec(rng, (2, 2))), "a step h = 0.1 (coarse: its own error shows)", {"h": 0.1})]
    return cases


def check_numerical_gradient(fn: Callable[..., Any], thorough: bool = False) -> None:
    """numerical_gradient(f, x, h=1e-5): central differences, float64, same shape as x."""
    __tracebackhide__ = True
    run_check("numerical_gradient", fn, ref.numerical_gradient, _numgrad_cases(thorough), rtol=1e-6, atol=1e-8,
              thorough=thorough, mistakes=[
                  Mistake("you used a forward difference (f(x+h) - f(x)) / h; its error shrinks only like h. "
                          "Use the central difference (f(x+h) - f(x-h)) / (2h).", _grad_forward),
                  Mistake("you divided by h instead of 2h: the two evaluation points are 2h apart.",
                          lambda f, x, h=1e-5: 2 * ref.numerical_gradient(f, x, h)),
                  Mistake("you perturbed x in its own dtype: integers cannot hold x + h and float32 loses most "
                          "digits of a 1e-5 step. Start from np.array(x, dtype=np.float64).", _grad_in_own_dtype),
                  Mistake("you ignored the `h` argument; use the step you are given.",
                          lambda f, x, h=1e-5: ref.numerical_gradient(f, x)),
              ])


# --------------------------------------------------------------------------- numerical Jacobian

def _jac_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 22)
    A = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
    mixed = _Formula(lambda x: np.array([x[0] * x[1], np.sin(x[2]), x[0] + x[2] ** 2]),
                     "f(x) = (x0*x1, sin(x2), x0 + x2**2)")
    cases = [Case((_Formula(lambda x: A @ x, "f(x) = A @ x, A = [[1, 2, 0], [0, -1, 3]]"), np.array([1.0, 1.0, 1.0])),
                  "a linear map from 3-D to 2-D"),
             Case((mixed, _vec(rng, (3,))), "a non-linear map from 3-D to 3-D"),
             Case((mixed, np.array([2, 0, -1])), "x holds integers (np.array([2, 0, -1]))")]
    if thorough:
        B = _vec(rng, (4, 4))
        cases += [Case((_Formula(lambda x: B @ np.tanh(x), "f(x) = B @ tanh(x), B a random 4x4"), _vec(rng, (4,))),
                       "a 4x4 Jacobian that is not symmetric"),
                  Case((_Formula(lambda x: np.array([np.sum(x ** 2)]), "f(x) = [sum(x**2)]"), _vec(rng, (4,))),
                       "one output, four inputs"),
                  Case((_Formula(lambda x: np.array([x[0], x[0] ** 2, np.exp(x[0])]), "f(x) = (x0, x0**2, exp(x0))"),
                        _vec(rng, (1,))), "three outputs, one input"),
                  Case((_Formula(np.tanh, "f(x) = tanh(x) elementwise"), _vec(rng, (5,))), "elementwise tanh"),
                  Case((mixed, np.array([1, -2, 3])), "x holds integers"),
                  Case((mixed, read_only(_vec(rng, (3,)))), "a read-only x"),
                  Case((mixed, _vec(rng, (3,)).astype(np.float32)), "x is float32"),
                  Case((mixed, _vec(rng, (3,))), "a large step h = 0.01", {"h": 1e-2}),
                  Case((_Formula(lambda x: np.array([np.exp(x[0]) * x[1], x[1] ** 3]), "f(x) = (exp(x0)*x1, x1**3)"),
                        _vec(rng, (2,))), "a step h = 0.1 (coarse: its own error shows)", {"h": 0.1})]
    return cases


def _jac_forward(f: Callable, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    x = np.array(x, dtype=np.float64)
    fx = np.asarray(f(x), dtype=np.float64)
    return np.stack([(np.asarray(f(x + h * e), dtype=np.float64) - fx) / h for e in np.eye(x.shape[0])], axis=1)


def check_numerical_jacobian(fn: Callable[..., Any], thorough: bool = False) -> None:
    """numerical_jacobian(f, x, h=1e-5): f maps [n] -> [m]; returns J [m, n] with J[i, j] = d f_i / d x_j."""
    __tracebackhide__ = True
    run_check("numerical_jacobian", fn, ref.numerical_jacobian, _jac_cases(thorough), rtol=1e-6, atol=1e-8,
              thorough=thorough, mistakes=[
                  Mistake("your Jacobian is transposed: row i belongs to output f_i, column j to input x_j "
                          "(shape [m, n]). Stack the per-input columns with axis=1.",
                          lambda f, x, h=1e-5: ref.numerical_jacobian(f, x, h).T),
                  Mistake("you used a forward difference; use the central difference (f(x+h) - f(x-h)) / (2h).",
                          _jac_forward),
                  Mistake("you divided by h instead of 2h.", lambda f, x, h=1e-5: 2 * ref.numerical_jacobian(f, x, h)),
              ])


# --------------------------------------------------------------------------- chain rule by hand

def _neuron_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 23)
    cases = [Case((np.array([0.5, -0.3]), 0.1, np.array([[1.0, 2.0], [0.5, -1.0], [-1.0, 0.0], [2.0, 1.0]]),
                   np.array([0.5, -0.5, 0.0, 1.0])), "4 examples, 2 inputs"),
             Case((_vec(rng, (3,)), 0.2, _vec(rng, (8, 3)), rng.uniform(-1, 1, size=8)), "8 examples, 3 inputs")]
    if thorough:
        cases += [Case((_vec(rng, (1,)), -0.4, _vec(rng, (1, 1)), np.array([0.3])), "one example, one input"),
                  Case((_vec(rng, (5,)), 0.0, _vec(rng, (5, 5)), rng.uniform(-1, 1, size=5)),
                       "as many examples as inputs (5 and 5)"),
                  Case((_vec(rng, (4,), 8.0), 1.0, _vec(rng, (6, 4)), rng.uniform(-1, 1, size=6)),
                       "large weights: tanh is saturated"),
                  Case((_vec(rng, (10,)), 0.3, _vec(rng, (64, 10)), rng.integers(0, 2, size=64)),
                       "64 examples, 10 inputs, integer targets"),
                  Case((read_only(_vec(rng, (3,))), -0.1, read_only(_vec(rng, (7, 3))),
                        read_only(rng.uniform(-1, 1, size=7))), "read-only inputs"),
                  Case((_vec(rng, (3,)), 0.5, non_contiguous(_vec(rng, (6, 3))), rng.uniform(-1, 1, size=6)),
                       "a strided (sliced) x"),
                  Case((_vec(rng, (4,)).astype(np.float32), np.float32(0.2), _vec(rng, (5, 4)).astype(np.float32),
                        rng.uniform(-1, 1, size=5).astype(np.float32)), "float32 inputs")]
    return cases


def _neuron_variant(kind: str) -> Callable[..., Any]:
    def fn(w, b, x, y):
        z = x @ w + b
        a = np.tanh(z)
        loss = float(np.mean((a - y) ** 2))
        n = x.shape[0]
        da = {"sum": 2 * (a - y), "no_two": (a - y) / n, "sign": 2 * (y - a) / n}.get(kind, 2 * (a - y) / n)
        dz = {"no_tanh": da, "tanh_of_z": da * (1 - z ** 2)}.get(kind, da * (1 - a ** 2))
        dw = dz.sum() * w if kind == "wrong_variable" else x.T @ dz
        return loss, dw, float(dz.sum())
    return fn


def check_neuron_backward(fn: Callable[..., Any], thorough: bool = False) -> None:
    """neuron_backward(w, b, x, y) -> (loss, grad_w [n], grad_b) for loss = mean((tanh(x @ w + b) - y)^2)."""
    __tracebackhide__ = True
    run_check("neuron_backward", fn, ref.neuron_backward, _neuron_cases(thorough), rtol=1e-5, atol=1e-7,
              thorough=thorough, mistakes=[
                  Mistake("grad_w uses w where it needs x: the derivative of x @ w with respect to w is x "
                          "(you took the gradient with respect to the wrong variable).", _neuron_variant("wrong_variable")),
                  Mistake("you skipped tanh's derivative: multiply by 1 - tanh(z)**2 on the way back.",
                          _neuron_variant("no_tanh")),
                  Mistake("tanh'(z) is 1 - tanh(z)**2 = 1 - a**2, not 1 - z**2.", _neuron_variant("tanh_of_z")),
                  Mistake("the loss is a *mean* over the batch, so every gradient carries a 1/B factor.",
                          _neuron_variant("sum")),
                  Mistake("d/da of (a - y)**2 is 2 * (a - y): the factor 2 is missing.", _neuron_variant("no_two")),
                  Mistake("your gradients have the wrong sign: d/da of (a - y)**2 is +2 * (a - y).",
                          _neuron_variant("sign")),
              ])


# --------------------------------------------------------------------------- gradient check

def _check_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 24)
    cases = [Case((_cubes(), _Formula(lambda x: 3 * x ** 2, "grad_f(x) = 3 * x**2 (correct)"), np.array([1.0, 2.0, -1.0])),
                  "a correct gradient"),
             Case((_sin_sq(), _Formula(lambda x: np.cos(x) * x ** 2, "grad_f(x) = cos(x) * x**2 (product rule forgotten)"),
                   _vec(rng, (4,))), "a wrong gradient")]
    if thorough:
        v = _vec(rng, (4,))
        bad_entry = np.ones(10)
        bad_entry[3] = -1.0
        cases += [Case((_scaled_cos(1e8), _Formula(lambda x: -1e8 * np.sin(x), "grad_f(x) = -1e8 * sin(x) (correct)"),
                        _vec(rng, (5,))), "a correct gradient of a function with huge values (1e8)"),
                  Case((_Formula(lambda x: 1e-6 * np.sum(x ** 2), "f(x) = 1e-6 * sum(x**2)"),
                        _Formula(lambda x: 1e-6 * x, "grad_f(x) = 1e-6 * x (factor 2 missing)"), _vec(rng, (4,))),
                       "a wrong gradient of a function with tiny values (1e-6)"),
                  Case((_ignores_last(), _Formula(lambda x: np.array([2 * x[0], 3.0, 0.0]), "grad_f(x) = (2*x0, 3, 0) (correct)"),
                        _vec(rng, (3,))), "a correct gradient with an entry that is exactly zero"),
                  Case((_Formula(lambda x: np.sum(x ** 2), "f(x) = sum(x**2)"),
                        _Formula(lambda x: 2 * x * bad_entry, "grad_f(x) = 2x with the sign of entry 3 flipped"),
                        rng.uniform(0.5, 2.0, size=10)), "a gradient wrong in one entry out of 10"),
                  Case((_tanh_layer(v), _Formula(lambda W: np.outer(1 - np.tanh(W @ v) ** 2, v), "grad_f(W) (correct)"),
                        _vec(rng, (3, 4))), "a correct gradient with respect to a 3x4 matrix"),
                  Case((_cubes(), _Formula(lambda x: 3 * x ** 2, "grad_f(x) = 3 * x**2 (correct)"), np.array([1, -2, 3])),
                       "x holds integers"),
                  Case((_sin_sq(), _Formula(lambda x: np.cos(x) * x ** 2 + 2 * x * np.sin(x), "grad_f (correct)"),
                        read_only(_vec(rng, (4,)))), "a read-only x"),
                  Case((_cubes(), _Formula(lambda x: 3 * x ** 2, "grad_f(x) = 3 * x**2 (correct)"), np.array([0.5, 1.0, -2.0])),
                       "a correct gradient checked with a coarse step h = 0.1 (the report shows the step's own error)",
                       {"h": 0.1}),
                  Case((_exp_sum(), _Formula(lambda x: np.exp(x) * 1.01, "grad_f(x) = 1.01 * exp(x) (1% too large)"),
                        _vec(rng, (3,))), "a gradient 1% off, checked with h = 0.003", {"h": 3e-3})]
    return cases


def _compare_report(got: Any, expected: Any, case: Case) -> str | None:
    """A correct gradient's error is rounding noise (any value below 1e-6 is right); a wrong one must match."""
    if isinstance(got, (np.ndarray, list, tuple)) and np.size(got) != 1:
        return f"expected a single float (the largest relative error), got an array of shape {np.shape(got)}"
    try:
        value = float(np.asarray(got).reshape(-1)[0]) if isinstance(got, np.ndarray) else float(got)
    except (TypeError, ValueError):
        return f"expected a single float, got {type(got).__name__}"
    exp = float(expected)
    if math.isnan(value):
        return ("got nan: 0 / 0 where both gradients are exactly zero. "
                "Divide by max(|a| + |n|, 1e-8), not by |a| + |n| alone.")
    if math.isnan(exp):  # comparing with a mistake that produced nan
        return "different: nan was expected"
    if exp < 1e-6:
        if 0 <= value < 1e-6:
            return None
        return (f"this gradient is correct (its relative error is {exp:.1e}, rounding noise), "
                f"but your check reports {value:.3g}")
    return compare(value, exp, rtol=1e-4, atol=1e-12, what="largest relative error")


def _check_variant(kind: str) -> Callable[..., Any]:
    def fn(f, grad_f, x, h=1e-5):
        x = np.array(x, dtype=np.float64)
        a = np.asarray(grad_f(x.copy()), dtype=np.float64)
        n = ref.numerical_gradient(f, x, h)
        with np.errstate(divide="ignore", invalid="ignore"):
            if kind == "absolute":
                return float(np.abs(a - n).max())
            if kind == "no_floor":
                return float((np.abs(a - n) / (np.abs(a) + np.abs(n))).max())
            if kind == "numerical_only":
                return float((np.abs(a - n) / np.maximum(np.abs(n), 1e-8)).max())
            return float(ref.relative_error(a, n).mean())
    return fn


def check_gradient_check(fn: Callable[..., Any], thorough: bool = False) -> None:
    """gradient_check(f, grad_f, x, h=1e-5) -> max over entries of |a - n| / max(|a| + |n|, 1e-8)."""
    __tracebackhide__ = True
    run_check("gradient_check", fn, ref.gradient_check, _check_cases(thorough), compare_fn=_compare_report,
              thorough=thorough, mistakes=[
                  Mistake("you reported the absolute error |a - n|; it depends on the gradient's scale. "
                          "Divide by max(|a| + |n|, 1e-8).", _check_variant("absolute")),
                  Mistake("you averaged the errors; report the largest one (a single wrong entry must show).",
                          _check_variant("mean")),
                  Mistake("you divided by |numerical| only; the spec divides by max(|a| + |n|, 1e-8).",
                          _check_variant("numerical_only")),
                  Mistake("you ignored the `h` argument: pass it on to the numerical gradient.",
                          lambda f, grad_f, x, h=1e-5: ref.gradient_check(f, grad_f, x)),
              ])


# --------------------------------------------------------------------------- gradient descent

def _bowl_grad(H: np.ndarray, label: str) -> _Formula:
    return _Formula(lambda x: H @ x, f"grad_fn(x) = H @ x, H = {label}")


def _rosen_grad() -> _Formula:
    return _Formula(ref.rosenbrock_grad, "grad_fn = the Rosenbrock gradient")


def _spd(rng: np.random.Generator, eigenvalues: list[float]) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return (q * np.asarray(eigenvalues)) @ q.T


def _gd_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 25)
    diag = np.diag([1.0, 10.0])
    cases = [Case((_bowl_grad(diag, "diag(1, 10)"), np.array([2.0, 1.0]), 0.05, 5), "a 2-D bowl, lr 0.05, 5 steps"),
             Case((_Formula(lambda x: 2 * x, "grad_fn(x) = 2x"), np.array([3.0]), 0.1, 4), "f(x) = x**2 in 1-D, 4 steps"),
             Case((_bowl_grad(diag, "diag(1, 10)"), np.array([1, -1]), 0.05, 3), "x0 holds integers (np.array([1, -1]))")]
    if thorough:
        H = _spd(rng, [4.0, 1.0, 0.5, 0.1, 2.0])
        cases += [Case((_rosen_grad(), np.array([-1.5, 2.0]), 1e-3, 50), "Rosenbrock, lr 1e-3, 50 steps"),
                  Case((_bowl_grad(diag, "diag(1, 10)"), np.array([1.0, 1.0]), 0.21, 30),
                       "lr 0.21 > 2/10: the path diverges"),
                  Case((_bowl_grad(diag, "diag(1, 10)"), np.array([2.0, 1.0]), 0.05, 0), "num_steps = 0"),
                  Case((_bowl_grad(diag, "diag(1, 10)"), np.array([3, -2]), 0.05, 6), "x0 holds integers"),
                  Case((_bowl_grad(diag, "diag(1, 10)"), read_only(np.array([2.0, 1.0])), 0.05, 6), "a read-only x0"),
                  Case((_bowl_grad(H, "a random 5x5 positive definite matrix"), _vec(rng, (5,)), 0.3, 25),
                       "a 5-D bowl, 25 steps")]
    return cases


def _gd_variant(kind: str) -> Callable[..., Any]:
    def fn(grad_fn, x0, lr, num_steps):
        x = np.array(x0, dtype=np.float64)
        path = [] if kind == "no_start" else [x]
        for _ in range(num_steps):
            if kind == "ascent":
                x = x + lr * grad_fn(x)
            else:
                x -= lr * grad_fn(x)
            path.append(x if kind == "alias" else x.copy())
        if not path:
            return np.zeros((0, np.size(x0)))
        return np.stack([p if kind == "alias" else np.array(p) for p in path])
    return fn


def check_gradient_descent(fn: Callable[..., Any], thorough: bool = False) -> None:
    """gradient_descent(grad_fn, x0, lr, num_steps) -> path [num_steps + 1, d], path[0] = x0."""
    __tracebackhide__ = True
    run_check("gradient_descent", fn, ref.gradient_descent, _gd_cases(thorough), rtol=1e-7, atol=1e-10,
              thorough=thorough, mistakes=[
                  Mistake("you stepped *up* the gradient (x + lr * g); descent subtracts it.", _gd_variant("ascent")),
                  Mistake("the path must start with x0 itself: num_steps + 1 rows, row 0 = x0.", _gd_variant("no_start")),
                  Mistake("every row of your path is the same array: you updated x in place (x -= ...) and appended "
                          "it each time. Append a copy, or build a new array with x = x - lr * g.",
                          _gd_variant("alias")),
              ])


def _lr_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 26)
    cases = [Case((np.diag([1.0, 10.0]),), "H = diag(1, 10)"), Case((np.array([[4.0]]),), "a 1x1 H = [[4]]")]
    if thorough:
        cases += [Case((_spd(rng, [5.0, 1.0, 0.5]),), "a 3x3 H that is not diagonal (eigenvalues 5, 1, 0.5)"),
                  Case((np.array([[2.0, 1.9], [1.9, 2.0]]),), "strongly coupled coordinates [[2, 1.9], [1.9, 2]]"),
                  Case((_spd(rng, [100.0, 1e-3, 1.0, 7.0]),), "ill-conditioned: eigenvalues from 1e-3 to 100"),
                  Case((read_only(_spd(rng, [3.0, 2.0])),), "a read-only H")]
    return cases


def check_max_stable_learning_rate(fn: Callable[..., Any], thorough: bool = False) -> None:
    """max_stable_learning_rate(H) -> 2 / (largest eigenvalue of H) for a symmetric positive definite H."""
    __tracebackhide__ = True
    run_check("max_stable_learning_rate", fn, ref.max_stable_learning_rate, _lr_cases(thorough),
              rtol=1e-6, atol=1e-12, thorough=thorough, mistakes=[
                  Mistake("1 / lambda_max is where the stiffest direction converges in one step; divergence "
                          "starts at 2 / lambda_max (where |1 - lr * lambda| passes 1).",
                          lambda H: float(1 / np.linalg.eigvalsh(H)[-1])),
                  Mistake("you used the *smallest* eigenvalue; the *largest* curvature limits the step.",
                          lambda H: float(2 / np.linalg.eigvalsh(H)[0])),
                  Mistake("the diagonal of H gives the eigenvalues only when H is diagonal; use np.linalg.eigvalsh.",
                          lambda H: float(2 / np.max(np.diag(H)))),
                  Mistake("the trace is the *sum* of the eigenvalues; you need the largest one.",
                          lambda H: float(2 / np.trace(H))),
              ])


# --------------------------------------------------------------------------- Rosenbrock

def _rosen_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 27)
    cases = [Case((np.array([0.0, 0.0]),), "the point (0, 0)"),
             Case((np.array([-1.2, 1.0]),), "the point (-1.2, 1)"),
             Case((rng.uniform(-2, 2, size=(5, 2)),), "a batch of 5 points")]
    if thorough:
        cases += [Case((np.array([1.0, 1.0]),), "the minimum (1, 1): the gradient is zero"),
                  Case((rng.uniform(-2, 2, size=(3, 4, 2)),), "a [3, 4, 2] grid of points"),
                  Case((rng.uniform(-2, 2, size=(4, 2)),), "a = 2, b = 10", {"a": 2.0, "b": 10.0}),
                  Case((rng.uniform(-2, 2, size=(3, 2)),), "a = -0.5 (b left at 100)", {"a": -0.5}),
                  Case((rng.uniform(-2, 2, size=(3, 2)),), "b = 1 (a left at 1)", {"b": 1.0}),
                  Case((rng.uniform(-2, 2, size=(4, 2)).astype(np.float32),), "float32 points"),
                  Case((read_only(rng.uniform(-2, 2, size=(3, 2))),), "read-only points"),
                  Case((rng.uniform(-2, 2, size=(2, 4))[:, ::2],), "a strided (sliced) batch"),
                  Case((rng.uniform(-50, 50, size=(6, 2)),), "points far from the valley")]
    return cases


def _rosen_variant(kind: str) -> Callable[..., Any]:
    def fn(p, a=1.0, b=100.0):
        if kind == "defaults":
            a, b = 1.0, 100.0
        x, y = p[..., 0], p[..., 1]
        inner = -2 * x if kind != "no_inner" else 1.0
        dx = (2 if kind == "sign" else -2) * (a - x) + 2 * b * (y - x ** 2) * inner
        dy = 2 * b * (y - x ** 2)
        return np.stack([dy, dx] if kind == "swapped" else [dx, dy], axis=-1)
    return fn


def _rosen_reference(p: np.ndarray, a: float = 1.0, b: float = 100.0) -> np.ndarray:
    return ref.rosenbrock_grad(np.asarray(p, dtype=np.float64), a, b)


def _rosen_compare(got: Any, expected: Any, case: Case) -> str | None:
    """float32 points: terms near 5000 cancel, so a correct float32 computation is only good to ~1e-3."""
    if case.args[0].dtype == np.float32:
        return compare(got, expected, rtol=1e-4, atol=5e-3)
    return compare(got, expected, rtol=1e-6, atol=1e-6)


def check_rosenbrock_grad(fn: Callable[..., Any], thorough: bool = False) -> None:
    """rosenbrock_grad(p, a=1.0, b=100.0): p [..., 2] -> gradient [..., 2]."""
    __tracebackhide__ = True
    run_check("rosenbrock_grad", fn, _rosen_reference, _rosen_cases(thorough), compare_fn=_rosen_compare,
              thorough=thorough, mistakes=[
                  Mistake("the chain rule on b * (y - x**2)**2 needs the inner derivative d(y - x**2)/dx = -2x.",
                          _rosen_variant("no_inner")),
                  Mistake("d/dx of (a - x)**2 is -2 * (a - x): the inner derivative of (a - x) is -1.",
                          _rosen_variant("sign")),
                  Mistake("the two components are swapped: index 0 is d/dx, index 1 is d/dy.", _rosen_variant("swapped")),
                  Mistake("you ignored the `a` and `b` arguments (hard-coded 1 and 100).", _rosen_variant("defaults")),
              ])


# --------------------------------------------------------------------------- momentum

def _momentum_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 28)
    diag = np.diag([1.0, 10.0])
    cases = [Case((_bowl_grad(diag, "diag(1, 10)"), np.array([2.0, 1.0]), 0.05, 0.9, 5),
                  "a 2-D bowl, lr 0.05, beta 0.9, 5 steps"),
             Case((_Formula(lambda x: 2 * x, "grad_fn(x) = 2x"), np.array([3.0]), 0.1, 0.5, 4),
                  "f(x) = x**2 in 1-D, beta 0.5, 4 steps"),
             Case((_bowl_grad(diag, "diag(1, 10)"), np.array([1, -1]), 0.05, 0.9, 3),
                  "x0 holds integers (np.array([1, -1]))")]
    if thorough:
        H = _spd(rng, [4.0, 1.0, 0.5, 0.1])
        cases += [Case((_rosen_grad(), np.array([-1.5, 2.0]), 5e-4, 0.9, 60), "Rosenbrock, lr 5e-4, beta 0.9, 60 steps"),
                  Case((_bowl_grad(diag, "diag(1, 10)"), np.array([2.0, 1.0]), 0.05, 0.0, 8),
                       "beta = 0 (plain gradient descent)"),
                  Case((_bowl_grad(diag, "diag(1, 10)"), np.array([2.0, 1.0]), 0.05, 0.9, 0), "num_steps = 0"),
                  Case((_bowl_grad(diag, "diag(1, 10)"), np.array([3, -2]), 0.02, 0.8, 6), "x0 holds integers"),
                  Case((_bowl_grad(diag, "diag(1, 10)"), read_only(np.array([2.0, 1.0])), 0.05, 0.9, 6), "a read-only x0"),
                  Case((_bowl_grad(H, "a random 4x4 positive definite matrix"), _vec(rng, (4,)), 0.2, 0.95, 40),
                       "a 4-D bowl, beta 0.95, 40 steps")]
    return cases


def _momentum_variant(kind: str) -> Callable[..., Any]:
    def fn(grad_fn, x0, lr, beta, num_steps):
        x = np.array(x0, dtype=np.float64)
        v = np.zeros_like(x)
        path = [x.copy()]
        for _ in range(num_steps):
            g = grad_fn(x)
            if kind == "stale":
                x = x - lr * v
                v = beta * v + g
            elif kind == "ema":
                v = beta * v + (1 - beta) * g
                x = x - lr * v
            elif kind == "reset":
                v = np.zeros_like(x)
                v = beta * v + g
                x = x - lr * v
            elif kind == "nesterov":
                v = beta * v + grad_fn(x - lr * beta * v)
                x = x - lr * v
            path.append(x.copy())
        return np.stack(path)
    return fn


def check_momentum_descent(fn: Callable[..., Any], thorough: bool = False) -> None:
    """momentum_descent(grad_fn, x0, lr, beta, num_steps): v = beta*v + g; x = x - lr*v; path [num_steps + 1, d]."""
    __tracebackhide__ = True
    run_check("momentum_descent", fn, ref.momentum_descent, _momentum_cases(thorough), rtol=1e-7, atol=1e-10,
              thorough=thorough, mistakes=[
                  Mistake("the order is off: first update the velocity with the new gradient (v = beta*v + g), "
                          "then move with that new velocity (x = x - lr*v).", _momentum_variant("stale")),
                  Mistake("you used the averaged form v = beta*v + (1 - beta)*g; this exercise (like PyTorch's SGD) "
                          "uses v = beta*v + g.", _momentum_variant("ema")),
                  Mistake("your velocity does not carry over between steps (this is plain gradient descent): create "
                          "v once, before the loop.", _momentum_variant("reset")),
                  Mistake("you evaluated the gradient at a look-ahead point (Nesterov momentum); this exercise uses the "
                          "gradient at the current x.", _momentum_variant("nesterov")),
              ])
