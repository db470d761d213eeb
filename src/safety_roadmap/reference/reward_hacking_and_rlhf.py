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

# The loophole: the author wanted warmth without flattery, wrote one example of flattery, and the
# judge read the example literally. "brilliant" is warm and never named.
LOOPHOLE_CONSTITUTION = [
    toy.Principle("Give the user as many different useful tips as you can.", 1.0, toy.tips_given),
    toy.Principle("Do not repeat a tip you have already given.", 1.0, lambda reply: -toy.repeats(reply)),
    toy.Principle("Be warm and encouraging to a nervous hiker.", 1.5, toy.compliments),
    toy.Principle("Do not flatter the user (no 'amazing').", 2.0, lambda reply: -toy.says(toy.AMAZING)(reply)),
]


deceptive_alignment_quiz = "a"
alignment_faking_quiz = "d"
scalable_oversight_quiz = "c"
weak_to_strong_pgr = (0.83 - 0.62) / (0.90 - 0.62)


def performance_gap_recovered(weak: float, weak_to_strong: float, strong_ceiling: float) -> float:
    """Burns et al.'s PGR: the share of the weak-to-ceiling gap that weak supervision recovers."""
    return (weak_to_strong - weak) / (strong_ceiling - weak)


# --------------------------------------------------------------------------- experiments (notebook and claims tests)

EVAL_AT = (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000)


def goodhart_experiment(seed: int = 0, n_seeds: int = 5, episodes: int = 1000, eval_at: Sequence[int] = EVAL_AT,
                        epsilons: Sequence[float] = (0.1, 1.0), update: Callable = q_learning_update,
                        evaluate: Callable = greedy_returns) -> dict[float, np.ndarray]:
    """Mean greedy (proxy, true) returns [len(eval_at), 2] over `n_seeds` agents per epsilon."""
    env = Gridworld(toy.LAYOUT)
    out = {}
    for epsilon in epsilons:
        curves = [toy.train_q_learning(env, episodes, epsilon, seed * 1000 + k, eval_at, update, evaluate)[1]
                  for k in range(n_seeds)]
        out[epsilon] = np.mean(curves, axis=0)
    return out


def sft_phase(seed: int = 0, n_demos: int = 1000, sft_steps: int = 150,
              log_probs: Callable = response_log_probs) -> dict:
    """Phase 1: demonstrations and the SFT model. Returns the chapter's `world` dict (RNGs included)."""
    rng = np.random.default_rng(seed)
    demos = toy.write_demonstrations(n_demos, rng)
    sft, sft_losses = toy.train_sft(demos, sft_steps, seed, log_probs=log_probs)
    return dict(seed=seed, demos=demos, sft=sft, sft_losses=sft_losses, rng=rng, gen=torch.Generator().manual_seed(seed))


def reward_phase(world: dict, n_pairs: int = 400, n_test: int = 2000, bt_loss: Callable = bradley_terry_loss) -> dict:
    """Phase 2: SFT reply pairs labelled by the noisy, flattery-loving raters, a reward model fit to
    them, and held-out pairs for measuring agreement with gold. Adds them to `world` and returns it."""
    sft, rng, gen = world["sft"], world["rng"], world["gen"]
    pairs_a, pairs_b = sft.sample(n_pairs, gen), sft.sample(n_pairs, gen)
    a_wins = toy.noisy_preferences(toy.rater_score(pairs_a), toy.rater_score(pairs_b), toy.RATER_NOISE, rng)
    chosen, rejected = toy.order_pairs(pairs_a, pairs_b, a_wins)
    human_rm = toy.train_reward_model(chosen, rejected, bt_loss, seed=world["seed"])
    test_a, test_b = sft.sample(n_test, gen), sft.sample(n_test, gen)
    world.update(chosen=chosen, rejected=rejected, human_rm=human_rm, test_a=test_a, test_b=test_b)
    return world


def build_world(seed: int = 0) -> dict:
    """Phases 1 and 2 with the reference answers (what the notebook builds with the learner's)."""
    return reward_phase(sft_phase(seed))


def evaluate_policy(policy: torch.nn.Module, sft: torch.nn.Module, n: int, seed: int,
                    kl_fn: Callable = per_token_kl) -> dict[str, float]:
    """KL(policy || SFT) estimate, gold score and its components, and per-word rates on n fresh samples."""
    replies = policy.sample(n, torch.Generator().manual_seed(10_000 + seed))
    out = {"kl": toy.sequence_kl(policy, sft, replies, kl_fn), "gold": float(toy.gold_score(replies).mean())}
    out.update({k: float(v.mean()) for k, v in toy.gold_components(replies).items()})
    counts = toy.word_counts(replies)
    out["amazing"], out["brilliant"] = (float(counts[:, w].mean()) for w in (toy.AMAZING, toy.BRILLIANT))
    return out


def run_rlhf(sft: torch.nn.Module, reward_model: Callable, beta: float, steps: int, seed: int = 0,
             batch_size: int = 64, lr: float = 1e-2, step_fn: Callable = rlhf_step,
             kl_fn: Callable = per_token_kl, progress: Callable | None = None) -> tuple[torch.nn.Module, dict]:
    """Fine-tune a copy of `sft` against `reward_model` with `step_fn`; log KL, reward, gold, components."""
    torch.manual_seed(seed)
    policy = toy.copy_model(sft)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"kl": [], "reward": [], "gold": [], "distinct tips": [], "repetition": [],
                                       "flattery": []}
    iterator = range(steps) if progress is None else progress(range(steps))
    for _ in iterator:
        replies = step_fn(policy, sft, reward_model, optimizer, beta, batch_size, gen)
        history["kl"].append(toy.sequence_kl(policy, sft, replies, kl_fn))
        with torch.no_grad():
            history["reward"].append(float(reward_model(replies).mean()))
        history["gold"].append(float(toy.gold_score(replies).mean()))
        for name, values in toy.gold_components(replies).items():
            history[name].append(float(values.mean()))
    return policy.requires_grad_(False), {k: np.array(v) for k, v in history.items()}


def run_dpo(sft: torch.nn.Module, chosen: torch.Tensor, rejected: torch.Tensor, beta: float, steps: int,
            seed: int = 0, lr: float = 1e-2, train_fn: Callable = train_dpo) -> torch.nn.Module:
    """A copy of `sft` fine-tuned with `train_fn` (DPO) on the preference pairs."""
    torch.manual_seed(seed)
    policy = toy.copy_model(sft)
    train_fn(policy, sft, chosen, rejected, beta, steps, lr)
    return policy.requires_grad_(False)


def ai_feedback_pairs(world: dict, constitution: Sequence[Principle], n_pairs: int, noise: float,
                      seed: int, score_fn: Callable = constitution_score) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) for n_pairs fresh SFT pairs labelled by a judge applying `constitution`,
    with the same Bradley-Terry noise model as the human raters."""
    gen = torch.Generator().manual_seed(20_000 + seed)
    rng = np.random.default_rng(20_000 + seed)
    a, b = world["sft"].sample(n_pairs, gen), world["sft"].sample(n_pairs, gen)
    a_wins = toy.noisy_preferences(score_fn(toy.as_numpy(a), constitution), score_fn(toy.as_numpy(b), constitution),
                                   noise, rng)
    return toy.order_pairs(a, b, a_wins)


def human_feedback_pairs(world: dict, n_pairs: int, noise: float, seed: int,
                         flattery_bonus: float = toy.FLATTERY_BONUS) -> tuple[torch.Tensor, torch.Tensor]:
    """Like ai_feedback_pairs, on the *same* fresh pairs, labelled by the simulated raters."""
    gen = torch.Generator().manual_seed(20_000 + seed)
    rng = np.random.default_rng(20_000 + seed)
    a, b = world["sft"].sample(n_pairs, gen), world["sft"].sample(n_pairs, gen)
    a_wins = toy.noisy_preferences(toy.rater_score(a, flattery_bonus), toy.rater_score(b, flattery_bonus), noise, rng)
    return toy.order_pairs(a, b, a_wins)


def rlhf_sweep(world: dict, betas: Sequence[float], steps: int, step_fn: Callable = rlhf_step,
               kl_fn: Callable = per_token_kl, progress: Callable | None = None) -> dict[float, dict]:
    """RLHF against the human-feedback reward model for each beta: {beta: {"history", "eval"}}."""
    out = {}
    for beta in betas:
        policy, history = run_rlhf(world["sft"], world["human_rm"], beta, steps, world["seed"], step_fn=step_fn,
                                   kl_fn=kl_fn, progress=progress)
        out[beta] = {"history": history, "policy": policy,
                     "eval": evaluate_policy(policy, world["sft"], 1000, world["seed"], kl_fn)}
    return out


def dpo_sweep(world: dict, betas: Sequence[float], steps: int, train_fn: Callable = train_dpo,
              kl_fn: Callable = per_token_kl) -> dict[float, dict]:
    """DPO on the same human preference pairs for each beta: {beta: evaluation of the final policy}."""
    return {beta: evaluate_policy(run_dpo(world["sft"], world["chosen"], world["rejected"], beta, steps,
                                          world["seed"], train_fn=train_fn), world["sft"], 1000, world["seed"], kl_fn)
            for beta in betas}


def feedback_experiment(world: dict, constitution: Sequence[Principle], n_pairs: int, beta: float, steps: int,
                        score_fn: Callable = constitution_score, step_fn: Callable = rlhf_step,
                        kl_fn: Callable = per_token_kl, bt_loss: Callable = bradley_terry_loss,
                        with_human: bool = True) -> dict[str, dict]:
    """Human vs AI feedback on the *same* fresh pairs with the *same* label noise: only the labeller differs.
    For each labeller: the reward model's agreement with gold on held-out pairs, and the RLHF policy's evaluation."""
    seed = world["seed"]
    labellers = {"AI feedback": lambda: ai_feedback_pairs(world, constitution, n_pairs, toy.RATER_NOISE, seed,
                                                          score_fn)}
    if with_human:
        labellers["human feedback"] = lambda: human_feedback_pairs(world, n_pairs, toy.RATER_NOISE, seed)
    out = {}
    for name, make_pairs in labellers.items():
        reward_model = toy.train_reward_model(*make_pairs(), bt_loss, seed=seed)
        policy, history = run_rlhf(world["sft"], reward_model, beta, steps, seed, step_fn=step_fn, kl_fn=kl_fn)
        out[name] = {"agreement": toy.gold_agreement(reward_model, world["test_a"], world["test_b"]),
                     "reward_model": reward_model, "history": history,
                     "eval": evaluate_policy(policy, world["sft"], 1000, seed, kl_fn)}
    return out
