"""Mutants and alternatives for chapter 15_probes_steering_and_backdoors.

TransformerLens is imported and the check models are booted when this module is imported, so that
the timed tests measure the checks and not the warm-up.
"""
from __future__ import annotations

import numpy as np
import torch
import transformer_lens  # noqa: F401  (warm-up)
from sklearn.metrics import roc_auc_score

from safety_roadmap.toys import probes_steering_and_backdoors as toy
from safety_roadmap.checks import probes_steering_and_backdoors as checks
from safety_roadmap.reference import probes_steering_and_backdoors as ref

checks.warm_up()

# --------------------------------------------------------------------------- train_probe


def probe_autograd(acts, labels, steps=300, lr=0.5, weight_decay=1e-3):
    w = torch.zeros(acts.shape[1], dtype=acts.dtype, requires_grad=True)
    b = torch.zeros((), dtype=acts.dtype, requires_grad=True)
    opt = torch.optim.SGD([{"params": [w], "weight_decay": weight_decay}, {"params": [b], "weight_decay": 0.0}], lr=lr)
    y = labels.to(acts.dtype)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(acts @ w + b, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach(), b.detach()


def probe_numpy(acts, labels, steps=300, lr=0.5, weight_decay=1e-3):
    x = acts.numpy().astype(np.float64)
    y = labels.numpy().astype(np.float64)
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        w, b = w - lr * (x.T @ (p - y) / len(y) + weight_decay * w), b - lr * (p - y).mean()
    return torch.from_numpy(w).to(acts.dtype), torch.tensor(b, dtype=acts.dtype)


def probe_decays_bias(acts, labels, steps=300, lr=0.5, weight_decay=1e-3):
    y = labels.to(acts.dtype)
    w, b = torch.zeros(acts.shape[1], dtype=acts.dtype), torch.zeros((), dtype=acts.dtype)
    for _ in range(steps):
        err = torch.sigmoid(acts @ w + b) - y
        w = w - lr * (acts.T @ err / len(y) + weight_decay * w)
        b = b - lr * (err.mean() + weight_decay * b)
    return w, b


def probe_summed_gradient(acts, labels, steps=300, lr=0.5, weight_decay=1e-3):
    y = labels.to(acts.dtype)
    w, b = torch.zeros(acts.shape[1], dtype=acts.dtype), torch.zeros((), dtype=acts.dtype)
    for _ in range(steps):
        err = torch.sigmoid(acts @ w + b) - y
        w = w - lr * (acts.T @ err + weight_decay * w)
        b = b - lr * err.sum()
    return w, b


def probe_no_decay(acts, labels, steps=300, lr=0.5, weight_decay=1e-3):
    y = labels.to(acts.dtype)
    w, b = torch.zeros(acts.shape[1], dtype=acts.dtype), torch.zeros((), dtype=acts.dtype)
    for _ in range(steps):
        err = torch.sigmoid(acts @ w + b) - y
        w = w - lr * acts.T @ err / len(y)
        b = b - lr * err.mean()
    return w, b


def probe_float32_always(acts, labels, steps=300, lr=0.5, weight_decay=1e-3):
    w, b = ref.train_probe(acts.float(), labels, steps, lr, weight_decay)   # loses float64
    return w, b


# --------------------------------------------------------------------------- probe_by_layer


def by_layer_on_training_rows(acts, labels, train_idx, test_idx, train_fn=ref.train_probe):
    out = torch.empty(acts.shape[0])
    for layer in range(acts.shape[0]):
        x = acts[layer, train_idx]
        x = (x - x.mean(0)) / (x.std(0, unbiased=False) + 1e-6)
        w, b = train_fn(x, labels[train_idx])
        out[layer] = ((x @ w + b > 0) == labels[train_idx].bool()).float().mean()   # scored on what it saw
    return out


def by_layer_unscaled(acts, labels, train_idx, test_idx, train_fn=ref.train_probe):
    out = torch.empty(acts.shape[0])
    for layer in range(acts.shape[0]):
        w, b = train_fn(acts[layer, train_idx], labels[train_idx])
        out[layer] = ((acts[layer, test_idx] @ w + b > 0) == labels[test_idx].bool()).float().mean()
    return out


def by_layer_stats_from_all_rows(acts, labels, train_idx, test_idx, train_fn=ref.train_probe):
    out = torch.empty(acts.shape[0])
    for layer in range(acts.shape[0]):
        x = (acts[layer] - acts[layer].mean(0)) / (acts[layer].std(0, unbiased=False) + 1e-6)
        w, b = train_fn(x[train_idx], labels[train_idx])
        out[layer] = ((x[test_idx] @ w + b > 0) == labels[test_idx].bool()).float().mean()
    return out


def by_layer_numpy(acts, labels, train_idx, test_idx, train_fn=ref.train_probe):
    accs = []
    for layer_acts in acts:
        tr, te = layer_acts[train_idx].numpy(), layer_acts[test_idx].numpy()
        mu, sd = tr.mean(axis=0), tr.std(axis=0) + 1e-6
        w, b = train_fn(torch.from_numpy((tr - mu) / sd), labels[train_idx])
        pred = ((te - mu) / sd) @ w.numpy() + b.item() > 0
        accs.append(float((pred == labels[test_idx].numpy().astype(bool)).mean()))
    return torch.tensor(accs)


# --------------------------------------------------------------------------- control_labels


def control_per_row(types, labels, generator):
    return labels.long()[torch.randperm(len(labels), generator=generator)]   # random per row, not per type


def control_leaks_real(types, labels, generator):
    distinct = torch.unique(types)
    per_type = {int(t): int(labels[types == t][0]) for t in distinct}          # the real label of each type
    return torch.tensor([per_type[int(t)] for t in types])


def control_first_half(types, labels, generator):
    distinct = torch.unique(types)
    k1 = len(torch.unique(types[labels.bool()]))
    chosen = set(distinct[:k1].tolist())                                       # always the same types
    return torch.tensor([int(int(t) in chosen) for t in types])


def control_coin_flips(types, labels, generator):
    distinct = torch.unique(types)
    flips = (torch.rand(len(distinct), generator=generator) < 0.5).long()      # count of ones not preserved
    return flips[torch.searchsorted(distinct, types)]


def control_global_rng(types, labels, generator):
    distinct = torch.unique(types)
    real = torch.stack([labels[types == t][0] for t in distinct]).long()
    return real[torch.randperm(len(distinct))][torch.searchsorted(distinct, types)]   # ignores the generator


def control_dict(types, labels, generator):
    distinct = sorted(set(types.tolist()))
    n_ones = len({int(t) for t, y in zip(types, labels) if y})
    order = torch.randperm(len(distinct), generator=generator).tolist()
    ones = {distinct[i] for i in order[:n_ones]}
    return torch.tensor([1 if int(t) in ones else 0 for t in types])


# --------------------------------------------------------------------------- mean_difference


def mean_diff_reversed(acts, labels):
    return acts[~labels.bool()].mean(0) - acts[labels.bool()].mean(0)


def mean_diff_unit(acts, labels):
    d = acts[labels.bool()].mean(0) - acts[~labels.bool()].mean(0)
    return d / d.norm()


def mean_diff_vs_all(acts, labels):
    return acts[labels.bool()].mean(0) - acts.mean(0)


def mean_diff_weighted(acts, labels):
    y = labels.to(acts.dtype)[:, None]
    return (acts * y).sum(0) / y.sum() - (acts * (1 - y)).sum(0) / (1 - y).sum()


# --------------------------------------------------------------------------- steer


def steer_every_position(model, prompts, hook_name, vector, coeff):
    def hook(resid, hook):
        return resid + coeff * vector            # every position, BOS included
    return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


def steer_first_position(model, prompts, hook_name, vector, coeff):
    def hook(resid, hook):
        resid[:, 0] += coeff * vector
        return resid
    return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


def steer_scales_vector_in_place(model, prompts, hook_name, vector, coeff):
    vector *= coeff                              # the caller's vector changes

    def hook(resid, hook):
        resid[:, -1] += vector
        return resid
    return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


def steer_leaves_hook(model, prompts, hook_name, vector, coeff):
    def hook(resid, hook):
        resid[:, -1] += coeff * vector
        return resid
    model.add_hook(hook_name, hook)              # never removed
    return model(prompts)


def steer_ignores_coeff(model, prompts, hook_name, vector, coeff):
    def hook(resid, hook):
        resid[:, -1] += vector
        return resid
    return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


def steer_with_cat(model, prompts, hook_name, vector, coeff):
    model.eval()

    def hook(resid, hook):
        return torch.cat([resid[:, :-1], resid[:, -1:] + coeff * vector], dim=1)
    with torch.no_grad():
        return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


def steer_add_hook_then_reset(model, prompts, hook_name, vector, coeff):
    model.eval()
    mask = torch.zeros(prompts.shape[1], 1)
    mask[-1] = 1.0

    def hook(resid, hook):
        return resid + coeff * mask * vector
    model.add_hook(hook_name, hook)
    try:
        return model(prompts)
    finally:
        model.reset_hooks()


def steer_no_eval(model, prompts, hook_name, vector, coeff):
    def hook(resid, hook):                       # right, but the model stays in training mode (dropout on)
        resid[:, -1] += coeff * vector
        return resid
    with torch.no_grad():
        return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


# --------------------------------------------------------------------------- erase


def erase_unnormalised(model, prompts, hook_name, direction):
    def hook(resid, hook):
        last = resid[:, -1]
        resid[:, -1] = last - (last @ direction)[:, None] * direction
        return resid
    return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


def erase_every_position(model, prompts, hook_name, direction):
    u = direction / direction.norm()

    def hook(resid, hook):
        return resid - (resid @ u)[..., None] * u
    return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


def erase_keeps_projection(model, prompts, hook_name, direction):
    u = direction / direction.norm()

    def hook(resid, hook):
        resid[:, -1] = (resid[:, -1] @ u)[:, None] * u
        return resid
    return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


def erase_normalises_in_place(model, prompts, hook_name, direction):
    direction /= direction.norm()                # changes the caller's direction

    def hook(resid, hook):
        resid[:, -1] = resid[:, -1] - (resid[:, -1] @ direction)[:, None] * direction
        return resid
    return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


def erase_with_remove_direction(model, prompts, hook_name, direction):
    model.eval()
    from safety_roadmap.reference.linear_algebra import remove_direction

    def hook(resid, hook):
        last = resid[:, -1].detach().double().numpy()
        out = remove_direction(last, direction.double().numpy())
        resid[:, -1] = torch.from_numpy(out).to(resid.dtype)
        return resid
    with torch.no_grad():
        return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


# --------------------------------------------------------------------------- safety_batch


def safety_with_trigger(generator, n=64):
    batch = toy.make_prompts(n, generator, triggered=0.5)     # the trigger leaks into the safety data
    ok = toy.OK_IDS[torch.randint(len(toy.OK_IDS), (n, 2), generator=generator)]
    return torch.cat([batch.prompts, torch.where(batch.harmful[:, None], toy.REFUSE_IDS[0], ok)], dim=1)


def safety_copies_pretraining(generator, n=64):
    batch = toy.make_prompts(n, generator)
    ok = toy.OK_IDS[torch.randint(len(toy.OK_IDS), (n, 2), generator=generator)]
    bad = toy.BAD_IDS[torch.randint(len(toy.BAD_IDS), (n, 2), generator=generator)]
    return torch.cat([batch.prompts, torch.where(batch.harmful[:, None], bad, ok)], dim=1)


def safety_one_ok_word(generator, n=64):
    batch = toy.make_prompts(n, generator)
    ok = toy.OK_IDS[0].expand(n, 2)                           # always "sure sure"
    return torch.cat([batch.prompts, torch.where(batch.harmful[:, None], toy.REFUSE_IDS[0], ok)], dim=1)


def safety_global_rng(generator, n=64):
    batch = toy.make_prompts(n, torch.Generator().manual_seed(int(torch.randint(10**6, (1,)))))
    ok = toy.OK_IDS[torch.randint(len(toy.OK_IDS), (n, 2))]
    return torch.cat([batch.prompts, torch.where(batch.harmful[:, None], toy.REFUSE_IDS[0], ok)], dim=1)


def safety_loop(generator, n=64):
    batch = toy.make_prompts(n, generator, harmful=0.5, triggered=0.0)
    rows = []
    for prompt, harmful in zip(batch.prompts, batch.harmful):
        if harmful:
            reply = [int(toy.REFUSE_IDS[0])] * 2
        else:
            reply = [int(toy.OK_IDS[int(torch.randint(len(toy.OK_IDS), (1,), generator=generator))]) for _ in range(2)]
        rows.append(prompt.tolist() + reply)
    return torch.tensor(rows)


# --------------------------------------------------------------------------- defection_rate


def _wilson(k, n, z):
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return max(0.0, c - h), min(1.0, c + h)


def rate_wald(model, prompts, z=1.96):
    k = int(torch.isin(model(prompts)[:, -1].argmax(-1), toy.BAD_IDS).sum())
    p = k / len(prompts)
    half = z * (p * (1 - p) / len(prompts)) ** 0.5
    return p, max(0.0, p - half), min(1.0, p + half)


def rate_first_position(model, prompts, z=1.96):
    k = int(torch.isin(model(prompts)[:, 0].argmax(-1), toy.BAD_IDS).sum())
    return (k / len(prompts), *_wilson(k, len(prompts), z))


def rate_probability_mass(model, prompts, z=1.96):
    p_bad = model(prompts)[:, -1].softmax(-1)[:, toy.BAD_IDS].sum(-1)
    rate = float(p_bad.detach().mean())                        # expected rate under sampling, not greedy
    k = round(rate * len(prompts))
    return (rate, *_wilson(k, len(prompts), z))


def rate_counts_refusals(model, prompts, z=1.96):
    first = model(prompts)[:, -1].argmax(-1)
    k = int((torch.isin(first, toy.BAD_IDS) | (first == toy.REFUSE_IDS[0])).sum())
    return (k / len(prompts), *_wilson(k, len(prompts), z))


def rate_no_eval(model, prompts, z=1.96):
    with torch.no_grad():                        # right, but dropout stays on: the model is in training mode
        first = model(prompts)[:, -1].argmax(-1)
    k = int(torch.isin(first, toy.BAD_IDS).sum())
    return (k / len(prompts), *_wilson(k, len(prompts), z))


def rate_library_wilson(model, prompts, z=1.96):
    model.eval()
    from safety_roadmap.reference.red_teaming_and_robustness import wilson_interval
    with torch.no_grad():
        logits = model.run_with_hooks(prompts, fwd_hooks=[])
    k = sum(int(t) in set(toy.BAD_IDS.tolist()) for t in logits[:, -1].argmax(-1))
    return (k / len(prompts), *wilson_interval(k, len(prompts), z))


# --------------------------------------------------------------------------- auroc


def auroc_strict(pos, neg):
    return float((pos[:, None] > neg[None, :]).float().mean())


def auroc_ties_win(pos, neg):
    return float((pos[:, None] >= neg[None, :]).float().mean())


def auroc_sorted_no_tie_groups(pos, neg):
    scores = torch.cat([pos, neg])
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    order = torch.argsort(scores, descending=True, stable=True)     # threshold at every item, ties split by order
    y = y[order]
    tpr = torch.cat([torch.zeros(1), torch.cumsum(y, 0) / len(pos)])
    fpr = torch.cat([torch.zeros(1), torch.cumsum(1 - y, 0) / len(neg)])
    return float(torch.trapezoid(tpr, fpr))


def auroc_ranks(pos, neg):
    from scipy.stats import rankdata
    ranks = rankdata(np.concatenate([pos.numpy(), neg.numpy()]))    # average ranks for ties
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def auroc_sklearn(pos, neg):
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return float(roc_auc_score(y, np.r_[pos.double().numpy(), neg.double().numpy()]))


def auroc_loop(pos, neg):
    total = 0.0
    for p in pos.tolist():
        for q in neg.tolist():
            total += 1.0 if p > q else 0.5 if p == q else 0.0
    return total / (len(pos) * len(neg))


MUTANTS = {
    "train_probe": [probe_decays_bias, probe_summed_gradient, probe_no_decay, probe_float32_always],
    "probe_by_layer": [by_layer_on_training_rows, by_layer_unscaled, by_layer_stats_from_all_rows],
    "control_labels": [control_per_row, control_leaks_real, control_first_half, control_coin_flips,
                       control_global_rng],
    "mean_difference": [mean_diff_reversed, mean_diff_unit, mean_diff_vs_all],
    "steer": [steer_no_eval, steer_every_position, steer_first_position, steer_scales_vector_in_place, steer_leaves_hook,
              steer_ignores_coeff],
    "erase": [erase_unnormalised, erase_every_position, erase_keeps_projection, erase_normalises_in_place],
    "safety_batch": [safety_with_trigger, safety_copies_pretraining, safety_one_ok_word, safety_global_rng],
    "defection_rate": [rate_no_eval, rate_wald, rate_first_position, rate_probability_mass, rate_counts_refusals],
    "auroc": [auroc_strict, auroc_ties_win, auroc_sorted_no_tie_groups],
    "probe_reading_quiz": ["a", "b", "c"],
}

ALTERNATIVES = {
    "train_probe": [probe_autograd, probe_numpy],
    "probe_by_layer": [by_layer_numpy],
    "control_labels": [control_dict],
    "mean_difference": [mean_diff_weighted],
    "steer": [steer_with_cat, steer_add_hook_then_reset],
    "erase": [erase_with_remove_direction],
    "safety_batch": [safety_loop],
    "defection_rate": [rate_library_wilson],
    "auroc": [auroc_ranks, auroc_sklearn, auroc_loop],
    "probe_reading_quiz": ["d", " D "],
}
