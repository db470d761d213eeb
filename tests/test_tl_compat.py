"""The HuggingFace / TransformerLens wrapper: a bridge that matches the HF model it wraps, imported lazily."""
from __future__ import annotations

import subprocess
import sys

import torch

from safety_roadmap.reference.transformer_from_scratch import GPT, GPTConfig, load_gpt2_weights

CFG = GPTConfig(vocab_size=23, n_ctx=10, d_model=16, n_heads=4, n_layers=2)


def test_importing_the_library_does_not_import_transformer_lens() -> None:
    code = ("import sys, safety_roadmap, safety_roadmap.tl_compat, safety_roadmap.checks.transformer_from_scratch; "
            "print(sorted(m for m in ('transformer_lens', 'transformers') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", run.stdout


def test_bridge_matches_the_hf_model_and_the_reference_gpt() -> None:
    from safety_roadmap.tl_compat import bridge_from_hf_gpt2, tiny_hf_gpt2

    before = torch.get_rng_state()
    hf = tiny_hf_gpt2(CFG, seed=3)
    assert torch.equal(before, torch.get_rng_state()), "building the HF model must not move the global RNG"
    hf_state = {k: v.clone() for k, v in hf.state_dict().items()}
    ours = load_gpt2_weights(GPT(CFG), hf_state).eval()
    tokens = torch.randint(0, CFG.vocab_size, (2, CFG.n_ctx), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hf_logits = hf(tokens).logits
        ours_logits = ours(tokens)
    assert hf_logits.std() > 0.3, "weights should be spread enough that logits are not all near zero"
    assert (hf_logits - ours_logits).abs().max() < 1e-4

    bridge = bridge_from_hf_gpt2(hf)
    with torch.no_grad():
        bridge_logits = bridge(tokens)
    assert (bridge_logits - hf_logits).abs().max() < 1e-4
    _, cache = bridge.run_with_cache(tokens)
    assert cache["blocks.1.attn.hook_pattern"].shape == (2, CFG.n_heads, CFG.n_ctx, CFG.n_ctx)
