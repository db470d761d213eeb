"""Checks for chapter 10_reward_hacking_and_rlhf. Each `check_<exercise>(obj, thorough=False)`."""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..reference import reward_hacking_and_rlhf as ref
from ._core import (Case, CheckFailure, Mistake, NotAttempted, call, check_choice, compare, describe, guard, read_only,
                    rng_for, run_check, trust)
from ._torch import torch_check as _torch_check

trust(torch)
trust(torch.nn.functional)

__all__ = ["check_q_learning_update", "check_greedy_returns", "check_response_log_probs",
           "check_bradley_terry_loss", "check_per_token_kl", "check_rloo_advantages", "check_rlhf_step",
           "check_dpo_loss", "check_train_dpo", "check_constitution_score", "check_my_constitution",
           "check_deceptive_alignment_quiz", "check_alignment_faking_quiz", "check_scalable_oversight_quiz",
           "check_weak_to_strong_pgr"]


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


# --------------------------------------------------------------------------- RLOO

def _rloo_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 16)
    cases = [Case((_t([1.0, 2.0, 6.0]),), "three rewards: 1 - mean(2, 6) = -3"),
             Case((_t(rng.normal(size=8)),), "8 random rewards")]
    if thorough:
        cases += [Case((_t([3.0, -1.0]),), "two rewards (each baseline is the other reward)"),
                  Case((_t(np.full(5, 4.0)),), "equal rewards: every advantage is 0"),
                  Case((_t(rng.normal(size=64) * 10 + 100),), "64 large rewards around 100"),
                  Case((_t(rng.normal(size=7), torch.float64),), "float64 rewards"),
                  Case((_t(rng.normal(size=3)),), "three random rewards")]
    return cases


@_torch_check
def check_rloo_advantages(fn: Callable[..., Any], thorough: bool = False) -> None:
    """rloo_advantages(rewards [B]) -> [B]: each reward minus the mean of the other B - 1."""
    __tracebackhide__ = True
    run_check("rloo_advantages", fn, ref.rloo_advantages, _rloo_cases(thorough), rtol=1e-5, atol=1e-5,
              thorough=thorough, mistakes=[
                  Mistake("the baseline includes the reply's own reward (the plain batch mean); leave it out: "
                          "the mean of the *other* B - 1 rewards.", lambda r: r - r.mean()),
                  Mistake("you divided the others' sum by B; there are only B - 1 others.",
                          lambda r: r - (r.sum() - r) / len(r)),
                  Mistake("the baseline is added, not subtracted.", lambda r: r + (r.sum() - r) / (len(r) - 1)),
                  Mistake("you returned the baselines themselves; the advantage is reward - baseline.",
                          lambda r: (r.sum() - r) / (len(r) - 1)),
              ])


# --------------------------------------------------------------------------- one RLHF step

class _ToyReward(torch.nn.Module):
    """A reward model for the checks: a fixed value per word, summed (no parameters to train)."""

    def __init__(self, values: np.ndarray):
        super().__init__()
        self.register_buffer("values", torch.tensor(values, dtype=torch.float32))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.values[tokens].sum(dim=1)


def _step_cases(thorough: bool) -> list[dict]:
    rng = rng_for(thorough, 17)
    base = [dict(batch=4, beta=0.1, opt="sgd", lr=0.5, steps=1, label="batch 4, beta 0.1, SGD, one step"),
            dict(batch=3, beta=0.0, opt="sgd", lr=0.5, steps=1, label="batch 3, beta 0 (no KL penalty), SGD, one step")]
    if thorough:
        base += [dict(batch=2, beta=1.0, opt="sgd", lr=0.3, steps=1, label="batch 2, beta 1, SGD, one step"),
                 dict(batch=5, beta=0.5, opt="adam", lr=0.05, steps=2, label="batch 5, beta 0.5, Adam, two steps"),
                 dict(batch=8, beta=2.0, opt="sgd", lr=0.2, steps=1, label="batch 8, beta 2, SGD, one step"),
                 dict(batch=6, beta=0.3, opt="sgd", lr=0.4, steps=3, label="batch 6, beta 0.3, SGD, three steps")]
    for i, c in enumerate(base):
        c.update(model_seed=int(rng.integers(1 << 30)), gen_seed=int(rng.integers(1 << 30)),
                 values=rng.normal(size=ref.toy.V) * (1 + i))
    return base


def _step_world(case: dict) -> tuple:
    torch.manual_seed(case["model_seed"])
    policy, reference = ref.toy.TinyLM(d=8), ref.toy.TinyLM(d=8).requires_grad_(False)
    params = list(policy.parameters())
    optimizer = (torch.optim.SGD(params, lr=case["lr"]) if case["opt"] == "sgd"
                 else torch.optim.Adam(params, lr=case["lr"]))
    for p in params:  # stale gradients from an earlier step: the step must clear them
        p.grad = torch.ones_like(p)
    return policy, reference, _ToyReward(case["values"]), optimizer, torch.Generator().manual_seed(case["gen_seed"])


def _run_step(fn: Callable[..., Any], case: dict, name: str, where: str) -> dict:
    policy, reference, reward, optimizer, gen = _step_world(case)
    ref_before = [p.clone() for p in reference.parameters()]
    replies = []
    for _ in range(case["steps"]):
        replies.append(call(fn, name, (policy, reference, reward, optimizer, case["beta"], case["batch"], gen), None,
                            where))
    return dict(replies=replies, params=[p.detach().clone() for p in policy.parameters()],
                next_draw=torch.rand(1, generator=gen).item(),
                reference_moved=any(not torch.equal(a, b) for a, b in zip(ref_before, reference.parameters())))


def _step_problem(got: dict, exp: dict, case: dict) -> str | None:
    for r in got["replies"]:
        if not isinstance(r, torch.Tensor):
            return f"return the sampled replies (a tensor [batch_size, LENGTH]), got {describe(r)}"
    if got["reference_moved"]:
        return "the reference model's weights changed: only the policy is trained; the reference stays frozen."
    for g, e in zip(got["replies"], exp["replies"]):
        if tuple(g.shape) != tuple(e.shape) or not torch.equal(g.long(), e.long()):
            return ("the replies differ from policy.sample(batch_size, generator): sample exactly once per step, "
                    "with the generator you were given, before computing anything else.")
    if abs(got["next_draw"] - exp["next_draw"]) > 0:
        return "the generator was advanced differently: draw from it only through one policy.sample call per step."
    for i, (g, e) in enumerate(zip(got["params"], exp["params"])):
        problem = compare(g, e, rtol=1e-3, atol=3e-4, what=f"policy parameter {i} after the step")
        if problem:
            return problem
    return None


def _step_variant(advantage: Callable | None = None, detach: bool = True, sign: float = 1.0,
                  reduce: str = "mean", zero_grad: bool = True, ref_penalty: bool = True) -> Callable[..., Any]:
    """The reference step with one thing changed (the likely mistakes)."""

    def step(policy, reference, reward_model, optimizer, beta, batch_size, generator):
        replies = policy.sample(batch_size, generator)
        logp = ref.response_log_probs(policy(replies), replies).sum(dim=1)
        with torch.no_grad():
            logp_ref = ref.response_log_probs(reference(replies), replies).sum(dim=1)
            reward = reward_model(replies)
        ratio = (logp if not detach else logp.detach()) - (logp_ref if ref_penalty else 0.0)
        shaped = reward - sign * beta * ratio
        adv = (advantage or ref.rloo_advantages)(shaped)
        if detach:
            adv = adv.detach()
        loss = -(adv * logp)
        loss = loss.mean() if reduce == "mean" else loss.sum()
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return replies

    return step


@_torch_check
def check_rlhf_step(fn: Callable[..., Any], thorough: bool = False) -> None:
    """rlhf_step(policy, reference, reward_model, optimizer, beta, batch_size, generator) -> replies [B, LENGTH].

    Runs the learner's step and the reference's on identical models, optimisers and generators, then
    compares the replies, the generator's state and the policy's weights afterwards."""
    __tracebackhide__ = True
    guard()
    name = "rlhf_step"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    mistakes = [
        Mistake("the baseline is the plain batch mean (it includes each reply's own reward); use the leave-one-out "
                "mean, e.g. your rloo_advantages.", _step_variant(advantage=lambda r: r - r.mean())),
        Mistake("the KL-penalised reward depends on the policy through log pi(y): detach it (or compute it under "
                "torch.no_grad()), so the reward is a constant weight and only log pi(y) carries the gradient.",
                _step_variant(detach=False)),
        Mistake("the KL penalty has the wrong sign: drifting from the reference should *cost* reward, "
                "reward - beta * (log pi - log pi_ref).", _step_variant(sign=-1.0)),
        Mistake("the penalty uses log pi(y) alone; it is the log-ratio log pi(y) - log pi_ref(y).",
                _step_variant(ref_penalty=False)),
        Mistake("you summed the surrogate loss over the batch; take the mean.", _step_variant(reduce="sum")),
        Mistake("the optimiser's old gradients were not cleared: call optimizer.zero_grad() before backward().",
                _step_variant(zero_grad=False)),
        Mistake("the baseline is missing: weight log pi(y) by an advantage, not by the raw reward.",
                _step_variant(advantage=lambda r: r)),
    ]
    _run_training_check(name, fn, ref.rlhf_step, _step_cases(thorough), _run_step, _step_problem, mistakes, thorough)


def _run_training_check(name: str, fn: Callable[..., Any], reference: Callable[..., Any], cases: list[dict],
                        run: Callable[..., dict], problem_of: Callable[[dict, dict, dict], str | None],
                        mistakes: list[Mistake], thorough: bool) -> None:
    """Run the learner's and the reference's training code on identical fresh models per case; on a
    mismatch, name a known mistake only if it reproduces the learner's result and differs from the right one."""
    __tracebackhide__ = True
    for i, case in enumerate(cases, 1):
        where = f"case {i} of {len(cases)} ({case['label']})"
        expected = run(reference, case, "reference", where)
        got = run(fn, case, name, where)
        problem = problem_of(got, expected, case)
        if problem:
            cause = ""
            for m in mistakes:
                try:
                    wrong = run(m.fn, case, "mistake", where)
                except Exception:
                    continue
                if problem_of(got, wrong, case) is None and problem_of(expected, wrong, case) is not None:
                    cause = f"\n  Likely cause: {m.hint}"
                    break
            raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}{cause}")
    print(f"✓ {name}: all {len(cases)} {'thorough' if thorough else 'quick'} checks passed")


# --------------------------------------------------------------------------- DPO

def _dpo_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 19)

    def batch(n: int, beta: float, scale: float = 3.0) -> tuple:
        return (*(_t(-np.abs(rng.normal(size=n)) * scale - 1) for _ in range(4)), beta)

    cases = [Case((_t([-3.0, -5.0]), _t([-4.0, -4.0]), _t([-3.5, -5.0]), _t([-3.5, -4.5]), 0.5),
                  "two pairs, beta 0.5"),
             Case(batch(8, 0.1), "8 pairs, beta 0.1")]
    if thorough:
        cases += [Case(batch(5, 1.0), "beta 1"),
                  Case(batch(6, 3.0, 60.0), "beta 3 and large log-ratios (log sigmoid must stay finite)"),
                  Case(batch(1, 0.2), "a single pair"),
                  Case(batch(16, 0.05), "16 pairs, beta 0.05"),
                  Case((*(_t(-np.abs(rng.normal(size=4)) * 2, torch.float64) for _ in range(4)), 0.7),
                       "float64 inputs")]
    return cases


@_torch_check
def check_dpo_loss(fn: Callable[..., Any], thorough: bool = False) -> None:
    """dpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta) -> scalar, and its gradients."""
    __tracebackhide__ = True
    names = ("logp_chosen", "logp_rejected", "ref_chosen", "ref_rejected")

    def margin(lc, lr_, rc, rr):
        return (lc - rc) - (lr_ - rr)

    run_check("dpo_loss", _with_grads(fn), _with_grads(ref.dpo_loss), _dpo_cases(thorough),
              compare_fn=_compare_outcome(names, 1e-4, 1e-5), thorough=thorough, mistakes=[
                  Mistake("the reference model is missing: the implicit reward is beta * (log pi - log pi_ref), "
                          "so subtract the reference log-probabilities.",
                          _with_grads(lambda lc, lr_, rc, rr, b: -F.logsigmoid(b * (lc - lr_)).mean())),
                  Mistake("the log-ratios are upside down (reference minus policy).",
                          _with_grads(lambda lc, lr_, rc, rr, b: -F.logsigmoid(-b * margin(lc, lr_, rc, rr)).mean())),
                  Mistake("beta is missing: it scales the margin inside the log-sigmoid.",
                          _with_grads(lambda lc, lr_, rc, rr, b: -F.logsigmoid(margin(lc, lr_, rc, rr)).mean())),
                  Mistake("beta multiplies the loss, not the margin inside the log-sigmoid.",
                          _with_grads(lambda lc, lr_, rc, rr, b: -b * F.logsigmoid(margin(lc, lr_, rc, rr)).mean())),
                  Mistake("you summed over pairs; take the mean.",
                          _with_grads(lambda lc, lr_, rc, rr, b: -F.logsigmoid(b * margin(lc, lr_, rc, rr)).sum())),
                  Mistake("torch.log(torch.sigmoid(x)) is -inf for very negative x: use F.logsigmoid.",
                          _with_grads(lambda lc, lr_, rc, rr, b: -torch.log(torch.sigmoid(
                              b * margin(lc, lr_, rc, rr))).mean())),
              ])


def _dpo_train_cases(thorough: bool) -> list[dict]:
    rng = rng_for(thorough, 20)
    base = [dict(n=6, beta=0.5, steps=3, lr=0.05, label="6 pairs, beta 0.5, 3 steps"),
            dict(n=4, beta=0.1, steps=2, lr=0.1, label="4 pairs, beta 0.1, 2 steps")]
    if thorough:
        base += [dict(n=8, beta=1.0, steps=5, lr=0.02, label="8 pairs, beta 1, 5 steps"),
                 dict(n=3, beta=2.0, steps=1, lr=0.03, label="3 pairs, beta 2, one step"),
                 dict(n=5, beta=0.3, steps=4, lr=0.2, label="5 pairs, beta 0.3, lr 0.2")]
    for c in base:
        c.update(seed=int(rng.integers(1 << 30)),
                 chosen=torch.as_tensor(rng.integers(0, ref.toy.V, size=(c["n"], ref.toy.LENGTH))),
                 rejected=torch.as_tensor(rng.integers(0, ref.toy.V, size=(c["n"], ref.toy.LENGTH))))
    return base


def _run_dpo(fn: Callable[..., Any], case: dict, name: str, where: str) -> dict:
    torch.manual_seed(case["seed"])
    policy, reference = ref.toy.TinyLM(d=8), ref.toy.TinyLM(d=8).requires_grad_(False)
    ref_before = [p.clone() for p in reference.parameters()]
    chosen, rejected = case["chosen"].clone(), case["rejected"].clone()
    losses = call(fn, name, (policy, reference, chosen, rejected, case["beta"], case["steps"], case["lr"]), None,
                  where)
    return dict(losses=losses, params=[p.detach().clone() for p in policy.parameters()],
                reference_moved=any(not torch.equal(a, b) for a, b in zip(ref_before, reference.parameters())),
                inputs_changed=not (torch.equal(chosen, case["chosen"]) and torch.equal(rejected, case["rejected"])))


def _dpo_problem(got: dict, exp: dict, case: dict) -> str | None:
    if got["reference_moved"]:
        return "the reference model's weights changed: DPO trains only the policy."
    if got["inputs_changed"]:
        return "the chosen or rejected replies were changed in place."
    try:
        losses = [float(x) for x in got["losses"]]
    except TypeError:
        return f"return the list of losses (one float per step), got {describe(got['losses'])}"
    if len(losses) != len(exp["losses"]):
        return f"expected {len(exp['losses'])} losses (one per step), got {len(losses)}"
    problem = compare(np.array(losses), np.array(exp["losses"]), rtol=1e-4, atol=1e-5,
                      what="the losses (one per step, before each update)")
    if problem:
        return problem
    for i, (g, e) in enumerate(zip(got["params"], exp["params"])):
        problem = compare(g, e, rtol=1e-3, atol=3e-4, what=f"policy parameter {i} after training")
        if problem:
            return problem
    return None


def _dpo_variant(ref_with_grad_policy: bool = False, per_token: bool = False, fresh_optimizer: bool = False,
                 no_reference: bool = False) -> Callable[..., Any]:
    def train(policy, reference, chosen, rejected, beta, steps, lr):
        def logps(model, tokens):
            lp = ref.response_log_probs(model(tokens), tokens)
            return lp.mean(dim=1) if per_token else lp.sum(dim=1)

        ref_model = policy if ref_with_grad_policy else reference
        with torch.no_grad():
            ref_c, ref_r = logps(ref_model, chosen), logps(ref_model, rejected)
        if no_reference:
            ref_c, ref_r = torch.zeros_like(ref_c), torch.zeros_like(ref_r)
        optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            if fresh_optimizer:
                optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
            loss = ref.dpo_loss(logps(policy, chosen), logps(policy, rejected), ref_c, ref_r, beta)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    return train


@_torch_check
def check_train_dpo(fn: Callable[..., Any], thorough: bool = False) -> None:
    """train_dpo(policy, reference, chosen, rejected, beta, steps, lr) -> losses; the policy is trained in place."""
    __tracebackhide__ = True
    guard()
    name = "train_dpo"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    mistakes = [
        Mistake("whole-reply log-probabilities are sums over positions; you averaged over positions.",
                _dpo_variant(per_token=True)),
        Mistake("the reference log-probabilities came from the policy itself (they must come from `reference`, "
                "computed once, without gradient).", _dpo_variant(ref_with_grad_policy=True)),
        Mistake("the reference model is missing from the loss.", _dpo_variant(no_reference=True)),
        Mistake("a new Adam optimiser was made at every step (its moment estimates restart); make one before "
                "the loop.", _dpo_variant(fresh_optimizer=True)),
    ]
    _run_training_check(name, fn, ref.train_dpo, _dpo_train_cases(thorough), _run_dpo, _dpo_problem, mistakes,
                        thorough)


# --------------------------------------------------------------------------- constitutions

def _count(tokens: set[int]) -> Callable[[np.ndarray], float]:
    return lambda r: float(np.isin(np.asarray(r), list(tokens)).sum())


def _distinct(r: np.ndarray) -> float:
    return float(len(np.unique(np.asarray(r))))


def _score_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 18)
    helpful = ref.Principle("Mention useful words (0, 1, 2).", 1.0, _count({0, 1, 2}))
    polite = ref.Principle("Never use word 5.", 2.0, lambda r: -_count({5})(r))
    varied = ref.Principle("Do not repeat yourself.", 0.5, _distinct)

    def responses(n: int, t: int, v: int = 6) -> np.ndarray:
        return rng.integers(0, v, size=(n, t))

    cases = [Case((np.array([[0, 1, 3], [4, 4, 4], [0, 5, 1]]), [helpful]), "one principle with weight 1"),
             Case((responses(8, 5), [helpful, polite]), "two principles with weights 1 and 2")]
    if thorough:
        cases += [Case((responses(20, 6), [helpful, polite, varied]), "three weighted principles"),
                  Case((responses(10, 4), [polite]), "a principle with weight 2 that only penalises"),
                  Case((responses(6, 5), []), "an empty constitution (every total is 0)"),
                  Case((responses(1, 6, 11), [varied, helpful]), "a single response"),
                  Case((responses(5, 3), [ref.Principle("Tip A.", -0.7, _count({0})), varied]),
                       "a negative weight")]
    return cases


@_torch_check
def check_constitution_score(fn: Callable[..., Any], thorough: bool = False) -> None:
    """constitution_score(responses [N, T], constitution) -> [N] totals."""
    __tracebackhide__ = True
    run_check("constitution_score", fn, ref.constitution_score, _score_cases(thorough), rtol=1e-9, atol=1e-9,
              thorough=thorough, mistakes=[
                  Mistake("you ignored the principles' weights: total = sum(weight * score(response)).",
                          lambda r, c: ref.constitution_score(r, [ref.Principle(p.text, 1.0, p.score) for p in c])),
                  Mistake("only the first principle counted; add up every principle in the constitution.",
                          lambda r, c: ref.constitution_score(r, c[:1])),
                  Mistake("you averaged over principles; the total is a weighted *sum*.",
                          lambda r, c: ref.constitution_score(r, c) / max(len(c), 1)),
              ])


def _judge_prefers(constitution: Any, a: list[int], b: list[int]) -> bool:
    return float(ref.constitution_score(np.array([a]), constitution)[0]) > float(
        ref.constitution_score(np.array([b]), constitution)[0])


_PROBES = [  # (preferred, other, what the comparison tests)
    ([0, 1, 2, 6, 7, 8], [0, 0, 0, 6, 7, 8], "three different tips over one tip said three times"),
    ([0, 1, 2, 3, 4, 5], [0, 0, 1, 1, 2, 2], "six different tips over three tips each said twice"),
    ([0, 1, 6, 7, 8, 6], [0, 1, 9, 9, 8, 6], "no flattery over 'amazing amazing' (same tips)"),
    ([0, 1, 6, 7, 8, 6], [0, 1, 10, 10, 8, 6], "no flattery over 'brilliant brilliant' (same tips)"),
    ([0, 1, 2, 3, 7, 6], [0, 1, 10, 10, 10, 10], "four tips over two tips padded with 'brilliant'"),
    ([0, 1, 2, 6, 7, 8], [0, 1, 6, 7, 8, 6], "three tips over two tips (the rest filler)"),
]


def _constitution_problem(constitution: Any, n_pairs: int, seed: int) -> str | None:
    if not isinstance(constitution, (list, tuple)) or not constitution:
        return f"`my_constitution` should be a non-empty list of Principle(text, weight, score), got {describe(constitution)}"
    for i, p in enumerate(constitution):
        if not (hasattr(p, "text") and hasattr(p, "weight") and callable(getattr(p, "score", None))):
            return f"item {i} of `my_constitution` is not a Principle(text, weight, score): {describe(p)}"
        if not isinstance(p.text, str) or not p.text.strip():
            return f"principle {i} has no text: write the principle the judge is meant to apply."
    for good, bad, what in _PROBES:
        if not _judge_prefers(constitution, good, bad):
            return (f"the judge does not prefer '{ref.toy.decode(good)}' to '{ref.toy.decode(bad)}' ({what}). "
                    "Which of your principles should have decided this pair, and what did its scorer return?")
    rng = np.random.default_rng(seed)
    a, b = (rng.integers(0, ref.toy.V, size=(n_pairs, ref.toy.LENGTH)) for _ in range(2))
    gold_gap = ref.toy.gold_score(a) - ref.toy.gold_score(b)
    judge_gap = ref.constitution_score(a, constitution) - ref.constitution_score(b, constitution)
    decided = np.abs(gold_gap) > 0.5
    agree = float(((judge_gap > 0) == (gold_gap > 0))[decided].mean())
    if agree < 0.9:
        return (f"on {int(decided.sum())} random pairs whose gold scores differ by more than 0.5, the judge agrees with "
                f"the gold ordering only {agree:.0%} of the time (at least 90% expected). Compare its principles "
                "and weights with what the gold score rewards and penalises.")
    return None


@_torch_check
def check_my_constitution(constitution: Any, thorough: bool = False) -> None:
    """my_constitution: a list of Principles whose judge orders replies the way a careful user would."""
    __tracebackhide__ = True
    guard()
    if constitution is None or constitution is Ellipsis:
        raise NotAttempted("`my_constitution` is not attempted yet: write a list of Principle(text, weight, score).")
    problem = _constitution_problem(constitution, 300 if thorough else 100, 21 + int(thorough))
    if problem:
        raise CheckFailure(f"`my_constitution`: {problem}")
    print(f"✓ my_constitution: the judge passes the {'thorough' if thorough else 'quick'} checks")



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
