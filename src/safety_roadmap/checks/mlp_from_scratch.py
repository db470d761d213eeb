"""Checks for chapter 04_mlp_from_scratch. Each `check_<exercise>(obj, thorough=False)`.

Conventions the checks hold learners to (stated in the notebook): a linear layer is
``x @ W + b`` with W [in, out]; the loss is the MEAN over the batch, so the 1/batch
factor lives in the gradient of the loss, and linear_backward SUMS over the batch.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ..reference import mlp_from_scratch as ref
from ._core import (Case, CheckFailure, Mistake, NotAttempted, call, check_choice, compare, describe, guard,
                    non_contiguous, read_only, rng_for, run_check)

__all__ = ["check_linear_forward", "check_linear_backward", "check_relu_forward", "check_relu_backward",
           "check_softmax_cross_entropy", "check_mlp_numerical_gradient", "check_mlp_class",
           "check_iterate_minibatches", "check_mlp_sgd_step", "check_mlp_digits_accuracy", "check_zero_init_quiz"]

ACCURACY_BAR = 0.95


def _normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return rng.normal(size=shape) * scale


def _named(names: tuple[str, ...], rtol: float, atol: float) -> Callable[[Any, Any, Case], str | None]:
    """Compare a tuple output element by element, naming each part (grad_x, grad_W, ...)."""
    def cmp(got: Any, expected: Any, case: Case) -> str | None:
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected a tuple ({', '.join(names)}), got {describe(got)}"
        for name, g, e in zip(names, got, expected):
            problem = compare(g, e, rtol=rtol, atol=atol, what=name)
            if problem:
                return problem
        return None
    return cmp


# --------------------------------------------------------------------------- linear layer

def _linear_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 41)
    cases = [Case((np.array([[1.0, 2.0]]), np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([0.5, -0.5])),
                  "one example, 2 inputs, 2 outputs"),
             Case((_normal(rng, 4, 5), _normal(rng, 5, 3), _normal(rng, 3)), "batch 4, 5 inputs, 3 outputs")]
    if thorough:
        cases += [Case((_normal(rng, 6, 4), _normal(rng, 4, 4), _normal(rng, 4)), "a square weight matrix (4x4)"),
                  Case((_normal(rng, 1, 7), _normal(rng, 7, 2), _normal(rng, 2)), "batch of 1"),
                  Case((_normal(rng, 32, 64), _normal(rng, 64, 10), _normal(rng, 10)), "digits-sized: 32x64, 10 outputs"),
                  Case((non_contiguous(_normal(rng, 5, 3)), _normal(rng, 3, 6), _normal(rng, 6)), "a strided (sliced) x"),
                  Case((read_only(_normal(rng, 3, 2)), read_only(_normal(rng, 2, 5)), read_only(_normal(rng, 5))),
                       "read-only inputs"),
                  Case((_normal(rng, 8, 3).astype(np.float32), _normal(rng, 3, 3), _normal(rng, 3)), "float32 x")]
    return cases


def check_linear_forward(fn: Callable[..., Any], thorough: bool = False) -> None:
    """linear_forward(x [batch, in], W [in, out], b [out]) -> [batch, out]."""
    __tracebackhide__ = True
    run_check("linear_forward", fn, ref.linear_forward, _linear_cases(thorough), rtol=1e-6, atol=1e-6,
              thorough=thorough, mistakes=[
                  Mistake("you forgot the bias b.", lambda x, W, b: x @ W),
                  Mistake("W is [in, out] here, so it is x @ W, not x @ W.T.", lambda x, W, b: x @ W.T + b),
              ])


def _linear_backward_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 42)

    def case(batch: int, n_in: int, n_out: int, label: str, transform=lambda a: a) -> Case:
        return Case((transform(_normal(rng, batch, n_out)), transform(_normal(rng, batch, n_in)),
                     transform(_normal(rng, n_in, n_out))), label)

    cases = [Case((np.array([[1.0, -1.0], [0.5, 2.0]]), np.array([[3.0, 4.0], [1.0, -2.0]]),
                   np.array([[1.0, 2.0], [3.0, 4.0]])), "batch 2, 2 inputs, 2 outputs"),
             case(4, 5, 3, "batch 4, 5 inputs, 3 outputs")]
    if thorough:
        cases += [case(6, 4, 4, "a square weight matrix (4x4)"),
                  case(5, 3, 3, "square W, batch 5"),
                  case(1, 6, 2, "batch of 1"),
                  case(32, 64, 10, "digits-sized: batch 32, 64 inputs, 10 outputs"),
                  case(7, 3, 5, "read-only inputs", read_only),
                  Case((_normal(rng, 4, 6), non_contiguous(_normal(rng, 4, 3)), _normal(rng, 3, 6)), "a strided x")]
    return cases


def check_linear_backward(fn: Callable[..., Any], thorough: bool = False) -> None:
    """linear_backward(grad_out [batch, out], x [batch, in], W [in, out]) -> (grad_x, grad_W, grad_b)."""
    __tracebackhide__ = True
    run_check("linear_backward", fn, ref.linear_backward, _linear_backward_cases(thorough),
              compare_fn=_named(("grad_x", "grad_W", "grad_b"), 1e-6, 1e-8), thorough=thorough, mistakes=[
                  Mistake("grad_x multiplies by W itself; it needs W transposed: grad_out @ W.T.",
                          lambda g, x, W: (g @ W, x.T @ g, g.sum(0))),
                  Mistake("grad_W is x.T @ grad_out (shape [in, out]); you have the transpose, grad_out.T @ x.",
                          lambda g, x, W: (g @ W.T, g.T @ x, g.sum(0))),
                  Mistake("the bias gradient is missing: b is added to every row, so grad_b = grad_out.sum(axis=0).",
                          lambda g, x, W: (g @ W.T, x.T @ g, np.zeros(W.shape[1]))),
                  Mistake("grad_b still has a batch axis: sum grad_out over the batch (axis 0).",
                          lambda g, x, W: (g @ W.T, x.T @ g, g)),
                  Mistake("you averaged grad_b over the batch. The 1/batch of the mean loss is already inside "
                          "grad_out, so here you SUM over the batch.", lambda g, x, W: (g @ W.T, x.T @ g, g.mean(0))),
                  Mistake("you divided grad_W by the batch size. The 1/batch of the mean loss is already inside "
                          "grad_out, so x.T @ grad_out needs no extra factor.",
                          lambda g, x, W: (g @ W.T, x.T @ g / len(x), g.sum(0))),
              ])


# --------------------------------------------------------------------------- ReLU

def _no_zeros(a: np.ndarray) -> np.ndarray:
    """ReLU's derivative at exactly 0 is a convention; keep test inputs away from it."""
    return np.where(a == 0, 0.25, a)


def _relu_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 43)
    cases = [Case((np.array([-2.0, -0.5, 0.5, 3.0]),), "four numbers"),
             Case((_no_zeros(_normal(rng, 4, 6)),), "a 4x6 batch")]
    if thorough:
        cases += [Case((_no_zeros(_normal(rng, 2, 3, 5)),), "three axes"),
                  Case((_normal(rng, 3, 4) * 1e6,), "huge values"),
                  Case((-np.abs(_normal(rng, 5)) - 0.1,), "all negative"),
                  Case((read_only(_no_zeros(_normal(rng, 4, 4))),), "a read-only array"),
                  Case((non_contiguous(_no_zeros(_normal(rng, 3, 5))),), "a strided (sliced) array"),
                  Case((_no_zeros(_normal(rng, 6, 2)).astype(np.float32),), "float32")]
    return cases


def check_relu_forward(fn: Callable[..., Any], thorough: bool = False) -> None:
    """relu_forward(x) -> max(x, 0) elementwise, same shape, without changing x."""
    __tracebackhide__ = True
    run_check("relu_forward", fn, ref.relu_forward, _relu_cases(thorough), thorough=thorough, mistakes=[
        Mistake("negative inputs must become exactly 0 (that is a leaky ReLU).",
                lambda x: np.where(x > 0, x, 0.01 * x)),
        Mistake("you returned the absolute value; ReLU sends negatives to 0.", np.abs),
    ])


def _relu_backward_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 44)
    cases = [Case((np.array([1.0, 2.0, -3.0, 4.0]), np.array([-1.0, 0.5, 2.0, -0.1])), "four numbers"),
             Case((_normal(rng, 4, 6), _no_zeros(_normal(rng, 4, 6))), "a 4x6 batch")]
    if thorough:
        cases += [Case((_normal(rng, 2, 3, 5), _no_zeros(_normal(rng, 2, 3, 5))), "three axes"),
                  Case((-np.abs(_normal(rng, 3, 4)), _no_zeros(_normal(rng, 3, 4))), "all upstream gradients negative"),
                  Case((_normal(rng, 5, 5), _normal(rng, 5, 5) * 1e-8 + 1e-9), "tiny inputs"),
                  Case((read_only(_normal(rng, 4, 3)), read_only(_no_zeros(_normal(rng, 4, 3)))), "read-only inputs"),
                  Case((non_contiguous(_normal(rng, 3, 4)), non_contiguous(_no_zeros(_normal(rng, 3, 4)))),
                       "strided (sliced) inputs")]
    return cases


def check_relu_backward(fn: Callable[..., Any], thorough: bool = False) -> None:
    """relu_backward(grad_out, x) -> grad_out where x > 0, else 0 (x is the relu's INPUT)."""
    __tracebackhide__ = True
    run_check("relu_backward", fn, ref.relu_backward, _relu_backward_cases(thorough), thorough=thorough, mistakes=[
        Mistake("the mask must come from the relu's input x, not from the sign of grad_out.",
                lambda g, x: g * (g > 0)),
        Mistake("you returned only the mask (x > 0); multiply it by grad_out (the chain rule).",
                lambda g, x: (x > 0).astype(float)),
        Mistake("you multiplied by relu(x); the derivative of relu is 1 where x > 0 and 0 elsewhere, not relu(x).",
                lambda g, x: g * np.maximum(x, 0)),
        Mistake("the mask is the wrong way round: pass the gradient where x > 0, block it where x < 0.",
                lambda g, x: g * (x < 0)),
    ])


# --------------------------------------------------------------------------- softmax cross-entropy

def _labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.integers(0, k, size=n)


def _sce_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 45)
    cases = [Case((np.array([[2.0, 1.0, 0.1]]), np.array([0])), "one example, 3 classes"),
             Case((_normal(rng, 5, 4), _labels(rng, 5, 4)), "batch 5, 4 classes")]
    if thorough:
        cases += [Case((_normal(rng, 32, 10) * 3, _labels(rng, 32, 10)), "digits-sized: batch 32, 10 classes"),
                  Case((np.array([[1000.0, 0.0, -1000.0], [5.0, 1005.0, 0.0]]), np.array([0, 1])),
                       "huge logits (1000): exp overflows unless you subtract the max"),
                  Case((np.array([[0.0, -800.0], [-800.0, 0.0]]), np.array([1, 1])),
                       "a very unlikely label: softmax underflows to 0, log(0) = -inf unless you work in log space"),
                  Case((np.zeros((3, 5)), np.array([0, 2, 4])), "all-zero logits (uniform prediction)"),
                  Case((np.array([[1000.0, 999.0, 0.0], [-2000.0, -1999.0, -2001.0]]), np.array([0, 1])),
                       "rows on very different scales (max 1000 and -1999): shift each row by its own max"),
                  Case((_normal(rng, 1, 2), np.array([1])), "batch 1, 2 classes"),
                  Case((read_only(_normal(rng, 6, 3)), read_only(_labels(rng, 6, 3))), "read-only inputs"),
                  Case((non_contiguous(_normal(rng, 4, 6)), _labels(rng, 4, 6)), "strided (sliced) logits"),
                  Case((_normal(rng, 7, 3), _labels(rng, 7, 3).astype(np.int32)), "int32 labels"),
                  Case((_normal(rng, 64, 10) * 10, _labels(rng, 64, 10)), "confident logits, batch 64")]
    return cases


def _quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A known-wrong answer computed without printing numpy's overflow warnings into the learner's notebook."""
    def wrapped(*args: Any) -> Any:
        with np.errstate(all="ignore"):
            return fn(*args)
    return wrapped


def _sce_log_of_softmax(logits, labels):
    shifted = logits - logits.max(1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    n = len(labels)
    g = p.copy()
    g[np.arange(n), labels] -= 1
    return float(-np.log(p[np.arange(n), labels]).mean()), g / n


def _sce_no_max(logits, labels):
    e = np.exp(logits)
    p = e / e.sum(1, keepdims=True)
    n = len(labels)
    loss = -np.log(p[np.arange(n), labels]).mean()
    g = p.copy()
    g[np.arange(n), labels] -= 1
    return float(loss), g / n


def check_softmax_cross_entropy(fn: Callable[..., Any], thorough: bool = False) -> None:
    """softmax_cross_entropy(logits [batch, classes], labels [batch]) -> (mean loss, grad_logits)."""
    __tracebackhide__ = True

    def softmax_only(logits, labels):
        loss, grad = ref.softmax_cross_entropy(logits, labels)
        shifted = logits - logits.max(1, keepdims=True)
        p = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
        return loss, p / len(labels)

    run_check("softmax_cross_entropy", fn, ref.softmax_cross_entropy, _sce_cases(thorough),
              compare_fn=_named(("loss", "grad_logits"), 1e-5, 1e-8), thorough=thorough, mistakes=[
                  Mistake("softmax underflowed to 0 and log(0) = -inf. Compute the log-probabilities directly: "
                          "log_softmax = shifted - log(sum(exp(shifted))), with shifted = logits - row max.",
                          _quiet(_sce_log_of_softmax)),
                  Mistake("exp overflowed: subtract each row's max from the logits before exponentiating "
                          "(softmax does not change when you shift a row).", _quiet(_sce_no_max)),
                  Mistake("the loss and its gradient should be the MEAN over the batch, not the sum.",
                          lambda lo, la: (lambda r: (r[0] * len(la), r[1] * len(la)))(ref.softmax_cross_entropy(lo, la))),
                  Mistake("the loss is a mean over the batch, so its gradient needs the 1/batch factor too.",
                          lambda lo, la: (lambda r: (r[0], r[1] * len(la)))(ref.softmax_cross_entropy(lo, la))),
                  Mistake("grad_logits is softmax MINUS the one-hot label (then / batch); you left out the one-hot.",
                          softmax_only),
                  Mistake("the gradient has the wrong sign: it is (softmax - one_hot) / batch.",
                          lambda lo, la: (lambda r: (r[0], -r[1]))(ref.softmax_cross_entropy(lo, la))),
              ])


# --------------------------------------------------------------------------- numerical gradient

@functools.lru_cache(maxsize=None)
def _small_mlp_problem() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(46)
    model = ref.MLP([5, 6, 3], seed=46)
    return {k: v.copy() for k, v in model.params.items()}, rng.normal(size=(4, 5)), rng.integers(0, 3, size=4)


def _grad_problems(thorough: bool) -> list[tuple[str, Callable[[np.ndarray], tuple[Callable[[], float], np.ndarray]], np.ndarray]]:
    """(label, make(param) -> (f, analytic gradient), initial param value)."""
    rng = rng_for(thorough, 46)

    def cubic(p: np.ndarray):
        return (lambda: float(np.sum(p ** 3))), 3 * p ** 2

    def wavy(p: np.ndarray):
        return (lambda: float(np.sum(np.sin(3 * p) * p))), 3 * np.cos(3 * p) * p + np.sin(3 * p)

    def steep(p: np.ndarray):
        return (lambda: float(np.sum(np.exp(5 * p)))), 5 * np.exp(5 * p)

    def weighted(p: np.ndarray):
        w = np.arange(1.0, p.size + 1).reshape(p.shape)
        return (lambda: float(np.sum(w * p ** 2) + p.ravel()[0] * p.ravel()[-1])), \
            2 * w * p + _corner(p)

    def mlp_w0(p: np.ndarray):
        params, x, y = _small_mlp_problem()
        model = ref.MLP([5, 6, 3])
        model.params.update({k: v.copy() for k, v in params.items()})
        model.params["W0"] = p
        return (lambda: model.loss_and_grads(x, y)[0]), model.loss_and_grads(x, y)[1]["W0"]

    problems = [("f = sum(p ** 3), p of shape [3]", cubic, np.array([0.5, -1.0, 2.0])),
                ("f = sum(sin(3p) * p), p of shape [2, 3]", wavy, rng.normal(size=(2, 3)))]
    if thorough:
        problems += [("f = sum(exp(5p)): strong curvature", steep, rng.uniform(0.2, 0.8, size=(4,))),
                     ("f mixes entries, p of shape [3, 4]", weighted, rng.normal(size=(3, 4))),
                     ("a single-entry parameter, shape [1]", cubic, np.array([1.5])),
                     ("p with three axes, shape [2, 2, 3]", wavy, rng.normal(size=(2, 2, 3))),
                     ("f = an MLP's loss, p = its W0 [5, 6]", mlp_w0, _small_mlp_problem()[0]["W0"].copy()),
                     ("p is a slice of a bigger array (columns 0-3 of a [3, 8] array): not contiguous", wavy,
                      _column_slice(rng.normal(size=(3, 4)))),
                     ("eps = 0.1: f = sum(p ** 3), whose central difference is 3p^2 + eps^2", cubic,
                      np.array([0.5, -1.0, 2.0]), 0.1),
                     ("eps = 1e-3 on f = sum(exp(5p))", steep, rng.uniform(0.2, 0.8, size=(3,)), 1e-3)]
    return problems


def _column_slice(x: np.ndarray) -> np.ndarray:
    """The values of `x` [r, c] as the first c columns of an [r, 2c] array: a view whose reshape(-1) is a copy."""
    wide = np.zeros((x.shape[0], 2 * x.shape[1]))
    wide[:, :x.shape[1]] = x
    return wide[:, :x.shape[1]]


def _corner(p: np.ndarray) -> np.ndarray:
    g = np.zeros(p.size)
    g[0] += p.ravel()[-1]
    g[-1] += p.ravel()[0]
    return g.reshape(p.shape)


def check_mlp_numerical_gradient(fn: Callable[..., Any], thorough: bool = False) -> None:
    """numerical_gradient(f, param, eps=1e-5) -> central-difference gradient, same shape as param."""
    __tracebackhide__ = True
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `numerical_gradient`, got {describe(fn)}")
    problems = _grad_problems(thorough)
    for i, (label, make, init, *eps) in enumerate(problems, 1):
        param = init.copy() if init.flags.c_contiguous else _column_slice(init)
        f, analytic = make(param)
        where = f"case {i} of {len(problems)} ({label})"
        kwargs = {"eps": eps[0]} if eps else None
        if eps:  # a coarse step: the answer is the central difference itself, not the true gradient
            twin = init.copy()
            analytic = ref.numerical_gradient(make(twin)[0], twin, eps[0])
            twin = init.copy()
            default_step = ref.numerical_gradient(make(twin)[0], twin)
        got = call(fn, "numerical_gradient", (f, param), kwargs, where)
        drift = np.abs(param - init).max()
        if drift > 1e-9 * max(1.0, np.abs(init).max()):
            raise CheckFailure(f"`numerical_gradient` left `param` changed (by up to {drift:.3g}) on {where}. "
                               "Put every entry back to its old value after nudging it.")
        problem = compare(got, analytic, rtol=1e-5, atol=1e-7, what="numerical gradient")
        if problem:
            msg = f"`numerical_gradient` is wrong on {where}:\n  {problem}"
            g = np.asarray(got, dtype=float) if isinstance(got, (np.ndarray, float, list)) else None
            if g is not None and g.shape == analytic.shape:
                if not g.any():
                    msg += ("\n  Likely cause: f never saw your nudges. `param.flatten()` makes a copy, and so does "
                            "`param.reshape(-1)` when param is not contiguous (a slice): nudge `param` itself, "
                            "param[idx] with idx from np.ndindex(param.shape) or np.nditer.")
                elif eps and np.allclose(g, default_step, rtol=1e-6, atol=1e-9):
                    msg += "\n  Likely cause: you ignored the `eps` argument; nudge by the eps you are given."
                elif np.allclose(g, g.ravel()[0]) and param.size > 1:
                    msg += ("\n  Likely cause: you nudged every entry at once. Nudge one entry at a time: each "
                            "entry of the gradient is its own pair of evaluations of f.")
                elif np.allclose(g, 2 * analytic, rtol=1e-3, atol=1e-6):
                    msg += "\n  Likely cause: the central difference divides by 2 * eps (the two nudges are 2 * eps apart)."
                elif np.allclose(g, analytic, rtol=1e-2, atol=1e-5):
                    msg += ("\n  Likely cause: a one-sided difference (f(p + eps) - f(p)) / eps, whose error is "
                            "proportional to eps. Use the central difference (f(p + eps) - f(p - eps)) / (2 * eps).")
            raise CheckFailure(msg)
    kind = "thorough" if thorough else "quick"
    print(f"✓ numerical_gradient: all {len(problems)} {kind} checks passed")


# --------------------------------------------------------------------------- the MLP class

def _mlp_cases(thorough: bool) -> list[tuple[list[int], int]]:
    cases = [([64, 32, 10], 8), ([3, 4, 2], 5)]
    if thorough:
        cases += [([5, 7, 3], 1), ([4, 3], 6), ([6, 8, 8, 4], 9), ([10, 16, 12, 8, 5], 7)]
    return cases


def _expected_keys(sizes: list[int]) -> list[str]:
    return [f"{p}{i}" for i in range(len(sizes) - 1) for p in ("W", "b")]


def _check_init(cls: Any, sizes: list[int], seed: int, where: str) -> Any:
    __tracebackhide__ = True
    model = call(cls, "MLP", (list(sizes),), {"seed": seed}, where)
    params = getattr(model, "params", None)
    if not isinstance(params, dict):
        raise CheckFailure(f"`MLP` on {where}: expected an attribute `params` holding a dict, got {describe(params)}")
    keys = _expected_keys(sizes)
    if sorted(params) != sorted(keys):
        raise CheckFailure(f"`MLP` on {where}: params should have exactly the keys {keys}, got {sorted(params)}")
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W, b = params[f"W{i}"], params[f"b{i}"]
        for name, arr, shape in ((f"W{i}", W, (fan_in, fan_out)), (f"b{i}", b, (fan_out,))):
            if not isinstance(arr, np.ndarray) or arr.shape != shape:
                raise CheckFailure(f"`MLP` on {where}: params['{name}'] should be an array of shape {shape}, "
                                   f"got {describe(arr)}")
        if np.any(b != 0):
            raise CheckFailure(f"`MLP` on {where}: biases start at zero; params['b{i}'] is {b[:4]}...")
        if np.ptp(W) == 0:
            raise CheckFailure(f"`MLP` on {where}: every entry of W{i} is the same ({W.flat[0]}). Draw them at random, "
                               "or the hidden units can never become different (section 7 shows why).")
    return model


def _check_he_statistics(cls: Any, where: str) -> None:
    __tracebackhide__ = True
    sizes = [400, 300, 10]
    a = _check_init(cls, sizes, 3, where)
    b = _check_init(cls, sizes, 3, where)
    c = _check_init(cls, sizes, 4, where)
    if not all(np.array_equal(a.params[k], b.params[k]) for k in a.params):
        raise CheckFailure("`MLP`: two models built with the same seed have different weights. Draw them from "
                           "np.random.default_rng(seed), not from the global np.random.")
    if all(np.array_equal(a.params[k], c.params[k]) for k in a.params):
        raise CheckFailure("`MLP`: seeds 3 and 4 gave identical weights; use the `seed` argument.")
    for i, fan_in in enumerate(sizes[:-1]):
        W = a.params[f"W{i}"]
        target = np.sqrt(2.0 / fan_in)
        if not (0.9 * target < W.std() < 1.1 * target) or abs(W.mean()) > 0.1 * target:
            raise CheckFailure(
                f"`MLP([400, 300, 10])`: W{i} has mean {W.mean():.4f} and standard deviation {W.std():.4f}; "
                f"He initialisation draws from a normal with mean 0 and std sqrt(2 / fan_in) = {target:.4f} "
                f"(fan_in = {fan_in}).")


def _load(model: Any, values: dict[str, np.ndarray]) -> None:
    """Write known parameter values into the learner's arrays, in place (keeps any aliases they hold)."""
    for k, v in values.items():
        model.params[k][...] = v


def check_mlp_class(cls: Any, thorough: bool = False) -> None:
    """MLP(sizes, seed=0): `.params` {"W0","b0",...}; `.forward(x)` -> logits; `.loss_and_grads(x, y)`."""
    __tracebackhide__ = True
    try:
        _run_mlp_class(cls, thorough)
    except CheckFailure as exc:
        note = _layer_notes(cls)
        if not note:
            raise
        raise CheckFailure(f"{exc}{note}") from None


def _layer_notes(cls: Any) -> str:
    """'Fix X first' for each earlier exercise the learner's MLP calls whose own thorough check fails."""
    from .linear_algebra import fix_first_note

    deps = {"linear_forward": check_linear_forward, "linear_backward": check_linear_backward,
            "relu_forward": check_relu_forward, "relu_backward": check_relu_backward,
            "softmax_cross_entropy": check_softmax_cross_entropy}
    methods = [m for m in vars(cls).values() if callable(m) and hasattr(m, "__code__")] if isinstance(cls, type) else []
    notes: list[str] = []
    for dep, dep_check in deps.items():
        for m in methods:
            note = fix_first_note(m, "MLP", dep, dep_check)
            if note:
                notes.append(note)
                break
    return "".join(notes)


def _run_mlp_class(cls: Any, thorough: bool) -> None:
    __tracebackhide__ = True
    guard()
    if not callable(cls):
        raise CheckFailure(f"expected the class `MLP`, got {describe(cls)}")
    rng = rng_for(thorough, 47)
    cases = _mlp_cases(thorough)
    for i, (sizes, batch) in enumerate(cases, 1):
        where = f"case {i} of {len(cases)} (MLP({sizes}), batch {batch})"
        model = _check_init(cls, sizes, seed=i, where=where)
        reference = ref.MLP(sizes)
        values = {k: rng.normal(size=v.shape) * 0.5 for k, v in reference.params.items()}
        values.update({k: rng.normal(size=v.shape) * 0.1 for k, v in reference.params.items() if k.startswith("b")})
        reference.params.update(values)
        _load(model, values)
        loose = any(model.params[k].dtype != np.float64 for k in values)
        rtol, atol = (1e-4, 1e-5) if loose else (1e-6, 1e-9)
        x = rng.normal(size=(batch, sizes[0]))
        y = rng.integers(0, sizes[-1], size=batch)
        x_before, y_before = x.copy(), y.copy()

        logits = call(model.forward, "MLP.forward", (x,), None, where)
        problem = compare(logits, reference.forward(x), rtol=rtol, atol=atol, what="forward(x)")
        if problem:
            msg = f"`MLP.forward` is wrong on {where}:\n  {problem}"
            if compare(logits, _forward_variant(reference, x, relu_last=True), rtol=rtol, atol=atol) is None:
                msg += "\n  Likely cause: a ReLU after the last layer; the logits must be able to go negative."
            elif compare(logits, _forward_variant(reference, x, relu_hidden=False), rtol=rtol, atol=atol) is None:
                msg += "\n  Likely cause: no ReLU between the layers, so the network is one linear map."
            raise CheckFailure(msg)

        out = call(model.loss_and_grads, "MLP.loss_and_grads", (x, y), None, where)
        if not isinstance(out, (tuple, list)) or len(out) != 2 or not isinstance(out[1], dict):
            raise CheckFailure(f"`MLP.loss_and_grads` on {where}: expected a tuple (loss, grads dict), got {describe(out)}")
        exp_loss, exp_grads = reference.loss_and_grads(x, y)
        problem = compare(out[0], exp_loss, rtol=rtol, atol=atol, what="loss")
        if problem:
            raise CheckFailure(f"`MLP.loss_and_grads` is wrong on {where}:\n  {problem}")
        if sorted(out[1]) != sorted(exp_grads):
            raise CheckFailure(f"`MLP.loss_and_grads` on {where}: grads should have the same keys as params, "
                               f"{sorted(exp_grads)}; got {sorted(out[1])}")
        for k in reversed(list(exp_grads)):  # the last layer first: where a backward pass goes wrong first
            problem = compare(out[1][k], exp_grads[k], rtol=rtol, atol=atol, what=f"grads['{k}']")
            if problem:
                msg = f"`MLP.loss_and_grads` is wrong on {where}:\n  {problem}"
                got_k = out[1][k]
                if isinstance(got_k, np.ndarray) and got_k.shape == exp_grads[k].shape and np.allclose(
                        got_k * batch, exp_grads[k], rtol=1e-4, atol=1e-9) and batch > 1:
                    msg += ("\n  Likely cause: divided by the batch size twice. The 1/batch of the mean loss is in "
                            "the softmax-cross-entropy gradient already; linear_backward sums over the batch.")
                elif int(k[1:]) < len(sizes) - 2:
                    msg += ("\n  The last layer's gradients are right, so look at what flows back through the ReLU "
                            "between layers: relu_backward with that layer's pre-activation, and pass grad_x on.")
                raise CheckFailure(msg)
        if not (np.array_equal(x, x_before) and np.array_equal(y, y_before)):
            raise CheckFailure(f"`MLP` changed its input x or y in place on {where}; work on copies.")
    if thorough:
        _check_he_statistics(cls, "the initialisation check")
    kind = "thorough" if thorough else "quick"
    print(f"✓ MLP: all {len(cases)} {kind} checks passed")


def _forward_variant(model: ref.MLP, x: np.ndarray, relu_last: bool = False, relu_hidden: bool = True) -> np.ndarray:
    h = x
    n = model.num_layers
    for i in range(n):
        h = h @ model.params[f"W{i}"] + model.params[f"b{i}"]
        if (i < n - 1 and relu_hidden) or (i == n - 1 and relu_last):
            h = np.maximum(h, 0)
    return h


# --------------------------------------------------------------------------- mini-batches

def _batches(fn: Callable[..., Any], x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator,
             where: str) -> list[tuple[np.ndarray, np.ndarray]]:
    __tracebackhide__ = True
    out = call(lambda *a: list(fn(*a)), "iterate_minibatches", (x, y, batch_size, rng), None, where)
    for j, item in enumerate(out):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise CheckFailure(f"`iterate_minibatches` on {where}: batch {j} should be a pair (x_batch, y_batch), "
                               f"got {describe(item)}")
    return [(np.asarray(a), np.asarray(b)) for a, b in out]


def _order(batches: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    return np.concatenate([b for _, b in batches]) if batches else np.array([], dtype=int)


def check_iterate_minibatches(fn: Callable[..., Any], thorough: bool = False) -> None:
    """iterate_minibatches(x, y, batch_size, rng): shuffled (x_batch, y_batch) pairs covering every example once."""
    __tracebackhide__ = True
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `iterate_minibatches`, got {describe(fn)}")
    cases = [(20, 3, 5), (23, 2, 8)]
    if thorough:
        cases += [(64, 4, 16), (10, 3, 1), (7, 2, 10), (100, 5, 32), (13, 1, 13)]
    for i, (n, d, bs) in enumerate(cases, 1):
        where = f"case {i} of {len(cases)} ({n} examples, batch_size {bs})"
        x = np.arange(n)[:, None] * 10.0 + np.arange(d)[None, :]   # row i starts with 10 * i
        y = np.arange(n) * 3 % n if n % 3 else np.arange(n)[::-1].copy()
        x_before, y_before = x.copy(), y.copy()
        batches = _batches(fn, x, y, bs, np.random.default_rng(i), where)
        if not (np.array_equal(x, x_before) and np.array_equal(y, y_before)):
            raise CheckFailure(f"`iterate_minibatches` shuffled x or y in place on {where}. Shuffle an array of "
                               "indices instead (rng.permutation(n)) and index x and y with it.")
        sizes = [len(b) for _, b in batches]
        want = [bs] * (n // bs) + ([n % bs] if n % bs else [])
        if sizes != want:
            hint = (" The last, smaller batch is missing: keep it (every example counts)."
                    if sizes == want[:-1] else "")
            raise CheckFailure(f"`iterate_minibatches` on {where}: expected batches of sizes {want}, got {sizes}.{hint}")
        for j, (xb, yb) in enumerate(batches):
            if xb.shape != (len(yb), d):
                raise CheckFailure(f"`iterate_minibatches` on {where}: batch {j} x has shape {xb.shape}, "
                                   f"expected {(len(yb), d)}")
            rows = (xb[:, 0] / 10.0).round().astype(int)
            if not np.array_equal(y_before[rows], yb):
                raise CheckFailure(f"`iterate_minibatches` on {where}: in batch {j} the labels no longer belong to "
                                   "their images. Use ONE permutation of indices for both x and y.")
        order = (np.concatenate([xb[:, 0] for xb, _ in batches]) / 10.0).round().astype(int)
        if sorted(order.tolist()) != list(range(n)):
            raise CheckFailure(f"`iterate_minibatches` on {where}: one epoch must use every example exactly once.")
        if n >= 10 and np.array_equal(order, np.arange(n)):
            raise CheckFailure(f"`iterate_minibatches` on {where}: the examples come out in their original order. "
                               "Shuffle them with rng.permutation.")
        if n >= 10:
            rng = np.random.default_rng(100 + i)
            first = _order(_batches(fn, x, y, bs, rng, where))
            second = _order(_batches(fn, x, y, bs, rng, where))
            if np.array_equal(first, second):
                raise CheckFailure(f"`iterate_minibatches` on {where}: two epochs with the same rng gave the same order. "
                                   "Draw the permutation from the `rng` argument (not a freshly seeded generator), "
                                   "so each epoch is shuffled differently.")
            again = _order(_batches(fn, x, y, bs, np.random.default_rng(100 + i), where))
            if thorough and not np.array_equal(first, again):
                raise CheckFailure(f"`iterate_minibatches` on {where}: the same seed gave different orders, so runs "
                                   "are not reproducible. Shuffle with the `rng` argument, not np.random.")
    _check_shuffle_is_uniform(fn)
    kind = "thorough" if thorough else "quick"
    print(f"✓ iterate_minibatches: all {len(cases) + 1} {kind} checks passed")


def _check_shuffle_is_uniform(fn: Callable[..., Any], n: int = 6, epochs: int = 300) -> None:
    """A real shuffle reaches every order: 300 epochs of 6 examples show ~250 distinct orders out of 720;
    a rotation, or a shuffle that keeps one example in place, shows at most 6 or 120."""
    __tracebackhide__ = True
    x, y = np.arange(n)[:, None] * 10.0, np.arange(n)
    rng = np.random.default_rng(2024)
    where = f"{epochs} epochs of {n} examples, batch_size {n}, one rng"
    orders = {tuple(_order(_batches(fn, x, y, n, rng, where)).tolist()) for _ in range(epochs)}
    firsts = {o[0] for o in orders}
    lasts = {o[-1] for o in orders}
    if len(orders) < 150 or len(firsts) < n or len(lasts) < n:
        raise CheckFailure(
            f"`iterate_minibatches` on {where}: only {len(orders)} different orders (a fair shuffle gives about 250 "
            f"of the 720 possible), {len(firsts)} different first and {len(lasts)} different last examples. Every "
            "order must be possible: shuffle all n indices with rng.permutation(n), not a rotation and not n - 1 of them.")


# --------------------------------------------------------------------------- SGD

def check_mlp_sgd_step(fn: Callable[..., Any], thorough: bool = False) -> None:
    """sgd_step(params, grads, lr): params[k] -= lr * grads[k] for every key, in place; returns nothing."""
    __tracebackhide__ = True
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `sgd_step`, got {describe(fn)}")
    rng = rng_for(thorough, 48)
    layouts = [[64, 32, 10], [3, 2]]
    lrs = [0.1, 0.5]
    if thorough:
        layouts += [[5, 4, 4, 3], [2, 7, 1]]
        lrs += [1e-3, 2.0]
    for i, (sizes, lr) in enumerate(zip(layouts, lrs), 1):
        params = {k: v + rng.normal(size=v.shape) for k, v in ref.MLP(sizes, seed=i).params.items()}
        grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
        before = {k: v.copy() for k, v in params.items()}
        grads_before = {k: v.copy() for k, v in grads.items()}
        where = f"case {i} of {len(layouts)} (params of MLP({sizes}), lr={lr})"
        call(fn, "sgd_step", (params, grads, lr), None, where)
        if any(not np.array_equal(grads[k], grads_before[k]) for k in grads):
            raise CheckFailure(f"`sgd_step` changed the gradients on {where}; only the parameters should change.")
        for k in before:
            expected = before[k] - lr * grads_before[k]
            if np.array_equal(params[k], before[k]):
                raise CheckFailure(
                    f"`sgd_step` did not change params['{k}'] on {where}. Update the arrays in place "
                    f"(params[k] -= lr * grads[k]); `p = p - lr * g` on a loop variable only rebinds the name.")
            problem = compare(params[k], expected, rtol=1e-10, atol=1e-12, what=f"params['{k}'] after the step")
            if problem:
                hint = ""
                if np.allclose(params[k], before[k] + lr * grads_before[k]):
                    hint = "\n  Likely cause: the sign. Gradient DEscent steps against the gradient: subtract."
                raise CheckFailure(f"`sgd_step` is wrong on {where}:\n  {problem}{hint}")
    kind = "thorough" if thorough else "quick"
    print(f"✓ sgd_step: all {len(layouts)} {kind} checks passed")


# --------------------------------------------------------------------------- the trained model

@functools.lru_cache(maxsize=1)
def _digits_test() -> tuple[np.ndarray, np.ndarray]:
    from ..data import load_digits  # sklearn is imported only when a model is graded

    split = load_digits()
    x, y = split.x_test.copy(), split.y_test.copy()
    x.flags.writeable = False
    return x, y


def _digits_train() -> tuple[np.ndarray, np.ndarray]:
    from ..data import load_digits

    split = load_digits()
    return split.x_train.copy(), split.y_train.copy()


#: The thorough check also grades on digits no notebook has seen: the test digits with fresh pixel noise
#: (drawn inside the check). A trained MLP loses about a point there (97-98% -> 96-98% over seeds);
#: a table of the test set's labels, or a model fitted to the test pixels only, does not hold up.
HELD_BACK_NOISE, HELD_BACK_BAR = 0.05, 0.93


def _accuracy(forward: Callable[..., Any], x: np.ndarray, y: np.ndarray, where: str) -> float:
    __tracebackhide__ = True
    logits = call(forward, "model.forward", (x,), None, where)
    arr = np.asarray(logits) if isinstance(logits, np.ndarray) else None
    if arr is None or arr.shape != (len(y), 10):
        raise CheckFailure(f"`model.forward` on {where}: expected logits of shape ({len(y)}, 10), got {describe(logits)}")
    if not np.isfinite(arr).all():
        raise CheckFailure(f"`trained_model`: its logits on {where} contain nan or inf, so training diverged. Lower "
                           "the learning rate and check the softmax-cross-entropy gradient.")
    return float((arr.argmax(axis=1) == y).mean())


def _check_held_back(forward: Callable[..., Any], x: np.ndarray, y: np.ndarray, accuracy: float) -> None:
    """Accuracy on noisy copies of the test digits, and train accuracy at least test accuracy."""
    __tracebackhide__ = True
    noise = np.random.default_rng(20240).normal(0.0, HELD_BACK_NOISE, size=x.shape)
    x_new = np.clip(x + noise, 0.0, 1.0).astype(x.dtype)
    fresh = _accuracy(forward, x_new, y, f"{len(y)} held-back digits (the test digits with fresh pixel noise)")
    if fresh < HELD_BACK_BAR:
        raise CheckFailure(
            f"`trained_model`: {accuracy:.1%} on the test digits but only {fresh:.1%} on the same digits with a little "
            f"pixel noise (sigma {HELD_BACK_NOISE}; a trained MLP keeps above {HELD_BACK_BAR:.0%}). The model seems to "
            "recognise the exact test images rather than digits: train on `data.x_train` only, and never on the test split.")
    x_tr, y_tr = _digits_train()
    train_acc = _accuracy(forward, x_tr, y_tr, f"the {len(y_tr)} training digits")
    if train_acc + 0.01 < accuracy:
        raise CheckFailure(
            f"`trained_model`: {accuracy:.1%} on the test digits but {train_acc:.1%} on the training digits. A model "
            "fitted to its training data does at least as well there as on new data, so this one was fitted to the "
            "test split: train on `data.x_train`, `data.y_train` and use the test split only to evaluate.")


def check_mlp_digits_accuracy(model: Any, thorough: bool = False) -> None:
    """The trained model's accuracy on the held-out digits must reach the bar (95%)."""
    __tracebackhide__ = True
    guard()
    if model is None:
        raise NotAttempted("`trained_model` is not attempted yet: finish `train`, then run the training cell above "
                           "(it sets trained_model once training has run to the end).")
    forward = getattr(model, "forward", None)
    if not callable(forward):
        raise CheckFailure(f"`trained_model`: expected a trained model with a `forward` method, got {describe(model)}")
    x, y = _digits_test()
    where = f"the {len(y)} held-out test digits"
    accuracy = _accuracy(forward, x, y, where)
    if accuracy < ACCURACY_BAR:
        hint = ("about chance level: the model has not learned. Did the training cell run to the end, and does "
                "sgd_step change the model's arrays in place?" if accuracy < 0.3 else
                "it learns, but not enough. Train for the suggested number of epochs with the suggested learning "
                "rate, check that each epoch reshuffles, and that train() steps on every mini-batch.")
        raise CheckFailure(f"`trained_model`: test accuracy is {accuracy:.1%}, below the {ACCURACY_BAR:.0%} bar: {hint}")
    if thorough:
        _check_held_back(forward, x, y, accuracy)
    kind = "thorough" if thorough else "quick"
    print(f"✓ mlp_digits_accuracy: test accuracy {accuracy:.1%} (the bar is {ACCURACY_BAR:.0%}; {kind} check)")


# --------------------------------------------------------------------------- concept question

_ZERO_INIT_DIGEST = "dbc9d4d320c159207f5936175efc6453c033630894352aad09759e81d593f202"  # sha256 of "zero_init_quiz:<letter>"


def check_zero_init_quiz(answer: Any, thorough: bool = False) -> None:
    """What happens to hidden units that all start with identical weights?"""
    __tracebackhide__ = True
    check_choice("zero_init_quiz", answer, _ZERO_INIT_DIGEST, "abcd")
