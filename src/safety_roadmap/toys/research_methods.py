"""The experiment chapter 17 studies: how reliably a sparse autoencoder recovers the features of chapter 14's
toy model of superposition.

Everything is chapter 14's code (`reference.superposition_and_saes`) at sizes that run in about a second per
SAE on one CPU thread: one toy model (20 features in 5 dimensions, feature probability 0.01), one fixed set
of its hidden activations, and SAEs that differ only in their seed (initialisation and batch order).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..reference import superposition_and_saes as s14

N_FEATURES, D_HIDDEN, PROB = s14.N_FEATURES, s14.D_HIDDEN, s14.SAE_PROB
N_LATENTS, L1_COEFF, SAE_STEPS, SAE_LR = 20, 0.3, 300, s14.SAE_LR
RECOVERY_THRESHOLD, LOOSE_THRESHOLD = 0.9, 0.7
N_TRAIN, N_TEST = 20_000, 5_000


def toy_model(seed: int = 0) -> torch.Tensor:
    """Chapter 14's sparsest toy model (p = 0.01), trained from `seed`. -> W [D_HIDDEN, N_FEATURES]"""
    W, _ = s14.train_toy_models(N_FEATURES, D_HIDDEN, [PROB], s14.importance_weights(), steps=s14.TOY_STEPS,
                                seed=seed)
    return W[0]


def true_directions(W: torch.Tensor) -> np.ndarray:
    """The directions of the features the toy model represents (column norm > 0.5), as rows. -> [n_true, d]"""
    return s14.represented_directions(W).numpy()


def activations(W: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed training set and a held-out test set of the toy model's hidden activations."""
    return (s14.hidden_activations(W, N_TRAIN, PROB, seed=1000 + seed),
            s14.hidden_activations(W, N_TEST, PROB, seed=2000 + seed))


def train_sae(train: torch.Tensor, seed: int, n_latents: int = N_LATENTS, l1_coeff: float = L1_COEFF,
              steps: int = SAE_STEPS) -> s14.SparseAutoencoder:
    """One SAE (chapter 14's recipe); `seed` sets its initialisation and the order of its batches."""
    sae = s14.SparseAutoencoder(train.shape[1], n_latents, seed=seed)
    s14.train_sae(sae, train, l1_coeff, steps, lr=SAE_LR, seed=seed)
    return sae.eval()


def recovered(sae: s14.SparseAutoencoder, true_dirs: np.ndarray, threshold: float = RECOVERY_THRESHOLD) -> int:
    """How many true directions have a decoder row with cosine similarity >= threshold."""
    return s14.feature_recovery(sae.W_dec.detach(), torch.as_tensor(true_dirs, dtype=torch.float32), threshold)[1]


def recovery_experiment(train: torch.Tensor, test: torch.Tensor, true_dirs: np.ndarray,
                        n_latents: int = N_LATENTS) -> Callable[[int], dict[str, float]]:
    """`run(seed)`: train one SAE with that seed and measure it. Only the SAE's seed changes between runs.

    -> {"recovered": features found, "fraction": of the represented ones, "recovered_loose": features found at
    the looser cosine LOOSE_THRESHOLD, "mse": held-out reconstruction error, "l0": active latents per input}
    """
    def run(seed: int) -> dict[str, float]:
        sae = train_sae(train, seed, n_latents)
        with torch.no_grad():
            x_hat, z = sae(test)
        found = recovered(sae, true_dirs)
        return {"recovered": found, "fraction": found / len(true_dirs),
                "recovered_loose": recovered(sae, true_dirs, LOOSE_THRESHOLD),
                "mse": ((x_hat - test) ** 2).sum(-1).mean().item(), "l0": (z > 0).float().sum(-1).mean().item()}

    return run


def labelled_batch(W: torch.Tensor, n: int, feature: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """`n` inputs in which `feature` is switched on (uniform on [0.5, 1]) in a random half, off in the rest;
    the other features are as sparse as in training. -> (hidden activations [n, d], labels bool [n])"""
    g = torch.Generator().manual_seed(seed)
    x = s14.sparse_features(1, n, W.shape[1], torch.tensor([PROB]), g)[0]
    labels = torch.rand(n, generator=g) < 0.5
    x[:, feature] = torch.where(labels, 0.5 + 0.5 * torch.rand(n, generator=g), torch.zeros(n))
    return x @ W.T, labels.numpy()


def latent_activations(sae: s14.SparseAutoencoder, h: torch.Tensor) -> np.ndarray:
    """The SAE's latents on hidden activations h. -> [n, n_latents]"""
    with torch.no_grad():
        return sae.encode(h).numpy()


def reconstruction_error(sae: s14.SparseAutoencoder, h: torch.Tensor, ablate: int | None = None) -> np.ndarray:
    """Per-input squared reconstruction error, optionally with one latent zeroed. -> [n]"""
    with torch.no_grad():
        z = sae.encode(h)
        if ablate is not None:
            z[:, ablate] = 0.0
        return ((sae.decode(z) - h) ** 2).sum(-1).numpy()
