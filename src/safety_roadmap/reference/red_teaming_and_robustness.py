"""Reference solutions for chapter 11 (red teaming and robustness).

A "model" here is any module with an `embedding` (`nn.Embedding`) and a
`from_embeddings(emb [B, L, d]) -> [B]` method returning a harmful-content
logit (refuse when > 0); a `score_fn` is any callable `[N, L] tokens -> [N]`
logits. The checks compare learners' answers with these functions.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% for z = 1.96), clipped to [0, 1]."""
    p = successes / n
    denom = 1 + z ** 2 / n
    centre = (p + z ** 2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def random_search_attack(score_fn: Callable[[torch.Tensor], torch.Tensor], request: torch.Tensor,
                         free_positions: Sequence[int], allowed: torch.Tensor, n_queries: int,
                         generator: torch.Generator) -> torch.Tensor:
    """The lowest-scoring of `n_queries` random fillings of `free_positions` with `allowed` tokens: [L] -> [L]."""
    positions = torch.as_tensor(list(free_positions), dtype=torch.long)
    candidates = request.repeat(n_queries, 1)                                    # [n, L]
    picks = torch.randint(0, len(allowed), (n_queries, len(positions)), generator=generator,
                          device=generator.device)
    candidates[:, positions.to(request.device)] = allowed.to(request.device)[picks.to(request.device)]
    with torch.no_grad():
        scores = score_fn(candidates)
    return candidates[scores.argmin()].clone()


def token_gradients(model: torch.nn.Module, tokens: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    """d(harmful logit) / d(one-hot token) at `positions`: tokens [L] -> [len(positions), V]."""
    weight = model.embedding.weight
    one_hot = F.one_hot(tokens, weight.shape[0]).to(weight.dtype).requires_grad_(True)   # [L, V]
    logit = model.from_embeddings((one_hot @ weight)[None])[0]
    (grad,) = torch.autograd.grad(logit, one_hot)
    return grad[list(positions)]


def gcg_step(model: torch.nn.Module, tokens: torch.Tensor, free_positions: Sequence[int], allowed: torch.Tensor,
             top_k: int) -> torch.Tensor:
    """One greedy coordinate gradient step: rank swaps by gradient, try the top_k allowed tokens at each
    free position exactly, return the lowest-scoring of the current tokens and those single swaps."""
    positions = list(free_positions)
    grads = token_gradients(model, tokens, positions)                      # [P, V]
    mask = torch.full_like(grads, float("inf"))
    mask[:, allowed.to(grads.device)] = 0.0
    top = (grads + mask).topk(top_k, dim=1, largest=False).indices         # [P, k] most negative
    candidates = [tokens.clone()]
    for i, pos in enumerate(positions):
        for tok in top[i]:
            cand = tokens.clone()
            cand[pos] = tok
            candidates.append(cand)
    batch = torch.stack(candidates)                                        # [1 + P*k, L]
    with torch.no_grad():
        scores = model.from_embeddings(model.embedding(batch))
    return batch[scores.argmin()].clone()


def evaluate_defence(score_fn: Callable[[torch.Tensor], torch.Tensor],
                     attack_fn: Callable[[Callable, torch.Tensor], torch.Tensor],
                     training_attacks: torch.Tensor, fresh_requests: torch.Tensor,
                     benign_requests: torch.Tensor) -> dict:
    """Attack success on the attacks used in training and on fresh attacks (with a 95% Wilson interval),
    and the false-refusal rate on benign requests. A request is refused when its score is > 0."""
    with torch.no_grad():
        asr_training = (score_fn(training_attacks) <= 0).float().mean().item()
        false_refusal = (score_fn(benign_requests) > 0).float().mean().item()
    successes = 0
    for request in fresh_requests:
        adversarial = attack_fn(score_fn, request)       # outside no_grad: gradient attacks need autograd
        with torch.no_grad():
            successes += int(score_fn(adversarial[None])[0] <= 0)
    n = len(fresh_requests)
    return {"asr_training": asr_training, "asr_fresh": successes / n,
            "asr_fresh_interval": wilson_interval(successes, n), "false_refusal_rate": false_refusal}


def harmful_direction(acts_harmful: torch.Tensor, acts_benign: torch.Tensor) -> torch.Tensor:
    """Unit vector from the mean benign activation to the mean harmful one: [N1, H] x [N2, H] -> [H]."""
    diff = acts_harmful.mean(0) - acts_benign.mean(0)
    return diff / diff.norm()


def breaker_scores(hidden: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Largest projection onto `direction` over positions: hidden [N, L, H], direction [H] -> [N]."""
    return (hidden @ direction).amax(dim=-1)


def refusal_threshold(benign_scores: torch.Tensor, max_false_refusal: float) -> float:
    """The smallest benign score t with at most a fraction `max_false_refusal` of benign scores above it."""
    n = benign_scores.numel()
    k = int(math.floor(max_false_refusal * n + 1e-9))                     # refusals we may afford
    ordered = benign_scores.flatten().sort(descending=True).values
    return float(ordered[min(k, n - 1)])
