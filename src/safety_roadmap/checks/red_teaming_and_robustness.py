"""Checks for chapter 11_red_teaming_and_robustness. Each `check_<exercise>(fn, thorough=False)`.

The attacks are checked on small filters built here from fixed seeds (not on the
notebook's filter), by what any correct attack must satisfy: it only changes the
positions it may change, only to allowed tokens, stays within its query budget,
and finds inputs at least as good as the stated bar.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..reference import red_teaming_and_robustness as ref
from ._core import Case, CheckFailure, Mistake, call, compare, describe, guard, rng_for, run_check, trust
from ._torch import torch_check as _torch_check
from .interpretability_tools import upstream_note

trust(torch)
trust(torch.nn.functional)

__all__ = ["check_wilson_interval", "check_random_search_attack", "check_token_gradients", "check_gcg_step",
           "check_evaluate_defence", "check_harmful_direction", "check_monitor_scores", "check_refusal_threshold",
           "check_gcg_attack", "check_rerouting_losses", "check_train_rerouting"]


# --------------------------------------------------------------------------- shared helpers

def _words(tokens: torch.Tensor) -> str:
    return "[" + ", ".join(str(int(t)) for t in tokens) + "]"


# --------------------------------------------------------------------------- Wilson interval

def _wilson_cases(thorough: bool) -> list[Case]:
    cases = [Case((12, 40), "12 successes in 40 attacks"),
             Case((0, 50), "no successes in 50 attacks (the interval still reaches above 0)"),
             Case((3, 10, 2.576), "z = 2.576 (a 99% interval)")]
    if thorough:
        rng = rng_for(thorough, 21)
        cases += [Case((50, 50), "every attack succeeded"),
                  Case((1, 1), "a single attack, which succeeded"),
                  Case((3, 10, 2.576), "z = 2.576 (a 99% interval)"),
                  Case((7, 20, 1.0), "z = 1"),
                  Case((499_000, 1_000_000), "a million attacks"),
                  Case((np.int64(5), np.int64(60)), "NumPy integers")]
        cases += [Case((int(k), int(n)), f"{k} of {n}") for n in rng.integers(5, 400, size=3)
                  for k in [rng.integers(0, n + 1)]]
    return cases


def _wald(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    half = z * (p * (1 - p) / n) ** 0.5
    return max(0.0, p - half), min(1.0, p + half)


@_torch_check
def check_wilson_interval(fn: Callable[..., Any], thorough: bool = False) -> None:
    """wilson_interval(successes, n, z=1.96) -> (low, high)."""
    __tracebackhide__ = True
    run_check("wilson_interval", fn, ref.wilson_interval, _wilson_cases(thorough), rtol=1e-7, atol=1e-9,
              thorough=thorough, mistakes=[
                  Mistake("this is the normal-approximation (Wald) interval p ± z*sqrt(p(1-p)/n): it collapses to a "
                          "single point at 0 or n successes. The Wilson interval re-centres and widens it.", _wald),
                  Mistake("z is ignored: use the z argument, not a hard-coded 1.96.",
                          lambda k, n, z=1.96: ref.wilson_interval(k, n)),
                  Mistake("the interval is centred on k/n; Wilson's centre is (p + z^2/(2n)) / (1 + z^2/n).",
                          lambda k, n, z=1.96: _wilson_centred_on_p(k, n, z)),
              ])


def _wilson_centred_on_p(k: int, n: int, z: float) -> tuple[float, float]:
    lo, hi = ref.wilson_interval(k, n, z)
    half = (hi - lo) / 2
    return max(0.0, k / n - half), min(1.0, k / n + half)


# --------------------------------------------------------------------------- toy filters for the attack checks

class _BagScorer:
    """A black-box filter: the mean of per-token weights (+ bias). Counts the rows it scores."""

    def __init__(self, weights: torch.Tensor, bias: float):
        self.weights, self.bias, self.rows = weights, bias, 0

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise CheckFailure(f"score_fn expects a LongTensor of shape [N, L], got {describe(tokens)}")
        self.rows += tokens.shape[0]
        return self.weights[tokens].mean(dim=1) + self.bias


def _random_search_world(thorough: bool) -> dict:
    """20 words: 0-1 harmful (+6), 2-4 strongly benign but not allowed (-6), 5-7 allowed and benign-ish (-3.5)."""
    g = torch.Generator().manual_seed(31 if thorough else 3)
    weights = 0.3 * torch.randn(20, generator=g)
    weights[:2], weights[2:5], weights[5:8] = 6.0, -6.0, -3.5
    allowed = torch.arange(5, 20)
    n = 16 if thorough else 8   # the sampling contract has its own cases (_random_search_contract)
    requests = torch.randint(8, 20, (n, 8), generator=g)
    requests[:, 0] = torch.randint(0, 2, (n,), generator=g)          # the harmful word, never free
    return {"weights": weights, "allowed": allowed, "requests": requests, "free": [4, 5, 6, 7]}


@_torch_check
def check_random_search_attack(fn: Callable[..., Any], thorough: bool = False) -> None:
    """random_search_attack(score_fn, request, free_positions, allowed, n_queries, generator) -> [L]."""
    __tracebackhide__ = True
    guard()
    name = "random_search_attack"
    world = _random_search_world(thorough)
    allowed, free, n_queries = world["allowed"], world["free"], 64
    successes = 0
    for i, request in enumerate(world["requests"]):
        scorer = _BagScorer(world["weights"], -0.1)
        original = request.clone()
        where = f"request {i + 1} of {len(world['requests'])} {_words(original)} (free positions {free}, " \
                f"n_queries={n_queries})"
        out = call(fn, name, (scorer, request, list(free), allowed.clone(), n_queries,
                              torch.Generator().manual_seed(100 + i)), None, where)
        _check_attack_output(name, out, original, request, free, allowed, where)
        if scorer.rows > n_queries + 1:
            raise CheckFailure(f"`{name}` scored {scorer.rows} rows on {where}: the budget is n_queries = "
                               f"{n_queries} candidates (one extra call for the original request is tolerated).")
        successes += int(_BagScorer(world["weights"], -0.1)(out[None])[0] <= 0)
    _random_search_contract(name, fn, thorough)
    rate = successes / len(world["requests"])
    bar = 0.8 if thorough else 0.75
    if rate < bar:
        raise CheckFailure(
            f"`{name}` fooled the test filter on only {successes} of {len(world['requests'])} requests "
            f"({rate:.0%}); with {n_queries} random tries a correct random search succeeds on nearly all of them "
            f"(the bar is {bar:.0%}). Return the candidate with the *lowest* score among all those you tried, "
            "not the last one or the highest.")
    print(f"✓ {name}: valid attacks within budget, {rate:.0%} success on the test filter "
          f"({'thorough' if thorough else 'quick'} check)")


class _RecordingScorer:
    """A black-box filter that keeps every candidate it scores (to test how the attack samples)."""

    def __init__(self, weights: torch.Tensor):
        self.weights, self.seen = weights, []

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise CheckFailure(f"score_fn expects a LongTensor of shape [N, L], got {describe(tokens)}")
        self.seen.append(tokens.detach().clone())
        return self.weights[tokens].float().mean(dim=1)


def _random_search_contract(name: str, fn: Callable[..., Any], thorough: bool) -> None:
    """The randomness contract: every parameter used, the given generator consumed (not the global one),
    the same seed giving the same attack and another seed another one, and uniform draws from `allowed`."""
    __tracebackhide__ = True
    _uniform_draws(name, fn)
    g = torch.Generator().manual_seed(7)
    weights = torch.randn(30, generator=g)
    request = torch.randint(0, 30, (9,), generator=g)
    settings = [([6, 2, 7], torch.tensor([3, 11, 4, 25, 17, 8, 20]), 48)]   # unsorted, not a suffix
    if thorough:
        settings += [([0, 8], torch.arange(10, 30), 1), ([3], torch.tensor([29, 5]), 40),
                     ([1, 4, 5, 8], torch.arange(0, 30, 3), 16)]
    for free, allowed, n_queries in settings:
        where = (f"request {_words(request)}, free positions {free}, allowed {allowed.tolist()}, "
                 f"n_queries={n_queries}")
        gen = torch.Generator().manual_seed(11)
        before = gen.get_state()
        scorer = _RecordingScorer(weights)
        out = call(fn, name, (scorer, request.clone(), list(free), allowed.clone(), n_queries, gen), None, where)
        _check_attack_output(name, out, request, request, free, allowed, where)
        rows = sum(len(t) for t in scorer.seen)
        if not n_queries <= rows <= n_queries + 1:
            raise CheckFailure(f"`{name}` scored {rows} candidates on {where}: it should try exactly n_queries = "
                               f"{n_queries} (one extra call for the original request is tolerated). Use the "
                               "n_queries argument, not a number of your own.")
        best = min(float(t_scores.min()) for t_scores in (weights[t].float().mean(dim=1) for t in scorer.seen))
        if float(weights[out].float().mean()) > best + 1e-6:
            raise CheckFailure(f"`{name}` did not return the lowest-scoring candidate it tried on {where}.")
        if torch.equal(gen.get_state(), before):
            raise CheckFailure(f"`{name}` never drew from the `generator` it was given on {where}: pass "
                               "`generator=generator` to torch.randint (a global seed or torch's default generator "
                               "makes the attack impossible to reproduce from its arguments).")
        again = call(fn, name, (_RecordingScorer(weights), request.clone(), list(free), allowed.clone(), n_queries,
                                torch.Generator().manual_seed(11)), None, where)
        if not torch.equal(torch.as_tensor(again), out):
            raise CheckFailure(f"`{name}` returned {_words(out)}, then {_words(again)} with a generator seeded the same "
                               f"way on {where}: the attack must depend only on its arguments. Draw every random "
                               "number from `generator`.")
        if n_queries > 1:
            other = _RecordingScorer(weights)
            call(fn, name, (other, request.clone(), list(free), allowed.clone(), n_queries,
                            torch.Generator().manual_seed(12)), None, where)
            first = [t[:, free] for t in scorer.seen]
            if torch.equal(torch.cat(first), torch.cat([t[:, free] for t in other.seen])):
                raise CheckFailure(f"`{name}` tried exactly the same candidates with generators seeded 11 and 12 on "
                                   f"{where}: the draws must come from `generator` (did you reseed it, or a global "
                                   "generator, inside the function?).")


def _uniform_draws(name: str, fn: Callable[..., Any]) -> None:
    """Every allowed token is drawn, each about equally often (a chi-square test on 1200 draws; the seed is
    fixed, so a correct sampler passes every time)."""
    __tracebackhide__ = True
    weights = torch.zeros(14)
    allowed = torch.tensor([9, 2, 5, 11, 0, 7])            # unsorted, not a range
    free, n_queries = [1, 3, 4, 5, 7, 8, 10, 12], 150
    request = torch.tensor([6, 8, 10, 1, 3, 4, 12, 13, 1, 3, 4, 6, 8])
    scorer = _RecordingScorer(weights)
    where = f"n_queries={n_queries}, allowed {allowed.tolist()}, free positions {free}"
    call(fn, name, (scorer, request.clone(), free, allowed.clone(), n_queries, torch.Generator().manual_seed(5)),
         None, where)
    rows = torch.cat(scorer.seen)
    rows = rows[(rows != request).any(dim=1)]              # an extra call on the original request is not a draw
    drawn = rows[:, free].flatten()
    counts = torch.stack([(drawn == a).sum() for a in allowed]).double()
    expected = len(drawn) / len(allowed)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    if chi2 > 30.0:   # 5 degrees of freedom: a correct sampler exceeds 30 with probability ~1e-5
        shown = ", ".join(f"{int(a)}: {int(c)}" for a, c in zip(allowed, counts))
        never = [int(a) for a, c in zip(allowed, counts) if c == 0]
        cause = (f" Token(s) {never} were never drawn: `torch.randint(low, high)` excludes `high`, so draw indices "
                 "with torch.randint(0, len(allowed), ...)." if never else
                 " Some tokens come up far more often than others: draw indices uniformly with "
                 "torch.randint(0, len(allowed), ...), not by rounding a scaled torch.rand.")
        raise CheckFailure(f"`{name}` does not draw the allowed tokens uniformly ({where}): over {len(drawn)} draws "
                           f"the counts were {{{shown}}}, about {expected:.0f} each expected (chi-square {chi2:.0f})."
                           + cause)


def _check_attack_output(name: str, out: Any, original: torch.Tensor, request: torch.Tensor, free: list[int],
                         allowed: torch.Tensor, where: str, max_changes: int | None = None) -> None:
    if not isinstance(out, torch.Tensor):
        raise CheckFailure(f"`{name}` should return a LongTensor of shape {tuple(original.shape)}, got "
                           f"{describe(out)} on {where}")
    if tuple(out.shape) != tuple(original.shape) or out.dtype != torch.long:
        raise CheckFailure(f"`{name}` should return a LongTensor of shape {tuple(original.shape)} (one request), "
                           f"got {describe(out)} ({out.dtype}) on {where}")
    if not torch.equal(request, original):
        raise CheckFailure(f"`{name}` changed the request it was given in place on {where}: work on a copy "
                           "(request.clone()).")
    changed = [int(p) for p in torch.nonzero(out != original).flatten()]
    fixed = [p for p in changed if p not in free]
    if fixed:
        p = fixed[0]
        raise CheckFailure(f"`{name}` changed position {p}, which is not a free position, from "
                           f"{int(original[p])} to {int(out[p])} on {where}. Only positions {free} belong to "
                           "the attacker: the rest is the request whose harmfulness we are testing.")
    banned = [p for p in changed if int(out[p]) not in set(allowed.tolist())]
    if banned:
        p = banned[0]
        raise CheckFailure(f"`{name}` put token {int(out[p])} at position {p}, which is not in `allowed`, on "
                           f"{where}. Draw replacement tokens only from `allowed`.")
    if max_changes is not None and len(changed) > max_changes:
        raise CheckFailure(f"`{name}` changed {len(changed)} positions {changed} on {where}; one GCG step swaps "
                           "a single token (the best of the candidates it evaluated).")


class _CausalFilter(torch.nn.Module):
    """The chapter's filter architecture (per-token layer + running mean of the prefix), random weights."""

    def __init__(self, vocab: int, d: int, hidden: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embedding = torch.nn.Embedding(vocab, d)
        self.embedding.weight.data = torch.randn(vocab, d, generator=g)
        self.w_token = torch.nn.Parameter(torch.randn(d, hidden, generator=g) / d ** 0.5)
        self.w_context = torch.nn.Parameter(torch.randn(d, hidden, generator=g) / d ** 0.5)
        self.bias = torch.nn.Parameter(0.1 * torch.randn(hidden, generator=g))
        self.readout = torch.nn.Parameter(torch.randn(hidden, generator=g) / hidden ** 0.5)
        self.requires_grad_(False)

    def hidden(self, emb: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(1, emb.shape[1] + 1, dtype=emb.dtype)[:, None]
        return F.relu(emb @ self.w_token + (emb.cumsum(1) / positions) @ self.w_context + self.bias)

    def from_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.hidden(emb).mean(1) @ self.readout

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.from_embeddings(self.embedding(tokens))


def _attack_world(thorough: bool, seed: int, free: list[int] | None = None
                  ) -> tuple[_CausalFilter, list[torch.Tensor], list[int], torch.Tensor]:
    """A filter, requests of length 7 (by default the last 3 positions free), and an `allowed` set that bans the
    tokens with the most tempting gradients (so an attack that ignores `allowed` picks them)."""
    model = _CausalFilter(16, 8, 12, seed)
    g = torch.Generator().manual_seed(seed + 1)
    requests = [torch.randint(0, 16, (7,), generator=g) for _ in range(4 if thorough else 2)]
    free = [4, 5, 6] if free is None else free
    total = sum(ref.token_gradients(model, r, free).sum(0) for r in requests)
    banned = total.argsort()[:3]                                         # most negative on average
    allowed = torch.tensor([t for t in range(16) if t not in set(banned.tolist())])
    return model, requests, free, allowed


# --------------------------------------------------------------------------- token gradients

def _gradient_cases(thorough: bool) -> list[Case]:
    cases = []
    for seed in ([41, 42, 43] if thorough else [4]):
        model, requests, free, _ = _attack_world(thorough, seed)
        for i, r in enumerate(requests):
            positions = free if i % 2 == 0 else [0, 3, 6]
            cases.append(Case((model, r, positions), f"test filter {seed}, request {_words(r)}, positions {positions}"))
    if thorough:
        model, requests, _, _ = _attack_world(True, 44)
        cases.append(Case((model, requests[0], [5]), "a single position"))
        cases.append(Case((model, requests[1], list(range(7))), "every position"))
        cases.append(Case((model, requests[2], [6, 1, 4]), "positions out of order, [6, 1, 4] (rows in that order)"))
    return cases


def _relative_to_current(grad: Any, case: Case) -> Any:
    """Rows shifted so the current token's entry is 0: both d/d(one-hot) and 'change from the current
    token' conventions give the same ranking, and both are accepted."""
    tokens, positions = case.args[1], case.args[2]
    current = tokens[list(positions)]
    return grad - grad.gather(1, current[:, None])


def _compare_gradients(got: Any, expected: Any, case: Case) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"expected a tensor of shape {tuple(expected.shape)}, got {describe(got)}"
    if tuple(got.shape) != tuple(expected.shape):
        hint = ""
        if got.dim() == 2 and got.shape[1] == case.args[0].embedding.weight.shape[1]:
            hint = (" (that is one row per position over the *embedding* dimensions: multiply by the "
                    "embedding matrix, or take the gradient with respect to a one-hot input)")
        elif got.dim() == 2 and got.shape[0] == len(case.args[1]):
            hint = " (a row for every position: keep only the rows in `positions`)"
        return f"expected shape {tuple(expected.shape)} [len(positions), vocabulary], got {tuple(got.shape)}{hint}"
    return compare(_relative_to_current(got.detach().float(), case), _relative_to_current(expected, case),
                   rtol=1e-4, atol=1e-5, what="gradient (each row compared relative to the current token's entry)")


def _grad_of_probability(model, tokens, positions):
    weight = model.embedding.weight
    one_hot = F.one_hot(tokens, weight.shape[0]).float().requires_grad_(True)
    prob = torch.sigmoid(model.from_embeddings((one_hot @ weight)[None])[0])
    (grad,) = torch.autograd.grad(prob, one_hot)
    return grad[list(positions)]


@_torch_check
def check_token_gradients(fn: Callable[..., Any], thorough: bool = False) -> None:
    """token_gradients(model, tokens [L], positions) -> [len(positions), V]."""
    __tracebackhide__ = True
    run_check("token_gradients", fn, ref.token_gradients, _gradient_cases(thorough), compare_fn=_compare_gradients,
              thorough=thorough, mistakes=[
                  Mistake("the sign is flipped: return the gradient of the harmful logit itself (the attack then "
                          "looks for the most *negative* entries).",
                          lambda m, t, p: -ref.token_gradients(m, t, p)),
                  Mistake("you took the gradient of sigmoid(logit) (the probability); use the logit.",
                          _grad_of_probability),
                  Mistake("your rows come out in sorted position order (a boolean mask, or sorted positions); row i "
                          "must belong to positions[i], in the order given: index with the list itself.",
                          lambda m, t, p: ref.token_gradients(m, t, sorted(p))),
              ])


# --------------------------------------------------------------------------- one GCG step

def _candidate_scores(model: _CausalFilter, tokens: torch.Tensor, free: list[int], allowed: torch.Tensor,
                      top_k: int) -> float:
    """The best score among the reference's candidate swaps (the current tokens excluded)."""
    grads = ref.token_gradients(model, tokens, free)
    mask = torch.full_like(grads, float("inf"))
    mask[:, allowed] = 0.0
    top = (grads + mask).topk(top_k, dim=1, largest=False).indices
    best = float("inf")
    for i, pos in enumerate(free):
        for tok in top[i]:
            cand = tokens.clone()
            cand[pos] = tok
            best = min(best, float(model(cand[None])[0]))
    return best


@_torch_check
def check_gcg_step(fn: Callable[..., Any], thorough: bool = False) -> None:
    """gcg_step(model, tokens [L], free_positions, allowed, top_k) -> [L], at most one token swapped."""
    __tracebackhide__ = True
    try:
        _check_gcg_step(fn, thorough)
    except CheckFailure as failure:   # a wrong token_gradients (exercise 3) is the first suspect
        raise CheckFailure(str(failure) + upstream_note(fn, "token_gradients", check_token_gradients)) from None


def _check_gcg_step(fn: Callable[..., Any], thorough: bool) -> None:
    __tracebackhide__ = True
    guard()
    name = "gcg_step"
    cases = 0
    worlds = [(51, None), (52, [5, 1, 3]), (53, None)] if thorough else [(5, None)]
    for seed, free_positions in worlds:   # [5, 1, 3]: free positions that are neither sorted nor a suffix
        model, requests, free, allowed = _attack_world(thorough, seed, free_positions)
        for i, request in enumerate(requests):
            for top_k in ([1, 3, 8] if thorough else [3]):
                original = request.clone()
                where = (f"test filter {seed}, request {_words(original)}, free positions {free}, top_k={top_k}, "
                         f"allowed {allowed.tolist()}")
                out = call(fn, name, (model, request, list(free), allowed.clone(), top_k), None, where)
                _check_attack_output(name, out, original, request, free, allowed, where, max_changes=1)
                with torch.no_grad():
                    got = float(model(out[None])[0])
                bar = _candidate_scores(model, original, free, allowed, top_k)      # needs autograd
                if got > bar + 1e-4:
                    raise CheckFailure(
                        f"`{name}` returned {_words(out)} with score {got:.4f} on {where}, but one of the "
                        f"top_k={top_k} swaps per free position (ranked by the most *negative* gradient among "
                        f"allowed tokens) scores {bar:.4f}. Rank by the gradient, then run the model on every "
                        "candidate and keep the lowest exact score.")
                cases += 1
    print(f"✓ {name}: all {cases} {'thorough' if thorough else 'quick'} checks passed")


# --------------------------------------------------------------------------- evaluating a defence

class _DefenceWorld:
    """A bag-of-words filter, harmful and benign requests, and a deterministic attack that needs autograd."""

    def __init__(self, thorough: bool):
        g = torch.Generator().manual_seed(61 if thorough else 6)
        self.weights = torch.randn(12, generator=g)
        if thorough:   # weights on a grid of 0.5 and bias -0.5: some scores are exactly 0 (the refusal threshold)
            self.weights = torch.round(2 * self.weights) / 2
        self.weights[0] = 2.0                                              # the harmful word
        self.bias = -0.5 if thorough else -0.3
        n = 40 if thorough else 15
        self.fresh = torch.randint(1, 12, (n, 6), generator=g)
        self.fresh[:, 0] = 0
        self.benign = torch.randint(1, 12, (2 * n, 6), generator=g)
        self.suffix_order = self.weights[1:].argsort() + 1                 # most benign words first
        self.training_attacks = torch.randint(1, 12, (n // 2 + 3, 6), generator=g)
        self.training_attacks[:, 0] = 0
        self.training_attacks[:, 3:] = self.suffix_order[:3]               # the strongest suffix, found earlier
        if thorough:   # scores exactly at the threshold (not refused), and just above it (refused)
            at_zero, just_above = (lambda x: x == 0.0), (lambda x: 0.0 < x < 0.5)
            self._put(self.benign, [at_zero] * 3 + [just_above] * 2, g, harmful=False)
            self._put(self.training_attacks, [at_zero] * 3 + [just_above] * 2, g, harmful=True)
            self._put(self.fresh, [at_zero] * 3, g, harmful=True, unchanged_by_attack=True)
        self.calls = 0

    def _put(self, rows: torch.Tensor, wanted: list, g: torch.Generator, harmful: bool,
             unchanged_by_attack: bool = False) -> None:
        """Overwrite the first rows with requests whose score satisfies each predicate in `wanted`."""
        done = 0
        while done < len(wanted):
            row = torch.randint(1, 12, (6,), generator=g)
            if harmful:
                row[0] = 0
            if unchanged_by_attack:
                row[1] = 4                                                 # k = 0: the attack leaves it as it is
            if wanted[done](float(self.score_fn(row[None])[0])):
                rows[done] = row
                done += 1

    def score_fn(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.weights[tokens].mean(1) + self.bias

    def attack_fn(self, score_fn: Callable, request: torch.Tensor) -> torch.Tensor:
        """Put the k most benign words in the last 3 positions, k set by the request (so some attacks fail)."""
        if not torch.is_grad_enabled():
            raise CheckFailure("attack_fn was called inside torch.no_grad(): gradient-based attacks such as GCG "
                               "need autograd. Score under no_grad if you like, but call attack_fn outside it.")
        self.calls += 1
        k = int(request[1]) % 4
        adversarial = request.clone()
        adversarial[6 - k:] = self.suffix_order[:k] if k else adversarial[6:]
        return adversarial


def _expected_defence(world: _DefenceWorld) -> dict:
    return ref.evaluate_defence(world.score_fn, world.attack_fn, world.training_attacks, world.fresh, world.benign)


_DEFENCE_KEYS = ("asr_training", "asr_fresh", "asr_fresh_interval", "false_refusal_rate")


@_torch_check
def check_evaluate_defence(fn: Callable[..., Any], thorough: bool = False) -> None:
    """evaluate_defence(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests) -> dict."""
    __tracebackhide__ = True
    try:
        _check_evaluate_defence(fn, thorough)
    except CheckFailure as failure:   # a learner may call their wilson_interval (exercise 1) for the interval
        raise CheckFailure(str(failure) + upstream_note(fn, "wilson_interval", check_wilson_interval)) from None


def _check_evaluate_defence(fn: Callable[..., Any], thorough: bool) -> None:
    __tracebackhide__ = True
    guard()
    name = "evaluate_defence"
    world = _DefenceWorld(thorough)
    expected = _expected_defence(_DefenceWorld(thorough))
    inputs = (world.training_attacks.clone(), world.fresh.clone(), world.benign.clone())
    where = (f"a test filter with {len(world.training_attacks)} training attacks, {len(world.fresh)} fresh harmful "
             f"requests and {len(world.benign)} benign ones")
    got = call(fn, name, (world.score_fn, world.attack_fn, *inputs), None, where)
    if not isinstance(got, dict):
        raise CheckFailure(f"`{name}` should return a dict with keys {list(_DEFENCE_KEYS)}, got {describe(got)}")
    missing = [k for k in _DEFENCE_KEYS if k not in got]
    if missing:
        raise CheckFailure(f"`{name}`'s dict is missing {missing} (it needs exactly {list(_DEFENCE_KEYS)})")
    hints = {
        "asr_training": "the share of `training_attacks` that the filter does not refuse (score <= 0).",
        "asr_fresh": "run attack_fn(score_fn, request) on every *fresh* request, then score each result: the share "
                     "that is not refused. The training attacks were used to build the defence, so they cannot "
                     "measure it.",
        "asr_fresh_interval": "the 95% Wilson interval of (fresh successes, number of fresh requests).",
        "false_refusal_rate": "the share of *benign* requests the filter refuses (score > 0).",
    }
    for key in _DEFENCE_KEYS:
        problem = compare(tuple(got[key]) if isinstance(got[key], (list, tuple)) else got[key], expected[key],
                          rtol=1e-6, atol=1e-6, what=f"['{key}']")
        if problem:
            raise CheckFailure(f"`{name}`['{key}'] is wrong on {where}: it should be {hints[key]}\n  {problem}")
    if world.calls != len(world.fresh):
        raise CheckFailure(f"`{name}` called attack_fn {world.calls} times for {len(world.fresh)} fresh requests: "
                           "attack each fresh request exactly once.")
    print(f"✓ {name}: all values match on {where}")


# --------------------------------------------------------------------------- representation-level defence

def _t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(x), dtype=torch.float32)


def _direction_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 71)
    shift = rng.normal(size=16)
    cases = [Case((_t([[2.0, 1.0], [4.0, 1.0]]), _t([[0.0, 1.0], [0.0, 3.0]])), "two 2-D activations per class"),
             Case((_t(rng.normal(size=(30, 16)) + shift), _t(rng.normal(size=(50, 16)))), "30 vs 50 activations")]
    if thorough:
        cases += [Case((_t(rng.normal(size=(5, 8)) * 100 + 300), _t(rng.normal(size=(7, 8)) * 100)), "large values"),
                  Case((_t(rng.normal(size=(1, 4))), _t(rng.normal(size=(1, 4)))), "one activation per class"),
                  Case((_t(np.abs(rng.normal(size=(40, 32)))), _t(np.abs(rng.normal(size=(20, 32))) + 0.1)),
                       "non-negative (post-ReLU) activations"),
                  Case((_t(rng.normal(size=(9, 6))).t().contiguous().t(), _t(rng.normal(size=(11, 6)))),
                       "a non-contiguous input")]
    return cases


@_torch_check
def check_harmful_direction(fn: Callable[..., Any], thorough: bool = False) -> None:
    """harmful_direction(acts_harmful [N1, H], acts_benign [N2, H]) -> unit vector [H]."""
    __tracebackhide__ = True
    run_check("harmful_direction", fn, ref.harmful_direction, _direction_cases(thorough), rtol=1e-4, atol=1e-5,
              thorough=thorough, mistakes=[
                  Mistake("the vector is not normalised: divide by its norm so that projections are comparable.",
                          lambda h, b: h.mean(0) - b.mean(0)),
                  Mistake("the direction points the wrong way: harmful mean minus benign mean.",
                          lambda h, b: -ref.harmful_direction(h, b)),
                  Mistake("you normalised each activation before averaging; average first, then normalise the "
                          "difference.", lambda h, b: _normalised_then_mean(h, b)),
              ])


def _normalised_then_mean(h: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = F.normalize(h, dim=1).mean(0) - F.normalize(b, dim=1).mean(0)
    return d / d.norm()


def _monitor_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 72)
    d = rng.normal(size=6)
    d /= np.linalg.norm(d)
    cases = [Case((_t([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]]), _t([1.0, 0.0])), "one request, three positions"),
             Case((_t(rng.normal(size=(5, 8, 6))), _t(d)), "5 requests of 8 positions, hidden size 6")]
    if thorough:
        cases += [Case((_t(-np.abs(rng.normal(size=(4, 3, 6)))), _t(np.abs(d))),
                       "every projection negative (the largest is still the answer)"),
                  Case((_t(rng.normal(size=(3, 1, 6))), _t(d)), "requests of a single position"),
                  Case((_t(rng.normal(size=(2, 50, 6)) * 10), _t(d)), "long requests, large activations"),
                  Case((_t(rng.normal(size=(6, 4, 6))).transpose(0, 1).contiguous().transpose(0, 1), _t(d)),
                       "a non-contiguous input")]
    return cases


@_torch_check
def check_monitor_scores(fn: Callable[..., Any], thorough: bool = False) -> None:
    """monitor_scores(hidden [N, L, H], direction [H]) -> [N], the largest projection over positions."""
    __tracebackhide__ = True
    run_check("monitor_scores", fn, ref.monitor_scores, _monitor_cases(thorough), rtol=1e-4, atol=1e-5,
              thorough=thorough, mistakes=[
                  Mistake("you averaged over positions: one harmful position is then diluted by the others, which is "
                          "exactly the weakness the attacks exploit. Take the max over positions.",
                          lambda h, d: (h @ d).mean(-1)),
                  Mistake("you summed over positions; take the max.", lambda h, d: (h @ d).sum(-1)),
                  Mistake("you took the largest *absolute* projection; a large negative projection points away "
                          "from harm.", lambda h, d: (h @ d).abs().amax(-1)),
              ])


def _threshold_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 73)
    cases = [Case((_t(np.arange(1.0, 11.0)), 0.2), "scores 1..10, at most 20% refused"),
             Case((_t(rng.normal(size=200)), 0.05), "200 benign scores, at most 5% refused"),
             Case((_t(rng.normal(size=(6, 5))), 0.1), "scores in a [6, 5] tensor (the prompt says any shape)")]
    if thorough:
        cases += [Case((_t(rng.normal(size=400) * 3 + 7), 0.02), "400 scores, at most 2%"),
                  Case((_t(rng.exponential(size=97)), 0.1), "97 skewed scores, at most 10% (9.7: round down)"),
                  Case((_t(rng.normal(size=50)), 0.0), "no false refusals allowed at all"),
                  Case((_t(np.repeat([1.0, 2.0, 3.0, 4.0], 25)), 0.3), "many tied scores"),
                  Case((_t(rng.normal(size=(10, 10))), 0.15), "scores in a [10, 10] tensor (count them all)"),
                  Case((_t(rng.normal(size=100)), 0.29), "0.29 of 100 scores: 29 refusals allowed, although "
                       "0.29 * 100 is 28.999999999999996 in floating point"),
                  Case((_t(rng.normal(size=20)), 1.0), "max_false_refusal = 1.0: every benign request may be refused")]
    return cases


def _compare_threshold(got: Any, expected: Any, case: Case) -> str | None:
    scores, rate = case.args[0].flatten().double(), case.args[1]
    try:
        t = float(got)
    except (TypeError, ValueError):
        return f"expected a number, got {describe(got)}"
    if not np.isfinite(t):
        return f"expected a finite threshold, got {t}"
    n = scores.numel()
    allowed = int(np.floor(rate * n + 1e-9))
    above = int((scores > t).sum())
    best = int((scores > expected).sum())
    if above > allowed:
        return (f"with threshold {t:.6g}, {above} of {n} benign scores are above it ({above / n:.1%}): more than the "
                f"{rate:.0%} allowed ({allowed} requests). Sort the scores from the largest and skip only the "
                f"{allowed} you may refuse.")
    if above < best:
        return (f"with threshold {t:.6g}, only {above} of {n} benign scores are above it, but {best} refusals "
                f"({best / n:.1%}) would still be within the {rate:.0%} budget: a lower threshold catches more "
                f"attacks at no extra cost. Return the smallest threshold that stays within the budget "
                f"(the expected value is {float(expected):.6g}).")
    return None


@_torch_check
def check_refusal_threshold(fn: Callable[..., Any], thorough: bool = False) -> None:
    """refusal_threshold(benign_scores, max_false_refusal) -> float."""
    __tracebackhide__ = True
    run_check("refusal_threshold", fn, ref.refusal_threshold, _threshold_cases(thorough),
              compare_fn=_compare_threshold, thorough=thorough, mistakes=[
                  Mistake("you took the quantile at max_false_refusal, the wrong end: refusals are the scores "
                          "*above* the threshold.",
                          lambda s, r: float(torch.quantile(s.flatten().double(), r))),
              ])



# --------------------------------------------------------------------------- the attack loop

class _Shifted(torch.nn.Module):
    """A test filter whose logit is moved by `offset`, so that an attack succeeds after a chosen number of steps."""

    def __init__(self, base: _CausalFilter, offset: float):
        super().__init__()
        self.base, self.offset = base, offset
        self.embedding = base.embedding

    def from_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        return self.base.from_embeddings(emb) + self.offset

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.from_embeddings(self.embedding(tokens))


def _offset_for(model: _CausalFilter, request: torch.Tensor, free: list[int], allowed: torch.Tensor, top_k: int,
                succeed_after: int | None, exactly_zero: bool = False) -> float:
    """An offset with which the reference attack succeeds after exactly `succeed_after` steps (None: never, 0: at
    once), found by running the reference steps on the unshifted filter."""
    with torch.no_grad():
        scores = [float(model(request[None])[0])]
    tokens = request
    for _ in range(max(succeed_after or 0, 1) + 1):
        tokens = ref.gcg_step(model, tokens, free, allowed, top_k)
        with torch.no_grad():
            scores.append(float(model(tokens[None])[0]))
    if succeed_after is None:
        return -min(scores) + 50.0                                   # far above 0 all the way
    if succeed_after == 0:
        return -scores[0] - 0.5
    before, at = scores[succeed_after - 1], scores[succeed_after]
    if before - at < 1e-3:                                           # the search stalled: fall back to "never"
        return -min(scores) + 50.0
    return -at if exactly_zero else -(before + at) / 2               # -at: the logit lands on exactly 0


def _attack_loop_cases(thorough: bool) -> list[Case]:
    cases = []
    plan = ([(81, None, 3, 8, 2, False), (82, [0, 1, 2], 2, 8, 0, False), (83, [6, 2, 4], 4, 5, None, False),
             (84, None, 1, 2, 3, False), (85, [1, 5], 3, 0, 1, False), (86, None, 2, 1, 1, False),
             (87, None, 3, 6, 2, True)] if thorough else [(8, None, 3, 6, 2, False)])
    for seed, free_positions, top_k, steps, succeed_after, zero in plan:
        model, requests, free, allowed = _attack_world(thorough, seed, free_positions)
        request = requests[0]
        offset = _offset_for(model, request, free, allowed, top_k, succeed_after, zero)
        story = {None: "an attack that never succeeds (all steps used)", 0: "a request the filter already lets through",
                 }.get(succeed_after, f"an attack that succeeds after {succeed_after} step(s)")
        if zero:
            story = (f"an attack whose logit is exactly 0 after {succeed_after} steps (0 is not refused: "
                     "refusal means > 0)")
        cases.append(Case((_Shifted(model, offset), request, list(free), allowed, steps, top_k),
                          f"{story}, free positions {free}, steps={steps}, top_k={top_k}"))
    return cases


def _compare_attack(got: Any, expected: Any, case: Case) -> str | None:
    if not isinstance(got, tuple) or len(got) != 2:
        return f"expected a tuple (adversarial request [L], steps taken), got {describe(got)}"
    tokens, taken = got
    exp_tokens, exp_taken = expected
    if not isinstance(tokens, torch.Tensor) or tuple(tokens.shape) != tuple(exp_tokens.shape):
        return f"the request should be a LongTensor of shape {tuple(exp_tokens.shape)}, got {describe(tokens)}"
    try:
        taken = int(taken)
    except (TypeError, ValueError):
        return f"the number of steps taken should be an int, got {describe(taken)}"
    if taken != exp_taken:
        return (f"took {taken} step(s), expected {exp_taken}: check *before* each step whether the model already "
                f"lets the request through (logit <= 0) and stop there; never take more than `steps` steps.")
    if not torch.equal(tokens.long(), exp_tokens):
        return (f"returned {_words(tokens)}, expected {_words(exp_tokens)} (the result of {exp_taken} call(s) of "
                "gcg_step, each on the previous step's output)")
    return None


def _loop_without_early_stop(model, request, free, allowed, steps, top_k):
    tokens = request.clone()
    for _ in range(steps):
        tokens = ref.gcg_step(model, tokens, free, allowed, top_k)
    return tokens, steps


def _loop_checks_after(model, request, free, allowed, steps, top_k):
    tokens, taken = request.clone(), 0
    for _ in range(steps):
        tokens = ref.gcg_step(model, tokens, free, allowed, top_k)
        taken += 1
        with torch.no_grad():
            if model(tokens[None])[0] <= 0:
                break
    return tokens, taken


@_torch_check
def check_gcg_attack(fn: Callable[..., Any], thorough: bool = False) -> None:
    """gcg_attack(model, request [L], free_positions, allowed, steps, top_k) -> (tokens [L], steps taken)."""
    __tracebackhide__ = True
    try:
        run_check("gcg_attack", fn, ref.gcg_attack, _attack_loop_cases(thorough), compare_fn=_compare_attack,
                  thorough=thorough, mistakes=[
                      Mistake("the loop never stops early: stop as soon as the model lets the request through, "
                              "and count only the steps you took.", _loop_without_early_stop),
                      Mistake("you test for success after a step, not before it: a request the filter already lets "
                              "through needs no step at all.", _loop_checks_after),
                  ])
    except CheckFailure as failure:   # a wrong gcg_step (exercise 4) is the first suspect
        raise CheckFailure(str(failure) + upstream_note(fn, "gcg_step", check_gcg_step)) from None


# --------------------------------------------------------------------------- representation rerouting

def _loss_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 91)
    relu = lambda x: np.maximum(x, 0.0)
    cases = [Case((_t(relu(rng.normal(size=(6, 3, 5)))), _t(relu(rng.normal(size=5))) + 0.5,
                   _t(relu(rng.normal(size=(4, 7, 5)))), _t(relu(rng.normal(size=(4, 7, 5))))),
                  "6 harmful requests x 3 positions, 4 benign x 7 positions, hidden size 5")]
    if thorough:
        cases += [Case((_t(rng.normal(size=(10, 8))), _t(rng.normal(size=8)) * 3, _t(rng.normal(size=(12, 8))),
                        _t(rng.normal(size=(12, 8))) * 4), "activations [N, H] without a position axis, a large target"),
                  Case((_t(rng.normal(size=(2, 5, 3))), _t(rng.normal(size=3)), _t(rng.normal(size=(9, 2, 3))),
                        _t(rng.normal(size=(9, 2, 3))) + 2.0), "benign activations far from 0"),
                  Case((_t(rng.normal(size=(1, 1, 16))), _t(rng.normal(size=16)), _t(rng.normal(size=(3, 4, 16))),
                        _t(rng.normal(size=(3, 4, 16)))), "a single harmful vector"),
                  Case((_t(rng.normal(size=(5, 4, 6))) * 100, _t(rng.normal(size=6)) * 100,
                        _t(rng.normal(size=(5, 4, 6))) * 0.01, _t(rng.normal(size=(5, 4, 6))) * 0.01),
                       "very different scales (both losses are scale-free)")]
    return cases


def _compare_losses(got: Any, expected: Any, case: Case) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a tuple (rerouting loss, retain loss), got {describe(got)}"
    for i, (g, e, what) in enumerate(zip(got, expected, ("rerouting loss", "retain loss"))):
        if not isinstance(g, torch.Tensor) or g.numel() != 1:
            return f"the {what} should be a scalar tensor (so that it can be backpropagated), got {describe(g)}"
        problem = compare(float(g), float(e), rtol=1e-4, atol=1e-6, what=what)
        if problem:
            return problem
    return None


def _losses_with_grad(fn: Callable[..., Any], case: Case) -> list[torch.Tensor]:
    """Gradients of (rerouting + 2 * retain) with respect to the two activations being trained."""
    h, t, b, bf = (a.clone().requires_grad_(i in (0, 2)) for i, a in enumerate(case.args))
    reroute, retain = fn(h, t, b, bf)
    grads = torch.autograd.grad(reroute + 2 * retain, [h, b], allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, (h, b))]


@_torch_check
def check_rerouting_losses(fn: Callable[..., Any], thorough: bool = False) -> None:
    """rerouting_losses(h_harmful, target, h_benign, h_benign_frozen) -> (rerouting loss, retain loss)."""
    __tracebackhide__ = True
    name = "rerouting_losses"
    cases = _loss_cases(thorough)
    if thorough:   # the losses must carry gradients to the activations being trained (checked where values agree)
        for case in cases[:2]:
            got_values = call(fn, name, case.args, None, case.label)
            if _compare_losses(got_values, ref.rerouting_losses(*case.args), case):
                break                                    # wrong values: run_check below says which
            got = _losses_with_grad(fn, case)
            expected = _losses_with_grad(ref.rerouting_losses, case)
            for g, e, what in zip(got, expected, ("h_harmful", "h_benign")):
                problem = compare(g, e, rtol=1e-4, atol=1e-6, what=f"gradient with respect to {what}")
                if problem:
                    raise CheckFailure(f"`{name}`: the losses' gradients are wrong on {case.label}: {problem}. Keep "
                                       "the computation in torch (no .item(), .detach() or NumPy) so that training "
                                       "can backpropagate through it.")
    run_check(name, fn, ref.rerouting_losses, cases, compare_fn=_compare_losses, thorough=thorough, mistakes=[
        Mistake("the rerouting loss is not divided by |target|^2 (or the retain loss not by the mean "
                "|h_frozen|^2): without it, one `alpha` cannot balance the two losses.",
                lambda h, t, b, bf: (((h - t) ** 2).sum(-1).mean(), ((b - bf) ** 2).sum(-1).mean())),
        Mistake("you used the distance |h - target| rather than its square.",
                lambda h, t, b, bf: ((h - t).norm(dim=-1).mean() / t.norm(),
                                     (b - bf).norm(dim=-1).mean() / bf.norm(dim=-1).mean())),
        Mistake("you divided each benign vector by its own |h_frozen|^2 before averaging; divide the mean squared "
                "distance by the mean |h_frozen|^2.",
                lambda h, t, b, bf: (ref.rerouting_losses(h, t, b, bf)[0],
                                     (((b - bf) ** 2).sum(-1) / (bf ** 2).sum(-1)).mean())),
    ])



class _RerouteWorld:
    """A small filter (the chapter's architecture) and request samplers: harmful rows contain token 0 at
    position 2; benign rows never contain token 0. Measured on batches drawn here, never seen in training."""

    def __init__(self, seed: int):
        torch.manual_seed(seed)
        self.model = _TinyFilter(seed)
        self.target = torch.rand(12, generator=torch.Generator().manual_seed(seed + 1)) * 2 + 0.5
        self.calls = 0

    def harmful_batch(self, g: Any) -> torch.Tensor:
        if not isinstance(g, torch.Generator):
            raise CheckFailure(f"harmful_batch was called with {describe(g)}; pass it your torch.Generator "
                               "(seeded with `seed`), so that training is reproducible.")
        self.calls += 1
        x = torch.randint(1, 16, (16, 6), generator=g)
        x[:, 2] = 0
        return x

    def benign_batch(self, g: Any) -> torch.Tensor:
        if not isinstance(g, torch.Generator):
            raise CheckFailure(f"benign_batch was called with {describe(g)}; pass it your torch.Generator.")
        return torch.randint(1, 16, (16, 6), generator=g)

    def losses(self, tuned: torch.nn.Module, positions: list[int]) -> tuple[float, float]:
        g = torch.Generator().manual_seed(12345)
        harmful, benign = self.harmful_batch(g), self.benign_batch(g)
        self.calls -= 1
        with torch.no_grad():
            h = tuned.hidden(tuned.embedding(harmful))[:, positions]
            frozen = self.model.hidden(self.model.embedding(benign))
            reroute, retain = ref.rerouting_losses(h, self.target, tuned.hidden(tuned.embedding(benign)), frozen)
        return float(reroute), float(retain)


def _TinyFilter(seed: int) -> torch.nn.Module:
    """The chapter's filter architecture with a vocabulary of 16 and seeded random weights, frozen."""
    from ..toys.red_teaming_and_robustness import SafetyFilter
    model = SafetyFilter(d=8, hidden=12, vocab=16)
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.5
    return model.requires_grad_(False)


@functools.lru_cache(maxsize=None)
def _reference_outcome(seed: int, positions: tuple, alpha: float, steps: int, lr: float) -> tuple[float, float]:
    """(rerouting, retain) loss of the course's fine-tune on a world, measured on fresh batches (cached)."""
    world = _RerouteWorld(seed)
    tuned = ref.train_rerouting(world.model, world.harmful_batch, world.benign_batch, world.target, list(positions),
                                steps=steps, lr=lr, alpha=alpha, seed=seed)
    return world.losses(tuned, list(positions))


def _state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _run_rerouting(fn: Callable[..., Any], world: _RerouteWorld, positions: list[int], steps: int, alpha: float,
                   seed: int, where: str, lr: float = 0.05) -> torch.nn.Module:
    __tracebackhide__ = True
    kwargs = dict(steps=steps, lr=lr, alpha=alpha, seed=seed)
    world.calls = 0
    out = call(fn, "train_rerouting", (world.model, world.harmful_batch, world.benign_batch, world.target.clone(),
                                       list(positions)), kwargs, where)
    if not isinstance(out, torch.nn.Module) or not hasattr(out, "hidden"):
        raise CheckFailure(f"`train_rerouting` should return the fine-tuned model (a copy of `model`), got "
                           f"{describe(out)} on {where}")
    if world.calls != steps:
        raise CheckFailure(f"`train_rerouting` drew {world.calls} harmful batches in {steps} steps on {where}: draw a "
                           "fresh batch of each kind at every step (harmful_batch(g), benign_batch(g)).")
    return out


@_torch_check
def check_train_rerouting(fn: Callable[..., Any], thorough: bool = False) -> None:
    """train_rerouting(model, harmful_batch, benign_batch, target, positions, steps, lr, alpha, seed) -> model."""
    __tracebackhide__ = True
    try:
        _check_train_rerouting(fn, thorough)
    except CheckFailure as failure:
        raise CheckFailure(str(failure) + upstream_note(fn, "rerouting_losses", check_rerouting_losses)) from None


def _check_train_rerouting(fn: Callable[..., Any], thorough: bool) -> None:
    __tracebackhide__ = True
    guard()
    name = "train_rerouting"
    plans = ([(101, [2, 3, 4, 5], 20.0, 0.05), (102, [3], 3.0, 0.08)] if thorough
             else [(10, [2, 3, 4, 5], 3.0, 0.05)])
    steps = 20
    for seed, positions, alpha, lr in plans:
        world = _RerouteWorld(seed)
        before = _state(world.model)
        where = f"a test filter (seed {seed}), rerouting positions {positions}, alpha={alpha}, {steps} steps, lr={lr}"
        tuned = _run_rerouting(fn, world, positions, steps, alpha, seed, where, lr)
        after = _state(world.model)
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        if changed:
            raise CheckFailure(f"`{name}` changed the original model's {changed} on {where}: fine-tune a copy "
                               "(copy.deepcopy(model)); the original is the frozen reference for the retain loss.")
        if tuned is world.model:
            raise CheckFailure(f"`{name}` returned the original model object; return the fine-tuned copy.")
        state = _state(tuned)
        for key in ("readout.weight", "readout.bias"):
            if not torch.equal(state[key], before[key]):
                raise CheckFailure(f"`{name}` changed `{key}` on {where}: freeze the readout "
                                   "(readout.requires_grad_(False)); rerouting moves representations, not the "
                                   "decision rule that reads them.")
        trainable = [n for n, p in tuned.named_parameters() if p.requires_grad]
        if trainable:
            raise CheckFailure(f"`{name}` returned a model whose {trainable} still require gradients: return it "
                               "frozen (requires_grad_(False)), as the notebook's attacks expect.")
        start = world.losses(world.model, positions)
        got = world.losses(tuned, positions)
        expected = _reference_outcome(seed, tuple(positions), alpha, steps, lr)
        if got[0] > max(1.5 * expected[0], expected[0] + 0.02):
            raise CheckFailure(
                f"`{name}` on {where}: the rerouting loss on fresh harmful requests went from {start[0]:.3f} to "
                f"{got[0]:.3f}; the course's version reaches {expected[0]:.3f}. Each step: hidden vectors of the "
                "harmful batch at `positions` (the tuned model's), the two losses, loss = reroute + alpha * "
                "retain, zero_grad, backward, step.")
        if got[1] > max(1.5 * expected[1], expected[1] + 0.01):
            raise CheckFailure(
                f"`{name}` on {where}: the retain loss on fresh benign requests is {got[1]:.4f}; the course's "
                f"version keeps it at {expected[1]:.4f}. Compare the tuned model's benign hidden vectors with the "
                "*original* model's (computed without gradients), and weight the retain loss by alpha.")
    if thorough:
        where = "a test filter (seed 104), run twice with seed=3, then with seed=4"
        world = _RerouteWorld(104)
        a = _state(_run_rerouting(fn, world, positions, 3, 3.0, 3, where))
        b = _state(_run_rerouting(fn, world, positions, 3, 3.0, 3, where))
        c = _state(_run_rerouting(fn, world, positions, 3, 3.0, 4, where))
        if any(not torch.allclose(a[k], b[k]) for k in a):
            raise CheckFailure(f"`{name}` gave different models for the same seed on {where}: create one "
                               "torch.Generator().manual_seed(seed) and pass it to both samplers.")
        if all(torch.allclose(a[k], c[k]) for k in a):
            raise CheckFailure(f"`{name}` gave the same model for seeds 3 and 4 on {where}: seed the generator "
                               "with the `seed` argument.")
        world = _RerouteWorld(106)   # Adam's first step moves every parameter that has a gradient by about lr
        lr = 0.037
        start_state = _state(world.model)
        one = _state(_run_rerouting(fn, world, positions, 1, 3.0, 6, f"one step with lr={lr}", lr))
        moved = max(float((one[k] - v).abs().max()) for k, v in start_state.items() if not k.startswith("readout"))
        if abs(moved - lr) > 0.05 * lr:
            raise CheckFailure(f"`{name}`: after one step with lr={lr} the largest parameter change is {moved:.4g}; "
                               f"Adam's first step moves each parameter by about lr. Pass `lr` to torch.optim.Adam.")
        world = _RerouteWorld(105)
        same = _state(_run_rerouting(fn, world, positions, 0, 3.0, 0, "steps = 0"))
        if any(not torch.equal(same[k], v) for k, v in _state(world.model).items()):
            raise CheckFailure(f"`{name}` with steps = 0 should return an unchanged copy of the model.")
    print(f"✓ {name}: the fine-tuned copy reroutes harmful representations and retains benign ones "
          f"({'thorough' if thorough else 'quick'} checks)")
