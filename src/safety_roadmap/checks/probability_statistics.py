"""Checks for chapter 03_probability_statistics. Each `check_<exercise>(fn, thorough=False)`.

The hidden cases are the inputs that break textbook formulas: logits of 1e4, probabilities of
1e-300 and 1e-310, exact zeros (0 * log 0 = 0), masked logits of -inf, offsets of 1e9.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Callable

import numpy as np

from ..reference import probability_statistics as ref
from ._core import (Case, CheckFailure, Mistake, call, compare, describe, guard, non_contiguous, preview, read_only,
                    rng_for, run_check)

__all__ = ["check_bernoulli_log_likelihood", "check_gaussian_log_likelihood", "check_gaussian_mle",
           "check_stable_softmax", "check_stable_log_softmax", "check_cross_entropy_from_logits",
           "check_categorical_entropy", "check_categorical_kl", "check_sample_with_temperature",
           "check_bootstrap_accuracy_ci"]


def _has_float32(args: tuple) -> bool:
    return any(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in args)


def _close(rtol: float, atol: float, rtol32: float = 1e-5, atol32: float = 1e-6) -> Callable[..., str | None]:
    """Compare with tighter tolerances for float64 inputs than for float32 ones."""
    def cmp(got: Any, expected: Any, case: Case) -> str | None:
        if _has_float32(case.args):
            return compare(got, expected, rtol=rtol32, atol=atol32)
        return compare(got, expected, rtol=rtol, atol=atol)
    return cmp


def _dirichlet(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    p = rng.gamma(1.0, size=shape)
    return p / p.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- Bernoulli log-likelihood

def _bern_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 31)
    cases = [Case((np.array([1, 0, 1, 1]), np.array([0.9, 0.2, 0.6, 0.7])), "4 labels"),
             Case((rng.integers(0, 2, size=20), rng.uniform(0.05, 0.95, size=20)), "20 random labels"),
             Case((np.array([[True, False, True], [False, False, True]]), np.array([[0.8, 0.1, 0.6], [0.3, 0.5, 0.9]])),
                  "a [2, 3] array of boolean labels")]
    if thorough:
        cases += [Case((np.array([1, 0, 1, 0]), np.array([1.0, 0.0, 0.8, 0.3])),
                       "a model that is certain and right: p = 1 for a 1, p = 0 for a 0"),
                  Case((np.array([1, 0, 0]), np.array([1e-300, 1e-300, 0.5])), "tiny probabilities (1e-300)"),
                  Case((np.array([1, 1, 0]), np.array([0.0, 0.9, 0.1])),
                       "p = 0 for a label of 1 (impossible data: the log-likelihood is -inf)"),
                  Case((rng.random(12) < 0.5, rng.uniform(0.01, 0.99, size=12)), "labels given as booleans"),
                  Case((rng.integers(0, 2, size=(4, 5)), rng.uniform(0.01, 0.99, size=(4, 5))), "a [4, 5] array of labels"),
                  Case((rng.integers(0, 2, size=8).astype(np.float64), rng.uniform(0.01, 0.99, size=8).astype(np.float32)),
                       "float labels, float32 probabilities"),
                  Case((read_only(rng.integers(0, 2, size=6)), read_only(rng.uniform(0.01, 0.99, size=6))),
                       "read-only inputs"),
                  Case((rng.integers(0, 2, size=5000), rng.uniform(0.001, 0.999, size=5000)), "5000 labels")]
    return cases


def _bern_naive(y: np.ndarray, p: np.ndarray) -> float:
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def check_bernoulli_log_likelihood(fn: Callable[..., Any], thorough: bool = False) -> None:
    """bernoulli_log_likelihood(y, p) -> float: sum of y log p + (1 - y) log(1 - p), 0 log 0 = 0."""
    __tracebackhide__ = True
    run_check("bernoulli_log_likelihood", fn, ref.bernoulli_log_likelihood, _bern_cases(thorough),
              compare_fn=_close(1e-9, 1e-9), thorough=thorough, mistakes=[
                  Mistake("0 * log(0) evaluated to nan: with p = 0 and a label of 0 the term y * log(p) is 0 * -inf. "
                          "Only take log(p) where y is 1 and log(1 - p) where y is 0 (np.where, or boolean masks).",
                          _bern_naive),
                  Mistake("you used log2; this chapter measures log-likelihoods in nats (np.log).",
                          lambda y, p: _bern_naive(y, p) / np.log(2)),
                  Mistake("you averaged; the log-likelihood of the data set is the *sum* over examples.",
                          lambda y, p: _bern_naive(y, p) / np.size(y)),
                  Mistake("you returned the negative log-likelihood (a loss); return the log-likelihood itself "
                          "(it is <= 0).", lambda y, p: -_bern_naive(y, p)),
              ])


# --------------------------------------------------------------------------- Gaussian log-likelihood

def _gauss_ll_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 32)
    cases = [Case((np.array([0.0]), 0.0, 1.0), "one point at the mean of a standard normal"),
             Case((np.array([1.0, 2.0, 3.0]), 2.0, 0.5), "three points, mu = 2, sigma = 0.5"),
             Case((np.array([[0.5, -1.0], [2.0, 0.0]]), 0.5, 2.0), "a [2, 2] array of data, mu = 0.5, sigma = 2")]
    if thorough:
        cases += [Case((rng.normal(3.0, 2.0, size=50), 3.0, 2.0), "50 points, mu = 3, sigma = 2"),
                  Case((np.array([0.0, 50.0, -80.0]), 0.0, 0.1),
                       "outliers 800 sigmas from the mean (the density itself underflows to 0)"),
                  Case((rng.normal(0.0, 1e-4, size=10), 0.0, 1e-4), "a tiny sigma (1e-4)"),
                  Case((rng.normal(-5.0, 3.0, size=(4, 6)), -5.0, 3.0), "a [4, 6] array of data"),
                  Case((rng.normal(1.0, 1.0, size=5).astype(np.float32), 1.0, 1.0), "float32 data"),
                  Case((np.array([1, 4, 7]), 3, 2), "integer data, mu and sigma"),
                  Case((read_only(rng.normal(size=7)), 0.5, 1.5), "read-only data")]
    return cases


def _gauss_variant(kind: str) -> Callable[..., float]:
    def fn(x, mu, sigma):
        x = np.asarray(x, dtype=float)
        if kind == "pdf":
            with np.errstate(divide="ignore"):
                return float(np.sum(np.log(np.exp(-(x - mu) ** 2 / (2 * sigma ** 2)) / np.sqrt(2 * np.pi * sigma ** 2))))
        const = 0.0 if kind == "no_const" else -0.5 * np.log(2 * np.pi)
        log_sigma = 0.0 if kind == "no_log_sigma" else -np.log(sigma)
        quad = -(x - mu) ** 2 / (2 * sigma) if kind == "sigma_not_squared" else -(x - mu) ** 2 / (2 * sigma ** 2)
        total = np.sum(const + log_sigma + quad)
        return float(total / x.size if kind == "mean" else total)
    return fn


def check_gaussian_log_likelihood(fn: Callable[..., Any], thorough: bool = False) -> None:
    """gaussian_log_likelihood(x, mu, sigma) -> float: sum of log N(x; mu, sigma^2)."""
    __tracebackhide__ = True
    run_check("gaussian_log_likelihood", fn, ref.gaussian_log_likelihood, _gauss_ll_cases(thorough),
              compare_fn=_close(1e-9, 1e-9), thorough=thorough, mistakes=[
                  Mistake("you took log of the density: the density underflows to 0 far from the mean, and log(0) = -inf. "
                          "Write the log-density directly: -0.5*log(2*pi) - log(sigma) - (x - mu)**2 / (2*sigma**2).",
                          _gauss_variant("pdf")),
                  Mistake("the -log(sigma) term (from the 1/sigma in front of the density) is missing.",
                          _gauss_variant("no_log_sigma")),
                  Mistake("the exponent divides by 2 * sigma**2 (the variance), not 2 * sigma.",
                          _gauss_variant("sigma_not_squared")),
                  Mistake("the constant -0.5 * log(2 * pi) per data point is missing.", _gauss_variant("no_const")),
                  Mistake("you averaged; the log-likelihood is the *sum* over data points.", _gauss_variant("mean")),
              ])


# --------------------------------------------------------------------------- Gaussian MLE

def _mle_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 33)
    cases = [Case((np.array([1.0, 2.0, 3.0, 4.0]),), "the data 1, 2, 3, 4"),
             Case((rng.normal(2.0, 3.0, size=50),), "50 draws from N(2, 3^2)"),
             Case((np.array([[1.0, 3.0], [5.0, 7.0]]),), "a [2, 2] array (use every entry)")]
    if thorough:
        cases += [Case((np.array([0.0, 2.0]),), "two points: 0 and 2 (divide by n or n - 1 matters most here)"),
                  Case((np.array([5.0]),), "a single point (the MLE of sigma is 0)"),
                  Case((1e9 + rng.normal(0.0, 1.0, size=1000),), "a large offset: 1e9 + N(0, 1) noise"),
                  Case((rng.normal(0.0, 1.0, size=(10, 3)),), "a [10, 3] array (use every entry)"),
                  Case((rng.normal(-1.0, 0.5, size=40).astype(np.float32),), "float32 data"),
                  Case((np.array([1, 2, 2, 7]),), "integer data"),
                  Case((read_only(rng.normal(size=9)),), "read-only data")]
    return cases


def _mle_one_pass(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore"):
        return float(x.mean()), float(np.sqrt(np.mean(x ** 2) - x.mean() ** 2))


def check_gaussian_mle(fn: Callable[..., Any], thorough: bool = False) -> None:
    """gaussian_mle(x) -> (mu_hat, sigma_hat): the mean and the divide-by-n standard deviation."""
    __tracebackhide__ = True
    run_check("gaussian_mle", fn, ref.gaussian_mle, _mle_cases(thorough), compare_fn=_close(1e-6, 1e-9),
              thorough=thorough, mistakes=[
                  Mistake("you divided by n - 1 (the unbiased variance, ddof=1); the maximum-likelihood estimate "
                          "divides by n (np.std's default, ddof=0).",
                          lambda x: (float(np.mean(x)), float(np.std(np.asarray(x, dtype=float), ddof=1)))
                          if np.size(x) > 1 else (float(np.mean(x)), float("nan"))),
                  Mistake("you returned the variance; the second value is sigma, its square root.",
                          lambda x: (float(np.mean(x)), float(np.var(np.asarray(x, dtype=float))))),
                  Mistake("mean(x**2) - mean(x)**2 subtracts two huge, nearly equal numbers when the data sit far "
                          "from 0 and loses every digit. Subtract the mean first: mean((x - mu)**2).", _mle_one_pass),
              ])


# --------------------------------------------------------------------------- softmax and log-softmax

def _softmax_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 34)
    cases = [Case((np.array([1.0, 2.0, 3.0]),), "logits (1, 2, 3)"),
             Case((rng.normal(size=(4, 5)),), "a batch of 4 rows of 5 logits")]
    if thorough:
        masked = rng.normal(size=(3, 4))
        masked[0, 1] = masked[2, 0] = masked[2, 3] = -np.inf
        cases += [Case((np.array([1e4, 0.0, -1e4]),), "huge logits (1e4, 0, -1e4)"),
                  Case((np.array([[1e4, 1e4 - 1.0, 0.0], [-1e4, -1e4 + 2.0, -1e4 + 1.0]]),),
                       "two rows on very different scales (around 1e4 and around -1e4)"),
                  Case((np.full((2, 5), -1e4),), "every logit -1e4 (exp underflows to 0 without the shift)"),
                  Case((masked,), "masked logits set to -inf"),
                  Case((rng.normal(size=(2, 3, 6)) * 50,), "a [2, 3, 6] batch of large logits"),
                  Case((rng.normal(size=(3, 1)),), "a single class per row"),
                  Case((rng.normal(size=(4, 7)).astype(np.float32),), "float32 logits"),
                  Case((non_contiguous(rng.normal(size=(3, 5))),), "a strided (sliced) input"),
                  Case((read_only(rng.normal(size=(2, 4))),), "a read-only input")]
    return cases


def _softmax_naive(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x)
        return e / e.sum(axis=-1, keepdims=True)


def _softmax_global_max(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        e = np.exp(x - np.max(x))
        return e / e.sum(axis=-1, keepdims=True)


def check_stable_softmax(fn: Callable[..., Any], thorough: bool = False) -> None:
    """stable_softmax(logits): [..., C] -> [..., C], rows sum to 1, finite for any finite logits."""
    __tracebackhide__ = True
    run_check("stable_softmax", fn, ref.stable_softmax, _softmax_cases(thorough), compare_fn=_close(1e-7, 1e-12),
              thorough=thorough, mistakes=[
                  Mistake("exp(1e4) overflows to inf (and inf / inf is nan). Subtract each row's max before exp: "
                          "softmax is unchanged by adding a constant to every logit.", _softmax_naive),
                  Mistake("you subtracted the max of the *whole* array; a row far below it underflows to 0 / 0. "
                          "Use the max of each row: x.max(axis=-1, keepdims=True).", _softmax_global_max),
                  Mistake("you normalised over the wrong axis: classes lie along the last axis.",
                          lambda x: np.exp(x - x.max(axis=-1, keepdims=True))
                          / np.exp(x - x.max(axis=-1, keepdims=True)).sum(axis=0, keepdims=True)),
              ])


def _log_softmax_of_softmax(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(ref.stable_softmax(x))


def _log_softmax_naive(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def check_stable_log_softmax(fn: Callable[..., Any], thorough: bool = False) -> None:
    """stable_log_softmax(logits): [..., C] -> [..., C], equal to logits - logsumexp(logits)."""
    __tracebackhide__ = True
    run_check("stable_log_softmax", fn, ref.stable_log_softmax, _softmax_cases(thorough),
              compare_fn=_close(1e-7, 1e-9, 1e-5, 1e-5), thorough=thorough, mistakes=[
                  Mistake("log(softmax(x)) underflows: a probability of exp(-2e4) is stored as 0 and its log is -inf. "
                          "Compute x - max - log(sum(exp(x - max))) directly.", _log_softmax_of_softmax),
                  Mistake("exp of a huge logit overflows: subtract each row's max before exp, and add it back "
                          "after the log (logsumexp(x) = m + log(sum(exp(x - m)))).", _log_softmax_naive),
                  Mistake("you subtracted the max but never added it back: logsumexp(x) = m + log(sum(exp(x - m))).",
                          lambda x: x - np.log(np.exp(x - x.max(axis=-1, keepdims=True)).sum(axis=-1, keepdims=True))),
              ])


# --------------------------------------------------------------------------- cross-entropy

def _ce_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 35)
    cases = [Case((np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]), np.array([0, 2])), "2 examples, 3 classes"),
             Case((rng.normal(size=(8, 5)), rng.integers(0, 5, size=8)), "8 examples, 5 classes")]
    if thorough:
        cases += [Case((np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]]), np.array([2, 1])),
                       "huge logits, one target at logit -1e4 (its loss is 2e4, not inf)"),
                  Case((np.array([[0.3, -0.2]]), np.array([1])), "one example, two classes"),
                  Case((np.array([[1e4, 0.0, -1e4], [-3e3, -3e3 + 1.0, -3e3 - 2.0]]), np.array([0, 1])),
                       "rows on very different scales (max 1e4 and -3e3)"),
                  Case((rng.normal(size=(6, 6)), rng.integers(0, 6, size=6).astype(np.int32)),
                       "6 examples, 6 classes, int32 targets"),
                  Case((rng.normal(size=(100, 10)) * 5, rng.integers(0, 10, size=100)), "100 examples, 10 classes"),
                  Case((rng.normal(size=(5, 4)).astype(np.float32), rng.integers(0, 4, size=5)), "float32 logits"),
                  Case((read_only(rng.normal(size=(3, 4))), read_only(rng.integers(0, 4, size=3))), "read-only inputs")]
    return cases


def _ce_log_of_softmax(logits: np.ndarray, targets: np.ndarray) -> float:
    p = ref.stable_softmax(np.asarray(logits, dtype=float))
    with np.errstate(divide="ignore"):
        return float(-np.mean(np.log(p[np.arange(len(targets)), targets])))


def check_cross_entropy_from_logits(fn: Callable[..., Any], thorough: bool = False) -> None:
    """cross_entropy_from_logits(logits [N, C], targets [N] ints) -> mean negative log-likelihood (float)."""
    __tracebackhide__ = True
    run_check("cross_entropy_from_logits", fn, ref.cross_entropy_from_logits, _ce_cases(thorough),
              compare_fn=_close(1e-8, 1e-9, 1e-5, 1e-5), thorough=thorough, mistakes=[
                  Mistake("-log(softmax(...)[target]) is inf when that probability underflows to 0. "
                          "Use log-softmax: -(logits[target] - logsumexp(logits)).", _ce_log_of_softmax),
                  Mistake("you summed over examples; cross-entropy here is the *mean* over the batch.",
                          lambda l, t: ref.cross_entropy_from_logits(l, t) * len(t)),
                  Mistake("the sign is flipped: cross-entropy is the *negative* log-likelihood (>= 0).",
                          lambda l, t: -ref.cross_entropy_from_logits(l, t)),
                  Mistake("logp[:, targets] picks every target column for every row; pair row i with targets[i]: "
                          "logp[np.arange(N), targets].",
                          lambda l, t: float(-np.mean(ref.stable_log_softmax(np.asarray(l, dtype=float))[:, t]))),
              ])


# --------------------------------------------------------------------------- entropy and KL

def _entropy_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 36)
    cases = [Case((np.array([0.5, 0.5]),), "a fair coin"),
             Case((np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]]),), "two distributions over 3 outcomes")]
    if thorough:
        cases += [Case((np.array([0.0, 1.0, 0.0]),), "a certain outcome (one-hot): entropy exactly 0"),
                  Case((np.array([0.5, 0.5, 0.0, 0.0]),), "zeros in the distribution (0 log 0 = 0)"),
                  Case((np.array([1.0 - 2e-300, 1e-300, 1e-300]),), "tiny probabilities (1e-300)"),
                  Case((np.full(1000, 1e-3),), "uniform over 1000 outcomes (entropy log 1000)"),
                  Case((_dirichlet(rng, (2, 3, 6)),), "a [2, 3, 6] batch of distributions"),
                  Case((np.array([[0.2, 0.0, 0.8], [0.0, 0.0, 1.0]], dtype=np.float32),), "float32 with zeros"),
                  Case((non_contiguous(_dirichlet(rng, (3, 4))),), "a strided (sliced) input"),
                  Case((read_only(_dirichlet(rng, (2, 5))),), "a read-only input")]
    return cases


def _entropy_naive(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -(p * np.log(p)).sum(axis=-1)


def check_categorical_entropy(fn: Callable[..., Any], thorough: bool = False) -> None:
    """categorical_entropy(p): [..., C] -> [...], -sum p log p in nats with 0 log 0 = 0."""
    __tracebackhide__ = True
    run_check("categorical_entropy", fn, ref.categorical_entropy, _entropy_cases(thorough),
              compare_fn=_close(1e-9, 1e-12, 1e-5, 1e-6), thorough=thorough, mistakes=[
                  Mistake("0 * log(0) gave nan. By convention (and by the limit p log p -> 0) a zero probability "
                          "contributes 0: use np.where(p > 0, p * np.log(p), 0.0).", _entropy_naive),
                  Mistake("you used log2 (bits); this chapter measures entropy in nats (np.log). "
                          "They differ by a factor log(2).", lambda p: ref.categorical_entropy(p) / np.log(2)),
                  Mistake("the sign is flipped: entropy is -sum p log p (and >= 0).",
                          lambda p: -ref.categorical_entropy(p)),
                  Mistake("you summed over every axis; each distribution lies along the *last* axis.",
                          lambda p: ref.categorical_entropy(np.asarray(p).reshape(-1))),
              ])


def _kl_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 37)
    cases = [Case((np.array([0.5, 0.5]), np.array([0.9, 0.1])), "p = (0.5, 0.5), q = (0.9, 0.1)"),
             Case((_dirichlet(rng, (3, 4)), _dirichlet(rng, (3, 4))), "3 pairs of distributions over 4 outcomes")]
    if thorough:
        p = _dirichlet(rng, (5,))
        cases += [Case((np.array([0.0, 0.4, 0.6]), np.array([0.2, 0.3, 0.5])), "p = 0 where q > 0 (that term is 0)"),
                  Case((np.array([0.5, 0.5, 0.0]), np.array([1.0, 0.0, 0.0])),
                       "p > 0 where q = 0: KL(p || q) is +inf"),
                  Case((np.array([0.0, 1.0]), np.array([0.0, 1.0])), "p = q = 0 in one place (that term is 0)"),
                  Case((p, p.copy()), "identical distributions (KL exactly 0)"),
                  Case((np.array([0.5, 0.5]), np.array([1.0 - 1e-310, 1e-310])),
                       "q puts a tiny probability (1e-310) where p puts 0.5"),
                  Case((np.array([[0.1, 0.9], [0.9, 0.1]]), np.array([[0.5, 0.5], [0.5, 0.5]])),
                       "two pairs, checked row by row"),
                  Case((_dirichlet(rng, (2, 3, 6)), _dirichlet(rng, (2, 3, 6))), "a [2, 3, 6] batch"),
                  Case((_dirichlet(rng, (3, 5)).astype(np.float32), _dirichlet(rng, (3, 5)).astype(np.float32)),
                       "float32 distributions"),
                  Case((read_only(_dirichlet(rng, (2, 4))), read_only(_dirichlet(rng, (2, 4)))), "read-only inputs")]
    return cases


def _kl_variant(kind: str) -> Callable[..., np.ndarray]:
    def fn(p, q):
        p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if kind == "naive":
                return (p * np.log(p / q)).sum(axis=-1)
            if kind == "eps":
                return (p * np.log((p + 1e-12) / (q + 1e-12))).sum(axis=-1)
            if kind == "ratio":
                return np.where(p > 0, p * np.log(p / q), 0.0).sum(axis=-1)
        raise ValueError(kind)
    return fn


def check_categorical_kl(fn: Callable[..., Any], thorough: bool = False) -> None:
    """categorical_kl(p, q): [..., C] x [..., C] -> [...], KL(p || q) = sum p (log p - log q) in nats."""
    __tracebackhide__ = True
    run_check("categorical_kl", fn, ref.categorical_kl, _kl_cases(thorough), compare_fn=_close(1e-9, 1e-12, 1e-5, 1e-6),
              thorough=thorough, mistakes=[
                  Mistake("you computed KL(q || p): the arguments are the wrong way round. KL(p || q) weights the "
                          "log-ratio by p, the first argument.", lambda p, q: ref.categorical_kl(q, p)),
                  Mistake("p / q overflowed to inf because q is tiny (1e-310). Use np.log(p) - np.log(q) "
                          "instead of np.log(p / q).", _kl_variant("ratio")),
                  Mistake("adding a small epsilon hides the infinity: when q = 0 where p > 0, KL(p || q) really is "
                          "+inf (q says the event is impossible). Drop the epsilon and use np.where on p > 0.",
                          _kl_variant("eps")),
                  Mistake("a term with p = 0 gave nan (0 * log 0). Terms where p = 0 contribute exactly 0: "
                          "use np.where(p > 0, ..., 0.0).", _kl_variant("naive")),
                  Mistake("you used log2 (bits); this chapter measures KL in nats (np.log).",
                          lambda p, q: ref.categorical_kl(p, q) / np.log(2)),
              ])


# --------------------------------------------------------------------------- randomness contract

def _same_output(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same_output(x, y) for x, y in zip(a, b))
    x, y = np.asarray(a), np.asarray(b)
    return x.shape == y.shape and bool(np.array_equal(x, y, equal_nan=True))


def rng_contract(name: str, run: Callable[[np.random.Generator], Any], where: str, seed: int = 4242,
                 same: Callable[[Any, Any], bool] = _same_output) -> None:
    """Raise CheckFailure unless `run(rng)` draws its randomness from the generator it is given:
    the same seed gives the same output, the generator's state advances, and other seeds give other outputs.
    Shared with chapter 04 (iterate_minibatches)."""
    __tracebackhide__ = True
    gen = _SeededGenerator(seed)
    before = gen.bit_generator.state
    first = call(run, name, (gen,), None, where)
    if gen.bit_generator.state == before:
        raise CheckFailure(f"`{name}` did not draw anything from the `rng` it was given on {where}. Use that "
                           "generator (rng.choice, rng.integers, rng.permutation, ...) for all randomness: not "
                           "np.random.* and not a new np.random.default_rng(), which makes runs irreproducible.")
    again = call(run, name, (_SeededGenerator(seed),), None, where)
    if not same(first, again):
        raise CheckFailure(f"`{name}` gave different outputs for two generators with the same seed on {where}: some "
                           "randomness does not come from `rng` (np.random.* or an unseeded default_rng()).")
    others = [call(run, name, (_SeededGenerator(seed + k),), None, where) for k in (1, 2, 3)]
    if all(same(first, o) for o in others):
        raise CheckFailure(f"`{name}` gave the same output for generators with four different seeds on {where}: "
                           "it must not reseed (np.random.default_rng(0) inside the function); draw from `rng`.")


# --------------------------------------------------------------------------- temperature sampling

class _SeededGenerator(np.random.Generator):
    """A Generator that prints as the seed that made it (failure messages stay readable)."""

    def __init__(self, seed: int) -> None:
        super().__init__(np.random.PCG64(seed))
        self._seed = seed

    def __repr__(self) -> str:
        return f"default_rng({self._seed})"


_SeededGenerator.__name__ = "Generator"


def _temperature_cases(thorough: bool) -> list[tuple[np.ndarray, float, int, str]]:
    rng = rng_for(thorough, 38)
    logits = np.array([2.0, 1.0, 0.0, -1.0])
    cases = [(logits, 1.0, 4000, "logits (2, 1, 0, -1), T = 1"),
             (logits, 0.5, 4000, "logits (2, 1, 0, -1), T = 0.5 (sharper)")]
    if thorough:
        masked = rng.normal(size=6)
        masked[[1, 4]] = -np.inf
        cases += [(logits, 2.0, 4000, "logits (2, 1, 0, -1), T = 2 (flatter)"),
                  (logits, 0.0, 500, "T = 0: greedy decoding, always the argmax"),
                  (np.array([1e4, 1e4 - 1.0, 0.0]), 1.0, 4000, "huge logits (1e4, 1e4 - 1, 0), T = 1"),
                  (np.array([1.0, 0.9985, -1.0]), 1e-3, 4000, "a tiny temperature T = 0.001 (logits / T reach 1000)"),
                  (masked, 0.7, 4000, "masked logits (-inf) at positions 1 and 4, T = 0.7"),
                  (rng.normal(size=10) * 2, 1.3, 4000, "10 random logits, T = 1.3"),
                  (np.array([0.0, 0.5, 3.0]), 1.0, 4000, "the last token is the most likely one"),
                  (read_only(np.array([0.5, -0.5, 1.5])), 1.0, 2000, "read-only logits")]
    return cases


def _frequency_problem(got: Any, probs: np.ndarray, n: int) -> str | None:
    """None when `got` looks like n draws from `probs` (per-outcome counts within 5 standard deviations)."""
    arr = np.asarray(got)
    if arr.shape != (n,):
        return f"expected {n} samples (an array of shape ({n},)), got {describe(got)}"
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            return f"expected integer token ids, got {describe(got)}: {preview(arr)}"
        arr = arr.astype(np.int64)
    V = probs.shape[0]
    if arr.size and (arr.min() < 0 or arr.max() >= V):
        return f"token ids must lie in 0..{V - 1}; got values from {arr.min()} to {arr.max()}"
    counts = np.bincount(arr, minlength=V)
    expected = n * probs
    spread = 5 * np.sqrt(n * probs * (1 - probs)) + 3
    impossible = (probs == 0) & (counts > 0)
    off = (np.abs(counts - expected) > spread) | impossible
    if not off.any():
        return None
    with np.printoptions(precision=3, suppress=True):
        return (f"the sample frequencies do not match softmax(logits / T):\n"
                f"    expected probabilities {probs}\n    your frequencies       {counts / n}")


def _wrong_probs(kind: str) -> Callable[[np.ndarray, float], np.ndarray]:
    def fn(logits: np.ndarray, T: float) -> np.ndarray:
        if kind == "times":
            return ref.stable_softmax(np.asarray(logits, dtype=float) * T)
        if kind == "ignore":
            return ref.stable_softmax(np.asarray(logits, dtype=float))
        return ref.temperature_probs(logits, 0.0)  # "greedy"
    return fn


_TEMPERATURE_MISTAKES = [
    ("you multiplied the logits by T; temperature *divides* them (T < 1 sharpens, T > 1 flattens).", "times"),
    ("the temperature has no effect in your code: sample from softmax(logits / T).", "ignore"),
    ("you always return the argmax; that is only right for T = 0. Sample from softmax(logits / T) otherwise.",
     "greedy"),
]


def check_sample_with_temperature(fn: Callable[..., Any], thorough: bool = False) -> None:
    """sample_with_temperature(logits [V], temperature, num_samples, rng) -> token ids [num_samples]."""
    __tracebackhide__ = True
    guard()
    name = "sample_with_temperature"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = _temperature_cases(thorough)
    for i, (logits, T, n, label) in enumerate(cases, 1):
        seed = 1000 * i + (7 if thorough else 0)
        rng = _SeededGenerator(seed)
        where = (f"case {i} of {len(cases)} ({label}; inputs: {describe(logits)}, temperature {T!r}, "
                 f"num_samples {n}, rng {rng!r})")
        pristine = logits.copy()
        try:
            got = call(fn, name, (logits, T, n, rng), None, where)
        except CheckFailure as exc:
            if "nan" not in str(exc).lower():
                raise
            hint = ("T = 0 means greedy decoding: return the argmax every time instead of dividing by 0."
                    if T == 0 else "exp of a huge logit overflowed to inf, and inf / inf is nan: subtract the "
                    "max of logits / T before exp.")
            raise CheckFailure(f"{exc}\n  Likely cause: {hint}") from None
        if not np.array_equal(pristine, logits, equal_nan=True):
            raise CheckFailure(f"`{name}` changed the logits in place on {where}. "
                               "Work on a copy (or build a new array) instead of writing into the input.")
        probs = ref.temperature_probs(pristine, T)
        problem = _frequency_problem(got, probs, n)
        if problem:
            msg = f"`{name}` is wrong on {where}:\n  {problem}"
            for hint, kind in _TEMPERATURE_MISTAKES:
                wrong = _wrong_probs(kind)(pristine, T)
                if not np.allclose(wrong, probs, atol=0.02) and _frequency_problem(got, wrong, n) is None:
                    msg += f"\n  Likely cause: {hint}"
                    break
            raise CheckFailure(msg)
    logits = np.array([1.0, 0.0, 0.5, -0.5])
    rng_contract(name, lambda g: fn(logits.copy(), 1.0, 50, g),
                 "logits (1, 0, 0.5, -0.5), T = 1, num_samples 50, the same or different seeds")
    print(f"✓ {name}: all {len(cases) + 1} {'thorough' if thorough else 'quick'} checks passed")


# --------------------------------------------------------------------------- bootstrap confidence interval

def _binomial_cdf(n: int, p: float) -> np.ndarray:
    """P(K <= k) for K ~ Binomial(n, p), k = 0..n, in log space (exact enough for n in the thousands)."""
    k = np.arange(n + 1)
    log_choose = np.concatenate([[0.0], np.cumsum(np.log((n - k[1:] + 1) / k[1:]))])
    with np.errstate(divide="ignore"):
        logpmf = log_choose + k * np.log(p) + (n - k) * np.log1p(-p)
    pmf = np.exp(logpmf - logpmf.max())
    return np.cumsum(pmf / pmf.sum())


def _ideal_bootstrap_ci(correct: np.ndarray, num_resamples: int = 2000, alpha: float = 0.05,
                        rng: Any = None) -> tuple[float, float]:
    """What a percentile bootstrap of an accuracy converges to with infinitely many resamples: the accuracy
    of a resample is Binomial(n, acc) / n, so the interval is two binomial quantiles (over n)."""
    c = np.asarray(correct, dtype=np.float64).reshape(-1)
    n, acc = c.shape[0], float(c.mean())
    if acc in (0.0, 1.0):
        return acc, acc
    cdf = _binomial_cdf(n, acc)
    low = int(np.searchsorted(cdf, alpha / 2 - 1e-12))
    high = int(np.searchsorted(cdf, 1 - alpha / 2 - 1e-12))
    return low / n, high / n


class _EndpointCase(Case):
    """A case built so that each draw's probability shows in the interval: compared to half an accuracy step."""


def _one_right(n: int, where: int) -> np.ndarray:
    c = np.zeros(n, dtype=bool)
    c[where] = True
    return c


def _bootstrap_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 39)

    def labels(n: int, p: float) -> np.ndarray:
        return rng.random(n) < p

    cases = [Case((labels(400, 0.7), 2000, 0.05, _SeededGenerator(11)), "400 answers, about 70% correct, 95% interval"),
             Case((labels(100, 0.85), 1000, 0.1, _SeededGenerator(10)), "100 answers, about 85% correct, 90% interval")]
    if thorough:
        cases += [Case((labels(1000, 0.9).astype(np.int64), 1000, 0.2, _SeededGenerator(12)),
                       "1000 answers as 0/1 integers, about 90% correct, 80% interval"),
                  Case((labels(400, 0.5).astype(np.float64), 1500, 0.5, _SeededGenerator(13)),
                       "400 answers as floats, a 50% interval (the quartiles: each tail cut by alpha/2 exactly)"),
                  Case((labels(60, 0.5), 1000, 0.05, _SeededGenerator(14)), "only 60 answers"),
                  Case((np.ones(50, dtype=bool), 500, 0.05, _SeededGenerator(15)), "every answer correct"),
                  Case((read_only(labels(300, 0.6)), 1000, 0.2, _SeededGenerator(16)), "a read-only input, 80% interval"),
                  Case((labels(80, 0.6), 1, 0.05, _SeededGenerator(17)),
                       "num_resamples = 1 (one resampled accuracy: low == high)"),
                  _EndpointCase((_one_right(10, 9), 600, 0.98, _SeededGenerator(18)),
                                "10 answers, only the LAST one correct, a 2% interval around the median "
                                "(every question must be drawn with probability 1/n)"),
                  _EndpointCase((_one_right(10, 0), 600, 0.98, _SeededGenerator(19)),
                                "10 answers, only the FIRST one correct, a 2% interval around the median")]
    return cases


def _compare_ci(got: Any, expected: Any, case: Case) -> str | None:
    """Bootstrap endpoints are random: accept anything within 2.5 accuracy steps (1/n) of the ideal interval."""
    if not isinstance(got, (tuple, list, np.ndarray)) or len(got) != 2:
        return f"expected a tuple (low, high), got {describe(got)}"
    try:
        low, high = float(got[0]), float(got[1])
    except (TypeError, ValueError):
        return f"expected two numbers (low, high), got {got!r}"
    n = np.size(case.args[0])
    if case.args[1] == 1:
        if low != high:
            return (f"with num_resamples = 1 there is a single resampled accuracy, so low == high; yours is "
                    f"({low:.4f}, {high:.4f}): does your code use `num_resamples`?")
        return None if abs(low - float(np.mean(case.args[0]))) <= 0.3 else f"a single resample's accuracy {low:.4f} is far from the data's"
    tol = (0.5 if isinstance(case, _EndpointCase) else 2.5) / n + 1e-9
    exp_low, exp_high = expected
    if not low <= high:
        return f"low ({low:.4f}) must not exceed high ({high:.4f})"
    if abs(low - exp_low) > tol or abs(high - exp_high) > tol:
        if isinstance(case, _EndpointCase):
            return (f"interval ({low:.4f}, {high:.4f}), expected ({exp_low:.4f}, {exp_high:.4f}): the one correct "
                    "answer is resampled too rarely or too often. Every index 0..n-1 must be drawn with probability "
                    "1/n: rng.integers(0, n) excludes n itself, so integers(0, n - 1) never draws the last question, "
                    "and rounding rng.random() * (n - 1) halves the chances of the first and the last.")
        return (f"interval ({low:.4f}, {high:.4f}) is not the percentile bootstrap interval: expected about "
                f"({exp_low:.4f}, {exp_high:.4f}), give or take {tol:.4f} of resampling noise")
    return None


def _boot_variant(kind: str) -> Callable[..., tuple[float, float]]:
    def fn(correct, num_resamples=2000, alpha=0.05, rng=None):
        c = np.asarray(correct, dtype=float)
        n = len(c)
        if kind == "no_replacement":
            accs = np.array([rng.permutation(c).mean() for _ in range(num_resamples)])
        else:
            accs = c[rng.integers(0, n, size=(num_resamples, n))].mean(axis=1)
        if kind == "alpha":
            return tuple(np.percentile(accs, [100 * alpha, 100 * (1 - alpha)]))
        if kind == "std":
            return accs.mean() - accs.std(), accs.mean() + accs.std()
        if kind == "counts":
            return tuple(n * np.percentile(accs, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
        return tuple(np.percentile(accs, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    return fn


def check_bootstrap_accuracy_ci(fn: Callable[..., Any], thorough: bool = False) -> None:
    """bootstrap_accuracy_ci(correct [n], num_resamples, alpha, rng) -> (low, high) percentile interval."""
    __tracebackhide__ = True
    with contextlib.redirect_stdout(io.StringIO()) as quiet:
        _run_bootstrap(fn, thorough)
    correct = np.arange(100) % 3 != 0
    rng_contract("bootstrap_accuracy_ci", lambda g: fn(correct.copy(), 40, 0.1, g),
                 "100 answers, num_resamples 40, alpha 0.1, the same or different seeds")
    print(quiet.getvalue().rstrip().replace(" checks passed", " checks passed, and it draws from `rng`"))


def _run_bootstrap(fn: Callable[..., Any], thorough: bool) -> None:
    __tracebackhide__ = True
    run_check("bootstrap_accuracy_ci", fn, _ideal_bootstrap_ci, _bootstrap_cases(thorough), compare_fn=_compare_ci,
              thorough=thorough, mistakes=[
                  Mistake("every resample has the same accuracy, so the interval has no width: you resampled "
                          "*without* replacement (a permutation). Draw n indices with replacement, "
                          "e.g. rng.integers(0, n, size=n).", _boot_variant("no_replacement")),
                  Mistake("a (1 - alpha) interval cuts alpha/2 from *each* tail: percentiles 100*alpha/2 and "
                          "100*(1 - alpha/2).", _boot_variant("alpha")),
                  Mistake("mean +- one standard deviation is about a 68% interval; use the percentiles of the "
                          "resampled accuracies.", _boot_variant("std")),
                  Mistake("you returned counts of correct answers; return accuracies (fractions between 0 and 1).",
                          _boot_variant("counts")),
              ])
