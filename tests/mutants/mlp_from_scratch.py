"""Mutants and alternatives for chapter 04_mlp_from_scratch."""
from __future__ import annotations

import math

import numpy as np

from safety_roadmap.reference import mlp_from_scratch as ref

# --------------------------------------------------------------------------- linear layer


def linear_transposed(x, W, b):
    return x @ W.T + b


def linear_no_bias(x, W, b):
    return x @ W


def lb_wrong_transpose_x(g, x, W):
    return g @ W, x.T @ g, g.sum(0)  # W instead of W.T: only "works" for square W


def lb_wrong_transpose_W(g, x, W):
    return g @ W.T, g.T @ x, g.sum(0)


def lb_forgot_bias(g, x, W):
    return g @ W.T, x.T @ g, np.zeros(W.shape[1])


def lb_bias_not_summed(g, x, W):
    return g @ W.T, x.T @ g, g


def lb_bias_averaged(g, x, W):
    return g @ W.T, x.T @ g, g.mean(axis=0)


def lb_weights_averaged(g, x, W):
    return g @ W.T, x.T @ g / len(x), g.sum(0) / len(x)


def lb_only_first_example(g, x, W):
    return g @ W.T, np.outer(x[0], g[0]), g[0]


def relu_leaky(x):
    return np.where(x > 0, x, 0.01 * x)


def relu_in_place(x):
    x[x < 0] = 0  # changes the caller's array
    return x


def relu_abs(x):
    return np.abs(x)


def rb_mask_from_grad(g, x):
    return g * (g > 0)


def rb_mask_only(g, x):
    return (x > 0).astype(float)


def rb_times_activation(g, x):
    return g * np.maximum(x, 0)


def rb_in_place(g, x):
    g[x <= 0] = 0
    return g


def rb_flipped(g, x):
    return g * (x < 0)


def sce_no_max(logits, labels):
    with np.errstate(all="ignore"):   # overflows, as the learner's version would
        e = np.exp(logits)
        p = e / e.sum(axis=1, keepdims=True)
    n = len(labels)
    g = p.copy()
    g[np.arange(n), labels] -= 1
    return float(-np.log(p[np.arange(n), labels]).mean()), g / n


def sce_log_of_softmax(logits, labels):
    # subtracts the max, but takes log(softmax): log(0) = -inf for a hopeless label
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(labels)
    g = p.copy()
    g[np.arange(n), labels] -= 1
    with np.errstate(all="ignore"):   # log(0) = -inf, as the learner's version would
        return float(-np.log(p[np.arange(n), labels]).mean()), g / n


def sce_sum(logits, labels):
    loss, g = ref.softmax_cross_entropy(logits, labels)
    return loss * len(labels), g * len(labels)


def sce_grad_not_averaged(logits, labels):
    loss, g = ref.softmax_cross_entropy(logits, labels)
    return loss, g * len(labels)


def sce_no_one_hot(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return ref.softmax_cross_entropy(logits, labels)[0], p / len(labels)


def sce_shift_in_place(logits, labels):
    logits -= logits.max(axis=1, keepdims=True)  # changes the caller's logits
    return ref.softmax_cross_entropy(logits, labels)


def ng_forward_difference(f, param, eps=1e-5):
    grad = np.zeros_like(param, dtype=float)
    base = f()
    for idx in np.ndindex(param.shape):
        old = param[idx]
        param[idx] = old + eps
        grad[idx] = (f() - base) / eps
        param[idx] = old
    return grad


def ng_not_restored(f, param, eps=1e-5):
    grad = np.zeros_like(param, dtype=float)
    for idx in np.ndindex(param.shape):
        param[idx] += eps
        plus = f()
        param[idx] -= 2 * eps
        minus = f()  # forgets to put the entry back
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def ng_flatten_copy(f, param, eps=1e-5):
    flat = param.flatten()  # a copy: f never sees these nudges
    grad = np.zeros(flat.shape)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad.reshape(param.shape)


def ng_all_at_once(f, param, eps=1e-5):
    param += eps
    plus = f()
    param -= 2 * eps
    minus = f()
    param += eps
    return np.full(param.shape, (plus - minus) / (2 * eps))


def ng_divides_by_eps(f, param, eps=1e-5):
    grad = np.zeros_like(param, dtype=float)
    for idx in np.ndindex(param.shape):
        old = param[idx]
        param[idx] = old + eps
        plus = f()
        param[idx] = old - eps
        minus = f()
        param[idx] = old
        grad[idx] = (plus - minus) / eps
    return grad


class MLPNoHiddenRelu(ref.MLP):
    def _forward_with_cache(self, x):
        cache, h = [], x
        for i in range(self.num_layers):
            z = h @ self.params[f"W{i}"] + self.params[f"b{i}"]
            cache.append((h, z))
            h = z
        return h, cache

    def loss_and_grads(self, x, y):
        logits, cache = self._forward_with_cache(x)
        loss, grad = ref.softmax_cross_entropy(logits, y)
        grads = {}
        for i in reversed(range(self.num_layers)):
            h, _ = cache[i]
            grad, grads[f"W{i}"], grads[f"b{i}"] = ref.linear_backward(grad, h, self.params[f"W{i}"])
        return loss, grads


class MLPReluOnLogits(ref.MLP):
    def forward(self, x):
        return np.maximum(super().forward(x), 0)


class MLPBackwardSkipsRelu(ref.MLP):
    def loss_and_grads(self, x, y):
        logits, cache = self._forward_with_cache(x)
        loss, grad = ref.softmax_cross_entropy(logits, y)
        grads = {}
        for i in reversed(range(self.num_layers)):
            h, _ = cache[i]  # forgets relu_backward between layers
            grad, grads[f"W{i}"], grads[f"b{i}"] = ref.linear_backward(grad, h, self.params[f"W{i}"])
        return loss, grads


class MLPBiasGradMean(ref.MLP):
    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        for i in range(self.num_layers):  # as if linear_backward averaged grad_b over the batch
            grads[f"b{i}"] = grads[f"b{i}"] / len(x)
        return loss, grads


class MLPXavierInit(ref.MLP):
    def __init__(self, sizes, seed=0):
        super().__init__(sizes, seed)
        rng = np.random.default_rng(seed)
        for i, fan_in in enumerate(sizes[:-1]):
            self.params[f"W{i}"][...] = rng.normal(0, math.sqrt(1 / fan_in), size=self.params[f"W{i}"].shape)


class MLPGlobalRandom(ref.MLP):
    def __init__(self, sizes, seed=0):
        super().__init__(sizes, seed)
        for i, fan_in in enumerate(sizes[:-1]):  # ignores the seed
            self.params[f"W{i}"][...] = np.random.normal(0, math.sqrt(2 / fan_in), size=self.params[f"W{i}"].shape)


class MLPWrongGradKeys(ref.MLP):
    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        return loss, {k.lower(): v for k, v in grads.items()}


def mb_drops_last(x, y, batch_size, rng):
    order = rng.permutation(len(y))
    for start in range(0, len(y) - batch_size + 1, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def mb_separate_shuffles(x, y, batch_size, rng):
    ox, oy = rng.permutation(len(y)), rng.permutation(len(y))
    for start in range(0, len(y), batch_size):
        yield x[ox[start:start + batch_size]], y[oy[start:start + batch_size]]


def mb_no_shuffle(x, y, batch_size, rng):
    for start in range(0, len(y), batch_size):
        yield x[start:start + batch_size], y[start:start + batch_size]


def mb_fixed_seed(x, y, batch_size, rng):
    order = np.random.default_rng(0).permutation(len(y))  # the same order every epoch
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def mb_shuffle_in_place(x, y, batch_size, rng):
    order = rng.permutation(len(y))
    x[...] = x[order]  # reorders the caller's data
    y[...] = y[order]
    return [(x[s:s + batch_size], y[s:s + batch_size]) for s in range(0, len(y), batch_size)]


def mb_global_random(x, y, batch_size, rng):
    order = np.random.permutation(len(y))  # not reproducible from the rng
    return [(x[order[s:s + batch_size]], y[order[s:s + batch_size]]) for s in range(0, len(y), batch_size)]


def sgd_rebinds(params, grads, lr):
    for p, g in zip(params.values(), grads.values()):
        p = p - lr * g  # noqa: F841 - rebinds the loop variable only


def sgd_ascent(params, grads, lr):
    for k in params:
        params[k] += lr * grads[k]


def sgd_weights_only(params, grads, lr):
    for k in params:
        if k.startswith("W"):
            params[k] -= lr * grads[k]


def sgd_returns_new(params, grads, lr):
    return {k: params[k] - lr * grads[k] for k in params}


class ConstantModel:
    """Predicts class 1 for everything."""

    def forward(self, x):
        logits = np.zeros((len(x), 10))
        logits[:, 1] = 1.0
        return logits


def _trained(hidden: int, epochs: int, lr: float, seed: int, batch_size: int = 16) -> ref.MLP:
    from safety_roadmap.checks.mlp_from_scratch import _digits_test  # warms the check's cache too
    from safety_roadmap.data import load_digits

    _digits_test()
    data = load_digits()
    model = ref.MLP([64, hidden, 10], seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(data.y_train))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            _, grads = model.loss_and_grads(data.x_train[idx], data.y_train[idx])
            ref.sgd_step(model.params, grads, lr)
    return model


UNTRAINED = ref.MLP([64, 128, 10], seed=0)
UNDERTRAINED = _trained(16, 1, 0.01, seed=0)
WELL_TRAINED = _trained(64, 40, 0.1, seed=5)


class TestLookupModel:
    """Memorises the test split's labels by their exact pixels (a model 'trained' on the test set)."""

    def __init__(self):
        from safety_roadmap.data import load_digits
        data = load_digits()
        self.table = {x.tobytes(): int(y) for x, y in zip(data.x_test, data.y_test)}
        self.fallback = WELL_TRAINED

    def forward(self, x):
        logits = np.zeros((len(x), 10))
        for i, row in enumerate(np.asarray(x, dtype=np.float32)):
            logits[i, self.table.get(row.tobytes(), 0)] = 1.0
        return logits


def _trained_on_test_split(seed: int = 0) -> ref.MLP:
    from safety_roadmap.data import load_digits
    data = load_digits()
    model = ref.MLP([64, 64, 10], seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(60):
        for xb, yb in ref.iterate_minibatches(data.x_test, data.y_test, 16, rng):
            _, grads = model.loss_and_grads(xb, yb)
            ref.sgd_step(model.params, grads, 0.1)
    return model


class DivergedModel:
    def forward(self, x):
        return np.full((len(x), 10), np.nan)


MUTANTS = {
    "linear_forward": [linear_transposed, linear_no_bias],
    "linear_backward": [lb_wrong_transpose_x, lb_wrong_transpose_W, lb_forgot_bias, lb_bias_not_summed,
                        lb_bias_averaged, lb_weights_averaged, lb_only_first_example],
    "relu_forward": [relu_leaky, relu_in_place, relu_abs],
    "relu_backward": [rb_mask_from_grad, rb_mask_only, rb_times_activation, rb_in_place, rb_flipped],
    "softmax_cross_entropy": [sce_no_max, sce_log_of_softmax, sce_sum, sce_grad_not_averaged, sce_no_one_hot,
                              sce_shift_in_place],
    "mlp_numerical_gradient": [ng_forward_difference, ng_not_restored, ng_flatten_copy, ng_all_at_once,
                               ng_divides_by_eps],
    "mlp_class": [MLPNoHiddenRelu, MLPReluOnLogits, MLPBackwardSkipsRelu, MLPBiasGradMean,
                  MLPXavierInit, MLPGlobalRandom, MLPWrongGradKeys],
    "iterate_minibatches": [mb_drops_last, mb_separate_shuffles, mb_no_shuffle, mb_fixed_seed, mb_shuffle_in_place,
                            mb_global_random],
    "mlp_sgd_step": [sgd_rebinds, sgd_ascent, sgd_weights_only, sgd_returns_new],
    "mlp_digits_accuracy": [UNTRAINED, UNDERTRAINED, ConstantModel(), DivergedModel(), TestLookupModel(),
                            _trained_on_test_split()],
    "zero_init_quiz": ["a", "b", "c"],
}

# --------------------------------------------------------------------------- correct alternatives


def linear_einsum(x, W, b):
    return np.einsum("bi,io->bo", x, W) + b[None, :]


def linear_loops(x, W, b):
    out = np.empty((x.shape[0], W.shape[1]))
    for r in range(x.shape[0]):
        for c in range(W.shape[1]):
            out[r, c] = sum(x[r, i] * W[i, c] for i in range(W.shape[0])) + b[c]
    return out


def lb_einsum(g, x, W):
    return np.einsum("bo,io->bi", g, W), np.einsum("bi,bo->io", x, g), np.einsum("bo->o", g)


def lb_outer_products(g, x, W):
    grad_W = sum(np.outer(x[r], g[r]) for r in range(len(x)))
    grad_b = np.ones(len(x)) @ g
    return (W @ g.T).T, grad_W, grad_b


def relu_where(x):
    return np.where(x > 0, x, 0.0)


def relu_clip(x):
    return x.clip(min=0)


def rb_where(g, x):
    return np.where(x > 0, g, 0.0)


def rb_ge_zero(g, x):
    return g * (x >= 0)  # a different (equally valid) choice at exactly 0


def sce_logsumexp(logits, labels):
    m = logits.max(axis=-1)
    lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=-1))
    n = logits.shape[0]
    loss = np.mean(lse - logits[np.arange(n), labels])
    one_hot = np.eye(logits.shape[1])[labels]
    return loss, (np.exp(logits - lse[:, None]) - one_hot) / n


def sce_float32(logits, labels):
    z = logits.astype(np.float32)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    g = np.exp(logp)
    g[np.arange(n), labels] -= 1
    return np.float32(-logp[np.arange(n), labels].mean()), g / n


def ng_subtract_and_add(f, param, eps=1e-5):
    grad = np.zeros(param.shape)
    for idx in np.ndindex(param.shape):  # indexes param itself, so slices work too
        param[idx] += eps
        plus = f()
        param[idx] -= 2 * eps
        minus = f()
        param[idx] += eps  # may differ from the original by one rounding step: fine
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def ng_nditer(f, param, eps=1e-5):
    return ref.numerical_gradient(f, param, eps)


class MLPLists:
    """Weights kept in lists, exposed through a params dict of the same arrays."""

    def __init__(self, sizes, seed=0):
        rng = np.random.default_rng(seed)
        self.Ws = [rng.standard_normal((a, b)) * np.sqrt(2 / a) for a, b in zip(sizes[:-1], sizes[1:])]
        self.bs = [np.zeros(b) for b in sizes[1:]]
        self.params = {}
        for i, (W, b) in enumerate(zip(self.Ws, self.bs)):
            self.params[f"W{i}"], self.params[f"b{i}"] = W, b

    def forward(self, x):
        acts = [x]
        for i, (W, b) in enumerate(zip(self.Ws, self.bs)):
            z = acts[-1] @ W + b
            acts.append(z if i == len(self.Ws) - 1 else np.maximum(z, 0))
        self._acts = acts
        return acts[-1]

    def loss_and_grads(self, x, y):
        logits = self.forward(x)
        n = len(y)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(n), y]))
        delta = p
        delta[np.arange(n), y] -= 1
        delta /= n
        grads = {}
        for i in range(len(self.Ws) - 1, -1, -1):
            grads[f"W{i}"] = self._acts[i].T @ delta
            grads[f"b{i}"] = delta.sum(0)
            if i:
                delta = (delta @ self.Ws[i].T) * (self._acts[i] > 0)
        return loss, grads


def mb_shuffle_indices(x, y, batch_size, rng):
    idx = np.arange(len(y))
    rng.shuffle(idx)
    batches = []
    for start in range(0, len(idx), batch_size):
        chosen = idx[start:start + batch_size]
        batches.append((x[chosen], y[chosen]))
    return batches


def mb_array_split(x, y, batch_size, rng):
    order = rng.permutation(len(y))
    n_full = len(y) // batch_size
    chunks = np.split(order[: n_full * batch_size], n_full) if n_full else []
    if len(y) % batch_size:
        chunks.append(order[n_full * batch_size:])
    for chunk in chunks:
        yield x[chunk], y[chunk]


def sgd_by_key(params, grads, lr):
    for key in grads:
        params[key] = params[key] - lr * grads[key]  # rebinding the dict entry is fine too


def sgd_subtract_out(params, grads, lr):
    for k, p in params.items():
        np.subtract(p, lr * grads[k], out=p)


ALTERNATIVES = {
    "linear_forward": [linear_einsum, linear_loops],
    "linear_backward": [lb_einsum, lb_outer_products],
    "relu_forward": [relu_where, relu_clip],
    "relu_backward": [rb_where, rb_ge_zero],
    "softmax_cross_entropy": [sce_logsumexp, sce_float32],
    "mlp_numerical_gradient": [ng_subtract_and_add, ng_nditer],
    "mlp_class": [MLPLists, ref.MLP],
    "iterate_minibatches": [mb_shuffle_indices, mb_array_split],
    "mlp_sgd_step": [sgd_by_key, sgd_subtract_out],
    "mlp_digits_accuracy": [WELL_TRAINED],
    "zero_init_quiz": ["D", " d ", "(d)"],
}


def sce_global_max(logits, labels):
    # shifts by the max of the whole batch: a row far below it underflows, log(0) = -inf
    z = logits - logits.max()
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        p = np.exp(logp)
    n = len(labels)
    grad = p.copy()
    grad[np.arange(n), labels] -= 1
    return float(-logp[np.arange(n), labels].mean()), grad / n


MUTANTS["softmax_cross_entropy"].append(sce_global_max)


def ng_ignores_eps(f, param, eps=1e-5):
    return ref.numerical_gradient(f, param)  # always the default step


class _ReshapeInsteadOfFlatten:
    """Stands in for `param` so ng_flatten_copy's loop nudges param.reshape(-1) instead of param.flatten()."""

    def __init__(self, param):
        self.shape, self._param = param.shape, param

    def flatten(self):
        return self._param.reshape(-1)  # a view for contiguous params, a silent copy for a slice


def ng_flat_view(f, param, eps=1e-5):
    # nudges through param.reshape(-1): right for contiguous params, blind to nudges on a slice
    return ng_flatten_copy(f, _ReshapeInsteadOfFlatten(param), eps)


MUTANTS["mlp_numerical_gradient"] += [ng_ignores_eps, ng_flat_view]


def mb_rotation(x, y, batch_size, rng):
    # "shuffles" by rotating the order: reproducible and different each epoch, but only n orders are possible
    order = np.roll(np.arange(len(y)), int(rng.integers(0, len(y))))
    for s in range(0, len(y), batch_size):
        idx = order[s:s + batch_size]
        yield x[idx], y[idx]


def mb_last_stays(x, y, batch_size, rng):
    # permutes only the first n - 1 examples: the last one always comes last
    order = np.append(rng.permutation(len(y) - 1), len(y) - 1)
    for s in range(0, len(y), batch_size):
        idx = order[s:s + batch_size]
        yield x[idx], y[idx]


MUTANTS["iterate_minibatches"] += [mb_rotation, mb_last_stays]
