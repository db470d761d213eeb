"""Checks for chapter 09_train_mini_gpt. Each `check_<exercise>(obj, thorough=False)`.

Random functions (the batch sampler, the token sampler) are checked by their
properties and their statistics over many draws from a fixed seed, never by
matching the reference's random numbers, so any correct way of drawing passes.
"""
from __future__ import annotations

import contextlib
import io
import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..reference import train_mini_gpt as ref
from ..reference.transformer_from_scratch import GPT, GPTConfig
from ._core import Case, CheckFailure, Mistake, NotAttempted, call, compare, describe, rng_for, run_check, trust
from ._core import guard as _guard
from ._torch import torch_check as _keeps_rng
from .transformer_from_scratch import failing_helper_note

__all__ = ["check_next_token_batch", "check_next_token_loss", "check_model_perplexity", "check_sample_next_token",
           "check_generate_text", "check_trained_gpt_val_loss", "VAL_LOSS_BAR"]

trust(torch)
trust(torch.nn.functional)

VAL_LOSS_BAR = 2.50  # nats per character on the validation split; the reference run reaches about 2.2
# A model fitted on the training split scores 0.15-0.3 nats *worse* on validation windows than on training windows
# (reference GPT 2.12 vs 1.98, trigram counts 2.05 vs 1.73); one fitted on the validation text scores >1 nat better.
TRAIN_VAL_GAP = 0.5


def _tgen(thorough: bool, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng_for(thorough, salt).integers(2 ** 31)))


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _consumes(call_with: Callable[[torch.Generator], Any], seed: int) -> tuple[bool, bool]:
    """(the generator passed in was drawn from, torch's global RNG was left alone) for one call."""
    gen = _seeded(seed)
    before = gen.get_state().clone()
    global_before = torch.random.get_rng_state().clone()
    call_with(gen)
    return (not torch.equal(gen.get_state(), before),
            torch.equal(torch.random.get_rng_state(), global_before))


def _rng_problem(used: bool, global_untouched: bool) -> str | None:
    if not used:
        return ("the `generator` passed in was never drawn from (its state did not change). Pass it to every random "
                "draw (torch.randint / torch.multinomial(..., generator=generator)); don't make a generator of your "
                "own or reseed torch inside the function.")
    if not global_untouched:
        return ("torch's global random state changed although a `generator` was given: every random number should "
                "come from `generator`, and the function must not call torch.manual_seed (that would reset the "
                "notebook's own randomness).")
    return None


# --------------------------------------------------------------------------- 1. batch sampler

def _batch_problem(got: Any, data: torch.Tensor, batch: int, block: int) -> tuple[str | None, list[int]]:
    """Check one (x, y) against the rules; return (problem, start positions)."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a tuple (x, y), got {describe(got)}", []
    x, y = got
    for name, t in (("x", x), ("y", y)):
        if not torch.is_tensor(t):
            return f"{name} should be a tensor, got {describe(t)}", []
        if tuple(t.shape) != (batch, block):
            return f"{name} should have shape (batch_size, block_size) = {(batch, block)}, got {tuple(t.shape)}", []
        if t.dtype != data.dtype:
            return f"{name} should keep the data's dtype {data.dtype} (token ids), got {t.dtype}", []
    position = {int(v): i for i, v in enumerate(data.tolist())}
    starts = []
    offsets = list(range(block))
    for row in range(batch):
        xs = [position.get(int(v), -1) for v in x[row].tolist()]
        ys = [position.get(int(v), -1) for v in y[row].tolist()]
        if -1 in xs or -1 in ys:
            return f"row {row} contains values that are not in `data`", []
        s = xs[0]
        if xs != [s + o for o in offsets]:
            return (f"row {row} of x is not a contiguous window of data (positions {xs[:6]}...); "
                    "each row must be data[i : i + block_size] for one start i"), []
        if ys == xs:
            return ("y equals x: the targets must be the *next* tokens, data[i + 1 : i + block_size + 1] "
                    "(off-by-one targets)"), []
        if ys == [p - 1 for p in xs]:
            return "y is shifted the wrong way: the target at each position is the token *after* it", []
        if ys != [s + 1 + o for o in offsets]:
            return (f"row {row}: y should be x shifted by one position (data[i + 1 : i + block_size + 1]); "
                    f"x starts at position {s}, y covers positions {ys[:6]}..."), []
        starts.append(s)
    return None, starts


@_keeps_rng
def check_next_token_batch(fn: Callable[..., Any], thorough: bool = False) -> None:
    """sample_batch(data [N], batch_size, block_size, generator) -> (x, y), each [batch_size, block_size]."""
    __tracebackhide__ = True
    _guard()
    name = "sample_batch"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    g = _tgen(thorough, 21)

    def data_of(n: int) -> torch.Tensor:  # distinct values, so every value tells its position
        return torch.randperm(n, generator=g) + 100

    scenarios = [(data_of(200), 8, 10, "200 tokens, batch 8, block 10"),
                 (data_of(12), 256, 10, "12 tokens, block 10: only starts 0 and 1 are valid")]
    if thorough:
        scenarios += [(data_of(11), 4, 10, "11 tokens, block 10: exactly one valid window"),
                      (data_of(5000), 512, 16, "5000 tokens, batch 512: starts should cover the whole range"),
                      (data_of(64), 1, 1, "batch 1, block 1")]
    for i, (data, batch, block, label) in enumerate(scenarios, 1):
        where = f"case {i} of {len(scenarios)} ({label})"
        pristine = data.clone()
        got = call(fn, name, (data, batch, block, _seeded(i)), None, where)
        if not torch.equal(pristine, data):
            raise CheckFailure(f"`{name}` changed `data` in place on {where}")
        problem, starts = _batch_problem(got, data, batch, block)
        if problem:
            raise CheckFailure(f"`{name}` is wrong on {where}: {problem}")
        last = len(data) - block - 1
        if max(starts) > last or min(starts) < 0:
            raise CheckFailure(f"`{name}` is wrong on {where}: a window starts at {max(starts)}, past the last valid "
                               f"start {last}")
        if batch >= 256 and len(data) - block == 2 and set(starts) != {0, 1}:
            raise CheckFailure(f"`{name}` is wrong on {where}: in {batch} draws the starts were only {sorted(set(starts))}."
                               f"\n  Likely cause: the last valid start, len(data) - block_size - 1, is never drawn. "
                               "torch.randint(low, high) excludes `high`: use high = len(data) - block_size.")
        if batch >= 512:
            span = last + 1
            if min(starts) > 0.1 * span or max(starts) < 0.9 * span:
                raise CheckFailure(f"`{name}` is wrong on {where}: starts ranged only from {min(starts)} to "
                                   f"{max(starts)} out of 0..{last}; draw them uniformly over the whole range")
        if batch >= 8 and len(set(starts)) == 1 and len(data) - block > 2:
            raise CheckFailure(f"`{name}` is wrong on {where}: every row starts at position {starts[0]}; draw a "
                               "separate random start for each row")
        again = call(fn, name, (data, batch, block, _seeded(i)), None, where)
        if not (torch.equal(again[0], got[0]) and torch.equal(again[1], got[1])):
            raise CheckFailure(f"`{name}` is wrong on {where}: two calls with generators seeded the same gave "
                               "different batches. Draw every random number from `generator` "
                               "(e.g. torch.randint(..., generator=generator)) so a seed fixes the batch.")
        if len(data) - block > 50:
            other = call(fn, name, (data, batch, block, _seeded(i + 1000)), None, where)
            if torch.equal(other[0], got[0]):
                raise CheckFailure(f"`{name}` is wrong on {where}: generators with different seeds gave the same "
                                   "batch. Use the `generator` you are given; don't reseed inside the function.")
    # every valid start equally likely (a rounded rand() * (n - 1) halves the two ends; randint(0, n - 1) never
    # draws the last one)
    data = data_of(16)
    block, n_draws = 10, 6000 if thorough else 3000
    where = f"case {len(scenarios) + 1} (16 tokens, block 10: starts 0..5 should each come up 1/6 of the time)"
    got = call(fn, name, (data, n_draws, block, _seeded(77)), None, where)
    first = got
    if isinstance(got, (tuple, list)) and len(got) == 2 and all(torch.is_tensor(t) and len(t) == n_draws for t in got):
        first = (got[0][:8], got[1][:8])   # the rules row by row on a few rows, then all rows at once below
    problem, _ = _batch_problem(first, data, 8, block)
    if problem:
        raise CheckFailure(f"`{name}` is wrong on {where}: {problem}")
    x, y = got
    position = torch.full((int(data.max()) + 1,), -1, dtype=torch.long)
    position[data] = torch.arange(len(data))
    starts_t = position[x[:, 0]]
    grid = starts_t[:, None] + torch.arange(block)
    if tuple(x.shape) != (n_draws, block) or bool((starts_t < 0).any()) or int(starts_t.max()) > len(data) - block - 1 \
            or not torch.equal(x, data[grid]) or not torch.equal(y, data[grid + 1]):
        raise CheckFailure(f"`{name}` is wrong on {where}: some of the {n_draws} rows are not a window of data and its "
                           "next tokens (x = data[i : i + block_size], y = data[i + 1 : i + block_size + 1])")
    n_starts = len(data) - block
    counts = torch.bincount(starts_t, minlength=n_starts).double()
    freq = counts / n_draws
    chi2 = float(((counts - n_draws / n_starts) ** 2 / (n_draws / n_starts)).sum())
    if len(counts) > n_starts or chi2 > 25.0:   # 5 degrees of freedom: P(chi2 > 25) < 2e-4 for a uniform draw
        raise CheckFailure(f"`{name}` is wrong on {where}: over {n_draws} rows the starts 0..{len(counts) - 1} came up "
                           f"with frequencies {[round(float(f), 3) for f in freq]}; each of the {n_starts} valid starts "
                           "should have probability 1/6 = 0.167. Draw them with torch.randint(0, len(data) - "
                           "block_size, ...) (the upper bound is excluded), not by rounding a random float.")
    used, untouched = _consumes(lambda gen: fn(data_of(40), 4, 5, gen), 5)
    problem = _rng_problem(used, untouched)
    if problem:
        raise CheckFailure(f"`{name}` is wrong on a call with a generator: {problem}")
    if thorough:  # generator=None must work too (the global RNG)
        call(fn, name, (data_of(50), 3, 5), None, "a call without a generator")
    print(f"✓ {name}: all {len(scenarios) + 2} {'thorough' if thorough else 'quick'} checks passed")


# --------------------------------------------------------------------------- 2. loss

def _loss_cases(thorough: bool) -> list[Case]:
    g = _tgen(thorough, 22)

    def case(b, t, v, label, scale=1.0, dtype=torch.float32, strided=False, grad=False):
        logits = (torch.randn(b, t, v, generator=g) * scale).to(dtype)
        if strided:
            logits = torch.randn(b, v, t, generator=g).to(dtype).transpose(1, 2)
        if grad:
            logits.requires_grad_(True)
        return Case((logits, torch.randint(0, v, (b, t), generator=g)), label)

    cases = [case(1, 3, 5, "batch 1, 3 positions, vocabulary 5"), case(4, 8, 20, "batch 4, 8 positions"),
             case(2, 5, 7, "non-contiguous logits that require grad (as in training)", strided=True, grad=True)]
    if thorough:
        cases += [case(2, 1, 2, "one position, vocabulary 2"),
                  case(3, 5, 11, "huge logits (scale 1000): needs log_softmax, not log(softmax)", scale=1000.0),
                  case(2, 6, 9, "float64", dtype=torch.float64),
                  case(3, 4, 7, "non-contiguous logits (a transposed view)", strided=True),
                  case(2, 5, 13, "logits that require grad (as in training)", grad=True),
                  case(3, 4, 9, "non-contiguous logits that require grad", strided=True, grad=True),
                  case(8, 16, 96, "the chapter's shapes: vocabulary 96")]
    return cases


def _compare_loss(got: Any, expected: Any, case: Case) -> str | None:
    if torch.is_tensor(got) and got.numel() != 1:
        return (f"expected one number (the mean over every position of every sequence), got a tensor of shape "
                f"{tuple(got.shape)}")
    problem = compare(got, expected, rtol=1e-5, atol=1e-6, what="loss")
    if problem:
        return problem
    logits = case.args[0]
    if logits.requires_grad:
        if not (torch.is_tensor(got) and got.requires_grad and got.grad_fn is not None):
            return ("the value is right but it is cut off from the graph, so loss.backward() cannot train the model: "
                    "return the tensor that F.cross_entropy gives (no .item(), no numpy, no torch.tensor(...) "
                    "around a number)")
        (grad,) = torch.autograd.grad(got, logits, allow_unused=True)
        probe = logits.detach().clone().requires_grad_(True)
        (want,) = torch.autograd.grad(ref.next_token_loss(probe, case.args[1]), probe)
        if grad is None:
            return "the value is right but it does not depend on the logits in the graph: backward() reaches nothing"
        problem = compare(grad, want, rtol=1e-4, atol=1e-7, what="d loss / d logits")
        if problem:
            return "the value is right but its gradient is not: " + problem
    return None


def _nll(logits, targets, *, reduce="mean", shift=False, naive=False, probs=False):
    if shift:
        logits, targets = logits[:, :-1], targets[:, 1:]
    flat, tgt = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    if probs:
        return -flat.softmax(-1).gather(1, tgt[:, None]).mean()
    logp = torch.log(flat.softmax(-1)) if naive else flat.log_softmax(-1)
    picked = -logp.gather(1, tgt[:, None])
    return picked.sum() if reduce == "sum" else picked.mean()


@_keeps_rng
def check_next_token_loss(fn: Callable[..., Any], thorough: bool = False) -> None:
    """next_token_loss(logits [b, t, vocab], targets [b, t]) -> mean cross-entropy in nats (a scalar tensor)."""
    __tracebackhide__ = True
    _guard()
    run_check("next_token_loss", fn, lambda lg, tg: ref.next_token_loss(lg.detach(), tg), _loss_cases(thorough),
              compare_fn=_compare_loss, thorough=thorough, mistakes=[
                  Mistake("you summed the losses; average them over all batch_size * seq positions.",
                          lambda lg, tg: _nll(lg.detach(), tg, reduce="sum")),
                  Mistake("you shifted the targets again: sample_batch already gives y[t] = the token after x[t], "
                          "so logits[:, t] is scored against targets[:, t] (off-by-one targets).",
                          lambda lg, tg: _nll(lg.detach(), tg, shift=True)),
                  Mistake("you averaged the probabilities of the right tokens; the loss is the mean *negative log* "
                          "probability.", lambda lg, tg: _nll(lg.detach(), tg, probs=True)),
                  Mistake("log(softmax(x)) underflows to log(0) = -inf for very negative logits: use "
                          "F.log_softmax or F.cross_entropy, which work in log space.",
                          lambda lg, tg: _nll(lg.detach(), tg, naive=True)),
              ])


# --------------------------------------------------------------------------- 3. perplexity

class _TableModel(nn.Module):
    """A stand-in model: the logits at each position depend only on the current token (a bigram table)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table, requires_grad=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens]

    def __repr__(self) -> str:
        return f"bigram-table model (vocab {self.table.shape[0]})"


def _ppl_cases(thorough: bool) -> list[Case]:
    g = _tgen(thorough, 24)

    def case(v, b, t, label, scale=2.0, dtype=torch.float32, model=None):
        model = model or _TableModel((torch.randn(v, v, generator=g) * scale).to(dtype))
        x = torch.randint(0, v, (b, t), generator=g)
        y = torch.randint(0, v, (b, t), generator=g)
        return Case((model, x, y), label)

    cases = [case(5, 2, 6, "a bigram-table model, vocabulary 5"), case(12, 4, 8, "vocabulary 12, batch 4")]
    if thorough:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng_for(thorough, 25).integers(2 ** 31)))
            gpt = GPT(GPTConfig(vocab_size=9, n_ctx=8, d_model=8, n_heads=2, n_layers=1)).eval()
        cases += [case(3, 1, 1, "one sequence of one token", scale=1.0),
                  case(7, 6, 5, "a confident model (large logits)", scale=8.0),
                  case(10, 3, 7, "float64 logits", dtype=torch.float64),
                  case(9, 3, 8, "a small GPT", model=gpt),
                  case(20, 8, 12, "rows of very different difficulty", scale=4.0)]
    return cases


def _ppl_variant(model, x, y, kind):
    with torch.no_grad():
        logits = model(x)
        per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        per_token = per_token.reshape(y.shape)
        if kind == "base2":
            return float(2 ** per_token.mean())
        if kind == "row_mean":
            return float(per_token.mean(-1).exp().mean())
        if kind == "sum":
            return float(per_token.sum().exp())
        if kind == "loss":
            return float(per_token.mean())
    raise ValueError(kind)


@_keeps_rng
def check_model_perplexity(fn: Callable[..., Any], thorough: bool = False) -> None:
    """perplexity(model, x [b, t], y [b, t]) -> exp(mean next-token cross-entropy), a float."""
    __tracebackhide__ = True
    _guard()
    run_check("perplexity", fn, ref.perplexity, _ppl_cases(thorough), rtol=1e-5, atol=1e-6, thorough=thorough,
              mistakes=[
                  Mistake("you used base 2; our losses are in nats (natural log), so perplexity is exp(loss).",
                          lambda m, x, y: _ppl_variant(m, x, y, "base2")),
                  Mistake("you averaged per-sequence perplexities; perplexity is exp of the loss averaged over *all* "
                          "tokens (the mean of exps is larger than the exp of the mean).",
                          lambda m, x, y: _ppl_variant(m, x, y, "row_mean")),
                  Mistake("you exponentiated the *summed* loss; use the mean over tokens.",
                          lambda m, x, y: _ppl_variant(m, x, y, "sum")),
                  Mistake("you returned the loss itself; perplexity is exp(loss).",
                          lambda m, x, y: _ppl_variant(m, x, y, "loss")),
              ])


# --------------------------------------------------------------------------- 4. sampling

def _target_probs(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).double()
    z = logits.double() / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    return z.softmax(-1)


def _freqs(samples: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(samples.reshape(-1).long(), minlength=vocab).double() / samples.numel()


def _sampling_hint(freq: torch.Tensor, row: torch.Tensor, temperature: float, top_k: int | None, tol: float) -> str:
    """Name the mistake whose distribution the learner's samples match."""
    guesses = [
        ("you sampled from the logits themselves (shifted to be positive) instead of from softmax probabilities.",
         (row - row.min()).double() / (row - row.min()).double().sum()),
        ("you multiplied by the temperature; divide the logits by it (T < 1 sharpens, T > 1 flattens).",
         _target_probs(row * temperature * temperature, temperature, top_k) if temperature else None),
        ("the temperature has no effect: dividing the *probabilities* by T changes nothing once they are "
         "renormalised. Divide the logits before the softmax.", _target_probs(row, 1.0, top_k)),
        ("top_k keeps one token too many.", _target_probs(row, temperature, top_k + 1) if top_k else None),
        ("you ignored top_k.", _target_probs(row, temperature, None) if temperature else None),
        ("you kept the k *least* likely tokens.", _target_probs(-row, temperature, top_k) if top_k and temperature
         else None),
    ]
    want = _target_probs(row[None], temperature, top_k)[0]
    for hint, probs in guesses:
        if probs is None or (probs - want).abs().max() < 2 * tol:   # the mistake would not show on this case
            continue
        if (freq - probs).abs().max() < tol and not ((probs == 0) & (freq > 0)).any():
            return "\n  Likely cause: " + hint
    return ""


@_keeps_rng
def check_sample_next_token(fn: Callable[..., Any], thorough: bool = False) -> None:
    """sample_next_token(logits [b, vocab], temperature=1.0, top_k=None, generator=None) -> LongTensor [b]."""
    __tracebackhide__ = True
    _guard()
    name = "sample_next_token"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    g = _tgen(thorough, 26)
    n = 4000 if thorough else 2000
    tol = 0.04 if thorough else 0.055  # about 5 standard errors of a frequency at this many draws
    row6 = torch.randn(6, generator=g) * 1.5
    row10 = torch.randn(10, generator=g) * 2.0
    scenarios = [(row6, 1.0, None, "6 tokens, temperature 1"), (row6, 0.5, None, "temperature 0.5 (sharper)"),
                 (row10, 1.0, 3, "top_k = 3 of 10"), (row6, 1.0, 9, "top_k = 9, more than the 6 tokens: keep all")]
    if thorough:
        scenarios += [(row10, 2.0, None, "temperature 2 (flatter)"), (row10, 0.7, 4, "temperature 0.7 and top_k 4"),
                      (row6, 1.0, 1, "top_k = 1 (greedy)"), (row6, 0.0, None, "temperature 0 (greedy)"),
                      (row10, 1.0, 10, "top_k equal to the vocabulary (no filtering)"),
                      (row6 * 30, 1.0, None, "very large logits (scale 45)")]
    for i, (row, temperature, top_k, label) in enumerate(scenarios, 1):
        where = f"case {i} of {len(scenarios)} ({label}; logits shape ({n}, {row.numel()}))"
        logits = row.expand(n, -1).clone()
        pristine = logits.clone()
        kwargs = {"temperature": temperature, "top_k": top_k, "generator": _seeded(i)}
        try:
            got = call(fn, name, (logits,), kwargs, where)
        except CheckFailure as failure:
            if "probability tensor" in str(failure):
                raise CheckFailure(f"{failure}\n  torch.multinomial needs finite, non-negative weights: give it "
                                   "softmax(logits / temperature), not raw logits, and make sure no row has every "
                                   "logit masked to -inf.") from None
            if top_k is not None and top_k > row.numel() and "selected index k out of range" in str(failure):
                raise CheckFailure(f"{failure}\n  Likely cause: torch.topk refuses k larger than the vocabulary; "
                                   "when top_k >= vocab there is nothing to filter.") from None
            raise
        if not torch.equal(pristine, logits):
            raise CheckFailure(f"`{name}` changed the logits in place on {where}; work on a copy")
        if not torch.is_tensor(got):
            raise CheckFailure(f"`{name}` should return a tensor of token ids, got {describe(got)} on {where}")
        if tuple(got.shape) == (n, 1):
            raise CheckFailure(f"`{name}` returned shape ({n}, 1) on {where}; return one id per row, shape ({n},): "
                               "`.squeeze(-1)` the result of torch.multinomial")
        if tuple(got.shape) != (n,):
            raise CheckFailure(f"`{name}` returned shape {tuple(got.shape)} on {where}; expected ({n},)")
        if got.dtype != torch.long or int(got.min()) < 0 or int(got.max()) >= row.numel():
            raise CheckFailure(f"`{name}` should return token ids (int64 in 0..{row.numel() - 1}) on {where}; got "
                               f"{got.dtype} values from {got.min().item()} to {got.max().item()}")
        want = _target_probs(row[None], temperature, top_k)[0]
        freq = _freqs(got, row.numel())
        never = (want == 0) & (freq > 0)
        if never.any():
            raise CheckFailure(f"`{name}` is wrong on {where}: token(s) {never.nonzero().flatten().tolist()} were "
                               "sampled but have probability 0 here"
                               + _sampling_hint(freq, row, temperature, top_k, tol))
        worst = int((freq - want).abs().argmax())
        if (freq - want).abs().max() > tol:
            raise CheckFailure(
                f"`{name}` is wrong on {where}: over {n} draws token {worst} came up {float(freq[worst]):.3f} of the "
                f"time; its probability is {float(want[worst]):.3f}.\n    expected frequencies "
                f"{[round(float(p), 3) for p in want]}\n    got                  {[round(float(f), 3) for f in freq]}"
                + _sampling_hint(freq, row, temperature, top_k, tol))
        again = call(fn, name, (logits,), dict(kwargs, generator=_seeded(i)), where)
        if not torch.equal(again, got):
            raise CheckFailure(f"`{name}` is wrong on {where}: the same seed gave different samples. Pass `generator` "
                               "to torch.multinomial so sampling is reproducible.")
        if float(want.max()) < 0.99:  # a draw that is not (almost) certain
            other = call(fn, name, (logits,), dict(kwargs, generator=_seeded(i + 500)), where)
            if torch.equal(other, got):
                raise CheckFailure(f"`{name}` is wrong on {where}: generators with different seeds gave exactly the "
                                   "same samples. Draw from the `generator` you are given; don't create or reseed "
                                   "one inside the function.")
    used, untouched = _consumes(lambda gen: fn(row10.expand(8, -1).clone(), temperature=1.0, top_k=None,
                                               generator=gen), 31)
    problem = _rng_problem(used, untouched)
    if problem:
        raise CheckFailure(f"`{name}` is wrong on a call with a generator: {problem}")
    # each row keeps its *own* top_k: two rows on very different scales, alternating down the batch
    pair = torch.stack([row10, -3.0 * row10])
    logits = pair.repeat(n // 2, 1)
    where = f"a batch of {n} rows alternating between two different rows (scales 1 and 3), top_k = 3"
    got = call(fn, name, (logits,), {"temperature": 1.0, "top_k": 3, "generator": _seeded(123)}, where)
    if not torch.is_tensor(got) or tuple(got.shape) != (n,):
        raise CheckFailure(f"`{name}` returned {describe(got)} on {where}; expected shape ({n},)")
    for r in range(2):
        want = _target_probs(pair[r][None], 1.0, 3)[0]
        freq = _freqs(got[r::2], pair.shape[1])
        if (freq - want).abs().max() > 1.5 * tol:
            raise CheckFailure(
                f"`{name}` is wrong on {where}: the rows like row {r} got token frequencies "
                f"{[round(float(f), 3) for f in freq]}; expected {[round(float(p), 3) for p in want]}. Each row "
                "keeps its own top_k tokens: take the k-th largest value along the last axis (dim=-1, one per row), "
                "not over the whole batch.")
    # rows are sampled independently, each from its own distribution
    mixed = torch.stack([torch.full((5,), -20.0).index_fill(0, torch.tensor([j % 5]), 20.0) for j in range(8)])
    got = call(fn, name, (mixed,), {"temperature": 1.0, "top_k": None, "generator": _seeded(99)},
               "a batch of 8 different rows")
    if not torch.is_tensor(got) or got.reshape(-1).tolist() != [j % 5 for j in range(8)]:
        raise CheckFailure(f"`{name}` is wrong on a batch of 8 rows that each put all their probability on a "
                           f"different token: expected {[j % 5 for j in range(8)]}, got {describe(got)} "
                           f"{got.reshape(-1).tolist() if torch.is_tensor(got) else ''}. Sample each row from "
                           "its own distribution (softmax over the last axis).")
    print(f"✓ {name}: all {len(scenarios) + 3} {'thorough' if thorough else 'quick'} checks passed")


# --------------------------------------------------------------------------- 5. generation

class _ContextModel(nn.Module):
    """A stand-in language model with a short context whose prediction depends on every token it sees.

    At each position it strongly prefers token (sum of the visible tokens up to there + position) % vocab, so
    feeding the wrong window, or reading the wrong position's logits, changes what comes out. Like a real GPT,
    it refuses sequences longer than its context.
    """

    def __init__(self, vocab: int, n_ctx: int) -> None:
        super().__init__()
        self.cfg = GPTConfig(vocab_size=vocab, n_ctx=n_ctx, d_model=4, n_heads=1, n_layers=1)
        self.offsets = nn.Parameter(torch.linspace(0.0, 0.5, vocab), requires_grad=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t = tokens.shape
        if t > self.cfg.n_ctx:
            raise IndexError(f"sequence of length {t} is longer than the model's context n_ctx = {self.cfg.n_ctx}: "
                             "feed it only the last n_ctx tokens")
        favourite = (tokens.cumsum(dim=1) + torch.arange(t)) % self.cfg.vocab_size
        return F.one_hot(favourite, self.cfg.vocab_size).float() * 4.0 + self.offsets

    def __repr__(self) -> str:
        return f"test model (vocab {self.cfg.vocab_size}, n_ctx {self.cfg.n_ctx})"


def _generate_variant(model, prompt, n_new, temperature=1.0, top_k=None, generator=None, *, kind):
    tokens = prompt
    with torch.no_grad():
        for _ in range(n_new):
            window = tokens[:, :model.cfg.n_ctx] if kind == "first_window" else tokens[:, -model.cfg.n_ctx:]
            logits = model(window)
            last = logits[:, 0] if kind == "first_position" else logits[:, -1]
            nxt = ref.sample_next_token(last, temperature, top_k, generator)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
    return tokens[:, prompt.shape[1]:] if kind == "new_only" else tokens


@_keeps_rng
def check_generate_text(fn: Callable[..., Any], thorough: bool = False) -> None:
    """generate(model, prompt [b, t0], n_new, temperature, top_k, generator) -> [b, t0 + n_new]."""
    __tracebackhide__ = True
    try:
        _check_generate(fn, thorough)
    except CheckFailure as failure:
        note = failing_helper_note(fn, "sample_next_token", check_sample_next_token, "sample_next_token")
        if note:
            raise CheckFailure(f"{failure}{note}") from None
        raise


def _check_generate(fn: Callable[..., Any], thorough: bool) -> None:
    __tracebackhide__ = True
    _guard()
    name = "generate"
    g = _tgen(thorough, 27)

    def case(vocab, n_ctx, b, t0, n_new, label, temperature=0.0, top_k=None):
        model = _ContextModel(vocab, n_ctx)
        prompt = torch.randint(0, vocab, (b, t0), generator=g)
        return Case((model, prompt, n_new), label, kwargs={"temperature": temperature, "top_k": top_k})

    cases = [case(7, 8, 1, 3, 4, "greedy, a 3-token prompt, 4 new tokens (fits the context)"),
             case(11, 5, 2, 2, 9, "greedy, 2 prompts, 9 new tokens: the sequence outgrows n_ctx = 5")]
    if thorough:
        cases += [case(5, 4, 3, 6, 5, "a prompt already longer than the context"),
                  case(13, 6, 2, 1, 12, "a one-token prompt, top_k = 1 at temperature 1", temperature=1.0, top_k=1),
                  case(9, 7, 1, 4, 0, "n_new = 0: the prompt comes back unchanged"),
                  case(17, 3, 4, 3, 10, "context of 3, batch of 4")]
    passed = io.StringIO()
    with contextlib.redirect_stdout(passed):   # the ✓ line waits for the sampling checks below
        run_check(name, fn, lambda m, p, n, temperature, top_k: ref.generate(m, p, n, temperature, top_k),
                  cases, rtol=0, atol=0, thorough=thorough, mistakes=[
                      Mistake("you fed the *first* n_ctx tokens once the sequence outgrew the context; feed the *last* "
                              "n_ctx (tokens[:, -n_ctx:]), the ones right before the token being predicted.",
                              lambda m, p, n, **kw: _generate_variant(m, p, n, **kw, kind="first_window")),
                      Mistake("you sampled from the logits of the first position; the next token is predicted by the "
                              "*last* position (logits[:, -1]).",
                              lambda m, p, n, **kw: _generate_variant(m, p, n, **kw, kind="first_position")),
                      Mistake("you returned only the new tokens; return the prompt followed by them.",
                              lambda m, p, n, **kw: _generate_variant(m, p, n, **kw, kind="new_only")),
                  ])
    if thorough:  # sampling: valid tokens, reproducible with a seed
        model = _ContextModel(10, 6)
        prompt = torch.randint(0, 10, (3, 2), generator=g)
        where = "sampling at temperature 1 with a seeded generator"
        first = call(fn, name, (model, prompt, 8), {"temperature": 1.0, "top_k": None, "generator": _seeded(5)}, where)
        again = call(fn, name, (model, prompt, 8), {"temperature": 1.0, "top_k": None, "generator": _seeded(5)}, where)
        if not torch.is_tensor(first) or tuple(first.shape) != (3, 10):
            raise CheckFailure(f"`{name}` returned {describe(first)} on {where}; expected shape (3, 10): the 2-token "
                               "prompt followed by the 8 new tokens")
        if not torch.equal(first, again):
            raise CheckFailure(f"`{name}`: the same seed gave different text on {where}; pass `generator` on to "
                               "sample_next_token.")
        other = call(fn, name, (model, prompt, 8), {"temperature": 1.0, "top_k": None, "generator": _seeded(6)}, where)
        if torch.is_tensor(other) and torch.equal(first, other):
            raise CheckFailure(f"`{name}`: generators with different seeds gave the same text on {where}; pass the "
                               "`generator` you are given on to sample_next_token (don't make your own).")
        used, untouched = _consumes(lambda gen: fn(model, prompt, 3, temperature=1.0, top_k=None, generator=gen), 8)
        problem = _rng_problem(used, untouched)
        if problem:
            raise CheckFailure(f"`{name}` is wrong on {where}: {problem}")
        # top_k = 2 at a high temperature: every new token is one of the model's two favourites, and both occur
        where = "sampling 30 tokens at temperature 1.5 with top_k = 2"
        out = call(fn, name, (model, prompt, 30), {"temperature": 1.5, "top_k": 2, "generator": _seeded(9)}, where)
        if not torch.is_tensor(out) or tuple(out.shape) != (3, 32):
            raise CheckFailure(f"`{name}` returned {describe(out)} on {where}; expected shape (3, 32)")
        ranks = []
        with torch.no_grad():
            for j in range(30):
                logits = model(out[:, :2 + j][:, -model.cfg.n_ctx:])[:, -1]
                top2 = torch.topk(logits, 2, dim=-1).indices
                ranks.append(torch.where(top2[:, 0] == out[:, 2 + j], 0,
                                         torch.where(top2[:, 1] == out[:, 2 + j], 1, 2)))
        ranks = torch.stack(ranks)
        if bool((ranks == 2).any()):
            raise CheckFailure(f"`{name}` is wrong on {where}: {int((ranks == 2).sum())} new tokens were not among the "
                               "model's 2 most likely. Pass top_k on to sample_next_token.")
        if not bool((ranks == 1).any()):
            raise CheckFailure(f"`{name}` is wrong on {where}: only the single most likely token ever came out, never "
                               "the second (about 1 in 15 draws here). Pass temperature and top_k on to "
                               "sample_next_token as given.")
    print(passed.getvalue(), end="")


# --------------------------------------------------------------------------- 6. the trained model

def _model_device(model: Any) -> torch.device:
    for p in (model.parameters() if isinstance(model, nn.Module) else ()):
        return p.device
    return torch.device("cpu")


def _mean_loss(model: Any, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token loss in eval mode (restoring the model's mode), for any callable tokens -> logits."""
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    total = 0.0
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                logits = model(x[i:i + batch_size]).float()
                total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i:i + batch_size].reshape(-1),
                                               reduction="sum"))
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    return total / y.numel()


@_keeps_rng
def check_trained_gpt_val_loss(model: Any, thorough: bool = False) -> None:
    """The trained model's mean next-token loss on fixed validation windows must be below VAL_LOSS_BAR."""
    __tracebackhide__ = True
    _guard()
    if model is None:
        raise NotAttempted("`trained_model` is not set yet: write `train_gpt`, then run the training cell "
                           "(it sets `trained_model` when training finishes).")
    if not callable(model):
        raise CheckFailure(f"`trained_model` should be your trained GPT (an nn.Module), got {describe(model)}")
    corpus = ref.load_corpus()
    block = ref.MODEL_CONFIG.n_ctx
    x, y = ref.validation_batches(corpus.val, block, n_windows=256 if thorough else 64)
    device = _model_device(model)
    x, y = x.to(device), y.to(device)
    where = (f"a validation batch of shape {tuple(x[:2].shape)} (token ids 0..{len(ref.CHARSET) - 1}, "
             "so build the model with GPT(MODEL_CONFIG))")
    with torch.no_grad():
        probe = call(model, "trained_model", (x[:2],), None, where)
    vocab = len(ref.CHARSET)
    if not torch.is_tensor(probe) or tuple(probe.shape) != (2, block, vocab):
        raise CheckFailure(f"`trained_model` should map tokens [batch, {block}] to logits [batch, {block}, {vocab}]; "
                           f"got {describe(probe)}. Build it with GPT(MODEL_CONFIG).")
    loss = _mean_loss(model, x, y)
    baseline = ref.unigram_entropy(corpus.train, vocab)
    if not math.isfinite(loss):
        raise CheckFailure("`trained_model` gives a nan/inf validation loss: training diverged. Lower max_lr, "
                           "check the gradient clipping, and that you call optimizer.zero_grad() every step.")
    if loss >= VAL_LOSS_BAR:
        on_input = probe.float().softmax(-1).gather(-1, x[:2, :, None]).mean()   # probability of the *given* token
        if float(on_input) > 0.3:
            cause = (f"the model gives the character it is given a probability of {float(on_input):.0%} on average: "
                     "it predicts its input, not the next character, so it was trained with targets equal to its "
                     "inputs. y must be x shifted by one position "
                     "(sample_batch), and the loss compares logits[:, t] with y[:, t].")
        elif loss > math.log(vocab) + 0.5:
            cause = ("the model is confidently wrong, worse than a uniform guess (ln 96 = 4.56): it learned to predict "
                     "something other than the next character. Check that y is x shifted by one (sample_batch) and "
                     "that the loss compares logits[:, t] with y[:, t].")
        elif loss > baseline:
            cause = ("the model has barely learned: not even the character frequencies. Check that every step calls "
                     "optimizer.zero_grad(), loss.backward() and optimizer.step(), and that the learning rate is "
                     "set from lr_schedule (not left at 0).")
        else:
            cause = ("training works but falls short. Check the learning-rate schedule, the gradient clipping, and "
                     "that you train for cfg.steps steps with batches of cfg.batch_size windows from corpus.train.")
        raise CheckFailure(
            f"`trained_model` reaches a validation loss of {loss:.3f} nats per character; the bar is {VAL_LOSS_BAR} "
            f"(the unigram baseline is {baseline:.2f}; the reference run reaches about 2.2 in 400 steps).\n"
            f"  Likely cause: {cause}")
    x_tr, y_tr = ref.validation_batches(corpus.train, block, n_windows=len(x))   # the same number of windows
    train_loss = _mean_loss(model, x_tr.to(device), y_tr.to(device))
    if loss < train_loss - TRAIN_VAL_GAP:
        raise CheckFailure(
            f"`trained_model` does much better on the validation split ({loss:.3f} nats per character) than on its "
            f"own training split ({train_loss:.3f}). A model trained on corpus.train does a little *worse* on text it "
            "never saw; this one looks fitted on (or chosen with) the validation text, which makes its validation "
            "loss meaningless. Train only on corpus.train: the validation split is for measuring.")
    print(f"✓ trained_gpt_val_loss: validation loss {loss:.3f} < {VAL_LOSS_BAR} "
          f"(unigram baseline {baseline:.2f}, {len(x)} windows)")
