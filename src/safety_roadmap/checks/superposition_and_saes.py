"""Checks for chapter 14_superposition_and_saes. Each `check_<exercise>(obj, thorough=False)`.

Toy-model and SAE exercises run on tensors generated here from fixed seeds. The training loop is
compared step for step with the reference on data generated inside the check, with the reference
loss passed in, so a slip in an earlier exercise is not blamed on the loop. The spliced-loss check
builds small TransformerLens models (imported lazily, by the model builders).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..reference import interpretability_tools as tl_ref
from ..reference import superposition_and_saes as ref
from ._core import (Case, CheckFailure, Mistake, call, check_choice, compare, describe, guard, likely_cause, rng_for,
                    run_check, trust)
from ._torch import one_thread, torch_check

__all__ = ["check_toy_forward", "check_importance_loss", "check_feature_dimensionality", "check_sparse_autoencoder",
           "check_sae_loss", "check_train_sae", "check_feature_recovery", "check_spliced_loss",
           "check_linear_model_quiz", "warm_up"]

trust(torch)


def _t(rng: np.random.Generator, *shape: int, scale: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(rng.normal(size=shape) * scale).to(dtype)


def _tensor_cmp(rtol: float, atol: float) -> Callable[[Any, Any, Case], str | None]:
    """Compare tensors (or tuples of them) and insist that the dtype of the expected answer is kept."""
    def cmp(got: Any, expected: Any, case: Case) -> str | None:
        exp_list = expected if isinstance(expected, tuple) else (expected,)
        got_list = got if isinstance(got, (tuple, list)) else (got,)
        if isinstance(expected, tuple) and (not isinstance(got, (tuple, list)) or len(got) != len(expected)):
            return f"expected a tuple of {len(expected)} values, got {describe(got)}"
        for i, (g, e) in enumerate(zip(got_list, exp_list)):
            what = f"output[{i}]" if isinstance(expected, tuple) else "output"
            if isinstance(e, torch.Tensor):
                if not isinstance(g, torch.Tensor):
                    return f"{what}: expected a torch.Tensor, got {describe(g)}"
                problem = compare(g.detach(), e.detach(), rtol=rtol, atol=atol, what=what)
                if problem:
                    return problem
                if g.dtype != e.dtype:
                    return (f"{what}: expected dtype {e.dtype} (the inputs' dtype), got {g.dtype}: build new "
                            "tensors with the inputs' dtype (torch.zeros_like, or dtype=x.dtype)")
            else:
                problem = compare(g, e, rtol=rtol, atol=atol, what=what)
                if problem:
                    return problem
        return None
    return cmp


# --------------------------------------------------------------------------- 1. the toy model

def _toy_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 14)
    cases = [Case((_t(rng, 2, 3, 7, scale=0.6), _t(rng, 2, 7, scale=0.3), torch.rand(2, 5, 7, dtype=torch.float32)),
                  "2 instances, d_hidden 3, 7 features, batch 5")]
    if thorough:
        sq = 6
        cases += [
            Case((_t(rng, 1, 2, 5), _t(rng, 1, 5, scale=0.5), torch.rand(1, 9, 5)), "1 instance, 5 features in 2 dims"),
            Case((_t(rng, 3, sq, sq), _t(rng, 3, sq, scale=0.4), torch.rand(3, sq, sq)),
                 "3 instances, d_hidden = n_features = batch = 6 (square, so a transposed W does not crash)"),
            Case((_t(rng, 2, 4, 10, dtype=torch.float64), _t(rng, 2, 10, dtype=torch.float64) - 0.5,
                  torch.rand(2, 3, 10, dtype=torch.float64)), "float64 inputs, negative biases"),
            Case((_t(rng, 4, 3, 8), torch.zeros(4, 8), torch.zeros(4, 6, 8)), "all-zero features and biases"),
            Case((_t(rng, 2, 3, 6).transpose(1, 2).contiguous().transpose(1, 2), _t(rng, 2, 6),
                  torch.rand(2, 4, 6)), "a non-contiguous W"),
        ]
    return cases


def _toy_mistakes() -> list[Mistake]:
    def no_relu(W, b, x):
        return torch.einsum("ibd,idn->ibn", torch.einsum("ibn,idn->ibd", x, W), W) + b[:, None, :]

    def bias_after_relu(W, b, x):
        return torch.relu(torch.einsum("ibd,idn->ibn", torch.einsum("ibn,idn->ibd", x, W), W)) + b[:, None, :]

    def relu_on_hidden(W, b, x):
        h = torch.relu(torch.einsum("ibn,idn->ibd", x, W))
        return torch.relu(torch.einsum("ibd,idn->ibn", h, W) + b[:, None, :])

    def transposed(W, b, x):
        Wt = W.transpose(1, 2)
        return torch.relu(torch.einsum("ibd,idn->ibn", torch.einsum("ibn,idn->ibd", x, Wt), Wt) + b[:, None, :])

    return [Mistake("the output needs the ReLU: ReLU(WᵀWx + b). Without it the model is linear and cannot use "
                    "superposition.", no_relu),
            Mistake("the bias goes inside the ReLU: ReLU(WᵀWx + b), not ReLU(WᵀWx) + b.", bias_after_relu),
            Mistake("the hidden layer h = Wx is linear; the only ReLU is on the output.", relu_on_hidden),
            Mistake("W is [inst, d_hidden, n_features]: compress with h_d = Σ_n W[d, n] x_n, then expand with "
                    "Wᵀ. You used W the other way round.", transposed)]


@torch_check
def check_toy_forward(fn: Callable[..., Any], thorough: bool = False) -> None:
    """toy_forward(W, b, x) -> ReLU(WᵀWx + b), [inst, batch, n_features]."""
    __tracebackhide__ = True
    run_check("toy_forward", fn, ref.toy_forward, _toy_cases(thorough), mistakes=_toy_mistakes(),
              compare_fn=_tensor_cmp(1e-5, 1e-6), thorough=thorough)


# --------------------------------------------------------------------------- 2. the loss

def _loss_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 15)
    imp = lambda n: 0.8 ** torch.arange(n, dtype=torch.float32)   # noqa: E731
    cases = [Case((torch.rand(2, 6, 5), torch.rand(2, 6, 5), imp(5)), "2 instances, batch 6, 5 features")]
    if thorough:
        n = 4
        cases += [
            Case((torch.rand(n, n, n), torch.rand(n, n, n), torch.tensor([1.0, 0.5, 0.25, 2.0])),
                 "instances = batch = features = 4 (a wrong axis does not crash here), unsorted importances"),
            Case((torch.rand(1, 7, 3, dtype=torch.float64), torch.rand(1, 7, 3, dtype=torch.float64),
                  torch.tensor([3.0, 1.0, 0.1], dtype=torch.float64)), "float64, one instance"),
            Case((torch.rand(3, 5, 6), torch.rand(3, 5, 6) * 1e-3, torch.ones(6)), "equal importances"),
            Case((torch.rand(2, 4, 3), _t(rng, 2, 4, 3), torch.tensor([1.0, 0.0, 5.0])),
                 "an importance of exactly 0"),
        ]
    return cases


def _loss_mistakes() -> list[Mistake]:
    return [Mistake("the importance multiplies each *feature* (the last axis), not each example: broadcast "
                    "importance [n_features] against [inst, batch, n_features].",
                    lambda x, xh, imp: (imp[:, None] * (x - xh) ** 2).sum(-1).mean(-1)),
            Mistake("sum the weighted squared errors over features, then average over the batch (you averaged "
                    "over features too).", lambda x, xh, imp: (imp * (x - xh) ** 2).mean(-1).mean(-1)),
            Mistake("average over the batch: the loss must not grow with the batch size.",
                    lambda x, xh, imp: (imp * (x - xh) ** 2).sum(-1).sum(-1)),
            Mistake("the importance weights the squared error once, it is not squared.",
                    lambda x, xh, imp: ((imp * (x - xh)) ** 2).sum(-1).mean(-1)),
            Mistake("return one loss per instance, shape [inst]: do not average over instances.",
                    lambda x, xh, imp: (imp * (x - xh) ** 2).sum(-1).mean())]


@torch_check
def check_importance_loss(fn: Callable[..., Any], thorough: bool = False) -> None:
    """importance_loss(x, x_hat, importance) -> [inst]."""
    __tracebackhide__ = True
    run_check("importance_loss", fn, ref.importance_loss, _loss_cases(thorough), mistakes=_loss_mistakes(),
              compare_fn=_tensor_cmp(1e-5, 1e-7), thorough=thorough)


# --------------------------------------------------------------------------- 3. feature dimensionality

def _polygon(k: int, scale: float = 1.0) -> torch.Tensor:
    angles = torch.arange(k, dtype=torch.float64) * 2 * torch.pi / k
    return scale * torch.stack([angles.cos(), angles.sin()])     # [2, k]


def _dim_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 16)
    cases = [Case((_t(rng, 3, 6),), "random W, 6 features in 3 dims")]
    if thorough:
        antipodal = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 2.0, -2.0]], dtype=torch.float64)
        cases += [
            Case((antipodal,), "two antipodal pairs of different lengths (each feature gets 1/2 a dimension)"),
            Case((_polygon(5, 1.3),), "a pentagon of length-1.3 features (each gets 2/5)"),
            Case((torch.cat([torch.eye(3), torch.zeros(3, 2)], dim=1) * torch.tensor([1.0, 2.0, 0.5, 1, 1]),),
                 "3 orthogonal features of lengths 1, 2, 0.5, and 2 ignored features (all-zero columns)"),
            Case((_t(rng, 5, 20, scale=0.1, dtype=torch.float64),), "float64, 20 features in 5 dims, small weights"),
            Case((_t(rng, 4, 6).T.contiguous().T,), "a non-contiguous W"),
            Case((torch.block_diag(_t(rng, 2, 3, dtype=torch.float64), torch.tensor([[1e-7]], dtype=torch.float64),
                                   torch.tensor([[1e-5]], dtype=torch.float64)),),
                 "a column of length 1e-7 (ignored: 0) and one of length 1e-5 (short, but represented: 1), "
                 "each on an axis of its own"),
        ]
    return cases


def _dim_mistakes() -> list[Mistake]:
    def unnormalised(W):
        norms = W.norm(dim=0)
        d = norms ** 2 / ((W.T @ W) ** 2).sum(1).clamp_min(1e-12)
        return torch.where(norms > 1e-6, d, torch.zeros_like(d))

    def without_self(W):
        norms = W.norm(dim=0)
        unit = W / norms.clamp_min(1e-12)
        ov = (unit.T @ W) ** 2
        ov = ov - torch.diag(torch.diagonal(ov))
        d = norms ** 2 / ov.sum(1).clamp_min(1e-12)
        return torch.where(norms > 1e-6, d, torch.zeros_like(d))

    def abs_not_square(W):
        norms = W.norm(dim=0)
        unit = W / norms.clamp_min(1e-12)
        d = norms ** 2 / (unit.T @ W).abs().sum(1).clamp_min(1e-12)
        return torch.where(norms > 1e-6, d, torch.zeros_like(d))

    def rows(W):
        return ref.feature_dimensionality(W.T)

    return [Mistake("divide W_i by its own length before the dot products: (Ŵ_i · W_j)² with Ŵ_i = W_i / ||W_i||. "
                    "Without it the answer changes when a feature's length changes.", unnormalised),
            Mistake("the sum over j includes j = i (the feature's overlap with itself, ||W_i||²).", without_self),
            Mistake("square the overlaps (Ŵ_i · W_j)², do not take their absolute value.", abs_not_square),
            Mistake("features are the *columns* of W [d_hidden, n_features], not its rows.", rows)]


def _dim_cmp(got: Any, expected: Any, case: Case) -> str | None:
    problem = _tensor_cmp(1e-4, 1e-6)(got, expected, case)
    if problem and isinstance(got, torch.Tensor) and got.shape == expected.shape and bool(torch.isnan(got).any()):
        problem += ("\n  A feature the model ignores (an all-zero column) gets dimensionality 0, not nan: guard the "
                    "divisions (clamp_min) and set those entries to 0.")
    return problem


@torch_check
def check_feature_dimensionality(fn: Callable[..., Any], thorough: bool = False) -> None:
    """feature_dimensionality(W [d_hidden, n_features]) -> [n_features]."""
    __tracebackhide__ = True
    run_check("feature_dimensionality", fn, ref.feature_dimensionality, _dim_cases(thorough),
              mistakes=_dim_mistakes(), compare_fn=_dim_cmp, thorough=thorough)


# --------------------------------------------------------------------------- 4. the SAE

_SAE_PARAMS = {"W_enc": lambda d, n: (d, n), "b_enc": lambda d, n: (n,), "W_dec": lambda d, n: (n, d),
               "b_dec": lambda d, n: (d,)}


def _random_state(d: int, n: int, seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """SAE weights unlike any initialisation: untied encoder, unit decoder rows, non-zero biases."""
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(n, d, generator=g, dtype=torch.float64)
    return {"W_enc": (torch.randn(d, n, generator=g, dtype=torch.float64) * 0.7).to(dtype),
            "b_enc": (torch.randn(n, generator=g, dtype=torch.float64) * 0.5 - 0.2).to(dtype),
            "W_dec": (W_dec / W_dec.norm(dim=1, keepdim=True)).to(dtype),
            "b_dec": (torch.randn(d, generator=g, dtype=torch.float64) * 0.8).to(dtype)}


def _reference_sae(d: int, n: int, seed: int, dtype: torch.dtype = torch.float32) -> ref.SparseAutoencoder:
    sae = ref.SparseAutoencoder(d, n, seed=seed).to(dtype)
    with torch.no_grad():
        for name, value in _random_state(d, n, seed + 100, dtype).items():
            getattr(sae, name).copy_(value)
    return sae


def _build_learner_sae(cls: Any, name: str, d: int, n: int, seed: int, where: str) -> Any:
    __tracebackhide__ = True
    sae = call(cls, name, (d, n), {"seed": seed}, where)
    params = dict(sae.named_parameters()) if isinstance(sae, torch.nn.Module) else {}
    for pname, shape in _SAE_PARAMS.items():
        if pname not in params:
            raise CheckFailure(f"`{name}({d}, {n})` has no parameter `{pname}`: keep the names of the given "
                               "__init__ (W_enc, b_enc, W_dec, b_dec), registered as nn.Parameter.")
        if tuple(params[pname].shape) != shape(d, n):
            raise CheckFailure(f"`{name}({d}, {n})`: `{pname}` has shape {tuple(params[pname].shape)}, "
                               f"expected {shape(d, n)}")
    return sae


def _sae_mistakes(state: dict[str, torch.Tensor]) -> list[tuple[str, Callable[[torch.Tensor], Any]]]:
    """(hint, x -> (x_hat, z)) for recognisable wrong SAEs with these weights."""
    W_enc, b_enc, W_dec, b_dec = (state[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec"))

    def fwd(z: torch.Tensor, dec_bias: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        return z @ W_dec + (b_dec if dec_bias else 0), z

    return [("the encoder bias goes inside the ReLU: ReLU((x - b_dec) W_enc + b_enc). Added after the ReLU it can "
             "make latents negative and switches no latent off.",
             lambda x: fwd(torch.relu((x - b_dec) @ W_enc) + b_enc)),
            ("subtract the decoder bias before encoding: ReLU((x - b_dec) W_enc + b_enc). b_dec is the SAE's "
             "estimate of the data's centre.", lambda x: fwd(torch.relu(x @ W_enc + b_enc))),
            ("the decoder adds b_dec back: x̂ = z W_dec + b_dec.",
             lambda x: fwd(torch.relu((x - b_dec) @ W_enc + b_enc), dec_bias=False)),
            ("decode with W_dec [n_latents, d_in] (z @ W_dec), not with the encoder's transpose.",
             lambda x: (torch.relu((x - b_dec) @ W_enc + b_enc) @ W_enc.T + b_dec,
                        torch.relu((x - b_dec) @ W_enc + b_enc)))]


def _sae_inputs(rng: np.random.Generator, d: int, dtype: torch.dtype) -> list[tuple[str, torch.Tensor]]:
    return [("a batch of 6 inputs", _t(rng, 6, d, dtype=dtype)),
            ("one input with extra leading axes [2, 3, d_in]", _t(rng, 2, 3, d, dtype=dtype))]


def check_sparse_autoencoder(cls: Any, thorough: bool = False) -> None:
    """SparseAutoencoder(d_in, n_latents, seed): encode, decode and forward with the given weights."""
    __tracebackhide__ = True
    guard()
    name = "SparseAutoencoder"
    if not callable(cls):
        raise CheckFailure(f"expected the class `{name}`, got {describe(cls)}")
    specs = [(4, 7, 0, torch.float32)]
    if thorough:
        specs += [(6, 3, 1, torch.float32), (3, 12, 2, torch.float64), (5, 5, 3, torch.float32)]
    n = 0
    with one_thread(), torch.random.fork_rng(devices=[]):
        for i, (d, k, seed, dtype) in enumerate(specs, 1):
            where = f"case {i} of {len(specs)} (d_in {d}, n_latents {k}, {str(dtype).replace('torch.', '')})"
            sae = _build_learner_sae(cls, name, d, k, seed, where)
            state = _random_state(d, k, seed + 100, dtype)
            sae = sae.to(dtype)
            with torch.no_grad():
                for pname, value in state.items():
                    getattr(sae, pname).copy_(value)
            expected_sae = _reference_sae(d, k, seed, dtype)
            rng = np.random.default_rng(seed)
            for label, x in _sae_inputs(rng, d, dtype) if thorough else _sae_inputs(rng, d, dtype)[:1]:
                n += 1
                with torch.no_grad():
                    exp = expected_sae(x)
                    z_exp = exp[1]
                    enc = call(sae.encode, f"{name}.encode", (x.clone(),), None, f"{where}, {label}")
                    problem = _tensor_cmp(1e-5, 1e-6)(enc, z_exp, Case((), ""))
                    part = "encode(x)"
                    if problem is None:
                        dec = call(sae.decode, f"{name}.decode", (z_exp.clone(),), None, f"{where}, {label}")
                        problem = _tensor_cmp(1e-5, 1e-6)(dec, exp[0], Case((), ""))
                        part = "decode(z)"
                    if problem is None:
                        got = call(sae, name, (x.clone(),), None, f"{where}, {label}")
                        problem = _tensor_cmp(1e-5, 1e-6)(got, exp, Case((), ""))
                        part = "sae(x), which should return (x_hat, z)"
                if problem:
                    cause = ""
                    for hint, wrong in _sae_mistakes(state):
                        w = wrong(x)
                        target = w[1] if part.startswith("encode") else (w[0] if part.startswith("decode") else w)
                        got_now = enc if part.startswith("encode") else (dec if part.startswith("decode") else got)
                        if _tensor_cmp(1e-5, 1e-6)(got_now, target, Case((), "")) is None:
                            cause = f"\n  Likely cause: {hint}"
                            break
                    raise CheckFailure(f"`{name}` is wrong on {where}, {label}, in {part}:\n  {problem}{cause}")
            fresh = call(cls, name, (d, k), {"seed": seed}, where)
            init = ref.SparseAutoencoder(d, k, seed=seed)
            for pname in _SAE_PARAMS:
                if compare(getattr(fresh, pname).detach(), getattr(init, pname).detach(), rtol=1e-6, atol=1e-7) is not None:
                    raise CheckFailure(f"`{name}({d}, {k}, seed={seed})`: a fresh SAE's `{pname}` differs from the "
                                       "given __init__'s (unit-norm decoder rows, the encoder their transpose, zero "
                                       "biases). Keep the __init__ as it was given.")
    print(f"✓ {name}: all {n} {'thorough' if thorough else 'quick'} checks passed")


# --------------------------------------------------------------------------- 5. the SAE loss

class _SignedSAE(torch.nn.Module):
    """An SAE variant whose encoder has no ReLU, so latents can be negative."""

    def __init__(self, sae: Any) -> None:
        super().__init__()
        self.inner = sae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (x - self.inner.b_dec) @ self.inner.W_enc + self.inner.b_enc
        return self.inner.decode(z), z

    def __deepcopy__(self, memo: dict) -> "_SignedSAE":
        return _SignedSAE(copy.deepcopy(self.inner, memo))


def _loss_sae_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 17)
    cases = [Case((_reference_sae(4, 8, 0), _t(rng, 10, 4), 0.1), "d_in 4, 8 latents, batch 10, l1_coeff 0.1")]
    if thorough:
        cases += [
            Case((_reference_sae(5, 3, 1), _t(rng, 7, 5, scale=2.0), 1.0), "d_in 5, 3 latents, l1_coeff 1.0"),
            Case((_reference_sae(3, 9, 2, torch.float64), _t(rng, 4, 3, dtype=torch.float64), 0.003),
                 "float64, l1_coeff 0.003"),
            Case((_reference_sae(6, 6, 3), _t(rng, 6, 6), 0.0), "l1_coeff 0 (the loss is the MSE alone)"),
            Case((_reference_sae(2, 5, 4), _t(rng, 1, 2, scale=0.1), 2.5), "a batch of one, l1_coeff 2.5"),
            Case((_SignedSAE(_reference_sae(4, 6, 5)), _t(rng, 5, 4), 0.5),
                 "an SAE without the ReLU, whose latents can be negative (the L1 norm needs |z|)"),
        ]
    return cases


def _sae_loss_mistakes() -> list[Mistake]:
    def parts(sae, x):
        with torch.no_grad():
            return sae(x)

    def l1_on_output(sae, x, c):
        xh, z = parts(sae, x)
        mse = ((xh - x) ** 2).sum(-1).mean()
        l1 = xh.abs().sum(-1).mean()
        return mse + c * l1, mse, l1

    def mse_mean_dims(sae, x, c):
        xh, z = parts(sae, x)
        mse = ((xh - x) ** 2).mean()
        l1 = z.abs().sum(-1).mean()
        return mse + c * l1, mse, l1

    def l1_mean_latents(sae, x, c):
        xh, z = parts(sae, x)
        mse = ((xh - x) ** 2).sum(-1).mean()
        l1 = z.abs().mean()
        return mse + c * l1, mse, l1

    def no_coeff(sae, x, c):
        xh, z = parts(sae, x)
        mse = ((xh - x) ** 2).sum(-1).mean()
        l1 = z.abs().sum(-1).mean()
        return mse + l1, mse, l1

    def l0_not_l1(sae, x, c):
        xh, z = parts(sae, x)
        mse = ((xh - x) ** 2).sum(-1).mean()
        l0 = (z > 0).to(z.dtype).sum(-1).mean()
        return mse + c * l0, mse, l0

    return [Mistake("the sparsity penalty is on the latents z (what should be sparse), not on the reconstruction x̂.",
                    l1_on_output),
            Mistake("sum the squared error over the d_in dimensions, then average over the batch.", mse_mean_dims),
            Mistake("sum |z| over the latents, then average over the batch.", l1_mean_latents),
            Mistake("multiply the L1 term by l1_coeff.", no_coeff),
            Mistake("use the L1 norm |z|, which has a gradient; counting active latents (L0) has none.", l0_not_l1)]


def _sae_loss_cmp(got: Any, expected: Any, case: Case) -> str | None:
    problem = _tensor_cmp(1e-5, 1e-6)(got, expected, case)
    if problem is None and not getattr(got[0], "requires_grad", False):
        return ("the loss is not connected to the SAE's parameters (requires_grad is False): compute it with "
                "torch operations on the SAE's output, without .item(), .detach() or torch.no_grad().")
    return problem


@torch_check
def check_sae_loss(fn: Callable[..., Any], thorough: bool = False) -> None:
    """sae_loss(sae, x, l1_coeff) -> (loss, mse, l1), scalars."""
    __tracebackhide__ = True
    run_check("sae_loss", fn, ref.sae_loss, _loss_sae_cases(thorough), mistakes=_sae_loss_mistakes(),
              compare_fn=_sae_loss_cmp, thorough=thorough)


# --------------------------------------------------------------------------- 6. the training loop

def _sae_data(n: int, d: int, n_true: int, seed: int) -> torch.Tensor:
    """Sparse non-negative combinations of `n_true` random unit directions, plus an offset. -> [n, d]"""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_true, d, generator=g)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    coeffs = torch.rand(n, n_true, generator=g) * (torch.rand(n, n_true, generator=g) < 0.2)
    return coeffs @ dirs + 0.3


def _variant_loop(sae: Any, data: torch.Tensor, l1_coeff: float, n_steps: int, batch_size: int = 256,
                  lr: float = 1e-3, seed: int = 0, loss_fn: Callable[..., Any] = ref.sae_loss, *,
                  normalise: bool = True, zero_grad: bool = True, reset: bool = True) -> dict[str, Any]:
    """The reference loop with one step left out: the known mistakes of the training exercise."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    since = torch.zeros(sae.W_dec.shape[0], dtype=torch.long)
    losses = []
    for _ in range(n_steps):
        x = data[torch.randint(0, data.shape[0], (batch_size,), generator=g)]
        loss = loss_fn(sae, x, l1_coeff)[0]
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
        if normalise:
            ref.normalize_decoder(sae)
        with torch.no_grad():
            fired = (sae.encode(x) > 0).any(0)
        since = torch.where(fired, torch.zeros_like(since), since + 1) if reset else since + (~fired).long()
        losses.append(loss.item())
    return {"loss": losses, "steps_since_fired": since}


def _train_mistakes() -> list[tuple[str, dict[str, bool]]]:
    return [("the decoder rows must be projected back to unit norm after every optimiser step. Without it the "
             "SAE games the L1 penalty: it shrinks the latents and grows the decoder rows to match.",
             {"normalise": False}),
            ("call optimizer.zero_grad() every step: without it gradients from earlier steps accumulate.",
             {"zero_grad": False}),
            ("a latent that fires must reset its steps_since_fired to 0; you only stopped counting it.",
             {"reset": False})]


def _train_cases(thorough: bool) -> list[tuple[str, tuple, dict]]:
    """(label, (d, n_latents, sae_seed, data_seed, n_data), kwargs for train_sae)."""
    cases = [("d_in 4, 6 latents, 5 steps, batch 16", (4, 6, 0, 1, 64),
              dict(l1_coeff=0.05, n_steps=5, batch_size=16, lr=1e-2, seed=0))]
    if thorough:
        cases += [("d_in 3, 8 latents, 12 steps, batch 8, lr 3e-2, seed 5", (3, 8, 1, 2, 40),
                   dict(l1_coeff=0.2, n_steps=12, batch_size=8, lr=3e-2, seed=5)),
                  ("d_in 5, 4 latents, l1_coeff 0, batch larger than the data", (5, 4, 2, 3, 10),
                   dict(l1_coeff=0.0, n_steps=6, batch_size=32, lr=1e-2, seed=1)),
                  ("a huge l1_coeff (most latents should die), 10 steps", (4, 5, 3, 4, 50),
                   dict(l1_coeff=50.0, n_steps=10, batch_size=16, lr=5e-2, seed=2)),
                  ("the same case with another seed (a different batch order)", (4, 6, 0, 1, 64),
                   dict(l1_coeff=0.05, n_steps=5, batch_size=16, lr=1e-2, seed=9)),
                  ("the defaults: batch_size 256, lr 1e-3, seed 0", (4, 6, 4, 5, 300),
                   dict(l1_coeff=0.1, n_steps=4))]
    return cases


def _compare_training(got: Any, expected: dict[str, Any], sae_got: Any, sae_exp: Any) -> str | None:
    if not isinstance(got, dict) or "loss" not in got or "steps_since_fired" not in got:
        return f"expected a dict with keys 'loss' and 'steps_since_fired', got {describe(got)}"
    losses = got["loss"]
    if not isinstance(losses, (list, tuple)) or not all(isinstance(v, float) for v in losses):
        return ("'loss' should be a list of Python floats, one per step (use loss.item(), which also keeps the "
                "list from holding the graph of every step)")
    for pname in ("W_dec", "W_enc", "b_enc", "b_dec"):
        g_p, e_p = getattr(sae_got, pname).detach(), getattr(sae_exp, pname).detach()
        problem = compare(g_p, e_p, rtol=1e-4, atol=1e-5, what=f"the trained {pname}")
        if problem:
            return problem
    problem = compare(torch.tensor(losses), torch.tensor(expected["loss"]), rtol=1e-4, atol=1e-6,
                      what="the list of per-step losses")
    if problem:
        return problem
    since = got["steps_since_fired"]
    if not isinstance(since, torch.Tensor) or since.dtype != torch.long:
        return f"'steps_since_fired' should be a LongTensor [n_latents], got {describe(since)}"
    return compare(since, expected["steps_since_fired"], what="steps_since_fired")


def check_train_sae(fn: Callable[..., Any], thorough: bool = False) -> None:
    """train_sae(sae, data, l1_coeff, n_steps, batch_size, lr, seed, loss_fn) trains in place, step for step."""
    __tracebackhide__ = True
    guard()
    name = "train_sae"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = _train_cases(thorough)
    with one_thread(), torch.random.fork_rng(devices=[]):
        for i, (label, (d, k, sae_seed, data_seed, n_data), kwargs) in enumerate(cases, 1):
            where = f"case {i} of {len(cases)} ({label})"
            data = _sae_data(n_data, d, 3, data_seed)
            kwargs = dict(kwargs, loss_fn=ref.sae_loss)
            sae_exp = ref.SparseAutoencoder(d, k, seed=sae_seed)
            expected = ref.train_sae(sae_exp, data.clone(), **kwargs)
            sae_got = ref.SparseAutoencoder(d, k, seed=sae_seed)
            torch.manual_seed(12345)
            rng_state = torch.get_rng_state()
            pristine = data.clone()
            got = call(fn, name, (sae_got, data), kwargs, where)
            if not torch.equal(torch.get_rng_state(), rng_state):
                raise CheckFailure(f"`{name}` used or reset torch's global random generator on {where}. Draw every "
                                   "batch from your own torch.Generator seeded with `seed` (generator=g), so that "
                                   "training is reproducible and does not disturb the rest of the notebook.")
            if not torch.equal(data, pristine):
                raise CheckFailure(f"`{name}` changed `data` in place on {where}: sample batches from it, do not "
                                   "write into it.")
            norms = sae_got.W_dec.detach().norm(dim=1)
            problem = None
            if not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
                problem = (f"after training, the decoder rows have norms {ref_preview(norms)}, not 1: project them "
                           "back to unit norm after every optimiser step, inside torch.no_grad().")
            problem = problem or _compare_training(got, expected, sae_got, sae_exp)
            if problem:
                cause = _train_cause(got, d, k, sae_seed, data, kwargs)
                raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}{cause}\n  (The check passes the "
                                   "course's `sae_loss` as loss_fn, so this is about the loop itself.)")
    print(f"✓ {name}: all {len(cases)} {'thorough' if thorough else 'quick'} checks passed")


def ref_preview(t: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in t[:6].tolist()) + (", ...]" if len(t) > 6 else "]")


def _train_cause(got: Any, d: int, k: int, sae_seed: int, data: torch.Tensor, kwargs: dict) -> str:
    if isinstance(got, dict) and isinstance(got.get("loss"), list) and len(got["loss"]) != kwargs["n_steps"]:
        return f"\n  Likely cause: 'loss' has {len(got['loss'])} entries; take exactly n_steps = {kwargs['n_steps']} steps."
    for hint, flags in _train_mistakes():
        sae = ref.SparseAutoencoder(d, k, seed=sae_seed)
        out = _variant_loop(sae, data.clone(), **kwargs, **flags)
        try:
            same = (compare(torch.tensor(got["loss"]), torch.tensor(out["loss"]), rtol=1e-4, atol=1e-6) is None
                    and compare(got["steps_since_fired"], out["steps_since_fired"]) is None)
        except Exception:
            same = False
        if same:
            return f"\n  Likely cause: {hint}"
    return ("\n  Follow the recipe exactly: a torch.Generator seeded with `seed` draws every batch with "
            "torch.randint(0, len(data), (batch_size,), generator=g); one Adam optimiser over sae.parameters() "
            "with lr; zero_grad, backward, step; then normalise the decoder rows; then update steps_since_fired.")


# --------------------------------------------------------------------------- 7. feature recovery

def _recovery_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 18)
    true = _t(rng, 5, 4) * torch.tensor([[0.2], [3.0], [1.0], [0.5], [7.0]])
    dec = torch.cat([true[[1, 4]] + 0.05 * _t(rng, 2, 4), _t(rng, 6, 4) * 4.0])
    cases = [Case((dec, true, 0.9), "8 decoder rows, 5 true features of very different lengths")]
    if thorough:
        t2 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
        d2 = torch.tensor([[3.0, 4.0], [0.0, -2.0], [-5.0, -5.0], [-0.1, 0.05]], dtype=torch.float64)
        cases += [
            Case((d2, t2, 0.6), "a cosine of exactly 0.6 at threshold 0.6 (counts as recovered), antipodal rows"),
            Case((d2, t2, 0.99), "the same at threshold 0.99"),
            Case((_t(rng, 3, 6) * 0.01, _t(rng, 9, 6) * 100.0, 0.5),
                 "more true features (9) than latents (3), tiny decoder, huge features"),
            Case((-true, true, 0.5), "a decoder that points exactly away from every feature"),
            Case((torch.cat([true[[0, 2, 3]] * 2.5, _t(rng, 10, 4)]), true, 0.95),
                 "3 features recovered exactly (cosine 1)"),
            Case((torch.cat([true[[1]] + 0.3 * _t(rng, 1, 4), true[[2]] + 0.02 * _t(rng, 1, 4)]), true),
                 "the default threshold (0.9), one near match and one rough match"),
            Case((torch.cat([torch.zeros(1, 4), -true]), true, 0.5),
                 "an all-zero decoder row (cosine 0 with everything) among rows pointing away"),
        ]
    return cases


def _recovery_cmp(got: Any, expected: Any, case: Case) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a tuple (max_cos [n_true], n_recovered), got {describe(got)}"
    problem = _tensor_cmp(1e-5, 1e-6)(got[0], expected[0], case)
    if problem:
        return "max_cos: " + problem
    n = got[1].item() if isinstance(got[1], torch.Tensor) and got[1].numel() == 1 else got[1]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) != expected[1]:
        return f"n_recovered: expected {expected[1]} (features whose max cosine is >= threshold), got {got[1]!r}"
    return None


def _recovery_mistakes() -> list[Mistake]:
    def unnormalised(dec, true, thr):
        best = (true @ dec.T).max(dim=1).values
        return best, int((best >= thr).sum())

    def only_decoder(dec, true, thr):
        best = (true @ (dec / dec.norm(dim=-1, keepdim=True)).T).max(dim=1).values
        return best, int((best >= thr).sum())

    def per_latent(dec, true, thr):
        best, _ = ref.feature_recovery(true, dec, thr)
        return best, int((best >= thr).sum())

    def strict(dec, true, thr):
        best, _ = ref.feature_recovery(dec, true, thr)
        return best, int((best > thr).sum())

    def absolute(dec, true, thr):
        d = dec / dec.norm(dim=-1, keepdim=True)
        t = true / true.norm(dim=-1, keepdim=True)
        best = (t @ d.T).abs().max(dim=1).values
        return best, int((best >= thr).sum())

    return [Mistake("cosine similarity divides by both lengths: normalise the decoder rows and the true directions "
                    "before the dot products.", unnormalised),
            Mistake("normalise the true directions as well as the decoder rows.", only_decoder),
            Mistake("take the max over latents for each *true feature* (one value per true feature).", per_latent),
            Mistake("a feature whose best cosine equals the threshold counts as recovered (>=).", strict),
            Mistake("keep the sign: SAE latents are non-negative, so a decoder row pointing away from a feature "
                    "cannot represent it. Do not take the absolute value of the cosine.", absolute)]


@torch_check
def check_feature_recovery(fn: Callable[..., Any], thorough: bool = False) -> None:
    """feature_recovery(W_dec, true_dirs, threshold) -> (max_cos [n_true], n_recovered)."""
    __tracebackhide__ = True
    run_check("feature_recovery", fn, ref.feature_recovery, _recovery_cases(thorough), mistakes=_recovery_mistakes(),
              compare_fn=_recovery_cmp, thorough=thorough)


# --------------------------------------------------------------------------- 8. spliced-in loss

_MODEL_SPECS = {"A": dict(n_layers=2, n_heads=4, d_head=8, d_vocab=20, n_ctx=16, seed=3),
                "B": dict(n_layers=3, n_heads=4, d_head=8, d_vocab=20, n_ctx=16, seed=4)}


def _model(key: str) -> Any:
    return tl_ref.pooled(tl_ref.small_model, **_MODEL_SPECS[key])


def warm_up() -> None:
    """Boot the check models once (the first TransformerLens import and boot take seconds)."""
    for key in _MODEL_SPECS:
        _model(key)


def _spliced_cases(thorough: bool) -> list[tuple[str, Callable[[], tuple]]]:
    def build(key: str, layer: int, batch: int, seq: int, seed: int) -> Callable[[], tuple]:
        def make() -> tuple:
            model = _model(key)
            g = torch.Generator().manual_seed(seed)
            tokens = torch.randint(0, model.cfg.d_vocab, (batch, seq), generator=g)
            return model, _reference_sae(model.cfg.d_model, 24, seed), tokens, layer
        return make

    cases = [("a 2-layer model, splice before layer 1", build("A", 1, 3, 10, 0))]
    if thorough:
        cases += [("a 3-layer model, splice before layer 1", build("B", 1, 2, 12, 1)),
                  ("a 3-layer model, splice before layer 2", build("B", 2, 4, 8, 2)),
                  ("a 2-layer model, splice before layer 0 (the embeddings)", build("A", 0, 2, 16, 3))]
    return cases


def _spliced_mistakes() -> list[tuple[str, Callable[..., float]]]:
    def at(model, sae, tokens, hook_name):
        with torch.no_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=[(hook_name, lambda r, hook: sae(r)[0])])
        return ref.next_token_loss(logits, tokens).item()

    def clean(model, sae, tokens, layer):
        with torch.no_grad():
            return ref.next_token_loss(model(tokens), tokens).item()

    return [("the hook is on the wrong layer: splice into f\"blocks.{layer}.hook_resid_pre\" for the `layer` you "
             "were given (one layer later is resid_pre of layer + 1).",
             lambda m, s, t, layer: at(m, s, t, f"blocks.{layer + 1}.hook_resid_pre")
             if layer + 1 < m.cfg.n_layers else float("nan")),
            ("the hook is on the wrong layer: splice into resid_pre of `layer` itself, not of layer - 1.",
             lambda m, s, t, layer: at(m, s, t, f"blocks.{layer - 1}.hook_resid_pre") if layer > 0 else float("nan")),
            ("resid_post of `layer` is what leaves that layer; the SAE reads resid_pre, what enters it.",
             lambda m, s, t, layer: at(m, s, t, f"blocks.{layer}.hook_resid_post")),
            ("the hook must *return* the reconstruction (sae(resid)[0]) so that it replaces the activation; your "
             "loss equals the clean model's.", clean),
            ("the loss predicts token t+1 from position t: drop the last position's logits and the first token.",
             lambda m, s, t, layer: _unshifted(m, s, t, layer))]


def _unshifted(model: Any, sae: Any, tokens: torch.Tensor, layer: int) -> float:
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre",
                                                          lambda r, hook: sae(r)[0])])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1)).item()


def check_spliced_loss(fn: Callable[..., Any], thorough: bool = False) -> None:
    """spliced_loss(model, sae, tokens, layer) -> float."""
    __tracebackhide__ = True
    guard()
    name = "spliced_loss"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = _spliced_cases(thorough)
    with one_thread(), torch.random.fork_rng(devices=[]):
        for i, (label, build) in enumerate(cases, 1):
            where = f"case {i} of {len(cases)} ({label})"
            args = build()
            model, _, tokens, _ = args
            expected = ref.spliced_loss(*args)
            with torch.no_grad():
                clean_before = model(tokens)
            got = call(fn, name, args, None, where)
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            if not isinstance(got, (float, int)) or isinstance(got, bool):
                raise CheckFailure(f"`{name}` should return a Python float (use .item()), got {describe(got)}")
            problem = compare(float(got), expected, rtol=1e-4, atol=1e-5, what="spliced loss")
            if problem is None:
                with torch.no_grad():
                    if not torch.allclose(model(tokens), clean_before, atol=1e-5):
                        problem = ("after your function returned, the model no longer gives its clean outputs: a "
                                   "hook stayed attached. Use model.run_with_hooks(...), which removes it.")
            if problem:
                cause = likely_cause([Mistake(h, f) for h, f in _spliced_mistakes()], float(got),
                                     lambda m: m.fn(*build()),
                                     lambda g, w: compare(g, w, rtol=1e-4, atol=1e-5))
                raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}{cause}")
    print(f"✓ {name}: all {len(cases)} {'thorough' if thorough else 'quick'} checks passed")


# --------------------------------------------------------------------------- concept question

# sha256 of "linear_model_quiz:<letter>" (see `choice_digest`)
_LINEAR_DIGEST = "0290870489f5ad22ef006b22c06ab9f9d1cc18276f37128f571d802c72be0189"


def check_linear_model_quiz(answer: Any, thorough: bool = False) -> None:
    """Without the ReLU, what does the toy model do with 20 sparse features in 5 dimensions?"""
    __tracebackhide__ = True
    check_choice("linear_model_quiz", answer, _LINEAR_DIGEST, "abcd")
