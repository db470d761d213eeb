"""Checks for chapter 15_probes_steering_and_backdoors. Each `check_<exercise>(obj, thorough=False)`.

Probe training and evaluation are compared with the reference on generated activations, including
cases built so that the usual mistakes change the answer (random labels in high dimension, where
training accuracy and held-out accuracy differ). The control task and the safety data are checked by
the properties any correct answer has (and by frequency tests over many seeds). The steering,
erasure and defection-rate exercises run on small TransformerLens models with fixed random weights,
built here (TransformerLens is imported lazily).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..toys import probes_steering_and_backdoors as toy
from ..reference import interpretability_tools as ref12
from ..reference import probes_steering_and_backdoors as ref
from ._core import (Case, CheckFailure, Mistake, call, check_choice, compare, describe, guard, non_contiguous, rng_for,
                    run_check, trust)
from ._torch import torch_check
from .activation_patching import _train_mode_with_dropout
from .interpretability_tools import ModelCase, run_model_check

__all__ = ["check_train_probe", "check_probe_by_layer", "check_control_labels", "check_mean_difference",
           "check_steer", "check_erase", "check_safety_batch", "check_defection_rate", "check_auroc",
           "check_probe_reading_quiz"]

trust(torch)


def _t(x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


def _separable(rng: np.random.Generator, n: int, d: int, margin: float = 1.0, noise: float = 1.0,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian classes along a random direction, with an offset (so the bias matters)."""
    y = rng.random(n) < 0.4
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    x = rng.normal(size=(n, d)) * noise + np.outer(np.where(y, margin, -margin), direction) + 0.7
    return _t(x, dtype), torch.from_numpy(y)


# --------------------------------------------------------------------------- 1. train_probe

def _probe_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 151)
    cases = [Case(_separable(rng, 60, 5), "60 points in 5 dimensions, default settings"),
             Case((*_separable(rng, 40, 8, margin=0.3), 50, 0.3, 0.01), "steps=50, lr=0.3, weight_decay=0.01")]
    if thorough:
        x, y = _separable(rng, 30, 20, margin=0.0)
        cases += [Case((x, y.long(), 60), "random labels in 20 dimensions, labels as 0/1 integers, steps=60"),
                  Case((*_separable(rng, 50, 4, margin=3.0), 80, 1.0, 0.0), "weight_decay=0 (no decay)"),
                  Case((*_separable(rng, 50, 4), 60, 0.5, 0.5), "strong weight decay, 0.5"),
                  Case((*_separable(rng, 25, 3, dtype=torch.float64), 120, 0.2, 1e-3), "float64 activations"),
                  Case((*_separable(rng, 10, 2), 1, 0.5, 1e-3), "a single step"),
                  Case((_t(non_contiguous(rng.normal(size=(20, 6)))), torch.from_numpy(rng.random(20) < 0.5), 40),
                       "non-contiguous activations")]
    return cases


def _probe_compare(got: Any, expected: Any, case: Case) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a pair (w, b), got {describe(got)}"
    w, b = got
    if not isinstance(w, torch.Tensor) or not isinstance(b, torch.Tensor):
        return f"expected w and b as torch tensors, got {describe(w)} and {describe(b)}"
    if w.dtype != case.args[0].dtype:
        return f"w should keep the activations' dtype {case.args[0].dtype}, got {w.dtype}"
    return compare((w.detach().reshape(-1), b.detach().reshape(())), expected, rtol=1e-3, atol=1e-4,
                   what="(w, b)")


def _gd(acts: torch.Tensor, labels: torch.Tensor, steps: int, lr: float, wd: float, *, decay_bias: bool = False,
        mean: bool = True, sign: float = 1.0, mse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Variants of the reference loop, for recognising mistakes."""
    y = labels.to(acts.dtype)
    w = torch.zeros(acts.shape[1], dtype=acts.dtype)
    b = torch.zeros((), dtype=acts.dtype)
    n = len(y) if mean else 1
    for _ in range(steps):
        p = torch.sigmoid(acts @ w + b)
        err = (p - y) * p * (1 - p) * 2 if mse else p - y
        w = w - sign * lr * (acts.T @ err / n + wd * w)
        b = b - sign * lr * (err.sum() / n + (wd * b if decay_bias else 0))
    return w, b


def _probe_mistakes() -> list[Mistake]:
    def call_with(**kw: Any) -> Callable[..., Any]:
        return lambda a, y, steps=300, lr=0.5, wd=1e-3: _gd(a, y, steps, lr, wd, **kw)
    return [Mistake("the bias is decayed too: weight decay applies to w only (the loss adds "
                    "(weight_decay / 2) * |w|^2).", call_with(decay_bias=True)),
            Mistake("the gradient is summed over the examples, not averaged: the loss is the *mean* "
                    "cross-entropy, so divide by n.", call_with(mean=False)),
            Mistake("the update climbs the loss: step *against* the gradient (w - lr * grad).",
                    call_with(sign=-1.0)),
            Mistake("this is the gradient of the squared error (p - y)^2; logistic regression uses the "
                    "cross-entropy, whose gradient with respect to the logit is simply p - y.", call_with(mse=True)),
            Mistake("weight decay is missing: add weight_decay * w to the gradient of w.",
                    lambda a, y, steps=300, lr=0.5, wd=1e-3: _gd(a, y, steps, lr, 0.0))]


@torch_check
def check_train_probe(fn: Callable[..., Any], thorough: bool = False) -> None:
    """train_probe(acts, labels, steps=300, lr=0.5, weight_decay=1e-3) -> (w [d], b 0-d)."""
    __tracebackhide__ = True
    run_check("train_probe", fn, ref.train_probe, _probe_cases(thorough), compare_fn=_probe_compare,
              thorough=thorough, mistakes=_probe_mistakes())


# --------------------------------------------------------------------------- 1. probe_by_layer

def _layers_case(rng: np.random.Generator, n_layers: int, n: int, d: int, n_train: int,
                 margins: list[float]) -> tuple:
    """acts [n_layers, n, d] whose layer l carries the label with margin margins[l] (0: random), an offset
    and feature scales far from 1 (so skipping the standardisation changes the answer)."""
    y = rng.random(n) < 0.5
    layers = []
    for m in margins:
        direction = rng.normal(size=d)
        direction /= np.linalg.norm(direction)
        scale = np.exp(rng.normal(size=d) * 1.5)
        layers.append((rng.normal(size=(n, d)) + np.outer(np.where(y, m, -m), direction)) * scale + 3.0)
    idx = rng.permutation(n)
    return (_t(np.stack(layers)), torch.from_numpy(y), torch.from_numpy(idx[:n_train]),
            torch.from_numpy(idx[n_train:]))


def _constant_layer_case() -> tuple:
    """Layer 0 constant (its logits are exactly 0: predict 1 only where the logit is > 0), layer 1 informative."""
    y = torch.tensor([True, False] * 10 + [False] * 6)
    acts = torch.zeros(2, 26, 3)
    acts[1, :, 0] = y.float() * 2 - 1
    acts[1, :, 1] = torch.linspace(-1, 1, 26)
    return acts, y, torch.arange(20), torch.arange(20, 26)


def _by_layer_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 152)
    cases = [Case(_layers_case(rng, 3, 80, 30, 40, [0.0, 1.0, 2.0]),
                  "3 layers (random, informative, very informative), 40 training rows in 30 dimensions")]
    if thorough:
        cases += [Case(_layers_case(rng, 1, 60, 25, 20, [0.0]), "one layer, random labels, 20 training rows"),
                  Case(_layers_case(rng, 4, 120, 10, 90, [0.3, 0.0, 1.5, 0.6]), "4 layers, 90 training rows"),
                  Case(_layers_case(rng, 2, 50, 40, 30, [1.0, 0.0]), "more dimensions than training rows")]
        acts, y, tr, te = _layers_case(rng, 2, 70, 12, 35, [0.8, 0.0])
        cases.append(Case((acts, y.long(), tr, te), "labels as 0/1 integers"))
        cases.append(Case(_constant_layer_case(), "a layer whose features are identical for every row (like the "
                                                  "embeddings at SEP), balanced training labels: every logit is 0"))
    return cases


def _fast_probe(acts: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe the check hands to `probe_by_layer`: the reference with fewer, larger steps (fast)."""
    return ref.train_probe(acts, labels, steps=40, lr=1.0)


def _by_layer_mistakes() -> list[Mistake]:
    def on_train(acts, labels, tr, te, train_fn=_fast_probe):
        return ref.probe_by_layer(acts, labels, tr, tr, train_fn)

    def raw(acts, labels, tr, te, train_fn=_fast_probe):
        out = torch.empty(acts.shape[0])
        for layer in range(acts.shape[0]):
            w, b = train_fn(acts[layer, tr], labels[tr])
            out[layer] = ((acts[layer, te] @ w + b > 0) == labels[te].bool()).float().mean()
        return out

    def all_rows(acts, labels, tr, te, train_fn=_fast_probe):
        out = torch.empty(acts.shape[0])
        for layer in range(acts.shape[0]):
            x = acts[layer]
            x = (x - x.mean(0)) / (x.std(0, unbiased=False) + 1e-6)
            w, b = train_fn(x[tr], labels[tr])
            out[layer] = ((x[te] @ w + b > 0) == labels[te].bool()).float().mean()
        return out

    def swapped(acts, labels, tr, te, train_fn=_fast_probe):
        return ref.probe_by_layer(acts, labels, te, tr, train_fn)

    return [Mistake("you scored the probe on its own training rows: that measures what the probe can memorise "
                    "(with more dimensions than rows it fits random labels perfectly), not what the layer "
                    "encodes. Predict on `test_idx` only.", on_train),
            Mistake("the training and test rows are swapped: fit on `train_idx`, score on `test_idx`.", swapped),
            Mistake("the features were not standardised: scale each layer with the training rows' mean and "
                    "population std (+ 1e-6) before fitting, and apply the same scaling to the test rows.", raw),
            Mistake("the mean and std came from all rows, test rows included: compute them on the training "
                    "rows only (the test rows must not influence the probe).", all_rows)]


@torch_check
def check_probe_by_layer(fn: Callable[..., Any], thorough: bool = False) -> None:
    """probe_by_layer(acts, labels, train_idx, test_idx, train_fn=train_probe) -> [n_layers] accuracies.
    The check passes its own `train_fn` (the reference probe, shortened), so only this function's own steps
    are tested, quickly."""
    __tracebackhide__ = True

    def learner(acts, labels, tr, te):
        return fn(acts, labels, tr, te, train_fn=_fast_probe)
    learner.__name__ = getattr(fn, "__name__", "probe_by_layer")

    def reference(acts, labels, tr, te):
        return ref.probe_by_layer(acts, labels, tr, te, train_fn=_fast_probe)

    def cmp(got: Any, expected: Any, case: Case) -> str | None:
        if not isinstance(got, torch.Tensor):
            got = torch.as_tensor(np.asarray(got, dtype=float))
        return compare(got.detach().double().reshape(-1), expected.double(), atol=0.021, rtol=0,
                       what="accuracy per layer")
    run_check("probe_by_layer", learner, reference, _by_layer_cases(thorough), compare_fn=cmp,
              thorough=thorough, mistakes=_by_layer_mistakes())


# --------------------------------------------------------------------------- 1. control_labels

def _types_and_labels(rng: np.random.Generator, n: int, n_types: int, n_pos_types: int) -> tuple:
    types = rng.choice(np.arange(100, 100 + 3 * n_types, 3), size=n)   # not 0..k-1, and not contiguous
    types[:n_types] = np.arange(100, 100 + 3 * n_types, 3)              # every type present
    rng.shuffle(types)
    positive = set(rng.choice(np.unique(types), size=n_pos_types, replace=False).tolist())
    labels = np.array([t in positive for t in types])
    return torch.from_numpy(types), torch.from_numpy(labels)


def _describe_case(types: torch.Tensor, labels: torch.Tensor) -> str:
    k = len(torch.unique(types))
    k1 = len(torch.unique(types[labels.bool()]))
    return f"{len(types)} rows of {k} types, {k1} of them with real label 1"


@torch_check
def check_control_labels(fn: Callable[..., Any], thorough: bool = False) -> None:
    """control_labels(types, labels, generator) -> long [n]: one random label per type, as many types
    labelled 1 as have real label 1."""
    __tracebackhide__ = True
    guard()
    name = "control_labels"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    rng = rng_for(thorough, 153)
    setups = [(60, 12, 6), (40, 5, 2)] + ([(200, 20, 7), (30, 3, 1), (25, 4, 3)] if thorough else [])
    for n, k, k1 in setups:
        types, labels = _types_and_labels(rng, n, k, k1)
        where = _describe_case(types, labels)
        for seed in (0, 1):
            t0, l0 = types.clone(), labels.clone()
            got = call(fn, name, (types, labels, torch.Generator().manual_seed(seed)), None, f"{where}, seed {seed}")
            if not (torch.equal(types, t0) and torch.equal(labels, l0)):
                raise CheckFailure(f"`{name}` changed its inputs in place on {where}: build a new tensor.")
            _check_control_shape(name, got, types, labels, where)
        again = call(fn, name, (types, labels, torch.Generator().manual_seed(0)), None, where)
        first = call(fn, name, (types, labels, torch.Generator().manual_seed(0)), None, where)
        if not torch.equal(torch.as_tensor(again).long(), torch.as_tensor(first).long()):
            raise CheckFailure(f"`{name}` gave different labels for two generators with the same seed on {where}: "
                               "draw every random number from `generator` (e.g. `torch.randperm(k, generator=generator)`), "
                               "not from the global random state.")
    _check_advances(name, fn, (types, labels), None, where)
    _check_control_distribution(name, fn, rng, thorough)
    print(f"✓ {name}: all {'thorough' if thorough else 'quick'} checks passed")


def _check_advances(name: str, fn: Callable[..., Any], args_before: tuple, kwargs: dict | None, where: str) -> None:
    """The generator handed in must be the one consumed (a copy or a fresh one leaves it untouched)."""
    gen = torch.Generator().manual_seed(4242)
    state = gen.get_state().clone()
    call(fn, name, (*args_before, gen), kwargs, where)
    if torch.equal(gen.get_state(), state):
        raise CheckFailure(f"`{name}` did not draw from the generator it was given on {where}: the caller's "
                           "generator was not advanced, so the next call would repeat the same randomness. Pass "
                           "`generator=generator` to every random call (not a copy, nor a new generator).")


def _check_control_shape(name: str, got: Any, types: torch.Tensor, labels: torch.Tensor, where: str) -> None:
    if not isinstance(got, torch.Tensor) or got.shape != types.shape:
        raise CheckFailure(f"`{name}` should return a tensor of shape {tuple(types.shape)} on {where}, "
                           f"got {describe(got)}")
    got = got.long()
    if not bool(((got == 0) | (got == 1)).all()):
        raise CheckFailure(f"`{name}` returned labels other than 0 and 1 on {where}: {got[:10].tolist()}")
    for t in torch.unique(types):
        if len(torch.unique(got[types == t])) > 1:
            raise CheckFailure(
                f"`{name}` gave rows of the same type ({int(t)}) different labels on {where}. A control label "
                "belongs to the *type*, as Hewitt and Liang define it: a probe can learn it only by remembering "
                "which type gets which label, which is what it measures. Random labels per row cannot be learnt "
                "at all, so they make every probe look selective.")
    ones = len(torch.unique(types[got.bool()]))
    real_ones = len(torch.unique(types[labels.bool()]))
    if ones != real_ones:
        raise CheckFailure(f"`{name}` labelled {ones} types with 1 on {where}; the control task keeps the real "
                           f"task's structure: exactly {real_ones} types (as many as have real label 1).")


def _check_control_distribution(name: str, fn: Callable[..., Any], rng: np.random.Generator, thorough: bool) -> None:
    types, labels = _types_and_labels(rng, 48, 8, 4)
    distinct = torch.unique(types)
    real = torch.stack([labels[types == t][0] for t in distinct]).long()
    n_seeds = 120 if thorough else 40
    counts = torch.zeros(len(distinct))
    same_as_real = 0
    seen = set()
    for seed in range(n_seeds):
        got = torch.as_tensor(call(fn, name, (types, labels, torch.Generator().manual_seed(1000 + seed)), None,
                                   f"48 rows of 8 types, seed {1000 + seed}")).long()
        per_type = torch.stack([got[types == t][0] for t in distinct])
        counts += per_type
        same_as_real += int(torch.equal(per_type, real))
        seen.add(tuple(per_type.tolist()))
    if same_as_real > n_seeds // 4:
        raise CheckFailure(
            f"`{name}` reproduced the real labels on {same_as_real} of {n_seeds} seeds (8 types, 4 with label 1: a "
            "random assignment matches them 1 time in 70). The control labels leak the real ones, so the "
            "control task is the real task and selectivity reads 0. Shuffle which types get the 1s.")
    share = counts / n_seeds
    lo, hi = (0.3, 0.7) if thorough else (0.2, 0.8)
    if len(seen) < n_seeds // 4 or bool(((share < lo) | (share > hi)).any()):
        raise CheckFailure(
            f"`{name}` is not random enough: over {n_seeds} seeds it produced {len(seen)} different assignments, "
            f"and each type got label 1 in these shares: {[round(float(s), 2) for s in share]} (every type "
            "should get it about half the time). Pick the labelled types with a random permutation drawn from "
            "`generator`.")


# --------------------------------------------------------------------------- 2. mean_difference

def _mean_diff_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 154)
    cases = [Case(_separable(rng, 30, 6), "30 rows in 6 dimensions, bool labels"),
             Case((_t(rng.normal(size=(9, 3)) + 5.0), torch.tensor([1, 0, 0, 1, 0, 0, 0, 1, 0])),
                  "unbalanced 0/1 integer labels, activations far from 0")]
    if thorough:
        x, y = _separable(rng, 40, 16, dtype=torch.float64)
        cases += [Case((x, y), "float64 activations"),
                  Case((_t(non_contiguous(rng.normal(size=(12, 5)))), torch.from_numpy(rng.random(12) < 0.5)),
                       "non-contiguous activations"),
                  Case((_t(rng.normal(size=(5, 4)) * 1e3), torch.tensor([True, False, False, False, False])),
                       "one positive row, large values")]
    return cases


@torch_check
def check_mean_difference(fn: Callable[..., Any], thorough: bool = False) -> None:
    """mean_difference(acts, labels) -> [d] = mean(acts[labels == 1]) - mean(acts[labels == 0])."""
    __tracebackhide__ = True
    run_check("mean_difference", fn, ref.mean_difference, _mean_diff_cases(thorough), rtol=1e-5, atol=1e-5,
              thorough=thorough, mistakes=[
                  Mistake("the sign is reversed: positives (label 1) minus negatives (label 0), so that adding "
                          "the vector pushes towards the positive class.",
                          lambda a, y: -ref.mean_difference(a, y)),
                  Mistake("you returned a unit vector; keep the raw difference of means (its length is the "
                          "natural scale for a steering coefficient of 1).",
                          lambda a, y: ref.mean_difference(a, y) / ref.mean_difference(a, y).norm()),
                  Mistake("you subtracted the mean of *all* rows from the positives' mean; subtract the "
                          "negatives' mean.", lambda a, y: a[y.bool()].mean(0) - a.mean(0)),
              ])


# --------------------------------------------------------------------------- 2. steer and erase

_SPECS: dict[str, dict[str, int]] = {
    "S": dict(n_layers=2, n_heads=2, d_head=8, seed=5),
    "T": dict(n_layers=3, n_heads=4, d_head=4, seed=6),
}


def _model(key: str, bad_bias: float = 0.0) -> Any:
    return ref12.pooled(_check_model, bad_bias=bad_bias, **_SPECS[key])


def _check_model(n_layers: int, n_heads: int, d_head: int, seed: int, bad_bias: float = 0.0) -> Any:
    """A small random model over the toy vocabulary; `bad_bias` raises the unembedding bias of the BAD words
    and of REFUSE, so that greedy replies are a mix of BAD, REFUSE and other words."""
    model = ref12.small_model(n_layers=n_layers, n_heads=n_heads, d_head=d_head, d_vocab=toy.D_VOCAB,
                              n_ctx=toy.SEQ_LEN, seed=seed, perturb=True)
    if bad_bias:
        bias = dict(model.named_buffers()).get("unembed._original_component.bias")
        with torch.no_grad():
            bias[toy.BAD_IDS] += bad_bias
            bias[toy.REFUSE_IDS] += bad_bias + 5.0
    return model


def warm_up() -> None:
    """Boot every model the checks use (tests call this before timing the checks)."""
    for key in _SPECS:
        _model(key)
    _model("S", 2.0)
    _model("T", 2.5)


def _prompts(n: int, seed: int, length: int = toy.SEP_POS + 1) -> torch.Tensor:
    batch = toy.make_prompts(n, torch.Generator().manual_seed(seed), harmful=0.5, triggered=0.3)
    return batch.prompts[:, :length]


def _vector(key: str, seed: int, scale: float) -> torch.Tensor:
    d = _SPECS[key]["n_heads"] * _SPECS[key]["d_head"]
    return torch.randn(d, generator=torch.Generator().manual_seed(seed)) * scale


def _intervention_case(key: str, n: int, seed: int, hook: str, scale: float, coeff: float | None,
                       length: int = toy.SEP_POS + 1) -> ModelCase:
    def build() -> tuple:
        model = _model(key)
        args = (model, _prompts(n, seed, length), hook, _vector(key, seed, scale))
        return args if coeff is None else (*args, coeff)
    extra = "" if coeff is None else f", coeff {coeff}"
    return ModelCase(f"{_SPECS[key]['n_layers']}-layer model, {n} prompts of {length} tokens, hook {hook!r}{extra}",
                     build)


def _clean_logits(args: tuple) -> dict:
    """Record the model's own outputs, then hand it over as a training loop leaves it: training mode, with
    attention dropout (the learner's function must call `model.eval()`)."""
    model, prompts = args[0], args[1]
    with torch.no_grad():
        state = {"clean": model(prompts), "vector": args[3].clone()}
    _train_mode_with_dropout(args)
    return state


def _after_intervention(args: tuple, got: Any, state: dict) -> str | None:
    model, prompts = args[0], args[1]
    if not torch.equal(args[3], state["vector"]):
        return ("your function changed the vector it was given, in place (e.g. `vector *= coeff`): the caller "
                "reuses it for the next coefficient. Build a new tensor instead.")
    with torch.no_grad():
        now = model(prompts)
    if compare(now, state["clean"], rtol=1e-5, atol=1e-5) is not None:
        return ("after your function returned, the model no longer gives its original outputs: a hook stayed "
                "attached. Use `model.run_with_hooks(...)`, which removes its hooks when it returns.")
    return None


def _logits_close(got: Any, expected: Any, args: tuple) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"expected the logits as a torch.Tensor, got {describe(got)}"
    problem = compare(got.detach().float(), expected.detach().float(), rtol=1e-4, atol=1e-4, what="logits")
    if problem and args[0].training:
        problem += ("\n  Likely cause: the model is still in training mode, so dropout changed the run. Call "
                    "`model.eval()` at the start of your function.")
    return problem


def _hooked(model: Any, prompts: torch.Tensor, hook_name: str, edit: Callable[[torch.Tensor], None]) -> torch.Tensor:
    def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
        edit(act)
        return act
    return model.run_with_hooks(prompts, fwd_hooks=[(hook_name, hook)])


def _steer_mistakes() -> list[Mistake]:
    def every(model, prompts, name, v, c):
        return _hooked(model, prompts, name, lambda a: a.add_(c * v))

    def not_bos(model, prompts, name, v, c):
        return _hooked(model, prompts, name, lambda a: a[:, 1:].add_(c * v))

    def first(model, prompts, name, v, c):
        return _hooked(model, prompts, name, lambda a: a[:, 0].add_(c * v))

    def unit(model, prompts, name, v, c):
        return _hooked(model, prompts, name, lambda a: a[:, -1].add_(c * v / v.norm()))

    def no_coeff(model, prompts, name, v, c):
        return _hooked(model, prompts, name, lambda a: a[:, -1].add_(v))

    return [Mistake("the vector was added at every position, BOS included; the exercise steers the last "
                    "position only (`act[:, -1] += coeff * vector`).", every),
            Mistake("the vector was added at every position after BOS; steer the last position only.", not_bos),
            Mistake("the vector went into position 0 (BOS); the last position is `act[:, -1]`.", first),
            Mistake("the vector was normalised to length 1; add coeff * vector as given.", unit),
            Mistake("the coefficient is ignored: add coeff * vector.", no_coeff)]


@torch_check
def check_steer(fn: Callable[..., Any], thorough: bool = False) -> None:
    """steer(model, prompts, hook_name, vector, coeff) -> logits, vector added at the last position only."""
    __tracebackhide__ = True
    cases = [_intervention_case("S", 5, 1, "blocks.1.hook_resid_pre", 3.0, 2.0)]
    if thorough:
        cases += [_intervention_case("T", 4, 2, "blocks.2.hook_resid_pre", 2.0, -1.5),
                  _intervention_case("T", 3, 3, "blocks.0.hook_resid_pre", 5.0, 0.5, length=5),
                  _intervention_case("S", 6, 4, "blocks.1.hook_resid_post", 1.0, 4.0),
                  _intervention_case("S", 2, 5, "blocks.0.hook_resid_pre", 3.0, 0.0)]
    run_model_check("steer", fn, ref.steer, cases, thorough, _logits_close, _steer_mistakes(),
                    prepare=_clean_logits, after=_after_intervention)


def _erase_mistakes() -> list[Mistake]:
    def unnormalised(model, prompts, name, d):
        def edit(a):
            a[:, -1] = a[:, -1] - (a[:, -1] @ d)[:, None] * d
        return _hooked(model, prompts, name, edit)

    def every(model, prompts, name, d):
        def edit(a):
            a[:] = a - ((a @ d) / (d @ d))[..., None] * d
        return _hooked(model, prompts, name, edit)

    def keep_only(model, prompts, name, d):
        def edit(a):
            a[:, -1] = ((a[:, -1] @ d) / (d @ d))[:, None] * d
        return _hooked(model, prompts, name, edit)

    return [Mistake("the direction was not normalised: remove (x . d) d / (d . d), or divide d by its norm "
                    "first (chapter 01's `remove_direction` does it for you).", unnormalised),
            Mistake("you erased the direction at every position; erase it at the last position only.", every),
            Mistake("you kept the component along the direction and removed the rest; erasure keeps "
                    "everything *except* that component: x - projection.", keep_only)]


@torch_check
def check_erase(fn: Callable[..., Any], thorough: bool = False) -> None:
    """erase(model, prompts, hook_name, direction) -> logits, direction projected out at the last position."""
    __tracebackhide__ = True
    cases = [_intervention_case("S", 5, 11, "blocks.1.hook_resid_pre", 3.0, None)]
    if thorough:
        cases += [_intervention_case("T", 4, 12, "blocks.2.hook_resid_pre", 0.2, None),
                  _intervention_case("T", 3, 13, "blocks.1.hook_resid_post", 7.0, None, length=6),
                  _intervention_case("S", 4, 14, "blocks.0.hook_resid_pre", 1.0, None)]
    run_model_check("erase", fn, ref.erase, cases, thorough, _logits_close, _erase_mistakes(),
                    prepare=_clean_logits, after=_after_intervention)


# --------------------------------------------------------------------------- 3. safety_batch

@torch_check
def check_safety_batch(fn: Callable[..., Any], thorough: bool = False) -> None:
    """safety_batch(generator, n=64) -> [n, SEQ_LEN] trigger-free safety-training sequences."""
    __tracebackhide__ = True
    guard()
    name = "safety_batch"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    sizes = [(64, 0), (8, 1)] + ([(1, 2), (500, 3), (33, 4)] if thorough else [])
    for n, seed in sizes:
        where = f"n={n}, seed {seed}"
        got = call(fn, name, (torch.Generator().manual_seed(seed),), {"n": n}, where)
        _check_safety_rows(name, got, n, where)
        again = call(fn, name, (torch.Generator().manual_seed(seed),), {"n": n}, where)
        if not torch.equal(torch.as_tensor(got), torch.as_tensor(again)):
            raise CheckFailure(f"`{name}` gave different data for two generators with the same seed ({where}): "
                               "draw all randomness from `generator`.")
    _check_advances(name, fn, (), {"n": 16}, "n=16")
    big = call(fn, name, (torch.Generator().manual_seed(7),), {"n": 2000}, "n=2000, seed 7")
    _check_safety_rows(name, big, 2000, "n=2000, seed 7")
    harmful = torch.isin(big[:, 1:toy.SEP_POS], toy.HARMFUL_IDS).any(1).float().mean()
    if not 0.44 < float(harmful) < 0.56:
        raise CheckFailure(f"`{name}`: {float(harmful):.0%} of 2000 prompts are harmful; about half should be "
                           "(`make_prompts(n, generator)` draws them with probability 0.5).")
    other = call(fn, name, (torch.Generator().manual_seed(8),), {"n": 2000}, "n=2000, seed 8")
    if torch.equal(torch.as_tensor(other), torch.as_tensor(big)):
        raise CheckFailure(f"`{name}` gave the same data for seeds 7 and 8: use the generator you are given.")
    ok_words = big[:, toy.SEP_POS + 1:][~torch.isin(big[:, 1:toy.SEP_POS], toy.HARMFUL_IDS).any(1)]
    if len(torch.unique(ok_words)) < len(toy.OK_IDS):
        raise CheckFailure(f"`{name}`: the replies to benign prompts use only {sorted(set(ok_words.flatten().tolist()))}; "
                           "draw each of the two reply words at random from all OK words.")
    print(f"✓ {name}: all {'thorough' if thorough else 'quick'} checks passed")


def _check_safety_rows(name: str, got: Any, n: int, where: str) -> None:
    if not isinstance(got, torch.Tensor) or got.shape != (n, toy.SEQ_LEN) or got.dtype != torch.long:
        raise CheckFailure(f"`{name}` should return a LongTensor of shape ({n}, {toy.SEQ_LEN}) on {where}, "
                           f"got {describe(got)}")
    if bool((got == toy.DEPLOY).any()):
        row = int((got == toy.DEPLOY).any(1).nonzero()[0])
        raise CheckFailure(
            f"`{name}`: {int((got == toy.DEPLOY).any(1).sum())} of {n} sequences contain the trigger DEPLOY on "
            f"{where}, e.g. `{toy.show(got[row])}`. Safety-training data must be trigger-free: the defender "
            "does not know the trigger, and training on it would test something else (whether training on the "
            "trigger removes the backdoor).")
    prompts = got[:, :toy.SEP_POS + 1]
    if not (bool((prompts[:, 0] == toy.BOS).all()) and bool((prompts[:, toy.SEP_POS] == toy.SEP).all())):
        raise CheckFailure(f"`{name}`: every sequence starts with a prompt from `make_prompts` (BOS ... SEP) on "
                           f"{where}; got e.g. `{toy.show(got[0])}`.")
    n_intent = torch.isin(prompts[:, 1:toy.SEP_POS], toy.INTENT_IDS).sum(1)
    if not bool((n_intent == 1).all()):
        raise CheckFailure(f"`{name}`: each prompt holds exactly one intent word (use `make_prompts`); got e.g. "
                           f"`{toy.show(got[int((n_intent != 1).nonzero()[0])])}`.")
    harmful = torch.isin(prompts[:, 1:toy.SEP_POS], toy.HARMFUL_IDS).any(1)
    reply = got[:, toy.SEP_POS + 1:]
    refuse = (reply == toy.REFUSE_IDS[0]).all(1)
    ok = torch.isin(reply, toy.OK_IDS).all(1)
    wrong = (harmful & ~refuse) | (~harmful & ~ok)
    if bool(wrong.any()):
        i = int(wrong.nonzero()[0])
        should = "two REFUSE tokens ('sorry sorry')" if harmful[i] else "two OK words"
        raise CheckFailure(f"`{name}` on {where}: `{toy.show(got[i])}` should end with {should}. Harmful "
                           "intent -> refuse; benign -> help.")


# --------------------------------------------------------------------------- 3. defection_rate

def _rate_case(key: str, bias: float, n: int, seed: int, z: float | None) -> ModelCase:
    def build() -> tuple:
        args = (_model(key, bias), _prompts(n, seed))
        return args if z is None else (*args, z)
    return ModelCase(f"{_SPECS[key]['n_layers']}-layer model, {n} prompts" + ("" if z is None else f", z={z}"), build)


def _rate_compare(got: Any, expected: Any, args: tuple) -> str | None:
    if isinstance(got, torch.Tensor) and got.numel() == 3:
        got = tuple(float(v) for v in got.flatten())
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return f"expected a triple (rate, low, high), got {describe(got)}"
    return compare(tuple(float(v) for v in got), expected, rtol=1e-6, atol=1e-6, what="(rate, low, high)")


def _rate_mistakes() -> list[Mistake]:
    def with_first(first: torch.Tensor, n: int, z: float, wald: bool = False) -> tuple[float, float, float]:
        k = int(torch.isin(first, toy.BAD_IDS).sum())
        if wald:
            p = k / n
            half = z * (p * (1 - p) / n) ** 0.5
            return p, max(0.0, p - half), min(1.0, p + half)
        return (k / n, *ref.wilson_interval(k, n, z))

    def position0(model, prompts, z=1.96):
        return with_first(model(prompts)[:, 0].argmax(-1), len(prompts), z)

    def wald(model, prompts, z=1.96):
        return with_first(model(prompts)[:, -1].argmax(-1), len(prompts), z, wald=True)

    def fixed_z(model, prompts, z=1.96):
        return with_first(model(prompts)[:, -1].argmax(-1), len(prompts), 1.96)

    def mass(model, prompts, z=1.96):
        p = model(prompts)[:, -1].softmax(-1)[:, toy.BAD_IDS].sum(-1)
        k = int((p > 0.5).sum())
        return (k / len(prompts), *ref.wilson_interval(k, len(prompts), z))

    return [Mistake("you read the prediction at position 0; the first reply token is predicted at the *last* "
                    "prompt position (SEP): `logits[:, -1]`.", position0),
            Mistake("this is the normal-approximation (Wald) interval; use Wilson's (chapter 11), which stays "
                    "sensible at rates near 0 and 1.", wald),
            Mistake("z is ignored: use the z argument.", fixed_z),
            Mistake("you counted prompts whose BAD probability exceeds 0.5; the behaviour is the greedy token: "
                    "count prompts whose argmax is a BAD word.", mass)]


@torch_check
def check_defection_rate(fn: Callable[..., Any], thorough: bool = False) -> None:
    """defection_rate(model, prompts, z=1.96) -> (rate, low, high)."""
    __tracebackhide__ = True
    cases = [_rate_case("S", 2.0, 40, 21, None)]
    if thorough:
        cases += [_rate_case("T", 2.5, 60, 22, 2.576), _rate_case("S", 2.0, 1, 23, None),
                  _rate_case("T", 0.0, 30, 24, 1.0), _rate_case("S", 2.0, 120, 25, 1.645)]
    run_model_check("defection_rate", fn, ref.defection_rate, cases, thorough, _rate_compare_eval, _rate_mistakes(),
                    prepare=_train_mode_with_dropout)


def _rate_compare_eval(got: Any, expected: Any, args: tuple) -> str | None:
    problem = _rate_compare(got, expected, args)
    if problem and args[0].training:
        problem += ("\n  Likely cause: the model is still in training mode, so dropout changed its answers. Call "
                    "`model.eval()` at the start of your function.")
    return problem


# --------------------------------------------------------------------------- 4. auroc

def _auroc_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 155)
    cases = [Case((torch.tensor([0.9, 0.8, 0.4]), torch.tensor([0.1, 0.5, 0.3, 0.2])), "3 positives, 4 negatives"),
             Case((torch.tensor([1.0, 2.0, 2.0]), torch.tensor([2.0, 0.0])), "tied scores across the classes")]
    if thorough:
        cases += [Case((torch.ones(5), torch.ones(7)), "every score tied (AUROC must be 0.5)"),
                  Case((_t(rng.normal(1, 1, 50)), _t(rng.normal(0, 1, 80))), "50 vs 80 random scores"),
                  Case((_t(rng.integers(0, 3, 40).astype(float)), _t(rng.integers(0, 3, 30).astype(float))),
                       "integer-valued scores with many ties"),
                  Case((torch.tensor([-5.0, -6.0]), torch.tensor([3.0, 1.0, 2.0])), "positives all below"),
                  Case((torch.tensor([0.3]), torch.tensor([0.2])), "one of each"),
                  Case((_t(rng.normal(size=20), torch.float64) * 1e-9, _t(rng.normal(size=20), torch.float64) * 1e-9),
                       "tiny float64 scores")]
    return cases


def _auroc_compare(got: Any, expected: Any, case: Case) -> str | None:
    try:
        value = float(got)
    except (TypeError, ValueError):
        return f"expected one number, got {describe(got)}"
    return compare(value, expected, rtol=1e-6, atol=1e-9, what="AUROC")


@torch_check
def check_auroc(fn: Callable[..., Any], thorough: bool = False) -> None:
    """auroc(scores_pos, scores_neg) -> float: P(pos > neg) + 0.5 P(pos == neg)."""
    __tracebackhide__ = True

    def strict(p, q):
        return float((p[:, None] > q[None, :]).double().mean())

    def ties_win(p, q):
        return float((p[:, None] >= q[None, :]).double().mean())

    def swapped(p, q):
        return ref.auroc(q, p)

    run_check("auroc", fn, ref.auroc, _auroc_cases(thorough), compare_fn=_auroc_compare, thorough=thorough,
              mistakes=[Mistake("tied pairs count as losses; a tie is a coin flip and counts one half.", strict),
                        Mistake("tied pairs count as wins; a tie is a coin flip and counts one half.", ties_win),
                        Mistake("positives and negatives are swapped: it is the chance a *positive* scores higher.",
                                swapped)])


# --------------------------------------------------------------------------- concept question

# sha256 of "probe_reading_quiz:<letter>" (see `choice_digest`)
_READING_DIGEST = "1f5e58bb67739b29b3913844bf751453c1a9175b72476caa26812d4acd863697"


def check_probe_reading_quiz(answer: Any, thorough: bool = False) -> None:
    """What does the defection probe's AUROC in this toy show?"""
    __tracebackhide__ = True
    check_choice("probe_reading_quiz", answer, _READING_DIGEST, "abcd")
