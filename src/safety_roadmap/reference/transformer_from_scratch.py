"""Reference solutions for chapter 08 (a GPT-2-style transformer from scratch).

The checks compare learners' pieces with these, and later chapters import the
model from here when a learner skipped ahead:

    from safety_roadmap.reference.transformer_from_scratch import GPT, GPTConfig

Parameter names and orientations follow `torch.nn.Linear` (`[out, in]`), so a
state dict moves between this model, a learner's model built from the same
skeleton, and (through `load_gpt2_weights`) a HuggingFace GPT-2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["GPTConfig", "CharTokenizer", "embed_tokens", "causal_attention_pattern", "MultiHeadAttention",
           "LayerNorm", "MLP", "Block", "GPT", "load_gpt2_weights", "gpt2_state_dict", "init_weights"]


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT-2-style model. `d_mlp` defaults to 4 * d_model, as in GPT-2."""
    vocab_size: int
    n_ctx: int
    d_model: int
    n_heads: int
    n_layers: int
    d_mlp: int = 0
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        if not self.d_mlp:
            object.__setattr__(self, "d_mlp", 4 * self.d_model)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


class CharTokenizer:
    """One token per distinct character of `text`, numbered in sorted (code point) order."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars, start=0)}   # ids index rows of W_E: they start at 0
        self.itos = {i: c for i, c in enumerate(self.chars, start=0)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)


def embed_tokens(tokens: torch.Tensor, W_E: torch.Tensor, W_pos: torch.Tensor) -> torch.Tensor:
    """Token plus position embeddings: tokens [batch, seq] (int), W_E [vocab, d], W_pos [n_ctx, d] -> [batch, seq, d]."""
    seq = tokens.shape[-1]
    return W_E[tokens] + W_pos[:seq]


def causal_attention_pattern(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Softmax of scaled scores with future keys masked: q, k [batch, heads, seq, d_head] -> [batch, heads, seq, seq]."""
    seq, d_head = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d_head)
    future = torch.ones(seq, seq, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention, GPT-2 style (biases on every projection)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.k = nn.Linear(cfg.d_model, cfg.d_model)
        self.v = nn.Linear(cfg.d_model, cfg.d_model)
        self.o = nn.Linear(cfg.d_model, cfg.d_model)
        self.hook_pattern = nn.Identity()  # a place to read the pattern with a forward hook

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, seq, d_model]
        b, t, d = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, heads, t, d_head]
            return y.reshape(b, t, self.n_heads, self.d_head).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        pattern = self.hook_pattern(causal_attention_pattern(q, k))  # [b, heads, t, t]
        z = (pattern @ v).transpose(1, 2).reshape(b, t, d)           # heads side by side again
        return self.o(z)


class LayerNorm(nn.Module):
    """Normalise the last axis to mean 0 and (biased) variance 1, then scale by `w` and shift by `b`."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=-1, keepdim=True)
        var = (centred * centred).mean(dim=-1, keepdim=True)
        return centred / torch.sqrt(var + self.eps) * self.w + self.b


class MLP(nn.Module):
    """Expand to d_mlp, GELU (GPT-2's tanh approximation), project back."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc_in = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.fc_out = nn.Linear(cfg.d_mlp, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(F.gelu(self.fc_in(x), approximate="tanh"))


class Block(nn.Module):
    """A pre-norm residual block: each sublayer reads a normalised copy and adds its output back."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.attn = MultiHeadAttention(cfg)
        self.ln2 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Embeddings, a stack of blocks, a final LayerNorm and an unembedding tied to the token embedding."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.empty(cfg.vocab_size, cfg.d_model))
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = LayerNorm(cfg.d_model, cfg.ln_eps)
        init_weights(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens: [batch, seq] -> logits [batch, seq, vocab]
        x = embed_tokens(tokens, self.W_E, self.W_pos)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.W_E.T


def init_weights(model: nn.Module, std: float = 0.02, seed: int | None = None) -> nn.Module:
    """GPT-2's initialisation: normal(0, 0.02) weights, zero biases, LayerNorms at identity.

    With `seed`, the weights are the same on every machine and the global RNG is left alone.
    """
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".b") or name.endswith("bias"):
                p.zero_()
            elif name.endswith(".w"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def load_gpt2_weights(model: nn.Module, hf_state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Copy a HuggingFace `GPT2LMHeadModel` state dict into `model` (this chapter's layout); return `model`.

    HF's `Conv1D` layers store weights as [in, out], so they are transposed for `nn.Linear`;
    `c_attn` holds the query, key and value projections side by side along its output axis.
    """
    def get(name: str) -> torch.Tensor:
        return hf_state[f"transformer.{name}"]

    d = model.W_E.shape[1]
    with torch.no_grad():
        model.W_E.copy_(get("wte.weight"))
        model.W_pos.copy_(get("wpe.weight"))
        for i, block in enumerate(model.blocks):
            p = f"h.{i}."
            block.ln1.w.copy_(get(p + "ln_1.weight"))
            block.ln1.b.copy_(get(p + "ln_1.bias"))
            w_qkv, b_qkv = get(p + "attn.c_attn.weight"), get(p + "attn.c_attn.bias")  # [d, 3d], [3d]
            for j, lin in enumerate((block.attn.q, block.attn.k, block.attn.v)):
                lin.weight.copy_(w_qkv[:, j * d:(j + 1) * d].T)
                lin.bias.copy_(b_qkv[j * d:(j + 1) * d])
            block.attn.o.weight.copy_(get(p + "attn.c_proj.weight").T)
            block.attn.o.bias.copy_(get(p + "attn.c_proj.bias"))
            block.ln2.w.copy_(get(p + "ln_2.weight"))
            block.ln2.b.copy_(get(p + "ln_2.bias"))
            block.mlp.fc_in.weight.copy_(get(p + "mlp.c_fc.weight").T)
            block.mlp.fc_in.bias.copy_(get(p + "mlp.c_fc.bias"))
            block.mlp.fc_out.weight.copy_(get(p + "mlp.c_proj.weight").T)
            block.mlp.fc_out.bias.copy_(get(p + "mlp.c_proj.bias"))
        model.ln_f.w.copy_(get("ln_f.weight"))
        model.ln_f.b.copy_(get("ln_f.bias"))
    return model


def gpt2_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The inverse of `load_gpt2_weights`: `model`'s weights under HuggingFace GPT-2's names and layout."""
    out: dict[str, torch.Tensor] = {"transformer.wte.weight": model.W_E.detach().clone(),
                                    "transformer.wpe.weight": model.W_pos.detach().clone()}
    for i, block in enumerate(model.blocks):
        p = f"transformer.h.{i}."
        att = block.attn
        out[p + "ln_1.weight"], out[p + "ln_1.bias"] = block.ln1.w.detach().clone(), block.ln1.b.detach().clone()
        out[p + "attn.c_attn.weight"] = torch.cat([att.q.weight, att.k.weight, att.v.weight], 0).T.detach().clone()
        out[p + "attn.c_attn.bias"] = torch.cat([att.q.bias, att.k.bias, att.v.bias]).detach().clone()
        out[p + "attn.c_proj.weight"] = att.o.weight.T.detach().clone()
        out[p + "attn.c_proj.bias"] = att.o.bias.detach().clone()
        out[p + "ln_2.weight"], out[p + "ln_2.bias"] = block.ln2.w.detach().clone(), block.ln2.b.detach().clone()
        out[p + "mlp.c_fc.weight"] = block.mlp.fc_in.weight.T.detach().clone()
        out[p + "mlp.c_fc.bias"] = block.mlp.fc_in.bias.detach().clone()
        out[p + "mlp.c_proj.weight"] = block.mlp.fc_out.weight.T.detach().clone()
        out[p + "mlp.c_proj.bias"] = block.mlp.fc_out.bias.detach().clone()
    out["transformer.ln_f.weight"] = model.ln_f.w.detach().clone()
    out["transformer.ln_f.bias"] = model.ln_f.b.detach().clone()
    out["lm_head.weight"] = model.W_E.detach().clone()
    return out
