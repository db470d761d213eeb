"""Reference solutions for chapter 03 (probability and statistics for ML and evals).

Everything here is written to survive the inputs real models produce: logits of 1e4,
probabilities of 1e-300, exact zeros (with 0 * log 0 = 0), masked logits of -inf.
Natural logarithms throughout, so entropies and KL divergences are in nats.
"""
from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------- likelihoods

def bernoulli_log_likelihood(y: np.ndarray, p: np.ndarray) -> float:
    """Sum over all entries of y*log(p) + (1-y)*log(1-p), labels y in {0, 1}; a term with zero weight is 0."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ones = np.where(y > 0, y * np.log(p), 0.0)            # log p only where the label is 1
        zeros = np.where(y < 1, (1 - y) * np.log1p(-p), 0.0)  # log(1 - p) only where the label is 0
    return float(np.sum(ones + zeros))


def gaussian_log_likelihood(x: np.ndarray, mu: float, sigma: float) -> float:
    """Sum over all entries of log N(x; mu, sigma^2), computed in log space (no pdf that underflows)."""
    x = np.asarray(x, dtype=np.float64)
    z = (x - mu) / sigma
    return float(np.sum(-0.5 * np.log(2 * np.pi) - np.log(sigma) - 0.5 * z ** 2))


def gaussian_mle(x: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood (mu, sigma) of a Gaussian for data x: the mean and the *biased* (divide-by-n)
    standard deviation, computed in two passes so a large offset does not cancel the digits away."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    mu = x.mean()
    return float(mu), float(np.sqrt(np.mean((x - mu) ** 2)))


# --------------------------------------------------------------------------- softmax family

def stable_softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, with the row max subtracted first so exp never overflows."""
    logits = np.asarray(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def stable_log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax(logits)) over the last axis, as logits - logsumexp(logits): finite wherever the logit is."""
    logits = np.asarray(logits)
    m = logits.max(axis=-1, keepdims=True)
    shifted = logits - m
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy_from_logits(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood of integer class `targets` [N] under softmax(`logits` [N, C])."""
    logp = stable_log_softmax(np.asarray(logits, dtype=np.float64))
    return float(-np.mean(logp[np.arange(logp.shape[0]), np.asarray(targets)]))


# --------------------------------------------------------------------------- information

def categorical_entropy(p: np.ndarray) -> np.ndarray:
    """-sum p log p over the last axis, in nats, with 0 log 0 = 0: [..., C] -> [...]."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=-1)


def categorical_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) = sum p (log p - log q) over the last axis, in nats: [..., C] x [..., C] -> [...].

    Terms with p = 0 are 0 (whatever q is); a term with p > 0 and q = 0 makes the divergence +inf.
    Uses log p - log q, never log(p / q), which overflows when q is tiny (1e-310)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


# --------------------------------------------------------------------------- sampling

def temperature_probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    """The distribution sampled at `temperature`: softmax(logits / T); T = 0 means greedy (one-hot argmax)."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        out = np.zeros_like(logits)
        out[np.argmax(logits)] = 1.0
        return out
    return stable_softmax(logits / temperature)


def sample_with_temperature(logits: np.ndarray, temperature: float, num_samples: int,
                            rng: np.random.Generator) -> np.ndarray:
    """`num_samples` token ids [num_samples] drawn from softmax(logits / temperature); T = 0 -> argmax."""
    probs = temperature_probs(logits, temperature)
    return rng.choice(len(probs), size=num_samples, p=probs)


# --------------------------------------------------------------------------- error bars

def bootstrap_accuracy_ci(correct: np.ndarray, num_resamples: int = 2000, alpha: float = 0.05,
                          rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile-bootstrap (1 - alpha) confidence interval for the mean of a 0/1 vector (an accuracy).

    Resamples the n items *with replacement* `num_resamples` times, takes each resample's accuracy,
    and returns the alpha/2 and 1 - alpha/2 percentiles of those accuracies."""
    rng = np.random.default_rng() if rng is None else rng
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    n = correct.shape[0]
    idx = rng.integers(0, n, size=(num_resamples, n))   # [B, n] indices drawn with replacement
    accs = correct[idx].mean(axis=1)                    # [B]
    low, high = np.percentile(accs, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)
