"""The small language model chapter 14 opens up: a 2-layer TransformerBridge trained on Python source.

It reads characters of the offline corpus chapter 09 uses (Python's own standard library), so its
residual stream holds features a person can name (the current character, the one before it, being
inside a word or a string). Training is deterministic and takes seconds on one CPU thread.
TransformerLens is imported inside the functions, never when this module is imported.
"""
from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from ..reference.superposition_and_saes import next_token_loss
from ..reference.train_mini_gpt import CHARSET, corpus_tokenizer, load_corpus, sample_batch

N_CTX = 32
CORPUS_CHARS = 200_000


def char_model_config(seed: int = 0) -> Any:
    """2 layers (attention and MLP), d_model 32, one token per character of a 96-symbol vocabulary."""
    from transformer_lens import TransformerBridgeConfig

    return TransformerBridgeConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=128, d_vocab=len(CHARSET),
                                   n_ctx=N_CTX, act_fn="gelu", normalization_type="LN", attn_only=False,
                                   positional_embedding_type="standard", seed=seed, init_mode="gpt2",
                                   device="cpu")


def corpus_ids() -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation character ids of the corpus (the first CORPUS_CHARS characters)."""
    corpus = load_corpus(CORPUS_CHARS)
    return corpus.train, corpus.val


def train_char_model(steps: int = 300, batch_size: int = 32, lr: float = 3e-3, seed: int = 0,
                     progress: bool = True) -> tuple[Any, list[float]]:
    """A fresh 2-layer model trained for `steps` AdamW steps on random windows of the corpus.

    Deterministic for a given seed. -> (model in eval mode, per-step training losses)
    """
    from transformer_lens import TransformerBridge

    model = TransformerBridge.boot_native(char_model_config(seed))
    train, _ = corpus_ids()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc="training the character model", disable=not progress, leave=False):
        x, _ = sample_batch(train, batch_size, N_CTX, generator=g)
        loss = next_token_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses


def windows(ids: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` random windows of N_CTX characters from `ids` (a fixed set for a given seed). -> [n, N_CTX]"""
    g = torch.Generator().manual_seed(seed)
    return sample_batch(ids, n, N_CTX, generator=g)[0]


def decode(ids: Any) -> str:
    """Characters for ids; newlines shown as ⏎ so that a context fits on one line."""
    return corpus_tokenizer().decode(ids).replace("\n", "⏎")


def top_contexts(acts: torch.Tensor, tokens: torch.Tensor, k: int = 5, width: int = 12) -> list[str]:
    """The `k` strongest activations of one latent, as text ending at the character it fires on.

    acts: [batch, seq] (one latent), tokens: [batch, seq] -> ["...context|c|  (activation)", ...]
    """
    flat = acts.reshape(-1)
    out = []
    for i in flat.topk(min(k, flat.numel())).indices.tolist():
        row, pos = divmod(i, acts.shape[1])
        before = decode(tokens[row, max(0, pos - width):pos].tolist())
        out.append(f"{before:>{width}}[{decode([int(tokens[row, pos])])}]   ({flat[i].item():.2f})")
    return out


def latent_purity(z: torch.Tensor, tokens: torch.Tensor, k: int = 20) -> torch.Tensor:
    """For each latent, the share of its `k` strongest activations that sit on its most common character.

    z: [batch, seq, n_latents], tokens: [batch, seq] -> [n_latents]; 0 for latents active at fewer than k
    positions (too rare to judge).
    """
    flat_z = z.reshape(-1, z.shape[-1])
    flat_t = tokens.reshape(-1)
    purity = torch.zeros(z.shape[-1])
    for latent in range(z.shape[-1]):
        acts = flat_z[:, latent]
        if int((acts > 0).sum()) < k:
            continue
        chars = flat_t[acts.topk(k).indices]
        purity[latent] = (chars == chars.mode().values).float().mean()
    return purity
