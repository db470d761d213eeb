"""Reference solutions for chapter 13 (activation patching on a toy indirect-object task).

The checks compare learners' answers with these and with `transformer_lens.patching`.
TransformerLens is imported only inside the functions that need it.
"""
from __future__ import annotations

from functools import partial
from statistics import NormalDist
from typing import Any, Callable, Sequence

import torch

# --------------------------------------------------------------------------- the toy IOI task

BOS, AND, TO = 0, 1, 2
FILLERS = tuple(range(3, 11))
NAMES = tuple(range(11, 31))
D_VOCAB = 31
SEQ_LEN = 10
S2_POS = 6   # [BOS, n1, AND, n2, f, f, S2, f, f, TO]


def ioi_prompts(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`n` prompts [BOS, n1, AND, n2, f, f, S, f, f, TO] whose answer is the name that is not repeated.

    Half ABBA (n1 = IO), half BABA (n1 = S), in random order. Returns tokens [n, 10], io [n], s [n].
    """
    picks = torch.stack([torch.randperm(len(NAMES), generator=generator)[:2] for _ in range(n)]) + NAMES[0]
    io, s = picks[:, 0], picks[:, 1]
    abba = torch.rand(n, generator=generator) < 0.5
    n1, n2 = torch.where(abba, io, s), torch.where(abba, s, io)
    f = torch.randint(FILLERS[0], FILLERS[-1] + 1, (n, 4), generator=generator)
    col = lambda value: torch.full((n,), value)   # noqa: E731
    tokens = torch.stack([col(BOS), n1, col(AND), n2, f[:, 0], f[:, 1], s, f[:, 2], f[:, 3], col(TO)], dim=1)
    return tokens, io, s


def corrupt_s2(tokens: torch.Tensor, io: torch.Tensor) -> torch.Tensor:
    """The corrupted twin of each prompt: the second mention of S becomes IO, so the answer flips."""
    corrupted = tokens.clone()
    corrupted[:, S2_POS] = io
    return corrupted


# --------------------------------------------------------------------------- metrics


def ioi_logit_diff(logits: torch.Tensor, io: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Per-prompt logit(IO) - logit(S) at the last position. logits [batch, pos, d_vocab] -> [batch]."""
    last = logits[:, -1]
    return last.gather(1, io[:, None])[:, 0] - last.gather(1, s[:, None])[:, 0]


def normalised_recovery(patched: Any, clean: Any, corrupted: Any) -> Any:
    """0 where a patch leaves the corrupted metric unchanged, 1 where it restores the clean one."""
    return (patched - corrupted) / (clean - corrupted)


def effect_confidence_interval(values: torch.Tensor, confidence: float = 0.95) -> tuple[float, float]:
    """Normal-approximation interval for the mean of per-prompt `values` [n]:
    mean +- z * s / sqrt(n), with s the sample standard deviation (n - 1 in the denominator)."""
    x = values.double()
    n = x.shape[0]
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * x.std(unbiased=True) / n ** 0.5
    mean = x.mean()
    return float(mean - half), float(mean + half)


# --------------------------------------------------------------------------- patching


def _patch_position(act: torch.Tensor, hook: Any, pos: int, clean: torch.Tensor) -> torch.Tensor:
    act[:, pos] = clean[:, pos]
    return act


def patch_resid_by_pos(model: Any, corrupted_tokens: torch.Tensor, clean_cache: Any,
                       metric: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """metric after patching the clean resid_pre of each (layer, position) into the corrupted run.

    -> [n_layers, pos], the same as `transformer_lens.patching.get_act_patch_resid_pre`.
    """
    model.eval()
    n_layers, n_pos = model.cfg.n_layers, corrupted_tokens.shape[1]
    out = torch.zeros(n_layers, n_pos)
    with torch.no_grad():
        for layer in range(n_layers):
            name = f"blocks.{layer}.hook_resid_pre"
            for pos in range(n_pos):
                hook = partial(_patch_position, pos=pos, clean=clean_cache[name])
                out[layer, pos] = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, hook)]))
    return out


def _patch_head(z: torch.Tensor, hook: Any, pos: int, head: int, clean: torch.Tensor) -> torch.Tensor:
    z[:, pos, head] = clean[:, pos, head]
    return z


def patch_heads_by_pos(model: Any, corrupted_tokens: torch.Tensor, clean_cache: Any,
                       metric: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """metric after patching one head's clean output (hook_z) at one position into the corrupted run.

    -> [n_layers, pos, n_heads], the same as `patching.get_act_patch_attn_head_out_by_pos`.
    """
    model.eval()
    n_layers, n_heads, n_pos = model.cfg.n_layers, model.cfg.n_heads, corrupted_tokens.shape[1]
    out = torch.zeros(n_layers, n_pos, n_heads)
    with torch.no_grad():
        for layer in range(n_layers):
            name = f"blocks.{layer}.attn.hook_z"
            for pos in range(n_pos):
                for head in range(n_heads):
                    hook = partial(_patch_head, pos=pos, head=head, clean=clean_cache[name])
                    out[layer, pos, head] = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, hook)]))
    return out


def mean_ablate_heads(model: Any, tokens: torch.Tensor, heads: Sequence[tuple[int, int]],
                      mean_tokens: torch.Tensor) -> torch.Tensor:
    """Logits [batch, pos, d_vocab] with each listed head's output (hook_z) replaced, at every
    position, by its average over the prompts in `mean_tokens` at that position."""
    model.eval()
    names = sorted({f"blocks.{int(layer)}.attn.hook_z" for layer, _ in heads})
    with torch.no_grad():
        _, cache = model.run_with_cache(mean_tokens, names_filter=lambda name: name in names)
        layers = {int(layer) for layer, _ in heads}
        means = {layer: cache["z", layer].mean(0) for layer in layers}   # [pos, head, d_head]

        def hook(z: torch.Tensor, hook: Any, layer: int, hs: list[int]) -> torch.Tensor:
            z[:, :, hs] = means[layer][None, : z.shape[1], hs]
            return z

        by_layer: dict[int, list[int]] = {}
        for layer, head in heads:
            by_layer.setdefault(int(layer), []).append(int(head))
        hooks = [(f"blocks.{layer}.attn.hook_z", partial(hook, layer=layer, hs=hs)) for layer, hs in by_layer.items()]
        return model.run_with_hooks(tokens, fwd_hooks=hooks)


def attribution_patch_resid(model: Any, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor,
                            metric: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Linear estimate of what patching each (layer, position) of resid_pre would do to the metric:
    sum over batch and d_model of (clean - corrupted activation) * d metric / d activation, with the
    gradient taken on the corrupted run. -> [n_layers, pos], estimating (patched - corrupted metric).
    """
    model.eval()
    n_layers = model.cfg.n_layers
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)]
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_tokens, names_filter=lambda name: name in names)
    acts: dict[int, torch.Tensor] = {}

    def keep(act: torch.Tensor, hook: Any, layer: int) -> torch.Tensor:
        act.retain_grad()
        acts[layer] = act
        return act

    with torch.enable_grad():
        hooks = [(names[layer], partial(keep, layer=layer)) for layer in range(n_layers)]
        logits = model.run_with_hooks(corrupted_tokens, fwd_hooks=hooks)
        metric(logits).backward()
    model.zero_grad(set_to_none=True)
    rows = [((clean_cache["resid_pre", layer] - acts[layer].detach()) * acts[layer].grad).sum(dim=(0, 2))
            for layer in range(n_layers)]
    return torch.stack(rows)


# --------------------------------------------------------------------------- models for checks


def check_model(n_layers: int = 2, n_heads: int = 2, d_head: int = 8, seed: int = 0) -> Any:
    """A small attention-only model over the IOI vocabulary with fixed random weights, in eval mode."""
    from .interpretability_tools import small_model

    return small_model(n_layers=n_layers, n_heads=n_heads, d_head=d_head, d_vocab=D_VOCAB, n_ctx=SEQ_LEN,
                       seed=seed, perturb=True)
