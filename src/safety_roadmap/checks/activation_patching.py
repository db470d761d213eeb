"""Checks for chapter 13_activation_patching. Each `check_<exercise>(obj, thorough=False)`.

The patching exercises are checked against `transformer_lens.patching` itself (not only against our
reference): the learner's sweep must reproduce `get_act_patch_resid_pre` and
`get_act_patch_attn_head_out_by_pos` to float precision. Their model is handed over the way a
freshly trained or freshly loaded one often is: in training mode, with attention dropout, so a sweep
that forgets `model.eval()` measures noise. TransformerLens is imported lazily.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..reference import activation_patching as ref
from ..reference import interpretability_tools as ref12
from ._core import Case, Mistake, check_choice, compare, describe, non_contiguous, rng_for, run_check, trust
from .interpretability_tools import ModelCase, run_model_check

__all__ = ["check_ioi_logit_diff", "check_patching_recovery", "check_patch_resid_by_pos", "check_patch_heads_by_pos",
           "check_mean_ablate_heads", "check_effect_confidence_interval", "check_attribution_patch_resid",
           "check_patching_reading_quiz"]

trust(torch)
trust(F)

# --------------------------------------------------------------------------- metrics on tensors


def _ioi_logits(rng: np.random.Generator, batch: int, seq: int = 10, scale: float = 3.0,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits = torch.from_numpy(rng.normal(size=(batch, seq, ref.D_VOCAB)) * scale).to(dtype)
    picks = np.stack([rng.choice(len(ref.NAMES), size=2, replace=False) for _ in range(batch)]) + ref.NAMES[0]
    return logits, torch.from_numpy(picks[:, 0]), torch.from_numpy(picks[:, 1])


def _logit_diff_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 131)
    cases = [Case(_ioi_logits(rng, 4), "batch 4, 10 positions"),
             Case(_ioi_logits(rng, 2, seq=3), "batch 2, 3 positions")]
    if thorough:
        logits, io, s = _ioi_logits(rng, 5)
        cases += [Case(_ioi_logits(rng, 1), "a single prompt"),
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


def check_patching_recovery(fn: Callable[..., Any], thorough: bool = False) -> None:
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


def _label(key: str, batch: int, length: int = ref.SEQ_LEN) -> str:
    spec = _SPECS[key]
    layers = f"{spec['n_layers']} layer" + ("s" if spec["n_layers"] > 1 else "")
    cut = "" if length == ref.SEQ_LEN else f", prompts cut to their first {length} tokens"
    return f"{layers} x {spec['n_heads']} heads, {batch} prompt pair" + ("s" if batch > 1 else "") + cut


def _patch_case(key: str, batch: int, seed: int, length: int = ref.SEQ_LEN) -> ModelCase:
    def build() -> tuple:
        model = _model(key)
        tokens, io, s = ref.ioi_prompts(batch, torch.Generator().manual_seed(seed))
        corrupted = ref.corrupt_s2(tokens, io)[:, :length]
        with torch.no_grad():
            _, clean_cache = model.run_with_cache(tokens[:, :length])
        return model, corrupted, clean_cache, MeanLogitDiff(io, s)
    return ModelCase(_label(key, batch, length), build)


def _attribution_case(key: str, batch: int, seed: int) -> ModelCase:
    def build() -> tuple:
        model = _model(key)
        tokens, io, s = ref.ioi_prompts(batch, torch.Generator().manual_seed(seed))
        return model, tokens, ref.corrupt_s2(tokens, io), MeanLogitDiff(io, s)
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


@contextmanager
def _quiet_library() -> Iterator[Any]:
    """`transformer_lens.patching` with its progress bars switched off (restored afterwards)."""
    from transformer_lens import patching

    bar = patching.tqdm
    patching.tqdm = lambda iterable, **kwargs: iterable
    try:
        yield patching
    finally:
        patching.tqdm = bar


def library_resid_pre(model: Any, corrupted: torch.Tensor, clean_cache: Any, metric: Any) -> torch.Tensor:
    with _quiet_library() as patching:
        return patching.get_act_patch_resid_pre(model, corrupted, clean_cache, metric)


def library_head_out_by_pos(model: Any, corrupted: torch.Tensor, clean_cache: Any, metric: Any) -> torch.Tensor:
    with _quiet_library() as patching:
        return patching.get_act_patch_attn_head_out_by_pos(model, corrupted, clean_cache, metric)


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
    cases = [_patch_case("Q", 3, 2, length=7), _patch_case("R", 1, 3)] if thorough else [_patch_case("P", 4, 1, 7)]
    run_model_check("patch_resid_by_pos", fn, library_resid_pre, cases, thorough, _with_eval_hint(_exact),
                    _resid_mistakes(), prepare=_train_mode_with_dropout)


def _head_mistakes() -> list[Mistake]:
    def cells(model, T):
        return [(p, h) for p in range(T) for h in range(model.cfg.n_heads)]

    def pattern(model, corrupted, cache, metric):
        T = corrupted.shape[1]

        def setter(act, clean, cell):
            p, h = cell
            act[:, h, p] = clean[:, h, p]
            return act
        return _sweep(model, corrupted, lambda l: f"blocks.{l}.attn.hook_pattern", cells(model, T), setter,
                      (model.cfg.n_layers, T, model.cfg.n_heads), metric, cache)

    def all_heads(model, corrupted, cache, metric):
        T = corrupted.shape[1]

        def setter(act, clean, cell):
            act[:, cell[0]] = clean[:, cell[0]]
            return act
        return _sweep(model, corrupted, lambda l: f"blocks.{l}.attn.hook_z", cells(model, T), setter,
                      (model.cfg.n_layers, T, model.cfg.n_heads), metric, cache)

    def queries(model, corrupted, cache, metric):
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


def check_patch_heads_by_pos(fn: Callable[..., Any], thorough: bool = False) -> None:
    """patch_heads_by_pos(model, corrupted_tokens, clean_cache, metric) -> [n_layers, pos, n_heads], equal to
    `transformer_lens.patching.get_act_patch_attn_head_out_by_pos`."""
    __tracebackhide__ = True
    # the sweeps cost one forward pass per cell, so the thorough case does not repeat the quick one
    cases = [_patch_case("Q", 2, 5, length=7)] if thorough else [_patch_case("P", 3, 4, length=7)]
    run_model_check("patch_heads_by_pos", fn, library_head_out_by_pos, cases, thorough, _with_eval_hint(_exact),
                    _head_mistakes(), prepare=_train_mode_with_dropout)


# --------------------------------------------------------------------------- mean ablation

def _ablation_case(key: str, heads: list[tuple[int, int]], batch: int, seed: int) -> ModelCase:
    def build() -> tuple:
        model = _model(key)
        g = torch.Generator().manual_seed(seed)
        tokens, _, _ = ref.ioi_prompts(batch, g)
        mean_tokens, _, _ = ref.ioi_prompts(3 * batch, g)
        return model, tokens, list(heads), mean_tokens
    return ModelCase(f"{_label(key, batch)}, ablating {heads}", build)


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
    run_model_check("mean_ablate_heads", fn, ref.mean_ablate_heads, cases, thorough,
                    _with_eval_hint(_tensor_close(1e-4, 1e-4)), _mean_ablation_mistakes(),
                    prepare=_train_mode_with_dropout)


def _tensor_close(rtol: float, atol: float) -> Callable[[Any, Any, tuple], str | None]:
    def cmp(got: Any, expected: Any, args: tuple) -> str | None:
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor, got {describe(got)}"
        return compare(got.detach().float(), expected.detach().float(), rtol=rtol, atol=atol)
    return cmp


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
    run_model_check("attribution_patch_resid", fn, _reference_attribution, cases, thorough,
                    _with_eval_hint(_tensor_close(1e-3, 1e-4)), _attribution_mistakes(),
                    prepare=_train_mode_with_dropout)


def _reference_attribution(*args: Any) -> torch.Tensor:
    with torch.enable_grad():   # run_model_check computes references under no_grad
        return ref.attribution_patch_resid(*args)


# --------------------------------------------------------------------------- concept question

# sha256 of "patching_reading_quiz:<letter>" (see `choice_digest`)
_READING_DIGEST = "bd57549f2c7fc1eb2964266a62c9246b65f65a2ea39143c6ba99bd490ed2f08f"


def check_patching_reading_quiz(answer: Any, thorough: bool = False) -> None:
    """What does a full recovery from patching the residual stream at (layer 0, S2) show?"""
    __tracebackhide__ = True
    check_choice("patching_reading_quiz", answer, _READING_DIGEST, "abcd")
