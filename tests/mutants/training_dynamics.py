"""Mutants and alternatives for chapter 07_training_dynamics."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from safety_roadmap.reference import training_dynamics as ref

# =========================================================================== optimizers: mutants


def sgd_dampened(p, grad, state, lr, momentum):
    with torch.no_grad():
        v = state.setdefault("v", torch.zeros_like(p))
        v.mul_(momentum).add_((1 - momentum) * grad)   # an EMA of the gradient, not torch's momentum
        p.sub_(lr * v)


def sgd_no_memory(p, grad, state, lr, momentum):
    with torch.no_grad():
        v = momentum * torch.zeros_like(p) + grad       # velocity never kept between calls
        p.sub_(lr * v)


def sgd_aliases_grad(p, grad, state, lr, momentum):
    with torch.no_grad():
        if "v" not in state:
            state["v"] = grad                           # keeps autograd's tensor, then updates it in place
        else:
            state["v"].mul_(momentum).add_(grad)
        p.sub_(lr * state["v"])


def sgd_returns_new(p, grad, state, lr, momentum):
    v = state.get("v", torch.zeros_like(p)) * momentum + grad
    state["v"] = v
    return p - lr * v                                   # never writes into p


def sgd_without_no_grad(p, grad, state, lr, momentum):
    v = state.setdefault("v", torch.zeros_like(p))
    v.mul_(momentum).add_(grad)
    p -= lr * v                                         # in-place op on a leaf that requires grad


def _adam(p, grad, state, lr, betas, eps, correct=True, eps_inside=False, t_offset=0, decay=0.0, mode=None,
          square="square"):
    b1, b2 = betas
    with torch.no_grad():
        if mode == "l2":
            grad = grad + decay * p
        elif mode == "decoupled":
            p.mul_(1 - lr * decay)
        elif mode == "no_lr":
            p.mul_(1 - decay)
        if "t" not in state:
            state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
        state["t"] += 1
        t = state["t"] + t_offset
        state["m"] = b1 * state["m"] + (1 - b1) * grad
        g2 = grad * grad if square == "square" else grad.abs()
        state["v"] = b2 * state["v"] + (1 - b2) * g2
        m_hat = state["m"] / (1 - b1 ** t) if correct else state["m"]
        v_hat = state["v"] / (1 - b2 ** t) if correct else state["v"]
        denom = (v_hat + eps).sqrt() if eps_inside else v_hat.sqrt() + eps
        p.sub_(lr * m_hat / denom)


def adam_no_bias_correction(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    _adam(p, grad, state, lr, betas, eps, correct=False)


def adam_eps_inside_sqrt(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    _adam(p, grad, state, lr, betas, eps, eps_inside=True)


def adam_step_off_by_one(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    _adam(p, grad, state, lr, betas, eps, t_offset=1)


def adam_abs_not_square(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    _adam(p, grad, state, lr, betas, eps, square="abs")


def adamw_decay_in_gradient(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    _adam(p, grad, state, lr, betas, eps, decay=weight_decay, mode="l2")


def adamw_decay_without_lr(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    _adam(p, grad, state, lr, betas, eps, decay=weight_decay, mode="no_lr")


def adamw_forgets_decay(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    _adam(p, grad, state, lr, betas, eps)


def adamw_no_bias_correction(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    _adam(p, grad, state, lr, betas, eps, correct=False, decay=weight_decay, mode="decoupled")


def sgd_velocity_on_cpu(p, grad, state, lr, momentum):
    with torch.no_grad():
        if "velocity" not in state:
            state["velocity"] = torch.zeros(p.shape, dtype=p.dtype)     # right on the CPU, wrong on a GPU
        state["velocity"].mul_(momentum).add_(grad)
        p.sub_(lr * state["velocity"])


def adam_moments_on_cpu(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    b1, b2 = betas
    with torch.no_grad():
        if not state:
            state.update(t=0, m=torch.zeros(p.shape, dtype=p.dtype), v=torch.zeros(p.shape, dtype=p.dtype))
        state["t"] += 1
        state["m"].mul_(b1).add_(grad, alpha=1 - b1)
        state["v"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat, v_hat = state["m"] / (1 - b1 ** state["t"]), state["v"] / (1 - b2 ** state["t"])
        p.sub_(lr * m_hat / (v_hat.sqrt() + eps))


# =========================================================================== optimizers: alternatives


def sgd_torch_style(p, grad, state, lr, momentum):
    with torch.no_grad():
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = grad.detach().clone()   # torch starts the buffer at the gradient
        else:
            buf.mul_(momentum).add_(grad)
        p.add_(buf, alpha=-lr)


def sgd_data_attribute(p, grad, state, lr, momentum):
    v = momentum * state.get("v", 0.0) + grad.detach()
    state["v"] = v
    p.data = p.data - lr * v                           # .data sidesteps autograd; the same object is updated


def adam_paper_form(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    b1, b2 = betas
    with torch.no_grad():
        t = state["t"] = state.get("t", 0) + 1
        m = state["m"] = b1 * state.get("m", torch.zeros_like(p)) + (1 - b1) * grad
        v = state["v"] = b2 * state.get("v", torch.zeros_like(p)) + (1 - b2) * grad ** 2
        step_size = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        p -= step_size * m / (v.sqrt() + eps * math.sqrt(1 - b2 ** t))


def adam_with_lerp(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    b1, b2 = betas
    if not state:
        state.update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
    with torch.no_grad():
        state["step"] += 1
        t = state["step"].item()
        state["exp_avg"].lerp_(grad, 1 - b1)
        state["exp_avg_sq"].mul_(b2).addcmul_(grad, grad.conj(), value=1 - b2)
        denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - b2 ** t)).add_(eps)
        p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1 ** t))


def adamw_reusing_adam(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    with torch.no_grad():
        p.mul_(1 - lr * weight_decay)
    adam_with_lerp(p, grad, state, lr=lr, betas=betas, eps=eps)


def adamw_decay_after_update(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    old = p.detach().clone()
    adam_paper_form(p, grad, state, lr=lr, betas=betas, eps=eps)
    with torch.no_grad():
        p -= lr * weight_decay * old                   # the same decoupled decay, written as a subtraction


# =========================================================================== dropout


def dropout_not_rescaled(x, p, training=True, mask=None):
    if not training:
        return x
    if mask is None:
        mask = torch.rand_like(x) >= p
    return x * mask


def dropout_classic_scaling(x, p, training=True, mask=None):
    if not training:
        return x * (1 - p)                             # "classic" dropout: scale at test time instead
    if mask is None:
        mask = torch.rand_like(x) >= p
    return x * mask


def dropout_keeps_with_prob_p(x, p, training=True, mask=None):
    if not training:
        return x
    if mask is None:
        mask = torch.rand_like(x) < p                  # keeps with probability p
    return x * mask / (1 - p)


def dropout_always(x, p, training=True, mask=None):
    if mask is None:
        mask = torch.rand_like(x) >= p                 # ignores `training`
    return x * mask / (1 - p)


def dropout_fixed_seed(x, p, training=True, mask=None):
    if not training:
        return x
    if mask is None:
        gen = torch.Generator().manual_seed(0)         # the same mask on every call
        mask = torch.rand(x.shape, generator=gen) >= p
    return x * mask / (1 - p)


def dropout_in_place(x, p, training=True, mask=None):
    if not training:
        return x
    if mask is None:
        mask = torch.rand_like(x) >= p
    return x.mul_(mask).div_(1 - p)                    # overwrites the caller's tensor


def dropout_mask_inverted(x, p, training=True, mask=None):
    if not training:
        return x
    drop = torch.rand_like(x) < p if mask is None else mask   # treats the given mask as "drop"
    return x.masked_fill(drop, 0.0) / (1 - p)


def dropout_mask_on_cpu(x, p, training=True, mask=None):
    if not training:
        return x
    if mask is None:
        mask = torch.rand(x.shape) >= p                                 # drawn on the CPU whatever x's device
    return x * mask / (1 - p)


def dropout_bernoulli(x, p, training=True, mask=None):
    if not training or p == 0:
        return x
    if mask is None:
        mask = torch.bernoulli(torch.full_like(x, 1 - p))
    return torch.where(mask.bool(), x / (1 - p), torch.zeros_like(x))


def dropout_functional(x, p, training=True, mask=None):
    if mask is None:
        return F.dropout(x, p, training)               # torch's own draw is just as valid
    return x * mask.to(x.dtype) / (1 - p) if training else x


# =========================================================================== normalisation layers


class _BN(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def stats(self, x):
        return x.mean(0), x.var(0, unbiased=False)

    def update(self, mean, var, n):
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * n / (n - 1))

    def normalise(self, x, mean, var):
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias

    def forward(self, x):
        if self.training:
            mean, var = self.stats(x)
            self.update(mean, var, x.shape[0])
            return self.normalise(x, mean, var)
        return self.normalise(x, self.running_mean, self.running_var)


class BNBatchStatsInEval(_BN):
    def forward(self, x):
        mean, var = self.stats(x)                      # batch statistics in both modes
        if self.training:
            self.update(mean, var, x.shape[0])
        return self.normalise(x, mean, var)


class BNBiasedRunningVar(_BN):
    def update(self, mean, var, n):
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)


class BNUnbiasedNormalisation(_BN):
    def stats(self, x):
        return x.mean(0), x.var(0)                     # torch.var defaults to the unbiased estimate


class BNMomentumReversed(_BN):
    def update(self, mean, var, n):
        with torch.no_grad():
            self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)
            self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var * n / (n - 1))


class BNPlainAttributes(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.running_mean = torch.zeros(num_features)  # not buffers: lost by state_dict() and .to(device)
        self.running_var = torch.ones(num_features)

    def forward(self, x):
        return _BN.forward(self, x)

    stats, update, normalise = _BN.stats, _BN.update, _BN.normalise


class BNNotDetached(_BN):
    def update(self, mean, var, n):
        self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean   # keeps the graph
        self.running_var = (1 - self.momentum) * self.running_var + self.momentum * var * n / (n - 1)


class BNEpsOutside(_BN):
    def normalise(self, x, mean, var):
        return (x - mean) / (var.sqrt() + self.eps) * self.weight + self.bias


class BNFunctional(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.momentum, self.eps)


class BNManualSums(_BN):
    def stats(self, x):
        n = x.shape[0]
        mean = x.sum(0) / n
        return mean, ((x - mean) ** 2).sum(0) / n

    def update(self, mean, var, n):
        m = self.momentum
        self.running_mean.copy_((1 - m) * self.running_mean + m * mean.detach())
        self.running_var.copy_((1 - m) * self.running_var + m * var.detach() * n / (n - 1))


class _LN(nn.Module):
    def __init__(self, normalized_dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(normalized_dim))
        self.bias = nn.Parameter(torch.zeros(normalized_dim))

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LNUnbiased(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(x.var(-1, keepdim=True) + self.eps) * self.weight + self.bias


class LNBatchAxis(_LN):
    def forward(self, x):
        mean = x.mean(0, keepdim=True)
        var = x.var(0, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LNEpsOutside(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        return (x - mean) / (x.var(-1, unbiased=False, keepdim=True).sqrt() + self.eps) * self.weight + self.bias


class LNNoAffine(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + self.eps)


class LNAllButBatch(_LN):
    def forward(self, x):
        dims = tuple(range(1, x.dim()))
        mean = x.mean(dims, keepdim=True)
        var = x.var(dims, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LNOnePassVariance(_LN):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = (x * x).mean(-1, keepdim=True) - mean ** 2  # cancels catastrophically far from zero
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LNFunctional(_LN):
    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class LNRsqrt(_LN):
    def forward(self, x):
        centred = x - x.mean(dim=-1, keepdim=True)
        return centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight + self.bias


# =========================================================================== schedule


def lr_warmup_from_zero(step, total_steps, warmup_steps, max_lr, min_lr=0.0):
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def lr_cosine_over_whole_run(step, total_steps, warmup_steps, max_lr, min_lr=0.0):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(1.0, step / total_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def lr_ignores_min(step, total_steps, warmup_steps, max_lr, min_lr=0.0):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * max_lr * (1 + math.cos(math.pi * progress))


def lr_not_clamped(step, total_steps, warmup_steps, max_lr, min_lr=0.0):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def lr_linear_decay(step, total_steps, warmup_steps, max_lr, min_lr=0.0):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return max_lr + (min_lr - max_lr) * progress


def lr_numpy(step, total_steps, warmup_steps, max_lr, min_lr=0.0):
    import numpy as np
    warm = max_lr * np.minimum(step + 1, max(warmup_steps, 1)) / max(warmup_steps, 1)
    t = np.clip((step - warmup_steps) / max(1, total_steps - warmup_steps), 0.0, 1.0)
    cosine = min_lr + (max_lr - min_lr) * (np.cos(np.pi * t) + 1) / 2
    return float(warm if step < warmup_steps else cosine)


def lr_torch_lambda(step, total_steps, warmup_steps, max_lr, min_lr=0.0):
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps * max_lr
    decay_steps = total_steps - warmup_steps
    done = min(step - warmup_steps, decay_steps)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * done / decay_steps))


# =========================================================================== clipping


def clip_per_tensor(parameters, max_norm):
    params = list(parameters)
    total = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in params if p.grad is not None))
    for p in params:
        if p.grad is not None and float(p.grad.norm()) > max_norm:
            p.grad.mul_(max_norm / float(p.grad.norm()))
    return total


def clip_always(parameters, max_norm):
    params = [p for p in parameters if p.grad is not None]
    total = math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
    for p in params:
        p.grad.mul_(max_norm / total)                   # also scales small gradients *up*
    return total


def clip_returns_after(parameters, max_norm):
    params = [p for p in parameters if p.grad is not None]
    total = math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
    if total > max_norm:
        for p in params:
            p.grad.mul_(max_norm / total)
    return math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))


def clip_generator_twice(parameters, max_norm):
    total = math.sqrt(sum(float((p.grad ** 2).sum()) for p in parameters if p.grad is not None))
    if total > max_norm:
        for p in parameters:                            # a generator is already exhausted here
            if p.grad is not None:
                p.grad.mul_(max_norm / total)
    return total


def clip_sum_of_norms(parameters, max_norm):
    params = [p for p in parameters if p.grad is not None]
    total = sum(float(p.grad.norm()) for p in params)
    if total > max_norm:
        for p in params:
            p.grad.mul_(max_norm / total)
    return total


def clip_not_in_place(parameters, max_norm):
    params = [p for p in parameters if p.grad is not None]
    total = math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
    clipped = [p.grad * min(1.0, max_norm / total) for p in params]   # computed, never written back
    del clipped
    return total


def clip_scales_up(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.stack([g.norm() for g in grads]).norm().item()
    scale = max_norm / (total + 1e-6)
    if scale < 2:                                                      # also "clips" a norm a bit below max_norm
        for g in grads:
            g.mul_(scale)
    return total


def clip_no_epsilon(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.stack([g.norm() for g in grads]).norm().item()
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / total)                                   # no + 1e-6: differs for tiny norms
    return total


def clip_stacked(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double()) for g in grads]))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total


def clip_rebinds_grad(parameters, max_norm):
    params = [p for p in parameters if p.grad is not None]
    total = sum(float(p.grad.pow(2).sum()) for p in params) ** 0.5
    if total > max_norm:
        for p in params:
            p.grad = p.grad * (max_norm / (total + 1e-6))   # a new tensor assigned to .grad works too
    return torch.tensor(total)


# =========================================================================== diagnostics


def norms_of_weights(model):
    return {n: float(p.detach().norm()) for n, p in model.named_parameters() if p.grad is not None}


def norms_squared(model):
    return {n: float((p.grad ** 2).sum()) for n, p in model.named_parameters() if p.grad is not None}


def norms_zero_for_missing(model):
    return {n: (float(p.grad.norm()) if p.grad is not None else 0.0) for n, p in model.named_parameters()}


def norms_by_module(model):
    out = {}
    for n, p in model.named_parameters():
        if p.grad is not None:
            layer = n.rsplit(".", 1)[0]
            out[layer] = math.sqrt(out.get(layer, 0.0) ** 2 + float(p.grad.norm()) ** 2)
    return out


def norms_mean_abs(model):
    return {n: float(p.grad.abs().mean()) for n, p in model.named_parameters() if p.grad is not None}


def norms_linalg(model):
    return {name: torch.linalg.vector_norm(param.grad).item()
            for name, param in model.named_parameters() if param.grad is not None}


def norms_loop(model):
    out = {}
    for name, param in model.named_parameters():
        if param.grad is None:
            continue
        out[name] = math.sqrt(sum(v * v for v in param.grad.double().flatten().tolist()))
    return out


def _collect(model, x, kinds=(nn.ReLU,), remove=True):
    acts, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, kinds):
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: acts.__setitem__(name, o.detach().reshape(-1, o.shape[-1]))))
    with torch.no_grad():
        model(x)
    if remove:
        for h in handles:
            h.remove()
    return acts


def dead_zero_entries(model, x):
    return {n: float((a == 0).float().mean()) for n, a in _collect(model, x).items()}


def dead_for_any_example(model, x):
    return {n: float((a == 0).any(0).float().mean()) for n, a in _collect(model, x).items()}


def dead_hooks_left(model, x):
    return {n: float((a == 0).all(0).float().mean()) for n, a in _collect(model, x, remove=False).items()}


def dead_on_linear_outputs(model, x):
    return {n: float((a <= 0).all(0).float().mean()) for n, a in _collect(model, x, kinds=(nn.Linear,)).items()}


def dead_negative_outputs(model, x):
    return {n: float((a < 0).all(0).float().mean()) for n, a in _collect(model, x).items()}


def dead_sets_eval(model, x):
    model.eval()                                                       # never switched back to train mode
    return ref.dead_relu_fractions(model, x)


def dead_max_over_batch(model, x):
    found = {}

    def hook(module, inputs, output):
        found[names[module]] = output.flatten(0, -2).amax(dim=0)

    names = {m: n for n, m in model.named_modules() if isinstance(m, nn.ReLU)}
    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return {n: (peak <= 0).float().mean().item() for n, peak in found.items()}


def dead_by_walking_modules(model, x):
    results = {}
    handles = []
    for name, module in model.named_modules():
        if type(module) is nn.ReLU:
            def record(mod, inp, out, key=name):
                flat = out.reshape(-1, out.shape[-1])
                results[key] = sum(1 for j in range(flat.shape[1]) if bool((flat[:, j] == 0).all())) / flat.shape[1]
            handles.append(module.register_forward_hook(record))
    model(x)
    for h in handles:
        h.remove()
    return results


MUTANTS = {
    "sgd_momentum_step": [sgd_dampened, sgd_no_memory, sgd_aliases_grad, sgd_returns_new, sgd_without_no_grad,
                          sgd_velocity_on_cpu],
    "adam_step": [adam_no_bias_correction, adam_eps_inside_sqrt, adam_step_off_by_one, adam_abs_not_square,
                  adam_moments_on_cpu],
    "adamw_step": [adamw_decay_in_gradient, adamw_decay_without_lr, adamw_forgets_decay, adamw_no_bias_correction],
    "dropout_forward": [dropout_not_rescaled, dropout_classic_scaling, dropout_keeps_with_prob_p, dropout_always,
                        dropout_fixed_seed, dropout_in_place, dropout_mask_inverted, dropout_mask_on_cpu],
    "batchnorm_module": [BNBatchStatsInEval, BNBiasedRunningVar, BNUnbiasedNormalisation, BNMomentumReversed,
                         BNPlainAttributes, BNNotDetached, BNEpsOutside],
    "layernorm_module": [LNUnbiased, LNBatchAxis, LNEpsOutside, LNNoAffine, LNAllButBatch, LNOnePassVariance],
    "warmup_cosine_lr": [lr_warmup_from_zero, lr_cosine_over_whole_run, lr_ignores_min, lr_not_clamped,
                         lr_linear_decay],
    "clip_grad_norm": [clip_scales_up, clip_no_epsilon, clip_per_tensor, clip_always, clip_returns_after,
                       clip_generator_twice, clip_sum_of_norms,
                       clip_not_in_place],
    "layer_grad_norms": [norms_of_weights, norms_squared, norms_zero_for_missing, norms_by_module, norms_mean_abs],
    "dead_relu_fractions": [dead_zero_entries, dead_for_any_example, dead_hooks_left, dead_on_linear_outputs,
                            dead_negative_outputs, dead_sets_eval],
    "diagnose_runs": [
        {"A": "vanishing", "B": "overfitting", "C": "healthy", "D": "exploding", "E": "dead_relu"},
        {"A": "dead_relu", "B": "healthy", "C": "overfitting", "D": "exploding", "E": "vanishing"},
        {"A": "dead_relu", "B": "overfitting", "C": "healthy", "D": "exploding", "E": "exploding"},
        "dead_relu",
    ],
}

ALTERNATIVES = {
    "sgd_momentum_step": [sgd_torch_style, sgd_data_attribute],
    "adam_step": [adam_paper_form, adam_with_lerp],
    "adamw_step": [adamw_reusing_adam, adamw_decay_after_update],
    "dropout_forward": [dropout_bernoulli, dropout_functional],
    "batchnorm_module": [BNFunctional, BNManualSums],
    "layernorm_module": [LNFunctional, LNRsqrt],
    "warmup_cosine_lr": [lr_numpy, lr_torch_lambda],
    "clip_grad_norm": [clip_stacked, clip_rebinds_grad],
    "layer_grad_norms": [norms_linalg, norms_loop],
    "dead_relu_fractions": [dead_max_over_batch, dead_by_walking_modules],
    "diagnose_runs": [
        {"a": "Dead ReLU", "b": "overfit", "c": "healthy", "d": "exploding gradients", "e": "vanishing"},
        {"A": "dead_relu", "B": "overfitting", "C": "healthy", "D": "exploding", "E": "vanishing"},
    ],
}
