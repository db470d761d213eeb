"""Reference solutions for chapter 12 (interpretability tools: hooks, caches, induction heads).

The checks compare learners' answers with these. Models are TransformerLens 4
`TransformerBridge`s; TransformerLens itself is imported only inside the
functions that build models, because importing it costs several seconds.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import torch

# --------------------------------------------------------------------------- data


def repeated_tokens(n_seqs: int, period: int, d_vocab: int, seed: int = 0, n_repeats: int = 2) -> torch.Tensor:
    """`n_seqs` sequences, each a block of `period` distinct random tokens repeated `n_repeats` times.

    -> LongTensor [n_seqs, period * n_repeats]
    """
    g = torch.Generator().manual_seed(seed)
    blocks = torch.stack([torch.randperm(d_vocab, generator=g)[:period] for _ in range(n_seqs)])
    return blocks.repeat(1, n_repeats)


def periodic_batch(batch: int, seq_len: int, d_vocab: int, periods: torch.Tensor, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Training data for induction: each row tiles a block of distinct random tokens with its own period.

    periods: LongTensor [batch]. Returns tokens [batch, seq_len] and a bool mask [batch, seq_len - 1]
    that is True where the *next* token is predictable by copying (the current token has appeared
    one period earlier).
    """
    blocks = torch.argsort(torch.rand(batch, d_vocab, generator=generator), dim=1)   # random permutations
    tokens = blocks.gather(1, torch.arange(seq_len)[None] % periods[:, None])
    mask = torch.arange(seq_len - 1)[None] >= periods[:, None]   # position t predicts t+1; needs t >= period
    return tokens, mask


def per_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of predicting token t+1 at position t. logits [batch, pos, vocab] -> [batch, pos - 1]"""
    return -logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]


def masked_next_token_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions where `mask` [batch, pos - 1] is True."""
    return (per_token_loss(logits, tokens) * mask).sum() / mask.sum()


# --------------------------------------------------------------------------- head scores


def prev_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """How much each head attends from every position to the one just before it.

    pattern: [batch, n_heads, seq, seq] (query, key) -> [n_heads], averaged over batch and the
    query positions 1..seq-1.
    """
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, -1))


def induction_score(pattern: torch.Tensor, period: int) -> torch.Tensor:
    """On a sequence that repeats with `period`, how much each head attends from query i to key
    i - period + 1 (the token that followed the previous copy of the current token).

    pattern: [batch, n_heads, seq, seq] -> [n_heads], averaged over batch and queries i >= period.
    """
    diag = pattern.diagonal(offset=-(period - 1), dim1=-2, dim2=-1)   # queries period-1 .. seq-1
    return diag[..., 1:].mean(dim=(0, -1))


# --------------------------------------------------------------------------- residual stream


def head_results(model: Any, cache: Any, layer: int) -> torch.Tensor:
    """What each head of `layer` writes into the residual stream: z @ W_O per head.

    -> [batch, pos, n_heads, d_model]
    """
    return torch.einsum("bphd,hdm->bphm", cache["z", layer], model.W_O[layer])


def decompose_residual(model: Any, cache: Any) -> torch.Tensor:
    """The final residual stream of an attention-only model as a stack of its parts, in the order of
    TransformerLens's `get_full_resid_decomposition`: every head (L0H0, L0H1, ..., last layer's last
    head), then embed, pos_embed, and the summed attention output biases.

    -> [n_layers * n_heads + 3, batch, pos, d_model]; summing over axis 0 gives the final residual.
    """
    parts = []
    for layer in range(model.cfg.n_layers):
        parts.extend(head_results(model, cache, layer).unbind(dim=2))   # n_heads x [batch, pos, d_model]
    embed = cache["hook_embed"]
    parts.append(embed)
    parts.append(cache["hook_pos_embed"])
    parts.append(model.b_O.sum(0).expand_as(embed))
    return torch.stack(parts)


def logit_lens(model: Any, cache: Any) -> torch.Tensor:
    """Read the residual stream as logits before every layer and after the last one.

    Each of resid_pre 0 .. resid_pre L-1 and the final resid_post goes through the model's own final
    layer norm (which recomputes its statistics for that residual) and the unembedding.
    -> [n_layers + 1, batch, pos, d_vocab]
    """
    n_layers = model.cfg.n_layers
    stack = [cache["resid_pre", layer] for layer in range(n_layers)] + [cache["resid_post", n_layers - 1]]
    return torch.stack([model.unembed(model.ln_final(resid)) for resid in stack])


# --------------------------------------------------------------------------- interventions


def _zero_heads_hook(z: torch.Tensor, hook: Any, heads: Sequence[int]) -> torch.Tensor:
    z[:, :, list(heads)] = 0.0   # z: [batch, pos, head, d_head]
    return z


def ablate_heads(model: Any, tokens: torch.Tensor, heads: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Logits [batch, pos, d_vocab] with the listed (layer, head) outputs set to zero (zero ablation)."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(int(layer), []).append(int(head))
    hooks = [(f"blocks.{layer}.attn.hook_z", partial(_zero_heads_hook, heads=hs)) for layer, hs in by_layer.items()]
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


def find_induction_heads(model: Any, threshold: float = 0.5, period: int = 10, n_seqs: int = 32
                         ) -> list[tuple[int, int]]:
    """Every (layer, head) whose induction score on repeated random tokens exceeds `threshold`, sorted.
    (The learner's signature: the tokens come from `repeated_tokens` with its default seed.)"""
    tokens = repeated_tokens(n_seqs, period, model.cfg.d_vocab)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    found = []
    for layer in range(model.cfg.n_layers):
        scores = induction_score(cache["pattern", layer], period)
        found += [(layer, int(h)) for h in torch.nonzero(scores > threshold).flatten()]
    return found


def ablation_effects(model: Any, tokens: torch.Tensor, period: int, head_sets: Sequence[Sequence[tuple[int, int]]]
                     ) -> torch.Tensor:
    """What zero-ablating each set of heads does to the loss on the repeats, per prompt, with a 95 % interval.

    tokens: [batch >= 2, pos], sequences that repeat with `period`. For each set, every prompt's effect is
    its mean per-token loss over positions t >= period (the predictable ones) with the set ablated, minus
    the same without ablation (a paired difference). Prompts, not positions, are the independent units.
    -> [len(head_sets), 3]: mean effect over prompts, and mean -/+ 1.96 * std (n - 1) / sqrt(n).
    """
    with torch.no_grad():
        clean = per_token_loss(model(tokens), tokens)[:, period:].mean(dim=-1)          # [batch]
        rows = []
        for heads in head_sets:
            ablated = per_token_loss(ablate_heads(model, tokens, list(heads)), tokens)[:, period:].mean(dim=-1)
            effect = ablated - clean                                                      # [batch], paired
            mean = effect.mean()
            half = 1.96 * effect.std() / effect.numel() ** 0.5
            rows.append(torch.stack([mean, mean - half, mean + half]))
    return torch.stack(rows)


# --------------------------------------------------------------------------- the chapter's experiment
# The notebook's model, data and training loop as functions, so tests/test_chapter_12_claims.py can
# re-run the chapter's experiments with other seeds (seed 0 is the run the notebook shows).

VOCAB, SEQ_LEN, BATCH, MIN_PERIOD, MAX_PERIOD = 24, 32, 64, 4, 12
TRAIN_STEPS, FIXED_STEPS, FIXED_PERIOD = 150, 60, 8


def chapter_model(seed: int = 0) -> Any:
    """The chapter's untrained model: attention-only, 2 layers x 4 heads, d_model 32, vocabulary 24."""
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    cfg = TransformerBridgeConfig(n_layers=2, n_heads=4, d_head=8, d_model=32, d_vocab=VOCAB, n_ctx=SEQ_LEN,
                                  attn_only=True, normalization_type="LN", positional_embedding_type="standard",
                                  init_mode="gpt2", seed=seed, device="cpu")
    return TransformerBridge.boot_native(cfg)


def train_induction_model(model: Any, steps: int, fixed_period: int | None = None, seed: int = 0,
                          lr: float = 1e-2) -> tuple[Any, list[float]]:
    """The notebook's `train`: AdamW on the masked next-token loss of `periodic_batch` data (a period drawn
    per sequence from 4..12, or `fixed_period` for all). -> (model in eval mode, loss per step)"""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    model.train()
    for _ in range(steps):
        if fixed_period is None:
            periods = torch.randint(MIN_PERIOD, MAX_PERIOD + 1, (BATCH,), generator=gen)
        else:
            periods = torch.full((BATCH,), fixed_period)
        toks, mask = periodic_batch(BATCH, SEQ_LEN, VOCAB, periods, gen)
        loss = masked_next_token_loss(model(toks), toks, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses


def chapter_models(seed: int = 0) -> dict[str, Any]:
    """Both trained models of the chapter for one seed, trained as the notebook trains them for seed 0:
    the varied-period model (init `seed`, data `seed`) and the fixed-period one (init `seed`, data `seed + 1`)."""
    model, losses = train_induction_model(chapter_model(seed), TRAIN_STEPS, seed=seed)
    fixed, fixed_losses = train_induction_model(chapter_model(seed), FIXED_STEPS, fixed_period=FIXED_PERIOD,
                                                seed=seed + 1)
    return {"model": model, "losses": losses, "fixed_model": fixed, "fixed_losses": fixed_losses}


# --------------------------------------------------------------------------- models for checks

_POOL: dict[str, tuple[Any, list[tuple[torch.Tensor, torch.Tensor]]]] = {}


def pooled(builder: Any, **kwargs: Any) -> Any:
    """`builder(**kwargs)`, built once per process and restored on every call: original weights,
    no hooks (permanent ones included), eval mode, no gradients. Checks use it so that a model is
    booted once, however many checks run, and whatever a learner's function did to it last time.

    Weights are restored by copying into the live tensors (a bridge's `load_state_dict` costs tens of
    milliseconds, and a thorough check restores a model on every case)."""
    key = f"{builder.__name__}:{sorted(kwargs.items())!r}"
    if key not in _POOL:
        model = builder(**kwargs)
        live = model.state_dict(keep_vars=True)
        _POOL[key] = (model, [(t, t.detach().clone()) for t in live.values()])
    model, saved = _POOL[key]
    model.reset_hooks(including_permanent=True)
    with torch.no_grad():
        for tensor, original in saved:
            tensor.copy_(original)
    model.zero_grad(set_to_none=True)
    return model.eval() if model.training else model



def small_model(n_layers: int = 2, n_heads: int = 4, d_head: int = 8, d_vocab: int = 24, n_ctx: int = 16,
                seed: int = 0, perturb: bool = True, normalization: str | None = "LN") -> Any:
    """A small attention-only TransformerBridge with fixed random weights, in eval mode.

    With `perturb`, layer-norm weights and all biases are given random values too (fresh models have
    LN weight 1, bias 0 and b_U 0), so a check can tell apart answers that forget one of them.
    """
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    cfg = TransformerBridgeConfig(n_layers=n_layers, d_model=n_heads * d_head, n_heads=n_heads, d_head=d_head,
                                  d_vocab=d_vocab, n_ctx=n_ctx, normalization_type=normalization, attn_only=True,
                                  positional_embedding_type="standard", seed=seed, init_mode="gpt2", device="cpu")
    model = TransformerBridge.boot_native(cfg)
    if perturb:
        g = torch.Generator().manual_seed(1000 + seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if ".ln" in name or name.startswith("ln_final"):
                    p.add_(0.3 * torch.randn(p.shape, generator=g))
                elif name.endswith("bias"):
                    p.add_(0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.mul_(2.0)   # sharper attention than gpt2 init: patterns differ between heads
            bias = dict(model.named_buffers()).get("unembed._original_component.bias")
            if bias is not None:
                bias.copy_(0.5 * torch.randn(bias.shape, generator=g))
    return model.eval()


_TOK, _HANDMADE_V, _HANDMADE_N = 0, 20, 24


def handmade_induction_model(n_layers: int, layout: dict[tuple[int, int], str], n_heads: int = 3,
                             sharpness: float = 30.0) -> Any:
    """A model whose heads are written by hand, so which heads are induction heads is known.

    `layout` maps (layer, head) to "prev" (attends to the previous position; in layer 0 it also copies
    that token into a 'previous token' subspace), "induction" (attends to the position after the
    earlier copy of the current token, reading that subspace; copies the token to the output),
    "duplicate" (attends to the earlier copy of the current token itself), "half" (induction and
    duplicate at once: about half its attention on the induction target, an induction score near
    0.45 at any period), or "offset:k" (a positional head that always attends k positions back: it
    scores as an induction head only at period k + 1, like the fixed-period shortcut of the chapter).
    Other heads are zero. Vocabulary 20, context 24, no layer norm.
    """
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    V, N = _HANDMADE_V, _HANDMADE_N
    d_head = V + N
    POS, PREV, OUT = V, V + N, 2 * V + N
    d_model = 3 * V + N
    cfg = TransformerBridgeConfig(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_head, d_vocab=V,
                                  n_ctx=N, normalization_type=None, attn_only=True,
                                  positional_embedding_type="standard", seed=0, init_mode="gpt2", device="cpu")
    model = TransformerBridge.boot_native(cfg)
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    s = sharpness * d_head ** 0.5   # cancels the 1/sqrt(d_head) attention scale
    sd["embed.weight"][torch.arange(V), torch.arange(V)] = 1.0
    sd["pos_embed.weight"][torch.arange(N), POS + torch.arange(N)] = 1.0
    sd["unembed.weight"][torch.arange(V), OUT + torch.arange(V)] = 5.0
    for (layer, head), kind in layout.items():
        q, k, v, o = (sd[f"blocks.{layer}.attn.{m}.weight"] for m in "qkvo")
        r = head * d_head
        if kind == "prev":
            q[r + torch.arange(N), POS + torch.arange(N)] = s
            k[r + 1 + torch.arange(N - 1), POS + torch.arange(N - 1)] = 1.0
            if layer == 0:
                v[r + torch.arange(V), torch.arange(V)] = 1.0
                o[PREV + torch.arange(V), r + torch.arange(V)] = 1.0
        elif kind == "induction":
            q[r + torch.arange(V), torch.arange(V)] = s
            k[r + torch.arange(V), PREV + torch.arange(V)] = 1.0
            v[r + torch.arange(V), torch.arange(V)] = 1.0
            o[OUT + torch.arange(V), r + torch.arange(V)] = 1.0
        elif kind in ("duplicate", "half"):
            q[r + torch.arange(V), torch.arange(V)] = s
            k[r + torch.arange(V), torch.arange(V)] = 1.0
            q[r + V + torch.arange(N), POS + torch.arange(N)] = s       # and not itself
            k[r + V + torch.arange(N), POS + torch.arange(N)] = -1.0
            if kind == "half":                                          # the induction target as well
                k[r + torch.arange(V), PREV + torch.arange(V)] = 1.0
        elif kind.startswith("offset:"):
            back = int(kind.split(":")[1])
            q[r + torch.arange(N), POS + torch.arange(N)] = s
            k[r + back + torch.arange(N - back), POS + torch.arange(N - back)] = 1.0
        else:
            raise ValueError(f"unknown head kind {kind!r}")
    model.load_state_dict(sd)
    return model.eval()
