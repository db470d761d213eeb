"""Mutants and alternatives for chapter 13_activation_patching.

As for chapter 12, TransformerLens is imported and the check models are booted when this module is
imported, so that the timed tests measure the checks and not the warm-up.
"""
from __future__ import annotations

from functools import partial
from statistics import NormalDist

import numpy as np
import torch
import transformer_lens  # noqa: F401  (warm-up)
from transformer_lens import patching

from safety_roadmap.toys import activation_patching as task
from safety_roadmap.checks import activation_patching as checks
from safety_roadmap.reference import activation_patching as ref
from safety_roadmap.reference import interpretability_tools as ref12


def _warm_up() -> None:
    checks.warm_up()
    model = checks._model("P")
    tokens = torch.zeros(2, task.SEQ_LEN, dtype=torch.long)
    _, cache = model.run_with_cache(tokens)
    model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x)])[0, -1, 0].backward()
    checks._model("P")


_warm_up()

# --------------------------------------------------------------------------- logit difference


def ld_mean(logits, io, s):
    last = logits[:, -1]
    return (last.gather(1, io[:, None]) - last.gather(1, s[:, None])).mean()   # one number for the whole batch


def ld_flipped(logits, io, s):
    last = logits[:, -1]
    return last[torch.arange(len(s)), s] - last[torch.arange(len(io)), io]


def ld_first_position(logits, io, s):
    first = logits[:, 0]
    return first[torch.arange(len(io)), io] - first[torch.arange(len(s)), s]


def ld_log_probs(logits, io, s):
    logp = logits[:, -1].log_softmax(dim=-1)   # the softmax's normaliser cancels in the difference
    return logp[torch.arange(len(io)), io] - logp[torch.arange(len(s)), s]


def ld_loop(logits, io, s):
    return torch.stack([logits[b, -1, io[b]] - logits[b, -1, s[b]] for b in range(logits.shape[0])])


# --------------------------------------------------------------------------- normalised recovery


def rec_divide_by_clean(patched, clean, corrupted):
    return (patched - corrupted) / clean


def rec_from_clean(patched, clean, corrupted):
    return (patched - clean) / (clean - corrupted)


def rec_wrong_sign(patched, clean, corrupted):
    return (patched - corrupted) / (corrupted - clean)


def rec_one_minus(patched, clean, corrupted):
    return 1 - (clean - patched) / (clean - corrupted)


def rec_numpy(patched, clean, corrupted):
    gap = float(clean) - float(corrupted)
    return torch.from_numpy((np.asarray(patched, dtype=np.float64) - float(corrupted)) / gap)


# --------------------------------------------------------------------------- residual-stream patching


def resid_prefix(model, corrupted_tokens, clean_cache, metric):
    model.eval()
    out = torch.zeros(model.cfg.n_layers, corrupted_tokens.shape[1])
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.hook_resid_pre"
        for pos in range(corrupted_tokens.shape[1]):
            def hook(act, hook, pos=pos):
                act[:, : pos + 1] = clean_cache[name][:, : pos + 1]   # patches every position up to pos
                return act
            out[layer, pos] = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, hook)]))
    return out


def resid_no_eval(model, corrupted_tokens, clean_cache, metric):
    out = torch.zeros(model.cfg.n_layers, corrupted_tokens.shape[1])   # model left in training mode
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.hook_resid_pre"
        for pos in range(corrupted_tokens.shape[1]):
            def hook(act, hook, pos=pos):
                act[:, pos] = clean_cache[name][:, pos]
                return act
            out[layer, pos] = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, hook)]))
    return out


def resid_library_no_eval(model, corrupted_tokens, clean_cache, metric):
    return patching.get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, metric)   # raises in train mode


def resid_post(model, corrupted_tokens, clean_cache, metric):
    model.eval()
    out = torch.zeros(model.cfg.n_layers, corrupted_tokens.shape[1])
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.hook_resid_post"
        for pos in range(corrupted_tokens.shape[1]):
            def hook(act, hook, pos=pos):
                act[:, pos] = clean_cache[name][:, pos]
                return act
            out[layer, pos] = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, hook)]))
    return out


def resid_library(model, corrupted_tokens, clean_cache, metric):
    model.eval()
    with task.quiet_patching():
        return patching.get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, metric)


def resid_hook_name_lookup(model, corrupted_tokens, clean_cache, metric):
    model.eval()
    L, T = model.cfg.n_layers, corrupted_tokens.shape[1]
    results = []
    with torch.no_grad():
        for layer in range(L):
            row = []
            for pos in range(T):
                def hook(act, hook, pos=pos):   # returns nothing: edits in place
                    act[:, pos] = clean_cache[hook.name][:, pos]
                row.append(metric(model.run_with_hooks(
                    corrupted_tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)])).item())
            results.append(row)
    return torch.tensor(results)


# --------------------------------------------------------------------------- per-head patching


def _head_sweep(model, corrupted_tokens, clean_cache, metric, hook_name, setter, eval_first=True):
    """hook_name(layer) -> the hook to patch; setter(act, clean, pos, head) patches one cell."""
    if eval_first:
        model.eval()
    L, H, T = model.cfg.n_layers, model.cfg.n_heads, corrupted_tokens.shape[1]
    out = torch.zeros(L, T, H)
    for layer in range(L):
        name = hook_name(layer)
        for pos in range(T):
            for head in range(H):
                def hook(act, hook, pos=pos, head=head):
                    return setter(act, clean_cache[name], pos, head)
                out[layer, pos, head] = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, hook)]))
    return out


def _set_z(act, clean, pos, head):
    act[:, pos, head] = clean[:, pos, head]
    return act


def heads_pattern(model, corrupted_tokens, clean_cache, metric, component="z"):
    def setter(act, clean, pos, head):
        act[:, head, pos] = clean[:, head, pos]   # the attention pattern row, not the head's output
        return act
    return _head_sweep(model, corrupted_tokens, clean_cache, metric, lambda l: f"blocks.{l}.attn.hook_pattern", setter)


def heads_all_at_position(model, corrupted_tokens, clean_cache, metric, component="z"):
    def setter(act, clean, pos, head):
        act[:, pos] = clean[:, pos]
        return act
    return _head_sweep(model, corrupted_tokens, clean_cache, metric, lambda l: f"blocks.{l}.attn.hook_{component}",
                       setter)


def heads_layer_head_pos(model, corrupted_tokens, clean_cache, metric, component="z"):
    out = _head_sweep(model, corrupted_tokens, clean_cache, metric, lambda l: f"blocks.{l}.attn.hook_{component}",
                      _set_z)
    return out.transpose(1, 2)   # [layer, head, pos]: not the library's order


def heads_no_eval(model, corrupted_tokens, clean_cache, metric, component="z"):
    return _head_sweep(model, corrupted_tokens, clean_cache, metric, lambda l: f"blocks.{l}.attn.hook_{component}",
                       _set_z, eval_first=False)


def heads_always_z(model, corrupted_tokens, clean_cache, metric, component="z"):
    return _head_sweep(model, corrupted_tokens, clean_cache, metric, lambda l: f"blocks.{l}.attn.hook_z", _set_z)


def heads_q_means_pattern(model, corrupted_tokens, clean_cache, metric, component="z"):
    # "the query side" read as the attention pattern's query row
    if component != "q":
        return ref.patch_heads_by_pos(model, corrupted_tokens, clean_cache, metric, component)
    return heads_pattern(model, corrupted_tokens, clean_cache, metric)


def heads_library(model, corrupted_tokens, clean_cache, metric, component="z"):
    model.eval()
    sweep = {"z": patching.get_act_patch_attn_head_out_by_pos, "q": patching.get_act_patch_attn_head_q_by_pos,
             "k": patching.get_act_patch_attn_head_k_by_pos, "v": patching.get_act_patch_attn_head_v_by_pos}[component]
    with task.quiet_patching():
        return sweep(model, corrupted_tokens, clean_cache, metric)


def heads_all_heads_vectorised_hook(model, corrupted_tokens, clean_cache, metric, component="z"):
    model.eval()
    L, H, T = model.cfg.n_layers, model.cfg.n_heads, corrupted_tokens.shape[1]
    out = torch.empty(L, T, H)
    with torch.no_grad():
        for layer in range(L):
            clean_z = clean_cache[component, layer]
            for pos in range(T):
                for head in range(H):
                    mask = torch.zeros(T, H, 1)
                    mask[pos, head] = 1.0

                    def hook(z, hook, mask=mask):
                        return z * (1 - mask) + clean_z * mask
                    logits = model.run_with_hooks(corrupted_tokens,
                                                  fwd_hooks=[(f"blocks.{layer}.attn.hook_{component}", hook)])
                    out[layer, pos, head] = metric(logits)
    return out


# --------------------------------------------------------------------------- mean ablation


def _by_layer(heads):
    groups = {}
    for layer, head in heads:
        groups.setdefault(layer, []).append(head)
    return groups


def mean_zero(model, tokens, heads, mean_tokens):
    model.eval()

    def hook(z, hook, hs):
        z[:, :, hs] = 0
        return z
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{l}.attn.hook_z", partial(hook, hs=hs))
                                                   for l, hs in _by_layer(heads).items()])


def mean_own_batch(model, tokens, heads, mean_tokens):
    model.eval()
    _, cache = model.run_with_cache(tokens)   # averages the prompts being run, not mean_tokens

    def hook(z, hook, layer, hs):
        z[:, :, hs] = cache["z", layer].mean(0)[None, :, hs]
        return z
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{l}.attn.hook_z", partial(hook, layer=l, hs=hs))
                                                   for l, hs in _by_layer(heads).items()])


def mean_over_positions(model, tokens, heads, mean_tokens):
    model.eval()
    _, cache = model.run_with_cache(mean_tokens)

    def hook(z, hook, layer, hs):
        z[:, :, hs] = cache["z", layer].mean(dim=(0, 1))[hs]
        return z
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{l}.attn.hook_z", partial(hook, layer=l, hs=hs))
                                                   for l, hs in _by_layer(heads).items()])


def mean_no_eval(model, tokens, heads, mean_tokens):
    _, cache = model.run_with_cache(mean_tokens)   # dropout still on: noisy means and noisy logits

    def hook(z, hook, layer, hs):
        z[:, :, hs] = cache["z", layer].mean(0)[None, :, hs]
        return z
    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{l}.attn.hook_z", partial(hook, layer=l, hs=hs))
                                                   for l, hs in _by_layer(heads).items()])


def mean_one_hook_per_head(model, tokens, heads, mean_tokens):
    model.eval()
    with torch.no_grad():
        _, cache = model.run_with_cache(mean_tokens)
        hooks = []
        for layer, head in heads:
            mean_z = cache[f"blocks.{layer}.attn.hook_z"][:, :, head].mean(dim=0)   # [pos, d_head]

            def hook(z, hook, head=head, mean_z=mean_z):
                z[:, :, head] = mean_z
                return z
            hooks.append((f"blocks.{layer}.attn.hook_z", hook))
        return model.run_with_hooks(tokens, fwd_hooks=hooks)


# --------------------------------------------------------------------------- confidence interval


def ci_population_sd(values, confidence=0.95):
    x = values.double()
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * x.std(unbiased=False) / len(x) ** 0.5
    return float(x.mean() - half), float(x.mean() + half)


def ci_divide_by_n(values, confidence=0.95):
    x = values.double()
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * x.std() / len(x)
    return float(x.mean() - half), float(x.mean() + half)


def ci_fixed_z(values, confidence=0.95):
    x = values.double()
    half = 1.96 * x.std() / len(x) ** 0.5
    return float(x.mean() - half), float(x.mean() + half)


def ci_numpy(values, confidence=0.95):
    x = np.asarray(values, dtype=np.float64)
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    se = np.std(x, ddof=1) / np.sqrt(len(x))
    return x.mean() - z * se, x.mean() + z * se


def ci_torch_tensor(values, confidence=0.95):
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + confidence / 2, dtype=torch.float64))
    x = values.double()
    se = x.std() / torch.sqrt(torch.tensor(float(len(x)), dtype=torch.float64))
    return torch.stack([x.mean() - z * se, x.mean() + z * se])


# --------------------------------------------------------------------------- attribution patching


def _resid_acts_and_grads(model, tokens, metric):
    acts = {}

    def keep(act, hook, layer):
        act.retain_grad()
        acts[layer] = act
        return act
    logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{l}.hook_resid_pre", partial(keep, layer=l))
                                                     for l in range(model.cfg.n_layers)])
    metric(logits).backward()
    return {l: (a.detach(), a.grad) for l, a in acts.items()}


def attr_flipped_sign(model, clean_tokens, corrupted_tokens, metric):
    model.eval()
    _, clean_cache = model.run_with_cache(clean_tokens)
    grads = _resid_acts_and_grads(model, corrupted_tokens, metric)
    return torch.stack([((grads[l][0] - clean_cache["resid_pre", l]) * grads[l][1]).sum(dim=(0, 2))
                        for l in range(model.cfg.n_layers)])


def attr_clean_gradient(model, clean_tokens, corrupted_tokens, metric):
    model.eval()
    _, corrupted_cache = model.run_with_cache(corrupted_tokens)
    grads = _resid_acts_and_grads(model, clean_tokens, metric)   # gradient on the clean run
    return torch.stack([((grads[l][0] - corrupted_cache["resid_pre", l]) * grads[l][1]).sum(dim=(0, 2))
                        for l in range(model.cfg.n_layers)])


def attr_mean_over_batch(model, clean_tokens, corrupted_tokens, metric):
    model.eval()
    _, clean_cache = model.run_with_cache(clean_tokens)
    grads = _resid_acts_and_grads(model, corrupted_tokens, metric)
    return torch.stack([((clean_cache["resid_pre", l] - grads[l][0]) * grads[l][1]).sum(-1).mean(0)
                        for l in range(model.cfg.n_layers)])


def attr_no_eval(model, clean_tokens, corrupted_tokens, metric):
    _, clean_cache = model.run_with_cache(clean_tokens)
    grads = _resid_acts_and_grads(model, corrupted_tokens, metric)
    return torch.stack([((clean_cache["resid_pre", l] - grads[l][0]) * grads[l][1]).sum(dim=(0, 2))
                        for l in range(model.cfg.n_layers)])


def attr_backward_hooks(model, clean_tokens, corrupted_tokens, metric):
    model.eval()
    L = model.cfg.n_layers
    names = [f"blocks.{l}.hook_resid_pre" for l in range(L)]
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_tokens)
        _, corrupted_cache = model.run_with_cache(corrupted_tokens)
    grads = {}

    def save_grad(grad, hook, layer):
        grads[layer] = grad.detach()
    for l in range(L):
        model.add_hook(names[l], partial(save_grad, layer=l), dir="bwd")
    try:
        metric(model(corrupted_tokens)).backward()
    finally:
        model.reset_hooks()
    return torch.stack([torch.einsum("bpd,bpd->p", clean_cache[names[l]] - corrupted_cache[names[l]], grads[l])
                        for l in range(L)])


def attr_autograd_grad(model, clean_tokens, corrupted_tokens, metric):
    model.eval()
    L = model.cfg.n_layers
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_tokens)
    acts = []

    def keep(act, hook):
        acts.append(act)
        return act
    logits = model.run_with_hooks(corrupted_tokens, fwd_hooks=[(f"blocks.{l}.hook_resid_pre", keep) for l in range(L)])
    grads = torch.autograd.grad(metric(logits), acts)
    return torch.stack([((clean_cache["resid_pre", l] - acts[l].detach()) * grads[l]).sum(dim=(0, 2))
                        for l in range(L)])

# --------------------------------------------------------------------------- head selection


def _joint_metric(model, corrupted_tokens, cache, metric, heads):
    hooks = []
    for layer, hs in _by_layer(heads).items():
        def hook(z, hook, hs=hs, clean=cache["z", layer]):
            z[:, :, hs] = clean[:, :, hs]
            return z
        hooks.append((f"blocks.{layer}.attn.hook_z", hook))
    return metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=hooks)).item()


def _greedy(model, clean_tokens, corrupted_tokens, metric, target, joint=True, stop_after=True, eval_first=True):
    if eval_first:
        model.eval()
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(clean_tokens)
        c, k = metric(clean_logits).item(), metric(model(corrupted_tokens)).item()
        chosen = []
        left = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
        while left:
            scores = [_joint_metric(model, corrupted_tokens, cache, metric, (chosen if joint else []) + [hd])
                      for hd in left]
            best = max(range(len(left)), key=scores.__getitem__)
            reached = (_joint_metric(model, corrupted_tokens, cache, metric, chosen + [left[best]]) - k) / (c - k)
            if not stop_after and reached >= target:
                break
            chosen.append(left.pop(best))
            if reached >= target:
                break
    return chosen


def select_no_early_stop(model, clean_tokens, corrupted_tokens, metric, target=0.8):
    return _greedy(model, clean_tokens, corrupted_tokens, metric, float("inf"))


def select_alone(model, clean_tokens, corrupted_tokens, metric, target=0.8):
    return _greedy(model, clean_tokens, corrupted_tokens, metric, target, joint=False)


def select_drop_last(model, clean_tokens, corrupted_tokens, metric, target=0.8):
    return _greedy(model, clean_tokens, corrupted_tokens, metric, target, stop_after=False)


def select_no_eval(model, clean_tokens, corrupted_tokens, metric, target=0.8):
    return _greedy(model, clean_tokens, corrupted_tokens, metric, target, eval_first=False)


def select_default_target(model, clean_tokens, corrupted_tokens, metric, target=0.8):
    return _greedy(model, clean_tokens, corrupted_tokens, metric, 0.8)   # ignores the target it is given


def select_greedy_loop(model, clean_tokens, corrupted_tokens, metric, target=0.8):
    return _greedy(model, clean_tokens, corrupted_tokens, metric, target)


def select_one_hook_per_head(model, clean_tokens, corrupted_tokens, metric, target=0.8):
    """One hook per head (several hooks on one hook point) and a set of remaining heads."""
    model.eval()
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(clean_tokens)
        c, k = float(metric(clean_logits)), float(metric(model(corrupted_tokens)))

        def value(heads):
            hooks = [(f"blocks.{l}.attn.hook_z", partial(_patch_one, head=h, clean=cache[f"blocks.{l}.attn.hook_z"]))
                     for l, h in heads]
            return float(metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=hooks)))
        chosen = []
        order = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
        while len(chosen) < len(order):
            best, best_value = None, -float("inf")
            for hd in order:
                if hd not in chosen:
                    v = value(chosen + [hd])
                    if v > best_value:
                        best, best_value = hd, v
            chosen.append(best)
            if (best_value - k) / (c - k) >= target:
                break
    return chosen


def _patch_one(z, hook, head, clean):
    z[:, :, head] = clean[:, :, head]
    return z


# --------------------------------------------------------------------------- confirmation


def _drops(model, tokens, io, s, heads, mean_tokens, ablate=None, eval_first=True):
    if eval_first:
        model.eval()
    with torch.no_grad():
        before = ref.ioi_logit_diff(model(tokens), io, s)
        ablated = (ablate or ref.mean_ablate_heads)(model, tokens, heads, mean_tokens)
        return before - ref.ioi_logit_diff(ablated, io, s)


def confirm_reversed(model, tokens, io, s, heads, mean_tokens, confidence=0.95):
    drop = -_drops(model, tokens, io, s, heads, mean_tokens)
    return (float(drop.mean()), *ref.effect_confidence_interval(drop, confidence))


def confirm_zero_ablation(model, tokens, io, s, heads, mean_tokens, confidence=0.95):
    drop = _drops(model, tokens, io, s, heads, mean_tokens, ablate=lambda m, t, h, _: ref12.ablate_heads(m, t, h))
    return (float(drop.mean()), *ref.effect_confidence_interval(drop, confidence))


def confirm_no_eval(model, tokens, io, s, heads, mean_tokens, confidence=0.95):
    drop = _drops(model, tokens, io, s, heads, mean_tokens, eval_first=False)
    return (float(drop.mean()), *ref.effect_confidence_interval(drop, confidence))


def confirm_fixed_confidence(model, tokens, io, s, heads, mean_tokens, confidence=0.95):
    drop = _drops(model, tokens, io, s, heads, mean_tokens)
    return (float(drop.mean()), *ref.effect_confidence_interval(drop))   # always 95 %


def confirm_means_from_tokens(model, tokens, io, s, heads, mean_tokens, confidence=0.95):
    drop = _drops(model, tokens, io, s, heads, tokens)                    # averages over the prompts themselves
    return (float(drop.mean()), *ref.effect_confidence_interval(drop, confidence))


def confirm_numpy(model, tokens, io, s, heads, mean_tokens, confidence=0.95):
    drop = _drops(model, tokens, io, s, heads, mean_tokens).double().numpy()
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * drop.std(ddof=1) / np.sqrt(len(drop))
    return drop.mean(), drop.mean() - half, drop.mean() + half


def confirm_list(model, tokens, io, s, heads, mean_tokens, confidence=0.95):
    drop = _drops(model, tokens, io, s, heads, mean_tokens)
    low, high = ref.effect_confidence_interval(drop, confidence)
    return [drop.double().mean().item(), low, high]



def attr_keyed_by_hook_name(model, clean_tokens, corrupted_tokens, metric):
    """Stores activations under hook.name, then looks them up under the registered name: KeyError."""
    model.eval()
    names = [f"blocks.{l}.hook_resid_pre" for l in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_tokens)
    acts = {}

    def keep(act, hook):
        act.retain_grad()
        acts[hook.name] = act
        return act
    metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(n, keep) for n in names])).backward()
    return torch.stack([((clean_cache[n] - acts[n].detach()) * acts[n].grad).sum(dim=(0, 2)) for n in names])


def attr_hook_name_both_sides(model, clean_tokens, corrupted_tokens, metric):
    """Keyed by hook.name on both sides: works, because the cache answers to the alias too."""
    model.eval()
    names = [f"blocks.{l}.hook_resid_pre" for l in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_tokens)
    acts = {}

    def keep(act, hook):
        act.retain_grad()
        acts[hook.name] = act
        return act
    metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(n, keep) for n in names])).backward()
    return torch.stack([((clean_cache[k] - a.detach()) * a.grad).sum(dim=(0, 2)) for k, a in acts.items()])


MUTANTS = {
    "ioi_logit_diff": [ld_mean, ld_flipped, ld_first_position],
    "normalised_recovery": [rec_divide_by_clean, rec_from_clean, rec_wrong_sign],
    "patch_resid_by_pos": [resid_prefix, resid_no_eval, resid_library_no_eval, resid_post],
    "patch_heads_by_pos": [heads_pattern, heads_all_at_position, heads_layer_head_pos, heads_no_eval, heads_always_z,
                           heads_q_means_pattern],
    "select_heads": [select_no_early_stop, select_alone, select_drop_last, select_no_eval, select_default_target],
    "mean_ablate_heads": [mean_zero, mean_own_batch, mean_over_positions, mean_no_eval],
    "effect_confidence_interval": [ci_population_sd, ci_divide_by_n, ci_fixed_z],
    "confirm_heads": [confirm_reversed, confirm_zero_ablation, confirm_no_eval, confirm_fixed_confidence,
                      confirm_means_from_tokens],
    "attribution_patch_resid": [attr_flipped_sign, attr_clean_gradient, attr_mean_over_batch, attr_no_eval,
                                attr_keyed_by_hook_name],
    "patching_reading_quiz": ["a", "b", "d"],
}

ALTERNATIVES = {
    "ioi_logit_diff": [ld_log_probs, ld_loop],
    "normalised_recovery": [rec_one_minus, rec_numpy],
    "patch_resid_by_pos": [resid_library, resid_hook_name_lookup],
    "patch_heads_by_pos": [heads_library, heads_all_heads_vectorised_hook],
    "select_heads": [select_greedy_loop, select_one_hook_per_head],
    "mean_ablate_heads": [mean_one_hook_per_head],
    "effect_confidence_interval": [ci_numpy, ci_torch_tensor],
    "confirm_heads": [confirm_numpy, confirm_list],
    "attribution_patch_resid": [attr_backward_hooks, attr_autograd_grad, attr_hook_name_both_sides],
    "patching_reading_quiz": ["C", " c ", "(c)"],
}
