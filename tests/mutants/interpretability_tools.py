"""Mutants and alternatives for chapter 12_interpretability_tools.

TransformerLens is imported, and one small model run forwards and backwards, when this module is
imported (at test collection): the first import and the first model build cost seconds, and the
timed alternative tests in tests/test_exercises.py must measure the checks, not that warm-up.
"""
from __future__ import annotations

from functools import partial

import torch
import transformer_lens  # noqa: F401  (warm-up, see the module docstring)

from safety_roadmap.checks import interpretability_tools as checks
from safety_roadmap.reference import interpretability_tools as ref


def _warm_up() -> None:
    checks.warm_up()
    model = checks.small("A")
    tokens = torch.zeros(1, 4, dtype=torch.long)
    model.run_with_cache(tokens)
    model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", lambda z, hook: z)])[0, 0, 0].backward()
    checks.small("A")


_warm_up()

# --------------------------------------------------------------------------- head scores


def prev_includes_position_zero(pattern):
    d = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)
    return d.sum(dim=-1).mean(dim=0) / pattern.shape[-1]   # divides by seq, not seq - 1


def prev_main_diagonal(pattern):
    return pattern.diagonal(dim1=-2, dim2=-1).mean(dim=(0, -1))


def prev_mean_over_heads(pattern):
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(1, -1))   # wrong axis: one value per sequence


def prev_loop(pattern):
    batch, heads, seq, _ = pattern.shape
    total = torch.zeros(heads, dtype=torch.float64)
    for i in range(1, seq):
        total += pattern[:, :, i, i - 1].double().sum(0)
    return (total / (batch * (seq - 1))).to(pattern.dtype)


def prev_mask(pattern):
    seq = pattern.shape[-1]
    below = torch.diag(torch.ones(seq - 1, dtype=pattern.dtype), diagonal=-1)   # ones at (i, i-1)
    return (pattern * below).sum(dim=(-2, -1)).mean(0) / (seq - 1)


def ind_duplicate_offset(pattern, period):
    return pattern.diagonal(offset=-period, dim1=-2, dim2=-1).mean(dim=(0, -1))


def ind_includes_first(pattern, period):
    return pattern.diagonal(offset=-(period - 1), dim1=-2, dim2=-1).mean(dim=(0, -1))


def ind_all_positions(pattern, period):
    d = pattern.diagonal(offset=-(period - 1), dim1=-2, dim2=-1)[..., 1:]
    return d.sum(dim=-1).mean(0) / pattern.shape[-1]


def ind_loop(pattern, period):
    batch, heads, seq, _ = pattern.shape
    values = [pattern[:, :, i, i - period + 1] for i in range(period, seq)]   # each [batch, heads]
    return torch.stack(values, dim=-1).mean(dim=(0, -1))


def ind_gather(pattern, period):
    seq = pattern.shape[-1]
    queries = torch.arange(period, seq)
    keys = queries - period + 1
    return pattern[:, :, queries, keys].mean(dim=(0, 2))


# --------------------------------------------------------------------------- decomposition


def decomp_no_bias(model, cache):
    return ref.decompose_residual(model, cache)[:-1]


def decomp_embed_first(model, cache):
    parts = [cache["hook_embed"], cache["hook_pos_embed"]]
    for layer in range(model.cfg.n_layers):
        result = torch.einsum("bphd,hdm->hbpm", cache["z", layer], model.W_O[layer])
        parts.extend(result)
    parts.append(model.b_O.sum(0).expand_as(cache["hook_embed"]))
    return torch.stack(parts)


def decomp_bias_per_layer(model, cache):
    d = ref.decompose_residual(model, cache)[:-1]
    biases = [model.b_O[layer].expand_as(cache["hook_embed"]) for layer in range(model.cfg.n_layers)]
    return torch.cat([d, torch.stack(biases)])


def decomp_reshape_heads(model, cache):
    # [batch, pos, head, d_model] reshaped (not permuted) to put the head axis first: mixes heads and positions
    parts = []
    for layer in range(model.cfg.n_layers):
        per_head = torch.einsum("bphd,hdm->bphm", cache["z", layer], model.W_O[layer])
        parts.append(per_head.reshape(model.cfg.n_heads, *per_head.shape[:2], -1))
    embed = cache["hook_embed"]
    return torch.cat(parts + [embed[None], cache["hook_pos_embed"][None], model.b_O.sum(0).expand_as(embed)[None]])


def decomp_last_layer_bias(model, cache):
    d = ref.decompose_residual(model, cache).clone()
    d[-1] = model.b_O[model.cfg.n_layers - 1]   # only the last layer's bias
    return d


def decomp_attn_out_per_layer(model, cache):
    # uses whole attention layers instead of heads (the cheaper decompose_resid)
    return cache.decompose_resid()


def decomp_with_library(model, cache):
    return cache.get_full_resid_decomposition(expand_neurons=False)


def decomp_loops(model, cache):
    parts = []
    for layer in range(model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"]
        for head in range(model.cfg.n_heads):
            parts.append(z[:, :, head] @ model.W_O[layer, head])
    embed = cache["hook_embed"]
    bias = torch.zeros_like(embed)
    for layer in range(model.cfg.n_layers):
        bias = bias + model.b_O[layer]
    return torch.stack(parts + [embed, cache["hook_pos_embed"], bias])


# --------------------------------------------------------------------------- logit lens


def _resids(model, cache):
    L = model.cfg.n_layers
    return [cache["resid_pre", layer] for layer in range(L)] + [cache["resid_post", L - 1]]


def lens_no_ln(model, cache):
    return torch.stack([model.unembed(r) for r in _resids(model, cache)])


def lens_cached_scale(model, cache):
    stack = torch.stack(_resids(model, cache))
    normed = cache.apply_ln_to_stack(stack, layer=model.cfg.n_layers, recompute_ln=False)
    return model.unembed(normed)   # skips the LN weight and bias as well


def lens_post_only(model, cache):
    return torch.stack([model.unembed(model.ln_final(cache["resid_post", layer]))
                        for layer in range(model.cfg.n_layers)])


def lens_no_unembed_bias(model, cache):
    return torch.stack([model.ln_final(r) @ model.W_U for r in _resids(model, cache)])


def lens_with_library(model, cache):
    return model.unembed(cache.accumulated_resid(apply_ln=True))


def lens_manual_layernorm(model, cache):
    ln = model.ln_final._original_component
    out = []
    for r in _resids(model, cache):
        centred = r - r.mean(-1, keepdim=True)
        normed = centred / (centred.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()
        out.append((normed * ln.weight + ln.bias) @ model.W_U + model.b_U)
    return torch.stack(out)


# --------------------------------------------------------------------------- ablation


def _group(heads):
    by_layer = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    return by_layer


def ablate_every_layer(model, tokens, heads):
    def hook(z, hook, hs):
        z[:, :, hs] = 0
        return z
    hs = [h for _, h in heads]
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", partial(hook, hs=hs))
                                                   for layer in range(model.cfg.n_layers)] if hs else [])


def ablate_wrong_axis(model, tokens, heads):
    def hook(z, hook, hs):
        z[:, hs] = 0   # zeroes positions, not heads
        return z
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", partial(hook, hs=hs))
                                                   for layer, hs in _group(heads).items()])


def ablate_scores(model, tokens, heads):
    def hook(scores, hook, hs):
        scores[:, hs] = 0   # uniform attention, not silence
        return scores
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_attn_scores", partial(hook, hs=hs))
                                                   for layer, hs in _group(heads).items()])


def ablate_leaves_hooks(model, tokens, heads):
    def hook(z, hook, hs):
        z[:, :, hs] = 0
        return z
    for layer, hs in _group(heads).items():
        model.add_hook(f"blocks.{layer}.attn.hook_z", partial(hook, hs=hs))
    return model(tokens)   # never removes the hooks


def ablate_late_binding(model, tokens, heads):
    hooks = []
    for layer, head in heads:
        def zero(z, hook):
            z[:, :, head] = 0.0   # `head` is read when the hook runs: the loop's last value by then
            return z
        hooks.append((f"blocks.{layer}.attn.hook_z", zero))
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


def ablate_default_argument(model, tokens, heads):
    hooks = []
    for layer, head in heads:   # one hook per pair; the default argument binds `head` when the hook is made
        def zero(z, hook, head=head):
            z[:, :, head] = 0.0
            return z
        hooks.append((f"blocks.{layer}.attn.hook_z", zero))
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


def ablate_leaves_train_mode(model, tokens, heads):
    model.train()   # "to be safe", and never switched back
    return ref.ablate_heads(model, tokens, heads)


def ablate_only_first(model, tokens, heads):
    return ref.ablate_heads(model, tokens, heads[:1])


def ablate_values(model, tokens, heads):
    def hook(v, hook, hs):
        v[:, :, hs] = 0.0   # zero values -> zero z: the same ablation
        return v
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_v", partial(hook, hs=hs))
                                                   for layer, hs in _group(heads).items()])


def ablate_in_place_no_return(model, tokens, heads):
    def hook(z, hook):
        for layer, head in heads:
            if hook.name in (f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.attn.o.hook_in"):
                z[:, :, head] = 0.0
    names = sorted({f"blocks.{layer}.attn.hook_z" for layer, _ in heads})
    return model.run_with_hooks(tokens, fwd_hooks=[(name, hook) for name in names])


def ablate_mask_multiply(model, tokens, heads):
    masks = {layer: torch.ones(model.cfg.n_heads) for layer, _ in heads}
    for layer, head in heads:
        masks[layer][head] = 0.0

    def hook(z, hook, mask):
        return z * mask[:, None]
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", partial(hook, mask=m))
                                                   for layer, m in masks.items()])


# --------------------------------------------------------------------------- finding induction heads


def _scores_by(model, score, period=10, n_seqs=32):
    tokens = ref.repeated_tokens(n_seqs, period, model.cfg.d_vocab, seed=1)
    _, cache = model.run_with_cache(tokens)
    return [score(cache["pattern", layer], period) for layer in range(model.cfg.n_layers)]


def find_with_prev_score(model, threshold=0.5, period=10, n_seqs=32):
    scores = _scores_by(model, lambda p, k: ref.prev_token_score(p), period, n_seqs)
    return [(layer, h) for layer, s in enumerate(scores) for h in range(len(s)) if s[h] > threshold]


def find_duplicate_offset(model, threshold=0.5, period=10, n_seqs=32):
    scores = _scores_by(model, lambda p, k: p.diagonal(offset=-k, dim1=-2, dim2=-1).mean(dim=(0, -1)), period, n_seqs)
    return [(layer, h) for layer, s in enumerate(scores) for h in range(len(s)) if s[h] > threshold]


def find_last_layer_only(model, threshold=0.5, period=10, n_seqs=32):
    scores = _scores_by(model, ref.induction_score, period, n_seqs)
    last = model.cfg.n_layers - 1
    return [(last, h) for h in range(len(scores[last])) if scores[last][h] > threshold]


def find_top_one(model, threshold=0.5, period=10, n_seqs=32):
    scores = torch.stack(_scores_by(model, ref.induction_score, period, n_seqs))
    layer, head = divmod(int(scores.argmax()), scores.shape[1])
    return [(layer, head)]   # always one head, even when there are none or two


def find_other_seed_by_index(model, threshold=0.5, period=10, n_seqs=32):
    tokens = ref.repeated_tokens(n_seqs, period, model.cfg.d_vocab, seed=123)   # other random blocks: same scores
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    found = []
    for layer in range(model.cfg.n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        idx = torch.arange(period, 2 * period)
        score = pattern[:, :, idx, idx - period + 1].mean(dim=(0, 2))
        found += [(layer, h) for h in range(model.cfg.n_heads) if score[h] > threshold]
    return found


def find_as_tensor(model, threshold=0.5, period=10, n_seqs=32):
    tokens = ref.repeated_tokens(n_seqs, period, model.cfg.d_vocab)
    _, cache = model.run_with_cache(tokens)
    scores = torch.stack([ref.induction_score(cache["pattern", layer], period) for layer in range(model.cfg.n_layers)])
    return torch.nonzero(scores > threshold)   # [n_found, 2] tensor of (layer, head)


def find_ignores_threshold(model, threshold=0.5, period=10, n_seqs=32):
    return ref.find_induction_heads(model, 0.5, period, n_seqs)   # the default, whatever it is called with


def find_at_or_above(model, threshold=0.5, period=10, n_seqs=32):
    tokens = ref.repeated_tokens(n_seqs, period, model.cfg.d_vocab)
    _, cache = model.run_with_cache(tokens)
    return [(layer, h) for layer in range(model.cfg.n_layers)
            for h, score in enumerate(ref.induction_score(cache["pattern", layer], period)) if score >= threshold]


def find_ignores_period(model, threshold=0.5, period=10, n_seqs=32):
    return ref.find_induction_heads(model, threshold, 10, n_seqs)


# --------------------------------------------------------------------------- ablation effects with an interval


def _per_prompt(model, tokens, period, heads, start=None):
    """(ablated, clean) per-token losses over positions >= start (default: period)."""
    s = period if start is None else start
    with torch.no_grad():
        clean = ref.per_token_loss(model(tokens), tokens)[:, s:]
        ablated = ref.per_token_loss(ref.ablate_heads(model, tokens, list(heads)), tokens)[:, s:]
    return ablated, clean


def _row(effect, unbiased=True):
    m = effect.mean()
    half = 1.96 * effect.std(unbiased=unbiased) / effect.numel() ** 0.5
    return torch.stack([m, m - half, m + half])


def effects_pooled_positions(model, tokens, period, head_sets):
    return torch.stack([_row((a - c).flatten()) for a, c in (_per_prompt(model, tokens, period, hs) for hs in head_sets)])


def effects_biased_std(model, tokens, period, head_sets):
    return torch.stack([_row((a - c).mean(-1), unbiased=False)
                        for a, c in (_per_prompt(model, tokens, period, hs) for hs in head_sets)])


def effects_unpaired(model, tokens, period, head_sets):
    rows = []
    for hs in head_sets:
        a, c = _per_prompt(model, tokens, period, hs)
        m = (a - c).mean()
        half = 1.96 * a.mean(-1).std() / a.shape[0] ** 0.5    # the spread of the ablated losses, not of the differences
        rows.append(torch.stack([m, m - half, m + half]))
    return torch.stack(rows)


def effects_no_sqrt(model, tokens, period, head_sets):
    rows = []
    for hs in head_sets:
        a, c = _per_prompt(model, tokens, period, hs)
        e = (a - c).mean(-1)
        rows.append(torch.stack([e.mean(), e.mean() - 1.96 * e.std(), e.mean() + 1.96 * e.std()]))
    return torch.stack(rows)


def effects_includes_period_minus_one(model, tokens, period, head_sets):
    return torch.stack([_row((a - c).mean(-1)) for a, c in
                        (_per_prompt(model, tokens, period, hs, start=period - 1) for hs in head_sets)])


def effects_whole_sequence(model, tokens, period, head_sets):
    return torch.stack([_row((a - c).mean(-1)) for a, c in
                        (_per_prompt(model, tokens, period, hs, start=0) for hs in head_sets)])


def effects_reversed_sign(model, tokens, period, head_sets):
    return torch.stack([_row((c - a).mean(-1)) for a, c in (_per_prompt(model, tokens, period, hs) for hs in head_sets)])


def effects_cumulative(model, tokens, period, head_sets):
    ablated_so_far, rows = [], []
    for hs in head_sets:
        ablated_so_far.extend(hs)      # never reset: each set also removes the heads of the sets before it
        a, c = _per_prompt(model, tokens, period, ablated_so_far)
        rows.append(_row((a - c).mean(-1)))
    return torch.stack(rows)


def effects_sorts_in_place(model, tokens, period, head_sets):
    for hs in head_sets:
        hs.sort()                      # changes the caller's lists
    return ref.ablation_effects(model, tokens, period, head_sets)


def effects_leaves_hooks(model, tokens, period, head_sets):
    out = ref.ablation_effects(model, tokens, period, head_sets)
    model.add_hook("blocks.0.attn.hook_z", lambda z, hook: z * 0.5)   # left attached
    return out


def effects_loop_over_prompts(model, tokens, period, head_sets):
    """Batched forward passes, then plain Python loops over prompts for the statistics."""
    with torch.no_grad():
        clean = ref.per_token_loss(model(tokens), tokens)
        rows = []
        for hs in head_sets:
            ablated = ref.per_token_loss(ablate_with_context(model, tokens, hs), tokens)
            effects = []
            for b in range(tokens.shape[0]):
                diffs = [float(ablated[b, t] - clean[b, t]) for t in range(period, clean.shape[1])]
                effects.append(sum(diffs) / len(diffs))
            n = len(effects)
            mean = sum(effects) / n
            se = (sum((e - mean) ** 2 for e in effects) / (n - 1)) ** 0.5 / n ** 0.5
            rows.append([mean, mean - 1.96 * se, mean + 1.96 * se])
    return torch.tensor(rows)


def ablate_with_context(model, tokens, heads):
    """Zero ablation with the `model.hooks` context manager instead of run_with_hooks."""
    def zero(z, hook, hs):
        z = z.clone()
        z[:, :, hs] = 0.0
        return z
    by_layer = _group(heads)
    with torch.no_grad(), model.hooks(fwd_hooks=[(f"blocks.{l}.attn.hook_z", partial(zero, hs=hs))
                                                for l, hs in by_layer.items()]):
        return model(tokens)


def effects_numpy(model, tokens, period, head_sets):
    import numpy as np
    with torch.no_grad():
        clean = ref.per_token_loss(model(tokens), tokens).numpy()
        out = []
        for hs in head_sets:
            ablated = ref.per_token_loss(ablate_with_context(model, tokens, hs), tokens).numpy()
            e = (ablated - clean)[:, period:].mean(axis=1).astype(np.float64)
            half = 1.96 * e.std(ddof=1) / np.sqrt(len(e))
            out.append([e.mean(), e.mean() - half, e.mean() + half])
    return torch.tensor(np.array(out), dtype=torch.float32)


MUTANTS = {
    "prev_token_head_score": [prev_includes_position_zero, prev_main_diagonal, prev_mean_over_heads],
    "induction_head_score": [ind_duplicate_offset, ind_includes_first, ind_all_positions],
    "decompose_residual": [decomp_no_bias, decomp_embed_first, decomp_bias_per_layer, decomp_attn_out_per_layer,
                           decomp_reshape_heads, decomp_last_layer_bias],
    "logit_lens_stack": [lens_no_ln, lens_cached_scale, lens_post_only, lens_no_unembed_bias],
    "ablate_heads_zero": [ablate_every_layer, ablate_wrong_axis, ablate_scores, ablate_leaves_hooks,
                          ablate_only_first, ablate_late_binding,
                          ablate_leaves_train_mode],
    "find_induction_heads": [find_with_prev_score, find_duplicate_offset, find_last_layer_only, find_top_one,
                             find_ignores_threshold, find_ignores_period, find_at_or_above],
    "period_shortcut_quiz": ["b", "c", "d"],
    "ablation_effects": [effects_pooled_positions, effects_biased_std, effects_unpaired, effects_no_sqrt,
                         effects_includes_period_minus_one, effects_whole_sequence, effects_reversed_sign,
                         effects_cumulative, effects_sorts_in_place, effects_leaves_hooks],
}

ALTERNATIVES = {
    "prev_token_head_score": [prev_loop, prev_mask],
    "induction_head_score": [ind_loop, ind_gather],
    "decompose_residual": [decomp_with_library, decomp_loops],
    "logit_lens_stack": [lens_with_library, lens_manual_layernorm],
    "ablate_heads_zero": [ablate_values, ablate_in_place_no_return, ablate_mask_multiply, ablate_default_argument],
    "find_induction_heads": [find_other_seed_by_index, find_as_tensor],
    "period_shortcut_quiz": ["A", " a ", "(a)"],
    "ablation_effects": [effects_loop_over_prompts, effects_numpy],
}
