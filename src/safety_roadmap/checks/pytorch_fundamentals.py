"""Checks for chapter 06_pytorch_fundamentals. Each `check_<exercise>(obj, thorough=False)`.

Modules are checked by loading fixed weights into the learner's own layers and comparing
outputs with a computation written out here; the MLP's gradients are compared with the
chapter 04 NumPy MLP. Training loops run next to the reference loop on identical copies
of a model that records the mode (train/eval, grad on/off) of every forward pass.

The checks never build a torch.optim optimizer: the first one imports torch._dynamo, which
takes seconds. `_CheckSGD` does the same maths (SGD with momentum) and records how it is used.
"""
from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..reference import mlp_from_scratch as numpy_mlp
from ..reference import pytorch_fundamentals as ref
from ._core import CheckFailure, call, compare, describe, guard, rng_for, trust
from ._torch import torch_check as _one_thread

__all__ = ["check_input_gradient", "check_torch_mlp", "check_load_numpy_params", "check_torch_grads_as_numpy",
           "check_digits_dataset", "check_torch_train_epoch", "check_torch_evaluate", "check_save_checkpoint",
           "check_load_checkpoint", "check_digits_cnn", "check_digits_rnn"]

trust(torch)
trust(F)
trust(nn)

_tensor = torch.tensor
_no_grad = torch.no_grad
_fork_rng = torch.random.fork_rng
_manual_seed = torch.manual_seed
_torch_save = torch.save
_torch_load = torch.load
_grad = torch.autograd.grad


def _passed(name: str, n: int, thorough: bool) -> None:
    kind = "thorough" if thorough else "quick"
    print(f"✓ {name}: the {kind} check passed" if n == 1 else f"✓ {name}: all {n} {kind} checks passed")


def _t(a: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return _tensor(np.asarray(a), dtype=dtype)


def _np(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def _cause(exc: BaseException) -> str:
    return str(exc.__cause__ or "")


def _seeded(build: Callable[[], Any], seed: int = 0) -> Any:
    """Build something that draws from torch's global RNG, reproducibly and without disturbing it."""
    with _fork_rng(devices=[]):
        _manual_seed(seed)
        return build()


def _fill(module: nn.Module, rng: np.random.Generator, scale: float = 1.0) -> None:
    """Overwrite every parameter with fixed random values (scaled by 1/sqrt(fan-in))."""
    with _no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else p.numel()
            p.copy_(_t(rng.normal(size=tuple(p.shape)) * scale / math.sqrt(max(fan_in, 1)), p.dtype))


def _construct(cls: Any, name: str, args: tuple = (), kwargs: dict | None = None) -> nn.Module:
    __tracebackhide__ = True
    if not callable(cls):
        raise CheckFailure(f"`{name}` should be a class (an nn.Module subclass); got {describe(cls)}")
    shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in (kwargs or {}).items()])
    module = call(cls, name, args, kwargs or {}, f"constructing {name}({shown})")
    if not isinstance(module, nn.Module):
        raise CheckFailure(f"`{name}({shown})` should be an nn.Module (subclass nn.Module and call "
                           f"super().__init__()); got {describe(module)}")
    return module


# =========================================================================== a recording optimizer and model


class _CheckSGD:
    """SGD with momentum, as torch.optim.SGD computes it, with state_dict()/load_state_dict() in torch's
    format; it also counts how often zero_grad() and step() are called."""

    def __init__(self, params: Any, lr: float = 0.1, momentum: float = 0.9) -> None:
        self.params = list(params)
        self.lr, self.momentum = lr, momentum
        self.state: dict[int, dict[str, torch.Tensor]] = {}
        self.param_groups = [{"params": self.params, "lr": lr, "momentum": momentum}]
        self.steps = 0
        self.zero_grads = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.zero_grads += 1
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self, closure: Any = None) -> None:
        self.steps += 1
        with _no_grad():
            for i, p in enumerate(self.params):
                if p.grad is None:
                    continue
                if i not in self.state:
                    self.state[i] = {"momentum_buffer": p.grad.detach().clone()}
                else:
                    self.state[i]["momentum_buffer"].mul_(self.momentum).add_(p.grad)
                p.add_(self.state[i]["momentum_buffer"], alpha=-self.lr)

    def state_dict(self) -> dict:
        return {"state": {i: {"momentum_buffer": s["momentum_buffer"].clone()} for i, s in self.state.items()},
                "param_groups": [{"lr": self.lr, "momentum": self.momentum,
                                  "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict) -> None:
        group = state_dict["param_groups"][0]
        if len(group["params"]) != len(self.params):
            raise ValueError("loaded state dict has a different number of parameters than the optimizer")
        self.lr, self.momentum = group["lr"], group["momentum"]
        self.state = {int(i): {"momentum_buffer": s["momentum_buffer"].clone().to(self.params[int(i)].dtype)}
                      for i, s in state_dict["state"].items()}


class _Probe(nn.Module):
    """Wraps a network and records (training mode?, grad enabled?) at every forward pass."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.seen: list[tuple[bool, bool]] = []
        self.devices: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, torch.is_grad_enabled()))
        self.devices.append(x.device.type)
        return self.net(x)


def _small_net(seed: int, dims: list[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers = layers[:-1]
    if dropout:
        layers.insert(2, nn.Dropout(dropout))
    net = nn.Sequential(*layers)
    _fill(net, np.random.default_rng(seed))
    return net


# =========================================================================== autograd: input gradients


def _mlp_model(seed: int, dims: list[int], act: Callable[[], nn.Module] = nn.ReLU,
               dtype: torch.dtype = torch.float32) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), act()]
    model = nn.Sequential(*layers[:-1]).to(dtype)
    _fill(model, np.random.default_rng(seed))
    return model


def _cnn_model(seed: int) -> nn.Module:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    _fill(model, np.random.default_rng(seed))
    return model


_GradCase = tuple[str, Callable[[], nn.Module], np.ndarray, np.ndarray, torch.dtype, bool]

# labels of the input_gradient cases that need more than a model and an input
_MID_TRAINING = "in the middle of training: the model is in train mode and its parameters already hold gradients"


def _input_gradient_cases(thorough: bool) -> list[_GradCase]:
    rng = rng_for(thorough, 1)
    cases = [("an MLP, batch of 5", lambda: _mlp_model(1, [6, 8, 4]), rng.normal(size=(5, 6)),
              rng.integers(0, 4, size=5), torch.float32, False),
             ("a batch of 1", lambda: _mlp_model(2, [3, 5, 3]), rng.normal(size=(1, 3)), np.array([2]),
              torch.float32, False),
             ("a small CNN on [batch, 1, 8, 8] images", lambda: _cnn_model(11), rng.uniform(size=(2, 1, 8, 8)),
              np.array([3, 1]), torch.float32, False),
             (_MID_TRAINING, lambda: _mlp_model(12, [4, 6, 3]), rng.normal(size=(3, 4)), np.array([0, 2, 1]),
              torch.float32, False)]
    if thorough:
        cases += [("a deep tanh network", lambda: _mlp_model(3, [4, 6, 6, 6, 3], nn.Tanh), rng.normal(size=(7, 4)),
                   rng.integers(0, 3, size=7), torch.float32, False),
                  ("a float64 model and input", lambda: _mlp_model(4, [5, 7, 3], dtype=torch.float64),
                   rng.normal(size=(4, 5)), rng.integers(0, 3, size=4), torch.float64, False),
                  ("a small CNN on [batch, 1, 8, 8] images", lambda: _cnn_model(5), rng.uniform(size=(3, 1, 8, 8)),
                   np.array([0, 4, 2]), torch.float32, False),
                  ("every example with the same target", lambda: _mlp_model(6, [6, 8, 4]), rng.normal(size=(6, 6)),
                   np.full(6, 3), torch.float32, False),
                  ("a strided (non-contiguous) input", lambda: _mlp_model(7, [5, 6, 3]), rng.normal(size=(4, 5)),
                   rng.integers(0, 3, size=4), torch.float32, True),
                  ("large inputs", lambda: _mlp_model(8, [6, 8, 4]), 50 * rng.normal(size=(5, 6)),
                   rng.integers(0, 4, size=5), torch.float32, False),
                  (_MID_TRAINING, lambda: _mlp_model(9, [5, 7, 3]), rng.normal(size=(4, 5)),
                   rng.integers(0, 3, size=4), torch.float32, False)]
    return cases


@_one_thread
def check_input_gradient(fn: Callable[..., Any], thorough: bool = False) -> None:
    """input_gradient(model, x, target) -> d(sum_i logits[i, target[i]]) / dx, shaped like x."""
    __tracebackhide__ = True
    name = "input_gradient"
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = _input_gradient_cases(thorough)
    for i, (label, build, x_np, t_np, dtype, strided) in enumerate(cases, 1):
        model = build()
        model.eval()
        held: dict[str, torch.Tensor] = {}
        if label == _MID_TRAINING:
            model.train()
            grad_rng = np.random.default_rng(i)
            for pn, p in model.named_parameters():
                p.grad = _t(grad_rng.normal(size=tuple(p.shape)), p.dtype)
                held[pn] = p.grad.clone()
        if strided:
            x = _t(x_np.T.copy(), dtype).T          # the same values, transposed storage
        else:
            x = _t(x_np, dtype)
        target = _t(t_np, torch.int64)
        x_copy = x.clone()
        where = f"case {i} of {len(cases)} ({label}; x of shape {tuple(x.shape)}, target {t_np.tolist()})"
        probe = x.detach().clone().requires_grad_(True)
        logits = model(probe)
        (expected,) = _grad(logits.gather(1, target.view(-1, 1)).sum(), probe)
        got = call(fn, name, (model, x, target), {}, where)
        if x.requires_grad:
            raise CheckFailure(f"`{name}` switched on requires_grad for the caller's `x` on {where}. Work on a copy: "
                               "x = x.detach().clone().requires_grad_(True).")
        if not torch.equal(x, x_copy):
            raise CheckFailure(f"`{name}` changed the values of `x` on {where}")
        if held:
            if not model.training or not all(m.training for m in model.modules()):
                raise CheckFailure(f"`{name}` left the model in eval mode on {where}. Leave the model as you found "
                                   "it: if you switch modes, switch back (remember `was = model.training` and call "
                                   "model.train(was) at the end).")
            changed = [pn for pn, p in model.named_parameters()
                       if p.grad is None or not torch.equal(p.grad, held[pn])]
            if changed:
                raise CheckFailure(f"`{name}` changed the gradients the model already held ({', '.join(changed[:3])}"
                                   f", ...) on {where}. They belong to the training step in progress: adding to "
                                   "them (backward) or clearing them (zero_grad) both break it. torch.autograd.grad"
                                   "(score, x) computes the input gradient without touching any .grad.")
        touched = [n for n, p in model.named_parameters() if p.grad is not None and n not in held]
        if touched:
            raise CheckFailure(f"`{name}` left gradients in the model's parameters ({', '.join(touched[:3])}, ...) on "
                               f"{where}. An attribution should not disturb training: use "
                               "torch.autograd.grad(score, x), which returns only the gradient you ask for, or "
                               "reset the parameter gradients afterwards (model.zero_grad(set_to_none=True)).")
        if not isinstance(got, torch.Tensor):
            raise CheckFailure(f"`{name}` should return a tensor shaped like x; got {describe(got)} on {where}")
        tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)
        problem = compare(_np(got), expected.numpy(), **tol)
        if problem:
            msg = f"`{name}` is wrong on {where}:\n  {problem}"
            n = x.shape[0]
            candidates = [
                ("that is the gradient of the cross-entropy loss. The attribution is the gradient of the *target "
                 "logit* itself: logits[i, target[i]], summed over the batch.",
                 lambda lg: F.cross_entropy(lg, target)),
                ("that is the gradient of the loss summed over the batch; use the target logit, not the loss.",
                 lambda lg: F.cross_entropy(lg, target, reduction="sum")),
                ("you took the gradient of the sum of *all* logits; pick each example's target logit.",
                 lambda lg: lg.sum()),
                ("you differentiated the softmax probability; the exercise asks for the raw logit.",
                 lambda lg: F.softmax(lg, dim=1).gather(1, target.view(-1, 1)).sum()),
                (f"you averaged over the batch (divided by {n}); sum instead, so each example gets its own full "
                 "gradient.", lambda lg: lg.gather(1, target.view(-1, 1)).mean()),
            ]
            for hint, score in candidates:
                xx = x.detach().clone().requires_grad_(True)
                (wrong,) = _grad(score(model(xx)), xx)
                if compare(_np(got), wrong.numpy(), **tol) is None:
                    msg += f"\n  Likely cause: {hint}"
                    break
            raise CheckFailure(msg)
    _passed(name, len(cases), thorough)


# =========================================================================== TorchMLP


def _linear_layers(model: nn.Module, name: str, sizes: list[int]) -> list[nn.Linear]:
    __tracebackhide__ = True
    layers = getattr(model, "layers", None)
    if layers is None:
        raise CheckFailure(f"`{name}` should keep its layers in `self.layers` (an nn.ModuleList of nn.Linear); "
                           "there is no `layers` attribute.")
    if isinstance(layers, (list, tuple)):
        raise CheckFailure(f"`{name}.layers` is a plain Python {type(layers).__name__}: PyTorch cannot see the layers "
                           "inside it, so model.parameters() misses them (an optimizer would train nothing) and "
                           ".to(device) would not move them. Wrap them: self.layers = nn.ModuleList([...]).")
    items = list(layers)
    expected = [(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    shapes = [(m.in_features, m.out_features) if isinstance(m, nn.Linear) else type(m).__name__ for m in items]
    if len(items) != len(expected) or not all(isinstance(m, nn.Linear) for m in items):
        raise CheckFailure(f"`{name}({sizes})`.layers should hold exactly {len(expected)} nn.Linear layers with "
                           f"(in, out) = {expected}; found {shapes}. Keep the ReLUs out of `layers` "
                           "(apply torch.relu in forward).")
    if shapes != expected:
        hint = (" Each nn.Linear(in_features, out_features) goes from sizes[i] to sizes[i + 1]."
                if shapes == [(b, a) for a, b in expected] else "")
        raise CheckFailure(f"`{name}({sizes})` has layers with (in, out) = {shapes}; expected {expected}.{hint}")
    n_params = len(list(model.parameters()))
    if n_params != 2 * len(expected):
        raise CheckFailure(f"`{name}({sizes})` registers {n_params} parameter tensors; expected {2 * len(expected)} "
                           "(a weight and a bias per layer).")
    return items


def _mlp_forward_np(layers: list[nn.Linear], x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float64)
    for i, layer in enumerate(layers):
        h = h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


@_one_thread
def check_torch_mlp(cls: Any, thorough: bool = False) -> None:
    """TorchMLP(sizes): nn.Linear layers in self.layers, ReLU between them, none after the last."""
    __tracebackhide__ = True
    name = "TorchMLP"
    guard()
    rng = rng_for(thorough, 2)
    cases = [([64, 32, 10], 4, 1.0), ([5, 3], 3, 1.0)]
    if thorough:
        cases += [([4, 8, 8, 8, 2], 6, 1.0), ([3, 7, 5, 2], 1, 1.0), ([6, 16, 2], 5, 30.0), ([10, 1], 2, 1.0)]
    for i, (sizes, batch, scale) in enumerate(cases, 1):
        model = _construct(cls, name, (list(sizes),))
        layers = _linear_layers(model, name, sizes)
        _fill(model, rng, scale=2.0)
        x = _t(rng.normal(size=(batch, sizes[0])) * scale)
        where = f"case {i} of {len(cases)} (sizes {sizes}, x of shape {tuple(x.shape)})"
        out = call(model, name, (x,), {}, where)
        expected = _mlp_forward_np(layers, x.numpy())
        problem = compare(_np(out), expected, rtol=1e-4, atol=1e-4 * scale)
        if problem:
            msg = f"`{name}` is wrong on {where}:\n  {problem}"
            wrong = {"you applied ReLU after the last layer too; the logits must be able to be negative.":
                         np.maximum(expected, 0.0)}
            h = x.numpy().astype(np.float64)
            for layer in layers:
                h = h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
            wrong["there is no ReLU between the layers, so the whole network is one linear map."] = h
            for hint, value in wrong.items():
                if len(layers) > 1 and compare(_np(out), value, rtol=1e-4, atol=1e-4 * scale) is None:
                    msg += f"\n  Likely cause: {hint}"
                    break
            raise CheckFailure(msg)
    _passed(name, len(cases), thorough)


# =========================================================================== NumPy params into the module


def _numpy_params(sizes: list[int], seed: int, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    params = numpy_mlp.MLP(sizes, seed=seed).params
    rng = np.random.default_rng(seed + 100)
    for key in params:
        if key.startswith("b"):
            params[key] = rng.normal(size=params[key].shape)   # non-zero biases, so forgetting them shows
    return {k: v.astype(dtype) for k, v in params.items()}


@_one_thread
def check_load_numpy_params(fn: Callable[..., Any], thorough: bool = False) -> None:
    """load_numpy_params(model, params): copy "W{i}" [in, out] and "b{i}" into model.layers[i], in place."""
    __tracebackhide__ = True
    name = "load_numpy_params"
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = [([6, 5, 3], np.float64), ([64, 16, 10], np.float64)]
    if thorough:
        cases += [([4, 4, 4], np.float64), ([5, 8, 8, 8, 2], np.float64), ([3, 6, 2], np.float32), ([7, 1], np.float64)]
    for i, (sizes, dtype) in enumerate(cases, 1):
        model = _seeded(lambda: ref.TorchMLP(sizes), seed=i)
        originals = list(model.parameters())
        params = _numpy_params(sizes, seed=i, dtype=dtype)
        pristine = {k: v.copy() for k, v in params.items()}
        where = f"case {i} of {len(cases)} (sizes {sizes}, NumPy params of dtype {np.dtype(dtype).name})"
        try:
            call(fn, name, (model, params), {}, where)
        except CheckFailure as exc:
            if "size of tensor" in _cause(exc) or "must match" in _cause(exc) or "shape" in _cause(exc):
                raise CheckFailure(f"{exc}\n  Likely cause: nn.Linear stores its weight as [out, in], the NumPy "
                                   "MLP's W as [in, out]: copy W.T.") from None
            raise
        for key, value in params.items():
            if not np.array_equal(value, pristine[key]):
                raise CheckFailure(f"`{name}` changed the NumPy array params[{key!r}] on {where}")
        now = list(model.parameters())
        if len(now) != len(originals) or any(a is not b for a, b in zip(now, originals)):
            raise CheckFailure(f"`{name}` replaced the model's parameters with new objects on {where}. Copy the values "
                               "into the existing ones (inside torch.no_grad(): layer.weight.copy_(...)), so an "
                               "optimizer created earlier still updates the model.")
        for j, layer in enumerate(model.layers):
            for attr in ("weight", "bias"):
                p = getattr(layer, attr)
                if p.dtype != torch.float32:
                    raise CheckFailure(f"`{name}` left layers[{j}].{attr} with dtype {p.dtype} on {where}. The model "
                                       "must stay float32 (the NumPy arrays are float64): copy_ converts for you, "
                                       "assigning .data does not.")
            W, b = pristine[f"W{j}"], pristine[f"b{j}"]
            problem = compare(layer.weight.detach().numpy(), W.T, rtol=1e-6, atol=1e-7, what=f"layers[{j}].weight")
            if problem:
                hint = ""
                if W.shape[0] == W.shape[1] and compare(layer.weight.detach().numpy(), W, rtol=1e-6, atol=1e-7) is None:
                    hint = ("\n  Likely cause: nn.Linear stores its weight as [out, in], the NumPy MLP's W as "
                            "[in, out]: "
                            "copy W.T (a square layer hides the mistake from the shapes).")
                raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}{hint}")
            problem = compare(layer.bias.detach().numpy(), b, rtol=1e-6, atol=1e-7, what=f"layers[{j}].bias")
            if problem:
                raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}"
                                   "\n  Likely cause: copy the biases b{i} as well as the weights.")
        with _no_grad():
            for p in model.parameters():
                p.add_(1.0)
        for key, value in params.items():
            if not np.array_equal(value, pristine[key]):
                raise CheckFailure(f"on {where}, training the model after `{name}` changed the NumPy array "
                                   f"params[{key!r}]: the two share memory (torch.from_numpy does that). Copy the "
                                   "values instead, e.g. layer.weight.copy_(torch.as_tensor(W).T).")
    _passed(name, len(cases), thorough)


# =========================================================================== gradients in NumPy's layout


def _grads_cases(thorough: bool) -> list[tuple[str, list[int], int, float, bool]]:
    """(label, sizes, batch, input scale, stale gradients already in the model)."""
    cases = [("a small MLP", [6, 5, 3], 4, 1.0, False), ("digits-sized", [64, 16, 10], 8, 1.0, False)]
    if thorough:
        cases += [("the model already holds gradients from an earlier backward", [5, 8, 4], 6, 1.0, True),
                  ("a deeper MLP", [5, 8, 8, 4], 5, 1.0, False), ("a batch of 1", [4, 6, 3], 1, 1.0, False),
                  ("confident logits (large inputs)", [6, 10, 5], 7, 8.0, False),
                  ("a larger batch", [8, 12, 6], 32, 1.0, True)]
    return cases


@_one_thread
def check_torch_grads_as_numpy(fn: Callable[..., Any], thorough: bool = False) -> None:
    """torch_grads_as_numpy(model, x, y) -> (mean cross-entropy, {"W0": [in, out], "b0": [out], ...}),
    compared with chapter 04's NumPy MLP on the same weights."""
    __tracebackhide__ = True
    name = "torch_grads_as_numpy"
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    rng = rng_for(thorough, 3)
    cases = _grads_cases(thorough)
    for i, (label, sizes, batch, scale, stale) in enumerate(cases, 1):
        params = _numpy_params(sizes, seed=10 + i)
        reference_mlp = numpy_mlp.MLP(sizes, seed=10 + i)
        model = _seeded(lambda: ref.TorchMLP(sizes), seed=i)
        ref.load_numpy_params(model, params)
        reference_mlp.params = {k: model.layers[int(k[1:])].weight.detach().double().numpy().T.copy()
                                if k[0] == "W" else model.layers[int(k[1:])].bias.detach().double().numpy().copy()
                                for k in params}   # exactly the float32 weights the model holds
        x = _t(rng.uniform(0, 1, size=(batch, sizes[0])) * scale)
        y = _t(rng.integers(0, sizes[-1], size=batch), torch.int64)
        exp_loss, exp_grads = reference_mlp.loss_and_grads(x.numpy().astype(np.float64), y.numpy())
        if stale:
            for p in model.parameters():
                p.grad = _t(rng.normal(size=tuple(p.shape)))
        where = f"case {i} of {len(cases)} ({label}; sizes {sizes}, x of shape {tuple(x.shape)})"
        got = call(fn, name, (model, x, y), {}, where)
        if not isinstance(got, (tuple, list)) or len(got) != 2 or not isinstance(got[1], dict):
            raise CheckFailure(f"`{name}` should return a tuple (loss, grads dict); got {describe(got)} on {where}")
        loss, grads = got
        try:
            loss_value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        except (TypeError, ValueError):
            raise CheckFailure(f"`{name}`'s loss should be a number, got {describe(loss)} on {where}") from None
        problem = compare(loss_value, exp_loss, rtol=1e-4, atol=1e-6, what="loss")
        hint = ""
        if problem and abs(loss_value - exp_loss * batch) <= 1e-3 * abs(exp_loss * batch):
            hint = ("\n  Likely cause: you summed the loss over the batch; the NumPy MLP (and F.cross_entropy) "
                    "take the mean.")
        elif problem:
            with _no_grad():
                double = F.cross_entropy(F.softmax(model(x), dim=1), y).item()
            if abs(loss_value - double) <= 1e-4 * abs(double):
                hint = ("\n  Likely cause: F.cross_entropy applies log-softmax itself; pass it the raw logits, not "
                        "softmax probabilities.")
        if problem:
            raise CheckFailure(f"`{name}` is wrong on {where} (the reference is chapter 04's NumPy MLP on the same "
                               f"weights):\n  {problem}{hint}")
        missing = sorted(set(exp_grads) - set(grads))
        extra = sorted(set(grads) - set(exp_grads))
        if missing or extra:
            raise CheckFailure(f"`{name}`'s grads should have exactly the keys {sorted(exp_grads)} (the NumPy MLP's); "
                               f"missing {missing}, unexpected {extra}, on {where}")
        for key in params:
            problem = compare(_np(grads[key]), exp_grads[key], rtol=2e-3, atol=1e-5, what=f"grads[{key!r}]")
            if problem:
                g = np.asarray(_np(grads[key]), dtype=float)
                e = exp_grads[key]
                if g.shape == e.shape and np.allclose(g, batch * e, rtol=2e-3, atol=1e-5) and batch > 1:
                    problem += (f"\n  Likely cause: the gradients are {batch}x too large: use the mean loss, not "
                                f"the sum.")
                elif stale and g.shape == e.shape and not np.allclose(g, e, rtol=2e-3, atol=1e-5):
                    problem += ("\n  Likely cause: the model already had gradients and backward() *adds* to .grad. "
                                "Clear them first: model.zero_grad().")
                raise CheckFailure(f"`{name}` is wrong on {where} (the reference is chapter 04's NumPy MLP on the "
                                   f"same weights):\n  {problem}")
        with _no_grad():   # training goes on: optimizers and zero_grad(set_to_none=False) reuse .grad in place
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.fill_(7.0)
        for key in params:
            if compare(_np(grads[key]), exp_grads[key], rtol=2e-3, atol=1e-5) is not None:
                raise CheckFailure(f"`{name}`'s grads[{key!r}] changed when the model's .grad was later overwritten in "
                                   f"place, on {where}: the array shares memory with the gradient tensor "
                                   "(.numpy() does not copy). Return independent arrays: .numpy().copy().")
        if thorough:
            again = call(fn, name, (model, x, y), {}, where + ", called a second time")
            if isinstance(again, (tuple, list)) and len(again) == 2 and isinstance(again[1], dict) and "W0" in again[1]:
                problem = compare(_np(again[1]["W0"]), exp_grads["W0"], rtol=2e-3, atol=1e-5, what="grads['W0']")
                if problem:
                    raise CheckFailure(f"`{name}` gives different gradients when called twice on {where}:\n  {problem}"
                                       "\n  Likely cause: backward() adds to .grad; clear old gradients first "
                                       "(model.zero_grad()).")
    _passed(name, len(cases), thorough)


# =========================================================================== Dataset


@_one_thread
def check_digits_dataset(cls: Any, thorough: bool = False) -> None:
    """DigitsDataset(x, y, as_image=False): len, and ds[i] -> (float32 image [64] or [1, 8, 8], int64 label)."""
    __tracebackhide__ = True
    name = "DigitsDataset"
    guard()
    rng = rng_for(thorough, 4)
    cases = [("float32 pixels", 10, np.float32, np.int64, False), ("as_image=True", 7, np.float32, np.int64, True),
             ("float64 pixels and int32 labels", 9, np.float64, np.int32, False)]
    if thorough:
        cases += [("a single example, as an image", 1, np.float64, np.int64, True),
                  ("a larger set, as images", 50, np.float32, np.int64, True)]
    for i, (label, n, xdt, ydt, as_image) in enumerate(cases, 1):
        x = rng.uniform(0, 1, size=(n, 64)).astype(xdt)
        y = rng.integers(0, 10, size=n).astype(ydt)
        x_copy, y_copy = x.copy(), y.copy()
        kwargs = {"as_image": True} if as_image else {}
        where = f"case {i} of {len(cases)} ({label}; x {x.shape} {x.dtype}, y {y.shape} {y.dtype})"
        ds = call(cls, name, (x, y), kwargs, where)
        if not np.array_equal(x, x_copy) or not np.array_equal(y, y_copy):
            raise CheckFailure(f"`{name}` changed the arrays it was given on {where}; leave the caller's data alone "
                               "(convert or rescale a copy).")
        length = call(len, f"len({name})", (ds,), {}, where)
        if length != n:
            raise CheckFailure(f"`{name}`: len(dataset) should be the number of examples, {n}; got {length} on {where}")
        shape = (1, 8, 8) if as_image else (64,)
        for j in sorted({0, n - 1, int(rng.integers(0, n))}):
            item = call(lambda k: ds[k], f"{name}[{j}]", (j,), {}, where)
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise CheckFailure(f"`{name}`: dataset[{j}] should be a pair (image, label); got "
                                   f"{describe(item)} on {where}")
            image, target = item
            if not isinstance(image, torch.Tensor):
                raise CheckFailure(f"`{name}`: dataset[{j}]'s image should be a torch tensor; got "
                                   f"{describe(image)} on {where}")
            if image.dtype != torch.float32:
                raise CheckFailure(f"`{name}`: dataset[{j}]'s image has dtype {image.dtype}; models expect float32 "
                                   f"(the arrays were {x.dtype}: convert with dtype=torch.float32) on {where}")
            if tuple(image.shape) != shape:
                hint = " (add the channel axis: reshape(1, 8, 8))" if tuple(image.shape) == (8, 8) else ""
                raise CheckFailure(f"`{name}`: dataset[{j}]'s image should have shape {list(shape)}; got "
                                   f"{list(image.shape)}{hint} on {where}")
            problem = compare(image.numpy(), x_copy[j].reshape(shape).astype(np.float32), rtol=1e-6, atol=1e-7,
                              what=f"dataset[{j}] image")
            if problem:
                hint = ""
                if as_image and np.allclose(image.numpy()[0], x_copy[j].reshape(8, 8).T):
                    hint = ("\n  Likely cause: the image is transposed. The 64 pixels are stored row by row, so "
                            "reshape(1, 8, 8) in the default (C) order.")
                raise CheckFailure(f"`{name}` returned a wrong image on {where}:\n  {problem}{hint}")
            if isinstance(target, torch.Tensor):
                if target.dtype != torch.int64 or target.dim() != 0:
                    raise CheckFailure(f"`{name}`: dataset[{j}]'s label should be an int64 scalar tensor (or a "
                                       f"Python int); "
                                       f"got {target.dtype} of shape {list(target.shape)} on {where}. "
                                       "F.cross_entropy needs int64 class indices.")
                target = int(target)
            elif not isinstance(target, (int, np.integer)) or isinstance(target, bool):
                raise CheckFailure(f"`{name}`: dataset[{j}]'s label should be an int64 scalar tensor (or a "
                                   f"Python int); got "
                                   f"{describe(target)} on {where}")
            if int(target) != int(y_copy[j]):
                raise CheckFailure(f"`{name}`: dataset[{j}]'s label should be {int(y_copy[j])}, got "
                                   f"{int(target)} on {where}")
        batch = next(iter(DataLoader(ds, batch_size=4)))
        xb, yb = batch
        if tuple(xb.shape) != (min(4, n),) + shape or yb.dtype != torch.int64:
            raise CheckFailure(f"`{name}`: a DataLoader over the dataset gave batches of {tuple(xb.shape)} and "
                               f"labels of dtype "
                               f"{yb.dtype}; expected {(min(4, n),) + shape} and torch.int64, on {where}")
        if not np.array_equal(x, x_copy) or not np.array_equal(y, y_copy):
            raise CheckFailure(f"`{name}` changed the arrays it was given on {where}; leave the caller's data alone.")
    _passed(name, len(cases), thorough)


# =========================================================================== training and evaluation loops


def _loop_cases(thorough: bool) -> list[tuple[str, int, int, Any]]:
    """(label, examples, batch size, device argument)."""
    cases = [("40 examples in batches of 16 (the last batch has 8)", 40, 16, torch.device("cpu"))]
    if thorough:
        cases += [("batches that divide evenly", 32, 8, torch.device("cpu")),
                  ("a single batch", 12, 64, "cpu"),
                  ("batches of 1", 5, 1, torch.device("cpu")),
                  ("uneven batches, device given as a string", 50, 15, "cpu")]
    return cases


def _loader(rng: np.random.Generator, n: int, batch_size: int) -> DataLoader:
    x = _t(rng.normal(size=(n, 6)))
    y = _t(rng.integers(0, 3, size=n), torch.int64)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def _reference_epoch(model: nn.Module, loader: DataLoader,
                     optimizer: _CheckSGD) -> tuple[float, list[tuple[float, int]]]:
    """The reference loop, also returning each batch's (mean loss, size)."""
    model.train()
    batches = []
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        batches.append((loss.item(), len(y)))
    return sum(l * k for l, k in batches) / sum(k for _, k in batches), batches


_DEVICE_ERRORS = ("is not on the expected device", "Expected all tensors to be on the same device")


def _meta_loop_problem(run: Callable[[_Probe, DataLoader], Any], name: str) -> str | None:
    """Run a loop with the model on the `meta` device (a stand-in for a GPU: shapes, no values) and CPU batches.

    A loop that forgets `.to(device)` meets a device mismatch; one that moves its batches reaches the model and
    stops only where meta tensors have no values (`.item()`), which works on a real GPU."""
    probe = _Probe(_small_net(3, [6, 8, 3])).to("meta")
    loader = _loader(np.random.default_rng(0), 10, 4)
    try:
        run(probe, loader)
    except NotImplementedError as exc:
        if "meta" not in str(exc).lower():
            raise
    except Exception as exc:  # noqa: BLE001 - the learner's loop: any error is information
        if any(marker in str(exc) for marker in _DEVICE_ERRORS):
            return (f"`{name}` crashed with the model on another device than its batches ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0]}), on a model moved to PyTorch's `meta` device (a stand-in for a "
                    "GPU) with device='meta'.\n  Likely cause: move every batch, inputs *and* labels, to `device` "
                    "before using it: x, y = x.to(device), y.to(device).")
    if probe.devices and any(d != "meta" for d in probe.devices):
        return f"`{name}` fed the model a batch that is not on `device` (a model on the meta device got a CPU batch)."
    return None


@_one_thread
def check_torch_train_epoch(fn: Callable[..., Any], thorough: bool = False) -> None:
    """train_one_epoch(model, loader, optimizer, device) -> mean training loss per example."""
    __tracebackhide__ = True
    name = "train_one_epoch"
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    rng = rng_for(thorough, 5)
    cases = _loop_cases(thorough)
    for i, (label, n, bs, device) in enumerate(cases, 1):
        loader = _loader(rng, n, bs)
        mine, theirs = _Probe(_small_net(i, [6, 8, 3])), _Probe(_small_net(i, [6, 8, 3]))
        mine.eval()     # left in eval mode by an earlier evaluation: the loop must switch it back
        opt_mine, opt_theirs = _CheckSGD(mine.parameters()), _CheckSGD(theirs.parameters())
        where = f"case {i} of {len(cases)} ({label}; SGD with momentum, cross-entropy)"
        expected, batch_losses = _reference_epoch(theirs, loader, opt_theirs)
        got = call(fn, name, (mine, loader, opt_mine, device), {}, where)
        batches = math.ceil(n / bs)
        if not mine.seen:
            raise CheckFailure(f"`{name}` never called the model on {where}")
        if any(not training for training, _ in mine.seen):
            raise CheckFailure(f"`{name}` ran the model in eval mode on {where}. Call model.train() at the start of "
                               "the epoch: after an evaluation the model is still in eval mode, and dropout or "
                               "batch norm would then behave as at test time.")
        if opt_mine.steps != batches:
            raise CheckFailure(f"`{name}` called optimizer.step() {opt_mine.steps} times for {batches} batches on "
                               f"{where}; take exactly one step per batch.")
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise CheckFailure(f"`{name}` should return the mean loss as a number; got {describe(got)} on "
                               f"{where}") from None
        for (pn, p), q in zip(mine.named_parameters(), theirs.parameters()):
            problem = compare(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6,
                              what=f"parameter {pn} after the epoch")
            if problem:
                hint = ""
                if opt_mine.zero_grads == 0 and batches > 1:
                    hint = ("\n  Likely cause: optimizer.zero_grad() is never called, so each backward() adds its "
                            "gradients to those of all earlier batches. Clear them before each backward().")
                raise CheckFailure(f"`{name}` trained differently from the reference loop on {where}:\n  {problem}"
                                   f"{hint}")
        problem = compare(value, expected, rtol=1e-5, atol=1e-7, what="returned mean loss")
        if problem:
            hint = ("\n  It should be the average over every example of the epoch: weight each batch's mean loss "
                    "by its size (loss.item() * len(y)), sum, and divide by the number of examples.")
            means = [loss for loss, _ in batch_losses]
            if abs(value - means[-1]) <= 1e-6 * max(1.0, abs(value)) and len(means) > 1:
                hint = "\n  Likely cause: you returned the last batch's loss; return the average over the whole epoch."
            elif abs(value - sum(means) / len(means)) <= 1e-6 * max(1.0, abs(value)):
                hint = ("\n  Likely cause: you averaged the batch means, which over-weights the smaller last batch. "
                        "Weight each batch's loss by its size (loss.item() * len(y)) and divide by the number of "
                        "examples.")
            raise CheckFailure(f"`{name}` returned the wrong mean loss on {where}:\n  {problem}{hint}")
    problem = _meta_loop_problem(lambda m, loader: fn(m, loader, _CheckSGD(m.parameters()), "meta"), name)
    if problem:
        raise CheckFailure(problem)
    _passed(name, len(cases) + 1, thorough)


@_one_thread
def check_torch_evaluate(fn: Callable[..., Any], thorough: bool = False) -> None:
    """evaluate(model, loader, device) -> (mean loss per example, accuracy), in eval mode, without gradients."""
    __tracebackhide__ = True
    name = "evaluate"
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    rng = rng_for(thorough, 6)
    cases = _loop_cases(thorough)
    for i, (label, n, bs, device) in enumerate(cases, 1):
        loader = _loader(rng, n, bs)
        model = _Probe(_small_net(20 + i, [6, 8, 3], dropout=0.5))
        model.train()   # left in training mode by the training loop
        twin = copy.deepcopy(model)
        before = [p.detach().clone() for p in model.parameters()]
        where = f"case {i} of {len(cases)} ({label}; the model contains dropout)"
        expected = ref.evaluate(twin, loader, device)
        with _fork_rng(devices=[]):
            got = call(fn, name, (model, loader, device), {}, where)
        if not model.seen:
            raise CheckFailure(f"`{name}` never called the model on {where}")
        if any(training for training, _ in model.seen):
            raise CheckFailure(f"`{name}` ran the model in training mode on {where}, so dropout was still dropping "
                               "units. Call model.eval() first.")
        if any(grad_on for _, grad_on in model.seen):
            raise CheckFailure(f"`{name}` ran the model with gradient tracking on, on {where}. Wrap the loop in "
                               "`with torch.no_grad():`: evaluation needs no graph, and building one wastes memory.")
        if any(not torch.equal(a, b) for a, b in zip(before, model.parameters())) or \
                any(p.grad is not None for p in model.parameters()):
            raise CheckFailure(f"`{name}` changed the model's parameters or gradients on {where}; evaluation "
                               f"only reads.")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailure(f"`{name}` should return a tuple (mean loss, accuracy); got {describe(got)} on {where}")
        try:
            loss, acc = float(got[0]), float(got[1])
        except (TypeError, ValueError):
            raise CheckFailure(f"`{name}` should return two numbers; got {describe(got)} on {where}") from None
        problem = compare(loss, expected[0], rtol=1e-5, atol=1e-7, what="mean loss")
        if problem:
            raise CheckFailure(f"`{name}` returned the wrong mean loss on {where}:\n  {problem}\n  It should be the "
                               "average over every example: with an uneven last batch, the mean of the batch means "
                               "is not that. Sum the per-example losses (reduction='sum', or loss.item() * len(y)) and "
                               "divide by the number of examples.")
        problem = compare(acc, expected[1], rtol=1e-6, atol=1e-9, what="accuracy")
        if problem:
            hint = ""
            if abs(acc - expected[1] * n) < 1e-6:
                hint = ("\n  Likely cause: you returned the number of correct predictions; divide by the number "
                        "of examples.")
            elif abs(acc - 100 * expected[1]) < 1e-6:
                hint = "\n  Likely cause: you returned a percentage; return a fraction between 0 and 1."
            else:
                hint = "\n  Check that you take argmax over the class axis (dim=1) of the logits."
            raise CheckFailure(f"`{name}` returned the wrong accuracy on {where}:\n  {problem}{hint}")
    problem = _meta_loop_problem(lambda m, loader: fn(m, loader, torch.device("meta")), name)
    if problem:
        raise CheckFailure(problem)
    _passed(name, len(cases) + 1, thorough)


# =========================================================================== checkpoints


def _checkpoint_net(seed: int, batchnorm: bool) -> nn.Module:
    """The model a checkpoint case saves; with `batchnorm`, it also has buffers (BatchNorm's running statistics)."""
    if not batchnorm:
        return _small_net(seed, [6, 8, 3])
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    _fill(net, np.random.default_rng(seed))
    return net


def _trained_pair(seed: int, steps: int = 3,
                  batchnorm: bool = False) -> tuple[nn.Module, _CheckSGD, np.random.Generator]:
    """A small model and its optimizer after a few steps, so the optimizer has momentum to save."""
    rng = np.random.default_rng(seed)
    model = _checkpoint_net(seed, batchnorm)
    opt = _CheckSGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        x, y = _t(rng.normal(size=(5, 6))), _t(rng.integers(0, 3, size=5), torch.int64)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt, rng


def _same_state(a: Any, b: Any) -> bool:
    """Nested dicts/lists of tensors and numbers, compared exactly."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    return a == b


def _checkpoint_cases(thorough: bool) -> list[tuple[str, int, bool, bool]]:
    """(label, epoch, pass the path as a str rather than a Path, the model has BatchNorm buffers)."""
    cases = [("after epoch 3", 3, False, False),
             ("after epoch 5, a model with BatchNorm (its running statistics are buffers)", 5, False, True)]
    if thorough:
        cases += [("after epoch 0, the path given as a string", 0, True, False), ("after epoch 12", 12, False, False),
                  ("after epoch 1, BatchNorm, the path given as a string", 1, True, True)]
    return cases


@_one_thread
def check_save_checkpoint(fn: Callable[..., Any], thorough: bool = False) -> None:
    """save_checkpoint(path, model, optimizer, epoch): torch.save of {"model", "optimizer", "epoch"}."""
    __tracebackhide__ = True
    name = "save_checkpoint"
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = _checkpoint_cases(thorough)
    for i, (label, epoch, as_str, batchnorm) in enumerate(cases, 1):
        model, opt, _ = _trained_pair(30 + i, batchnorm=batchnorm)
        model_state = {k: v.clone() for k, v in model.state_dict().items()}
        opt_state = opt.state_dict()
        with tempfile.TemporaryDirectory(prefix="roadmap-check-") as tmp:
            path = Path(tmp) / "checkpoint.pt"
            where = f"case {i} of {len(cases)} ({label}; a 2-layer model and SGD with momentum)"
            call(fn, name, (str(path) if as_str else path, model, opt, epoch), {}, where)
            if not path.exists():
                others = [p.name for p in Path(tmp).iterdir()]
                raise CheckFailure(f"`{name}` did not write a file at the path it was given on {where}"
                                   + (f" (it wrote {others}: save to exactly `path`)" if others else ""))
            try:
                saved = _torch_load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # a pickled module or optimizer object
                raise CheckFailure(f"the file `{name}` wrote cannot be loaded with torch.load(path, weights_only=True) "
                                   f"on {where} ({type(exc).__name__}). Save state_dict()s, not the model or optimizer "
                                   "objects: pickled objects need your code to load and can run arbitrary code, so "
                                   "PyTorch refuses them by default.") from None
        if not isinstance(saved, dict) or set(saved) != {"model", "optimizer", "epoch"}:
            keys = sorted(saved) if isinstance(saved, dict) else describe(saved)
            raise CheckFailure(f"`{name}`: the checkpoint should be a dict with exactly the keys ['epoch', "
                               f"'model', 'optimizer']; "
                               f"got {keys} on {where}")
        if not _same_state(saved["model"], model_state):
            raise CheckFailure(f"`{name}`: checkpoint['model'] is not model.state_dict() on {where}")
        if not _same_state(saved["optimizer"], opt_state):
            raise CheckFailure(f"`{name}`: checkpoint['optimizer'] is not optimizer.state_dict() on {where}: "
                               f"without the "
                               "optimizer's state (momentum buffers, Adam's moments, step counts) a resumed run "
                               "does not continue where it stopped.")
        if saved["epoch"] != epoch:
            raise CheckFailure(f"`{name}`: checkpoint['epoch'] should be {epoch} (the epoch you were given), got "
                               f"{saved['epoch']!r} on {where}")
    _passed(name, len(cases), thorough)


@_one_thread
def check_load_checkpoint(fn: Callable[..., Any], thorough: bool = False) -> None:
    """load_checkpoint(path, model, optimizer) -> epoch; restores both in place so training resumes exactly."""
    __tracebackhide__ = True
    name = "load_checkpoint"
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = _checkpoint_cases(thorough)
    for i, (label, epoch, as_str, batchnorm) in enumerate(cases, 1):
        model, opt, rng = _trained_pair(40 + i, batchnorm=batchnorm)
        fresh = _checkpoint_net(90 + i, batchnorm)          # different weights, an optimizer with no state yet
        fresh_opt = _CheckSGD(fresh.parameters(), lr=0.05, momentum=0.9)
        fresh_params = list(fresh.parameters())
        where = f"case {i} of {len(cases)} ({label}; a 2-layer model and SGD with momentum)"
        with tempfile.TemporaryDirectory(prefix="roadmap-check-") as tmp:
            path = Path(tmp) / "checkpoint.pt"
            ref.save_checkpoint(path, model, opt, epoch)
            got = call(fn, name, (str(path) if as_str else path, fresh, fresh_opt), {}, where)
        if any(a is not b for a, b in zip(fresh_params, fresh.parameters())):
            raise CheckFailure(f"`{name}` replaced the model's parameters on {where}; load into the existing model "
                               "with model.load_state_dict(...).")
        for (pn, p), q in zip(fresh.named_parameters(), model.parameters()):
            problem = compare(p.detach().numpy(), q.detach().numpy(), rtol=0, atol=0, what=f"parameter {pn}")
            if problem:
                raise CheckFailure(f"`{name}` did not restore the model's weights on {where}:\n  {problem}\n  "
                                   "Use model.load_state_dict(checkpoint['model']); rebinding the name `model` inside "
                                   "your function does not change the caller's model.")
        for (bn, b), c in zip(fresh.named_buffers(), model.buffers()):
            if not torch.equal(b, c):
                raise CheckFailure(f"`{name}` did not restore the model's buffer `{bn}` on {where}: BatchNorm's "
                                   "running statistics are not parameters, so copying model.parameters() misses "
                                   "them and the model behaves differently in eval mode. "
                                   "model.load_state_dict(checkpoint['model']) restores parameters and buffers.")
        if not fresh_opt.state:
            raise CheckFailure(f"`{name}` did not restore the optimizer's state on {where}: its momentum buffers are "
                               "empty, so the next steps would differ from an uninterrupted run. Call "
                               "optimizer.load_state_dict(checkpoint['optimizer']).")
        x, y = _t(rng.normal(size=(5, 6))), _t(rng.integers(0, 3, size=5), torch.int64)
        for m, o in ((model, opt), (fresh, fresh_opt)):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()
        for (pn, p), q in zip(fresh.named_parameters(), model.parameters()):
            problem = compare(p.detach().numpy(), q.detach().numpy(), rtol=1e-6, atol=1e-7,
                              what=f"parameter {pn} one step after resuming")
            if problem:
                raise CheckFailure(f"after `{name}`, one more training step does not match the original run on "
                                   f"{where}:\n  {problem}\n  Restore the optimizer with "
                                   "optimizer.load_state_dict(checkpoint['optimizer']).")
        if isinstance(got, bool) or not isinstance(got, (int, np.integer)) or int(got) != epoch:
            hint = " (return the saved epoch itself; the caller resumes at epoch + 1)" if got == epoch + 1 else ""
            raise CheckFailure(f"`{name}` should return the saved epoch, {epoch}, as an int; got {describe(got)}"
                               f"{hint} on {where}")
    _passed(name, len(cases), thorough)


# =========================================================================== CNN and RNN


def _image_batch(rng: np.random.Generator, batch: int, scale: float, strided: bool) -> torch.Tensor:
    images = rng.uniform(0, 1, size=(batch, 1, 8, 8)) * scale
    if strided:
        return _t(images.transpose(0, 1, 3, 2).copy()).transpose(2, 3)   # same values, non-contiguous
    return _t(images)


def _net_cases(thorough: bool) -> list[tuple[str, int, float, bool]]:
    cases = [("a batch of 4 images", 4, 1.0, False), ("a single image", 1, 1.0, False)]
    if thorough:
        cases += [("a batch of 9", 9, 1.0, False), ("bright images (values up to 20)", 3, 20.0, False),
                  ("a non-contiguous batch", 5, 1.0, True)]
    return cases


def _pads_by_one(conv: nn.Conv2d) -> bool:
    """Whether `conv` computes what Conv2d(..., kernel_size=3, padding=1) computes with its weights: judged by its
    output on a probe, so any equivalent construction (padding="same", padding=(1, 1)) is accepted."""
    probe = _t(np.random.default_rng(5).normal(size=(1, conv.in_channels, 5, 6)))
    with _no_grad():
        try:
            got = conv(probe)
        except Exception:  # noqa: BLE001 - a conv that cannot even run on this probe is not the one asked for
            return False
        want = F.conv2d(probe, conv.weight, conv.bias, padding=1)
    return got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-5, atol=1e-6))


def _cnn_reference(conv1: nn.Conv2d, conv2: nn.Conv2d, fc: nn.Linear, x: torch.Tensor,
                   variant: str = "") -> torch.Tensor:
    with _no_grad():
        x = x.double()
        c1 = (conv1.weight.double(), conv1.bias.double())
        c2 = (conv2.weight.double(), conv2.bias.double())
        pool = F.avg_pool2d if variant == "avg" else F.max_pool2d
        h = pool(torch.relu(F.conv2d(x, *c1, padding=1)), 2)
        h = F.conv2d(h, *c2, padding=1)
        h = pool(h if variant == "no_relu2" else torch.relu(h), 2)
        flat = h.permute(0, 2, 3, 1).flatten(1) if variant == "channels_last" else h.flatten(1)
        out = F.linear(flat, fc.weight.double(), fc.bias.double())
        return torch.relu(out) if variant == "relu_out" else out


@_one_thread
def check_digits_cnn(cls: Any, thorough: bool = False) -> None:
    """DigitsCNN(): [B, 1, 8, 8] -> conv(1->16, 3, pad 1), ReLU, maxpool 2, conv(16->32, 3, pad 1), ReLU,
    maxpool 2, flatten (128), linear -> [B, 10]."""
    __tracebackhide__ = True
    name = "DigitsCNN"
    guard()
    rng = rng_for(thorough, 7)
    cases = _net_cases(thorough)
    for i, (label, batch, scale, strided) in enumerate(cases, 1):
        model = _construct(cls, name)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        found = [f"Conv2d({c.in_channels}, {c.out_channels}, kernel_size={c.kernel_size}, padding={c.padding}, "
                 f"stride={c.stride})" for c in convs] + [f"Linear({m.in_features}, {m.out_features})" for m in linears]
        want = [(1, 16), (16, 32)]
        ok = (len(convs) == 2 and len(linears) == 1 and [(c.in_channels, c.out_channels) for c in convs] == want
              and all(c.kernel_size == (3, 3) and _pads_by_one(c) for c in convs)
              and (linears[0].in_features, linears[0].out_features) == (128, 10))
        if not ok and len(convs) == 2 and len(linears) == 1 and [(c.in_channels, c.out_channels) for c in convs] == want \
                and all(c.kernel_size == (3, 3) for c in convs) and (linears[0].in_features, linears[0].out_features) == (128, 10):
            raise CheckFailure(f"`{name}` has the right layers ({found}), but its convolutions do not compute what "
                               "Conv2d(..., kernel_size=3, padding=1) computes with the same weights: one pixel of "
                               "*zero* padding on each side and stride 1 (check `stride`, `padding` and `padding_mode`).")
        if not ok:
            raise CheckFailure(f"`{name}` should contain Conv2d(1, 16, kernel_size=3, padding=1), "
                               "Conv2d(16, 32, kernel_size=3, padding=1) and Linear(32 * 2 * 2, 10), in that order; "
                               f"found {found}. (After two 2x2 poolings an 8x8 image is 2x2, so 32 channels give "
                               "128 features.)")
        _fill(model, rng, scale=2.0)
        x = _image_batch(rng, batch, scale, strided)
        x_copy = x.clone()
        where = f"case {i} of {len(cases)} ({label}; x of shape {tuple(x.shape)})"
        out = call(model, name, (x,), {}, where)
        if not torch.equal(x, x_copy):
            raise CheckFailure(f"`{name}` changed its input in place on {where}")
        expected = _cnn_reference(convs[0], convs[1], linears[0], x)
        problem = compare(_np(out), expected.numpy(), rtol=1e-4, atol=1e-4 * scale)
        if problem:
            msg = f"`{name}` is wrong on {where}:\n  {problem}"
            for variant, hint in [("channels_last", "you flattened in [height, width, channel] order; flatten the "
                                   "[B, 32, 2, 2] tensor as it is (x.flatten(1) or x.reshape(B, -1))."),
                                  ("avg", "use max pooling (F.max_pool2d or nn.MaxPool2d), not average pooling."),
                                  ("no_relu2", "the second convolution needs its ReLU too."),
                                  ("relu_out", "don't put a ReLU after the last layer: logits can be negative.")]:
                wrong = _cnn_reference(convs[0], convs[1], linears[0], x, variant)
                if compare(_np(out), wrong.numpy(), rtol=1e-4, atol=1e-4 * scale) is None:
                    msg += f"\n  Likely cause: {hint}"
                    break
            raise CheckFailure(msg)
    _passed(name, len(cases), thorough)


def _rnn_reference(model: nn.Module, x: torch.Tensor, variant: str = "") -> torch.Tensor:
    with _no_grad():
        ih, hh, ro = model.input_to_hidden, model.hidden_to_hidden, model.readout
        W_ih, b_ih, W_hh = ih.weight.double(), ih.bias.double(), hh.weight.double()
        rows = x.double().reshape(x.shape[0], 8, 8)
        if variant == "columns":
            rows = rows.transpose(1, 2)
        h = torch.zeros(x.shape[0], W_hh.shape[0], dtype=torch.float64)
        states = []
        act = torch.relu if variant == "relu" else torch.tanh
        for t in range(8):
            h = act(rows[:, t] @ W_ih.T + b_ih + (0 if variant == "no_recurrence" else h @ W_hh.T))
            states.append(h)
        final = {"first": states[0], "mean": torch.stack(states).mean(0)}.get(variant, h)
        return final @ ro.weight.double().T + ro.bias.double()


@_one_thread
def check_digits_rnn(cls: Any, thorough: bool = False) -> None:
    """DigitsRNN(hidden_size=64): rows of an 8x8 image as a sequence; h_t = tanh(W_ih row_t + b + W_hh h_{t-1}),
    h_0 = 0; logits = readout(h_8)."""
    __tracebackhide__ = True
    name = "DigitsRNN"
    guard()
    rng = rng_for(thorough, 8)
    sizes = [64, 5] + ([16, 1, 64] if thorough else [])
    cases = _net_cases(thorough)
    for i, ((label, batch, scale, strided), hidden) in enumerate(zip(cases, sizes), 1):
        model = _construct(cls, name, (), {"hidden_size": hidden})
        spec = {"input_to_hidden": (8, hidden, True), "hidden_to_hidden": (hidden, hidden, False),
                "readout": (hidden, 10, True)}
        for attr, (fan_in, fan_out, has_bias) in spec.items():
            layer = getattr(model, attr, None)
            want = f"nn.Linear({fan_in}, {fan_out}{'' if has_bias else ', bias=False'})"
            if not isinstance(layer, nn.Linear) or (layer.in_features, layer.out_features) != (fan_in, fan_out):
                raise CheckFailure(f"`{name}(hidden_size={hidden})` should have `self.{attr}` = {want}; got "
                                   f"{describe(layer) if not isinstance(layer, nn.Module) else layer}")
            if (layer.bias is not None) != has_bias:
                raise CheckFailure(f"`{name}.{attr}` should be {want}: "
                                   + ("the input layer already adds the one bias the recurrence needs."
                                      if not has_bias else "it needs a bias."))
        _fill(model, rng, scale=1.5)
        x = _image_batch(rng, batch, scale, strided)
        x_copy = x.clone()
        where = f"case {i} of {len(cases)} ({label}; hidden_size={hidden}, x of shape {tuple(x.shape)})"
        out = call(model, name, (x,), {}, where)
        if not torch.equal(x, x_copy):
            raise CheckFailure(f"`{name}` changed its input in place on {where}")
        expected = _rnn_reference(model, x)
        problem = compare(_np(out), expected.numpy(), rtol=1e-4, atol=1e-4)
        if problem:
            msg = f"`{name}` is wrong on {where}:\n  {problem}"
            for variant, hint in [("columns", "you fed the image column by column; the sequence is the 8 *rows* "
                                   "(x.reshape(B, 8, 8)[:, t] is row t)."),
                                  ("relu", "use tanh as the recurrent non-linearity."),
                                  ("first", "you read out the first hidden state; use the last one, after all 8 rows."),
                                  ("mean", "you averaged the hidden states; read out the last one."),
                                  ("no_recurrence", "the new state must also depend on the previous one: add "
                                   "hidden_to_hidden(h) inside the tanh.")]:
                if compare(_np(out), _rnn_reference(model, x, variant).numpy(), rtol=1e-4, atol=1e-4) is None:
                    msg += f"\n  Likely cause: {hint}"
                    break
            raise CheckFailure(msg)
    # the model moved to another dtype and another device: the hidden state must follow it
    model = _construct(cls, name, (), {"hidden_size": 6})
    _fill(model, rng, scale=1.5)
    model.double()
    x = _image_batch(rng, 3, 1.0, False).double()
    where = f"case {len(cases) + 1} of {len(cases) + 2} (a float64 model, model.double(), and float64 images)"
    try:
        out = call(model, name, (x,), {}, where)
    except CheckFailure as exc:
        if "dtype" in _cause(exc) or "Double" in _cause(exc) or "Float" in _cause(exc):
            raise CheckFailure(f"{exc}\n  Likely cause: the first hidden state is float32 while the model is "
                               "float64: create it like the input, torch.zeros(..., dtype=x.dtype, device=x.device)."
                               ) from None
        raise
    problem = compare(_np(out), _rnn_reference(model, x).numpy(), rtol=1e-9, atol=1e-10)
    if problem:
        raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}")
    where = f"case {len(cases) + 2} of {len(cases) + 2} (the model and images on another device: PyTorch's `meta` " \
            "device, a stand-in for a GPU)"
    model = _construct(cls, name, (), {"hidden_size": 5}).to("meta")
    problem = _meta_forward_problem(model, torch.empty(4, 1, 8, 8, device="meta"), (4, 10))
    if problem:
        raise CheckFailure(f"`{name}` is wrong on {where}: {problem}")
    _passed(name, len(cases) + 2, thorough)


def _meta_forward_problem(model: nn.Module, x: torch.Tensor, out_shape: tuple[int, ...]) -> str | None:
    """Run a module on the meta device: a tensor it creates on the CPU shows up as a device mismatch."""
    try:
        out = model(x)
    except NotImplementedError as exc:
        if "meta" in str(exc).lower():
            return None
        raise
    except Exception as exc:  # noqa: BLE001 - the learner's code: any error is information
        if any(marker in str(exc) for marker in _DEVICE_ERRORS):
            return (f"it raised {type(exc).__name__}: {str(exc).splitlines()[0]}\n  Likely cause: a tensor made "
                    "inside forward (the first hidden state?) lives on the CPU while the model is elsewhere: create "
                    "it with device=x.device (and dtype=x.dtype).")
        return None  # an operation the meta device cannot run (e.g. .item()); fine on a real GPU
    if not isinstance(out, torch.Tensor) or out.device.type != "meta" or tuple(out.shape) != out_shape:
        return f"expected logits of shape {out_shape} on the model's device, got {describe(out)}"
    return None
