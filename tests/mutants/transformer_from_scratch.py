"""Mutants and alternatives for chapter 08_transformer_from_scratch."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from safety_roadmap.reference import transformer_from_scratch as ref

# --------------------------------------------------------------------------- tokenizer


class TokFirstSeen(ref.CharTokenizer):
    def __init__(self, text):
        self.chars = list(dict.fromkeys(text))  # order of first appearance, not sorted
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.itos = dict(enumerate(self.chars))


class TokFromOne(ref.CharTokenizer):
    def encode(self, text):
        return [self.stoi[c] + 1 for c in text]

    def decode(self, ids):
        return "".join(self.itos[int(i) - 1] for i in ids)


class TokDecodeList(ref.CharTokenizer):
    def decode(self, ids):
        return [self.itos[int(i)] for i in ids]  # a list of characters, not a string


class TokCountsDuplicates(ref.CharTokenizer):
    def __init__(self, text):
        self.chars = sorted(text)  # keeps duplicates: vocab_size is the text length
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.itos = dict(enumerate(self.chars))


class TokAlt:
    """Sorted by code point via ord, ids from a list's index; decode accepts any iterable."""

    def __init__(self, text):
        self.vocab = sorted({ord(c) for c in text})
        self._index = {chr(o): i for i, o in enumerate(self.vocab)}
        self.vocab_size = len(self.vocab)

    def encode(self, text):
        return [self._index[c] for c in text]

    def decode(self, ids):
        return "".join(chr(self.vocab[int(i)]) for i in ids)


# --------------------------------------------------------------------------- embeddings


def embed_no_pos(tokens, W_E, W_pos):
    return W_E[tokens]


def embed_pos_by_token(tokens, W_E, W_pos):
    return W_E[tokens] + W_pos[tokens]


def embed_whole_pos(tokens, W_E, W_pos):
    return W_E[tokens] + W_pos  # only works when the sequence fills the context


def embed_pos_from_one(tokens, W_E, W_pos):
    t = tokens.shape[1]
    return W_E[tokens] + W_pos[1:t + 1]


def embed_one_hot(tokens, W_E, W_pos):
    one_hot = F.one_hot(tokens, W_E.shape[0]).to(W_E.dtype)
    return one_hot @ W_E + W_pos[torch.arange(tokens.shape[1])]


def embed_functional(tokens, W_E, W_pos):
    positions = torch.arange(tokens.shape[-1])
    return F.embedding(tokens, W_E) + F.embedding(positions, W_pos)[None]


# --------------------------------------------------------------------------- attention pattern


def _scores(q, k, scale):
    return q @ k.transpose(-1, -2) / scale


def _future(t):
    return torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)


def pattern_mask_after_softmax(q, k):
    p = _scores(q, k, math.sqrt(q.shape[-1])).softmax(-1)
    return p.masked_fill(_future(q.shape[-2]), 0.0)


def pattern_unscaled(q, k):
    return _scores(q, k, 1.0).masked_fill(_future(q.shape[-2]), float("-inf")).softmax(-1)


def pattern_scaled_by_d(q, k):
    return _scores(q, k, q.shape[-1]).masked_fill(_future(q.shape[-2]), float("-inf")).softmax(-1)


def pattern_no_mask(q, k):
    return _scores(q, k, math.sqrt(q.shape[-1])).softmax(-1)


def pattern_masks_diagonal(q, k):
    t = q.shape[-2]
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=0)  # hides the current position too
    return _scores(q, k, math.sqrt(q.shape[-1])).masked_fill(mask, -1e9).softmax(-1)


def pattern_naive_softmax(q, k):
    s = _scores(q, k, math.sqrt(q.shape[-1])).masked_fill(_future(q.shape[-2]), float("-inf"))
    e = torch.exp(s)  # no max subtraction: overflows for large scores
    return e / e.sum(-1, keepdim=True)


def pattern_in_place_scale(q, k):
    q /= math.sqrt(q.shape[-1])  # scales the caller's tensor
    return (q @ k.transpose(-1, -2)).masked_fill(_future(q.shape[-2]), float("-inf")).softmax(-1)


def pattern_mask_after_renormalised(q, k):
    # masking after the softmax and renormalising is right on paper, but a dominant future score makes the
    # allowed weights underflow to 0 and the row becomes 0/0
    p = _scores(q, k, math.sqrt(q.shape[-1])).softmax(-1).masked_fill(_future(q.shape[-2]), 0.0)
    return p / p.sum(-1, keepdim=True)


def pattern_einsum_big_negative(q, k):
    t, d = q.shape[-2], q.shape[-1]
    s = torch.einsum("bhqd,bhkd->bhqk", q, k) * d ** -0.5
    keep = torch.tril(torch.ones(t, t, device=q.device)).bool()
    return torch.where(keep, s, torch.tensor(-1e4, dtype=s.dtype)).softmax(-1)


def pattern_loops(q, k):
    b, h, t, d = q.shape
    out = torch.zeros(b, h, t, t, dtype=q.dtype, device=q.device)
    for i in range(t):
        s = (q[:, :, i:i + 1] * k[:, :, :i + 1]).sum(-1) / math.sqrt(d)  # [b, h, i+1]
        out[:, :, i, :i + 1] = torch.softmax(s, dim=-1)
    return out


def pattern_mask_on_cpu(q, k):
    """Hint 2's mask without `device=`: right on the CPU, a crash once the model is on a GPU."""
    t = q.shape[-2]
    future = torch.ones(t, t, dtype=torch.bool).triu(1)
    return _scores(q, k, math.sqrt(q.shape[-1])).masked_fill(future, float("-inf")).softmax(-1)


def pattern_reversed_mask(q, k):
    t = q.shape[-2]
    past = torch.tril(torch.ones(t, t, dtype=torch.bool, device=q.device))  # hides the past, keeps the future
    return _scores(q, k, math.sqrt(q.shape[-1])).masked_fill(past, float("-inf")).softmax(-1)


# --------------------------------------------------------------------------- multi-head attention


class MHASplitWrongAxis(ref.MultiHeadAttention):
    def forward(self, x):
        b, t, d = x.shape
        q = self.q(x).reshape(b, self.n_heads, t, self.d_head)  # heads split along the wrong axis
        k = self.k(x).reshape(b, self.n_heads, t, self.d_head)
        v = self.v(x).reshape(b, self.n_heads, t, self.d_head)
        pattern = self.hook_pattern(ref.causal_attention_pattern(q, k))
        return self.o((pattern @ v).transpose(1, 2).reshape(b, t, d))


class MHAMergeWithoutTranspose(ref.MultiHeadAttention):
    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (lin(x).reshape(b, t, self.n_heads, self.d_head).transpose(1, 2) for lin in (self.q, self.k, self.v))
        pattern = self.hook_pattern(ref.causal_attention_pattern(q, k))
        return self.o((pattern @ v).reshape(b, t, d))  # forgot to move heads back next to d_head


class MHANoOutputProjection(ref.MultiHeadAttention):
    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (lin(x).reshape(b, t, self.n_heads, self.d_head).transpose(1, 2) for lin in (self.q, self.k, self.v))
        pattern = self.hook_pattern(ref.causal_attention_pattern(q, k))
        return (pattern @ v).transpose(1, 2).reshape(b, t, d)


class MHAScaleByDModel(ref.MultiHeadAttention):
    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (lin(x).reshape(b, t, self.n_heads, self.d_head).transpose(1, 2) for lin in (self.q, self.k, self.v))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)  # the scale uses d_model, not d_head
        pattern = self.hook_pattern(scores.masked_fill(_future(t), float("-inf")).softmax(-1))
        return self.o((pattern @ v).transpose(1, 2).reshape(b, t, d))


class MHANoHook(ref.MultiHeadAttention):
    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (lin(x).reshape(b, t, self.n_heads, self.d_head).transpose(1, 2) for lin in (self.q, self.k, self.v))
        pattern = ref.causal_attention_pattern(q, k)  # never passes through self.hook_pattern
        return self.o((pattern @ v).transpose(1, 2).reshape(b, t, d))


class MHAViewOnInput(ref.MultiHeadAttention):
    def forward(self, x):
        b, t, d = x.shape
        x = x.view(b * t, d)  # fails on a non-contiguous input
        q, k, v = (lin(x).view(b, t, self.n_heads, self.d_head).transpose(1, 2) for lin in (self.q, self.k, self.v))
        pattern = self.hook_pattern(ref.causal_attention_pattern(q, k))
        return self.o((pattern @ v).transpose(1, 2).reshape(b, t, d))


class MHAReshapeNoTranspose(ref.MultiHeadAttention):
    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (lin(x).reshape(b, self.n_heads, t, self.d_head) for lin in (self.q, self.k, self.v))
        pattern = self.hook_pattern(ref.causal_attention_pattern(q, k))
        return self.o((pattern @ v).reshape(b, t, d))  # no transpose on the way in, none on the way out


class MHAMaskOnCPU(ref.MultiHeadAttention):
    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (lin(x).reshape(b, t, self.n_heads, self.d_head).transpose(1, 2) for lin in (self.q, self.k, self.v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        pattern = self.hook_pattern(scores.masked_fill(_future(t), float("-inf")).softmax(-1))  # mask on the CPU
        return self.o((pattern @ v).transpose(1, 2).reshape(b, t, d))


class MHAEinsum(ref.MultiHeadAttention):
    def forward(self, x):
        b, t, d = x.shape
        h, dh = self.n_heads, self.d_head
        q = self.q(x).reshape(b, t, h, dh)
        k = self.k(x).reshape(b, t, h, dh)
        v = self.v(x).reshape(b, t, h, dh)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / dh ** 0.5
        scores = scores.masked_fill(~torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device)), float("-inf"))
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v).reshape(b, t, d)
        return self.o(z)


class MHAWithMaskBuffer(ref.MultiHeadAttention):
    """Registers a causal mask buffer (an extra state-dict entry the checks must tolerate)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("mask", torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx)))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (lin(x).reshape(b, t, self.n_heads, self.d_head).permute(0, 2, 1, 3) for lin in (self.q, self.k, self.v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        scores = scores.masked_fill(self.mask[:t, :t] == 0, float("-inf"))
        pattern = self.hook_pattern(F.softmax(scores, dim=-1))
        return self.o((pattern @ v).permute(0, 2, 1, 3).reshape(b, t, d))


# --------------------------------------------------------------------------- LayerNorm


class LNUnbiased(ref.LayerNorm):
    def forward(self, x):
        return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + self.eps) * self.w + self.b


class LNEpsOutside(ref.LayerNorm):
    def forward(self, x):
        c = x - x.mean(-1, keepdim=True)
        return c / (c.pow(2).mean(-1, keepdim=True).sqrt() + self.eps) * self.w + self.b


class LNNoAffine(ref.LayerNorm):
    def forward(self, x):
        c = x - x.mean(-1, keepdim=True)
        return c / torch.sqrt(c.pow(2).mean(-1, keepdim=True) + self.eps)


class LNNoCentring(ref.LayerNorm):
    def forward(self, x):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w + self.b  # RMSNorm


class LNInPlace(ref.LayerNorm):
    def forward(self, x):
        x -= x.mean(-1, keepdim=True)  # modifies the residual stream it was given
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w + self.b


class LNIgnoresEps(ref.LayerNorm):
    def forward(self, x):
        c = x - x.mean(-1, keepdim=True)
        return c / torch.sqrt(c.pow(2).mean(-1, keepdim=True) + 1e-5) * self.w + self.b  # GPT-2's eps, not self.eps


class LNTorch(ref.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.w, self.b, self.eps)


class LNMoments(ref.LayerNorm):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.w + self.b


# --------------------------------------------------------------------------- MLP


class MLPExactGelu(ref.MLP):
    def forward(self, x):
        return self.fc_out(F.gelu(self.fc_in(x)))


class MLPRelu(ref.MLP):
    def forward(self, x):
        return self.fc_out(F.relu(self.fc_in(x)))


class MLPNoActivation(ref.MLP):
    def forward(self, x):
        return self.fc_out(self.fc_in(x))


class MLPManualTanh(ref.MLP):
    def forward(self, x):
        h = self.fc_in(x)
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h ** 3)))
        return self.fc_out(h)


# --------------------------------------------------------------------------- block


class BlockNoResidual(ref.Block):
    def forward(self, x):
        x = self.attn(self.ln1(x))
        return self.mlp(self.ln2(x))


class BlockPostNorm(ref.Block):
    def forward(self, x):
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


class BlockParallel(ref.Block):
    def forward(self, x):
        return x + self.attn(self.ln1(x)) + self.mlp(self.ln2(x))


class BlockInPlace(ref.Block):
    def forward(self, x):
        x += self.attn(self.ln1(x))  # writes into the caller's tensor
        x += self.mlp(self.ln2(x))
        return x


class BlockOneNorm(ref.Block):
    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln1(x))


class BlockDefaultEps(ref.Block):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.ln1 = ref.LayerNorm(cfg.d_model)  # cfg.ln_eps not passed on
        self.ln2 = ref.LayerNorm(cfg.d_model)


class BlockStepByStep(ref.Block):
    def forward(self, x):
        attn_out = self.attn(self.ln1(x))
        resid_mid = x + attn_out
        mlp_out = self.mlp(self.ln2(resid_mid))
        return resid_mid + mlp_out


# --------------------------------------------------------------------------- GPT


class GPTUntied(ref.GPT):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.W_U = nn.Parameter(torch.randn(cfg.d_model, cfg.vocab_size) * 0.02)  # a separate unembedding

    def forward(self, tokens):
        x = ref.embed_tokens(tokens, self.W_E, self.W_pos)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.W_U


class GPTNoFinalLN(ref.GPT):
    def forward(self, tokens):
        x = ref.embed_tokens(tokens, self.W_E, self.W_pos)
        for block in self.blocks:
            x = block(x)
        return x @ self.W_E.T


class GPTNoPositions(ref.GPT):
    def forward(self, tokens):
        x = self.W_E[tokens]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.W_E.T


class GPTOneBlock(ref.GPT):
    def forward(self, tokens):
        x = ref.embed_tokens(tokens, self.W_E, self.W_pos)
        x = self.blocks[0](x)  # ignores the other layers
        return self.ln_f(x) @ self.W_E.T


class GPTWrongNames(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList([ref.Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = ref.LayerNorm(cfg.d_model, cfg.ln_eps)

    def forward(self, tokens):
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(tokens.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.tok_emb.weight.T


class GPTPlainListBlocks(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.empty(cfg.vocab_size, cfg.d_model))
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))
        self.blocks = [ref.Block(cfg) for _ in range(cfg.n_layers)]  # a plain list: hidden from state_dict and .to
        self.ln_f = ref.LayerNorm(cfg.d_model, cfg.ln_eps)
        ref.init_weights(self)

    def forward(self, tokens):
        x = ref.embed_tokens(tokens, self.W_E, self.W_pos)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.W_E.T


class GPTFinalNormDefaultEps(ref.GPT):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.ln_f = ref.LayerNorm(cfg.d_model)  # cfg.ln_eps not passed on


class GPTTiedByAlias(ref.GPT):
    """Ties the unembedding by sharing the parameter (an alias the checks must accept)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.unembed.weight = self.W_E

    def forward(self, tokens):
        x = F.embedding(tokens, self.W_E) + self.W_pos[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_f(x))


class GPTSequential(ref.GPT):
    def forward(self, tokens):
        x = ref.embed_tokens(tokens, self.W_E, self.W_pos)
        x = nn.Sequential(*self.blocks)(x)
        return torch.einsum("btd,vd->btv", self.ln_f(x), self.W_E)


# --------------------------------------------------------------------------- loading GPT-2 weights


def _load_generic(model, hf, *, transpose_qkv=True, order=(0, 1, 2), transpose_mlp=True, copy_ln_f=True):
    def get(name):
        return hf[f"transformer.{name}"]

    d = model.W_E.shape[1]
    with torch.no_grad():
        model.W_E.copy_(get("wte.weight"))
        model.W_pos.copy_(get("wpe.weight"))
        for i, block in enumerate(model.blocks):
            p = f"h.{i}."
            block.ln1.w.copy_(get(p + "ln_1.weight"))
            block.ln1.b.copy_(get(p + "ln_1.bias"))
            w, bias = get(p + "attn.c_attn.weight"), get(p + "attn.c_attn.bias")
            for j, lin in zip(order, (block.attn.q, block.attn.k, block.attn.v)):
                piece = w[:, j * d:(j + 1) * d]
                lin.weight.copy_(piece.T if transpose_qkv else piece)
                lin.bias.copy_(bias[j * d:(j + 1) * d])
            block.attn.o.weight.copy_(get(p + "attn.c_proj.weight").T)
            block.attn.o.bias.copy_(get(p + "attn.c_proj.bias"))
            block.ln2.w.copy_(get(p + "ln_2.weight"))
            block.ln2.b.copy_(get(p + "ln_2.bias"))
            fc, proj = get(p + "mlp.c_fc.weight"), get(p + "mlp.c_proj.weight")
            block.mlp.fc_in.weight.copy_(fc.T if transpose_mlp else fc.reshape(block.mlp.fc_in.weight.shape))
            block.mlp.fc_in.bias.copy_(get(p + "mlp.c_fc.bias"))
            block.mlp.fc_out.weight.copy_(proj.T if transpose_mlp else proj.reshape(block.mlp.fc_out.weight.shape))
            block.mlp.fc_out.bias.copy_(get(p + "mlp.c_proj.bias"))
        if copy_ln_f:
            model.ln_f.w.copy_(get("ln_f.weight"))
            model.ln_f.b.copy_(get("ln_f.bias"))
    return model


def load_no_transpose_qkv(model, hf):
    return _load_generic(model, hf, transpose_qkv=False)


def load_kqv_order(model, hf):
    return _load_generic(model, hf, order=(1, 0, 2))


def load_reshape_not_transpose(model, hf):
    return _load_generic(model, hf, transpose_mlp=False)  # right shape, scrambled values


def load_forgets_ln_f(model, hf):
    return _load_generic(model, hf, copy_ln_f=False)


def load_in_place_transpose(model, hf):
    for key, value in hf.items():
        if value.dim() == 2 and ("c_attn" in key or "c_fc" in key or "c_proj" in key):
            value.t_()  # transposes HuggingFace's own tensor in place
    fixed = {k: (v.t() if v.dim() == 2 and ("c_attn" in k or "c_fc" in k or "c_proj" in k) else v) for k, v in hf.items()}
    return ref.load_gpt2_weights(model, fixed)


def load_by_state_dict(model, hf):
    """Builds a renamed state dict and loads it in one call."""
    sd = {"W_E": hf["transformer.wte.weight"], "W_pos": hf["transformer.wpe.weight"],
          "ln_f.w": hf["transformer.ln_f.weight"], "ln_f.b": hf["transformer.ln_f.bias"]}
    for i in range(len(model.blocks)):
        p, q = f"transformer.h.{i}.", f"blocks.{i}."
        wq, wk, wv = hf[p + "attn.c_attn.weight"].T.chunk(3, dim=0)
        bq, bk, bv = hf[p + "attn.c_attn.bias"].chunk(3)
        sd.update({q + "ln1.w": hf[p + "ln_1.weight"], q + "ln1.b": hf[p + "ln_1.bias"],
                   q + "attn.q.weight": wq, q + "attn.q.bias": bq, q + "attn.k.weight": wk, q + "attn.k.bias": bk,
                   q + "attn.v.weight": wv, q + "attn.v.bias": bv,
                   q + "attn.o.weight": hf[p + "attn.c_proj.weight"].T, q + "attn.o.bias": hf[p + "attn.c_proj.bias"],
                   q + "ln2.w": hf[p + "ln_2.weight"], q + "ln2.b": hf[p + "ln_2.bias"],
                   q + "mlp.fc_in.weight": hf[p + "mlp.c_fc.weight"].T, q + "mlp.fc_in.bias": hf[p + "mlp.c_fc.bias"],
                   q + "mlp.fc_out.weight": hf[p + "mlp.c_proj.weight"].T,
                   q + "mlp.fc_out.bias": hf[p + "mlp.c_proj.bias"]})
    model.load_state_dict({k: v.contiguous() for k, v in sd.items()})
    return model


MUTANTS = {
    "char_tokenizer": [TokFirstSeen, TokFromOne, TokDecodeList, TokCountsDuplicates],
    "token_position_embed": [embed_no_pos, embed_pos_by_token, embed_whole_pos, embed_pos_from_one],
    "causal_attention_pattern": [pattern_mask_after_softmax, pattern_unscaled, pattern_scaled_by_d, pattern_no_mask,
                                 pattern_masks_diagonal, pattern_naive_softmax, pattern_in_place_scale,
                                 pattern_mask_after_renormalised, pattern_mask_on_cpu, pattern_reversed_mask],
    "multi_head_attention": [MHASplitWrongAxis, MHAMergeWithoutTranspose, MHANoOutputProjection, MHAScaleByDModel,
                             MHANoHook, MHAViewOnInput, MHAReshapeNoTranspose, MHAMaskOnCPU],
    "gpt_layer_norm": [LNUnbiased, LNEpsOutside, LNNoAffine, LNNoCentring, LNInPlace, LNIgnoresEps],
    "gpt_mlp": [MLPExactGelu, MLPRelu, MLPNoActivation],
    "pre_norm_block": [BlockNoResidual, BlockPostNorm, BlockParallel, BlockInPlace, BlockOneNorm, BlockDefaultEps],
    "gpt_model": [GPTUntied, GPTNoFinalLN, GPTNoPositions, GPTOneBlock, GPTWrongNames, GPTPlainListBlocks,
                  GPTFinalNormDefaultEps],
    "load_gpt2_weights": [load_no_transpose_qkv, load_kqv_order, load_reshape_not_transpose, load_forgets_ln_f,
                          load_in_place_transpose],
}

ALTERNATIVES = {
    "char_tokenizer": [TokAlt],
    "token_position_embed": [embed_one_hot, embed_functional],
    "causal_attention_pattern": [pattern_einsum_big_negative, pattern_loops],
    "multi_head_attention": [MHAEinsum, MHAWithMaskBuffer],
    "gpt_layer_norm": [LNTorch, LNMoments],
    "gpt_mlp": [MLPManualTanh],
    "pre_norm_block": [BlockStepByStep],
    "gpt_model": [GPTTiedByAlias, GPTSequential],
    "load_gpt2_weights": [load_by_state_dict],
}
