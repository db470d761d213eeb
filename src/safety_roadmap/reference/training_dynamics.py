"""Reference solutions for chapter 07 (training dynamics and debugging).

Optimizer steps that match `torch.optim`, normalisation and dropout layers that
match `torch.nn`, a learning-rate schedule, gradient clipping, and the two
diagnostics (per-layer gradient norms, dead ReLU units). `mystery_runs` trains
the deliberately broken runs the chapter asks learners to diagnose.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- optimizer steps


def sgd_momentum_step(p: torch.Tensor, grad: torch.Tensor, state: dict, lr: float, momentum: float) -> None:
    """One step of SGD with (heavy-ball) momentum, in place, exactly as torch.optim.SGD (dampening 0)."""
    with torch.no_grad():
        if "velocity" not in state:
            state["velocity"] = torch.zeros_like(p)
        v = state["velocity"]
        v.mul_(momentum).add_(grad)          # v <- momentum * v + g
        p.sub_(lr * v)                       # p <- p - lr * v


def adam_step(p: torch.Tensor, grad: torch.Tensor, state: dict, lr: float = 1e-3,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
    """One Adam step in place, as torch.optim.Adam: bias-corrected moments, eps outside the sqrt."""
    beta1, beta2 = betas
    with torch.no_grad():
        if "step" not in state:
            state["step"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
        state["step"] += 1
        t, m, v = state["step"], state["m"], state["v"]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        p.sub_(lr * m_hat / (v_hat.sqrt() + eps))


def adamw_step(p: torch.Tensor, grad: torch.Tensor, state: dict, lr: float = 1e-3,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
    """One AdamW step in place, as torch.optim.AdamW: shrink the weights, then an ordinary Adam step."""
    with torch.no_grad():
        p.mul_(1 - lr * weight_decay)        # decoupled: the decay never enters the moments
    adam_step(p, grad, state, lr=lr, betas=betas, eps=eps)


# --------------------------------------------------------------------------- layers


def dropout(x: torch.Tensor, p: float, training: bool = True, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Inverted dropout: zero each entry with probability p and scale survivors by 1/(1-p); identity in eval.

    `mask` (bool, True = keep), when given, replaces the random draw.
    """
    if not training or p == 0:
        return x
    if mask is None:
        mask = torch.rand_like(x) >= p
    return x * mask / (1 - p)


class BatchNorm1d(nn.Module):
    """Batch normalisation over the batch axis of [N, C] inputs, with running statistics for eval."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = x.mean(0)                                  # [C]
            var = x.var(0, unbiased=False)                    # [C], normalise with the biased variance
            with torch.no_grad():
                n = x.shape[0]
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * n / (n - 1))
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LayerNorm(nn.Module):
    """Layer normalisation over the last axis, with a learned scale and shift per feature."""

    def __init__(self, normalized_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(normalized_dim))
        self.bias = nn.Parameter(torch.zeros(normalized_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


# --------------------------------------------------------------------------- schedules and clipping


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, max_lr: float, min_lr: float = 0.0) -> float:
    """Linear warm-up to max_lr over `warmup_steps` steps, then cosine decay to min_lr at `total_steps`."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm; return the norm before."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for g in grads:
            g.mul_(scale)
    return total


# --------------------------------------------------------------------------- diagnostics


def layer_grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of every parameter's gradient, by parameter name (parameters without a gradient are left out)."""
    return {name: float(p.grad.norm()) for name, p in model.named_parameters() if p.grad is not None}


def dead_relu_fractions(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """For every nn.ReLU module: the fraction of its units that output 0 for every example in `x`."""
    acts: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):
            handles.append(module.register_forward_hook(
                lambda mod, inp, out, name=name: acts.__setitem__(name, out.detach())))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return {name: float((a.reshape(-1, a.shape[-1]) == 0).all(0).float().mean()) for name, a in acts.items()}


# --------------------------------------------------------------------------- the mystery runs

DIAGNOSES = ("healthy", "vanishing", "exploding", "dead_relu", "overfitting")


def deep_mlp(depth: int = 6, width: int = 64, activation: Callable[[], nn.Module] = nn.ReLU,
             init_gain: float | None = 2 ** 0.5, bias: float = 0.0, seed: int = 0) -> nn.Sequential:
    """64 -> width x depth -> 10, weights N(0, init_gain^2 / fan_in) (None: PyTorch's default init)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    dims = [64] + [width] * depth
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        linear = nn.Linear(fan_in, fan_out)
        if init_gain is not None:
            nn.init.normal_(linear.weight, std=init_gain / fan_in ** 0.5)
            nn.init.constant_(linear.bias, bias)
        layers += [linear, activation()]
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


@dataclass
class RunRecord:
    """What a training run leaves behind for diagnosis."""
    name: str
    step_loss: list[float] = field(default_factory=list)                  # per optimizer step
    grad_norms: dict[str, list[float]] = field(default_factory=dict)      # weight name -> per step
    epoch_train_loss: list[float] = field(default_factory=list)           # per epoch, whole training set
    epoch_val_loss: list[float] = field(default_factory=list)             # per epoch
    dead_fraction: dict[str, list[float]] = field(default_factory=dict)   # ReLU name -> per epoch


def train_and_record(name: str, model: nn.Module, optimizer: torch.optim.Optimizer, x_train: torch.Tensor,
                     y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, epochs: int,
                     batch_size: int = 64, seed: int = 0,
                     grad_norm_fn: Callable[[nn.Module], dict[str, float]] = layer_grad_norms,
                     dead_fn: Callable[[nn.Module, torch.Tensor], dict[str, float]] = dead_relu_fractions) -> RunRecord:
    """Minibatch training that records the evidence a diagnosis needs (losses, gradient norms, dead units)."""
    record = RunRecord(name)
    gen = torch.Generator().manual_seed(seed)
    n = len(x_train)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            record.step_loss.append(loss.item())
            for key, value in grad_norm_fn(model).items():
                if key.endswith("weight"):
                    record.grad_norms.setdefault(key, []).append(float(value))
            optimizer.step()
        model.eval()
        with torch.no_grad():
            record.epoch_train_loss.append(float(F.cross_entropy(model(x_train), y_train)))
            record.epoch_val_loss.append(float(F.cross_entropy(model(x_val), y_val)))
        finite = math.isfinite(record.epoch_train_loss[-1])
        for key, value in dead_fn(model, x_train[:256]).items():  # meaningless once the weights are nan
            record.dead_fraction.setdefault(key, []).append(float(value) if finite else float("nan"))
    return record


def mystery_runs(data: Any, epochs: int = 8) -> dict[str, RunRecord]:
    """Five runs of a 6-hidden-layer MLP on the digits, each with different settings you cannot see
    (activation, initialisation, learning rate, optimizer, amount of data).

    `data` is `safety_roadmap.data.load_digits()`. One run is healthy; each other one has exactly one of
    the problems the chapter teaches. Diagnose them from the records before reading this function.
    """
    x_tr, y_tr = torch.tensor(data.x_train), torch.tensor(data.y_train)
    x_va, y_va = torch.tensor(data.x_test), torch.tensor(data.y_test)
    sgd = lambda lr: (lambda params: torch.optim.SGD(params, lr=lr, momentum=0.9))  # noqa: E731
    adam = lambda lr: (lambda params: torch.optim.Adam(params, lr=lr))  # noqa: E731
    settings = {  # letter: (model settings, optimizer, training examples, epochs)
        "A": (dict(bias=-0.8, seed=3), sgd(0.02), None, epochs),
        "B": (dict(seed=4), adam(3e-3), 60, 5 * epochs),
        "C": (dict(seed=5), sgd(0.02), None, epochs),
        "D": (dict(seed=6), sgd(0.45), None, epochs),
        "E": (dict(activation=nn.Sigmoid, init_gain=None, seed=7), sgd(0.05), None, epochs),
    }
    runs = {}
    for letter, (model_kw, make_opt, n_train, n_epochs) in settings.items():
        model = deep_mlp(**model_kw)
        n = n_train or len(x_tr)
        with torch.random.fork_rng():
            runs[letter] = train_and_record(f"run {letter}", model, make_opt(model.parameters()), x_tr[:n],
                                            y_tr[:n], x_va, y_va, n_epochs, seed=ord(letter))
    return runs
