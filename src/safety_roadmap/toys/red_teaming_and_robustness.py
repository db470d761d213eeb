"""Chapter 11's toy world: ten-word requests, a tiny causal safety filter, and attack drivers.

A request is ten words: a three-word prefix (context), a four-word payload (what is asked) and a
three-word suffix. Only the payload decides whether a request is harmful: a harmful topic
("poison") is harmful unless a safety word stands right before it ("detect poison"), which makes
it a safety question. The filter reads words left to right (each position sees its word and the
running mean of the words so far), so an attacker who controls only the suffix
cannot change the payload's hidden vectors, and one who controls the prefix can.

Everything is seeded; the chapter's notebook and tests/test_chapter_11_claims.py use these
functions, so the notebook's numbers and the asserted claims come from the same code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

HARMFUL = ["poison", "malware", "explosives", "stalkerware"]
BENIGN = ["cake", "garden", "essay", "poem", "budget", "bike", "resume", "playlist"]
SAFETY = ["detect", "prevent", "avoid"]
ASK = ["how", "make", "write", "explain"]
FRAMING = ["story", "fiction", "please", "thanks", "roleplay"]
NEUTRAL = ["the", "a", "to", "for", "my", "now", "quickly", "step", "guide", "simple", "best", "home", "at",
           "with", "some", "list"]
WORDS = HARMFUL + BENIGN + SAFETY + ASK + FRAMING + NEUTRAL
V = len(WORDS)
ID = {w: i for i, w in enumerate(WORDS)}
PREFIX, PAYLOAD, SUFFIX = [0, 1, 2], [3, 4, 5, 6], [7, 8, 9]
LENGTH = 10
TOPIC = 4                                  # where a harmful request's topic sits (payload position 1)
TOPIC_AND_AFTER = list(range(TOPIC, LENGTH))  # the positions whose hidden vectors have seen the topic


def _ids(group: list[str]) -> torch.Tensor:
    return torch.tensor([ID[w] for w in group])


HARMFUL_IDS, BENIGN_IDS, SAFETY_IDS, ASK_IDS, FRAMING_IDS, NEUTRAL_IDS = map(
    _ids, (HARMFUL, BENIGN, SAFETY, ASK, FRAMING, NEUTRAL))
ALLOWED = torch.tensor([i for i in range(V) if WORDS[i] not in HARMFUL])   # an attacker's words: no topic
CONTEXT_IDS = torch.cat([NEUTRAL_IDS, FRAMING_IDS])                          # ordinary prefix/suffix words


def _pick(ids: torch.Tensor, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return ids[torch.randint(0, len(ids), shape, generator=g)]


def make_requests(n: int, kind: str, g: torch.Generator) -> torch.Tensor:
    """n requests [n, LENGTH] of one kind: 'harmful', 'benign' or 'safety' (a benign safety question).

    harmful: "<ctx ctx ctx> how poison <x> <y> <ctx ctx ctx>", 30% with a safety word *after* the topic;
    safety:  "<ctx ctx ctx> how detect poison <safety> <ctx ...>"; benign: an ordinary topic.
    """
    out = torch.cat([_pick(CONTEXT_IDS, (n, 3), g), torch.zeros(n, 4, dtype=torch.long),
                     _pick(CONTEXT_IDS, (n, 3), g)], dim=1)
    out[:, 3] = _pick(ASK_IDS, (n,), g)
    if kind == "harmful":
        out[:, 4] = _pick(HARMFUL_IDS, (n,), g)
        out[:, 5] = _pick(torch.cat([NEUTRAL_IDS, BENIGN_IDS]), (n,), g)
        late_safety = torch.rand(n, generator=g) < 0.3
        out[:, 6] = torch.where(late_safety, _pick(SAFETY_IDS, (n,), g), _pick(NEUTRAL_IDS, (n,), g))
    elif kind == "benign":
        out[:, 4] = _pick(BENIGN_IDS, (n,), g)
        out[:, 5] = _pick(NEUTRAL_IDS, (n,), g)
        out[:, 6] = _pick(NEUTRAL_IDS, (n,), g)
    elif kind == "safety":
        out[:, 4] = _pick(SAFETY_IDS, (n,), g)
        out[:, 5] = _pick(HARMFUL_IDS, (n,), g)
        out[:, 6] = _pick(torch.cat([SAFETY_IDS, NEUTRAL_IDS]), (n,), g)
    else:
        raise ValueError(f"kind must be 'harmful', 'benign' or 'safety', not {kind!r}")
    return out


def benign_mix(n: int, g: torch.Generator) -> torch.Tensor:
    """Benign traffic: 70% ordinary requests, 30% safety questions."""
    k = int(0.3 * n)
    return torch.cat([make_requests(n - k, "benign", g), make_requests(k, "safety", g)])


def scramble(requests: torch.Tensor, positions: Sequence[int], g: torch.Generator) -> torch.Tensor:
    """Copies of `requests` with `positions` refilled by random attacker words (any non-topic word)."""
    out = requests.clone()
    out[:, list(positions)] = _pick(ALLOWED, (len(requests), len(positions)), g)
    return out


def show(tokens: torch.Tensor) -> str:
    """'prefix | payload | suffix' as words."""
    words = [WORDS[int(t)] for t in tokens]
    return " ".join(words[:3]) + " | " + " ".join(words[3:7]) + " | " + " ".join(words[7:])


class SafetyFilter(nn.Module):
    """Harmful-request classifier that reads left to right; refuse when the logit is > 0.

    Position p's hidden vector sees its word and the mean of words 0..p (nothing to its right);
    the logit reads the mean hidden vector. `hidden(emb)` exposes the per-position activations.
    """

    def __init__(self, d: int = 16, hidden: int = 32, vocab: int = V):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d)
        self.token_layer = nn.Linear(d, hidden)
        self.context_layer = nn.Linear(d, hidden, bias=False)
        self.readout = nn.Linear(hidden, 1)

    def hidden(self, emb: torch.Tensor) -> torch.Tensor:
        """emb [B, L, d] -> hidden [B, L, H]."""
        steps = torch.arange(1, emb.shape[1] + 1, dtype=emb.dtype)[:, None]
        return F.relu(self.token_layer(emb) + self.context_layer(emb.cumsum(dim=1) / steps))

    def from_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        """emb [B, L, d] -> harmful logit [B]."""
        return self.readout(self.hidden(emb).mean(dim=1))[:, 0]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.from_embeddings(self.embedding(tokens))


@dataclass
class Data:
    """The requests of one seed's run: training, held-out test, validation, fresh harmful requests (used only to
    measure attacks), attack targets (where the red team finds the attacks a defence is built from), and fresh
    benign traffic for false refusals."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    test: dict
    validation_benign: torch.Tensor
    fresh_harmful: torch.Tensor
    attack_targets: torch.Tensor
    benign_eval: torch.Tensor


def make_data(seed: int, n_fresh: int = 40, n_train_attacks: int = 40) -> Data:
    """All request sets of one run, from one generator (disjoint draws, so 'fresh' means unseen)."""
    g = torch.Generator().manual_seed(seed)
    harmful, benign = make_requests(1500, "harmful", g), benign_mix(1500, g)
    return Data(train_x=torch.cat([harmful, benign]), train_y=torch.cat([torch.ones(1500), torch.zeros(1500)]),
                test={"harmful": make_requests(300, "harmful", g), "benign (ordinary)": make_requests(300, "benign", g),
                      "benign (safety questions)": make_requests(300, "safety", g)},
                validation_benign=benign_mix(600, g), fresh_harmful=make_requests(n_fresh, "harmful", g),
                attack_targets=make_requests(n_train_attacks, "harmful", g), benign_eval=benign_mix(600, g))


def train_filter(model: SafetyFilter, requests: torch.Tensor, labels: torch.Tensor, steps: int = 200,
                 lr: float = 2e-2, seed: int = 0) -> SafetyFilter:
    """Binary cross-entropy on (request, harmful?) pairs; returns the model frozen."""
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.requires_grad_(True)
    for _ in range(steps):
        idx = torch.randint(0, len(requests), (256,), generator=g)
        loss = F.binary_cross_entropy_with_logits(model(requests[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.requires_grad_(False)


def trained_filter(data: Data, seed: int) -> SafetyFilter:
    """The chapter's filter for one seed."""
    torch.manual_seed(seed)
    return train_filter(SafetyFilter(), data.train_x, data.train_y, seed=seed)


def refusal_rate(score_fn: Callable, requests: torch.Tensor) -> float:
    """Fraction of requests refused (logit > 0)."""
    with torch.no_grad():
        return (score_fn(requests) > 0).float().mean().item()


def not_refused(score_fn: Callable, requests: torch.Tensor) -> torch.Tensor:
    """Which requests [N, L] get through (logit <= 0): the attack's success."""
    with torch.no_grad():
        return score_fn(requests) <= 0


class MonitoredFilter(nn.Module):
    """The filter plus a representation probe monitor: refuse if the filter or the monitor fires.

    As one score: max(filter logit, monitor score - threshold), so gradient attacks can target both.
    """

    def __init__(self, base: SafetyFilter, direction: torch.Tensor, threshold: float,
                 scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.base, self.direction, self.threshold, self.scores = base, direction, threshold, scores
        self.embedding = base.embedding

    def from_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        monitor = self.scores(self.base.hidden(emb), self.direction) - self.threshold
        return torch.maximum(self.base.from_embeddings(emb), monitor)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.from_embeddings(self.embedding(tokens))
