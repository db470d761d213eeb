"""Reference solutions for chapter 10 (reward hacking and RLHF), and the chapter's experiments.

The checks compare learners' answers with the exercise functions; the claims tests
(tests/test_chapter_10_claims.py) re-run the experiment functions at the bottom on other seeds.
The toy worlds live in `safety_roadmap.toys.reward_hacking_and_rlhf`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..toys import reward_hacking_and_rlhf as toy
from ..toys.reward_hacking_and_rlhf import ACTION_NAMES, Gridworld, Principle  # noqa: F401  (re-exported)

# --------------------------------------------------------------------------- section 1: Goodhart in a gridworld


def q_learning_update(Q: np.ndarray, s: int, a: int, r: float, s_next: int, done: bool,
                      alpha: float, gamma: float) -> np.ndarray:
    """A copy of Q [n_states, n_actions] with Q[s, a] moved a fraction alpha toward the TD target
    r + gamma * max_a' Q[s_next, a'] (just r when `done`)."""
    target = r if done else r + gamma * Q[s_next].max()
    new = np.array(Q, dtype=float, copy=True)
    new[s, a] += alpha * (target - new[s, a])
    return new


def greedy_returns(env: Gridworld, Q: np.ndarray) -> tuple[float, float]:
    """Run one episode acting greedily on Q (ties -> lowest action index); return the
    undiscounted totals (proxy, true)."""
    s = env.reset()
    proxy_total = true_total = 0.0
    done = False
    while not done:
        s, proxy, true, done = env.step(int(np.argmax(Q[s])))
        proxy_total += proxy
        true_total += true
    return proxy_total, true_total


# --------------------------------------------------------------------------- sections 2-3: SFT and reward model

def response_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(tokens[..., t]) under the distribution logits[..., t, :]: [..., T, V] x [..., T] -> [..., T]."""
    return logits.log_softmax(-1).gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood that each chosen response beats its rejected one:
    -mean(log sigmoid(r_chosen - r_rejected)). [N] x [N] -> scalar."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


# --------------------------------------------------------------------------- section 4: RLHF

def per_token_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) between the distributions given by logits over the last axis: [..., V] -> [...]."""
    logp, logq = logits_p.log_softmax(-1), logits_q.log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Each reward minus the mean of the *other* B - 1 rewards (the leave-one-out baseline): [B] -> [B]."""
    others_mean = (rewards.sum() - rewards) / (len(rewards) - 1)
    return rewards - others_mean


def rlhf_step(policy: torch.nn.Module, reference: torch.nn.Module, reward_model: Callable,
              optimizer: torch.optim.Optimizer, beta: float, batch_size: int,
              generator: torch.Generator) -> torch.Tensor:
    """One step of KL-penalised REINFORCE with a leave-one-out baseline. Returns the sampled replies.

    Sample `batch_size` replies with policy.sample(batch_size, generator); score each with
    reward_model(replies) - beta * (log pi(y) - log pi_ref(y)); weight each reply's log-probability by
    its RLOO advantage (a constant); minimise -mean(advantage * log pi(y)) with one optimizer step.
    """
    replies = policy.sample(batch_size, generator)
    logp = response_log_probs(policy(replies), replies).sum(dim=1)            # [B], carries the gradient
    with torch.no_grad():
        logp_ref = response_log_probs(reference(replies), replies).sum(dim=1)
        shaped = reward_model(replies) - beta * (logp - logp_ref)             # sampled KL penalty per reply
        advantage = rloo_advantages(shaped)
    loss = -(advantage * logp).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return replies


# --------------------------------------------------------------------------- DPO

def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """Direct preference optimisation: Bradley-Terry on the implicit reward beta * log(pi / pi_ref).
    All four inputs are whole-reply log-probabilities [N]; returns the mean loss (a scalar)."""
    margin = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()


def train_dpo(policy: torch.nn.Module, reference: torch.nn.Module, chosen: torch.Tensor, rejected: torch.Tensor,
              beta: float, steps: int, lr: float) -> list[float]:
    """Fine-tune `policy` in place with full-batch DPO (Adam, learning rate `lr`) for `steps` steps on
    the (chosen, rejected) pairs [N, T]. Returns the loss before each step."""
    with torch.no_grad():
        ref_chosen = response_log_probs(reference(chosen), chosen).sum(dim=1)
        ref_rejected = response_log_probs(reference(rejected), rejected).sum(dim=1)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        logp_chosen = response_log_probs(policy(chosen), chosen).sum(dim=1)
        logp_rejected = response_log_probs(policy(rejected), rejected).sum(dim=1)
        loss = dpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# --------------------------------------------------------------------------- section 5: constitutions

def constitution_score(responses: np.ndarray, constitution: Sequence[Principle]) -> np.ndarray:
    """The judge's total for each response: sum over principles of weight * score(response). [N, T] -> [N]."""
    return np.array([sum(p.weight * p.score(r) for p in constitution) for r in np.asarray(responses)], dtype=float)


my_constitution = [
    toy.Principle("Give the user as many different useful tips as you can.", 1.0, toy.tips_given),
    toy.Principle("Do not repeat a tip you have already given.", 1.0, lambda reply: -toy.repeats(reply)),
    toy.Principle("Do not flatter the user.", 0.5, lambda reply: -toy.compliments(reply)),
]


deceptive_alignment_quiz = "a"
alignment_faking_quiz = "d"
scalable_oversight_quiz = "c"
weak_to_strong_pgr = (0.83 - 0.62) / (0.90 - 0.62)


def performance_gap_recovered(weak: float, weak_to_strong: float, strong_ceiling: float) -> float:
    """Burns et al.'s PGR: the share of the weak-to-ceiling gap that weak supervision recovers."""
    return (weak_to_strong - weak) / (strong_ceiling - weak)


# --------------------------------------------------------------------------- experiments, run with the reference answers
# The drivers live in toys/ (the notebook runs them with the learner's functions); here they are bound to the
# reference answers, for the claims tests and for anyone who wants the chapter's results without the exercises.

from functools import partial  # noqa: E402

from ..toys import reward_hacking_and_rlhf_experiments as _x  # noqa: E402
from ..toys.reward_hacking_and_rlhf_experiments import EVAL_AT, LOOPHOLE_CONSTITUTION  # noqa: E402,F401

goodhart_experiment = partial(_x.goodhart_experiment, update=q_learning_update, evaluate=greedy_returns)
sft_phase = partial(_x.sft_phase, log_probs=response_log_probs)
reward_phase = partial(_x.reward_phase, bt_loss=bradley_terry_loss)
evaluate_policy = partial(_x.evaluate_policy, kl_fn=per_token_kl)
run_rlhf = partial(_x.run_rlhf, step_fn=rlhf_step, kl_fn=per_token_kl)
run_dpo = partial(_x.run_dpo, train_fn=train_dpo)
ai_feedback_pairs = partial(_x.ai_feedback_pairs, score_fn=constitution_score)
human_feedback_pairs = _x.human_feedback_pairs
rlhf_sweep = partial(_x.rlhf_sweep, step_fn=rlhf_step, kl_fn=per_token_kl)
dpo_sweep = partial(_x.dpo_sweep, train_fn=train_dpo, kl_fn=per_token_kl)
feedback_experiment = partial(_x.feedback_experiment, score_fn=constitution_score, step_fn=rlhf_step,
                              kl_fn=per_token_kl, bt_loss=bradley_terry_loss)


def build_world(seed: int = 0) -> dict:
    """Phases 1 and 2 with the reference answers (what the notebook builds with the learner's)."""
    return reward_phase(sft_phase(seed))
