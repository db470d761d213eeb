"""Checks for chapter 17_research_methods. Each `check_<exercise>(obj, thorough=False)`.

The harness is driven by recording experiments (unsorted seeds, metrics in a different order on every
run, an experiment that reuses one dict). Intervals, controls and corrections are compared with the
reference on generated inputs that contain the awkward cases (ties, p-values exactly on a threshold,
constant data, unnormalised directions); the random ones draw from a generator the check seeds and must
match the reference draw for draw and leave that generator where the reference leaves it.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from ..reference import research_methods as ref
from ._core import (Case, CheckFailure, Mistake, NotAttempted, call, compare, describe, guard, likely_cause,
                    non_contiguous, rng_for, run_check)

__all__ = ["check_preregistration", "check_seed_sweep", "check_t_interval", "check_bootstrap_ci",
           "check_random_direction_control", "check_permutation_pvalue", "check_holm",
           "check_benjamini_hochberg"]

_TEXT_FIELDS = ("hypothesis", "metric", "prediction", "refuted_if", "confirmation_data")


# --------------------------------------------------------------------------- pre-registration

def _as_mapping(prereg: Any) -> dict[str, Any] | None:
    if isinstance(prereg, dict):
        return dict(prereg)
    if dataclasses.is_dataclass(prereg) and not isinstance(prereg, type):
        return dataclasses.asdict(prereg)
    if hasattr(prereg, "__dict__") and not callable(prereg):
        return dict(vars(prereg))
    return None


def check_preregistration(prereg: Any, thorough: bool = False) -> None:
    """PREREGISTRATION: a dict (or dataclass) with every field filled; its content is graded by a person."""
    __tracebackhide__ = True
    guard()
    name = "preregistration"
    fields = ", ".join(ref.PREREGISTRATION_FIELDS)
    if prereg is None or prereg is Ellipsis:
        raise NotAttempted(f"`{name}` is not attempted yet: fill in PREREGISTRATION ({fields}).")
    data = _as_mapping(prereg)
    if data is None:
        raise CheckFailure(f"`PREREGISTRATION` should be a dict (or a dataclass) with the fields {fields}; "
                           f"got {describe(prereg)}")
    texts = [data.get(f) for f in _TEXT_FIELDS]
    if all(not (isinstance(t, str) and t.strip()) for t in texts) and data.get("refutation_threshold") is None:
        raise NotAttempted(f"`{name}` is not attempted yet: fill in every field of PREREGISTRATION.")
    missing = [f for f in ref.PREREGISTRATION_FIELDS if f not in data]
    if missing:
        raise CheckFailure(f"`PREREGISTRATION` has no {', '.join(repr(m) for m in missing)}: a pre-registration "
                           f"needs all of {fields}.")
    for field in _TEXT_FIELDS:
        value = data[field]
        if not isinstance(value, str) or len(value.strip()) < 15 or value.strip().strip(".") == "":
            raise CheckFailure(f"`PREREGISTRATION[{field!r}]` should be a sentence of your own (at least 15 "
                               f"characters); got {value!r}")
    threshold = data["refutation_threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(threshold)):
        raise CheckFailure("`PREREGISTRATION['refutation_threshold']` should be the number that decides the "
                           f"outcome (e.g. 0.85 for '85 % of features'), written as a number; got {threshold!r}. "
                           "A threshold in words can be reinterpreted after the fact; a number cannot.")
    seeds = data["n_seeds"]
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 3:
        raise CheckFailure("`PREREGISTRATION['n_seeds']` should be a whole number of seeds, at least 3 (one or two "
                           f"runs cannot show a spread); got {seeds!r}")
    print(f"✓ {name}: every field is filled in (a person grades what it says)")


# --------------------------------------------------------------------------- the harness

class _Recorder:
    """An experiment that records the seeds it is called with and returns metrics computed from them."""

    def __init__(self, metrics: Callable[[int], dict[str, Any]], reuse_dict: bool = False) -> None:
        self.metrics, self.calls, self.reuse = metrics, [], reuse_dict
        self._shared: dict[str, Any] = {}

    def __call__(self, seed: int) -> dict[str, Any]:
        self.calls.append(int(seed))
        out = self.metrics(int(seed))
        if self.reuse:
            self._shared.clear()
            self._shared.update(out)
            return self._shared
        return out


def _metrics_plain(seed: int) -> dict[str, Any]:
    return {"recovered": seed % 7 + 3, "fraction": (seed % 7 + 3) / 14, "mse": 0.01 * math.sqrt(seed + 1)}


def _metrics_shuffled_keys(seed: int) -> dict[str, Any]:
    items = [("score", np.float32(seed / 3)), ("formed", bool(seed % 2)), ("step", float("nan") if seed == 4 else
                                                                            10 * seed)]
    return dict(items[::-1] if seed % 2 else items)


def _metrics_changing(bad_at: int) -> Callable[[int], dict[str, Any]]:
    def metrics(seed: int) -> dict[str, Any]:
        out = {"a": float(seed), "b": 2.0 * seed}
        if seed == bad_at:
            out["c"] = 1.0
        return out
    return metrics


def _metrics_missing(bad_at: int) -> Callable[[int], dict[str, Any]]:
    def metrics(seed: int) -> dict[str, Any]:
        return {"a": float(seed)} if seed == bad_at else {"a": float(seed), "b": 1.0}
    return metrics


def _expect_value_error(fn: Callable[..., Any], args: tuple, what: str, fix: str) -> None:
    __tracebackhide__ = True
    try:
        fn(*args)
    except ValueError:
        return
    except NotImplementedError:
        raise NotAttempted("`seed_sweep` is not attempted yet: replace `raise NotImplementedError()` with your code, "
                           "run that cell, then run this one again.") from None
    except Exception as exc:
        raise CheckFailure(f"`seed_sweep` raised {type(exc).__name__} ({exc}) on {what}; raise a ValueError "
                           f"instead, with a message that says what is wrong. {fix}") from exc
    raise CheckFailure(f"`seed_sweep` returned normally on {what}; it should raise a ValueError. {fix}")


def check_seed_sweep(fn: Callable[..., Any], thorough: bool = False) -> None:
    """seed_sweep(experiment, seeds) -> {metric: float array [len(seeds)]} in the seeds' order."""
    __tracebackhide__ = True
    guard()
    name = "seed_sweep"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    specs: list[tuple[Any, Callable[[int], dict], bool, str]] = [
        ([3, 0, 7], _metrics_plain, False, "seeds [3, 0, 7] (not sorted)")]
    if thorough:
        specs += [(range(6), _metrics_shuffled_keys, False, "seeds range(6), metrics in a different order on odd "
                                                           "seeds, a NaN at seed 4, a bool and a float32"),
                  (np.array([11, 2, 5, 8]), _metrics_plain, True, "a NumPy array of seeds and an experiment that "
                                                                  "reuses one dict for every run"),
                  ((42,), _metrics_plain, False, "a single seed")]
    for i, (seeds, metrics, reuse, label) in enumerate(specs, 1):
        where = f"case {i} of {len(specs)} ({label})"
        learner_exp, ref_exp = _Recorder(metrics, reuse), _Recorder(metrics, reuse)
        expected = ref.seed_sweep(ref_exp, seeds)
        got = call(fn, name, (learner_exp, seeds), None, where)
        if learner_exp.calls != ref_exp.calls:
            raise CheckFailure(f"`{name}` called the experiment with seeds {learner_exp.calls} on {where}; expected "
                               f"{ref_exp.calls}: once per seed, in the order given (the order is part of the "
                               "record: result i belongs to seeds[i]).")
        if not isinstance(got, dict) or set(got) != set(expected):
            keys = sorted(got) if isinstance(got, dict) else describe(got)
            raise CheckFailure(f"`{name}` should return a dict with one entry per metric, {sorted(expected)}, on "
                               f"{where}; got {keys}")
        for metric in expected:
            if not isinstance(got[metric], np.ndarray):
                raise CheckFailure(f"`{name}`[{metric!r}] should be a NumPy float array on {where}; got "
                                   f"{describe(got[metric])} (np.array(values, dtype=float) makes one)")
            problem = compare(got[metric], expected[metric], rtol=1e-6, atol=1e-9, what=f"[{metric!r}]")
            if problem is None and got[metric].dtype.kind != "f":
                problem = f"[{metric!r}]: expected a float array, got dtype {got[metric].dtype}"
            if problem:
                cause = ""
                if reuse and np.allclose(np.asarray(got[metric], float), expected[metric][-1], equal_nan=True):
                    cause = ("\n  Likely cause: you kept the dicts and read them at the end; this experiment reuses "
                             "one dict, so read each run's numbers as soon as it returns.")
                raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}{cause}")
    fixes = [((_Recorder(_metrics_plain), [1, 2, 1]), "seeds [1, 2, 1]",
              "A repeated seed repeats a run; it is not a replication. Check the seeds before running anything."),
             ((_Recorder(_metrics_plain), []), "no seeds", "An empty sweep has no spread to report.")]
    if thorough:
        fixes += [((_Recorder(_metrics_changing(5)), [4, 5, 6]), "an experiment that adds a metric at seed 5",
                   "Compare every run's metric names with the first run's."),
                  ((_Recorder(_metrics_missing(6)), [4, 5, 6]), "an experiment that drops a metric at seed 6",
                   "Compare every run's metric names with the first run's.")]
    for args, what, fix in fixes:
        _expect_value_error(fn, args, what, fix)
    print(f"✓ {name}: all {len(specs) + len(fixes)} {'thorough' if thorough else 'quick'} checks passed")


# --------------------------------------------------------------------------- intervals

def _t_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 171)
    cases = [Case((np.array([8.0, 10.0, 12.0, 11.0, 11.0]),), "five seeds' recovered counts"),
             Case((rng.normal(3.0, 2.0, 12), 0.9), "12 values, confidence 0.9")]
    if thorough:
        cases += [Case((np.array([2.0, 5.0]),), "two values (1 degree of freedom: a very wide interval)"),
                  Case((rng.integers(0, 20, 30), 0.99), "30 integer values, confidence 0.99"),
                  Case((np.full(6, 4.0),), "six equal values (zero width)"),
                  Case((non_contiguous(rng.normal(0, 1e-3, (1, 9)))[0], 0.5), "tiny values, strided, confidence 0.5"),
                  Case((rng.normal(100, 30, 400),), "400 values, keyword confidence", {"confidence": 0.8})]
    return cases


def _t_mistakes() -> list[Mistake]:
    from statistics import NormalDist

    def z_based(values, confidence=0.95):
        x = np.asarray(values, float)
        half = NormalDist().inv_cdf((1 + confidence) / 2) * x.std(ddof=1) / math.sqrt(x.size)
        return float(x.mean()), float(x.mean() - half), float(x.mean() + half)

    def population_sd(values, confidence=0.95):
        x = np.asarray(values, float)
        m, lo, hi = ref.t_interval(x, confidence)
        scale = math.sqrt((x.size - 1) / x.size)
        return m, m - (m - lo) * scale, m + (hi - m) * scale

    def one_tail(values, confidence=0.95):
        from scipy import stats
        x = np.asarray(values, float)
        half = stats.t.ppf(confidence, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
        return float(x.mean()), float(x.mean() - half), float(x.mean() + half)

    def n_dof(values, confidence=0.95):
        from scipy import stats
        x = np.asarray(values, float)
        half = stats.t.ppf((1 + confidence) / 2, x.size) * x.std(ddof=1) / math.sqrt(x.size)
        return float(x.mean()), float(x.mean() - half), float(x.mean() + half)

    return [Mistake("you used the normal distribution's 1.96; with a handful of seeds use Student's t with n - 1 "
                    "degrees of freedom (scipy.stats.t.ppf).", z_based),
            Mistake("you used the population standard deviation (ddof=0); use ddof=1.", population_sd),
            Mistake("you put all of 1 - confidence in one tail; a two-sided interval uses the (1 + confidence) / 2 "
                    "quantile.", one_tail),
            Mistake("you used n degrees of freedom; the sample standard deviation leaves n - 1.", n_dof)]


def check_t_interval(fn: Callable[..., Any], thorough: bool = False) -> None:
    """t_interval(values, confidence=0.95) -> (mean, low, high)."""
    __tracebackhide__ = True
    guard()
    if callable(fn):
        try:
            fn(np.array([3.0]))
        except ValueError:
            pass
        except NotImplementedError:
            raise NotAttempted("`t_interval` is not attempted yet: replace `raise NotImplementedError()` with your "
                               "code, run that cell, then run this one again.") from None
        except Exception as exc:
            raise CheckFailure(f"`t_interval` raised {type(exc).__name__} ({exc}) for a single value; raise a "
                               "ValueError saying that an interval needs at least two values.") from exc
        else:
            raise CheckFailure("`t_interval` returned an interval for a single value; one value has no spread, so "
                               "raise a ValueError instead of returning nan (or a zero-width interval).")
    run_check("t_interval", fn, ref.t_interval, _t_cases(thorough), rtol=1e-6, atol=1e-10, thorough=thorough,
              mistakes=_t_mistakes())


def _draw_check(name: str, fn: Callable[..., Any], reference: Callable[..., Any], specs: list[tuple[tuple, int, str]],
                thorough: bool, mistakes: list[Mistake], recipe: str, atol: float = 1e-10) -> None:
    """Compare a random function with the reference draw for draw (same seed) and the generator's end state."""
    __tracebackhide__ = True
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    for i, (args, seed, label) in enumerate(specs, 1):
        where = f"case {i} of {len(specs)} ({label}; generator seeded {seed})"
        pristine = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        g_ref, g_learner = np.random.default_rng(seed), np.random.default_rng(seed)
        expected = reference(*pristine, g_ref)
        got = call(fn, name, (*args, g_learner), None, where)
        for before, after in zip(pristine, args):
            if isinstance(before, np.ndarray) and not np.array_equal(before, after, equal_nan=before.dtype.kind == "f"):
                raise CheckFailure(f"`{name}` changed one of its input arrays in place on {where}: work on a copy.")
        if isinstance(expected, tuple):
            expected_cmp, got_cmp = expected, tuple(got) if isinstance(got, (tuple, list)) else got
        else:
            expected_cmp, got_cmp = expected, got
        problem = compare(got_cmp, expected_cmp, rtol=1e-9, atol=atol)
        if problem:
            cause = likely_cause(mistakes, got_cmp,
                                 lambda m: m.fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in pristine],
                                                np.random.default_rng(seed)),
                                 lambda g, w: compare(g, w, rtol=1e-9, atol=atol), expected)
            raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}{cause}\n  {recipe}")
        if g_ref.bit_generator.state != g_learner.bit_generator.state:
            raise CheckFailure(f"`{name}` on {where} gave the right numbers but did not leave the `generator` where the "
                               f"reference does: draw from the generator you are given, exactly as described. {recipe}")
    print(f"✓ {name}: all {len(specs)} {'thorough' if thorough else 'quick'} checks passed")


def check_bootstrap_ci(fn: Callable[..., Any], thorough: bool = False) -> None:
    """bootstrap_ci(values, n_boot, confidence, generator) -> (low, high)."""
    __tracebackhide__ = True
    rng = rng_for(thorough, 172)
    specs = [((rng.normal(0.7, 0.1, 10), 2000, 0.95), 0, "ten recovery fractions, 2000 resamples")]
    if thorough:
        specs += [((rng.normal(0, 1, 40), 500, 0.9), 1, "40 values, 500 resamples, confidence 0.9"),
                  ((rng.integers(0, 3, 25), 301, 0.5), 2, "25 integers, 301 resamples, confidence 0.5"),
                  ((np.array([1.0, 1000.0, 1.0, 1.0]), 50, 0.99), 3, "an outlier, 50 resamples, confidence 0.99"),
                  ((np.full(7, 2.5), 100, 0.95), 4, "seven equal values (every resample has the same mean)"),
                  ((non_contiguous(rng.normal(5, 2, (1, 12)))[0], 7, 0.8), 5, "strided values, only 7 resamples")]

    def swapped_quantiles(values, n_boot, confidence, generator):
        x = np.asarray(values, float)
        means = x[generator.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
        return tuple(float(q) for q in np.quantile(means, [confidence / 2, 1 - confidence / 2]))

    def without_replacement(values, n_boot, confidence, generator):
        x = np.asarray(values, float)
        means = np.array([x[generator.permutation(x.size)].mean() for _ in range(n_boot)])
        return tuple(float(q) for q in np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2]))

    _draw_check("bootstrap_ci", fn, ref.bootstrap_ci, specs, thorough, [
        Mistake("you resampled without replacement (a permutation has the same mean every time); draw indices "
                "with replacement.", without_replacement),
        Mistake("you took the confidence/2 and 1 - confidence/2 quantiles; a 95 % interval runs from the 2.5 % to "
                "the 97.5 % quantile: (1 - confidence) / 2 and (1 + confidence) / 2.", swapped_quantiles)],
        "Recipe: one index array generator.integers(0, n, size=(n_boot, n)), the mean of each row, then "
        "np.quantile at (1 - confidence) / 2 and (1 + confidence) / 2.")


# --------------------------------------------------------------------------- controls

def check_random_direction_control(fn: Callable[..., Any], thorough: bool = False) -> None:
    """random_direction_control(true_dirs, n_latents, n_draws, threshold, generator) -> int array [n_draws]."""
    __tracebackhide__ = True
    rng = rng_for(thorough, 173)

    def dirs(n: int, d: int, scale: bool = False) -> np.ndarray:
        x = rng.normal(size=(n, d))
        return x * rng.uniform(0.1, 5.0, (n, 1)) if scale else x / np.linalg.norm(x, axis=1, keepdims=True)

    specs = [((dirs(6, 3), 8, 50, 0.8), 0, "6 unit directions in 3-D, 8 latents, 50 draws, threshold 0.8")]
    if thorough:
        specs += [((dirs(14, 5, scale=True), 20, 200, 0.7), 1, "14 directions of very different lengths in 5-D, "
                                                                "20 latents, threshold 0.7"),
                  ((dirs(10, 4), 3, 40, 0.5), 2, "10 directions in 4-D, 3 latents, threshold 0.5"),
                  ((dirs(4, 2), 5, 30, 0.95), 3, "4 directions in 2-D, 5 latents, threshold 0.95"),
                  ((dirs(5, 3), 2, 1, 0.6), 4, "a single draw"),
                  ((np.vstack([dirs(3, 3), -dirs(3, 3)]), 6, 100, 0.85), 5, "directions and their opposites"),
                  ((np.array([[2.0], [-0.5], [3.0]]), 2, 20, 1.0), 6, "1-D: every cosine is exactly +1 or -1, "
                                                                       "threshold 1.0 (a cosine equal to it counts)")]

    def unnormalised_rows(true_dirs, n_latents, n_draws, threshold, generator):
        true = np.asarray(true_dirs, float)
        true = true / np.linalg.norm(true, axis=1, keepdims=True)
        rows = generator.standard_normal((n_draws, n_latents, true.shape[1]))
        return (np.einsum("td,nld->ntl", true, rows).max(axis=2) >= threshold).sum(axis=1)

    def absolute(true_dirs, n_latents, n_draws, threshold, generator):
        true = np.asarray(true_dirs, float)
        true = true / np.linalg.norm(true, axis=1, keepdims=True)
        rows = generator.standard_normal((n_draws, n_latents, true.shape[1]))
        rows = rows / np.linalg.norm(rows, axis=2, keepdims=True)
        return (np.abs(np.einsum("td,nld->ntl", true, rows)).max(axis=2) >= threshold).sum(axis=1)

    def per_latent(true_dirs, n_latents, n_draws, threshold, generator):
        true = np.asarray(true_dirs, float)
        true = true / np.linalg.norm(true, axis=1, keepdims=True)
        rows = generator.standard_normal((n_draws, n_latents, true.shape[1]))
        rows = rows / np.linalg.norm(rows, axis=2, keepdims=True)
        return (np.einsum("td,nld->ntl", true, rows).max(axis=1) >= threshold).sum(axis=1)

    _draw_check("random_direction_control", fn, ref.random_direction_control, specs, thorough, [
        Mistake("you compared raw Gaussian rows with the directions; normalise every random row to unit length "
                "first (a cosine similarity needs unit vectors on both sides).", unnormalised_rows),
        Mistake("you used |cosine|; a decoder row pointing the opposite way does not recover a feature (the SAE's "
                "latents are non-negative), so use the signed cosine.", absolute),
        Mistake("you counted latents that match some direction; count *true directions* that some latent "
                "matches (the max over latents, for each direction).", per_latent)],
        "Recipe: rows = generator.standard_normal((n_draws, n_latents, d)), each row and each true direction "
        "scaled to unit length, then for each draw count the true directions whose best cosine is >= threshold.",
        atol=0.0)


def check_permutation_pvalue(fn: Callable[..., Any], thorough: bool = False) -> None:
    """permutation_pvalue(values, labels, n_perm, generator) -> (effect, p)."""
    __tracebackhide__ = True
    rng = rng_for(thorough, 174)

    def sparse_latent(n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.random(n) < 0.5
        values = np.where(rng.random(n) < 0.3 + 0.3 * labels, rng.uniform(0, 1, n) + shift * labels, 0.0)
        return values, labels

    v0, l0 = sparse_latent(40, 0.3)
    specs = [((v0, l0, 99), 0, "a latent that fires more when the label is on, 99 shuffles")]
    if thorough:
        v1, l1 = sparse_latent(60, 0.0)
        specs += [((v1, l1, 199), 1, "no real effect (a true null), 199 shuffles"),
                  ((np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), np.array([1, 0, 1, 0, 1, 0]), 50), 2,
                   "labels as 0/1 integers; many shuffles tie the observed effect exactly"),
                  ((np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), np.array([True, False] * 4), 40), 3,
                   "mostly zeros: ties everywhere"),
                  ((-v0[:30], l0[:30], 9), 4, "a negative effect, only 9 shuffles (p can't go below 0.1)"),
                  ((np.zeros(10), np.array([True] * 5 + [False] * 5), 20), 5, "a latent that never fires: p = 1"),
                  ((np.array([1.0, 1.0 - 3e-8, 0.0, 0.0]), np.array([True, False, False, False]), 40), 6,
                   "one shuffle's effect is 4e-8 below the observed one: not a tie (the tolerance is 1e-9)")]

    def variant(signed: bool = False, plus_one: bool = True, strict: bool = False) -> Callable[..., Any]:
        """The permutation test with one known mistake switched on."""
        def wrong(values, labels, n_perm, generator):
            x, lab = np.asarray(values, float), np.asarray(labels).astype(bool)
            size = (lambda e: e) if signed else abs
            obs = x[lab].mean() - x[~lab].mean()
            hits = 0
            for _ in range(n_perm):
                s = generator.permutation(lab)
                e = size(x[s].mean() - x[~s].mean())
                hits += e > size(obs) + 1e-9 if strict else e >= size(obs) - 1e-9
            return float(obs), (hits + plus_one) / (n_perm + plus_one)
        return wrong

    one_sided, no_plus_one, strict = variant(signed=True), variant(plus_one=False), variant(strict=True)

    _draw_check("permutation_pvalue", fn, ref.permutation_pvalue, specs, thorough, [
        Mistake("you counted only shuffles with a larger *signed* effect; the test is two-sided, so compare "
                "absolute values.", one_sided),
        Mistake("you left out the +1s: p = (1 + extreme) / (n_perm + 1) counts the observed labelling as one of "
                "the possibilities (and never gives p = 0).", no_plus_one),
        Mistake("you counted only shuffles *more* extreme than observed; ties (|shuffled| >= |observed| - 1e-9) "
                "count too.", strict)],
        "Recipe: effect = mean(values[labels]) - mean(values[~labels]); for each of n_perm rounds "
        "shuffled = generator.permutation(labels) and the same effect with the shuffled labels; p = "
        "(1 + #{|shuffled effect| >= |effect| - 1e-9}) / (n_perm + 1).")


# --------------------------------------------------------------------------- multiple comparisons

def _bool_compare(got: Any, expected: np.ndarray, case: Case) -> str | None:
    arr = np.asarray(got) if isinstance(got, (np.ndarray, list, tuple)) else None
    if arr is None or arr.shape != expected.shape:
        return f"expected a bool array of shape {expected.shape}, got {describe(got)}"
    if arr.dtype != bool:
        return f"expected a bool array (True = reject), got dtype {arr.dtype}"
    if np.array_equal(arr, expected):
        return None
    wrong = np.nonzero(arr != expected)[0]
    p = np.asarray(case.args[0], float).reshape(-1)
    return (f"{wrong.size} decision(s) differ, e.g. p = {p[wrong[0]]:.6g} (position {int(wrong[0])}): expected "
            f"{bool(expected[wrong[0]])}, got {bool(arr[wrong[0]])}\n    expected rejections at {np.nonzero(expected)[0].tolist()}"
            f"\n    got rejections at      {np.nonzero(arr)[0].tolist()}")


def _correction_cases(thorough: bool, kind: str) -> list[Case]:
    rng = rng_for(thorough, 175 if kind == "holm" else 176)
    mixed = np.concatenate([rng.uniform(0, 0.004, 4), rng.uniform(0, 1, 16)])
    cases = [Case((rng.permutation(mixed),), "20 p-values, 4 small ones, unsorted"),
             Case((np.array([0.001, 0.03, 0.03, 0.9]),), "ties, and a p that would pass a later threshold")]
    if thorough:
        cases += [Case((np.array([0.01, 0.04, 0.045]),), "three p-values near alpha"),
                  Case((np.array([0.3, 0.125, 0.2, 0.6]), 0.5), "alpha 0.5; p-values exactly on the thresholds"),
                  Case((np.array([0.9, 0.125, 0.7, 0.8]), 0.5), "alpha 0.5; the only p-value under its line is "
                                                                "exactly on it (alpha / m = 1 * alpha / m = 0.125)"),
                  Case((np.array([0.0, 1.0, 0.5, 0.0]),), "exact zeros and ones"),
                  Case((np.array([0.04]),), "a single test"),
                  Case((rng.uniform(0.2, 1, 12),), "nothing significant"),
                  Case((rng.uniform(0, 1e-4, 8), 0.01), "everything significant, alpha 0.01"),
                  Case(([0.02, 0.005, 0.2, 0.011, 0.03],), "a Python list"),
                  Case((np.array([0.004, 0.0125, 0.02, 0.03, 0.5, 0.045]),), "keyword alpha", {"alpha": 0.1})]
    return cases


def _sorted_back(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def wrong(p, alpha=0.05):
        return fn(np.sort(np.asarray(p, float)), alpha)
    return wrong


def check_holm(fn: Callable[..., Any], thorough: bool = False) -> None:
    """holm(p_values, alpha=0.05) -> bool array [m], True = reject."""
    __tracebackhide__ = True

    def no_stop(p, alpha=0.05):
        p = np.asarray(p, float)
        rank = np.argsort(np.argsort(p, kind="stable"), kind="stable")
        return p <= alpha / (p.size - rank)

    def bonferroni(p, alpha=0.05):
        p = np.asarray(p, float)
        return p <= alpha / p.size

    run_check("holm", fn, ref.holm, _correction_cases(thorough, "holm"), compare_fn=_bool_compare,
              thorough=thorough, mistakes=[
                  Mistake("you kept testing after the first p-value that failed; Holm stops there (every larger "
                          "p-value is kept too).", no_stop),
                  Mistake("you used Bonferroni (alpha / m for every test); Holm loosens the threshold step by step: "
                          "alpha / m, alpha / (m - 1), ...", bonferroni),
                  Mistake("your decisions are in sorted order; return them in the order of the input p-values.",
                          _sorted_back(ref.holm))])


def check_benjamini_hochberg(fn: Callable[..., Any], thorough: bool = False) -> None:
    """benjamini_hochberg(p_values, alpha=0.05) -> bool array [m], True = reject."""
    __tracebackhide__ = True

    def step_down(p, alpha=0.05):
        p = np.asarray(p, float)
        order = np.argsort(p, kind="stable")
        out = np.zeros(p.size, bool)
        for i, idx in enumerate(order):
            if p[idx] > alpha * (i + 1) / p.size:
                break
            out[idx] = True
        return out

    def independent(p, alpha=0.05):
        p = np.asarray(p, float)
        rank = np.argsort(np.argsort(p, kind="stable"), kind="stable") + 1
        return p <= alpha * rank / p.size

    run_check("benjamini_hochberg", fn, ref.benjamini_hochberg, _correction_cases(thorough, "bh"),
              compare_fn=_bool_compare, thorough=thorough, mistakes=[
                  Mistake("you stopped at the first p-value above its threshold; Benjamini-Hochberg steps *up*: find "
                          "the largest k with p_(k) <= k alpha / m and reject all k smallest, even ones above their "
                          "own threshold.", step_down),
                  Mistake("you compared each p-value with its own threshold only; reject every p-value up to the "
                          "largest k that passes.", independent),
                  Mistake("your decisions are in sorted order; return them in the order of the input p-values.",
                          _sorted_back(ref.benjamini_hochberg))])
