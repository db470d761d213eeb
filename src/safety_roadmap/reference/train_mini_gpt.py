"""Reference solutions for chapter 09 (training a mini-GPT), and the offline corpus it trains on.

The corpus is Python's own standard library source: every Python installation
carries it, so nothing is downloaded. Its files differ a little between Python
versions, so `load_corpus` reads a *fixed* list of modules in a fixed order, maps
every character outside printable ASCII to one placeholder (a fixed 96-symbol
vocabulary), and cuts at a fixed character budget. When the sources are absent
(some minimal installs ship only bytecode) it falls back to the docstrings
compiled into the interpreter itself.
"""
from __future__ import annotations

import builtins
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .transformer_from_scratch import GPT, CharTokenizer, GPTConfig

__all__ = ["CORPUS_MODULES", "CORPUS_CHARS", "CHARSET", "load_corpus", "corpus_tokenizer", "Corpus",
           "sample_batch", "next_token_loss", "lr_schedule", "perplexity", "sample_next_token", "generate",
           "unigram_entropy", "TrainConfig", "train", "evaluate_loss", "validation_batches", "MODEL_CONFIG"]

CORPUS_MODULES = ("textwrap", "string", "heapq", "bisect", "fnmatch", "colorsys", "shlex", "calendar",
                  "fractions", "statistics", "difflib", "queue", "sched", "graphlib", "contextlib",
                  "functools", "dataclasses", "random", "ipaddress", "argparse")
CORPUS_CHARS = 400_000          # the character budget: the same corpus size on every Python version
PLACEHOLDER = "~"               # stands in for tabs, non-ASCII letters and anything else unusual
CHARSET = "\n" + "".join(chr(i) for i in range(32, 127))   # 96 symbols; PLACEHOLDER is one of them
VAL_FRACTION = 0.1

# The model chapter 09 trains (and the check for its trained model expects).
MODEL_CONFIG = GPTConfig(vocab_size=len(CHARSET), n_ctx=32, d_model=64, n_heads=4, n_layers=2)


def _clean(text: str) -> str:
    allowed = set(CHARSET)
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    return "".join(c if c in allowed else PLACEHOLDER for c in text)


def _module_source(name: str) -> str:
    spec = importlib.util.find_spec(name)
    origin = getattr(spec, "origin", None) if spec else None
    if not origin or not str(origin).endswith(".py") or not Path(origin).is_file():
        return ""
    return Path(origin).read_text(encoding="utf-8", errors="replace")


def _builtin_docstrings() -> str:
    """Docstrings compiled into the interpreter: present even when no .py source is installed."""
    docs = []
    for name in sorted(dir(builtins)):
        obj = getattr(builtins, name)
        doc = getattr(obj, "__doc__", None)
        if isinstance(doc, str):
            docs.append(f"{name}\n{doc}\n")
        if isinstance(obj, type):
            for attr in sorted(vars(obj)):
                try:
                    doc = getattr(getattr(obj, attr), "__doc__", None)
                except Exception:
                    continue
                if isinstance(doc, str):
                    docs.append(f"{name}.{attr}\n{doc}\n")
    return "\n".join(docs)


@dataclass(frozen=True)
class Corpus:
    """The cleaned text, where it came from, and its train/validation split as token ids."""
    text: str
    source: str
    train: torch.Tensor = field(repr=False)
    val: torch.Tensor = field(repr=False)


_CACHE: dict[int, Corpus] = {}


def load_corpus(n_chars: int = CORPUS_CHARS) -> Corpus:
    """The training text: the fixed module list read in order, cleaned, cut at `n_chars`.

    The last 10% is the validation split (whole files the model never trains on).
    """
    if n_chars in _CACHE:
        return _CACHE[n_chars]
    parts, used = [], []
    total = 0
    for name in CORPUS_MODULES:
        src = _module_source(name)
        if src:
            parts.append(f"# ---- {name}.py ----\n{src}\n")
            used.append(name)
            total += len(parts[-1])
        if total >= n_chars:
            break
    source = f"Python {'.'.join(map(str, __import__('sys').version_info[:3]))} standard library: {', '.join(used)}"
    if total < n_chars // 2:  # stripped install: fall back to the interpreter's own docstrings
        parts.append(_builtin_docstrings())
        source = "docstrings of Python's builtins (the standard library sources were not found)"
    text = _clean("".join(parts))[:n_chars]
    tok = corpus_tokenizer()
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    n_val = int(len(ids) * VAL_FRACTION)
    corpus = Corpus(text=text, source=source, train=ids[:-n_val], val=ids[-n_val:])
    _CACHE[n_chars] = corpus
    return corpus


def corpus_tokenizer() -> CharTokenizer:
    """The fixed character vocabulary of the corpus (96 symbols)."""
    return CharTokenizer(CHARSET)


# --------------------------------------------------------------------------- the exercises

def sample_batch(data: torch.Tensor, batch_size: int, block_size: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of `data` [N]: inputs x [batch, block] and targets y = the next token at each position."""
    starts = torch.randint(0, len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[starts[:, None] + offsets]
    y = data[starts[:, None] + offsets + 1]
    return x, y


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats per token): logits [batch, seq, vocab], targets [batch, seq] -> scalar."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def lr_schedule(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warm-up to `max_lr` over `warmup_steps`, then cosine decay to `min_lr` at `total_steps`."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def perplexity(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    """exp(mean next-token cross-entropy) of `model` on inputs x and targets y, both [batch, seq]."""
    with torch.no_grad():
        logits = model(x)
        return float(torch.exp(next_token_loss(logits, y)))


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of `logits` [batch, vocab]: temperature 0 is greedy; top_k keeps the k most likely."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# --------------------------------------------------------------------------- helpers the chapter uses

def generate(model: nn.Module, prompt: torch.Tensor, n_new: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None,
             sampler: Callable[..., torch.Tensor] = sample_next_token) -> torch.Tensor:
    """Extend `prompt` [batch, seq] by `n_new` tokens, feeding the model at most its context length."""
    n_ctx = model.cfg.n_ctx
    tokens = prompt
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(tokens[:, -n_ctx:])[:, -1]
            nxt = sampler(logits, temperature=temperature, top_k=top_k, generator=generator)
            tokens = torch.cat([tokens, nxt.reshape(-1, 1)], dim=1)
    return tokens


def unigram_entropy(ids: torch.Tensor, vocab_size: int) -> float:
    """Entropy (nats) of the token frequencies: the loss of the best model that ignores context."""
    counts = torch.bincount(ids, minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def validation_batches(val: torch.Tensor, block_size: int, n_windows: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """`n_windows` evenly spaced, fixed windows of the validation split: the same for everyone."""
    starts = torch.linspace(0, len(val) - block_size - 1, n_windows).long()
    offsets = torch.arange(block_size)
    return val[starts[:, None] + offsets], val[starts[:, None] + offsets + 1]


def evaluate_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token loss of `model` on fixed batches, without gradients."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size])
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i:i + batch_size].reshape(-1),
                                           reduction="sum"))
            count += y[i:i + batch_size].numel()
    model.train(was_training)
    return total / count


@dataclass
class TrainConfig:
    """Hyperparameters of the chapter's training run."""
    steps: int = 400
    batch_size: int = 32
    block_size: int = 32
    max_lr: float = 8e-3
    min_lr: float = 8e-4
    warmup_steps: int = 40
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    seed: int = 0


def train(model: nn.Module, corpus: Corpus, cfg: TrainConfig, progress: bool = True,
          device: str | torch.device = "cpu") -> dict[str, list]:
    """AdamW with warm-up and cosine decay, gradient clipping; returns the loss history.

    `model` must already be on `device`; batches are drawn on the CPU (same seed, same batches) and moved there.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.max_lr, betas=(0.9, 0.95))
    xv, yv = (t.to(device) for t in validation_batches(corpus.val, cfg.block_size))
    history: dict[str, list] = {"step": [], "train_loss": [], "val_step": [], "val_loss": [], "lr": [],
                                "grad_norm": []}
    steps = range(cfg.steps)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="training")
    model.train()
    for step in steps:
        lr = lr_schedule(step, cfg.max_lr, cfg.warmup_steps, cfg.steps, cfg.min_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = sample_batch(corpus.train, cfg.batch_size, cfg.block_size, gen)
        loss = next_token_loss(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        history["step"].append(step)
        history["train_loss"].append(float(loss.detach()))
        history["lr"].append(lr)
        history["grad_norm"].append(float(grad_norm))
        if (step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1:
            history["val_step"].append(step)
            history["val_loss"].append(evaluate_loss(model, xv, yv))
    model.eval()
    return history
