"""Checks for chapter 13_activation_patching. Each `check_<exercise>(obj, thorough=False)`.

The patching exercises are checked against `transformer_lens.patching` itself (not only against our
reference): the learner's sweep must reproduce `get_act_patch_resid_pre` and
`get_act_patch_attn_head_out_by_pos` to float precision. Their model is handed over the way a
freshly trained or freshly loaded one often is: in training mode, with attention dropout, so a sweep
that forgets `model.eval()` measures noise. TransformerLens is imported lazily.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import functools

import numpy as np
import torch
import torch.nn.functional as F

from ..toys import activation_patching as task
from ..reference import activation_patching as ref
from ..reference import interpretability_tools as ref12
from ._core import Case, Mistake, check_choice, compare, describe, non_contiguous, rng_for, run_check, trust
from .interpretability_tools import ModelCase, run_model_check

__all__ = ["check_ioi_logit_diff", "check_normalised_recovery", "check_patch_resid_by_pos", "check_patch_heads_by_pos",
           "check_select_heads", "check_mean_ablate_heads", "check_effect_confidence_interval", "check_confirm_heads",
           "check_attribution_patch_resid", "check_patching_reading_quiz"]

trust(torch)
trust(F)

# --------------------------------------------------------------------------- hook names


def _explain_hook_names(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The learner's function, with a KeyError about a hook name explained: under TransformerLens 4 a hook
    registered on `blocks.0.hook_resid_pre` is called with `hook.name == "blocks.0.hook_in"`, so a dict
    filled with `d[hook.name] = ...` has no `"blocks.0.hook_resid_pre"` key."""
    if not callable(fn):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyError as exc:
            key = str(exc.args[0]) if exc.args else ""
            if not key.startswith("blocks.") and "hook_" not in key:
                raise
            raise KeyError(
                f"{key!r}. Inside a hook, TransformerLens 4 sets `hook.name` to the bridge's own alias (a hook "
                "registered on 'blocks.0.hook_resid_pre' sees hook.name == 'blocks.0.hook_in'), so a dictionary "
                "filled with `d[hook.name] = ...` does not have the name you registered. Key it by the name you "
                "registered or by the layer, passed into the hook with functools.partial.") from None
    return wrapper


# --------------------------------------------------------------------------- metrics on tensors


def _ioi_logits(rng: np.random.Generator, batch: int, seq: int = ref.SEQ_LEN, scale: float = 3.0,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits = torch.from_numpy(rng.normal(size=(batch, seq, ref.D_VOCAB)) * scale).to(dtype)
    picks = np.stack([rng.choice(len(task.NAME_WORDS), size=2, replace=False) for _ in range(batch)]) + task.FIRST_NAME
    return logits, torch.from_numpy(picks[:, 0]), torch.from_numpy(picks[:, 1])


def _logit_diff_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 131)
    cases = [Case(_ioi_logits(rng, 4), "batch 4, 10 positions"),
             Case(_ioi_logits(rng, 2, seq=3), "batch 2, 3 positions")]
    if thorough:
        logits, io, s = _ioi_logits(rng, 5)
        cases += [Case(_ioi_logits(rng, 1), "a single prompt"),
                  Case(_ioi_logits(rng, 6, seq=1), "one position only"),
                  Case(_ioi_logits(rng, 64, scale=30.0), "64 prompts, large logits"),
                  Case(_ioi_logits(rng, 3, dtype=torch.float64), "float64 logits"),
                  Case((torch.from_numpy(non_contiguous(logits.numpy())), io, s), "non-contiguous logits"),
                  Case((logits, io, io), "IO equal to S (logit difference 0)")]
    return cases


def check_ioi_logit_diff(fn: Callable[..., Any], thorough: bool = False) -> None:
    """ioi_logit_diff(logits, io, s): [batch, pos, d_vocab], [batch], [batch] -> [batch]."""
    __tracebackhide__ = True
    run_check("ioi_logit_diff", fn, ref.ioi_logit_diff, _logit_diff_cases(thorough), rtol=1e-5, atol=1e-5,
              thorough=thorough, mistakes=[
                  Mistake("you averaged over the prompts. Return one logit difference per prompt (shape [batch]): "
                          "the mean hides which prompts the model gets wrong, and a confidence interval needs "
                          "every value. Average later, where you need a single number.",
                          lambda lg, io, s: ref.ioi_logit_diff(lg, io, s).mean()),
                  Mistake("the sign is flipped: logit(IO) - logit(S), so a model that answers correctly scores > 0.",
                          lambda lg, io, s: -ref.ioi_logit_diff(lg, io, s)),
                  Mistake("read the logits at the *last* position (`logits[:, -1]`): that is where the model "
                          "predicts the next word.",
                          lambda lg, io, s: ref.ioi_logit_diff(lg[:, :1], io, s)),
                  Mistake("you took the difference of probabilities; the metric is the difference of logits "
                          "(equivalently of log-probabilities).",
                          lambda lg, io, s: ref.ioi_logit_diff(lg.softmax(-1), io, s)),
              ])


def _recovery_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 132)
    grid = lambda *shape: torch.from_numpy(rng.normal(size=shape)).float()   # noqa: E731
    cases = [Case((torch.tensor([[-2.0, 3.0, 0.5]]), 3.0, -2.0), "clean 3, corrupted -2"),
             Case((grid(2, 10), 4.0, -1.0), "a [2, 10] grid of patched metrics")]
    if thorough:
        cases += [Case((grid(3, 10, 4), torch.tensor(2.5), torch.tensor(0.5)), "0-d tensors for clean and corrupted"),
                  Case((grid(2, 6), -1.0, 3.0), "clean below corrupted (a metric where lower is better)"),
                  Case((grid(2, 6) * 100, 50.0, 49.0), "a small gap between clean and corrupted"),
                  Case((grid(4,), 7.0, 0.0), "corrupted exactly 0"),
                  Case((torch.tensor([1.5, -2.0]), 1.5, -2.0), "patches that fully restore (1) and do nothing (0)")]
    return cases


def check_normalised_recovery(fn: Callable[..., Any], thorough: bool = False) -> None:
    """normalised_recovery(patched, clean, corrupted) -> same shape as patched."""
    __tracebackhide__ = True
    run_check("normalised_recovery", fn, ref.normalised_recovery, _recovery_cases(thorough), rtol=1e-5, atol=1e-6,
              thorough=thorough, mistakes=[
                  Mistake("you divided by the clean metric alone; the scale is the whole gap, clean - corrupted, "
                          "so that 0 means 'no better than corrupted' and 1 means 'as good as clean'.",
                          lambda p, c, k: (p - k) / c),
                  Mistake("you measured from the clean baseline: the numerator is patched - corrupted (how much "
                          "the patch moved the corrupted run towards clean).",
                          lambda p, c, k: (p - c) / (c - k)),
                  Mistake("the denominator is clean - corrupted, not corrupted - clean (a full restore must give +1).",
                          lambda p, c, k: (p - k) / (k - c)),
                  Mistake("you divided by the patched value itself.", lambda p, c, k: (p - k) / p),
              ])


def _ci_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 133)
    vals = lambda n, loc=1.0, sd=2.0: torch.from_numpy(rng.normal(loc, sd, size=n)).float()   # noqa: E731
    cases = [Case((vals(10),), "10 prompts, 95%"), Case((vals(40), 0.9), "40 prompts, 90%")]
    if thorough:
        cases += [Case((vals(5, 3.0, 0.5), 0.99), "5 prompts, 99%"),
                  Case((vals(500, -2.0, 5.0),), "500 prompts"),
                  Case((vals(3),), "3 prompts"),
                  Case((vals(20).double(), 0.8), "float64 values, 80%"),
                  Case((torch.tensor([1.0, 1.0, 1.0, 1.0]),), "identical values (zero width)")]
    return cases


def _ci_compare(got: Any, expected: Any, case: Case) -> str | None:
    if isinstance(got, torch.Tensor) and got.numel() == 2:
        got = tuple(float(v) for v in got.flatten())
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a pair (low, high), got {describe(got)}"
    return compare(tuple(float(g) for g in got), expected, rtol=1e-4, atol=1e-6, what="interval")


def check_effect_confidence_interval(fn: Callable[..., Any], thorough: bool = False) -> None:
    """effect_confidence_interval(values, confidence=0.95) -> (low, high)."""
    __tracebackhide__ = True
    from statistics import NormalDist

    def with_sd(values: torch.Tensor, confidence: float, unbiased: bool, root: bool, z: float | None = None):
        x = values.double()
        z = z if z is not None else NormalDist().inv_cdf(0.5 + confidence / 2)
        n = x.shape[0]
        half = z * x.std(unbiased=unbiased) / (n ** 0.5 if root else n)
        return float(x.mean() - half), float(x.mean() + half)

    run_check("effect_confidence_interval", fn, ref.effect_confidence_interval, _ci_cases(thorough),
              compare_fn=_ci_compare, thorough=thorough, mistakes=[
                  Mistake("use the sample standard deviation (divide by n - 1: `x.std()` in torch, "
                          "`np.std(x, ddof=1)` in NumPy).", lambda v, c=0.95: with_sd(v, c, False, True)),
                  Mistake("the standard error is s / sqrt(n), not s / n.",
                          lambda v, c=0.95: with_sd(v, c, True, False)),
                  Mistake("1.96 is right only for 95%: take z from the confidence level, "
                          "`NormalDist().inv_cdf(0.5 + confidence / 2)`.",
                          lambda v, c=0.95: with_sd(v, c, True, True, 1.96)),
                  Mistake("z comes from the normal quantile at 0.5 + confidence / 2 (both tails), not at confidence.",
                          lambda v, c=0.95: with_sd(v, c, True, True, NormalDist().inv_cdf(c))),
              ])


# --------------------------------------------------------------------------- patching on models

_SPECS: dict[str, dict[str, int]] = {
    "P": dict(n_layers=2, n_heads=2, d_head=8, seed=0),
    "Q": dict(n_layers=3, n_heads=2, d_head=8, seed=1),
    "R": dict(n_layers=1, n_heads=4, d_head=4, seed=2),
}


def _model(key: str) -> Any:
    return ref12.pooled(ref.check_model, **_SPECS[key])


def warm_up() -> None:
    """Boot every model the checks use (tests call this before timing the checks)."""
    for key in _SPECS:
        _model(key)


class MeanLogitDiff:
    """The patching metric of the checks: mean logit difference over the prompts."""

    def __init__(self, io: torch.Tensor, s: torch.Tensor) -> None:
        self.io, self.s = io, s

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return ref.ioi_logit_diff(logits, self.io, self.s).mean()


SWEEP_TEMPLATE = 3   # "A and B , X F F F to"; the sweeps drop its padding and its three fillers


def _label(key: str, batch: int) -> str:
    spec = _SPECS[key]
    layers = f"{spec['n_layers']} layer" + ("s" if spec["n_layers"] > 1 else "")
    return (f"{layers} x {spec['n_heads']} heads, {batch} whole prompt pair" + ("s" if batch > 1 else "")
            + " '<s> A and B , X to'")


def _prompts(batch: int, seed: int, templates: list[int] | None = None) -> task.IOIBatch:
    """Prompts of all templates; or, for the sweeps, whole 7-token prompts '<s> A and B , X to' (template 3
    without its padding and fillers): every position holds a word, X and the pair sit at different
    positions, the last position is 'to', and each sweep stays short."""
    if templates is not None:
        return task.ioi_batch(batch, torch.Generator().manual_seed(seed), templates)
    prompts = task.ioi_batch(batch, torch.Generator().manual_seed(seed), [SWEEP_TEMPLATE])
    cut = task.SEQ_LEN - 1 - len(task.TEMPLATES[SWEEP_TEMPLATE].split())
    keep = torch.tensor([cut + i for i in range(6)] + [task.SEQ_LEN - 1])   # <s> A and B , X ... to
    return task.IOIBatch(prompts.tokens[:, keep], prompts.io, prompts.s, prompts.x_pos - cut, prompts.template)


def _patch_case(key: str, batch: int, seed: int, *extra: Any, label: str = "") -> ModelCase:
    def build() -> tuple:
        model = _model(key)
        prompts = _prompts(batch, seed)
        with torch.no_grad():
            _, clean_cache = model.run_with_cache(prompts.tokens)
        return (model, task.corrupt(prompts), clean_cache, MeanLogitDiff(prompts.io, prompts.s), *extra)
    return ModelCase(_label(key, batch) + label, build)


def _attribution_case(key: str, batch: int, seed: int) -> ModelCase:
    def build() -> tuple:
        model = _model(key)
        prompts = _prompts(batch, seed)
        return model, prompts.tokens, task.corrupt(prompts), MeanLogitDiff(prompts.io, prompts.s)
    return ModelCase(_label(key, batch), build)


def _train_mode_with_dropout(args: tuple) -> None:
    """Hand the model over as training left it: train mode, attention dropout active."""
    model = args[0]

    def dropout(pattern: torch.Tensor, hook: Any) -> torch.Tensor:
        return F.dropout(pattern, p=0.3, training=model.training)

    for layer in range(model.cfg.n_layers):
        model.add_hook(f"blocks.{layer}.attn.hook_pattern", dropout, is_permanent=True)
    model.train()


def _with_eval_hint(compare_fn: Callable[[Any, Any, tuple], str | None]) -> Callable[[Any, Any, tuple], str | None]:
    def cmp(got: Any, expected: Any, args: tuple) -> str | None:
        problem = compare_fn(got, expected, args)
        if problem and args[0].training:
            problem += ("\n  Likely cause: the model is still in training mode, so dropout changed every run. "
                        "Call `model.eval()` at the start of your function.")
        return problem
    return cmp


def _exact(got: Any, expected: Any, args: tuple) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor, got {describe(got)}"
    return compare(got.detach().float(), expected.detach().float(), rtol=1e-5, atol=1e-5)


def library_resid_pre(model: Any, corrupted: torch.Tensor, clean_cache: Any, metric: Any) -> torch.Tensor:
    key = (id(model), corrupted.numpy().tobytes(), metric.io.numpy().tobytes(), metric.s.numpy().tobytes(), "resid")
    if key not in _SWEEPS:
        with task.quiet_patching() as patching:
            _SWEEPS[key] = patching.get_act_patch_resid_pre(model, corrupted, clean_cache, metric)
    return _SWEEPS[key].clone()


def _sweep(model: Any, corrupted: torch.Tensor, names: Callable[[int], str], cells: list, setter: Callable,
           shape: tuple, metric: Any, clean_cache: Any) -> torch.Tensor:
    """A generic patching sweep for the checks' known mistakes."""
    out = torch.zeros(shape)
    for layer in range(model.cfg.n_layers):
        clean = clean_cache[names(layer)]
        for cell in cells:
            hook = partial(lambda act, hook, cell: setter(act, clean, cell), cell=cell)
            out[(layer, *cell)] = metric(model.run_with_hooks(corrupted, fwd_hooks=[(names(layer), hook)]))
    return out


def _resid_mistakes() -> list[Mistake]:
    def prefix(model, corrupted, cache, metric):
        T = corrupted.shape[1]

        def setter(act, clean, cell):
            act[:, : cell[0] + 1] = clean[:, : cell[0] + 1]
            return act
        return _sweep(model, corrupted, lambda l: f"blocks.{l}.hook_resid_pre", [(p,) for p in range(T)], setter,
                      (model.cfg.n_layers, T), metric, cache)

    def shifted(model, corrupted, cache, metric):
        T = corrupted.shape[1]

        def setter(act, clean, cell):
            p = (cell[0] + 1) % T
            act[:, p] = clean[:, p]
            return act
        return _sweep(model, corrupted, lambda l: f"blocks.{l}.hook_resid_pre", [(p,) for p in range(T)], setter,
                      (model.cfg.n_layers, T), metric, cache)

    def post(model, corrupted, cache, metric):
        T = corrupted.shape[1]

        def setter(act, clean, cell):
            act[:, cell[0]] = clean[:, cell[0]]
            return act
        return _sweep(model, corrupted, lambda l: f"blocks.{l}.hook_resid_post", [(p,) for p in range(T)], setter,
                      (model.cfg.n_layers, T), metric, cache)

    return [Mistake("you patched every position up to and including `pos`; patch position `pos` only "
                    "(`act[:, pos] = clean[:, pos]`).", prefix),
            Mistake("the patched position is off by one: row [layer, pos] must patch position `pos` itself.", shifted),
            Mistake("you patched hook_resid_post; the sweep patches the residual stream *entering* each layer, "
                    "`blocks.{layer}.hook_resid_pre`.", post)]


def check_patch_resid_by_pos(fn: Callable[..., Any], thorough: bool = False) -> None:
    """patch_resid_by_pos(model, corrupted_tokens, clean_cache, metric) -> [n_layers, pos], equal to
    `transformer_lens.patching.get_act_patch_resid_pre`."""
    __tracebackhide__ = True
    # the sweeps cost one forward pass per cell, so the thorough cases do not repeat the quick one
    cases = [_patch_case("Q", 3, 2), _patch_case("R", 1, 3)] if thorough else [_patch_case("P", 4, 1)]
    run_model_check("patch_resid_by_pos", _explain_hook_names(fn), library_resid_pre, cases, thorough, _with_eval_hint(_exact),
                    _resid_mistakes(), prepare=_train_mode_with_dropout)


def _head_mistakes() -> list[Mistake]:
    def cells(model, T):
        return [(p, h) for p in range(T) for h in range(model.cfg.n_heads)]

    def pattern(model, corrupted, cache, metric, component="z"):
        T = corrupted.shape[1]

        def setter(act, clean, cell):
            p, h = cell
            act[:, h, p] = clean[:, h, p]
            return act
        return _sweep(model, corrupted, lambda l: f"blocks.{l}.attn.hook_pattern", cells(model, T), setter,
                      (model.cfg.n_layers, T, model.cfg.n_heads), metric, cache)

    def all_heads(model, corrupted, cache, metric, component="z"):
        T = corrupted.shape[1]

        def setter(act, clean, cell):
            act[:, cell[0]] = clean[:, cell[0]]
            return act
        return _sweep(model, corrupted, lambda l: f"blocks.{l}.attn.hook_z", cells(model, T), setter,
                      (model.cfg.n_layers, T, model.cfg.n_heads), metric, cache)

    def queries(model, corrupted, cache, metric, component="z"):
        T = corrupted.shape[1]

        def setter(act, clean, cell):
            p, h = cell
            act[:, p, h] = clean[:, p, h]
            return act
        return _sweep(model, corrupted, lambda l: f"blocks.{l}.attn.hook_q", cells(model, T), setter,
                      (model.cfg.n_layers, T, model.cfg.n_heads), metric, cache)

    return [Mistake("you patched the head's attention *pattern* (hook_pattern) at that destination position; the "
                    "exercise patches what the head *outputs*, `blocks.{layer}.attn.hook_z`.", pattern),
            Mistake("you patched every head at that position; patch one head: `z[:, pos, head] = clean[:, pos, head]`.",
                    all_heads),
            Mistake("you patched the head's queries (hook_q); patch its output, hook_z.", queries)]


_SWEEPS: dict[tuple, torch.Tensor] = {}


def _library_head_sweep(model: Any, corrupted: torch.Tensor, clean_cache: Any, metric: Any,
                        component: str = "z") -> torch.Tensor:
    """The library's sweep, remembered per (pooled model, prompts, component): the check models are
    restored to the same weights on every build, so a repeated check need not pay for it twice."""
    key = (id(model), corrupted.numpy().tobytes(), metric.io.numpy().tobytes(), metric.s.numpy().tobytes(), component)
    if key not in _SWEEPS:
        with task.quiet_patching() as patching:
            name = "out" if component == "z" else component
            sweep = getattr(patching, f"get_act_patch_attn_head_{name}_by_pos")
            _SWEEPS[key] = sweep(model, corrupted, clean_cache, metric)
    return _SWEEPS[key].clone()


def _component_mistakes() -> list[Mistake]:
    def always_z(model, corrupted, cache, metric, component="z"):
        return ref.patch_heads_by_pos(model, corrupted, cache, metric, "z")

    def attention_input(model, corrupted, cache, metric, component="z"):
        # hook_attn_in / the residual stream entering the layer instead of the head's own q, k or v
        return ref.patch_heads_by_pos(model, corrupted, cache, metric, {"q": "k", "k": "q", "v": "z", "z": "v"}[component])

    return [Mistake("you patched hook_z whatever `component` says; build the hook name from it, "
                    "`blocks.{layer}.attn.hook_{component}`.", always_z),
            Mistake("you patched a different component from the one asked for (check which hook each of z, q, k "
                    "and v names).", attention_input)]


def check_patch_heads_by_pos(fn: Callable[..., Any], thorough: bool = False) -> None:
    """patch_heads_by_pos(model, corrupted_tokens, clean_cache, metric, component="z") -> [n_layers, pos, n_heads],
    equal to `transformer_lens.patching.get_act_patch_attn_head_{out,q,k,v}_by_pos`."""
    __tracebackhide__ = True
    # the sweeps cost one forward pass per cell, so the thorough cases do not repeat the quick one
    # (the quick case covers component v; hidden and visible checks both run when a notebook is graded)
    if thorough:
        cases = [_patch_case("P", 2, 5, label=", default component (z)"),
                 _patch_case("P", 2, 6, "q", label=", component q"), _patch_case("P", 3, 7, "k", label=", component k")]
    else:
        cases = [_patch_case("P", 3, 4, "v", label=", component v")]
    run_model_check("patch_heads_by_pos", _explain_hook_names(fn), _library_head_sweep, cases, thorough, _with_eval_hint(_exact),
                    _head_mistakes() + _component_mistakes(), prepare=_train_mode_with_dropout)


# --------------------------------------------------------------------------- head selection

def _selection_case(key: str, batch: int, seed: int, target: float | None) -> ModelCase:
    def build() -> tuple:
        model = _model(key)
        prompts = _prompts(batch, seed, templates=list(range(len(task.TEMPLATES))))
        args = (model, prompts.tokens, task.corrupt(prompts), MeanLogitDiff(prompts.io, prompts.s))
        return args if target is None else (*args, target)
    where = "default target 0.8" if target is None else f"target {target}"
    return ModelCase(f"{_label(key, batch).split(' whole')[0]} prompts of all templates, {where}", build)


def _as_heads(x: Any) -> Any:
    try:
        return [(int(layer), int(head)) for layer, head in x]
    except (TypeError, ValueError):
        return None


def _same_heads(got: Any, expected: Any, args: tuple) -> str | None:
    heads = _as_heads(got)
    if heads is None:
        return f"expected a list of (layer, head) pairs, got {describe(got)}"
    if heads != _as_heads(expected):
        return f"expected the heads {_as_heads(expected)} (in the order chosen), got {heads}"
    return None


def _selection_mistakes() -> list[Mistake]:
    def no_stop(model, clean, corrupted, metric, target=0.8):
        return ref.select_heads(model, clean, corrupted, metric, target=float("inf"))

    def one_at_a_time(model, clean, corrupted, metric, target=0.8):
        # ranks heads by their own patch, then adds them in that order
        with torch.no_grad():
            clean_logits, cache = model.run_with_cache(clean)
            c, k = float(metric(clean_logits)), float(metric(model(corrupted)))
            heads = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
            alone = {hd: ref.patched_heads_metric(model, corrupted, cache, metric, [hd]) for hd in heads}
            order = sorted(heads, key=lambda hd: -alone[hd])
            chosen = []
            for hd in order:
                chosen.append(hd)
                if (ref.patched_heads_metric(model, corrupted, cache, metric, chosen) - k) / (c - k) >= target:
                    break
        return chosen

    def stop_before(model, clean, corrupted, metric, target=0.8):
        full = ref.select_heads(model, clean, corrupted, metric, target)
        return full[:-1]

    return [Mistake("your loop never stops early: stop as soon as the normalised recovery of the chosen set "
                    "reaches `target`.", no_stop),
            Mistake("you ranked the heads by their patch *alone*; each greedy step must patch the candidate "
                    "*together with* the heads already chosen (the joint effect is what matters).", one_at_a_time),
            Mistake("the head that takes the recovery past `target` belongs in the result: append it, then stop.",
                    stop_before)]


_SELECTIONS: dict[tuple, list] = {}


def _reference_selection(model: Any, clean: torch.Tensor, corrupted: torch.Tensor, metric: Any,
                         target: float = 0.8) -> list:
    """`ref.select_heads`, remembered per (pooled model, prompts, target) like the sweeps."""
    key = (id(model), clean.numpy().tobytes(), corrupted.numpy().tobytes(), target)
    if key not in _SELECTIONS:
        _SELECTIONS[key] = ref.select_heads(model, clean, corrupted, metric, target)
    return list(_SELECTIONS[key])


def check_select_heads(fn: Callable[..., Any], thorough: bool = False) -> None:
    """select_heads(model, clean_tokens, corrupted_tokens, metric, target=0.8) -> [(layer, head), ...]."""
    __tracebackhide__ = True
    cases = [_selection_case("P", 6, 21, None)]
    if thorough:
        cases += [_selection_case("Q", 5, 22, 0.5), _selection_case("P", 4, 23, 0.95), _selection_case("P", 3, 24, 2.0)]
    run_model_check("select_heads", _explain_hook_names(fn), _reference_selection, cases, thorough,
                    _with_eval_hint(_same_heads),
                    _selection_mistakes(), prepare=_train_mode_with_dropout)


# --------------------------------------------------------------------------- mean ablation

def _ablation_case(key: str, heads: list[tuple[int, int]], batch: int, seed: int) -> ModelCase:
    def build() -> tuple:
        model = _model(key)
        g = torch.Generator().manual_seed(seed)
        tokens = task.ioi_batch(batch, g).tokens
        mean_tokens = task.ioi_batch(3 * batch, g).tokens
        return model, tokens, list(heads), mean_tokens
    return ModelCase(f"{_label(key, batch).split(' whole')[0]} prompts, ablating {heads}", build)


def _mean_ablation_mistakes() -> list[Mistake]:
    def zero(model, tokens, heads, mean_tokens):
        return ref12.ablate_heads(model, tokens, heads)

    def own_batch(model, tokens, heads, mean_tokens):
        return ref.mean_ablate_heads(model, tokens, heads, tokens)

    def over_positions(model, tokens, heads, mean_tokens):
        _, cache = model.run_with_cache(mean_tokens)

        def hook(z, hook, layer, hs):
            z[:, :, hs] = cache["z", layer].mean(dim=(0, 1))[None, None, hs]
            return z
        by_layer: dict[int, list[int]] = {}
        for layer, h in heads:
            by_layer.setdefault(layer, []).append(h)
        return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{l}.attn.hook_z", partial(hook, layer=l, hs=hs))
                                                       for l, hs in by_layer.items()])

    return [Mistake("you zeroed the heads; mean ablation replaces each head's output with its *average* output "
                    "over `mean_tokens`, which keeps the activations in a range the model has seen.", zero),
            Mistake("the averages must come from `mean_tokens`, not from the prompts being run.", own_batch),
            Mistake("average over the prompts only, separately for each position (z.mean(0), shape "
                    "[pos, head, d_head]): every position of the template plays its own role.", over_positions)]


def check_mean_ablate_heads(fn: Callable[..., Any], thorough: bool = False) -> None:
    """mean_ablate_heads(model, tokens, heads, mean_tokens) -> logits [batch, pos, d_vocab]."""
    __tracebackhide__ = True
    cases = [_ablation_case("P", [(1, 0)], 4, 7)]
    if thorough:
        cases += [_ablation_case("Q", [(0, 1), (2, 1), (0, 0)], 3, 8), _ablation_case("R", [], 2, 9),
                  _ablation_case("P", [(0, 0), (0, 1), (1, 1)], 5, 10)]
    run_model_check("mean_ablate_heads", _explain_hook_names(fn), ref.mean_ablate_heads, cases, thorough,
                    _with_eval_hint(_tensor_close(1e-4, 1e-4)), _mean_ablation_mistakes(),
                    prepare=_train_mode_with_dropout)


def _tensor_close(rtol: float, atol: float) -> Callable[[Any, Any, tuple], str | None]:
    def cmp(got: Any, expected: Any, args: tuple) -> str | None:
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor, got {describe(got)}"
        return compare(got.detach().float(), expected.detach().float(), rtol=rtol, atol=atol)
    return cmp


# --------------------------------------------------------------------------- confirmation

def _confirm_case(key: str, heads: list[tuple[int, int]], batch: int, seed: int, confidence: float | None) -> ModelCase:
    def build() -> tuple:
        model = _model(key)
        g = torch.Generator().manual_seed(seed)
        prompts = task.ioi_batch(batch, g)
        mean_tokens = task.ioi_batch(3 * batch, g).tokens
        args = (model, prompts.tokens, prompts.io, prompts.s, list(heads), mean_tokens)
        return args if confidence is None else (*args, confidence)
    level = "default 95%" if confidence is None else f"{confidence:.0%}"
    return ModelCase(f"{_label(key, batch).split(' whole')[0]} prompts, ablating {heads}, {level}", build)


def _three_floats(got: Any, expected: Any, args: tuple) -> str | None:
    try:
        values = [float(v) for v in got]
    except (TypeError, ValueError):
        return f"expected a tuple (mean drop, low, high) of three numbers, got {describe(got)}"
    if len(values) != 3:
        return f"expected three numbers (mean drop, low, high), got {len(values)}"
    return compare(np.array(values), np.array([float(v) for v in expected]), rtol=1e-4, atol=1e-4,
                   what="(mean drop, low, high)")


def _confirm_mistakes() -> list[Mistake]:
    def reversed_sign(model, tokens, io, s, heads, mean_tokens, confidence=0.95):
        drop, low, high = ref.confirm_heads(model, tokens, io, s, heads, mean_tokens, confidence)
        return -drop, -high, -low

    def ablated_interval(model, tokens, io, s, heads, mean_tokens, confidence=0.95):
        drop, _, _ = ref.confirm_heads(model, tokens, io, s, heads, mean_tokens, confidence)
        with torch.no_grad():
            after = ref.ioi_logit_diff(ref.mean_ablate_heads(model, tokens, heads, mean_tokens), io, s)
        return (drop, *ref.effect_confidence_interval(after, confidence))

    def unpaired(model, tokens, io, s, heads, mean_tokens, confidence=0.95):
        # an interval from the two runs' spreads added, as if the prompts were unrelated samples
        with torch.no_grad():
            before = ref.ioi_logit_diff(model(tokens), io, s).double()
            after = ref.ioi_logit_diff(ref.mean_ablate_heads(model, tokens, heads, mean_tokens), io, s).double()
        from statistics import NormalDist
        half = NormalDist().inv_cdf(0.5 + confidence / 2) * float(
            (before.var() / len(before) + after.var() / len(after)).sqrt())
        drop = float((before - after).mean())
        return drop, drop - half, drop + half

    def zeroed(model, tokens, io, s, heads, mean_tokens, confidence=0.95):
        with torch.no_grad():
            drop = ref.ioi_logit_diff(model(tokens), io, s) - ref.ioi_logit_diff(
                ref12.ablate_heads(model, tokens, heads), io, s)
        return (float(drop.double().mean()), *ref.effect_confidence_interval(drop, confidence))

    return [Mistake("the drop is normal minus ablated (positive when ablating hurts the answer); yours is reversed.",
                    reversed_sign),
            Mistake("the interval must be around the mean *drop*, from the per-prompt drops; yours is the interval "
                    "of the ablated logit differences.", ablated_interval),
            Mistake("the two runs use the same prompts, so pair them: take the per-prompt drop first, then one "
                    "interval of its mean (adding the two runs' variances ignores the pairing).", unpaired),
            Mistake("you zeroed the heads; use mean ablation (`mean_ablate_heads` with `mean_tokens`).", zeroed)]


def check_confirm_heads(fn: Callable[..., Any], thorough: bool = False) -> None:
    """confirm_heads(model, tokens, io, s, heads, mean_tokens, confidence=0.95) -> (mean drop, low, high)."""
    __tracebackhide__ = True
    cases = [_confirm_case("P", [(1, 0), (0, 1)], 12, 31, None)]
    if thorough:
        cases += [_confirm_case("Q", [(0, 1), (2, 0)], 10, 32, 0.9), _confirm_case("R", [(0, 3)], 30, 33, 0.99),
                  _confirm_case("P", [(0, 0), (0, 1), (1, 1)], 5, 34, 0.5), _confirm_case("P", [], 4, 35, None)]
    run_model_check("confirm_heads", _explain_hook_names(fn), ref.confirm_heads, cases, thorough, _with_eval_hint(_three_floats),
                    _confirm_mistakes(), prepare=_train_mode_with_dropout)


# --------------------------------------------------------------------------- attribution patching

def _attribution_mistakes() -> list[Mistake]:
    def flipped(model, clean, corrupted, metric):
        return -ref.attribution_patch_resid(model, clean, corrupted, metric)

    def clean_gradient(model, clean, corrupted, metric):
        # the gradient taken on the clean run instead of the corrupted one
        with torch.enable_grad():
            return -ref.attribution_patch_resid(model, corrupted, clean, metric)

    def batch_mean(model, clean, corrupted, metric):
        return ref.attribution_patch_resid(model, clean, corrupted, metric) / clean.shape[0]

    return [Mistake("the sign is flipped: multiply the gradient by (clean - corrupted), the change the patch "
                    "would make to the corrupted activation.", flipped),
            Mistake("take the gradient on the *corrupted* run: the linear approximation is around the run you "
                    "are patching into.", clean_gradient),
            Mistake("sum over the batch (the metric already averages over prompts, and its gradient carries the "
                    "1/batch); don't average again.", batch_mean)]


def check_attribution_patch_resid(fn: Callable[..., Any], thorough: bool = False) -> None:
    """attribution_patch_resid(model, clean_tokens, corrupted_tokens, metric) -> [n_layers, pos]."""
    __tracebackhide__ = True
    cases = [_attribution_case("P", 4, 11)]
    if thorough:
        cases += [_attribution_case("Q", 3, 12), _attribution_case("R", 6, 13), _attribution_case("P", 1, 14)]
    run_model_check("attribution_patch_resid", _explain_hook_names(fn), _reference_attribution, cases, thorough,
                    _with_eval_hint(_tensor_close(1e-3, 1e-4)), _attribution_mistakes(),
                    prepare=_train_mode_with_dropout)


def _reference_attribution(*args: Any) -> torch.Tensor:
    with torch.enable_grad():   # run_model_check computes references under no_grad
        return ref.attribution_patch_resid(*args)


# --------------------------------------------------------------------------- concept question

# sha256 of "patching_reading_quiz:<letter>" (see `choice_digest`)
_READING_DIGEST = "1d61583d98285d00e063e69f268a4aa8a1033882c5f98d675890f2fa656221c4"


def check_patching_reading_quiz(answer: Any, thorough: bool = False) -> None:
    """What does a full recovery from patching the residual stream at (layer 0, S2) show?"""
    __tracebackhide__ = True
    check_choice("patching_reading_quiz", answer, _READING_DIGEST, "abcd")
