"""Reference solutions for chapter 10 (reward hacking and RLHF), and the gridworld it uses.

The checks compare learners' answers with these functions; the notebook
imports `Gridworld` (the environment is small, but its rules are the point of
the first section, so it is kept short enough to read in one sitting).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- a gridworld with two rewards

MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left
ACTION_NAMES = ("up", "right", "down", "left")


class Gridworld:
    """A deterministic grid. `layout` rows use: S start, G goal, T tamper tile, # wall, . floor.

    Every step returns two rewards for the same transition:
      - proxy: what the agent is trained on (a sensor the designer installed);
      - true:  what the designer actually wants.
    They agree everywhere except on T, where the agent can jam the sensor:
    proxy `tamper_proxy`, true `tamper_true`. G and T end the episode, and so
    does reaching `horizon` steps. Moving into a wall or off the grid stays put.
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


# --------------------------------------------------------------------------- RLHF building blocks (torch)

def response_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(tokens[..., t]) under the distribution logits[..., t, :]: [..., T, V] x [..., T] -> [..., T]."""
    return logits.log_softmax(-1).gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood that each chosen response beats its rejected one:
    -mean(log sigmoid(r_chosen - r_rejected)). [N] x [N] -> scalar."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def per_token_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Exact KL(p || q) between the distributions given by logits over the last axis: [..., V] -> [...]."""
    logp, logq = logits_p.log_softmax(-1), logits_q.log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def kl_penalised_reward(reward: torch.Tensor, logp_policy: torch.Tensor, logp_ref: torch.Tensor,
                        beta: float) -> torch.Tensor:
    """reward - beta * (log pi(y) - log pi_ref(y)) for responses y sampled from pi: [B] -> [B]."""
    return reward - beta * (logp_policy - logp_ref)


def reinforce_with_baseline(logp: torch.Tensor, rewards: torch.Tensor, baseline) -> torch.Tensor:
    """REINFORCE loss whose gradient is -mean((R - b) * grad log pi): [B] x [B] x (scalar or [B]) -> scalar.
    The advantage is a constant (no gradient flows into rewards or baseline)."""
    advantage = (rewards - baseline).detach()
    return -(advantage * logp).mean()


@dataclass(frozen=True)
class Principle:
    """One line of a constitution: the text, how much it counts, and a scorer standing in for
    an AI judge's reading of that text (higher = the response follows it better)."""
    text: str
    weight: float
    score: Callable[[np.ndarray], float]


def constitutional_ai_labels(responses_a: np.ndarray, responses_b: np.ndarray,
                             constitution: Sequence[Principle]) -> np.ndarray:
    """1.0 where the judge prefers a, 0.0 where it prefers b, 0.5 for a tie (|difference| < 1e-9).
    Each response's total is sum(weight * score(response)) over the principles. [N, T] x [N, T] -> [N]."""
    labels = np.empty(len(responses_a))
    for i, (a, b) in enumerate(zip(responses_a, responses_b)):
        total_a = sum(p.weight * p.score(a) for p in constitution)
        total_b = sum(p.weight * p.score(b) for p in constitution)
        diff = total_a - total_b
        labels[i] = 0.5 if abs(diff) < 1e-9 else float(diff > 0)
    return labels


def performance_gap_recovered(weak: float, weak_to_strong: float, strong_ceiling: float) -> float:
    """Burns et al.'s PGR: the share of the weak-to-ceiling gap that weak supervision recovers."""
    return (weak_to_strong - weak) / (strong_ceiling - weak)
