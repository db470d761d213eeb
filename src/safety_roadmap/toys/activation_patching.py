"""Chapter 13's toy indirect-object task, its model and the experiments its claims rest on.

Every prompt mentions two names three times: a pair "A and B" and one more mention, X, of the subject
S. The answer is the other name, the indirect object IO. Eight templates of different lengths (9 to 13 tokens) put the
pair and X at different positions (X after the pair in four, before it in the other four), both pair
orders occur (IO first, "ABBA"; S first, "BABA"), and the prompts are left-padded to one length. So
neither a position nor "the last name" tells which name is S: only noticing which name is repeated does.

The notebook and the tests both call these functions, so a claim the notebook makes about one seed can
be re-run here with other seeds. TransformerLens is imported only inside the functions that need it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, NamedTuple

import torch
import torch.nn.functional as F

PAD, BOS, AND, TO, COMMA = 0, 1, 2, 3, 4
FILLER_WORDS = ("went", "home", "gave", "it", "then", "later", "a", "book", "took", "the", "bag", "ran")
NAME_WORDS = ("Ann", "Bob", "Cat", "Dan", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon",
              "Kim", "Lee", "Max", "Ned", "Oli", "Pam", "Ray", "Sue", "Tom", "Uma")
WORDS = ("<pad>", "<s>", "and", "to", ",") + FILLER_WORDS + NAME_WORDS   # token id = index here
FIRST_FILLER = 5
FIRST_NAME = FIRST_FILLER + len(FILLER_WORDS)
D_VOCAB = len(WORDS)

# A and B: the pair of names; X: the other mention of the subject; F: a random filler word
TEMPLATES = (
    "A and B F F X F F to",          # 0: the fixed template of the shortcut model (S2 at position 6)
    "F A and B F , X F to",
    "F F A and B F F F X F to",
    "A and B , X F F F to",
    "X F F , A and B F to",
    "F X F , F A and B F F to",
    "X F , F F A and B F F F to",
    "F F X , A and B F to",
)
PAIR_FIRST, X_FIRST = (0, 1, 2, 3), (4, 5, 6, 7)
SEQ_LEN = 1 + max(len(t.split()) for t in TEMPLATES)   # <s> + the longest template
_FIXED = {"and": AND, "to": TO, ",": COMMA}


class IOIBatch(NamedTuple):
    """tokens [n, SEQ_LEN] (left-padded), io [n], s [n], x_pos [n] (where X is), template [n]."""
    tokens: torch.Tensor
    io: torch.Tensor
    s: torch.Tensor
    x_pos: torch.Tensor
    template: torch.Tensor


def ioi_batch(n: int, generator: torch.Generator, templates: Iterable[int] | None = None) -> IOIBatch:
    """`n` prompts drawn from `templates` (default: all), names and fillers at random, half ABBA, half BABA."""
    allowed = torch.tensor(list(range(len(TEMPLATES)) if templates is None else templates))
    template = allowed[torch.randint(len(allowed), (n,), generator=generator)]
    picks = torch.rand(n, len(NAME_WORDS), generator=generator).argsort(dim=1)[:, :2] + FIRST_NAME
    io, s = picks[:, 0], picks[:, 1]
    abba = torch.rand(n, generator=generator) < 0.5
    fillers = torch.randint(FIRST_FILLER, FIRST_NAME, (n, SEQ_LEN), generator=generator)
    tokens = torch.full((n, SEQ_LEN), PAD)
    x_pos = torch.zeros(n, dtype=torch.long)
    for k in allowed.unique().tolist():
        rows = template == k
        words = ["<s>"] + TEMPLATES[k].split()
        start = SEQ_LEN - len(words)
        for j, word in enumerate(words):
            pos = start + j
            if word == "A":
                column = torch.where(abba, io, s)
            elif word == "B":
                column = torch.where(abba, s, io)
            elif word == "X":
                column = s
                x_pos[rows] = pos
            elif word == "F":
                column = fillers[:, pos]
            else:
                column = torch.full((n,), BOS if word == "<s>" else _FIXED[word])
            tokens[rows, pos] = column[rows]
    return IOIBatch(tokens, io, s, x_pos, template)


def corrupt(batch: IOIBatch) -> torch.Tensor:
    """The corrupted twin of each prompt: X (a mention of S) becomes IO, so IO is now the repeated name
    and the right answer flips to S. Nothing else changes."""
    tokens = batch.tokens.clone()
    tokens[torch.arange(len(tokens)), batch.x_pos] = batch.io
    return tokens


def show(tokens: torch.Tensor) -> str:
    """One prompt as words, padding left out."""
    return " ".join(WORDS[t] for t in tokens.tolist() if t != PAD)


# --------------------------------------------------------------------------- the model


def ioi_model(seed: int = 0, device: str = "cpu") -> Any:
    """A fresh 2-layer, 4-head, attention-only TransformerBridge over the task's vocabulary."""
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    cfg = TransformerBridgeConfig(n_layers=2, n_heads=4, d_head=8, d_model=32, d_vocab=D_VOCAB, n_ctx=SEQ_LEN,
                                  attn_only=True, normalization_type="LN", positional_embedding_type="standard",
                                  init_mode="gpt2", seed=seed, device=device)
    return TransformerBridge.boot_native(cfg)


def train_ioi_model(seed: int = 0, steps: int = 300, templates: Iterable[int] | None = None,
                    progress: bool = False, device: str = "cpu") -> Any:
    """Train `ioi_model(seed)` with AdamW on fresh batches of 128 prompts from `templates`, loss on the
    answer at the last position only. Returns the model in eval mode."""
    model = ioi_model(seed, device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    templates = None if templates is None else list(templates)
    steps_iter: Iterable[int] = range(steps)
    if progress:
        from .progressbar import tqdm

        steps_iter = tqdm(steps_iter, desc=f"training (seed {seed})")
    model.train()
    for _ in steps_iter:
        batch = ioi_batch(128, gen, templates)
        loss = F.cross_entropy(model(batch.tokens.to(device))[:, -1], batch.io.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: Any, batch: IOIBatch) -> float:
    """Fraction of prompts whose top prediction at the last position is IO."""
    device = next(model.parameters()).device
    return (model(batch.tokens.to(device))[:, -1].argmax(-1).cpu() == batch.io).float().mean().item()


# --------------------------------------------------------------------------- experiments


@contextmanager
def quiet_patching() -> Iterator[Any]:
    """`transformer_lens.patching` with its progress bars off (restored afterwards): a sweep of a tiny
    model takes a second, and a bar per call would bury the notebook's output."""
    from transformer_lens import patching

    bar = patching.tqdm
    patching.tqdm = lambda iterable, **kwargs: iterable
    try:
        yield patching
    finally:
        patching.tqdm = bar


def mean_logit_diff(batch: IOIBatch) -> Any:
    """The patching metric: mean over prompts of logit(IO) - logit(S) at the last position."""
    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1].cpu()
        return (last.gather(1, batch.io[:, None]) - last.gather(1, batch.s[:, None])).mean()
    return metric


def head_component_recovery(model: Any, batch: IOIBatch) -> dict[str, torch.Tensor]:
    """Normalised recovery [n_layers, n_heads] from patching each head's output (`z`), query, key or
    value at every position at once, with TransformerLens's `patching.get_act_patch_attn_head_*_all_pos`."""
    model.eval()
    device = next(model.parameters()).device
    metric = mean_logit_diff(batch)
    clean, corrupted = batch.tokens.to(device), corrupt(batch).to(device)
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(clean)
        clean_value, corrupted_value = metric(clean_logits).item(), metric(model(corrupted)).item()
    out = {}
    for component in ("out", "q", "k", "v"):
        with quiet_patching() as patching, torch.no_grad():
            sweep = getattr(patching, f"get_act_patch_attn_head_{component}_all_pos")
            patched = sweep(model, corrupted, clean_cache, metric).cpu()
        out["z" if component == "out" else component] = (patched - corrupted_value) / (clean_value - corrupted_value)
    return out
