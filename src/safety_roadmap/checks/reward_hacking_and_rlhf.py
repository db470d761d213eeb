"""Checks for chapter 10_reward_hacking_and_rlhf. Each `check_<exercise>(obj, thorough=False)`."""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..reference import reward_hacking_and_rlhf as ref
from ._core import (Case, CheckFailure, Mistake, NotAttempted, check_choice, compare, describe, guard, read_only,
                    rng_for, run_check, trust)
from ._torch import torch_check as _torch_check

trust(torch)
trust(torch.nn.functional)

__all__ = ["check_q_learning_update", "check_greedy_returns", "check_response_log_probs",
           "check_bradley_terry_loss", "check_per_token_kl", "check_kl_penalised_reward",
           "check_reinforce_with_baseline", "check_constitutional_ai_labels", "check_deceptive_alignment_quiz",
           "check_alignment_faking_quiz", "check_scalable_oversight_quiz", "check_weak_to_strong_pgr"]


def _t(x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(np.asarray(x), dtype=dtype)


# --------------------------------------------------------------------------- Q-learning

def _q_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 11)

    def q(n_s: int, n_a: int, scale: float = 1.0) -> np.ndarray:
        return rng.normal(size=(n_s, n_a)) * scale

    cases = [Case((np.zeros((3, 2)), 0, 1, 1.0, 2, False, 0.5, 0.9), "a zero table, reward 1, not done"),
             Case((q(6, 4), 2, 3, 0.5, 4, False, 0.1, 0.99), "a random 6x4 table"),
             Case((q(6, 4), 1, 0, 2.0, 5, True, 0.5, 0.9), "a step that ends the episode (done=True)"),
             Case((q(7, 3), np.int64(2), np.int64(1), 0.5, np.int64(6), np.bool_(False), 0.3, 0.8),
                  "NumPy integers and a NumPy bool (as env.step returns them)")]
    if thorough:
        cases += [Case((q(5, 3), 3, 2, -1.0, 3, False, 0.3, 0.9), "s_next == s (the agent bumped into a wall)"),
                  Case((q(4, 4), 0, 1, 1.0, 2, False, 1.0, 0.9), "alpha = 1 (jump straight to the target)"),
                  Case((q(4, 4), 2, 0, 0.7, 1, False, 0.5, 0.0), "gamma = 0 (only the immediate reward counts)"),
                  Case((q(8, 4, 100.0), 7, 3, 5.0, 0, False, 0.25, 0.95), "large Q values"),
                  Case((read_only(q(5, 2)), 4, 1, 0.0, 0, False, 0.5, 0.9), "a read-only Q table"),
                  Case((q(5, 4).astype(np.float32), 1, 3, 1.0, 2, False, 0.5, 0.9), "a float32 Q table"),
                  Case((q(30, 4), np.int64(12), np.int64(2), np.float64(0.3), np.int64(13), np.bool_(False), 0.5, 0.9),
                       "numpy integers for s, a and s_next (as env.step returns them)")]
        cases += [Case((q(10, 4), int(rng.integers(10)), int(rng.integers(4)), float(rng.normal()),
                        int(rng.integers(10)), bool(rng.random() < 0.3), float(rng.uniform(0.05, 1)),
                        float(rng.uniform(0.5, 1))), f"random transition {i + 1}") for i in range(4)]
    return cases


@_torch_check
def check_q_learning_update(fn: Callable[..., Any], thorough: bool = False) -> None:
    """q_learning_update(Q, s, a, r, s_next, done, alpha, gamma) -> a new Q table."""
    __tracebackhide__ = True
    run_check("q_learning_update", fn, ref.q_learning_update, _q_cases(thorough), rtol=1e-5, atol=1e-6,
              thorough=thorough, mistakes=[
                  Mistake("when done is True there is no next state to bootstrap from: the target is just r.",
                          lambda Q, s, a, r, s2, d, al, g: ref.q_learning_update(Q, s, a, r, s2, False, al, g)),
                  Mistake("you bootstrapped from Q[s_next, a] (the same action again); Q-learning uses the best "
                          "next action, Q[s_next].max().",
                          lambda Q, s, a, r, s2, d, al, g: _update_with(Q, s, a, r if d else r + g * Q[s2, a], al)),
                  Mistake("you replaced Q[s, a] with the target; move it only a fraction alpha of the way.",
                          lambda Q, s, a, r, s2, d, al, g: ref.q_learning_update(Q, s, a, r, s2, d, 1.0, g)),
                  Mistake("the TD error has the wrong sign: it is target - Q[s, a].",
                          lambda Q, s, a, r, s2, d, al, g: _update_with(Q, s, a, 2 * Q[s, a] - (
                              r if d else r + g * Q[s2].max()), al)),
              ])


def _update_with(Q: np.ndarray, s: int, a: int, target: float, alpha: float) -> np.ndarray:
    new = np.array(Q, dtype=float, copy=True)
    new[s, a] += alpha * (target - new[s, a])
    return new


# --------------------------------------------------------------------------- greedy evaluation

_LAYOUTS = {
    "corridor": ["S..G"],
    "goal below": ["S.#", "..#", "G.T"],
    "tamper near": ["S.T", "...", "..G"],
    "walls": ["S.#..", ".##.T", "...#.", "G#..."],
}


def _policy_table(env: ref.Gridworld, rng: np.random.Generator, kind: str) -> np.ndarray:
    Q = rng.normal(size=(env.n_states, env.n_actions)) * 0.1
    if kind == "random":
        return Q
    # prefer one fixed action everywhere, so the rollout walks into a wall and times out
    Q[:, {"up": 0, "right": 1, "down": 2, "left": 3}[kind]] += 5.0
    return Q


def _greedy_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 12)
    env = ref.Gridworld(["T.S.G"], horizon=10)
    towards_goal = _policy_table(env, rng, "right")
    towards_goal[:, 3] -= 10.0  # "left" is the worst action everywhere
    cases = [Case((env, towards_goal), "corridor T.S.G, Q prefers 'right' (to the goal)"),
             Case((ref.Gridworld(_LAYOUTS["tamper near"], horizon=10), _policy_table(
                 ref.Gridworld(_LAYOUTS["tamper near"]), rng, "right")), "Q walks right into the tamper tile"),
             Case((ref.Gridworld(_LAYOUTS["corridor"], horizon=7), _policy_table(
                 ref.Gridworld(_LAYOUTS["corridor"]), rng, "up")), "Q walks into a wall until the horizon")]
    tie_env = ref.Gridworld(_LAYOUTS["tamper near"], horizon=9)
    ties = np.zeros((tie_env.n_states, tie_env.n_actions))
    ties[:, 1] = ties[:, 2] = 1.0
    cases.append(Case((tie_env, ties), "'right' and 'down' tie everywhere (np.argmax picks the lower index, 'right')"))
    if thorough:
        cases.append(Case((ref.Gridworld(_LAYOUTS["walls"], horizon=6), np.zeros((20, 4))),
                          "a Q table of zeros: all four actions tie ('up' wins)"))
        for name, layout in _LAYOUTS.items():
            for kind in ("random", "down", "random"):
                env = ref.Gridworld(layout, horizon=int(rng.integers(5, 25)), tamper_proxy=float(rng.uniform(2, 5)),
                                    tamper_true=float(rng.uniform(-2, 0)), goal_reward=float(rng.uniform(0.5, 2)))
                cases.append(Case((env, _policy_table(env, rng, kind)), f"layout '{name}', {kind} Q table"))
    return cases


def _returns_discounted(env: ref.Gridworld, Q: np.ndarray) -> tuple[float, float]:
    s, done, t, out = env.reset(), False, 0, [0.0, 0.0]
    while not done:
        s, p, tr, done = env.step(int(np.argmax(Q[s])))
        out[0] += 0.9 ** t * p
        out[1] += 0.9 ** t * tr
        t += 1
    return out[0], out[1]


@_torch_check
def check_greedy_returns(fn: Callable[..., Any], thorough: bool = False) -> None:
    """greedy_returns(env, Q) -> (total proxy reward, total true reward) of one greedy episode."""
    __tracebackhide__ = True
    run_check("greedy_returns", fn, ref.greedy_returns, _greedy_cases(thorough), rtol=1e-9, atol=1e-9,
              thorough=thorough, mistakes=[
                  Mistake("ties went to the *highest* action index; np.argmax(Q[s]) picks the lowest one, and the "
                          "task asks for the same.", lambda env, Q: ref.greedy_returns(env, Q - 1e-9 * np.arange(
                              Q.shape[1])[::-1] * (Q == Q.max(axis=1, keepdims=True)))),
                  Mistake("you picked the action with the *lowest* Q value; greedy means np.argmax(Q[s]).",
                          lambda env, Q: ref.greedy_returns(env, -Q)),
                  Mistake("you discounted the rewards; this evaluation reports plain (undiscounted) totals.",
                          _returns_discounted),
                  Mistake("the two totals are swapped: return (proxy, true) in that order.",
                          lambda env, Q: ref.greedy_returns(env, Q)[::-1]),
                  Mistake("the reward of the last step (reaching G or T) is missing: add the rewards *before* "
                          "checking `done`.", lambda env, Q: (0.0, 0.0)),
              ])


# --------------------------------------------------------------------------- log-probabilities

def _logprob_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 13)

    def case(b: int | None, t: int, v: int, scale: float = 1.0, dtype=torch.float32) -> tuple:
        shape = (t, v) if b is None else (b, t, v)
        logits = _t(rng.normal(size=shape) * scale, dtype)
        tokens = torch.tensor(rng.integers(0, v, size=shape[:-1]), dtype=torch.long)
        return logits, tokens

    cases = [Case(case(2, 3, 5), "batch 2, 3 positions, 5 words"),
             Case(case(4, 6, 11), "batch 4, 6 positions, 11 words"),
             Case(case(None, 5, 7), "one response without a batch axis: logits [T, V]")]   # the prompt's [..., T, V]
    if thorough:
        cases += [Case(case(None, 3, 4), "another response without a batch axis"),
                  Case(case(3, 4, 6, 300.0), "large logits (a naive exp overflows)"),
                  Case(case(2, 5, 9, 1.0, torch.float64), "float64 logits"),
                  Case(case(1, 1, 2), "a single position, two words"),
                  Case(case(8, 6, 50), "a 50-word vocabulary")]
        logits, tokens = case(3, 4, 5)
        cases.append(Case((logits.transpose(0, 1).contiguous().transpose(0, 1), tokens),
                          "non-contiguous logits (a transposed view)"))
        logits, tokens = case(2, 3, 6)
        cases.append(Case((logits * torch.tensor([200.0, 1.0, 0.01])[None, :, None], tokens),
                          "positions on very different scales (logits near ±200, ±1 and ±0.01)"))
    return cases


@_torch_check
def check_response_log_probs(fn: Callable[..., Any], thorough: bool = False) -> None:
    """response_log_probs(logits [..., T, V], tokens [..., T]) -> [..., T]."""
    __tracebackhide__ = True
    run_check("response_log_probs", fn, ref.response_log_probs, _logprob_cases(thorough), rtol=1e-4, atol=1e-4,
              thorough=thorough, mistakes=[
                  Mistake("you returned probabilities, not log-probabilities.",
                          lambda lg, tok: ref.response_log_probs(lg, tok).exp()),
                  Mistake("you gathered the raw logits; normalise first with log_softmax over the vocabulary axis.",
                          lambda lg, tok: lg.gather(-1, tok.unsqueeze(-1)).squeeze(-1)),
                  Mistake("the softmax ran over the positions axis; the vocabulary is the last axis (dim=-1).",
                          lambda lg, tok: lg.log_softmax(-2).gather(-1, tok.unsqueeze(-1)).squeeze(-1)),
                  Mistake("log(softmax(...)) underflows to -inf for large logits: use log_softmax.",
                          lambda lg, tok: torch.log(lg.softmax(-1)).gather(-1, tok.unsqueeze(-1)).squeeze(-1)),
                  Mistake("you subtracted one maximum over the whole tensor; each distribution needs its own "
                          "(`logits.max(dim=-1, keepdim=True)`), or use log_softmax(dim=-1).",
                          lambda lg, tok: _global_shift_log_softmax(lg).gather(-1, tok.unsqueeze(-1)).squeeze(-1)),
              ])


def _global_shift_log_softmax(x: torch.Tensor) -> torch.Tensor:
    x = x - x.max()
    return x - torch.log(torch.exp(x).sum(-1, keepdim=True))


# --------------------------------------------------------------------------- losses with gradients

class _Outcome:
    """A loss value and the gradients it sends to each tensor input (zeros where none flows)."""

    def __init__(self, value: Any = None, grads: tuple = (), problem: str | None = None):
        self.value, self.grads, self.problem = value, grads, problem


def _with_grads(fn: Callable[..., Any]) -> Callable[..., _Outcome]:
    """Call `fn` on fresh leaf copies of the float tensor arguments, then backpropagate its scalar output."""

    def wrapped(*args: Any) -> _Outcome:
        leaves = [a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point()
                  else a for a in args]
        out = fn(*leaves)
        if not isinstance(out, torch.Tensor):
            return _Outcome(problem=f"expected a torch tensor (so that .backward() can reach the model), got "
                                    f"{describe(out)}. Don't call .item(), .numpy() or float() on the loss.")
        if out.numel() != 1:
            return _Outcome(problem=f"expected a single number (a scalar tensor), got shape {tuple(out.shape)}: "
                                    "average over the batch with .mean().")
        tracked = [x for x in leaves if isinstance(x, torch.Tensor) and x.requires_grad]
        if not out.requires_grad:
            return _Outcome(problem="your loss carries no gradient: it was computed outside autograd "
                                    "(a .detach(), .item(), numpy or torch.no_grad() somewhere). Keep it a torch "
                                    "computation on the inputs.")
        grads = torch.autograd.grad(out.reshape(()), tracked, allow_unused=True)
        grads = tuple(torch.zeros_like(x) if g is None else g for x, g in zip(tracked, grads))
        return _Outcome(out.detach().reshape(()), grads)

    return wrapped


def _compare_outcome(names: tuple[str, ...], rtol: float, atol: float, grad_hints: dict[int, str] | None = None):
    def cmp(got: _Outcome, exp: _Outcome, case: Case) -> str | None:
        if got.problem:
            return got.problem
        problem = compare(got.value, exp.value, rtol=rtol, atol=atol, what="loss value")
        if problem:
            return problem
        for i, (g, e) in enumerate(zip(got.grads, exp.grads)):
            problem = compare(g, e, rtol=rtol, atol=atol, what=f"gradient of the loss with respect to {names[i]}")
            if problem:
                return problem + (f"\n  {grad_hints[i]}" if grad_hints and i in grad_hints else "")
        return None

    return cmp


def _bt_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 14)
    cases = [Case((_t([2.0, 0.5, -1.0]), _t([1.0, 0.5, 1.0])), "three pairs, one of them tied"),
             Case((_t(rng.normal(size=16)), _t(rng.normal(size=16))), "16 random pairs")]
    if thorough:
        cases += [Case((_t([0.0]), _t([0.0])), "one tied pair (the loss is log 2)"),
                  Case((_t([50.0, -60.0, 200.0]), _t([-50.0, 40.0, -200.0])),
                       "huge reward gaps in both directions (log(sigmoid(x)) underflows when computed naively)"),
                  Case((_t(rng.normal(size=64) * 3, torch.float64), _t(rng.normal(size=64) * 3, torch.float64)),
                       "float64 rewards"),
                  Case((_t(rng.normal(size=5) + 10), _t(rng.normal(size=5) + 10)), "rewards offset by +10"),
                  Case((_t(rng.normal(size=200)), _t(rng.normal(size=200))), "200 pairs")]
    return cases


def _bt_sigmoid(rc: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
    return -torch.sigmoid(rc - rr).mean()


@_torch_check
def check_bradley_terry_loss(fn: Callable[..., Any], thorough: bool = False) -> None:
    """bradley_terry_loss(r_chosen [N], r_rejected [N]) -> scalar tensor (mean negative log-likelihood)."""
    __tracebackhide__ = True
    run_check("bradley_terry_loss", _with_grads(fn), _with_grads(ref.bradley_terry_loss), _bt_cases(thorough),
              compare_fn=_compare_outcome(("r_chosen", "r_rejected"), 1e-5, 1e-6), thorough=thorough, mistakes=[
                  Mistake("the sign is flipped: the loss should be *small* when the chosen reward is larger, "
                          "i.e. -log sigmoid(r_chosen - r_rejected).",
                          _with_grads(lambda rc, rr: -F.logsigmoid(rr - rc).mean())),
                  Mistake("you used sigmoid without the log; the Bradley-Terry loss is a negative *log*-likelihood.",
                          _with_grads(_bt_sigmoid)),
                  Mistake("you summed over pairs; take the mean so the loss does not grow with the batch size.",
                          _with_grads(lambda rc, rr: -F.logsigmoid(rc - rr).sum())),
                  Mistake("torch.log(torch.sigmoid(x)) is -inf for very negative x: use F.logsigmoid(x) "
                          "(or -F.softplus(-x)).",
                          _with_grads(lambda rc, rr: -torch.log(torch.sigmoid(rc - rr)).mean())),
              ])


# --------------------------------------------------------------------------- KL

def _kl_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 15)

    def pair(shape: tuple[int, ...], scale: float = 1.0, dtype=torch.float32) -> tuple:
        return _t(rng.normal(size=shape) * scale, dtype), _t(rng.normal(size=shape) * scale, dtype)

    cases = [Case((_t([0.0, 0.0]), _t([0.0, 2.0])), "two 2-word distributions (uniform vs skewed)"),
             Case(pair((3, 5)), "a batch of 3 distributions over 5 words"),
             Case(pair((2, 4, 7)), "[batch 2, positions 4, vocabulary 7]")]
    if thorough:
        same = _t(rng.normal(size=(4, 6)))
        cases += [Case((same, same.clone()), "identical distributions (KL must be 0)"),
                  Case((same, same + 3.0), "the same distributions with shifted logits (KL must be 0)"),
                  Case(pair((3, 8), 200.0), "large logits: nearly one-hot distributions"),
                  Case(pair((2, 3, 5), 1.0, torch.float64), "float64 logits"),
                  Case((_t([[8.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), _t([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0]])),
                       "a confident p against a uniform q, and the reverse (KL is not symmetric)"),
                  Case(pair((5, 6, 11), 2.0), "[5, 6, 11] with logits of scale 2"),
                  Case(tuple(x * torch.tensor([[300.0], [1.0], [0.01]]) for x in pair((3, 6))),
                       "rows on very different scales (logits near ±300, ±1 and ±0.01)")]
    return cases


@_torch_check
def check_per_token_kl(fn: Callable[..., Any], thorough: bool = False) -> None:
    """per_token_kl(logits_p [..., V], logits_q [..., V]) -> KL(p || q) [...]."""
    __tracebackhide__ = True
    run_check("per_token_kl", fn, ref.per_token_kl, _kl_cases(thorough), rtol=1e-4, atol=1e-5, thorough=thorough,
              mistakes=[
                  Mistake("the arguments are swapped: you computed KL(q || p). KL(p || q) averages log(p/q) "
                          "under p, the *first* argument (the policy being trained).",
                          lambda p, q: ref.per_token_kl(q, p)),
                  Mistake("you used the raw logits as log-probabilities; apply log_softmax to both first.",
                          lambda p, q: (p.softmax(-1) * (p - q)).sum(-1)),
                  Mistake("you summed over the wrong axis: the vocabulary is the last axis.",
                          lambda p, q: (p.softmax(0) * (p.log_softmax(0) - q.log_softmax(0))).sum(0)),
                  Mistake("log(softmax(...)) gives -inf * 0 = nan for near-one-hot distributions: use log_softmax.",
                          lambda p, q: (p.softmax(-1) * (torch.log(p.softmax(-1)) - torch.log(q.softmax(-1)))).sum(-1)),
                  Mistake("you subtracted one maximum over the whole tensor; each distribution needs its own "
                          "(`max(dim=-1, keepdim=True)`), or use log_softmax(dim=-1).",
                          lambda p, q: (_global_shift_log_softmax(p).exp() * (_global_shift_log_softmax(p)
                                                                              - _global_shift_log_softmax(q))).sum(-1)),
              ])


def _kl_reward_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 16)

    def batch(b: int, beta: float) -> tuple:
        return (_t(rng.normal(size=b)), _t(-np.abs(rng.normal(size=b)) * 5), _t(-np.abs(rng.normal(size=b)) * 5),
                beta)

    cases = [Case((_t([1.0, 2.0]), _t([-1.0, -3.0]), _t([-2.0, -2.0]), 0.5), "two responses, beta 0.5"),
             Case(batch(8, 0.1), "8 responses, beta 0.1")]
    if thorough:
        cases += [Case(batch(5, 0.0), "beta = 0 (no penalty)"),
                  Case(batch(16, 2.0), "beta = 2"),
                  Case(batch(1, 0.3), "a single response"),
                  Case((_t(rng.normal(size=6), torch.float64), _t(-rng.random(6) * 4, torch.float64),
                        _t(-rng.random(6) * 4, torch.float64), 0.05), "float64 inputs")]
    return cases


@_torch_check
def check_kl_penalised_reward(fn: Callable[..., Any], thorough: bool = False) -> None:
    """kl_penalised_reward(reward, logp_policy, logp_ref, beta) -> [B]."""
    __tracebackhide__ = True
    run_check("kl_penalised_reward", fn, ref.kl_penalised_reward, _kl_reward_cases(thorough), rtol=1e-5, atol=1e-6,
              thorough=thorough, mistakes=[
                  Mistake("the penalty has the wrong sign, or the log-ratio is upside down: the sample estimate of "
                          "KL(policy || reference) is log pi(y) - log pi_ref(y), policy first, and drifting from "
                          "the reference should *cost* reward, so subtract beta times it.",
                          lambda r, lp, lr, b: r - b * (lr - lp)),
                  Mistake("you subtracted one batch-average penalty from every response; the penalty is per "
                          "response: beta * (logp_policy[i] - logp_ref[i]).",
                          lambda r, lp, lr, b: r - b * (lp - lr).mean()),
                  Mistake("beta is missing: scale the penalty by beta.", lambda r, lp, lr, b: r - (lp - lr)),
              ])


def _reinforce_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 17)

    def batch(b: int) -> tuple:
        return _t(-np.abs(rng.normal(size=b)) * 4), _t(rng.normal(size=b) * 2)

    lp, r = batch(6)
    cases = [Case((_t([-1.0, -2.0, -0.5]), _t([1.0, 0.0, 2.0]), 1.0), "three responses, baseline 1.0"),
             Case((lp, r, float(r.mean())), "6 responses, baseline = their mean reward"),
             Case((lp, r, r.mean()), "the baseline as a 0-d tensor (the prompt allows it)"),
             Case((lp, r, _t(rng.normal(size=6))), "a per-response baseline tensor [B] (the prompt allows it)")]
    if thorough:
        lp, r = batch(10)
        cases += [Case((lp, r, 0.0), "baseline 0 (plain REINFORCE)"),
                  Case((lp, r, r.mean()), "the baseline as a 0-d tensor (the batch mean)"),
                  Case((lp, r, _t(rng.normal(size=10))), "a per-response baseline tensor [B]"),
                  Case((*batch(1), -2.0), "a single response"),
                  Case((_t(-rng.random(32) * 8, torch.float64), _t(rng.normal(size=32) * 5 + 20, torch.float64), 20.0),
                       "float64, rewards around 20")]
    return cases


@_torch_check
def check_reinforce_with_baseline(fn: Callable[..., Any], thorough: bool = False) -> None:
    """reinforce_with_baseline(logp [B], rewards [B], baseline) -> scalar loss."""
    __tracebackhide__ = True
    names = ("logp", "rewards", "baseline")
    run_check("reinforce_with_baseline", _with_grads(fn), _with_grads(ref.reinforce_with_baseline),
              _reinforce_cases(thorough), compare_fn=_compare_outcome(names, 1e-5, 1e-6, {
                  1: "No gradient should flow into the rewards: the advantage is a constant weight. "
                     "Use (rewards - baseline).detach().",
                  2: "No gradient should flow into the baseline: use (rewards - baseline).detach()."}),
              thorough=thorough, mistakes=[
                  Mistake("the baseline is missing: weight log pi by (rewards - baseline), not by the raw rewards.",
                          _with_grads(lambda lp, r, b: -(r.detach() * lp).mean())),
                  Mistake("the sign is flipped: an optimizer *minimises* the loss, so the loss is "
                          "-mean(advantage * logp).",
                          _with_grads(lambda lp, r, b: ((r - b).detach() * lp).mean())),
                  Mistake("you added the baseline instead of subtracting it.",
                          _with_grads(lambda lp, r, b: -((r + b).detach() * lp).mean())),
                  Mistake("you summed over the batch; take the mean.",
                          _with_grads(lambda lp, r, b: -((r - b).detach() * lp).sum())),
              ])


# --------------------------------------------------------------------------- AI feedback

def _count(tokens: set[int]) -> Callable[[np.ndarray], float]:
    return lambda r: float(np.isin(np.asarray(r), list(tokens)).sum())


def _distinct(r: np.ndarray) -> float:
    return float(len(np.unique(np.asarray(r))))


def _constitution_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 18)
    helpful = ref.Principle("Mention useful words (0, 1, 2).", 1.0, _count({0, 1, 2}))
    polite = ref.Principle("Never use word 5.", 2.0, lambda r: -_count({5})(r))
    varied = ref.Principle("Do not repeat yourself.", 0.5, _distinct)

    def responses(n: int, t: int, v: int = 6) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(0, v, size=(n, t)), rng.integers(0, v, size=(n, t))

    a = np.array([[0, 1, 3], [4, 4, 4], [0, 5, 1]])
    b = np.array([[3, 3, 3], [4, 4, 4], [0, 1, 3]])
    cases = [Case((a, b, [helpful]), "one principle; the middle pair is identical (a tie)"),
             Case((*responses(8, 5), [helpful, polite]), "two principles with weights 1 and 2")]
    if thorough:
        cases += [Case((*responses(20, 6), [helpful, polite, varied]), "three weighted principles"),
                  Case((*responses(10, 4), [polite]), "a principle with weight 2 that only penalises"),
                  Case((*responses(12, 3, 3), [helpful, varied]), "many ties (3 words, length 3)"),
                  Case((np.array([[5, 5, 0, 0]]), np.array([[1, 2, 3, 4]]), [helpful, polite]),
                       "helpfulness and politeness disagree; the weights decide"),
                  Case((*responses(6, 5), []), "an empty constitution (every pair is a tie)"),
                  Case((np.array([[0, 0, 0, 2], [0, 2, 2, 2]]), np.array([[1, 2, 2, 2], [2, 2, 2, 2]]),
                        [ref.Principle("Tip A.", 0.1, _count({0})), ref.Principle("Tip B.", 0.3, _count({1}))]),
                       "totals 0.1*3 and 0.3*1: equal on paper, 0.30000000000000004 vs 0.3 in floats (a tie)"),
                  Case((np.array([[0, 3], [3, 3], [0, 0]]), np.array([[3, 3], [0, 3], [3, 0]]),
                        [ref.Principle("A tiny preference for word 0.", 5e-9, _count({0}))]),
                       "totals 5e-9 apart: more than 1e-9, so not a tie (np.isclose's default tolerance is too loose)")]
    return cases


@_torch_check
def check_constitutional_ai_labels(fn: Callable[..., Any], thorough: bool = False) -> None:
    """constitutional_ai_labels(responses_a [N, T], responses_b [N, T], constitution) -> [N] of 1.0 / 0.0 / 0.5."""
    __tracebackhide__ = True

    def unweighted(a, b, c):
        return ref.constitutional_ai_labels(a, b, [ref.Principle(p.text, 1.0, p.score) for p in c])

    run_check("constitutional_ai_labels", fn, ref.constitutional_ai_labels, _constitution_cases(thorough),
              rtol=0, atol=1e-12, thorough=thorough, mistakes=[
                  Mistake("you tested the totals for exact equality; floating-point sums that are equal on paper can "
                          "differ in the last bit (0.1 * 3 != 0.3). Call it a tie when they are within 1e-9.",
                          lambda a, b, c: _exact_tie_labels(a, b, c)),
                  Mistake("the labels are reversed: 1.0 means the judge prefers response a.",
                          lambda a, b, c: 1.0 - ref.constitutional_ai_labels(a, b, c)),
                  Mistake("you ignored the principles' weights: total = sum(weight * score).", unweighted),
                  Mistake("a tie should be labelled 0.5, not 0.",
                          lambda a, b, c: np.where(ref.constitutional_ai_labels(a, b, c) == 0.5, 0.0,
                                                   ref.constitutional_ai_labels(a, b, c))),
                  Mistake("only the first principle counted; sum over every principle in the constitution.",
                          lambda a, b, c: ref.constitutional_ai_labels(a, b, c[:1])),
              ])


def _exact_tie_labels(a: np.ndarray, b: np.ndarray, constitution: Any) -> np.ndarray:
    totals = [(sum(p.weight * p.score(x) for p in constitution), sum(p.weight * p.score(y) for p in constitution))
              for x, y in zip(a, b)]
    return np.array([0.5 if ta == tb else float(ta > tb) for ta, tb in totals])


# --------------------------------------------------------------------------- concept questions

_DIGESTS = {  # sha256 of "<exercise>:<letter>" (see _core.choice_digest)
    "deceptive_alignment_quiz": "7f618713f7a33f22693e6f4c26e3977059acb0be0ef4bd1f626fcbe098ed3749",
    "alignment_faking_quiz": "d2011ad004a5d1e148204a20417f83fcf5a3992cd301ab46bc2cae736c13ee6a",
    "scalable_oversight_quiz": "086e5c183791badaee0a479494a22a676ea4d8fe099aa67aa11fc0496be8776c",
}


@_torch_check
def check_deceptive_alignment_quiz(answer: Any, thorough: bool = False) -> None:
    """Which scenario is deceptive alignment (rather than reward hacking or a data problem)?"""
    __tracebackhide__ = True
    check_choice("deceptive_alignment_quiz", answer, _DIGESTS["deceptive_alignment_quiz"], "abcd")


@_torch_check
def check_alignment_faking_quiz(answer: Any, thorough: bool = False) -> None:
    """What did the 2024 alignment-faking experiments observe?"""
    __tracebackhide__ = True
    check_choice("alignment_faking_quiz", answer, _DIGESTS["alignment_faking_quiz"], "abcd")


@_torch_check
def check_scalable_oversight_quiz(answer: Any, thorough: bool = False) -> None:
    """What premise does debate, as a scalable-oversight method, rest on?"""
    __tracebackhide__ = True
    check_choice("scalable_oversight_quiz", answer, _DIGESTS["scalable_oversight_quiz"], "abcd")


# sha256 of "weak_to_strong_pgr:<the value to two decimals>"
_PGR_DIGEST = "5eb2f5dea2478fc325c7bbd2811262eba3cf28949cd423316aa8d662cc116b6f"


@_torch_check
def check_weak_to_strong_pgr(answer: Any, thorough: bool = False) -> None:
    """A number between 0 and 1, checked to two decimals (the digest hides the value)."""
    __tracebackhide__ = True
    guard()
    name = "weak_to_strong_pgr"
    if answer is None or answer is Ellipsis:
        raise NotAttempted(f"`{name}` is not attempted yet: set it to a number (a fraction such as 0.5).")
    try:
        value = float(answer)
    except (TypeError, ValueError):
        raise CheckFailure(f"`{name}` should be a number, got {answer!r}") from None
    if not np.isfinite(value):
        raise CheckFailure(f"`{name}` should be a finite number, got {value}")
    if value > 1.5:
        raise CheckFailure(f"`{name}` = {value:g}: give the fraction (between 0 and 1), not a percentage.")
    text = f"{round(value, 2):.2f}"
    if hashlib.sha256(f"{name}:{text}".encode()).hexdigest() != _PGR_DIGEST:
        raise CheckFailure(f"`{name}` = {text} is not right. PGR compares two gaps, both measured from the weak "
                           "supervisor's score: (weak-to-strong - weak) / (strong ceiling - weak).")
    print(f"✓ {name}: correct")
