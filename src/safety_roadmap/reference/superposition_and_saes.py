"""Reference solutions for chapter 14 (superposition and sparse autoencoders).

Shapes follow the chapter: toy models carry a leading *instance* axis so that
several models (one per sparsity) train at once; sparse autoencoders keep their
decoder rows at unit norm, so the L1 penalty on latents cannot be gamed by
shrinking latents and growing the decoder. TransformerLens is never imported here.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

# --------------------------------------------------------------------------- toy models of superposition


def toy_forward(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ReLU(Wᵀ W x + b) for every instance.

    W: [inst, d_hidden, n_features], b: [inst, n_features], x: [inst, batch, n_features]
    -> [inst, batch, n_features]
    """
    h = torch.einsum("ibn,idn->ibd", x, W)                       # compress: [inst, batch, d_hidden]
    return torch.relu(torch.einsum("ibd,idn->ibn", h, W) + b[:, None, :])


def importance_loss(x: torch.Tensor, x_hat: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
    """Importance-weighted squared error: sum over features, mean over the batch, one value per instance.

    x, x_hat: [inst, batch, n_features], importance: [n_features] -> [inst]
    """
    return (importance * (x - x_hat) ** 2).sum(dim=-1).mean(dim=-1)


def feature_dimensionality(W: torch.Tensor) -> torch.Tensor:
    """How many hidden dimensions each feature gets: ||W_i||² / Σ_j (Ŵ_i · W_j)².

    1 for a feature with a dimension to itself, 1/2 for one of an antipodal pair, 2/5 in a pentagon,
    0 for a feature the model ignores (length at most 1e-6). W: [d_hidden, n_features] -> [n_features]
    """
    norms = W.norm(dim=0)                                          # [n_features]
    kept = norms > 1e-6
    unit = W[:, kept] / norms[kept]                                # [d, n_kept]
    dims = torch.zeros_like(norms)
    dims[kept] = norms[kept] ** 2 / ((unit.T @ W[:, kept]) ** 2).sum(dim=1)   # (Ŵ_i · W_j)² summed over j
    return dims


def sparse_features(n_inst: int, batch: int, n_features: int, probs: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
    """Synthetic features: each is 0 with probability 1 - p (p per instance), else uniform on [0, 1].

    probs: [n_inst] -> [n_inst, batch, n_features]
    """
    values = torch.rand(n_inst, batch, n_features, generator=generator)
    on = torch.rand(n_inst, batch, n_features, generator=generator) < probs[:, None, None]
    return values * on


def train_toy_models(n_features: int, d_hidden: int, probs: list[float], importance: torch.Tensor,
                     steps: int = 1000, batch: int = 256, lr: float = 1e-2, seed: int = 0, linear: bool = False,
                     forward: Callable[..., torch.Tensor] = toy_forward,
                     loss_fn: Callable[..., torch.Tensor] = importance_loss) -> tuple[torch.Tensor, torch.Tensor]:
    """Train one toy model per feature probability, all at once. -> W [inst, d, n], b [inst, n].

    With `linear`, the ReLU is dropped (out = WᵀWx + b): the comparison that shows the ReLU is what
    makes superposition pay.
    """
    g = torch.Generator().manual_seed(seed)
    n_inst = len(probs)
    p = torch.tensor(probs, dtype=torch.float32)
    W = (torch.randn(n_inst, d_hidden, n_features, generator=g) * (2 / (n_features + d_hidden)) ** 0.5)
    W.requires_grad_()
    b = torch.zeros(n_inst, n_features, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=lr)
    for _ in range(steps):
        x = sparse_features(n_inst, batch, n_features, p, g)
        if linear:
            out = torch.einsum("ibd,idn->ibn", torch.einsum("ibn,idn->ibd", x, W), W) + b[:, None, :]
        else:
            out = forward(W, b, x)
        loss = loss_fn(x, out, importance).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach(), b.detach()


def n_represented(W: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """How many features each instance represents (column norm above `threshold`). W: [inst, d, n] -> [inst]"""
    return (W.norm(dim=-2) > threshold).sum(dim=-1)


def dims_per_feature(W: torch.Tensor) -> torch.Tensor:
    """d_hidden / ||W||_F²: hidden dimensions per represented feature (1 with no superposition). -> [inst]"""
    return W.shape[-2] / (W ** 2).sum(dim=(-2, -1))


# --------------------------------------------------------------------------- sparse autoencoders


class SparseAutoencoder(nn.Module):
    """z = ReLU((x - b_dec) W_enc + b_enc), x̂ = z W_dec + b_dec, with unit-norm decoder rows.

    W_enc: [d_in, n_latents], b_enc: [n_latents], W_dec: [n_latents, d_in], b_dec: [d_in].
    Initialised from `seed`: decoder rows random unit vectors, encoder their transpose, biases zero.
    """

    def __init__(self, d_in: int, n_latents: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        W_dec = torch.randn(n_latents, d_in, generator=g)
        W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., d_in] -> latents z: [..., n_latents], all >= 0."""
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: [..., n_latents] -> reconstruction [..., d_in]."""
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z


def sae_loss(sae: Any, x: torch.Tensor, l1_coeff: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, mse, l1) on a batch x: [batch, d_in].

    mse: squared error summed over d_in, mean over the batch; l1: |z| summed over latents, mean over the
    batch; loss = mse + l1_coeff * l1. All three are scalars connected to the graph.
    """
    x_hat, z = sae(x)
    mse = ((x_hat - x) ** 2).sum(dim=-1).mean()
    l1 = z.abs().sum(dim=-1).mean()
    return mse + l1_coeff * l1, mse, l1


def normalize_decoder(sae: Any) -> None:
    """Project every decoder row back to unit norm, in place and outside autograd."""
    with torch.no_grad():
        sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True))


def train_sae(sae: Any, data: torch.Tensor, l1_coeff: float, n_steps: int, batch_size: int = 256,
              lr: float = 1e-3, seed: int = 0,
              loss_fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = sae_loss
              ) -> dict[str, Any]:
    """Train `sae` in place on rows of `data` [N, d_in]; see the chapter for the exact recipe.

    -> {"loss": [float per step], "steps_since_fired": LongTensor [n_latents]}
    """
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    since = torch.zeros(sae.W_dec.shape[0], dtype=torch.long)
    losses = []
    for _ in range(n_steps):
        x = data[torch.randint(0, data.shape[0], (batch_size,), generator=g)]
        loss, _, _ = loss_fn(sae, x, l1_coeff)
        opt.zero_grad()
        loss.backward()
        opt.step()
        normalize_decoder(sae)
        with torch.no_grad():
            fired = (sae.encode(x) > 0).any(dim=0)
        since = torch.where(fired, torch.zeros_like(since), since + 1)
        losses.append(loss.item())
    return {"loss": losses, "steps_since_fired": since}


def feature_recovery(W_dec: torch.Tensor, true_dirs: torch.Tensor, threshold: float = 0.9
                     ) -> tuple[torch.Tensor, int]:
    """For each true feature, the best cosine similarity with any decoder row, and how many reach `threshold`.

    W_dec: [n_latents, d], true_dirs: [n_true, d] (any norms) -> (max_cos [n_true], n_recovered)
    """
    dec = W_dec / W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    true = true_dirs / true_dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    best = (true @ dec.T).max(dim=1).values                        # [n_true]
    return best, int((best >= threshold).sum())


# --------------------------------------------------------------------------- on a transformer


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from position t. logits [B, T, V], tokens [B, T] -> scalar."""
    log_probs = logits[:, :-1].log_softmax(dim=-1)
    return -log_probs.gather(-1, tokens[:, 1:, None]).mean()


def spliced_loss(model: Any, sae: Any, tokens: torch.Tensor, layer: int) -> float:
    """Next-token loss with `blocks.{layer}.hook_resid_pre` replaced by the SAE's reconstruction of it."""

    def splice(resid: torch.Tensor, hook: Any) -> torch.Tensor:
        return sae(resid)[0]

    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", splice)])
    return next_token_loss(logits, tokens).item()


# --------------------------------------------------------------------------- the chapter's experiments
# The notebook runs these with the learner's functions passed in; tests/test_chapter_14_claims.py runs
# them with the reference functions and other seeds, to check that what the chapter says holds.

N_FEATURES, D_HIDDEN = 20, 5
PROBS = [1.0, 0.3, 0.1, 0.03, 0.01]          # feature probabilities of the sparsity sweep, dense to sparse
TOY_STEPS = 1000
SAE_PROB = 0.01                                # the toy model the SAE is trained on: the sparsest one
L1_COEFFS = [0.01, 0.03, 0.1, 0.3, 1.0]
SAE_LATENTS, SAE_STEPS, SAE_LR = 20, 600, 1e-2


def importance_weights(n_features: int = N_FEATURES, decay: float = 0.8) -> torch.Tensor:
    """Feature i matters decay**i as much as feature 0."""
    return decay ** torch.arange(n_features, dtype=torch.float32)


def represented_directions(W: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The columns of W [d, n] longer than `threshold` (the features the model keeps), as rows. -> [n_kept, d]"""
    return W[:, W.norm(dim=0) > threshold].T


def hidden_activations(W: torch.Tensor, n: int, prob: float, seed: int) -> torch.Tensor:
    """`n` fresh sparse feature vectors compressed by one toy model W [d, n_features]. -> h [n, d]"""
    g = torch.Generator().manual_seed(seed)
    x = sparse_features(1, n, W.shape[1], torch.tensor([prob]), g)[0]
    return x @ W.T


def sae_sweep(train_acts: torch.Tensor, test_acts: torch.Tensor, true_dirs: torch.Tensor, l1_coeffs: list[float],
              sae_cls: Any = SparseAutoencoder, train_fn: Callable[..., dict] = train_sae,
              recovery_fn: Callable[..., tuple] = feature_recovery, n_latents: int = SAE_LATENTS,
              steps: int = SAE_STEPS, lr: float = SAE_LR, seed: int = 0) -> list[dict[str, Any]]:
    """Train one SAE per L1 coefficient on `train_acts`; measure L0 and MSE on `test_acts` (held out),
    the fraction of latents dead at the end of training, and feature recovery (threshold 0.9)."""
    rows = []
    for l1 in l1_coeffs:
        sae = sae_cls(train_acts.shape[1], n_latents, seed=seed)
        hist = train_fn(sae, train_acts, l1, steps, lr=lr, seed=seed)
        with torch.no_grad():
            x_hat, z = sae(test_acts)
        best, n_rec = recovery_fn(sae.W_dec.detach(), true_dirs)
        rows.append({"l1_coeff": l1, "sae": sae, "loss": hist["loss"],
                     "l0": (z > 0).float().sum(-1).mean().item(),
                     "mse": ((x_hat - test_acts) ** 2).sum(-1).mean().item(),
                     "dead": (hist["steps_since_fired"] >= 100).float().mean().item(),
                     "max_cos": best, "recovered": int(n_rec)})
    return rows
