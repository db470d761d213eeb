"""Checks for chapter 12_interpretability_tools. Each `check_<exercise>(obj, thorough=False)`.

Head scores are checked on generated attention patterns. Exercises that take a model run on small
TransformerLens models built inside the check from a fixed config and seed (TransformerLens is
imported lazily, by the model builders, never when this module is imported), or on models whose
heads were written by hand so that the right answer is known.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..reference import interpretability_tools as ref
from ._core import (Case, CheckFailure, Mistake, call, check_choice, compare, describe, guard, likely_cause, rng_for,
                    run_check, trust)
from ._torch import one_thread

__all__ = ["check_prev_token_head_score", "check_induction_head_score", "check_decompose_residual",
           "check_logit_lens_stack", "check_ablate_heads_zero", "check_find_induction_heads",
           "check_period_shortcut_quiz", "check_ablation_effects"]

trust(torch)
trust(F)


# --------------------------------------------------------------------------- attention patterns

def _patterns(rng: np.random.Generator, batch: int, heads: int, seq: int, sharpness: float = 1.0,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random causal attention patterns [batch, heads, seq, seq]: every row sums to 1 over keys <= query."""
    scores = torch.from_numpy(rng.normal(size=(batch, heads, seq, seq)) * sharpness)
    future = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1).to(dtype)


def _offset_pattern(batch: int, heads: int, seq: int, offset: int) -> torch.Tensor:
    """Every query attends fully to key (query - offset) when it exists, else to itself."""
    p = torch.zeros(batch, heads, seq, seq)
    for i in range(seq):
        p[:, :, i, i - offset if i - offset >= 0 else i] = 1.0
    return p


def _strided(p: torch.Tensor) -> torch.Tensor:
    """The same values laid out non-contiguously (heads stored first, then transposed)."""
    return p.transpose(0, 1).contiguous().transpose(0, 1)


def _prev_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 121)
    cases = [Case((_offset_pattern(1, 1, 4, 1),), "one head that always attends to the previous token"),
             Case((_patterns(rng, 2, 3, 6),), "random patterns, batch 2, 3 heads, 6 positions")]
    if thorough:
        cases += [Case((_patterns(rng, 1, 4, 2),), "only 2 positions"),
                  Case((_patterns(rng, 5, 2, 11, sharpness=4.0),), "sharp patterns, 11 positions"),
                  Case((_offset_pattern(3, 2, 7, 0),), "heads that attend only to themselves (score 0)"),
                  Case((_strided(_patterns(rng, 3, 5, 8)),), "a non-contiguous pattern tensor"),
                  Case((_patterns(rng, 2, 3, 9, dtype=torch.float64),), "float64 patterns"),
                  Case((torch.cat([_offset_pattern(2, 1, 10, 1), _patterns(rng, 2, 2, 10)], dim=1),),
                       "a previous-token head next to two random heads")]
    return cases


def check_prev_token_head_score(fn: Callable[..., Any], thorough: bool = False) -> None:
    """prev_token_score(pattern): [batch, heads, seq, seq] -> [heads]."""
    __tracebackhide__ = True
    run_check("prev_token_score", fn, ref.prev_token_score, _prev_cases(thorough), rtol=1e-5, atol=1e-6,
              thorough=thorough, mistakes=[
                  Mistake("you averaged over every query position, including position 0, which has no previous "
                          "token: average over queries 1..seq-1 only (seq-1 values per row of the pattern).",
                          lambda p: torch.cat([torch.zeros_like(p[..., :1, 0]),
                                               p.diagonal(-1, -2, -1)], dim=-1).mean(dim=(0, -1))),
                  Mistake("you read the main diagonal (attention to the token itself); the previous token is "
                          "one below it: `pattern.diagonal(offset=-1, dim1=-2, dim2=-1)`.",
                          lambda p: p.diagonal(0, -2, -1).mean(dim=(0, -1))),
                  Mistake("you took the key axis as the first of the two position axes; the pattern is "
                          "[batch, head, query, key], and the previous key of query i is column i-1 of row i.",
                          lambda p: p.diagonal(1, -2, -1).mean(dim=(0, -1))),
              ])


def _induction_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 122)
    cases = [Case((_offset_pattern(1, 1, 8, 3), 4), "one ideal induction head, period 4, 8 positions"),
             Case((_patterns(rng, 2, 3, 10), 5), "random patterns, period 5, 10 positions")]
    if thorough:
        cases += [Case((_offset_pattern(2, 2, 12, 6), 6), "duplicate-token heads (attend one period back): score 0"),
                  Case((_patterns(rng, 3, 4, 20, sharpness=3.0), 10), "sharp patterns, period 10, 20 positions"),
                  Case((_patterns(rng, 2, 2, 17), 5), "period 5 over 17 positions (more than two repeats)"),
                  Case((_patterns(rng, 1, 3, 6), 2), "period 2"),
                  Case((_strided(_patterns(rng, 2, 3, 12)), 6), "a non-contiguous pattern tensor"),
                  Case((_patterns(rng, 2, 2, 8, dtype=torch.float64), 4), "float64 patterns"),
                  Case((torch.cat([_offset_pattern(2, 1, 14, 6), _offset_pattern(2, 1, 14, 1),
                                   _offset_pattern(2, 1, 14, 7)], dim=1), 7),
                       "an induction head, a previous-token head and a duplicate-token head, period 7")]
    return cases


def check_induction_head_score(fn: Callable[..., Any], thorough: bool = False) -> None:
    """induction_score(pattern, period): [batch, heads, seq, seq] -> [heads]."""
    __tracebackhide__ = True
    run_check("induction_score", fn, ref.induction_score, _induction_cases(thorough), rtol=1e-5, atol=1e-6,
              thorough=thorough, mistakes=[
                  Mistake("you measured attention one full period back, to the earlier copy of the *same* token "
                          "(a duplicate-token head). An induction head attends to the token *after* that copy: "
                          "key i - period + 1.",
                          lambda p, k: p.diagonal(-k, -2, -1).mean(dim=(0, -1))),
                  Mistake("you included query position period-1 (whose key would be position 0), but that token "
                          "has not repeated yet: average over queries i >= period only.",
                          lambda p, k: p.diagonal(-(k - 1), -2, -1).mean(dim=(0, -1))),
                  Mistake("you divided by the number of *all* positions; average over the queries i >= period only "
                          "(seq - period of them).",
                          lambda p, k: p.diagonal(-(k - 1), -2, -1)[..., 1:].sum(-1).mean(0) / p.shape[-1]),
                  Mistake("off by one: the induction target of query i is key i - period + 1, not i - period + 2.",
                          lambda p, k: p.diagonal(-(k - 2), -2, -1)[..., 2:].mean(dim=(0, -1))),
              ])


def upstream_note(fn: Any, dependency: str, check: Callable[..., Any]) -> str:
    """"Fix X first" when the learner's `fn` calls their own `dependency` and that function fails its own
    quick check (run quietly here); "" otherwise, so the note never blames a function that passes.

    A shared helper for checks whose exercise builds on an earlier one (chapters 11 and 12)."""
    code = getattr(fn, "__code__", None)
    own = getattr(fn, "__globals__", {}).get(dependency)
    if code is None or dependency not in code.co_names or not callable(own):
        return ""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check(own)
    except (CheckFailure, NotImplementedError):
        return (f"\n  Note: your function calls your `{dependency}`, which fails its own check: "
                f"make that check pass first, then run this one again.")
    except Exception:
        return ""
    return ""


def _without_grad(fn: Callable[..., Any], *args: Any) -> Any:
    with torch.no_grad():
        return fn(*args)


# --------------------------------------------------------------------------- model cases

@dataclass
class ModelCase:
    """One input for an exercise that takes a model: `build()` returns the arguments (models come from
    `ref.pooled`, so they are booted once and restored to their original state on every build)."""
    label: str
    build: Callable[[], tuple]


def run_model_check(name: str, fn: Any, reference: Callable[..., Any], cases: Sequence[ModelCase], thorough: bool,
                    compare_fn: Callable[[Any, Any, tuple], str | None], mistakes: Sequence[Mistake] = (),
                    prepare: Callable[[tuple], Any] | None = None,
                    after: Callable[[tuple, Any, Any], str | None] | None = None,
                    upstream: Callable[[Any], str] = lambda fn: "") -> None:
    """Like `run_check`, for inputs (models, caches) that are rebuilt rather than copied.

    For each case: the reference runs on the built arguments, then `prepare(args)` (whose return value
    is kept as `state`), then the learner's function on the same arguments; `compare_fn(got, expected,
    args)` and `after(args, got, state)` return None or a problem. Mistakes run on a fresh build;
    `upstream(fn)` adds "fix X first" when the learner's function calls an earlier exercise that fails.
    """
    __tracebackhide__ = True
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    with one_thread():
        _run_model_cases(name, fn, reference, cases, compare_fn, mistakes, prepare, after, upstream)
    print(f"✓ {name}: all {len(cases)} {'thorough' if thorough else 'quick'} checks passed")


def _run_model_cases(name: str, fn: Any, reference: Callable[..., Any], cases: Sequence[ModelCase],
                     compare_fn: Callable[[Any, Any, tuple], str | None], mistakes: Sequence[Mistake],
                     prepare: Callable[[tuple], Any] | None, after: Callable[[tuple, Any, Any], str | None] | None,
                     upstream: Callable[[Any], str] = lambda fn: "") -> None:
    __tracebackhide__ = True
    for i, case in enumerate(cases, 1):
        where = f"case {i} of {len(cases)} ({case.label})"
        args = case.build()
        with torch.no_grad():
            expected = reference(*args)
        state = prepare(args) if prepare is not None else None
        got = call(fn, name, args, None, where)
        problem = compare_fn(got, expected, args)
        if problem is None and after is not None:
            problem = after(args, got, state)   # a lifecycle problem: its message is specific, no likely cause
            if problem:
                raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}")
        if problem:
            # a known mistake is named only where it gives a wrong answer on this very case (`expected`)
            cause = likely_cause(mistakes, got, lambda m: _without_grad(m.fn, *case.build()),
                                 lambda g, wrong: compare_fn(g, wrong, args), expected)
            raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}{cause}{upstream(fn)}")


def _tensor_compare(rtol: float, atol: float) -> Callable[[Any, Any, tuple], str | None]:
    def cmp(got: Any, expected: Any, args: tuple) -> str | None:
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor, got {describe(got)}"
        return compare(got.detach().float(), expected.detach().float(), rtol=rtol, atol=atol)
    return cmp


# The few small models every model-taking check of this chapter runs on (chapter 13 has its own, over its vocabulary).
MODEL_SPECS: dict[str, dict[str, int]] = {
    "A": dict(n_layers=2, n_heads=4, d_head=8, seed=1),
    "B": dict(n_layers=3, n_heads=2, d_head=8, seed=2),
    "C": dict(n_layers=1, n_heads=3, d_head=6, seed=3),
    "D": dict(n_layers=2, n_heads=4, d_head=4, seed=4),
}


def spec_label(key: str) -> str:
    spec = MODEL_SPECS[key]
    layers = f"{spec['n_layers']} layer" + ("s" if spec["n_layers"] > 1 else "")
    return f"{layers} x {spec['n_heads']} heads"


def small(key: str) -> Any:
    """Check model `key` (24-token vocabulary, context 32), restored to its original state."""
    return ref.pooled(ref.small_model, n_ctx=32, **MODEL_SPECS[key])


def warm_up() -> None:
    """Boot every model the checks use (tests call this before timing the checks)."""
    for key in MODEL_SPECS:
        small(key)
    for _, n_layers, layout in _LAYOUTS:
        ref.pooled(ref.handmade_induction_model, n_layers=n_layers, layout=layout)


def _tokens(model: Any, batch: int, seq: int, seed: int) -> torch.Tensor:
    return torch.randint(0, model.cfg.d_vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def _model_and_cache(key: str, batch: int, seq: int) -> Callable[[], tuple]:
    def build() -> tuple:
        model = small(key)
        with torch.no_grad():
            _, cache = model.run_with_cache(_tokens(model, batch, seq, seed=batch * 100 + seq))
        return model, cache
    return build


def _cache_cases(thorough: bool) -> list[ModelCase]:
    """Models of different depth and width (the prompts promise any attention-only model): the quick check
    tries two shapes, so a layer or head count written into the code fails before the hidden tests."""
    cases = [ModelCase(f"{spec_label('A')}, batch 3, 12 positions", _model_and_cache("A", 3, 12)),
             ModelCase(f"{spec_label('B')}, batch 2, 9 positions", _model_and_cache("B", 2, 9))]
    if thorough:
        cases += [ModelCase(f"{spec_label('C')}, batch 1, 5 positions", _model_and_cache("C", 1, 5)),
                  ModelCase(f"{spec_label('D')}, batch 4, 16 positions", _model_and_cache("D", 4, 16)),
                  ModelCase(f"{spec_label('B')}, batch 5, 3 positions", _model_and_cache("B", 5, 3))]
    return cases


# --------------------------------------------------------------------------- decomposition

def _component_labels(model: Any) -> list[str]:
    L, H = model.cfg.n_layers, model.cfg.n_heads
    return [f"L{layer}H{head}" for layer in range(L) for head in range(H)] + ["embed", "pos_embed", "bias"]


def _decompose_compare(got: Any, expected: Any, args: tuple) -> str | None:
    """None, or which component is wrong (by name), so a learner knows which part of the sum to look at."""
    model, cache = args
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor, got {describe(got)}"
    L, H = model.cfg.n_layers, model.cfg.n_heads
    if got.ndim == 4 and got.shape[1:] == expected.shape[1:] and got.shape[0] != expected.shape[0]:
        return (f"expected {expected.shape[0]} components ({L} layers x {H} heads, then embed, pos_embed and "
                f"one bias row), got {got.shape[0]}")
    if got.shape != expected.shape:
        return compare(got.detach(), expected, rtol=1e-4, atol=1e-5)
    got = got.detach()
    labels = _component_labels(model)
    labels = labels if len(labels) == expected.shape[0] else [str(c) for c in range(expected.shape[0])]
    wrong = [c for c in range(len(labels)) if compare(got[c], expected[c], rtol=1e-4, atol=1e-5) is not None]
    if not wrong:
        return None
    first = wrong[0]
    names = ", ".join(labels[c] for c in wrong[:6]) + (", ..." if len(wrong) > 6 else "")
    problem = (f"{len(wrong)} of {len(labels)} components are wrong ({names}); the first, component {first} "
               f"({labels[first]}):\n  " + compare(got[first], expected[first], rtol=1e-4, atol=1e-5,
                                                 what=f"component {first} ({labels[first]})"))
    matches = [next((e for e in range(len(labels)) if compare(got[c], expected[e], rtol=1e-4, atol=1e-5) is None),
                    None) for c in wrong]
    if all(m is not None for m in matches):
        problem += ("\n  Each of your components is a right part in the wrong place: order them heads first "
                    "(L0H0, L0H1, ..., one layer after another), then embed, pos_embed, bias.")
    elif compare(got.sum(0), cache["resid_post", L - 1], rtol=1e-4, atol=1e-4) is None:
        problem += ("\n  Your components do add up to the final residual stream, so something moved between "
                    "components: check what each one holds.")
    return problem


def _decomp_mistakes() -> list[Mistake]:
    def embed_first(model: Any, cache: Any) -> torch.Tensor:
        d = ref.decompose_residual(model, cache)
        n = model.cfg.n_layers * model.cfg.n_heads
        return torch.cat([d[n:n + 2], d[:n], d[n + 2:]])

    def head_major(model: Any, cache: Any) -> torch.Tensor:
        d = ref.decompose_residual(model, cache)
        L, H = model.cfg.n_layers, model.cfg.n_heads
        order = [layer * H + h for h in range(H) for layer in range(L)]
        return torch.cat([d[order], d[L * H:]])

    def no_bias(model: Any, cache: Any) -> torch.Tensor:
        return ref.decompose_residual(model, cache)[:-1]

    def zero_bias(model: Any, cache: Any) -> torch.Tensor:
        d = ref.decompose_residual(model, cache).clone()
        d[-1] = 0.0
        return d

    def last_layer_bias(model: Any, cache: Any) -> torch.Tensor:
        d = ref.decompose_residual(model, cache).clone()
        d[-1] = model.b_O[-1].expand_as(d[-1])
        return d

    def reshaped_heads(model: Any, cache: Any) -> torch.Tensor:
        d = ref.decompose_residual(model, cache).clone()
        H = model.cfg.n_heads
        for layer in range(model.cfg.n_layers):
            per_head = torch.einsum("bphd,hdm->bphm", cache["z", layer], model.W_O[layer])
            d[layer * H:(layer + 1) * H] = per_head.reshape(H, *per_head.shape[:2], -1)
        return d

    def w_o_transposed_heads(model: Any, cache: Any) -> torch.Tensor:
        d = ref.decompose_residual(model, cache).clone()
        L, H = model.cfg.n_layers, model.cfg.n_heads
        for layer in range(L):
            d[layer * H:(layer + 1) * H] = torch.einsum("bphd,hdm->hbpm", cache["z", layer],
                                                        model.W_O[layer].flip(0))
        return d

    return [Mistake("the bias row is missing: add model.b_O summed over layers, broadcast to [batch, pos, d_model], "
                    "as the last component.", no_bias),
            Mistake("the bias row is zero: it must hold the attention output biases, model.b_O summed over layers "
                    "(they are not zero in this model).", zero_bias),
            Mistake("the bias row holds only the last layer's b_O: sum model.b_O over *every* layer.", last_layer_bias),
            Mistake("your per-head tensor [batch, pos, head, d_model] was reshaped to put the head axis first; "
                    "reshape keeps the memory order and mixes heads, batch and positions. Move an axis with "
                    "permute / movedim (or name the output axes in einsum) instead.", reshaped_heads),
            Mistake("embed and pos_embed come *after* the heads (TransformerLens's order: heads, embed, pos_embed, "
                    "bias).", embed_first),
            Mistake("your heads are ordered head by head across layers; list them layer by layer (L0H0, L0H1, ...).",
                    head_major),
            Mistake("each head must use its own slice of W_O: model.W_O[layer, head] (shape [d_head, d_model]).",
                    w_o_transposed_heads)]


def check_decompose_residual(fn: Callable[..., Any], thorough: bool = False) -> None:
    """decompose_residual(model, cache) -> [n_layers * n_heads + 3, batch, pos, d_model]."""
    __tracebackhide__ = True
    run_model_check("decompose_residual", fn, ref.decompose_residual, _cache_cases(thorough), thorough,
                     _decompose_compare, _decomp_mistakes())


# --------------------------------------------------------------------------- logit lens

def _lens_mistakes() -> list[Mistake]:
    def stack(model: Any, cache: Any) -> torch.Tensor:
        L = model.cfg.n_layers
        return torch.stack([cache["resid_pre", layer] for layer in range(L)] + [cache["resid_post", L - 1]])

    def no_ln(model: Any, cache: Any) -> torch.Tensor:
        return stack(model, cache) @ model.W_U + model.b_U

    def cached_scale(model: Any, cache: Any) -> torch.Tensor:
        s = stack(model, cache)
        s = s - s.mean(-1, keepdim=True)
        s = s / cache["ln_final.hook_scale"]
        return model.unembed(s * model.ln_final._original_component.weight + model.ln_final._original_component.bias)

    def cached_scale_no_affine(model: Any, cache: Any) -> torch.Tensor:
        return model.unembed(cache.apply_ln_to_stack(stack(model, cache), layer=model.cfg.n_layers, recompute_ln=False))

    def no_b_u(model: Any, cache: Any) -> torch.Tensor:
        return ref.logit_lens(model, cache) - model.b_U

    def post_only(model: Any, cache: Any) -> torch.Tensor:
        L = model.cfg.n_layers
        return torch.stack([model.unembed(model.ln_final(cache["resid_post", layer])) for layer in range(L)])

    return [Mistake("the residual stream must go through the final layer norm (`model.ln_final`) before the "
                    "unembedding, as it does in the real forward pass.", no_ln),
            Mistake("you normalised every layer with the *final* residual's cached scale (`ln_final.hook_scale`); "
                    "the logit lens re-normalises each residual with its own statistics: call `model.ln_final(x)`.",
                    cached_scale),
            Mistake("you normalised every layer with the *final* residual's cached scale (`apply_ln_to_stack` "
                    "without `recompute_ln`); the logit lens re-normalises each residual with its own statistics, "
                    "and keeps the layer norm's weight and bias: call `model.ln_final(x)`.", cached_scale_no_affine),
            Mistake("the unembedding has a bias: use `model.unembed(x)` (or `x @ model.W_U + model.b_U`).", no_b_u),
            Mistake("the first entry is the residual *before* layer 0 (just the embeddings): stack resid_pre of "
                    "every layer, then the last layer's resid_post, n_layers + 1 entries.", post_only)]


def check_logit_lens_stack(fn: Callable[..., Any], thorough: bool = False) -> None:
    """logit_lens(model, cache) -> [n_layers + 1, batch, pos, d_vocab]."""
    __tracebackhide__ = True
    run_model_check("logit_lens", fn, ref.logit_lens, _cache_cases(thorough), thorough,
                     _tensor_compare(1e-4, 1e-4), _lens_mistakes())


# --------------------------------------------------------------------------- ablation

def _ablation_case(key: str, heads: list[tuple[int, int]], batch: int = 3, seq: int = 10) -> Callable[[], tuple]:
    def build() -> tuple:
        model = small(key)
        return model, _tokens(model, batch, seq, seed=len(heads) * 10 + seq), list(heads)
    return build


def _ablation_cases(thorough: bool) -> list[ModelCase]:
    cases = [ModelCase("ablate head 2 of layer 1", _ablation_case("A", [(1, 2)])),
             ModelCase("three heads: (0, 0) and (0, 2) in layer 0, (1, 3) in layer 1",
                       _ablation_case("A", [(0, 0), (0, 2), (1, 3)], 2, 8))]
    if thorough:
        cases += [ModelCase("two heads of layer 0", _ablation_case("D", [(0, 0), (0, 3)])),
                  ModelCase("heads in two layers, (1, 1) then (0, 2)", _ablation_case("A", [(1, 1), (0, 2)], 2, 7)),
                  ModelCase("no heads at all (logits must be unchanged)", _ablation_case("D", [])),
                  ModelCase(f"{spec_label('B')}, ablate (2, 0) and (1, 1)", _ablation_case("B", [(2, 0), (1, 1)])),
                  ModelCase("every head of a 1-layer model", _ablation_case("C", [(0, 0), (0, 1), (0, 2)], 4, 6)),
                  ModelCase("heads listed out of order, (1, 3), (0, 1), (1, 0)",
                            _ablation_case("D", [(1, 3), (0, 1), (1, 0)], 2, 9)),
                  ModelCase("the same head listed twice, (1, 0) and (1, 0)", _ablation_case("B", [(1, 0), (1, 0)], 2, 5))]
    return cases


def _clean_logits(args: tuple) -> torch.Tensor:
    model, tokens, _ = args
    with torch.no_grad():
        return model(tokens)


def _no_leftover_hooks(args: tuple, got: Any, clean: torch.Tensor) -> str | None:
    model, tokens, _ = args
    if model.training:
        return ("after your function returned, the model was in training mode: it was given to you in eval mode "
                "and must be left as it was (don't call model.train(), or call model.eval() again before "
                "returning).")
    with torch.no_grad():
        now = model(tokens)
    if compare(now, clean, rtol=1e-5, atol=1e-5) is not None:
        return ("after your function returned, the model no longer gives its original outputs: hooks stayed "
                "attached, or weights were changed. Use `model.run_with_hooks(...)`, which removes its hooks "
                "afterwards, and change activations in hooks rather than weights.")
    return None


def _ablation_mistakes() -> list[Mistake]:
    def every_layer(model: Any, tokens: Any, heads: list) -> torch.Tensor:
        return ref.ablate_heads(model, tokens, [(layer, h) for _, h in heads for layer in range(model.cfg.n_layers)])

    def wrong_axis(model: Any, tokens: Any, heads: list) -> torch.Tensor:
        def hook(z: torch.Tensor, hook: Any, hs: list) -> torch.Tensor:
            z[:, hs] = 0.0
            return z
        from functools import partial
        return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", partial(hook, hs=[h]))
                                                       for layer, h in heads])

    def scores(model: Any, tokens: Any, heads: list) -> torch.Tensor:
        def hook(s: torch.Tensor, hook: Any, h: int) -> torch.Tensor:
            s[:, h] = 0.0
            return s
        from functools import partial
        return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_attn_scores", partial(hook, h=h))
                                                       for layer, h in heads])

    def only_first(model: Any, tokens: Any, heads: list) -> torch.Tensor:
        return ref.ablate_heads(model, tokens, heads[:1])

    def late_binding(model: Any, tokens: Any, heads: list) -> torch.Tensor:
        last = heads[-1][1] if heads else 0    # a closure made in a loop reads the loop variable's final value
        return ref.ablate_heads(model, tokens, [(layer, last) for layer, _ in heads])

    return [Mistake("you zeroed the head index in every layer; only the listed (layer, head) pairs should go.",
                    every_layer),
            Mistake("every hook zeroed the *last* head of the list: a hook function defined inside a loop looks up "
                    "the loop variable when the model calls it, after the loop has ended. Bind the value when you "
                    "make the hook: functools.partial(fn, head=head), or a default argument `def hook(z, hook, "
                    "head=head)`.", late_binding),
            Mistake("only the first head of the list was ablated: every (layer, head) pair in `heads` must go "
                    "(group them by layer, one hook per layer, or one hook that loops over the list).", only_first),
            Mistake("hook_z is [batch, pos, head, d_head]: the head is the third axis (`z[:, :, head] = 0`), "
                    "not the second.", wrong_axis),
            Mistake("zeroing the attention *scores* makes the head attend uniformly, it does not silence it: "
                    "zero its output z instead.", scores)]


def check_ablate_heads_zero(fn: Callable[..., Any], thorough: bool = False) -> None:
    """ablate_heads(model, tokens, heads) -> logits [batch, pos, d_vocab] with those heads' z set to 0."""
    __tracebackhide__ = True
    run_model_check("ablate_heads", fn, ref.ablate_heads, _ablation_cases(thorough), thorough,
                     _tensor_compare(1e-4, 1e-4), _ablation_mistakes(), prepare=_clean_logits,
                    after=_no_leftover_hooks)


# --------------------------------------------------------------------------- finding induction heads

_LAYOUTS: list[tuple[str, int, dict[tuple[int, int], str]]] = [
    ("a hand-built 2-layer model: previous-token head (0, 1), induction head (1, 2), duplicate-token head (1, 0)",
     2, {(0, 1): "prev", (1, 2): "induction", (1, 0): "duplicate"}),
    ("a hand-built 3-layer model with induction heads in layers 1 and 2 and decoys",
     3, {(0, 0): "prev", (1, 1): "induction", (2, 0): "induction", (2, 2): "prev", (1, 0): "duplicate"}),
    ("a hand-built 2-layer model: induction head (1, 0), a previous-token head (1, 1) in layer 1",
     2, {(0, 2): "prev", (1, 0): "induction", (1, 1): "prev", (0, 0): "duplicate"}),
    ("a hand-built 2-layer model: induction head (1, 0), a half-induction head (1, 2) scoring about 0.45, and a "
     "positional head (0, 2) that always looks 5 back (an induction score of 1 at period 6 only)",
     2, {(0, 1): "prev", (0, 2): "offset:5", (1, 0): "induction", (1, 2): "half"}),
]


def _normalise_heads(got: Any) -> set[tuple[int, int]] | str:
    if isinstance(got, torch.Tensor):
        got = got.tolist()
    try:
        out = set()
        for item in got:
            layer, head = item
            out.add((int(layer), int(head)))
        return out
    except (TypeError, ValueError):
        return f"expected a list of (layer, head) pairs, got {describe(got)}"


@dataclass
class _FindCase:
    """One call of find_induction_heads: a model and the keyword arguments (non-default ones are shown)."""
    label: str
    build: Callable[[], Any]
    layout: dict[tuple[int, int], str]
    kwargs: dict


def _handmade(index: int) -> tuple[str, Callable[[], Any], dict[tuple[int, int], str]]:
    label, n, layout = _LAYOUTS[index]
    return label, (lambda: ref.pooled(ref.handmade_induction_model, n_layers=n, layout=layout)), layout


def _induction_model_cases(thorough: bool) -> list[_FindCase]:
    """Every parameter takes non-default values: a threshold either side of the half-induction head's score,
    and a period at which the positional head passes for an induction head (so ignoring `period` or
    `threshold` gives a different answer)."""
    cases = [_FindCase(*_handmade(0), {}), _FindCase(*_handmade(3), {"threshold": 0.3})]
    if thorough:
        cases += [_FindCase(*_handmade(1), {}), _FindCase(*_handmade(2), {}),
                  _FindCase(*_handmade(3), {"threshold": 0.7, "period": 6}),
                  _FindCase(*_handmade(3), {"period": 8, "n_seqs": 4}),
                  _FindCase(*_handmade(3), {"threshold": 0.2, "period": 6, "n_seqs": 8}),
                  _FindCase(*_handmade(3), {"threshold": 1.0, "period": 6}),   # a score of exactly 1.0 is not above 1.0
                  _FindCase(*_handmade(1), {"period": 4}),
                  _FindCase("a small model with random weights (it has no induction heads)",
                            lambda: small("D"), {}, {})]
    return cases


def _reference_heads(case: _FindCase) -> set[tuple[int, int]]:
    with torch.no_grad():
        return set(ref.find_induction_heads(case.build(), **case.kwargs))


def check_find_induction_heads(fn: Callable[..., Any], thorough: bool = False) -> None:
    """find_induction_heads(model, threshold=0.5, period=10, n_seqs=32) -> list of (layer, head) pairs whose
    induction score is above the threshold."""
    __tracebackhide__ = True
    guard()
    name = "find_induction_heads"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = _induction_model_cases(thorough)
    with one_thread():
        _find_cases(name, fn, cases)
    print(f"✓ {name}: all {len(cases)} {'thorough' if thorough else 'quick'} checks passed")


def _find_cases(name: str, fn: Any, cases: list[_FindCase]) -> None:
    __tracebackhide__ = True
    for i, case in enumerate(cases, 1):
        args = ", ".join(f"{k}={v}" for k, v in case.kwargs.items())
        where = f"case {i} of {len(cases)} ({case.label}; called with {args or 'the default arguments'})"
        model = case.build()
        with torch.no_grad():
            expected = set(ref.find_induction_heads(model, **case.kwargs))   # first: the learner's call may alter it
        got = _normalise_heads(call(fn, name, (model,), dict(case.kwargs), where))
        if isinstance(got, str):
            raise CheckFailure(f"`{name}` is wrong on {where}:\n  {got}")
        if got != expected:
            msg = (f"`{name}` is wrong on {where}:\n  expected the heads {sorted(expected)}, "
                   f"got {sorted(got)}")
            raise CheckFailure(msg + _find_cause(case, got, expected)
                               + upstream_note(fn, "induction_score", check_induction_head_score))


def _find_cause(case: _FindCase, got: set[tuple[int, int]], expected: set[tuple[int, int]]) -> str:
    """A likely cause, only where the wrong answer is what that mistake gives on this case."""
    kinds = {case.layout.get(h) for h in got - expected}
    kw = case.kwargs
    if set(kw) & {"threshold", "period"}:
        for param, default in (("threshold", 0.5), ("period", 10)):
            if param in kw and got == _reference_heads(_FindCase(case.label, case.build, case.layout,
                                                                  {**kw, param: default})):
                return (f"\n  Likely cause: your function ignores its `{param}` argument (it behaves as if "
                        f"{param}={default}): use the value it is called with.")
    if "duplicate" in kinds:
        return ("\n  Likely cause: you picked a duplicate-token head, which attends to the earlier copy of "
                "the current token. Score attention to the token *after* it (key i - period + 1).")
    if "prev" in kinds:
        return ("\n  Likely cause: you picked a previous-token head; use the induction score, not the "
                "previous-token score.")
    if got < expected:
        return ("\n  Likely cause: some induction heads are missing: score the heads of *every* layer, and "
                "keep each one whose score is above the threshold.")
    if kw.get("threshold") == 1.0 and got > expected:
        return ("\n  Likely cause: a head whose score is exactly the threshold (1.0 here) is not *above* it: "
                "compare with `>`, not `>=`.")
    return ""


# --------------------------------------------------------------------------- concept question

# sha256 of "period_shortcut_quiz:<letter>" (see `choice_digest`), so the answer is not readable at a glance
_SHORTCUT_DIGEST = "99ce1233c005492e615caf5ff0fdb67eaceac339b02a7ff073250c9f0d3fcfd0"


def check_period_shortcut_quiz(answer: Any, thorough: bool = False) -> None:
    """Why does the fixed-period model score high on the induction score yet fail at another period?"""
    __tracebackhide__ = True
    check_choice("period_shortcut_quiz", answer, _SHORTCUT_DIGEST, "abcd")


# --------------------------------------------------------------------------- ablation effects with an interval

def _effects_case(model_of: Callable[[], Any], d_vocab: int, n: int, period: int, repeats: int, seed: int,
                  head_sets: list[list[tuple[int, int]]]) -> Callable[[], tuple]:
    def build() -> tuple:
        tokens = ref.repeated_tokens(n, period, d_vocab, seed=seed, n_repeats=repeats)
        return model_of(), tokens, period, [list(s) for s in head_sets]
    return build


def _handmade_model(index: int) -> Callable[[], Any]:
    _, n, layout = _LAYOUTS[index]
    return lambda: ref.pooled(ref.handmade_induction_model, n_layers=n, layout=layout)


def _effects_cases(thorough: bool) -> list[ModelCase]:
    """Random-weight models (every number non-trivial) and hand-built induction models (real, large effects);
    periods, batch sizes (2 is where n - 1 matters most), repeats and set sizes all vary."""
    cases = [ModelCase(f"{spec_label('A')}, 6 prompts of period 5 shown twice, sets [(1, 0)] and [(0, 1), (1, 2)]",
                       _effects_case(lambda: small("A"), 24, 6, 5, 2, 31, [[(1, 0)], [(0, 1), (1, 2)]])),
             ModelCase("the hand-built model with induction head (1, 2), 5 prompts of period 6; sets: the induction "
                       "head, the previous-token head (0, 1), the duplicate-token head (1, 0), and no heads",
                       _effects_case(_handmade_model(0), ref._HANDMADE_V, 5, 6, 2, 32, [[(1, 2)], [(0, 1)], [(1, 0)], []]))]
    if thorough:
        cases += [ModelCase(f"{spec_label('B')}, 3 prompts of period 4 shown three times",
                            _effects_case(lambda: small("B"), 24, 3, 4, 3, 33, [[(0, 0), (2, 1)], [(1, 0), (1, 1)]])),
                  ModelCase(f"{spec_label('D')}, only 2 prompts, period 7",
                            _effects_case(lambda: small("D"), 24, 2, 7, 2, 34, [[(0, 3)], [(1, 1), (1, 2)]])),
                  ModelCase(f"{spec_label('C')}, 8 prompts of period 3 shown four times",
                            _effects_case(lambda: small("C"), 24, 8, 3, 4, 35, [[(0, 0), (0, 1), (0, 2)], [(0, 1)]])),
                  ModelCase("the hand-built 3-layer model, 4 prompts of period 8 "
                            "(a set listed in both orders)",
                            _effects_case(_handmade_model(1), ref._HANDMADE_V, 4, 8, 2, 36,
                                          [[(2, 0), (1, 1)], [(1, 1)], [(1, 1), (2, 0)]])),
                  ModelCase(f"{spec_label('A')}, 4 prompts of period 9 shown twice, one set",
                            _effects_case(lambda: small("A"), 24, 4, 9, 2, 38, [[(0, 0), (0, 2), (1, 3)]]))]
    return cases


_COLUMNS = ("mean", "low", "high")


def _effects_compare(got: Any, expected: Any, args: tuple) -> str | None:
    """None, or which set and which column (mean, low, high) is wrong."""
    _, _, _, head_sets = args
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor of shape {tuple(expected.shape)} (one row [mean, low, high] per set), got {describe(got)}"
    if tuple(got.shape) != tuple(expected.shape):
        return (f"expected shape {tuple(expected.shape)} (one row [mean, low, high] per head set, "
                f"{len(head_sets)} sets), got {tuple(got.shape)}")
    g, e = got.detach().double().cpu(), expected.double()
    bad = ~torch.isclose(g, e, rtol=1e-4, atol=1e-5)
    if not bad.any():
        return None
    i, j = (int(v) for v in bad.nonzero()[0])
    return (f"for head set {i} ({head_sets[i]}), the {_COLUMNS[j]} should be {e[i, j]:.6g}, got {g[i, j]:.6g} "
            f"(that row: expected {[round(v, 5) for v in e[i].tolist()]}, got {[round(v, 5) for v in g[i].tolist()]})")


def _effects_state(args: tuple) -> tuple:
    model, tokens, _, head_sets = args
    return _clean_logits((model, tokens, None)), tokens.clone(), [list(s) for s in head_sets]


def _effects_after(args: tuple, got: Any, state: tuple) -> str | None:
    model, tokens, _, head_sets = args
    clean, tokens_before, sets_before = state
    if not torch.equal(tokens, tokens_before):
        return "your function changed the `tokens` it was given; compute on them without writing to them."
    if [list(s) for s in head_sets] != sets_before:
        return "your function changed the `head_sets` list it was given; read it without modifying it."
    return _no_leftover_hooks((model, tokens, None), got, clean)


def _effect_parts(model: Any, tokens: torch.Tensor, period: int, heads: list, start: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token losses [batch, positions] over the scored positions, ablated and clean (for the mistakes)."""
    s = period if start is None else start
    clean = ref.per_token_loss(model(tokens), tokens)[:, s:]
    ablated = ref.per_token_loss(ref.ablate_heads(model, tokens, list(heads)), tokens)[:, s:]
    return ablated, clean


def _rows(values: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    return torch.stack([torch.stack([m, m - h, m + h]) for m, h in values])


def _effects_mistakes() -> list[Mistake]:
    def interval(effect: torch.Tensor, unbiased: bool = True, z: float = 1.96) -> tuple[torch.Tensor, torch.Tensor]:
        return effect.mean(), z * effect.std(unbiased=unbiased) / effect.numel() ** 0.5

    def with_parts(per_set: Callable[[torch.Tensor, torch.Tensor], tuple], start_shift: int = 0):
        def wrong(model: Any, tokens: torch.Tensor, period: int, head_sets: list) -> torch.Tensor:
            start = max(period + start_shift, 0)
            return _rows([per_set(*_effect_parts(model, tokens, period, hs, start)) for hs in head_sets])
        return wrong

    pooled_positions = with_parts(lambda a, c: interval((a - c).flatten()))
    biased = with_parts(lambda a, c: interval((a - c).mean(-1), unbiased=False))
    unpaired = with_parts(lambda a, c: (((a - c).mean(-1)).mean(), interval(a.mean(-1))[1]))
    z_two = with_parts(lambda a, c: interval((a - c).mean(-1), z=2.0))
    no_sqrt = with_parts(lambda a, c: ((a - c).mean(), 1.96 * (a - c).mean(-1).std()))
    ablated_only = with_parts(lambda a, c: interval(a.mean(-1)))
    reversed_sign = with_parts(lambda a, c: interval((c - a).mean(-1)))
    one_early = with_parts(lambda a, c: interval((a - c).mean(-1)), start_shift=-1)
    from_start = with_parts(lambda a, c: interval((a - c).mean(-1)), start_shift=-10**6)

    def cumulative(model: Any, tokens: torch.Tensor, period: int, head_sets: list) -> torch.Tensor:
        so_far: list = []
        out = []
        for hs in head_sets:
            so_far = so_far + list(hs)
            out.append(interval((lambda a, c: (a - c).mean(-1))(*_effect_parts(model, tokens, period, so_far))))
        return _rows(out)

    return [Mistake("the interval treats every (prompt, position) as an independent sample. Positions of one "
                    "prompt share its tokens, so they are not independent: average each prompt's positions first, "
                    "then take the mean and standard deviation over prompts (n = number of prompts).",
                    pooled_positions),
            Mistake("the standard deviation needs n - 1 in its denominator (`Tensor.std()` does this by default; "
                    "`unbiased=False` or `np.std` does not).", biased),
            Mistake("the interval was computed from the ablated losses, not from the per-prompt *differences* "
                    "(ablated - clean). The comparison is paired: the same prompt with and without the heads.",
                    unpaired),
            Mistake("use 1.96 standard errors for a 95 % interval, as the prompt says, not 2.", z_two),
            Mistake("the half-width is 1.96 * std / sqrt(n): the standard error of a mean divides the standard "
                    "deviation by the square root of the number of prompts.", no_sqrt),
            Mistake("you reported the ablated loss itself; the effect is the ablated loss *minus* the clean loss "
                    "of the same prompt.", ablated_only),
            Mistake("the sign is reversed: the effect is ablated minus clean (positive when ablating hurts).",
                    reversed_sign),
            Mistake("you included position period - 1, whose next token is the first of the repeat and cannot be "
                    "predicted: score the positions t >= period of the per-token loss.", one_early),
            Mistake("you scored every position, including the first copy, which nothing can predict: score the "
                    "positions t >= period only.", from_start),
            Mistake("each set's ablation included the heads of the sets before it: ablate every set on its own, "
                    "starting from the unmodified model.", cumulative)]


def check_ablation_effects(fn: Callable[..., Any], thorough: bool = False) -> None:
    """ablation_effects(model, tokens, period, head_sets) -> [len(head_sets), 3]: per-prompt mean effect of
    ablating each set on the loss over the repeats, and its 95 % interval."""
    __tracebackhide__ = True
    run_model_check("ablation_effects", fn, ref.ablation_effects, _effects_cases(thorough), thorough,
                    _effects_compare, _effects_mistakes(), prepare=_effects_state, after=_effects_after,
                    upstream=lambda f: upstream_note(f, "ablate_heads", check_ablate_heads_zero))
