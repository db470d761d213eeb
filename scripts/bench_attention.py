"""What does from-scratch attention cost? Times one training step of chapter 09's mini-GPT.

Compares the reference model (attention written out: scores, mask, softmax, weighted sum, as in
chapter 08) with the same model, same weights, using PyTorch's fused
`torch.nn.functional.scaled_dot_product_attention`, and prints tokens per second for each.

Run from the repository root (a benchmark, not a test; nothing is downloaded):

    .venv/bin/python scripts/bench_attention.py                      # CPU, context 32 and 256
    .venv/bin/python scripts/bench_attention.py --device cuda --block-sizes 32 256 1024
    .venv/bin/python scripts/bench_attention.py --threads 2 --steps 50

The fused kernel never materialises the [seq, seq] attention pattern, which is why it is faster and uses
less memory at long contexts; it is also why it cannot be hooked: interpretability tools such as
TransformerLens compute the pattern explicitly so that you can read it.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from safety_roadmap.reference.train_mini_gpt import MODEL_CONFIG, next_token_loss
from safety_roadmap.reference.transformer_from_scratch import GPT, MultiHeadAttention


class FusedAttention(MultiHeadAttention):
    """The same parameters as MultiHeadAttention, computed with PyTorch's fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (lin(x).reshape(b, t, self.n_heads, self.d_head).transpose(1, 2) for lin in (self.q, self.k, self.v))
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(z.transpose(1, 2).reshape(b, t, d))


def make_models(block_size: int, device: str) -> tuple[GPT, GPT]:
    torch.manual_seed(0)
    cfg = replace(MODEL_CONFIG, n_ctx=block_size)
    scratch = GPT(cfg).to(device)
    fused = GPT(cfg).to(device)
    for block in fused.blocks:
        block.attn = FusedAttention(cfg).to(device)
    fused.load_state_dict(scratch.state_dict())
    return scratch, fused


def time_steps(model: GPT, batch: int, block: int, steps: int, device: str) -> float:
    """Median seconds per training step (forward, backward, AdamW update) after a warm-up."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(steps + 5):
        x = torch.randint(0, model.cfg.vocab_size, (batch, block), generator=gen).to(device)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = next_token_loss(model(x), x.roll(-1, dims=1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 5:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--block-sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--batch-tokens", type=int, default=1024, help="tokens per batch (batch = this / block)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a busy laptop)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"device {args.device}, {args.threads} CPU thread(s), model d_model={MODEL_CONFIG.d_model}, "
          f"{MODEL_CONFIG.n_layers} layers, {MODEL_CONFIG.n_heads} heads")
    print(f"{'context':>8} {'batch':>6} {'from scratch':>16} {'fused (SDPA)':>16} {'speed-up':>9} {'max |logit diff|':>17}")
    for block in args.block_sizes:
        batch = max(1, args.batch_tokens // block)
        scratch, fused = make_models(block, args.device)
        x = torch.randint(0, MODEL_CONFIG.vocab_size, (2, block), device=args.device)
        with torch.no_grad():
            gap = (scratch(x) - fused(x)).abs().max().item()
        t_scratch = time_steps(scratch, batch, block, args.steps, args.device)
        t_fused = time_steps(fused, batch, block, args.steps, args.device)
        tokens = batch * block
        print(f"{block:>8} {batch:>6} {tokens / t_scratch:>12,.0f} tok/s {tokens / t_fused:>12,.0f} tok/s "
              f"{t_scratch / t_fused:>8.2f}x {gap:>17.1e}")


if __name__ == "__main__":
    main()
