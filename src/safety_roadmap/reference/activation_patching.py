"""Reference solutions for chapter 13 (activation patching on a toy indirect-object task).

The task, its model and the experiments behind the chapter's claims live in
`safety_roadmap.toys.activation_patching`.

The checks compare learners' answers with these and with `transformer_lens.patching`.
TransformerLens is imported only inside the functions that need it.
"""
from __future__ import annotations

from functools import partial
from statistics import NormalDist
from typing import Any, Callable, Sequence

import torch

# --------------------------------------------------------------------------- the toy IOI task

from ..toys.activation_patching import D_VOCAB, SEQ_LEN, IOIBatch, corrupt, ioi_batch  # noqa: E402,F401


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


def _patch_head(act: torch.Tensor, hook: Any, pos: int, head: int, clean: torch.Tensor) -> torch.Tensor:
    act[:, pos, head] = clean[:, pos, head]
    return act


HEAD_HOOKS = {"z": "hook_z", "q": "hook_q", "k": "hook_k", "v": "hook_v"}


def patch_heads_by_pos(model: Any, corrupted_tokens: torch.Tensor, clean_cache: Any,
                       metric: Callable[[torch.Tensor], torch.Tensor], component: str = "z") -> torch.Tensor:
    """metric after patching one head's clean `component` (z, q, k or v) at one position into the
    corrupted run. -> [n_layers, pos, n_heads], the same as
    `patching.get_act_patch_attn_head_{out,q,k,v}_by_pos`."""
    model.eval()
    n_layers, n_heads, n_pos = model.cfg.n_layers, model.cfg.n_heads, corrupted_tokens.shape[1]
    out = torch.zeros(n_layers, n_pos, n_heads)
    with torch.no_grad():
        for layer in range(n_layers):
            name = f"blocks.{layer}.attn.{HEAD_HOOKS[component]}"
            for pos in range(n_pos):
                for head in range(n_heads):
                    hook = partial(_patch_head, pos=pos, head=head, clean=clean_cache[name])
                    out[layer, pos, head] = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, hook)]))
    return out


def _patch_heads_all_pos(z: torch.Tensor, hook: Any, heads: list[int], clean: torch.Tensor) -> torch.Tensor:
    z[:, :, heads] = clean[:, :, heads]
    return z


def patched_heads_metric(model: Any, corrupted_tokens: torch.Tensor, clean_cache: Any,
                         metric: Callable[[torch.Tensor], torch.Tensor], heads: Sequence[tuple[int, int]]) -> float:
    """metric of the corrupted run with every listed head's z patched from the clean run at all positions."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    hooks = [(f"blocks.{layer}.attn.hook_z", partial(_patch_heads_all_pos, heads=hs,
                                                     clean=clean_cache[f"blocks.{layer}.attn.hook_z"]))
             for layer, hs in by_layer.items()]
    return float(metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=hooks)))


def select_heads(model: Any, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor,
                 metric: Callable[[torch.Tensor], torch.Tensor], target: float = 0.8) -> list[tuple[int, int]]:
    """Greedy forward selection: add, one at a time, the head whose clean z (all positions, patched
    together with the heads already chosen) gives the highest metric, until the normalised recovery
    reaches `target` or no head is left. Returns the heads in the order chosen."""
    model.eval()
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(clean_tokens)
        clean_value = float(metric(clean_logits))
        corrupted_value = float(metric(model(corrupted_tokens)))
        chosen: list[tuple[int, int]] = []
        candidates = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
        while candidates:
            scores = [patched_heads_metric(model, corrupted_tokens, clean_cache, metric, chosen + [c])
                      for c in candidates]
            best = max(range(len(candidates)), key=lambda i: scores[i])   # the first of equal scores
            chosen.append(candidates.pop(best))
            if (scores[best] - corrupted_value) / (clean_value - corrupted_value) >= target:
                break
    return chosen


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


def confirm_heads(model: Any, tokens: torch.Tensor, io: torch.Tensor, s: torch.Tensor,
                  heads: Sequence[tuple[int, int]], mean_tokens: torch.Tensor,
                  confidence: float = 0.95) -> tuple[float, float, float]:
    """On held-out prompts `tokens` (answers `io`, subjects `s`): the per-prompt drop in logit
    difference when `heads` are mean-ablated (averages over `mean_tokens`).
    Returns (mean drop, CI low, CI high)."""
    model.eval()
    with torch.no_grad():
        before = ioi_logit_diff(model(tokens), io, s)
        after = ioi_logit_diff(mean_ablate_heads(model, tokens, heads, mean_tokens), io, s)
    drop = before - after
    low, high = effect_confidence_interval(drop, confidence)
    return float(drop.double().mean()), low, high


# --------------------------------------------------------------------------- models for checks


def check_model(n_layers: int = 2, n_heads: int = 2, d_head: int = 8, seed: int = 0) -> Any:
    """A small attention-only model over the IOI vocabulary with fixed random weights, in eval mode."""
    from .interpretability_tools import small_model

    return small_model(n_layers=n_layers, n_heads=n_heads, d_head=d_head, d_vocab=D_VOCAB, n_ctx=SEQ_LEN,
                       seed=seed, perturb=True)


# --------------------------------------------------------------------------- the chapter's experiment


def chapter_experiment(seed: int = 0, steps: int = 300, shortcut_steps: int = 150,
                       target: float = 0.8) -> dict[str, Any]:
    """Everything the chapter's prose claims, for one training seed, with the notebook's prompt seeds:
    accuracies (detection model and fixed-template shortcut model), per-head component recoveries on
    the discovery prompts, the heads selected there, and the held-out confirmation of those heads
    against the remaining ones. Tests re-run it with other seeds."""
    from ..toys import activation_patching as task

    model = task.train_ioi_model(seed, steps)
    shortcut = task.train_ioi_model(seed, shortcut_steps, templates=[0])
    discovery = task.ioi_batch(200, torch.Generator().manual_seed(7))
    heldout = task.ioi_batch(200, torch.Generator().manual_seed(8))
    reference = task.ioi_batch(500, torch.Generator().manual_seed(11))
    fresh = task.ioi_batch(1000, torch.Generator().manual_seed(99))
    out: dict[str, Any] = {
        "accuracy": {family: task.accuracy(model, task.IOIBatch(*(t[mask] for t in fresh)))
                     for family, mask in _families(fresh).items()},
        "shortcut_accuracy": {family: task.accuracy(shortcut, task.IOIBatch(*(t[mask] for t in fresh)))
                              for family, mask in _families(fresh).items()},
        "components": task.head_component_recovery(model, discovery),
        "shortcut_components": task.head_component_recovery(shortcut, discovery),
    }
    with task.quiet_patching():
        heads = select_heads(model, discovery.tokens, task.corrupt(discovery), task.mean_logit_diff(discovery), target)
    others = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)
              if (layer, head) not in heads]
    with torch.no_grad():
        out["clean_positive"] = (ioi_logit_diff(model(discovery.tokens), discovery.io, discovery.s) > 0).float().mean().item()
        corrupted_ld = ioi_logit_diff(model(task.corrupt(discovery)), discovery.io, discovery.s)
        out["corrupted_negative"] = (corrupted_ld < 0).float().mean().item()
    out["duplicate_attention"] = duplicate_attention(model, discovery)
    out["selected"] = heads
    out["confirm_selected"] = confirm_heads(model, heldout.tokens, heldout.io, heldout.s, heads, reference.tokens)
    out["confirm_others"] = confirm_heads(model, heldout.tokens, heldout.io, heldout.s, others, reference.tokens)
    with torch.no_grad():
        def ablated(heads: list) -> torch.Tensor:
            logits = mean_ablate_heads(model, heldout.tokens, heads, reference.tokens)
            return ioi_logit_diff(logits, heldout.io, heldout.s)
        paired = ablated(others) - ablated(heads)
    out["paired_difference"] = (float(paired.double().mean()), *effect_confidence_interval(paired))
    out["attribution"] = _attribution_vs_patching(model, discovery)
    return out


def _attribution_vs_patching(model: Any, discovery: IOIBatch, template: int = 2) -> dict[str, float]:
    """Normalised real and estimated effects of patching resid_pre at (layer 0, X) and (layer 1, last)."""
    from ..toys import activation_patching as task

    rows = discovery.template == template
    batch = IOIBatch(*(t[rows] for t in discovery))
    metric = task.mean_logit_diff(batch)
    corrupted = task.corrupt(batch)
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(batch.tokens)
        c, k = float(metric(clean_logits)), float(metric(model(corrupted)))
    real = (patch_resid_by_pos(model, corrupted, cache, metric) - k) / (c - k)
    estimate = attribution_patch_resid(model, batch.tokens, corrupted, metric).detach() / (c - k)
    x = int(batch.x_pos[0])
    return {"real_x": float(real[0, x]), "estimate_x": float(estimate[0, x]),
            "real_last": float(real[1, -1]), "estimate_last": float(estimate[1, -1])}


def _families(batch: IOIBatch) -> dict[str, torch.Tensor]:
    from ..toys.activation_patching import PAIR_FIRST, TEMPLATES

    fixed = batch.template == 0
    pair_first = torch.isin(batch.template, torch.tensor(PAIR_FIRST))
    return {"fixed template": fixed, "other pair-first templates": pair_first & ~fixed,
            "X-first templates": ~pair_first, "all": torch.ones(len(batch.template), dtype=torch.bool)}


@torch.no_grad()
def duplicate_attention(model: Any, batch: IOIBatch) -> torch.Tensor:
    """[n_heads] for layer 0: mean attention from the second mention of S to the first mention of S,
    minus the attention from there to the IO mention, over prompts where IO comes before the second S.
    Positive: the head looks back at the earlier copy of its own name (duplicate-token attention)."""
    model.eval()
    device = next(model.parameters()).device
    _, cache = model.run_with_cache(batch.tokens.to(device), names_filter=lambda name: name.endswith("hook_pattern"))
    pattern = cache["pattern", 0].cpu()                       # [batch, head, query, key]
    positions = torch.arange(batch.tokens.shape[1])
    is_s = batch.tokens == batch.s[:, None]
    s1 = torch.where(is_s, positions, batch.tokens.shape[1]).min(1).values
    s2 = torch.where(is_s, positions, -1).max(1).values
    io_pos = (batch.tokens == batch.io[:, None]).float().argmax(1)
    keep = io_pos < s2
    rows = torch.arange(len(s1))[keep]
    to_s1 = pattern[rows, :, s2[keep], s1[keep]]             # [kept, head]
    to_io = pattern[rows, :, s2[keep], io_pos[keep]]
    return (to_s1 - to_io).mean(0)
