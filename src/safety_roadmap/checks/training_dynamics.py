"""Checks for chapter 07_training_dynamics. Each `check_<exercise>(obj, thorough=False)`.

Optimizer steps are run for several steps next to torch.optim's own update code on the same
parameters and gradients; layers are compared with torch.nn (outputs, gradients and running
statistics); dropout is checked by what any correct implementation must do, whatever random
numbers it draws.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adam import adam as _torch_adam
from torch.optim.sgd import sgd as _torch_sgd

from ..reference import training_dynamics as ref
from ._core import (Case, CheckFailure, Mistake, NotAttempted, call, compare, describe, guard, rng_for, run_check,
                    trust)
from ._torch import torch_check as _one_thread
from .transformer_from_scratch import failing_helper_note as _failing_helper_note

__all__ = ["check_sgd_momentum_step", "check_adam_step", "check_adamw_step", "check_dropout_forward",
           "check_batchnorm_module", "check_layernorm_module", "check_warmup_cosine_lr", "check_clip_grad_norm",
           "check_layer_grad_norms", "check_dead_relu_fractions", "check_diagnose_runs"]

trust(torch)
trust(F)
trust(nn)
trust(torch.nn.utils)

_clip_grad_norm_ = torch.nn.utils.clip_grad_norm_
_Parameter = nn.Parameter
_Module = nn.Module
_tensor = torch.tensor
_no_grad = torch.no_grad
_fork_rng = torch.random.fork_rng
_manual_seed = torch.manual_seed


def _passed(name: str, n: int, thorough: bool) -> None:
    kind = "thorough" if thorough else "quick"
    print(f"✓ {name}: the {kind} check passed" if n == 1 else f"✓ {name}: all {n} {kind} checks passed")


def _t(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return _tensor(np.asarray(a), dtype=dtype)


def _cause(exc: CheckFailure) -> str:
    return str(exc.__cause__ or "")


def _numbers(x: Any) -> Any:
    """A tensor/array/number as a NumPy value for `compare` (0-d tensors and Python floats both work)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x


# =========================================================================== the meta device: a GPU stand-in

_DEVICE_ERRORS = ("is not on the expected device", "Expected all tensors to be on the same device")


def _meta_problem(run: Callable[[], Any], made_inside: str) -> str | None:
    """Run a learner's computation on `meta` tensors (PyTorch's shapes-only device): a tensor it creates on the CPU
    meets them as it would meet CUDA or MPS tensors. Only a device *mismatch* fails; an operation the meta device
    cannot run at all (`.item()`) works on a real GPU, so it passes."""
    try:
        run()
    except NotImplementedError as exc:
        if "meta" not in str(exc).lower():
            raise
    except Exception as exc:  # noqa: BLE001 - the learner's code: any error is information
        if any(marker in str(exc) for marker in _DEVICE_ERRORS):
            return (f"it raised {type(exc).__name__}: {str(exc).splitlines()[0]}\n  Likely cause: {made_inside}")
    return None


# =========================================================================== optimizers


@dataclass
class _OptCase:
    label: str
    shape: tuple[int, ...]
    steps: int
    hyper: dict
    dtype: torch.dtype = torch.float64
    grad_scale: float = 1.0
    strided_grad: bool = False


def _opt_problem(case: _OptCase,
                 rng: np.random.Generator) -> tuple[torch.Tensor, Callable[[torch.Tensor, int], torch.Tensor]]:
    """A start point and a gradient that depends on the current parameters (a noisy quadratic bowl)."""
    shape = case.shape
    p0 = _t(rng.normal(size=shape), case.dtype)
    curvature = _t(rng.uniform(0.2, 2.0, size=shape), case.dtype)
    target = _t(rng.normal(size=shape), case.dtype)
    noise = [_t(0.5 * rng.normal(size=shape), case.dtype) for _ in range(case.steps)]

    def grad(p: torch.Tensor, t: int) -> torch.Tensor:
        g = case.grad_scale * (curvature * (p - target) + noise[t])
        if case.strided_grad:  # the same values, laid out with a stride
            wide = torch.zeros(shape[:-1] + (2 * shape[-1],), dtype=case.dtype)
            wide[..., ::2] = g
            g = wide[..., ::2]
        return g

    return p0, grad


def _torch_trajectory(kind: str, p0: torch.Tensor, grad: Callable, steps: int, hyper: dict) -> list[torch.Tensor]:
    """torch.optim's own update code: its functional form, as the optimizer classes call it (fast), or the
    classes themselves should that private signature ever change."""
    try:
        return _functional_trajectory(kind, p0, grad, steps, hyper)
    except TypeError:
        return _class_trajectory(kind, p0, grad, steps, hyper)


def _class_trajectory(kind: str, p0: torch.Tensor, grad: Callable, steps: int, hyper: dict) -> list[torch.Tensor]:
    p = p0.clone().requires_grad_(True)
    make = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
    opt = make([p], **hyper)
    out = []
    for t in range(steps):
        p.grad = grad(p.detach(), t)
        opt.step()
        out.append(p.detach().clone())
    return out


def _functional_trajectory(kind: str, p0: torch.Tensor, grad: Callable, steps: int, hyper: dict) -> list[torch.Tensor]:
    p = p0.clone()
    out = []
    if kind == "sgd":
        buffers: list[torch.Tensor | None] = [None]
        for t in range(steps):
            _torch_sgd([p], [grad(p, t)], buffers, weight_decay=0.0, momentum=hyper["momentum"], lr=hyper["lr"],
                       dampening=0.0, nesterov=False, maximize=False, foreach=False)
            out.append(p.clone())
        return out
    m, v, step = torch.zeros_like(p), torch.zeros_like(p), _tensor(0.0)
    beta1, beta2 = hyper.get("betas", (0.9, 0.999))
    for t in range(steps):
        _torch_adam([p], [grad(p, t)], [m], [v], [], [step], foreach=False, capturable=False, differentiable=False,
                    fused=None, grad_scale=None, found_inf=None, has_complex=False,
                    decoupled_weight_decay=(kind == "adamw"), amsgrad=False, beta1=beta1, beta2=beta2,
                    lr=hyper["lr"], weight_decay=hyper.get("weight_decay", 0.0), eps=hyper.get("eps", 1e-8),
                    maximize=False)
        out.append(p.clone())
    return out


def _quiet_trajectory(fn: Callable, p0: torch.Tensor, grad: Callable, steps: int, hyper: dict) -> list[Any] | None:
    """A known mistake's trajectory, for the 'likely cause' line; None if it crashes."""
    try:
        p = p0.clone().requires_grad_(True)
        state: dict = {}
        out = []
        for t in range(steps):
            ret = fn(p, grad(p.detach(), t), state, **hyper)
            out.append((ret if isinstance(ret, torch.Tensor) else p).detach().clone())
        return out
    except Exception:
        return None


def _check_optimizer(name: str, kind: str, fn: Callable, cases: list[_OptCase], thorough: bool,
                     mistakes: list[Mistake], salt: int) -> None:
    __tracebackhide__ = True
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    rng = rng_for(thorough, salt)
    for i, case in enumerate(cases, 1):
        p0, grad = _opt_problem(case, rng)
        expected = _torch_trajectory(kind, p0, grad, case.steps, case.hyper)
        rtol, atol = (1e-5, 1e-7) if case.dtype == torch.float64 else (2e-4, 1e-5)
        settings = ", ".join(f"{k}={v}" for k, v in case.hyper.items())
        where = (f"case {i} of {len(cases)} ({case.label}: p of shape {tuple(case.shape)} {str(case.dtype)[6:]}, "
                 f"{settings}, {case.steps} step{'s' if case.steps > 1 else ''})")
        p = p0.clone().requires_grad_(True)
        state: dict = {}
        grads_seen: list[tuple[torch.Tensor, torch.Tensor]] = []
        for t in range(case.steps):
            g = grad(p.detach(), t)
            grads_seen.append((g, g.clone()))
            before = p.detach().clone()
            try:
                ret = call(fn, name, (p, g, state), dict(case.hyper), f"{where}, at step {t + 1}")
            except CheckFailure as exc:
                if "leaf Variable" in _cause(exc) or "requires grad" in _cause(exc):
                    raise CheckFailure(f"{exc}\n  Likely cause: `p` is a parameter that requires grad, so autograd "
                                       "forbids changing it in place while recording. Do the update inside "
                                       "`with torch.no_grad():`.") from None
                raise
            for k, (g_k, g_copy) in enumerate(grads_seen):
                if not torch.equal(g_k, g_copy):
                    which = "the `grad` it was given" if k == t else f"the `grad` it was given at step {k + 1}"
                    raise CheckFailure(
                        f"`{name}` changed {which} in place on {where}, during step {t + 1}. "
                        "Never write into `grad` (p.grad belongs to autograd), and if you keep a gradient in "
                        "`state`, store a copy (`grad.clone()`) or a buffer you update in place, not `grad` "
                        "itself.")
            if p.shape != p0.shape:
                raise CheckFailure(f"`{name}` changed the shape of `p` to {tuple(p.shape)} on {where}")
            if torch.equal(p.detach(), before) and not torch.equal(expected[t], before):
                hint = ""
                if isinstance(ret, torch.Tensor) and compare(_numbers(ret), expected[t].numpy(), rtol=rtol,
                                                             atol=atol) is None:
                    hint = " You returned the new value instead: write it into `p` (e.g. `p -= ...`)."
                raise CheckFailure(f"`{name}` did not change `p` on {where}, at step {t + 1}. An optimizer step "
                                   f"updates the parameter in place (inside `torch.no_grad()`).{hint}")
            problem = compare(p.detach().numpy(), expected[t].numpy(), rtol=rtol, atol=atol,
                              what=f"p after step {t + 1}")
            if problem:
                msg = (f"`{name}` does not match torch.optim.{ {'sgd': 'SGD', 'adam': 'Adam', 'adamw': 'AdamW'}[kind]} "
                       f"on {where}:\n  {problem}")
                for m in mistakes:
                    wrong = _quiet_trajectory(m.fn, p0, grad, t + 1, case.hyper)
                    if wrong is not None and compare(p.detach().numpy(), wrong[t].numpy(), rtol=rtol,
                                                     atol=atol) is None:
                        msg += f"\n  Likely cause: {m.hint}"
                        break
                raise CheckFailure(msg)
    # the parameter on another device: the state must be created where p lives
    p = torch.empty(3, 4, device="meta").requires_grad_(True)
    state: dict = {}
    problem = _meta_problem(lambda: [fn(p, torch.empty(3, 4, device="meta"), state, **cases[0].hyper) for _ in "ab"],
                            "state made with torch.zeros(p.shape) lives on the CPU while p lives on the GPU: "
                            "torch.zeros_like(p) makes it with p's shape, dtype *and* device.")
    if problem is None and any(isinstance(v, torch.Tensor) and v.dim() > 0 and v.device.type != "meta"
                               for v in state.values()):   # a 0-d step counter may stay on the CPU, as in torch.optim
        problem = "it kept state tensors on another device than `p`: make them with torch.zeros_like(p)."
    if problem:
        raise CheckFailure(f"`{name}` is wrong on case {len(cases) + 1} of {len(cases) + 1} (p and grad on another "
                           f"device: PyTorch's `meta` device, a stand-in for a GPU): {problem}")
    _passed(name, len(cases) + 1, thorough)


def _sgd_cases(thorough: bool) -> list[_OptCase]:
    cases = [_OptCase("a vector", (5,), 5, dict(lr=0.1, momentum=0.9)),
             _OptCase("a matrix", (3, 4), 4, dict(lr=0.05, momentum=0.5))]
    if thorough:
        cases += [_OptCase("momentum 0 (plain SGD)", (6,), 3, dict(lr=0.2, momentum=0.0)),
                  _OptCase("heavy momentum, many steps", (2, 3, 4), 25, dict(lr=0.01, momentum=0.99)),
                  _OptCase("float32", (16,), 10, dict(lr=0.1, momentum=0.9), dtype=torch.float32),
                  _OptCase("huge gradients", (4, 4), 6, dict(lr=1e-5, momentum=0.9), grad_scale=1e4),
                  _OptCase("a strided gradient", (3, 5), 4, dict(lr=0.1, momentum=0.8), strided_grad=True),
                  _OptCase("a single number", (1,), 8, dict(lr=0.3, momentum=0.7))]
    return cases


def _mistake_sgd_dampened(p, grad, state, lr, momentum):
    with torch.no_grad():
        v = state.setdefault("v", torch.zeros_like(p))
        v.mul_(momentum).add_((1 - momentum) * grad)
        p.sub_(lr * v)


def _mistake_sgd_forgets(p, grad, state, lr, momentum):
    with torch.no_grad():
        p.sub_(lr * grad)


def _mistake_sgd_old_velocity(p, grad, state, lr, momentum):
    with torch.no_grad():
        v = state.setdefault("v", torch.zeros_like(p))
        p.sub_(lr * v)
        v.mul_(momentum).add_(grad)


@_one_thread
def check_sgd_momentum_step(fn: Callable[..., Any], thorough: bool = False) -> None:
    """sgd_momentum_step(p, grad, state, lr, momentum): in place, as torch.optim.SGD(momentum=...)."""
    __tracebackhide__ = True
    _check_optimizer("sgd_momentum_step", "sgd", fn, _sgd_cases(thorough), thorough, salt=1, mistakes=[
        Mistake("you ignored the velocity (plain SGD): keep v in `state` so it survives between calls, "
                "and update v <- momentum * v + grad.", _mistake_sgd_forgets),
        Mistake("you damped the gradient, v <- momentum * v + (1 - momentum) * grad. torch.optim.SGD adds the "
                "full gradient: v <- momentum * v + grad.", _mistake_sgd_dampened),
        Mistake("you moved p with the *previous* velocity; update v first, then p <- p - lr * v.",
                _mistake_sgd_old_velocity),
    ])


def _adam_cases(thorough: bool, decay: bool) -> list[_OptCase]:
    wd = dict(weight_decay=0.1) if decay else {}
    cases = [_OptCase("a vector", (5,), 5, dict(lr=0.01, **wd)),
             _OptCase("a matrix, other betas", (3, 4), 4, dict(lr=0.05, betas=(0.8, 0.99), **wd))]
    if thorough:
        big_wd = dict(weight_decay=0.5) if decay else {}
        cases += [_OptCase("the very first step", (7,), 1, dict(lr=0.1, **wd)),
                  _OptCase("many steps", (2, 3, 4), 30, dict(lr=0.01, **wd)),
                  _OptCase("float32", (16,), 10, dict(lr=0.01, **wd), dtype=torch.float32),
                  _OptCase("huge gradients", (4, 4), 6, dict(lr=0.01, **wd), grad_scale=1e4),
                  _OptCase("small gradients", (4, 4), 6, dict(lr=0.01, eps=1e-8, **wd), grad_scale=1e-3),
                  _OptCase("a larger eps", (5,), 5, dict(lr=0.02, eps=0.1, **wd)),
                  _OptCase("a strided gradient", (3, 5), 4, dict(lr=0.02, betas=(0.5, 0.9), **wd), strided_grad=True),
                  _OptCase("strong decay" if decay else "a large learning rate", (6,), 8, dict(lr=0.1, **big_wd))]
    return cases


def _adam_like(p, grad, state, lr, betas, eps, *, correct=True, eps_inside=False, step_offset=0, decay=0.0,
               decay_mode="decoupled"):
    b1, b2 = betas
    with torch.no_grad():
        if decay and decay_mode == "l2":
            grad = grad + decay * p
        if decay and decay_mode == "decoupled":
            p.mul_(1 - lr * decay)
        if decay and decay_mode == "no_lr":
            p.mul_(1 - decay)
        st = state.setdefault("mine", {"t": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)})
        st["t"] += 1
        t = st["t"] + step_offset
        st["m"].mul_(b1).add_((1 - b1) * grad)
        st["v"].mul_(b2).add_((1 - b2) * grad * grad)
        m_hat = st["m"] / (1 - b1 ** t) if correct else st["m"]
        v_hat = st["v"] / (1 - b2 ** t) if correct else st["v"]
        denom = (v_hat + eps).sqrt() if eps_inside else v_hat.sqrt() + eps
        p.sub_(lr * m_hat / denom)


def _adam_mistakes(decay: float | None) -> list[Mistake]:
    def m(**kw):
        def step(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
            _adam_like(p, grad, state, lr, betas, eps, decay=weight_decay, **kw)
        return step
    out = []
    if decay is not None:
        coupled = ("the weight decay is missing, or it went into the gradient (adding weight_decay * p to grad is "
                   "L2 regularisation, torch.optim.Adam's weight_decay, and Adam's normalisation mostly cancels it). "
                   "AdamW decouples it: first shrink p by (1 - lr * weight_decay), then do the Adam step with the raw "
                   "gradient.")
        out += [Mistake(coupled, m(decay_mode="l2")), Mistake(coupled, m(decay_mode="none")),
                Mistake("you shrank p by (1 - weight_decay); the decay is scaled by the learning rate: "
                        "p <- p * (1 - lr * weight_decay).", m(decay_mode="no_lr"))]
    out += [Mistake("you skipped the bias correction: divide m by (1 - beta1**t) and v by (1 - beta2**t), with t "
                    "counting steps from 1.", m(correct=False)),
            Mistake("eps belongs outside the square root: sqrt(v_hat) + eps.", m(eps_inside=True)),
            Mistake("your step counter is off by one: the first step has t = 1.", m(step_offset=1))]
    return out


@_one_thread
def check_adam_step(fn: Callable[..., Any], thorough: bool = False) -> None:
    """adam_step(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8): in place, as torch.optim.Adam."""
    __tracebackhide__ = True
    _check_optimizer("adam_step", "adam", fn, _adam_cases(thorough, decay=False), thorough, salt=2,
                     mistakes=_adam_mistakes(None))


@_one_thread
def check_adamw_step(fn: Callable[..., Any], thorough: bool = False) -> None:
    """adamw_step(p, grad, state, lr, betas, eps, weight_decay): in place, as torch.optim.AdamW."""
    __tracebackhide__ = True
    try:
        _check_optimizer("adamw_step", "adamw", fn, _adam_cases(thorough, decay=True), thorough, salt=3,
                         mistakes=_adam_mistakes(0.1))
    except CheckFailure as failure:
        note = _failing_helper_note(fn, "adam_step", check_adam_step, "adam_step")
        if note:
            raise CheckFailure(f"{failure}{note}") from None
        raise


# =========================================================================== dropout


@_one_thread
def check_dropout_forward(fn: Callable[..., Any], thorough: bool = False) -> None:
    """dropout(x, p, training=True, mask=None): inverted dropout, identity in eval.

    Checked without assuming how the random mask is drawn: exact output for a given mask, the eval
    identity, kept entries scaled by 1/(1-p), the fraction dropped, fresh randomness on every call.
    """
    __tracebackhide__ = True
    name = "dropout"
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    rng = rng_for(thorough, 10)
    n_checks = 0

    def run(x: torch.Tensor, p: float, training: bool, mask: torch.Tensor | None, where: str) -> torch.Tensor:
        x_copy = x.detach().clone()
        kwargs = {"training": training} if mask is None else {"training": training, "mask": mask}
        out = call(fn, name, (x, p), kwargs, where)
        if not torch.equal(x.detach(), x_copy):
            raise CheckFailure(f"`{name}` changed its input `x` in place on {where}. Build a new tensor "
                               "(x * mask / (1 - p)) instead of writing into x: autograd and the caller still need x.")
        if not isinstance(out, torch.Tensor):
            raise CheckFailure(f"`{name}` should return a tensor; got {describe(out)} on {where}")
        if out.shape != x.shape:
            raise CheckFailure(f"`{name}` returned shape {tuple(out.shape)} for an input of shape {tuple(x.shape)} "
                               f"on {where}; dropout keeps the shape.")
        return out

    # 1. eval mode is the identity, with or without a mask
    eval_cases = [((4, 5), 0.5, False), ((3, 6), 0.2, True)]
    if thorough:
        eval_cases += [((2, 3, 4), 0.9, False), ((10,), 0.5, True)]
    for shape, p, with_mask in eval_cases:
        n_checks += 1
        x = _t(rng.normal(size=shape))
        mask = _t(rng.random(size=shape) > p, torch.bool) if with_mask else None
        where = f"eval mode (training=False), x of shape {shape}, p={p}{', a mask given' if with_mask else ''}"
        out = run(x, p, False, mask, where)
        problem = compare(out.detach().numpy(), x.numpy(), rtol=0, atol=0)
        if problem:
            hint = ""
            if compare(out.detach().numpy(), (x * (1 - p)).numpy(), rtol=1e-5, atol=1e-7) is None:
                hint = ("\n  Likely cause: you scaled by (1 - p) at eval time. With *inverted* dropout the scaling "
                        "happens during training, so eval is exactly the identity.")
            elif (out == 0).any() and not (x == 0).any():
                hint = "\n  Likely cause: you still drop units when training=False; in eval mode nothing is dropped."
            raise CheckFailure(f"`{name}` should return x unchanged in eval mode, on {where}:\n  {problem}{hint}")

    # 2. the exact output for a given mask
    mask_cases = [((6, 7), 0.3, torch.float32), ((4, 8), 0.5, torch.float32), ((2, 3, 4), 0.1, torch.float64)]
    if thorough:
        mask_cases += [((5,), 0.9, torch.float32), ((3, 3), 0.75, torch.float64),
                       ((20, 30), 0.5, torch.float32)]
    for shape, p, dtype in mask_cases:
        n_checks += 1
        x = _t(rng.normal(size=shape), dtype)
        mask = _t(rng.random(size=shape) >= p, torch.bool)
        where = f"training with a given mask, x of shape {shape} {str(dtype)[6:]}, p={p}"
        out = run(x, p, True, mask, where)
        expected = x * mask / (1 - p)
        problem = compare(out.detach().numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)
        if problem:
            hint = ""
            if compare(out.detach().numpy(), (x * mask).numpy(), rtol=1e-5, atol=1e-7) is None:
                hint = ("you did not rescale the kept units. Divide by (1 - p) so each unit's expected value is "
                        "the same in training and eval.")
            elif compare(out.detach().numpy(), (x * ~mask / (1 - p)).numpy(), rtol=1e-5, atol=1e-7) is None:
                hint = "you used the mask the wrong way round: True means *keep* this entry."
            elif compare(out.detach().numpy(), (x * mask / p).numpy(), rtol=1e-5, atol=1e-7) is None:
                hint = "p is the probability of *dropping* an entry, so survivors are scaled by 1/(1 - p), not 1/p."
            elif compare(out.detach().numpy(), (x * mask * (1 - p)).numpy(), rtol=1e-5, atol=1e-7) is None:
                hint = "you multiplied by (1 - p); inverted dropout divides the kept entries by (1 - p)."
            raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}"
                               + (f"\n  Likely cause: {hint}" if hint else ""))

    # 3. with no mask: every entry is 0 or x/(1-p), and about a fraction p are dropped
    stat_cases = [(0.25, 20000)] + ([(0.5, 20000), (0.8, 20000), (0.05, 20000)] if thorough else [])
    with _fork_rng(devices=[]):
        _manual_seed(1234 + (7 if thorough else 0))
        for p, n in stat_cases:
            n_checks += 1
            x = _t(rng.uniform(0.5, 1.5, size=(n // 100, 100)))
            where = f"training, no mask given, x of shape {tuple(x.shape)} with entries in [0.5, 1.5], p={p}"
            out = run(x, p, True, None, where)
            dropped = out == 0
            scaled = x / (1 - p)
            kept_ok = torch.isclose(out, scaled, rtol=1e-5, atol=1e-7)
            if not bool((dropped | kept_ok).all()):
                bad = int((~(dropped | kept_ok)).sum())
                idx = int((~(dropped | kept_ok)).reshape(-1).nonzero()[0])
                got, want = float(out.reshape(-1)[idx]), float(scaled.reshape(-1)[idx])
                unscaled = abs(got - float(x.reshape(-1)[idx])) < 1e-6
                hint = (" It looks like you did not rescale the kept entries." if unscaled
                        else "")
                raise CheckFailure(f"`{name}` on {where}: every entry should be either 0 (dropped) or x / (1 - p) "
                                   f"(kept), but {bad} entries are neither; e.g. got {got:.6g} where a kept entry "
                                   f"is {want:.6g}.{hint}")
            frac = float(dropped.float().mean())
            sd = math.sqrt(p * (1 - p) / n)
            if abs(frac - p) > 6 * sd:
                hint = (" That is about 1 - p: p is the probability of *dropping* an entry."
                        if abs(frac - (1 - p)) < 6 * sd else "")
                raise CheckFailure(f"`{name}` on {where}: dropped {frac:.3f} of the entries, expected about p = {p} "
                                   f"(more than 6 standard deviations away).{hint}")
        # 4. fresh randomness on every call
        n_checks += 1
        x = _t(rng.uniform(0.5, 1.5, size=(40, 50)))
        where = "two calls in a row on the same x, p=0.5, no mask"
        first = run(x, 0.5, True, None, where)
        second = run(x, 0.5, True, None, where)
        if torch.equal(first, second):
            raise CheckFailure(f"`{name}` dropped exactly the same entries on {where}. Each call must draw a new "
                               "random mask (don't reset a seed or reuse a stored mask inside the function).")
    # 5. x on another device: the random mask must be drawn where x lives
    n_checks += 1
    problem = _meta_problem(lambda: fn(torch.empty(4, 6, device="meta"), 0.3, training=True),
                            "the random mask was drawn on the CPU (torch.rand(x.shape)) while x lives on the GPU: "
                            "torch.rand_like(x) draws it with x's shape, dtype and device.")
    if problem:
        raise CheckFailure(f"`{name}` is wrong on x on another device (PyTorch's `meta` device, a stand-in for a "
                           f"GPU), training, no mask: {problem}")
    if thorough:
        # 6. p = 0 keeps everything; gradients flow through the kept entries only
        n_checks += 2
        x = _t(rng.normal(size=(5, 6)))
        out = run(x, 0.0, True, None, "training with p=0 (nothing to drop), no mask")
        problem = compare(out.detach().numpy(), x.numpy(), rtol=1e-6, atol=0)
        if problem:
            raise CheckFailure(f"`{name}` with p=0 should return x unchanged:\n  {problem}")
        x = _t(rng.normal(size=(4, 6))).requires_grad_(True)
        mask = _t(rng.random(size=(4, 6)) >= 0.5, torch.bool)
        where = "training with a given mask, p=0.5, x requires grad"
        out = run(x, 0.5, True, mask, where)
        if not out.requires_grad:
            raise CheckFailure(f"`{name}` on {where}: the output does not require grad, so no gradient would reach "
                               "the layers below. Don't use torch.no_grad(), .detach() or .data inside dropout.")
        out.sum().backward()
        problem = compare(x.grad.numpy(), (mask / 0.5).numpy(), rtol=1e-5, atol=1e-7, what="x.grad")
        if problem:
            raise CheckFailure(f"`{name}` on {where}: the gradient of out.sum() with respect to x should be "
                               f"mask / (1 - p):\n  {problem}")
    _passed(name, n_checks, thorough)


# =========================================================================== normalisation layers


def _construct(cls: Any, name: str, args: tuple, kwargs: dict) -> nn.Module:
    __tracebackhide__ = True
    if not callable(cls):
        raise CheckFailure(f"`{name}` should be a class (an nn.Module subclass); got {describe(cls)}")
    shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    module = call(cls, name, args, kwargs, f"constructing {name}({shown})")
    if not isinstance(module, _Module):
        raise CheckFailure(f"`{name}({shown})` should be an nn.Module (subclass nn.Module and call "
                           "super().__init__()); got {describe(module)}")
    return module


def _affine(module: nn.Module, name: str, size: int) -> tuple[nn.Parameter, nn.Parameter]:
    __tracebackhide__ = True
    params = dict(module.named_parameters(recurse=False))
    for attr in ("weight", "bias"):
        got = getattr(module, attr, None)
        if not isinstance(got, _Parameter):
            raise CheckFailure(f"`{name}` should have a learnable `self.{attr}`: an nn.Parameter of shape [{size}]; "
                               f"got {describe(got)}. Only nn.Parameter attributes are trained by an optimizer.")
        if tuple(got.shape) != (size,):
            raise CheckFailure(f"`{name}.{attr}` should have shape [{size}], got {tuple(got.shape)}")
        if attr not in params:
            raise CheckFailure(f"`{name}.{attr}` is not registered as a parameter of the module")
    expected_init = {"weight": 1.0, "bias": 0.0}
    for attr, value in expected_init.items():
        if not bool((getattr(module, attr).detach() == value).all()):
            raise CheckFailure(f"`{name}.{attr}` should start as all {value:g}s, so the layer begins as a pure "
                               "normalisation.")
    return module.weight, module.bias


def _grads_problem(name: str, mine: dict[str, torch.Tensor | None], theirs: dict[str, torch.Tensor],
                   where: str, rtol: float, atol: float) -> str | None:
    for key, expected in theirs.items():
        got = mine[key]
        if got is None:
            return (f"`{name}` on {where}: {key} got no gradient. Compute the output from {key} with ordinary "
                    "tensor operations (no .data, .detach() or torch.no_grad() on the path).")
        problem = compare(got.numpy(), expected.numpy(), rtol=rtol, atol=atol, what=key)
        if problem:
            return f"`{name}` gives wrong gradients on {where}:\n  {problem}"
    return None


@dataclass
class _NormCase:
    label: str
    size: int
    kwargs: dict
    train_batches: list[np.ndarray]
    eval_batches: list[np.ndarray] = field(default_factory=list)
    atol: float = 1e-4


def _batchnorm_cases(thorough: bool) -> list[_NormCase]:
    rng = rng_for(thorough, 11)

    def b(n: int, c: int, loc: float = 0.0, scale: float = 1.0) -> np.ndarray:
        return loc + scale * rng.normal(size=(n, c)) * rng.uniform(0.5, 2.0, size=c)

    cases = [_NormCase("4 features, batches of 8", 4, {}, [b(8, 4, 1.0), b(8, 4, -0.5, 2.0)], [b(5, 4)])]
    if thorough:
        cases += [_NormCase("eps=1e-3, momentum=0.3", 3, {"eps": 1e-3, "momentum": 0.3},
                            [b(16, 3), b(16, 3, 2.0), b(16, 3, -1.0, 0.1)], [b(4, 3), b(7, 3, 5.0)]),
                  _NormCase("large offsets and scales", 5, {}, [b(32, 5, 50.0, 10.0), b(32, 5, 40.0, 8.0)],
                            [b(6, 5, 45.0, 9.0)]),
                  _NormCase("the smallest batch (2 examples)", 6, {}, [b(2, 6), b(2, 6, 1.0)], [b(3, 6)]),
                  _NormCase("one feature; eval on a single example", 1, {"momentum": 0.5},
                            [b(10, 1, 3.0), b(12, 1, -3.0)], [b(1, 1)]),
                  _NormCase("many steps", 2, {}, [b(8, 2, float(i)) for i in range(6)], [b(8, 2)])]
    return cases


@_one_thread
def check_batchnorm_module(cls: Any, thorough: bool = False) -> None:
    """BatchNorm1d(num_features, eps=1e-5, momentum=0.1) on [N, C], compared with nn.BatchNorm1d in train and eval."""
    __tracebackhide__ = True
    name = "BatchNorm1d"
    guard()
    rng = rng_for(thorough, 12)
    cases = _batchnorm_cases(thorough)
    for i, case in enumerate(cases, 1):
        C = case.size
        mine = _construct(cls, name, (C,), dict(case.kwargs))
        weight, bias = _affine(mine, name, C)
        buffers = dict(mine.named_buffers(recurse=False))
        for buf in ("running_mean", "running_var"):
            if buf not in buffers:
                got = getattr(mine, buf, None)
                extra = (" It is a plain attribute: register it with `self.register_buffer(...)`, so it is saved in "
                         "state_dict() and moved by .to(device) with the rest of the model." if got is not None
                         else "")
                raise CheckFailure(f"`{name}` should keep `{buf}` as a buffer of shape [{C}].{extra}")
            if tuple(buffers[buf].shape) != (C,):
                raise CheckFailure(f"`{name}.{buf}` should have shape [{C}], got {tuple(buffers[buf].shape)}")
        theirs = nn.BatchNorm1d(C, **case.kwargs)
        with _no_grad():
            w, b = _t(rng.uniform(0.5, 2.0, size=C)), _t(rng.normal(size=C))
            weight.copy_(w), bias.copy_(b), theirs.weight.copy_(w), theirs.bias.copy_(b)
        mine.train(), theirs.train()
        for phase, batches in (("train", case.train_batches), ("eval", case.eval_batches)):
            if phase == "eval":
                mine.eval(), theirs.eval()
            for j, batch in enumerate(batches, 1):
                where = (f"case {i} of {len(cases)} ({case.label}), {phase} mode, batch {j} of shape "
                         f"{tuple(batch.shape)}")
                x_mine = _t(batch).requires_grad_(True)
                x_theirs = _t(batch).requires_grad_(True)
                x_copy = x_mine.detach().clone()
                rm_before = mine.running_mean.detach().clone()
                out = call(mine, name, (x_mine,), {}, where)
                expected = theirs(x_theirs)
                if not torch.equal(x_mine.detach(), x_copy):
                    raise CheckFailure(f"`{name}` changed its input in place on {where}")
                problem = compare(_numbers(out), expected.detach().numpy(), rtol=1e-4, atol=1e-5)
                if problem:
                    hint = ""
                    if phase == "eval":
                        batch_stats = F.batch_norm(x_copy, None, None, w, b, True, 0.0, theirs.eps)
                        if compare(_numbers(out), batch_stats.numpy(), rtol=1e-4, atol=1e-5) is None:
                            hint = ("\n  Likely cause: in eval mode you normalised with this batch's statistics. "
                                    "Use the running statistics (self.training tells you the mode).")
                    else:
                        n = batch.shape[0]
                        unbiased = (x_copy - x_copy.mean(0)) / torch.sqrt(x_copy.var(0) + theirs.eps) * w + b
                        std = x_copy.var(0, unbiased=False).sqrt()
                        outside = (x_copy - x_copy.mean(0)) / (std + theirs.eps) * w + b
                        if compare(_numbers(out), unbiased.numpy(), rtol=1e-4, atol=1e-5) is None:
                            hint = ("\n  Likely cause: you normalised with the unbiased variance (torch.var's default, "
                                    f"dividing by N-1 = {n - 1}). Normalise with the biased one: unbiased=False.")
                        elif compare(_numbers(out), outside.numpy(), rtol=1e-4, atol=1e-5) is None:
                            hint = "\n  Likely cause: eps goes inside the square root: sqrt(var + eps)."
                    raise CheckFailure(f"`{name}` does not match nn.BatchNorm1d on {where}:\n  {problem}{hint}")
                for buf in ("running_mean", "running_var"):
                    got_buf = getattr(mine, buf)
                    if got_buf.requires_grad:
                        raise CheckFailure(f"`{name}.{buf}` requires grad after {where}: update the running "
                                           "statistics inside `torch.no_grad()` (or from detached tensors), or "
                                           "autograd "
                                           "will try to backpropagate through every past batch.")
                    problem = compare(got_buf.detach().numpy(), getattr(theirs, buf).numpy(), rtol=1e-4, atol=1e-5,
                                      what=buf)
                    if problem:
                        hint = ""
                        if phase == "eval":
                            hint = "\n  Likely cause: the running statistics must not change in eval mode."
                        elif buf == "running_var":
                            hint = ("\n  Note: nn.BatchNorm1d stores the *unbiased* batch variance (N/(N-1) times the "
                                    "biased one) in running_var, while it normalises with the biased one.")
                        else:
                            m = theirs.momentum
                            rev = (m * rm_before + (1 - m) * x_copy.mean(0))
                            if compare(got_buf.detach().numpy(), rev.numpy(), rtol=1e-4, atol=1e-5) is None:
                                hint = (f"\n  Likely cause: momentum is the weight of the *new* batch: running = "
                                        f"(1 - momentum) * running + momentum * batch_mean (momentum={m}).")
                            elif torch.equal(got_buf.detach(), rm_before):
                                hint = "\n  Likely cause: the running statistics are never updated in training mode."
                        raise CheckFailure(f"`{name}` keeps the wrong {buf} after {where}:\n  {problem}{hint}")
                # gradients through the layer
                r = _t(rng.normal(size=batch.shape))
                for p in (weight, bias, theirs.weight, theirs.bias):
                    p.grad = None
                if not isinstance(out, torch.Tensor) or not out.requires_grad:
                    raise CheckFailure(f"`{name}`'s output does not require grad on {where}: gradients must flow "
                                       "back to the input, weight and bias.")
                (out * r).sum().backward()
                (expected * r).sum().backward()
                problem = _grads_problem(name, {"x.grad": x_mine.grad, "weight.grad": weight.grad,
                                                "bias.grad": bias.grad},
                                         {"x.grad": x_theirs.grad, "weight.grad": theirs.weight.grad,
                                          "bias.grad": theirs.bias.grad}, where, rtol=1e-3, atol=1e-4)
                if problem:
                    raise CheckFailure(problem)
    _passed(name, len(cases), thorough)


def _layernorm_cases(thorough: bool) -> list[_NormCase]:
    rng = rng_for(thorough, 13)
    cases = [_NormCase("[N, D] input", 6, {}, [rng.normal(size=(4, 6)) * 2 + 1]),
             _NormCase("[batch, seq, D] input", 5, {}, [rng.normal(size=(2, 3, 5))])]
    if thorough:
        cases += [_NormCase("eps=1e-3", 4, {"eps": 1e-3}, [rng.normal(size=(3, 4)) * 0.05]),
                  _NormCase("a single example", 8, {}, [rng.normal(size=(1, 8))]),
                  _NormCase("a large constant offset (1000 + noise)", 16, {}, [1000.0 + rng.normal(size=(4, 16))],
                            atol=2e-3),  # float32 resolves 1000 only to ~6e-5
                  _NormCase("wide features, very different scales", 64, {},
                            [rng.normal(size=(5, 64)) * rng.uniform(0.01, 100.0, size=64)]),
                  _NormCase("two features", 2, {}, [rng.normal(size=(6, 2))]),
                  _NormCase("[batch, heads, seq, D] input", 3, {}, [rng.normal(size=(2, 2, 3, 3))])]
    return cases


@_one_thread
def check_layernorm_module(cls: Any, thorough: bool = False) -> None:
    """LayerNorm(normalized_dim, eps=1e-5): normalise the last axis, compared with nn.LayerNorm."""
    __tracebackhide__ = True
    name = "LayerNorm"
    guard()
    rng = rng_for(thorough, 14)
    cases = _layernorm_cases(thorough)
    for i, case in enumerate(cases, 1):
        D = case.size
        mine = _construct(cls, name, (D,), dict(case.kwargs))
        weight, bias = _affine(mine, name, D)
        theirs = nn.LayerNorm(D, **case.kwargs)
        with _no_grad():
            w, b = _t(rng.uniform(0.5, 2.0, size=D)), _t(rng.normal(size=D))
            weight.copy_(w), bias.copy_(b), theirs.weight.copy_(w), theirs.bias.copy_(b)
        for batch in case.train_batches:
            where = f"case {i} of {len(cases)} ({case.label}, input of shape {tuple(batch.shape)})"
            x_mine = _t(batch).requires_grad_(True)
            x_theirs = _t(batch).requires_grad_(True)
            x_copy = x_mine.detach().clone()
            out = call(mine, name, (x_mine,), {}, where)
            expected = theirs(x_theirs)
            if not torch.equal(x_mine.detach(), x_copy):
                raise CheckFailure(f"`{name}` changed its input in place on {where}")
            problem = compare(_numbers(out), expected.detach().numpy(), rtol=1e-4, atol=case.atol)
            if problem:
                eps = theirs.eps
                xc = x_copy.double()
                mean = xc.mean(-1, keepdim=True)
                candidates = [
                    ("you normalised with the unbiased variance (torch.var's default divides by D-1). Use "
                     "unbiased=False (or correction=0).", (xc - mean) / torch.sqrt(xc.var(-1, keepdim=True) + eps)),
                    ("eps goes inside the square root: sqrt(var + eps).",
                     (xc - mean) / (xc.var(-1, unbiased=False, keepdim=True).sqrt() + eps)),
                    ("you normalised over the batch axis (that is batch norm); layer norm uses the statistics of "
                     "each example's own features, the last axis.",
                     (xc - xc.mean(0, keepdim=True)) / torch.sqrt(xc.var(0, unbiased=False, keepdim=True) + eps)),
                ]
                if xc.dim() > 2:
                    dims = tuple(range(1, xc.dim()))
                    candidates.append(("you normalised over every axis but the first; only the last axis (the "
                                       "features of one position) is normalised.",
                                       (xc - xc.mean(dims, keepdim=True)) /
                                       torch.sqrt(xc.var(dims, unbiased=False, keepdim=True) + eps)))
                hint = ""
                for text, normed in candidates:
                    wrong = (normed * w.double() + b.double()).numpy()
                    if (compare(wrong, expected.detach().numpy(), rtol=1e-4, atol=case.atol) is not None
                            and compare(_numbers(out), wrong, rtol=1e-4, atol=case.atol) is None):
                        hint = f"\n  Likely cause: {text}"
                        break
                else:
                    plain = (xc - mean) / torch.sqrt(xc.var(-1, unbiased=False, keepdim=True) + eps)
                    if compare(_numbers(out), plain.numpy(), rtol=1e-4, atol=1e-4) is None:
                        hint = "\n  Likely cause: you forgot the learned scale and shift: multiply by weight, add bias."
                    elif "offset" in case.label:
                        hint = ("\n  Likely cause: the variance computed as mean(x**2) - mean(x)**2 loses all its "
                                "precision in float32 when the values sit far from zero (catastrophic cancellation). "
                                "Subtract the mean first: mean((x - mean)**2).")
                raise CheckFailure(f"`{name}` does not match nn.LayerNorm on {where}:\n  {problem}{hint}")
            r = _t(rng.normal(size=batch.shape))
            for p in (weight, bias, theirs.weight, theirs.bias):
                p.grad = None
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                raise CheckFailure(f"`{name}`'s output does not require grad on {where}: gradients must flow back "
                                   "to the input, weight and bias.")
            (out * r).sum().backward()
            (expected * r).sum().backward()
            problem = _grads_problem(name, {"x.grad": x_mine.grad, "weight.grad": weight.grad, "bias.grad": bias.grad},
                                     {"x.grad": x_theirs.grad, "weight.grad": theirs.weight.grad,
                                      "bias.grad": theirs.bias.grad}, where, rtol=1e-3, atol=1e-4)
            if problem:
                raise CheckFailure(problem)
    _passed(name, len(cases), thorough)


# =========================================================================== learning-rate schedule


def _schedule_cases(thorough: bool) -> list[Case]:
    cases = [Case((100, 10, 1e-3, 0.0), "100 steps, 10 of warm-up, max_lr=1e-3, min_lr=0"),
             Case((20, 5, 0.1, 0.01), "20 steps, 5 of warm-up, max_lr=0.1, min_lr=0.01")]
    if thorough:
        cases += [Case((50, 0, 0.5, 0.0), "no warm-up (warmup_steps=0)"),
                  Case((30, 1, 1.0, 0.1), "a single warm-up step"),
                  Case((11, 10, 2.0, 0.5), "warm-up takes all but one step"),
                  Case((1000, 100, 3e-4, 3e-5), "a long run (1000 steps)"),
                  Case((40, 8, 0.2, 0.2), "min_lr equal to max_lr (constant after warm-up)")]
    return cases


def _over_steps(f: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """Evaluate a schedule at every step from 0 to 5 past the end; index i of the result is step i."""
    def schedule(total: int, warmup: int, max_lr: float, min_lr: float) -> np.ndarray:
        return np.array([float(f(s, total, warmup, max_lr, min_lr)) for s in range(total + 5)])
    return schedule


@_one_thread
def check_warmup_cosine_lr(fn: Callable[..., Any], thorough: bool = False) -> None:
    """warmup_cosine_lr(step, total_steps, warmup_steps, max_lr, min_lr=0.0) -> float."""
    __tracebackhide__ = True
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `warmup_cosine_lr`, got {describe(fn)}")

    def from_zero(s, total, warm, hi, lo):
        if s < warm:
            return hi * s / warm
        return ref.warmup_cosine_lr(s, total, warm, hi, lo)

    def whole_run(s, total, warm, hi, lo):
        if s < warm:
            return hi * (s + 1) / warm
        return lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * min(1.0, s / total)))

    def to_zero(s, total, warm, hi, lo):
        return ref.warmup_cosine_lr(s, total, warm, hi, 0.0)

    def unclamped(s, total, warm, hi, lo):
        if s < warm:
            return hi * (s + 1) / warm
        return lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))

    def no_half(s, total, warm, hi, lo):
        if s < warm:
            return hi * (s + 1) / warm
        return lo + (hi - lo) * math.cos(0.5 * math.pi * min(1.0, (s - warm) / max(1, total - warm)))

    def by_step(got: Any, expected: np.ndarray, case: Case) -> str | None:
        problem = compare(got, expected, rtol=1e-6, atol=1e-12, what="schedule")
        if problem is None:
            return None
        got = np.asarray(got, dtype=float)
        bad = np.flatnonzero(~np.isclose(got, expected, rtol=1e-6, atol=1e-12))
        step = int(bad[0])
        total, warmup = case.args[0], case.args[1]
        phase = "warm-up" if step < warmup else ("cosine decay" if step < total else "after total_steps")
        lo, hi = max(0, step - 1), min(len(expected), step + 2)
        rows = "\n    ".join(f"step {s}: expected {expected[s]:.6g}, got {got[s]:.6g}" for s in range(lo, hi))
        return f"first wrong at step {step} ({phase}); {len(bad)} of {len(expected)} steps differ\n    {rows}"

    run_check("warmup_cosine_lr", _over_steps(fn), _over_steps(ref.warmup_cosine_lr), _schedule_cases(thorough),
              compare_fn=by_step, thorough=thorough, mistakes=[
                  Mistake("your warm-up starts from 0 (step / warmup_steps). Step 0 should already train: use "
                          "(step + 1) / warmup_steps, so the last warm-up step reaches max_lr.",
                          _over_steps(from_zero)),
                  Mistake("the cosine should start when warm-up ends: progress = (step - warmup_steps) / "
                          "(total_steps - warmup_steps).", _over_steps(whole_run)),
                  Mistake("you decayed to 0 instead of min_lr.", _over_steps(to_zero)),
                  Mistake("past total_steps the cosine swings back up: clamp progress at 1 so the rate stays at "
                          "min_lr.", _over_steps(unclamped)),
                  Mistake("use the half-cosine min_lr + 0.5 * (max_lr - min_lr) * (1 + cos(pi * progress)).",
                          _over_steps(no_half)),
              ])


# =========================================================================== gradient clipping


_ClipCase = tuple[str, list[tuple[tuple[int, ...], float | None]], float | tuple[str, float], bool, torch.dtype]


def _clip_cases(thorough: bool) -> list[_ClipCase]:
    """(label, [(shape, gradient scale or None for no gradient)], max_norm, pass a generator, dtype).

    max_norm ("times the norm", f) means f times the case's own gradient norm."""
    cases = [("two tensors, norm well above max_norm", [((3, 4), 1.0), ((4,), 1.0)], 1.0, False, torch.float32),
             ("norm already below max_norm", [((5,), 0.1), ((2, 2), 0.1)], 10.0, False, torch.float32),
             ("model.parameters()-style generator, clipping needed", [((6, 3), 2.0), ((3,), 2.0), ((2, 6), 2.0)],
              0.5, True, torch.float32),
             ("a parameter without a gradient", [((4, 4), 1.0), ((4,), None), ((3,), 1.0)], 0.3, False,
              torch.float32)]
    if thorough:
        cases += [
                  ("one tensor dominates the norm", [((10,), 100.0), ((10,), 0.01)], 1.0, False, torch.float32),
                  ("huge gradients", [((8, 8), 1e6), ((8,), 1e6)], 5.0, True, torch.float32),
                  ("float64 gradients, many tensors", [((3,), 1.0)] * 7, 0.7, False, torch.float64),
                  ("a single tensor in a list", [((2, 3, 4), 3.0)], 2.0, False, torch.float32),
                  ("the norm just below max_norm (max_norm = 1.25 x the norm): nothing to clip",
                   [((4, 3), 1.0), ((3,), 1.0)], ("times the norm", 1.25), False, torch.float32),
                  ("tiny gradients (norm ~2e-5) and max_norm 1e-6: the 1e-6 in norm + 1e-6 matters",
                   [((5,), 1e-5), ((2, 2), 1e-5)], 1e-6, False, torch.float64)]
    return cases


def _clip_per_tensor(params, max_norm):
    params = list(params)
    total = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in params if p.grad is not None))
    for p in params:
        if p.grad is not None:
            n = float(p.grad.norm())
            if n > max_norm:
                p.grad.mul_(max_norm / n)
    return total


def _clip_always(params, max_norm):
    params = [p for p in params if p.grad is not None]
    total = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in params))
    for p in params:
        p.grad.mul_(max_norm / total)
    return total


def _clip_returns_after(params, max_norm):
    total = ref.clip_grad_norm(params, max_norm)
    return min(total, max_norm)


def _clip_sum_of_norms(params, max_norm):
    params = [p for p in params if p.grad is not None]
    total = sum(float(p.grad.norm()) for p in params)
    if total > max_norm:
        for p in params:
            p.grad.mul_(max_norm / total)
    return total


@_one_thread
def check_clip_grad_norm(fn: Callable[..., Any], thorough: bool = False) -> None:
    """clip_grad_norm(parameters, max_norm) -> total norm before clipping; grads scaled in place,
    as torch.nn.utils.clip_grad_norm_."""
    __tracebackhide__ = True
    name = "clip_grad_norm"
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    rng = rng_for(thorough, 15)
    cases = _clip_cases(thorough)
    for i, (label, spec, max_norm, as_generator, dtype) in enumerate(cases, 1):
        mine, theirs, originals = [], [], []
        for shape, scale in spec:
            values = _t(rng.normal(size=shape), dtype)
            a, b = values.clone().requires_grad_(True), values.clone().requires_grad_(True)
            if scale is not None:
                g = _t(rng.normal(size=shape) * scale, dtype)
                a.grad, b.grad = g.clone(), g.clone()
            mine.append(a), theirs.append(b), originals.append(None if scale is None else a.grad.clone())
        if isinstance(max_norm, tuple):   # relative to this case's own gradient norm
            max_norm = max_norm[1] * float(torch.sqrt(sum((o.double() ** 2).sum() for o in originals if o is not None)))
        shapes = ", ".join(f"{list(s)}" + ("" if sc is not None else " (no grad)") for s, sc in spec)
        where = (f"case {i} of {len(cases)} ({label}; {'a generator' if as_generator else 'a list'} of parameters "
                 f"with shapes {shapes}, max_norm={max_norm})")
        expected_total = float(_clip_grad_norm_(theirs, max_norm))
        arg = (p for p in mine) if as_generator else list(mine)
        got_total = call(fn, name, (arg, max_norm), {}, where)
        try:
            got_value = float(got_total)
        except (TypeError, ValueError):
            raise CheckFailure(f"`{name}` should return the total norm (a number) on {where}; got "
                               f"{describe(got_total)}") from None
        problem = compare(got_value, expected_total, rtol=1e-5, atol=1e-8, what="returned total norm")
        hints = []
        if problem:
            if abs(got_value - min(expected_total, max_norm)) <= 1e-5 * max(1.0, max_norm):
                hints.append("return the norm measured *before* clipping (it is what you log to spot spikes).")
            elif abs(got_value - sum(float(o.norm()) for o in originals if o is not None)) <= 1e-4 * got_value:
                hints.append("the total norm is sqrt(sum of every squared entry), i.e. the norm of the per-tensor "
                              "norms, not their sum.")
            raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}"
                               + (f"\n  Likely cause: {hints[0]}" if hints else ""))
        for j, (a, b, orig) in enumerate(zip(mine, theirs, originals)):
            if b.grad is None:
                if a.grad is not None:
                    raise CheckFailure(f"`{name}` gave parameter {j} a gradient on {where}; it had none. Skip "
                                       "parameters whose .grad is None.")
                continue
            problem = compare(a.grad.numpy(), b.grad.numpy(), rtol=1e-5, atol=1e-9,
                              what=f"gradient of parameter {j} after clipping")
            if problem:
                hint = ""
                if torch.equal(a.grad, orig) and expected_total > max_norm:
                    hint = ("\n  Likely cause: the gradients were not changed. Scale each p.grad in place "
                            "(p.grad.mul_(scale)) and note that `parameters` may be a generator you can only loop "
                            "over once: turn it into a list first.")
                elif expected_total <= max_norm:
                    hint = ("\n  Likely cause: when the total norm is already at most max_norm, leave the "
                            "gradients alone.")
                elif compare(float(a.grad.norm()), min(float(orig.norm()), max_norm), rtol=1e-4, atol=1e-8) is None:
                    hint = ("\n  Likely cause: you clipped each tensor separately. Clip by the *global* norm over all "
                            "parameters, so the direction of the full gradient is kept.")
                raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}{hint}")
    _passed(name, len(cases), thorough)


# =========================================================================== diagnostics


def _mlp(seed: int, dims: list[int], dtype: torch.dtype = torch.float32) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        lin = nn.Linear(a, b).to(dtype)
        with _no_grad():
            lin.weight.copy_(_t(rng.normal(size=(b, a)) / math.sqrt(a), dtype))
            lin.bias.copy_(_t(rng.normal(size=b) * 0.1, dtype))
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class _Encoder(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.encoder = _mlp(seed, [5, 8, 6])
        self.head = nn.Linear(6, 3)
        self.unused_head = nn.Linear(6, 2)  # never called: no gradient
        with _no_grad():
            self.head.weight.copy_(_t(np.random.default_rng(seed + 1).normal(size=(3, 6))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.encoder(x)))


def _grad_norm_models(thorough: bool) -> list[tuple[str, Callable[[], nn.Module]]]:
    def with_grads(make: Callable[[], nn.Module], x_shape: tuple[int, ...], scale: float = 1.0, seed: int = 0,
                   freeze: str | None = None, dtype: torch.dtype = torch.float32) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            model = make()
            if freeze:
                for n, p in model.named_parameters():
                    if n.startswith(freeze):
                        p.requires_grad_(False)
            x = _t(np.random.default_rng(seed).normal(size=x_shape), dtype)
            (model(x) ** 2).sum().mul(scale).backward()
            return model
        return build

    models = [("a 3-layer MLP", with_grads(lambda: _mlp(1, [4, 5, 3]), (6, 4))),
              ("a deeper MLP", with_grads(lambda: _mlp(2, [8, 16, 16, 16, 4]), (10, 8), seed=1)),
              ("a frozen first layer (requires_grad=False)", with_grads(lambda: _mlp(4, [3, 4, 4, 2]), (5, 3),
                                                                        seed=3, freeze="0."))]
    if thorough:
        models += [("nested modules with a head that is never used (no gradient)",
                    with_grads(lambda: _Encoder(3), (7, 5), seed=2)),
                   ("tiny gradients", with_grads(lambda: _mlp(5, [4, 4, 2]), (3, 4), scale=1e-8, seed=4)),
                   ("a float64 model", with_grads(lambda: _mlp(6, [3, 6, 2], torch.float64), (4, 3), seed=5,
                                                  dtype=torch.float64))]
    return models


def _dict_problem(got: Any, expected: dict[str, float], name: str, what: str, rtol: float, atol: float) -> str | None:
    if not isinstance(got, dict):
        return f"`{name}` should return a dict {{name: float}}; got {describe(got)}"
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if extra:
            parts.append(f"unexpected keys {extra}")
        return f"the keys are wrong: {'; '.join(parts)} (expected exactly {sorted(expected)}; {what})"
    for key, value in expected.items():
        try:
            g = float(got[key])
        except (TypeError, ValueError):
            return f"the value for {key!r} should be a number, got {describe(got[key])}"
        problem = compare(g, value, rtol=rtol, atol=atol, what=f"value for {key!r}")
        if problem:
            return problem
    return None


@_one_thread
def check_layer_grad_norms(fn: Callable[..., Any], thorough: bool = False) -> None:
    """layer_grad_norms(model) -> {parameter name: L2 norm of its .grad}, parameters without a grad left out."""
    __tracebackhide__ = True
    name = "layer_grad_norms"
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    models = _grad_norm_models(thorough)
    wrongs = [("you measured the parameters themselves; the diagnostic is the norm of p.grad.",
               lambda m: {n: float(p.detach().norm()) for n, p in m.named_parameters() if p.grad is not None}),
              ("you returned squared norms; take the square root (p.grad.norm()).",
               lambda m: {n: float(p.grad.norm()) ** 2 for n, p in m.named_parameters() if p.grad is not None}),
              ("that is the mean absolute gradient; the diagnostic is the L2 norm, p.grad.norm().",
               lambda m: {n: float(p.grad.abs().mean()) for n, p in m.named_parameters() if p.grad is not None})]
    for i, (label, build) in enumerate(models, 1):
        model, twin = _twins(build)
        expected = ref.layer_grad_norms(twin)
        grads_before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        where = f"case {i} of {len(models)} ({label})"
        got = call(fn, name, (model,), {}, where)
        for n, p in model.named_parameters():
            if n in grads_before and (p.grad is None or not torch.equal(p.grad, grads_before[n])):
                raise CheckFailure(f"`{name}` changed the gradient of {n!r} on {where}; a diagnostic only reads.")
        problem = _dict_problem(got, expected, name, "one entry per parameter that has a .grad, named as in "
                                "model.named_parameters()", rtol=1e-5, atol=1e-12)
        if problem:
            msg = f"`{name}` is wrong on {where}:\n  {problem}"
            if isinstance(got, dict) and set(got) == set(expected):
                for hint, wrong in wrongs:
                    if _dict_problem(got, wrong(twin), name, "", rtol=1e-5, atol=1e-12) is None:
                        msg += f"\n  Likely cause: {hint}"
                        break
            elif isinstance(got, dict) and set(expected) < set(got):
                msg += ("\n  Likely cause: parameters whose .grad is None (frozen, or not used in the forward pass) "
                        "have no gradient to measure: leave them out rather than reporting 0.")
            raise CheckFailure(msg)
    _passed(name, len(models), thorough)


class _Block(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.proj = _mlp(seed, [6, 10])
        self.act = nn.ReLU()
        self.out = nn.Linear(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.proj(x)))


def _dead_cases(thorough: bool) -> list[tuple[str, Callable[[], nn.Module], np.ndarray]]:
    def killed(model: nn.Module, layer: str, units: list[int]) -> nn.Module:
        lin = model.get_submodule(layer)
        with _no_grad():
            lin.bias[units] = -100.0  # these units never fire
        return model

    rng = rng_for(thorough, 16)
    cases = [("an MLP with 3 of 8 units dead in the first ReLU",
              lambda: killed(nn.Sequential(_mlp(1, [6, 8]), nn.ReLU(), _mlp(2, [8, 8]), nn.ReLU(), nn.Linear(8, 3)),
                             "0.0", [1, 4, 6]), rng.normal(size=(32, 6))),
             ("a healthy MLP", lambda: nn.Sequential(_mlp(3, [6, 12]), nn.ReLU(), nn.Linear(12, 2)),
              rng.normal(size=(20, 6)))]
    if thorough:
        cases += [("nested modules (named ReLUs inside a block)",
                   lambda: killed(nn.Sequential(_Block(4), nn.ReLU(), nn.Linear(4, 2)), "0.proj.0", [0, 2, 3, 9]),
                   rng.normal(size=(16, 6))),
                  ("a single example (every unit that outputs 0 counts as dead on this batch)",
                   lambda: nn.Sequential(_mlp(5, [6, 8]), nn.ReLU(), nn.Linear(8, 2)), rng.normal(size=(1, 6))),
                  ("units that are zero for most but not all examples",
                   lambda: nn.Sequential(_mlp(6, [1, 5]), nn.ReLU(), nn.Linear(5, 2)),
                   np.concatenate([-np.abs(rng.normal(size=(30, 1))), [[3.0]]])),
                  ("[batch, positions, features] activations",
                   lambda: killed(nn.Sequential(_mlp(7, [6, 10]), nn.ReLU(), nn.Linear(10, 3)), "0.0", [5]),
                   rng.normal(size=(4, 5, 6))),
                  ("a whole dead layer", lambda: killed(nn.Sequential(_mlp(8, [6, 4]), nn.ReLU(), _mlp(9, [4, 4]),
                                                                      nn.ReLU(), nn.Linear(4, 2)), "2.0", [0, 1, 2, 3]),
                   rng.normal(size=(12, 6)))]
    return cases


def _twins(build: Callable[[], nn.Module]) -> tuple[nn.Module, nn.Module]:
    """Two identical copies of a test model (any layer left at its random init is seeded the same way)."""
    out = []
    for _ in range(2):
        with _fork_rng(devices=[]):
            _manual_seed(0)
            out.append(build())
    return out[0], out[1]


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@_one_thread
def check_dead_relu_fractions(fn: Callable[..., Any], thorough: bool = False) -> None:
    """dead_relu_fractions(model, x) -> {ReLU module name: fraction of its units that are 0 for every example}."""
    __tracebackhide__ = True
    name = "dead_relu_fractions"
    guard()
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = _dead_cases(thorough)
    for i, (label, build, x_np) in enumerate(cases, 1):
        model, twin = _twins(build)
        x = _t(x_np)
        expected = ref.dead_relu_fractions(twin, x.clone())
        where = f"case {i} of {len(cases)} ({label}; x of shape {tuple(x.shape)})"
        hooks = _hook_count(model)
        model.train(i % 2 == 1)    # a model in train mode (mid-training) or in eval mode: either must come back so
        modes = [m.training for m in model.modules()]
        got = call(fn, name, (model, x), {}, where)
        if [m.training for m in model.modules()] != modes:
            raise CheckFailure(f"`{name}` changed the model's mode (train/eval) on {where}: it was in "
                               f"{'train' if modes[0] else 'eval'} mode. A diagnostic runs in the middle of training "
                               "and must leave the model as it found it; if you switch modes, remember "
                               "`was = model.training` and call model.train(was) before returning.")
        if _hook_count(model) != hooks:
            raise CheckFailure(f"`{name}` left {_hook_count(model) - hooks} hook(s) registered on the model on "
                               f"{where}. Keep the handle that register_forward_hook returns and call "
                               "handle.remove() when you are done (a try/finally is safest), or every later forward "
                               "pass keeps running your hook.")
        problem = _dict_problem(got, expected, name, "one entry per nn.ReLU module, named as in "
                                "model.named_modules()", rtol=1e-6, atol=1e-9)
        if problem:
            msg = f"`{name}` is wrong on {where}:\n  {problem}"
            if isinstance(got, dict) and set(got) == set(expected):
                acts = {}
                hs = [m.register_forward_hook(lambda mod, inp, out, n=n: acts.__setitem__(n, out.detach()))
                      for n, m in twin.named_modules() if isinstance(m, nn.ReLU)]
                with _no_grad():
                    twin(x)
                for h in hs:
                    h.remove()
                flat = {n: a.reshape(-1, a.shape[-1]) for n, a in acts.items()}
                for hint, wrong in [
                    ("that is the fraction of zero *entries*. A unit is dead when it is zero for *every* example: "
                     "reduce over the batch first ((acts == 0).all(dim=0)), then average over units.",
                     {n: float((a == 0).float().mean()) for n, a in flat.items()}),
                    ("you counted units that are zero for *some* example; dead means zero for *every* example.",
                     {n: float((a == 0).any(0).float().mean()) for n, a in flat.items()}),
                ]:
                    if _dict_problem(got, wrong, name, "", rtol=1e-6, atol=1e-9) is None:
                        msg += f"\n  Likely cause: {hint}"
                        break
            raise CheckFailure(msg)
    _passed(name, len(cases), thorough)


# =========================================================================== the mystery runs

_DIAGNOSIS_DIGESTS = {  # sha256 of "diagnose_runs:<run>:<diagnosis>"
    "A": "4f48b8b3b1ec099fb5d038ef23b987af635797f60e37d923d03b089486273584",
    "B": "0db4efb990fa011d069b8568c4cf0751eb074b316c19b884cddc024f7a24daf5",
    "C": "f5abdd0bb29bd416ec6557e2e307e9ee96a8e53182d862ad47e7373322f4f682",
    "D": "e2de1d741cf58f0d475d5e5093c9796a617b34e2ef2fc26a6376c5213bde7351",
    "E": "50c32b9ed924bf7f11a5abdbbe4a22a5ccf7bb11fd721dd0429b3b97d6d5173d",
}
_SYNONYMS = {"vanishing_gradients": "vanishing", "vanishing_gradient": "vanishing",
             "exploding_gradients": "exploding", "exploding_gradient": "exploding",
             "dead_relus": "dead_relu", "dead": "dead_relu", "dying_relu": "dead_relu", "dead_units": "dead_relu",
             "overfit": "overfitting", "overfitted": "overfitting", "fine": "healthy", "ok": "healthy"}


def _digest(run: str, label: str) -> str:
    return hashlib.sha256(f"diagnose_runs:{run}:{label}".encode()).hexdigest()


@_one_thread
def check_diagnose_runs(answer: Any, thorough: bool = False) -> None:
    """`diagnosis`: {"A": ..., ..., "E": ...}, each one of ref.DIAGNOSES, each used once."""
    __tracebackhide__ = True
    name = "diagnosis"
    guard()
    labels = ref.DIAGNOSES
    shown = ", ".join(f'"{d}"' for d in labels)
    if answer is None or answer is Ellipsis:
        raise NotAttempted(f"`{name}` is not attempted yet: set it to a dict like "
                           f'{{"A": "healthy", "B": ..., ...}} using {shown}.')
    if not isinstance(answer, dict):
        raise CheckFailure(f"`{name}` should be a dict from run letter to diagnosis; got {describe(answer)}")
    clean: dict[str, str] = {}
    for key, value in answer.items():
        run = str(key).strip().upper().replace("RUN", "").strip()
        if value is None or value is Ellipsis:
            raise NotAttempted(f"`{name}` is not finished yet: run {run} has no diagnosis.")
        label = str(value).strip().lower().replace("-", "_").replace(" ", "_")
        label = _SYNONYMS.get(label, label)
        if label not in labels:
            raise CheckFailure(f"`{name}`: {value!r} (run {run}) is not one of the diagnoses {shown}")
        clean[run] = label
    if sorted(clean) != sorted(_DIAGNOSIS_DIGESTS):
        raise CheckFailure(f"`{name}` should have exactly the keys {sorted(_DIAGNOSIS_DIGESTS)}; got {sorted(clean)}")
    used = sorted(clean.values())
    if used != sorted(labels):
        twice = sorted({d for d in used if used.count(d) > 1})
        raise CheckFailure(f"`{name}`: each diagnosis fits exactly one run, but you used {twice} more than once. "
                           "Look again at the runs you gave the same label: what tells them apart?")
    right = sum(_digest(run, label) == _DIAGNOSIS_DIGESTS[run] for run, label in clean.items())
    if right != len(clean):
        raise CheckFailure(f"`{name}`: {right} of {len(clean)} runs are diagnosed correctly. For each run, compare "
                           "the loss curves (flat? nan? train and validation drifting apart?), the size of the "
                           "first layers' gradients next to the last layers', and the dead-unit fractions.")
    print(f"✓ {name}: all {len(clean)} runs diagnosed correctly")
