"""HuggingFace and TransformerLens plumbing, kept in one place.

`bridge_from_hf_gpt2` is the only code in the project that touches a private
TransformerLens path (`transformer_lens.model_bridge.sources._bridge_builder`);
if TransformerLens renames it, this module is the one line to change.
Everything is imported lazily inside the functions: importing `safety_roadmap`
(or this module) imports neither `transformers` nor `transformer_lens`, which
take seconds to load.

    from safety_roadmap.tl_compat import tiny_hf_gpt2, bridge_from_hf_gpt2
    hf = tiny_hf_gpt2(cfg)                      # a GPT2LMHeadModel with random weights, nothing downloaded
    hf_state = {k: v.clone() for k, v in hf.state_dict().items()}   # before wrapping: the bridge renames keys
    bridge = bridge_from_hf_gpt2(hf)            # a TransformerBridge around that same model
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from .reference.transformer_from_scratch import GPTConfig


def tiny_hf_gpt2(cfg: "GPTConfig", seed: int = 0, spread: bool = True) -> Any:
    """A HuggingFace `GPT2LMHeadModel` shaped like `cfg`, with random weights, in eval mode.

    Dropout is off. With `spread=True` every parameter gets a random value of a useful size
    (LayerNorm scales near 1, non-zero biases, weights ~ N(0, 1/d_model)) instead of GPT-2's
    initialisation (identity LayerNorms, zero biases, weights of std 0.02), which would hide a
    forgotten bias and give logits so small that a tolerance of 1e-4 proves little.
    The global torch RNG is left untouched.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.n_ctx, n_embd=cfg.d_model,
                        n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=cfg.d_mlp,
                        activation_function="gelu_new", layer_norm_epsilon=cfg.ln_eps,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=None, eos_token_id=None, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
        if spread:
            gen = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name.endswith("bias"):
                        p.copy_(0.1 * torch.randn(p.shape, generator=gen))
                    elif p.dim() == 1:  # LayerNorm scales
                        p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
                    else:
                        p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(cfg.d_model))
    return model.eval()


def bridge_from_hf_gpt2(hf_model: Any) -> Any:
    """A TransformerLens 4 `TransformerBridge` wrapping `hf_model` (a `GPT2LMHeadModel`) in place.

    Wrapping renames the HF model's state-dict keys, so copy `hf_model.state_dict()` first if you
    need it. Compatibility mode is *not* enabled: raw logits equal the HF model's.
    """
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module

    bridge = build_bridge_from_module(hf_model, "GPT2LMHeadModel", hf_config=hf_model.config)
    return bridge.eval()
