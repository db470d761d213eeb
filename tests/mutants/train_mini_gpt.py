"""Mutants and alternatives for chapter 09_train_mini_gpt."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from safety_roadmap.reference import train_mini_gpt as ref
from safety_roadmap.reference.transformer_from_scratch import GPT

# --------------------------------------------------------------------------- batch sampler


def batch_targets_equal_inputs(data, batch_size, block_size, generator=None):
    starts = torch.randint(0, len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[s:s + block_size] for s in starts])
    return x, x.clone()  # off-by-one targets: y should be shifted by one


def batch_excludes_last_start(data, batch_size, block_size, generator=None):
    starts = torch.randint(0, len(data) - block_size - 1, (batch_size,), generator=generator)
    x = torch.stack([data[s:s + block_size] for s in starts])
    y = torch.stack([data[s + 1:s + block_size + 1] for s in starts])
    return x, y


def batch_runs_past_the_end(data, batch_size, block_size, generator=None):
    starts = torch.randint(0, len(data) - block_size + 1, (batch_size,), generator=generator)
    x = torch.stack([data[s:s + block_size] for s in starts])
    y = torch.stack([data[s + 1:s + block_size + 1] for s in starts])
    return x, y


def batch_ignores_generator(data, batch_size, block_size, generator=None):
    starts = torch.randint(0, len(data) - block_size, (batch_size,))  # global RNG: a seed does not fix the batch
    x = torch.stack([data[s:s + block_size] for s in starts])
    y = torch.stack([data[s + 1:s + block_size + 1] for s in starts])
    return x, y


def batch_one_start(data, batch_size, block_size, generator=None):
    s = int(torch.randint(0, len(data) - block_size, (1,), generator=generator))
    x = data[s:s + block_size].repeat(batch_size, 1)  # the same window in every row
    y = data[s + 1:s + block_size + 1].repeat(batch_size, 1)
    return x, y


def batch_y_shifted_back(data, batch_size, block_size, generator=None):
    starts = torch.randint(1, len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[s:s + block_size] for s in starts])
    y = torch.stack([data[s - 1:s + block_size - 1] for s in starts])
    return x, y


def batch_rounded_float(data, batch_size, block_size, generator=None):
    last = len(data) - block_size - 1
    starts = (torch.rand(batch_size, generator=generator) * last).round().long()  # the two ends come up half as often
    idx = starts[:, None] + torch.arange(block_size)
    return data[idx], data[idx + 1]


def batch_reseeds_global(data, batch_size, block_size, generator=None):
    if generator is not None:
        torch.manual_seed(generator.initial_seed())  # a seed still fixes the batch, but through the global RNG
    starts = torch.randint(0, len(data) - block_size, (batch_size,))
    idx = starts[:, None] + torch.arange(block_size)
    return data[idx], data[idx + 1]


def batch_numpy(data, batch_size, block_size, generator=None):
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(data) - block_size, size=batch_size)
    idx = torch.as_tensor(starts)[:, None] + torch.arange(block_size + 1)
    chunk = data[idx]  # [batch, block + 1]
    return chunk[:, :-1], chunk[:, 1:]


def batch_unfold(data, batch_size, block_size, generator=None):
    windows = data.unfold(0, block_size + 1, 1)  # every window of block_size + 1 tokens
    pick = torch.randint(len(windows), (batch_size,), generator=generator)
    chosen = windows[pick]
    return chosen[:, :block_size].clone(), chosen[:, 1:].clone()


# --------------------------------------------------------------------------- loss


def loss_sum(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")


def loss_double_shift(logits, targets):
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v), targets[:, 1:].reshape(-1))


def loss_log_of_softmax(logits, targets):
    probs = torch.softmax(logits, dim=-1)
    picked = probs.gather(-1, targets[..., None]).squeeze(-1)
    return -torch.log(picked).mean()


def loss_item(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).item()  # breaks backward


def loss_detached_leaf(logits, targets):
    value = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).item()
    return torch.tensor(value, requires_grad=True)  # requires grad, but is cut off from the logits


def loss_view(logits, targets):
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))  # fails on non-contiguous logits


def loss_manual_logsumexp(logits, targets):
    lse = torch.logsumexp(logits, dim=-1)
    right = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (lse - right).mean()


def loss_nll_of_log_softmax(logits, targets):
    logp = F.log_softmax(logits.float(), dim=-1).to(logits.dtype)
    return F.nll_loss(logp.flatten(0, 1), targets.flatten())


# --------------------------------------------------------------------------- generation


def gen_no_crop(model, prompt, n_new, temperature=1.0, top_k=None, generator=None):
    tokens = prompt
    with torch.no_grad():
        for _ in range(n_new):
            nxt = ref.sample_next_token(model(tokens)[:, -1], temperature, top_k, generator)  # never crops
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
    return tokens


def gen_first_window(model, prompt, n_new, temperature=1.0, top_k=None, generator=None):
    tokens = prompt
    with torch.no_grad():
        for _ in range(n_new):
            nxt = ref.sample_next_token(model(tokens[:, :model.cfg.n_ctx])[:, -1], temperature, top_k, generator)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
    return tokens


def gen_first_position(model, prompt, n_new, temperature=1.0, top_k=None, generator=None):
    tokens = prompt
    with torch.no_grad():
        for _ in range(n_new):
            nxt = ref.sample_next_token(model(tokens[:, -model.cfg.n_ctx:])[:, 0], temperature, top_k, generator)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
    return tokens


def gen_new_only(model, prompt, n_new, temperature=1.0, top_k=None, generator=None):
    return ref.generate(model, prompt, n_new, temperature, top_k, generator)[:, prompt.shape[1]:]


def gen_ignores_generator(model, prompt, n_new, temperature=1.0, top_k=None, generator=None):
    return ref.generate(model, prompt, n_new, temperature, top_k, None)  # a seed does not fix the text


def gen_own_generator(model, prompt, n_new, temperature=1.0, top_k=None, generator=None):
    own = torch.Generator().manual_seed(0)  # reproducible, but the caller's seed changes nothing
    return ref.generate(model, prompt, n_new, temperature, top_k, own)


def gen_drops_top_k(model, prompt, n_new, temperature=1.0, top_k=None, generator=None):
    return ref.generate(model, prompt, n_new, temperature, None, generator)  # top_k never reaches the sampler


def gen_preallocated(model, prompt, n_new, temperature=1.0, top_k=None, generator=None):
    b, t0 = prompt.shape
    out = torch.empty(b, t0 + n_new, dtype=torch.long)
    out[:, :t0] = prompt
    model.eval()
    for i in range(t0, t0 + n_new):
        with torch.no_grad():
            logits = model(out[:, max(0, i - model.cfg.n_ctx):i])
        out[:, i] = ref.sample_next_token(logits[:, -1, :], temperature=temperature, top_k=top_k, generator=generator)
    return out


# --------------------------------------------------------------------------- perplexity


def _per_token(model, x, y):
    with torch.no_grad():
        logits = model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none").reshape(y.shape)


def ppl_base_two(model, x, y):
    return float(2 ** _per_token(model, x, y).mean())


def ppl_mean_of_rows(model, x, y):
    return float(_per_token(model, x, y).mean(dim=1).exp().mean())


def ppl_of_sum(model, x, y):
    return float(_per_token(model, x, y).sum().exp())


def ppl_returns_loss(model, x, y):
    return float(_per_token(model, x, y).mean())


def ppl_geometric_mean(model, x, y):
    # the geometric mean of 1 / p(right token): the same number, computed from probabilities
    with torch.no_grad():
        probs = torch.softmax(model(x).double(), dim=-1)
        p = probs.gather(-1, y[..., None]).squeeze(-1)
        return float(torch.exp(-torch.log(p).mean()))


def ppl_loop(model, x, y):
    total, count = 0.0, 0
    with torch.no_grad():
        for xb, yb in zip(x, y):  # one sequence at a time
            logits = model(xb[None])[0]
            total += float(F.cross_entropy(logits, yb, reduction="sum"))
            count += len(yb)
    return math.exp(total / count)


# --------------------------------------------------------------------------- sampling


def sample_from_logits(logits, temperature=1.0, top_k=None, generator=None):
    shifted = logits - logits.min(dim=-1, keepdim=True).values  # "probabilities" made from raw logits
    return torch.multinomial(shifted / temperature, 1, generator=generator).squeeze(-1)


def sample_raw_logits(logits, temperature=1.0, top_k=None, generator=None):
    return torch.multinomial(logits / temperature, 1, generator=generator).squeeze(-1)  # negative entries: error


def sample_temperature_multiplies(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits * temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)


def sample_top_k_plus_one(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k + 1, dim=-1).values[..., -1:]  # keeps k + 1 tokens
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)


def _sample_with_threshold(logits, temperature, top_k, generator, kth_of):
    """Temperature, then every logit below kth_of(scaled logits) masked, then a multinomial draw."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None:
        logits = logits.masked_fill(logits < kth_of(logits, top_k), float("-inf"))
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)


def sample_topk_unguarded(logits, temperature=1.0, top_k=None, generator=None):
    # torch.topk raises when top_k > vocab
    return _sample_with_threshold(logits, temperature, top_k, generator,
                                  lambda z, k: torch.topk(z, k, dim=-1).values[..., -1:])


def sample_topk_whole_batch(logits, temperature=1.0, top_k=None, generator=None):
    # one threshold for the whole batch
    return _sample_with_threshold(logits, temperature, top_k if top_k is None or top_k < logits.shape[-1] else None,
                                  generator, lambda z, k: torch.topk(z.reshape(-1), k).values[-1])


def sample_reseeds_global(logits, temperature=1.0, top_k=None, generator=None):
    if generator is not None:
        torch.manual_seed(generator.initial_seed())  # draws from the global RNG instead of `generator`
    return ref.sample_next_token(logits, temperature, top_k, None)


def sample_always_greedy(logits, temperature=1.0, top_k=None, generator=None):
    return logits.argmax(dim=-1)


def sample_keeps_shape(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)  # [b, 1]


def sample_gumbel(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1)
    z = logits / temperature
    if top_k is not None and top_k < z.shape[-1]:
        top = torch.topk(z, top_k, dim=-1)
        z = torch.full_like(z, float("-inf")).scatter(-1, top.indices, top.values)
    u = torch.rand(z.shape, generator=generator).clamp_min(1e-20)
    return torch.argmax(z - torch.log(-torch.log(u)), dim=-1)  # the Gumbel-max trick


def sample_sorted_cumsum(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_k is not None:
        order = probs.argsort(dim=-1, descending=True)
        keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order[:, :top_k], True)
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum(-1, keepdim=True)
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=probs.dtype)
    idx = (probs.cumsum(-1) < u).sum(-1)
    return idx.clamp_max(probs.shape[-1] - 1).long()


# --------------------------------------------------------------------------- trained model


class _CountModel(nn.Module):
    """An n-gram count model over the corpus's training split, wearing a GPT's interface."""

    def __init__(self, order: int, smoothing: float = 0.1, split: str = "train") -> None:
        super().__init__()
        self.order, self.smoothing, self.split = order, smoothing, split  # split "val": fitted on validation text
        self.vocab = len(ref.CHARSET)
        self._tables: list[torch.Tensor] | None = None

    def _fit(self) -> list[torch.Tensor]:
        ids, v = getattr(ref.load_corpus(), self.split), self.vocab
        tables = []
        for n in range(1, self.order + 1):
            index = torch.zeros(len(ids) - n + 1, dtype=torch.long)
            for j in range(n):
                index = index * v + ids[j:len(ids) - n + 1 + j]
            counts = torch.bincount(index, minlength=v ** n).double().reshape(-1, v) + self.smoothing
            tables.append((counts / counts.sum(-1, keepdim=True)).log().float())
        return tables

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._tables is None:
            self._tables = self._fit()
        b, t = tokens.shape
        out = torch.empty(b, t, self.vocab)
        for pos in range(t):
            n = min(self.order, pos + 2)  # context of n - 1 tokens
            ctx = torch.zeros(b, dtype=torch.long)
            for j in range(pos - n + 2, pos + 1):
                ctx = ctx * self.vocab + tokens[:, j]
            out[:, pos] = self._tables[n - 1][ctx]
        return out


class _CopyCurrentToken(nn.Module):
    """What training with off-by-one targets (y = x) learns: predict the token you were given."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.one_hot(tokens, len(ref.CHARSET)).float() * 5.0


def _named(model: nn.Module, name: str) -> nn.Module:
    model.__name__ = name  # a short test id instead of the module's repr
    return model


def _untrained_gpt() -> GPT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _named(GPT(ref.MODEL_CONFIG).eval(), "untrained_gpt")


def _wrong_vocab_gpt() -> GPT:
    from safety_roadmap.reference.transformer_from_scratch import GPTConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _named(GPT(GPTConfig(vocab_size=80, n_ctx=32, d_model=16, n_heads=2, n_layers=1)).eval(),
                      "gpt_with_the_wrong_vocabulary")


MUTANTS = {
    "next_token_batch": [batch_targets_equal_inputs, batch_excludes_last_start, batch_runs_past_the_end,
                         batch_ignores_generator, batch_one_start, batch_y_shifted_back, batch_rounded_float,
                         batch_reseeds_global],
    "next_token_loss": [loss_sum, loss_double_shift, loss_log_of_softmax, loss_item, loss_view, loss_detached_leaf],
    "generate_text": [gen_no_crop, gen_first_window, gen_first_position, gen_new_only, gen_ignores_generator,
                      gen_own_generator, gen_drops_top_k],
    "model_perplexity": [ppl_base_two, ppl_mean_of_rows, ppl_of_sum, ppl_returns_loss],
    "sample_next_token": [sample_from_logits, sample_raw_logits, sample_temperature_multiplies, sample_top_k_plus_one,
                          sample_always_greedy, sample_keeps_shape, sample_topk_unguarded, sample_topk_whole_batch,
                          sample_reseeds_global],
    "trained_gpt_val_loss": [_untrained_gpt(), _named(_CountModel(1), "unigram_counts"),
                             _named(_CopyCurrentToken(), "copies_current_token"), _wrong_vocab_gpt(),
                             _named(_CountModel(3, split="val"), "trigram_counts_fitted_on_validation")],
}

ALTERNATIVES = {
    "next_token_batch": [batch_numpy, batch_unfold],
    "next_token_loss": [loss_manual_logsumexp, loss_nll_of_log_softmax],
    "generate_text": [gen_preallocated],
    "model_perplexity": [ppl_geometric_mean, ppl_loop],
    "sample_next_token": [sample_gumbel, sample_sorted_cumsum],
    "trained_gpt_val_loss": [_named(_CountModel(3), "trigram_counts")],
}
