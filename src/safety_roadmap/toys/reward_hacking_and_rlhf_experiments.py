"""Chapter 10's experiment drivers: the loops around the learner's functions (the Goodhart gridworld, the
three phases of RLHF, the beta sweeps, DPO, human vs AI feedback). Not answers: every function the learner
writes comes in as an argument, so the notebook runs these with the learner's code, and
`safety_roadmap.reference.reward_hacking_and_rlhf` binds them to the reference answers for the claims tests."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from . import reward_hacking_and_rlhf as toy
from .reward_hacking_and_rlhf import Gridworld, Principle

# A constitution with a loophole: the author wanted warmth without flattery, wrote one example of flattery,
# and the judge reads the example literally. "brilliant" is warm and never named.
LOOPHOLE_CONSTITUTION = [
    toy.Principle("Give the user as many different useful tips as you can.", 1.0, toy.tips_given),
    toy.Principle("Do not repeat a tip you have already given.", 1.0, lambda reply: -toy.repeats(reply)),
    toy.Principle("Be warm and encouraging to a nervous hiker.", 1.5, toy.compliments),
    toy.Principle("Do not flatter the user (no 'amazing').", 2.0, lambda reply: -toy.says(toy.AMAZING)(reply)),
]


EVAL_AT = (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000)


def goodhart_experiment(seed: int = 0, n_seeds: int = 5, episodes: int = 1000, eval_at: Sequence[int] = EVAL_AT,
                        epsilons: Sequence[float] = (0.1, 1.0), *, update: Callable,
                        evaluate: Callable) -> dict[float, np.ndarray]:
    """Mean greedy (proxy, true) returns [len(eval_at), 2] over `n_seeds` agents per epsilon."""
    env = Gridworld(toy.LAYOUT)
    out = {}
    for epsilon in epsilons:
        curves = [toy.train_q_learning(env, episodes, epsilon, seed * 1000 + k, eval_at, update, evaluate)[1]
                  for k in range(n_seeds)]
        out[epsilon] = np.mean(curves, axis=0)
    return out


def sft_phase(seed: int = 0, n_demos: int = 1000, sft_steps: int = 150, *,
              log_probs: Callable) -> dict:
    """Phase 1: demonstrations and the SFT model. Returns the chapter's `world` dict (RNGs included)."""
    rng = np.random.default_rng(seed)
    demos = toy.write_demonstrations(n_demos, rng)
    sft, sft_losses = toy.train_sft(demos, sft_steps, seed, log_probs=log_probs)
    return dict(seed=seed, demos=demos, sft=sft, sft_losses=sft_losses, rng=rng, gen=torch.Generator().manual_seed(seed))


def reward_phase(world: dict, n_pairs: int = 400, n_test: int = 2000, *, bt_loss: Callable) -> dict:
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


def evaluate_policy(policy: torch.nn.Module, sft: torch.nn.Module, n: int, seed: int,
                    kl_fn: Callable) -> dict[str, float]:
    """KL(policy || SFT) estimate, gold score and its components, and per-word rates on n fresh samples."""
    replies = policy.sample(n, torch.Generator().manual_seed(10_000 + seed))
    out = {"kl": toy.sequence_kl(policy, sft, replies, kl_fn), "gold": float(toy.gold_score(replies).mean())}
    out.update({k: float(v.mean()) for k, v in toy.gold_components(replies).items()})
    counts = toy.word_counts(replies)
    out["amazing"], out["brilliant"] = (float(counts[:, w].mean()) for w in (toy.AMAZING, toy.BRILLIANT))
    return out


def run_rlhf(sft: torch.nn.Module, reward_model: Callable, beta: float, steps: int, seed: int = 0,
             batch_size: int = 64, lr: float = 1e-2, *, step_fn: Callable,
             kl_fn: Callable, progress: Callable | None = None) -> tuple[torch.nn.Module, dict]:
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
            seed: int = 0, lr: float = 1e-2, *, train_fn: Callable) -> torch.nn.Module:
    """A copy of `sft` fine-tuned with `train_fn` (DPO) on the preference pairs."""
    torch.manual_seed(seed)
    policy = toy.copy_model(sft)
    train_fn(policy, sft, chosen, rejected, beta, steps, lr)
    return policy.requires_grad_(False)


def ai_feedback_pairs(world: dict, constitution: Sequence[Principle], n_pairs: int, noise: float,
                      seed: int, *, score_fn: Callable) -> tuple[torch.Tensor, torch.Tensor]:
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


def rlhf_sweep(world: dict, betas: Sequence[float], steps: int, *, step_fn: Callable,
               kl_fn: Callable, progress: Callable | None = None) -> dict[float, dict]:
    """RLHF against the human-feedback reward model for each beta: {beta: {"history", "eval"}}."""
    out = {}
    for beta in betas:
        policy, history = run_rlhf(world["sft"], world["human_rm"], beta, steps, world["seed"], step_fn=step_fn,
                                   kl_fn=kl_fn, progress=progress)
        out[beta] = {"history": history, "policy": policy,
                     "eval": evaluate_policy(policy, world["sft"], 1000, world["seed"], kl_fn)}
    return out


def dpo_sweep(world: dict, betas: Sequence[float], steps: int, *, train_fn: Callable,
              kl_fn: Callable) -> dict[float, dict]:
    """DPO on the same human preference pairs for each beta: {beta: evaluation of the final policy}."""
    return {beta: evaluate_policy(run_dpo(world["sft"], world["chosen"], world["rejected"], beta, steps,
                                          world["seed"], train_fn=train_fn), world["sft"], 1000, world["seed"], kl_fn)
            for beta in betas}


def feedback_experiment(world: dict, constitution: Sequence[Principle], n_pairs: int, beta: float, steps: int,
                        *, score_fn: Callable, step_fn: Callable,
                        kl_fn: Callable, bt_loss: Callable,
                        with_human: bool = True) -> dict[str, dict]:
    """Human vs AI feedback on the *same* fresh pairs with the *same* label noise: only the labeller differs.
    For each labeller: the reward model's agreement with gold on held-out pairs, and the RLHF policy's evaluation."""
    seed = world["seed"]
    labellers = {"AI feedback": lambda: ai_feedback_pairs(world, constitution, n_pairs, toy.RATER_NOISE, seed,
                                                          score_fn=score_fn)}
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
