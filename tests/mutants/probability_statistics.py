"""Mutants and alternatives for chapter 03_probability_statistics."""
from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------- mutants


def bern_naive(y, p):
    return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))  # 0 * log(0) = nan


def bern_log2(y, p):
    y = np.asarray(y, dtype=float)
    return float(np.sum(np.where(y == 1, np.log2(np.where(y == 1, p, 1.0)), np.log2(np.where(y == 0, 1 - p, 1.0)))))


def bern_mean(y, p):
    y = np.asarray(y, dtype=float)
    with np.errstate(divide="ignore"):
        return float(np.mean(np.where(y == 1, np.log(p), np.log(1 - p))))


def bern_clipped(y, p):
    p = np.clip(p, 1e-12, 1 - 1e-12)  # hides the -inf of impossible data, biases tiny probabilities
    y = np.asarray(y, dtype=float)
    return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def gauss_log_pdf(x, mu, sigma):
    pdf = np.exp(-(x - mu) ** 2 / (2 * sigma ** 2)) / np.sqrt(2 * np.pi * sigma ** 2)
    return float(np.sum(np.log(pdf)))  # the pdf underflows far from the mean


def gauss_no_log_sigma(x, mu, sigma):
    return float(np.sum(-0.5 * np.log(2 * np.pi) - (x - mu) ** 2 / (2 * sigma ** 2)))


def gauss_sigma_not_squared(x, mu, sigma):
    return float(np.sum(-0.5 * np.log(2 * np.pi) - np.log(sigma) - (x - mu) ** 2 / (2 * sigma)))


def mle_unbiased(x):
    return float(np.mean(x)), float(np.std(x, ddof=1))


def mle_variance(x):
    return float(np.mean(x)), float(np.var(x))


def mle_one_pass(x):
    x = np.asarray(x, dtype=float)
    return float(x.mean()), float(np.sqrt(np.mean(x ** 2) - np.mean(x) ** 2))


def softmax_no_max(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_global_max(x):
    e = np.exp(x - x.max())
    return e / e.sum(axis=-1, keepdims=True)


def softmax_axis0(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def log_softmax_of_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.log(e / e.sum(axis=-1, keepdims=True))  # log(0) = -inf for tiny probabilities


def log_softmax_no_max(x):
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def log_softmax_forgets_max(x):
    m = x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def ce_log_of_softmax(logits, targets):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(targets)), targets])))


def ce_sum(logits, targets):
    m = logits.max(axis=-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
    return float(-np.sum(logp[np.arange(len(targets)), targets]))


def ce_wrong_indexing(logits, targets):
    m = logits.max(axis=-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
    return float(-np.mean(logp[:, targets]))


def entropy_naive(p):
    return -(p * np.log(p)).sum(axis=-1)


def entropy_log2(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=-1)


def entropy_all_axes(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum()


def kl_swapped(p, q):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(q > 0, q * (np.log(q) - np.log(p)), 0.0).sum(axis=-1)


def kl_naive(p, q):
    return (p * np.log(p / q)).sum(axis=-1)


def kl_epsilon(p, q):
    eps = 1e-12
    return (p * (np.log(p + eps) - np.log(q + eps))).sum(axis=-1)


def kl_log2(p, q):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * (np.log2(p) - np.log2(q)), 0.0).sum(axis=-1)


def kl_ratio(p, q):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(p > 0, p * np.log(p / q), 0.0).sum(axis=-1)  # p / q overflows for q = 1e-310


def temp_multiplies(logits, temperature, num_samples, rng):
    z = logits * temperature
    e = np.exp(z - z.max())
    return rng.choice(len(logits), size=num_samples, p=e / e.sum())


def temp_no_max(logits, temperature, num_samples, rng):
    if temperature == 0:
        return np.full(num_samples, np.argmax(logits))
    e = np.exp(logits / temperature)
    return rng.choice(len(logits), size=num_samples, p=e / e.sum())


def temp_no_greedy(logits, temperature, num_samples, rng):
    z = logits / temperature  # T = 0: division by zero
    e = np.exp(z - z.max())
    return rng.choice(len(logits), size=num_samples, p=e / e.sum())


def temp_ignored(logits, temperature, num_samples, rng):
    e = np.exp(logits - logits.max())
    return rng.choice(len(logits), size=num_samples, p=e / e.sum())


def boot_without_replacement(correct, num_resamples=2000, alpha=0.05, rng=None):
    c = np.asarray(correct, dtype=float)
    accs = [rng.choice(c, size=len(c), replace=False).mean() for _ in range(num_resamples)]
    return tuple(np.percentile(accs, [100 * alpha / 2, 100 * (1 - alpha / 2)]))


def boot_alpha_not_halved(correct, num_resamples=2000, alpha=0.05, rng=None):
    c = np.asarray(correct, dtype=float)
    accs = c[rng.integers(0, len(c), size=(num_resamples, len(c)))].mean(axis=1)
    return tuple(np.percentile(accs, [100 * alpha, 100 * (1 - alpha)]))


def boot_mean_plus_std(correct, num_resamples=2000, alpha=0.05, rng=None):
    c = np.asarray(correct, dtype=float)
    accs = c[rng.integers(0, len(c), size=(num_resamples, len(c)))].mean(axis=1)
    return accs.mean() - accs.std(), accs.mean() + accs.std()


def boot_counts(correct, num_resamples=2000, alpha=0.05, rng=None):
    c = np.asarray(correct, dtype=float)
    totals = c[rng.integers(0, len(c), size=(num_resamples, len(c)))].sum(axis=1)
    return tuple(np.percentile(totals, [100 * alpha / 2, 100 * (1 - alpha / 2)]))


MUTANTS = {
    "bernoulli_log_likelihood": [bern_naive, bern_log2, bern_mean, bern_clipped],
    "gaussian_log_likelihood": [gauss_log_pdf, gauss_no_log_sigma, gauss_sigma_not_squared],
    "gaussian_mle": [mle_unbiased, mle_variance, mle_one_pass],
    "stable_softmax": [softmax_no_max, softmax_global_max, softmax_axis0],
    "stable_log_softmax": [log_softmax_of_softmax, log_softmax_no_max, log_softmax_forgets_max],
    "cross_entropy_from_logits": [ce_log_of_softmax, ce_sum, ce_wrong_indexing],
    "categorical_entropy": [entropy_naive, entropy_log2, entropy_all_axes],
    "categorical_kl": [kl_swapped, kl_naive, kl_epsilon, kl_log2, kl_ratio],
    "sample_with_temperature": [temp_multiplies, temp_no_max, temp_no_greedy, temp_ignored],
    "bootstrap_accuracy_ci": [boot_without_replacement, boot_alpha_not_halved, boot_mean_plus_std, boot_counts],
}

# --------------------------------------------------------------------------- correct alternatives


def bern_loop(y, p):
    total = 0.0
    for label, prob in zip(np.ravel(y), np.ravel(p)):
        prob = float(prob)
        if label:
            total += math.log(prob) if prob > 0 else -math.inf
        else:
            total += math.log1p(-prob) if prob < 1 else -math.inf
    return total


def bern_masks(y, p):
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return float(np.log(p[y]).sum() + np.log(1 - p[~y]).sum())


def gauss_via_z(x, mu, sigma):
    z = (np.asarray(x, dtype=float) - mu) / sigma
    n = z.size
    return float(-n * math.log(sigma * math.sqrt(2 * math.pi)) - 0.5 * np.dot(z.ravel(), z.ravel()))


def mle_np_std(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()), float(x.std())


def mle_loop(x):
    values = [float(v) for v in np.ravel(x)]
    mu = sum(values) / len(values)
    return mu, math.sqrt(sum((v - mu) ** 2 for v in values) / len(values))


def softmax_via_logsumexp(x):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    return np.exp(x - (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))))


def softmax_rows_loop(x):
    flat = np.asarray(x, dtype=float).reshape(-1, x.shape[-1])
    out = np.empty_like(flat)
    for i, row in enumerate(flat):
        e = np.exp(row - row.max())
        out[i] = e / e.sum()
    return out.reshape(x.shape)


def log_softmax_logaddexp(x):
    x = np.asarray(x, dtype=np.float64)
    lse = np.logaddexp.reduce(x, axis=-1, keepdims=True)
    return x - lse


def ce_gather_loop(logits, targets):
    total = 0.0
    for row, t in zip(np.asarray(logits, dtype=float), targets):
        m = row.max()
        total += -(row[t] - m - math.log(np.exp(row - m).sum()))
    return total / len(targets)


def ce_one_hot(logits, targets):
    logits = np.asarray(logits, dtype=np.float64)
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    one_hot = np.eye(logits.shape[1])[targets]
    return float(-(one_hot * logp).sum() / len(targets))


def entropy_masked(p):
    p = np.asarray(p, dtype=np.float64)
    safe = np.where(p > 0, p, 1.0)  # log(1) = 0, so zero entries drop out
    return -(p * np.log(safe)).sum(axis=-1)


def kl_masked_sum(p, q):
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    out = np.zeros(p.shape[:-1])
    for idx in np.ndindex(p.shape[:-1]):
        total = 0.0
        for pi, qi in zip(p[idx], q[idx]):
            if pi > 0:
                total += math.inf if qi == 0 else pi * (math.log(pi) - math.log(qi))
        out[idx] = total
    return out


def kl_cross_entropy_minus_entropy(p, q):
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logq = np.log(q)
        logp = np.log(np.where(p > 0, p, 1.0))
    cross = -np.where(p > 0, p * logq, 0.0).sum(axis=-1)
    ent = -(p * logp).sum(axis=-1)
    return cross - ent


def temp_gumbel_max(logits, temperature, num_samples, rng):
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return np.full(num_samples, int(np.argmax(logits)))
    g = rng.gumbel(size=(num_samples, len(logits)))
    return np.argmax(logits / temperature + g, axis=1)


def temp_inverse_cdf(logits, temperature, num_samples, rng):
    if temperature == 0:
        return np.zeros(num_samples, dtype=int) + np.argmax(logits)
    z = np.asarray(logits, dtype=float) / temperature
    p = np.exp(z - z.max())
    cdf = np.cumsum(p / p.sum())
    out = np.searchsorted(cdf, rng.random(num_samples), side="right")
    return np.minimum(out, len(cdf) - 1)


def boot_choice_loop(correct, num_resamples=2000, alpha=0.05, rng=None):
    c = np.asarray(correct, dtype=float)
    accs = np.empty(num_resamples)
    for b in range(num_resamples):
        accs[b] = rng.choice(c, size=c.size, replace=True).mean()
    return float(np.quantile(accs, alpha / 2)), float(np.quantile(accs, 1 - alpha / 2))


def boot_sorted_order_stats(correct, num_resamples=2000, alpha=0.05, rng=None):
    c = np.asarray(correct, dtype=float)
    n = c.size
    counts = rng.binomial(n, c.mean(), size=num_resamples)  # the number correct in a resample is binomial
    accs = np.sort(counts / n)
    lo = accs[int(np.floor(alpha / 2 * (num_resamples - 1)))]
    hi = accs[int(np.ceil((1 - alpha / 2) * (num_resamples - 1)))]
    return lo, hi


ALTERNATIVES = {
    "bernoulli_log_likelihood": [bern_loop, bern_masks],
    "gaussian_log_likelihood": [gauss_via_z],
    "gaussian_mle": [mle_np_std, mle_loop],
    "stable_softmax": [softmax_via_logsumexp, softmax_rows_loop],
    "stable_log_softmax": [log_softmax_logaddexp],
    "cross_entropy_from_logits": [ce_gather_loop, ce_one_hot],
    "categorical_entropy": [entropy_masked],
    "categorical_kl": [kl_masked_sum, kl_cross_entropy_minus_entropy],
    "sample_with_temperature": [temp_gumbel_max, temp_inverse_cdf],
    "bootstrap_accuracy_ci": [boot_choice_loop, boot_sorted_order_stats],
}


# --------------------------------------------------------------------------- contract-class mutants (issue 12)


def ce_global_max(logits, targets):
    # shifts by the max of the whole batch: a row far below it underflows to log(0)
    logits = np.asarray(logits, dtype=np.float64)
    z = logits - logits.max()
    with np.errstate(divide="ignore"):
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(targets)), targets].mean())


def temp_global_random(logits, temperature, num_samples, rng):
    # right distribution, but drawn from NumPy's global generator instead of `rng`
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return np.full(num_samples, int(np.argmax(logits)))
    z = logits / temperature
    p = np.exp(z - z.max())
    return np.random.choice(len(p), size=num_samples, p=p / p.sum())


def temp_reseeded(logits, temperature, num_samples, rng):
    # "for reproducibility" makes its own generator: every call gives the same samples
    return temp_gumbel_max(logits, temperature, num_samples, np.random.default_rng(0))


def temp_never_last(logits, temperature, num_samples, rng):
    # inverse CDF with an off-by-one clip: the last token is never drawn
    out = temp_inverse_cdf(logits, temperature, num_samples, rng)
    return np.minimum(out, len(logits) - 2)


def boot_ignores_num_resamples(correct, num_resamples=2000, alpha=0.05, rng=None):
    c = np.asarray(correct, dtype=float)
    accs = c[rng.integers(0, len(c), size=(2000, len(c)))].mean(axis=1)  # always 2000
    return tuple(np.percentile(accs, [100 * alpha / 2, 100 * (1 - alpha / 2)]))


def boot_fresh_generator(correct, num_resamples=2000, alpha=0.05, rng=None):
    return boot_alpha_ok(correct, num_resamples, alpha, np.random.default_rng())  # ignores the rng passed in


def boot_alpha_ok(correct, num_resamples, alpha, rng):
    c = np.asarray(correct, dtype=float)
    accs = c[rng.integers(0, len(c), size=(num_resamples, len(c)))].mean(axis=1)
    return tuple(np.percentile(accs, [100 * alpha / 2, 100 * (1 - alpha / 2)]))


def boot_never_last(correct, num_resamples=2000, alpha=0.05, rng=None):
    c = np.asarray(correct, dtype=float)
    accs = c[rng.integers(0, len(c) - 1, size=(num_resamples, len(c)))].mean(axis=1)  # never draws item n-1
    return tuple(np.percentile(accs, [100 * alpha / 2, 100 * (1 - alpha / 2)]))


MUTANTS["cross_entropy_from_logits"].append(ce_global_max)
MUTANTS["sample_with_temperature"] += [temp_global_random, temp_reseeded, temp_never_last]
def boot_rounded_indices(correct, num_resamples=2000, alpha=0.05, rng=None):
    c = np.asarray(correct, dtype=float)
    idx = np.round(rng.random((num_resamples, len(c))) * (len(c) - 1)).astype(int)  # ends drawn half as often
    return tuple(np.percentile(c[idx].mean(axis=1), [100 * alpha / 2, 100 * (1 - alpha / 2)]))


def boot_skips_first(correct, num_resamples=2000, alpha=0.05, rng=None):
    c = np.asarray(correct, dtype=float)
    idx = rng.integers(1, len(c) + 1, size=(num_resamples, len(c))) % len(c)  # wraps around: fine
    idx = np.where(idx == 0, 1, idx)  # "avoid index 0": never draws the first question
    return tuple(np.percentile(c[idx].mean(axis=1), [100 * alpha / 2, 100 * (1 - alpha / 2)]))


MUTANTS["bootstrap_accuracy_ci"] += [boot_ignores_num_resamples, boot_fresh_generator, boot_never_last,
                                     boot_rounded_indices, boot_skips_first]


def boot_upper_full_alpha(correct, num_resamples=2000, alpha=0.05, rng=None):
    c = np.asarray(correct, dtype=float)
    accs = c[rng.integers(0, len(c), size=(num_resamples, len(c)))].mean(axis=1)
    return tuple(np.percentile(accs, [100 * alpha / 2, 100 * (1 - alpha)]))  # upper tail cut by alpha, not alpha/2


MUTANTS["bootstrap_accuracy_ci"].append(boot_upper_full_alpha)
