"""Chapter 10's toy worlds: a gridworld with a tamperable sensor, and a six-word assistant.

The assistant world has everything RLHF needs at laptop scale: a tiny autoregressive language
model (`TinyLM`), a demonstrator for supervised fine-tuning, simulated raters who are noisy and
like flattery, a bag-of-words reward model, and a *gold score* (what we actually want) that the
training pipeline never sees but we can always compute, split into its components so that each
way of over-optimising shows up on its own axis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------- a gridworld with two rewards

MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left
ACTION_NAMES = ("up", "right", "down", "left")
LAYOUT = ("S.....",
          ".####.",
          "G...#.",
          "###..T")


class Gridworld:
    """A deterministic grid. `layout` rows use: S start, G goal, T tamper tile, # wall, . floor.

    Every step returns two rewards for the same transition: `proxy` (what the agent is trained on,
    a sensor) and `true` (what the designer wants). They agree except on T, where the agent jams
    the sensor (proxy `tamper_proxy`, true `tamper_true`). G and T end the episode, and so does
    reaching `horizon` steps. Moving into a wall or off the grid stays put.
    """

    def __init__(self, layout: Sequence[str], horizon: int = 30, goal_reward: float = 1.0,
                 tamper_proxy: float = 3.0, tamper_true: float = -1.0):
        self.layout = tuple(layout)
        self.rows, self.cols = len(self.layout), len(self.layout[0])
        self.horizon = horizon
        self.goal_reward, self.tamper_proxy, self.tamper_true = goal_reward, tamper_proxy, tamper_true
        self.n_states, self.n_actions = self.rows * self.cols, len(MOVES)
        starts = [(r, c) for r, line in enumerate(self.layout) for c, ch in enumerate(line) if ch == "S"]
        if len(starts) != 1:
            raise ValueError("a layout needs exactly one start tile S")
        self.start = starts[0]
        self._pos: tuple[int, int] | None = None
        self._t = 0

    def reset(self) -> int:
        """Put the agent on S; return the start state's index."""
        self._pos, self._t = self.start, 0
        return self.state_index(self._pos)

    def state_index(self, pos: tuple[int, int]) -> int:
        return pos[0] * self.cols + pos[1]

    def step(self, action: int) -> tuple[int, float, float, bool]:
        """Move; return (next state, proxy reward, true reward, done)."""
        if self._pos is None:
            raise RuntimeError("call env.reset() before env.step()")
        dr, dc = MOVES[int(action)]
        r, c = self._pos[0] + dr, self._pos[1] + dc
        if 0 <= r < self.rows and 0 <= c < self.cols and self.layout[r][c] != "#":
            self._pos = (r, c)
        self._t += 1
        tile = self.layout[self._pos[0]][self._pos[1]]
        proxy = true = 0.0
        done = self._t >= self.horizon
        if tile == "G":
            proxy = true = self.goal_reward
            done = True
        elif tile == "T":
            proxy, true, done = self.tamper_proxy, self.tamper_true, True
        state = self.state_index(self._pos)
        if done:
            self._pos = None  # a finished episode must be reset before the next step
        return state, proxy, true, done

    def is_terminal_tile(self, state: int) -> bool:
        """True for G and T (episodes end there; timeouts are not terminal states)."""
        return self.layout[state // self.cols][state % self.cols] in "GT"


def train_q_learning(env: Gridworld, episodes: int, epsilon: float, seed: int, eval_at: Sequence[int],
                     update: Callable, evaluate: Callable, alpha: float = 0.5,
                     gamma: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Epsilon-greedy Q-learning on the proxy reward with the learner's `update` and `evaluate`.

    Returns the final Q and an array [len(eval_at), 2] of the greedy policy's (proxy, true) returns
    after each episode count in `eval_at`. Hitting the horizon is not a terminal state.
    """
    agent_rng = np.random.default_rng(seed)
    Q = np.zeros((env.n_states, env.n_actions))
    curve = []
    for episode in range(1, episodes + 1):
        s, done = env.reset(), False
        while not done:
            if agent_rng.random() < epsilon:
                a = int(agent_rng.integers(env.n_actions))    # explore
            else:
                a = int(np.argmax(Q[s]))                      # exploit
            s_next, proxy, _true, done = env.step(a)          # the agent only ever learns from `proxy`
            Q = update(Q, s, a, proxy, s_next, env.is_terminal_tile(s_next), alpha, gamma)
            s = s_next
        if episode in eval_at:
            curve.append(evaluate(env, Q))
    return Q, np.array(curve)


# --------------------------------------------------------------------------- the six-word assistant

WORDS = ("water", "map", "boots", "jacket", "phone", "friend",   # 0-5: tips
         "really", "just", "also",                               # 6-8: filler
         "amazing", "brilliant")                                 # 9-10: flattery
TIPS, FILLER, FLATTERY = (0, 1, 2, 3, 4, 5), (6, 7, 8), (9, 10)
AMAZING, BRILLIANT = 9, 10
V, LENGTH = len(WORDS), 6      # vocabulary size, words per reply
BOS = V                        # the "beginning of reply" token the model reads before the first word
FLATTERY_BONUS = 1.5           # how much raters enjoy each compliment in the moment
RATER_NOISE = 0.5              # Bradley-Terry temperature of the simulated raters
REPEAT_PENALTY, FLATTERY_PENALTY = 1.0, 0.3


def as_numpy(responses: torch.Tensor | np.ndarray) -> np.ndarray:
    return responses.cpu().numpy() if isinstance(responses, torch.Tensor) else np.asarray(responses)


def decode(response: Sequence[int]) -> str:
    return " ".join(WORDS[int(t)] for t in response)


def word_counts(responses: torch.Tensor | np.ndarray) -> np.ndarray:
    """[N, LENGTH] word ids -> [N, V] how often each word occurs in each reply."""
    return np.eye(V, dtype=int)[as_numpy(responses)].sum(axis=1)


def gold_components(responses: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """The gold score's three terms per reply: distinct tips, -repeated tips, -0.3 x compliments."""
    counts = word_counts(responses)
    distinct = (counts[:, list(TIPS)] > 0).sum(1).astype(float)
    repeated = counts[:, list(TIPS)].sum(1) - distinct
    return {"distinct tips": distinct, "repetition": -REPEAT_PENALTY * repeated,
            "flattery": -FLATTERY_PENALTY * counts[:, list(FLATTERY)].sum(1)}


def gold_score(responses: torch.Tensor | np.ndarray) -> np.ndarray:
    """What we actually want (never shown to the training pipeline). [N, LENGTH] -> [N]."""
    return sum(gold_components(responses).values())


def rater_score(responses: torch.Tensor | np.ndarray, flattery_bonus: float = FLATTERY_BONUS) -> np.ndarray:
    """How much a (biased) rater likes a reply in the moment: gold plus a bonus per compliment."""
    return gold_score(responses) + flattery_bonus * word_counts(responses)[:, list(FLATTERY)].sum(1)


def noisy_preferences(score_a: np.ndarray, score_b: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """True where a labeller prefers a over b: Bradley-Terry choice with temperature `noise` (0: no noise)."""
    gap = np.asarray(score_a, dtype=float) - np.asarray(score_b, dtype=float)
    if noise == 0:
        return np.where(gap == 0, rng.random(len(gap)) < 0.5, gap > 0)
    return rng.random(len(gap)) < 1 / (1 + np.exp(-gap / noise))


def write_demonstrations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Replies from a decent demonstrator: sometimes a compliment first, tips never repeated."""
    out = np.zeros((n, LENGTH), dtype=np.int64)
    for i in range(n):
        unused_tips = list(rng.permutation(TIPS))
        reply = [int(rng.choice(FLATTERY))] if rng.random() < 0.3 else []
        while len(reply) < LENGTH:
            reply.append(int(unused_tips.pop()) if rng.random() < 0.5 else int(rng.choice(FILLER)))
        out[i] = reply
    return out


class TinyLM(nn.Module):
    """A six-word autoregressive language model over WORDS.

    It reads a summary of the prefix (position, previous word, counts of the words so far) instead of
    attending to it: enough to learn "don't repeat a tip". forward(tokens [B, T]) -> logits [B, T, V],
    where logits[:, t] predicts tokens[:, t] from tokens[:, :t] (the shift happens inside).
    """

    def __init__(self, d: int = 32):
        super().__init__()
        self.position = nn.Parameter(0.1 * torch.randn(LENGTH, d))
        self.previous = nn.Embedding(V + 1, d)               # +1 for BOS
        self.seen = nn.Linear(V, d, bias=False)              # reads the counts of words used so far
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, V))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(tokens, V).float()
        seen_before = one_hot.cumsum(1) - one_hot            # counts of each word strictly before t
        previous = torch.cat([torch.full_like(tokens[:, :1], BOS), tokens[:, :-1]], dim=1)
        return self.mlp(self.position[: tokens.shape[1]] + self.previous(previous) + self.seen(seen_before))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n replies [n, LENGTH], one word at a time, drawn with `generator`."""
        previous = torch.full((n,), BOS, dtype=torch.long)
        seen = torch.zeros(n, V)
        words = []
        for t in range(LENGTH):
            logits = self.mlp(self.position[t] + self.previous(previous) + self.seen(seen))
            word = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
            words.append(word)
            seen = seen + F.one_hot(word, V).float()
            previous = word
        return torch.stack(words, dim=1)


def copy_model(model: TinyLM, trainable: bool = True) -> TinyLM:
    """A fresh TinyLM with `model`'s weights (the start of every fine-tuning run)."""
    out = TinyLM(model.position.shape[1])
    out.load_state_dict(model.state_dict())
    return out.requires_grad_(trainable)


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(tokens[..., t]) under logits[..., t, :] (the toy's own copy; the learner writes one too)."""
    return logits.log_softmax(-1).gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)


def train_sft(demos: np.ndarray, steps: int, seed: int, log_probs: Callable = token_log_probs,
              lr: float = 2e-2, batch: int = 128) -> tuple[TinyLM, list[float]]:
    """Supervised fine-tuning: maximum likelihood on the demonstrations. Returns the frozen model
    and the loss per step."""
    torch.manual_seed(seed)
    model = TinyLM()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    tokens = torch.as_tensor(demos)
    batch_gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        chosen = tokens[torch.randint(0, len(tokens), (batch,), generator=batch_gen)]
        loss = -log_probs(model(chosen), chosen).sum(dim=1).mean()    # NLL of a whole reply
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.requires_grad_(False), losses


class RewardModel(nn.Module):
    """Score of a reply = sum of learned per-word values (+ a bias): a bag of words."""

    def __init__(self):
        super().__init__()
        self.word_value = nn.Embedding(V, 1)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:    # [B, LENGTH] -> [B]
        return self.word_value(tokens).sum(dim=(1, 2)) + self.bias


def order_pairs(replies_a: torch.Tensor, replies_b: torch.Tensor, a_wins) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) from two batches of replies and a boolean 'a wins' per pair."""
    a_wins = torch.as_tensor(np.asarray(a_wins, dtype=bool))[:, None]
    return torch.where(a_wins, replies_a, replies_b), torch.where(a_wins, replies_b, replies_a)


def train_reward_model(chosen: torch.Tensor, rejected: torch.Tensor, loss_fn: Callable, steps: int = 200,
                       lr: float = 0.05, seed: int = 0) -> RewardModel:
    """Fit a bag-of-words reward model to (chosen, rejected) pairs with the Bradley-Terry `loss_fn`."""
    torch.manual_seed(seed)
    model = RewardModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = loss_fn(model(chosen), model(rejected))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.requires_grad_(False)


def gold_agreement(reward_model: Callable, test_a: torch.Tensor, test_b: torch.Tensor) -> float:
    """How often the reward model orders a held-out pair the way the gold score does (gold ties skipped)."""
    gold_gap = gold_score(test_a) - gold_score(test_b)
    with torch.no_grad():
        rm_gap = (reward_model(test_a) - reward_model(test_b)).numpy()
    decided = gold_gap != 0
    return float(((rm_gap > 0) == (gold_gap > 0))[decided].mean())


def sequence_kl(policy: TinyLM, reference: TinyLM, replies: torch.Tensor, kl_fn: Callable) -> float:
    """A sampled estimate of KL(policy || reference) between whole replies: the per-position KL
    (exact given the prefix) summed along replies drawn from the policy, averaged over the batch."""
    with torch.no_grad():
        return float(kl_fn(policy(replies), reference(replies)).sum(dim=1).mean())


# --------------------------------------------------------------------------- constitutions

@dataclass(frozen=True)
class Principle:
    """One line of a constitution: its text, how much it counts, and a scorer that stands in for an
    AI judge's reading of the text (higher = the reply follows the principle better)."""
    text: str
    weight: float
    score: Callable[[np.ndarray], float]


def tips_given(reply: np.ndarray) -> float:
    """How many *different* tips a reply gives."""
    reply = np.asarray(reply)
    return float(len(np.unique(reply[np.isin(reply, TIPS)])))


def tip_mentions(reply: np.ndarray) -> float:
    """How many tip words a reply contains, repeats included."""
    return float(np.isin(np.asarray(reply), TIPS).sum())


def repeats(reply: np.ndarray) -> float:
    """Tip words beyond the first mention of each tip."""
    return tip_mentions(reply) - tips_given(reply)


def compliments(reply: np.ndarray) -> float:
    """How many flattering words a reply contains."""
    return float(np.isin(np.asarray(reply), FLATTERY).sum())


def says(word: int) -> Callable[[np.ndarray], float]:
    """A scorer counting one word (a judge that reads a principle's example literally)."""
    def count(reply: np.ndarray) -> float:
        return float((np.asarray(reply) == word).sum())
    count.__name__ = f"says_{WORDS[word]}"
    return count
