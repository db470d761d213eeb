"""Checks for chapter 11_red_teaming_and_robustness. Each `check_<exercise>(fn, thorough=False)`.

The attacks are checked on small filters built here from fixed seeds (not on the
notebook's filter), by what any correct attack must satisfy: it only changes the
positions it may change, only to allowed tokens, stays within its query budget,
and finds inputs at least as good as the stated bar.
"""
from __future__ import annotations

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
           "check_evaluate_defence", "check_harmful_direction", "check_breaker_scores", "check_refusal_threshold"]


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


def _breaker_cases(thorough: bool) -> list[Case]:
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
def check_breaker_scores(fn: Callable[..., Any], thorough: bool = False) -> None:
    """breaker_scores(hidden [N, L, H], direction [H]) -> [N], the largest projection over positions."""
    __tracebackhide__ = True
    run_check("breaker_scores", fn, ref.breaker_scores, _breaker_cases(thorough), rtol=1e-4, atol=1e-5,
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
