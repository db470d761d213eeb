"""Reference solutions for chapter 11 (red teaming and robustness).

A "model" here is any module with an `embedding` (`nn.Embedding`) and a
`from_embeddings(emb [B, L, d]) -> [B]` method returning a harmful-content
logit (refuse when > 0); a `score_fn` is any callable `[N, L] tokens -> [N]`
logits. The checks compare learners' answers with these functions.
"""
from __future__ import annotations

import copy
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


def monitor_scores(hidden: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Largest projection onto `direction` over positions: hidden [N, L, H], direction [H] -> [N]."""
    return (hidden @ direction).amax(dim=-1)


def refusal_threshold(benign_scores: torch.Tensor, max_false_refusal: float) -> float:
    """The smallest benign score t with at most a fraction `max_false_refusal` of benign scores above it."""
    n = benign_scores.numel()
    k = int(math.floor(max_false_refusal * n + 1e-9))                     # refusals we may afford
    ordered = benign_scores.flatten().sort(descending=True).values
    return float(ordered[min(k, n - 1)])


def gcg_attack(model: torch.nn.Module, request: torch.Tensor, free_positions: Sequence[int], allowed: torch.Tensor,
               steps: int, top_k: int) -> tuple[torch.Tensor, int]:
    """Repeat `gcg_step` until the model lets the request through (logit <= 0) or `steps` steps are spent.

    Returns (adversarial request [L], number of steps taken). The request itself is never modified.
    """
    tokens, taken = request.clone(), 0
    for _ in range(steps):
        with torch.no_grad():
            if model(tokens[None])[0] <= 0:
                break
        tokens = gcg_step(model, tokens, free_positions, allowed, top_k)
        taken += 1
    return tokens, taken


def rerouting_losses(h_harmful: torch.Tensor, target: torch.Tensor, h_benign: torch.Tensor,
                     h_benign_frozen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rerouting loss, retain loss) of a representation-rerouting fine-tune.

    rerouting: mean over harmful activation vectors [..., H] of |h - target|^2, divided by |target|^2;
    retain: mean over benign activation vectors of |h - h_frozen|^2, divided by the mean |h_frozen|^2.
    Both are scale-free, so one weight `alpha` balances them whatever the hidden size.
    """
    reroute = ((h_harmful - target) ** 2).sum(-1).mean() / (target ** 2).sum()
    retain = ((h_benign - h_benign_frozen) ** 2).sum(-1).mean() / (h_benign_frozen ** 2).sum(-1).mean()
    return reroute, retain


def train_rerouting(model: torch.nn.Module, harmful_batch: Callable[[torch.Generator], torch.Tensor],
                    benign_batch: Callable[[torch.Generator], torch.Tensor], target: torch.Tensor,
                    positions: Sequence[int], steps: int = 200, lr: float = 1e-2, alpha: float = 3.0,
                    seed: int = 0) -> torch.nn.Module:
    """Fine-tune a copy of `model` so that harmful requests' hidden vectors at `positions` move onto `target`
    while benign requests' hidden vectors stay where the original model put them.

    The readout stays frozen (the decision rule does not change, only the representations feeding it);
    the original model is left untouched; the copy is returned frozen.
    """
    g = torch.Generator().manual_seed(seed)
    tuned = copy.deepcopy(model).requires_grad_(True)
    tuned.readout.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in tuned.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        harmful, benign = harmful_batch(g), benign_batch(g)
        with torch.no_grad():
            frozen = model.hidden(model.embedding(benign))
        h_harmful = tuned.hidden(tuned.embedding(harmful))[:, list(positions)]
        reroute, retain = rerouting_losses(h_harmful, target, tuned.hidden(tuned.embedding(benign)), frozen)
        loss = reroute + alpha * retain
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return tuned.requires_grad_(False)


# --------------------------------------------------------------------------- the chapter's experiments
# The notebook runs these steps cell by cell with the learner's functions; the claims tests
# (tests/test_chapter_11_claims.py) re-run them here on three seeds.

GCG_STEPS, TOP_K = 8, 4
RANDOM_BUDGETS = (4, 16, 64, 256, 1024)
MAX_FALSE_REFUSAL = 0.02
REROUTE_STEPS = 200


def gcg_cost(steps_taken: int, n_free: int, top_k: int) -> int:
    """Forward-pass equivalents of a GCG-style attack: per step one forward + backward (about 3 forwards)
    for the gradient, then 1 + n_free * top_k candidate forwards; plus the first check."""
    return 1 + steps_taken * (3 + 1 + n_free * top_k)


def gcg_against(model: torch.nn.Module, positions: Sequence[int], steps: int = GCG_STEPS, top_k: int = TOP_K):
    """An attack_fn for `evaluate_defence` that runs GCG with full knowledge of `model` on `positions`."""
    from ..toys.red_teaming_and_robustness import ALLOWED
    return lambda score_fn, request: gcg_attack(model, request, positions, ALLOWED, steps, top_k)[0]


def probe_monitor(base: torch.nn.Module, data, max_false_refusal: float = MAX_FALSE_REFUSAL):
    """The filter plus a difference-of-means probe monitor on its hidden layer, calibrated on validation benign."""
    from ..toys import red_teaming_and_robustness as toy
    with torch.no_grad():
        hidden = lambda x: base.hidden(base.embedding(x))
        direction = harmful_direction(hidden(data.train_x[data.train_y == 1]).mean(1),
                                      hidden(data.train_x[data.train_y == 0]).mean(1))
        threshold = refusal_threshold(monitor_scores(hidden(data.validation_benign), direction), max_false_refusal)
    return toy.MonitoredFilter(base, direction, threshold, monitor_scores)


def rerouting_samplers(base: torch.nn.Module, training_attacks: torch.Tensor, free: Sequence[int],
                       batch: int = 128):
    """(harmful_batch, benign_batch, target) for `train_rerouting` on the chapter's filter.

    Harmful: half the red team's training attacks, half harmful requests with random attacker words at `free`.
    Benign: benign traffic, half of it with random words at `free` too (so the retain loss covers what the
    rerouting loss touches). Target: the filter's mean hidden vector at the topic of plain harmful requests.
    """
    from ..toys import red_teaming_and_robustness as toy
    free = list(free)

    def harmful_batch(g: torch.Generator) -> torch.Tensor:
        picked = training_attacks[torch.randint(0, len(training_attacks), (batch // 2,), generator=g)]
        return torch.cat([picked, toy.scramble(toy.make_requests(batch - batch // 2, "harmful", g), free, g)])

    def benign_batch(g: torch.Generator) -> torch.Tensor:
        plain = toy.benign_mix(batch, g)
        return torch.cat([plain, toy.scramble(plain, free, g)])

    with torch.no_grad():
        plain = toy.make_requests(500, "harmful", torch.Generator().manual_seed(99))
        target = base.hidden(base.embedding(plain))[:, toy.TOPIC].mean(0)
    return harmful_batch, benign_batch, target


def _run_gcg(model: torch.nn.Module, requests: torch.Tensor, positions: Sequence[int]):
    from ..toys.red_teaming_and_robustness import ALLOWED
    runs = [gcg_attack(model, r, positions, ALLOWED, GCG_STEPS, TOP_K) for r in requests]
    return torch.stack([t for t, _ in runs]), torch.tensor([gcg_cost(s, len(positions), TOP_K) for _, s in runs])


def chapter_experiment(seed: int = 0, reroute_steps: int = REROUTE_STEPS, reroute_on_prefix: tuple = (False,)
                       ) -> dict:
    """Every number the chapter's prose and figures state, for one seed, computed as the notebook does."""
    from ..toys import red_teaming_and_robustness as toy
    data = toy.make_data(seed)
    base = toy.trained_filter(data, seed)
    fresh, n = data.fresh_harmful, len(data.fresh_harmful)
    out: dict = {"n": n, "clean": {name: toy.refusal_rate(base, x) for name, x in data.test.items()}}

    random_k = {}
    for budget in RANDOM_BUDGETS:
        g = torch.Generator().manual_seed(seed * 10_000 + budget)
        found = torch.stack([random_search_attack(base, r, toy.SUFFIX, toy.ALLOWED, budget, g) for r in fresh])
        random_k[budget] = int(toy.not_refused(base, found).sum())
    out["random"] = random_k

    attackers = {"suffix": toy.SUFFIX, "prefix": toy.PREFIX}
    found, success = {}, {}
    for name, positions in attackers.items():
        found[name], cost = _run_gcg(base, fresh, positions)
        success[name] = toy.not_refused(base, found[name])
        broke = found[name][success[name]][:, positions]
        with_safety = torch.isin(broke, toy.SAFETY_IDS).any(dim=1).float().mean() if len(broke) else torch.tensor(0.0)
        out[f"gcg_{name}"] = {"k": int(success[name].sum()), "max_cost": int(cost.max()),
                              "with_safety_word": float(with_safety)}

    monitor = probe_monitor(base, data)
    with torch.no_grad():
        caught = {name: monitor.scores(base.hidden(base.embedding(found[name][success[name]])), monitor.direction)
                  > monitor.threshold for name in attackers}
    out["monitor_catches"] = {name: float(c.float().mean()) if len(c) else float("nan") for name, c in caught.items()}
    training_attacks = {}
    for name, positions in attackers.items():
        on_targets, _ = _run_gcg(base, data.attack_targets, positions)
        training_attacks[name] = on_targets[toy.not_refused(base, on_targets)]

    results = {}
    for name, positions in attackers.items():
        results[("probe monitor, adaptive", name)] = evaluate_defence(
            monitor, gcg_against(monitor, positions), training_attacks[name], fresh, data.benign_eval)
    out["rerouted_clean"] = {}
    for on_prefix in reroute_on_prefix:
        free = toy.SUFFIX + (toy.PREFIX if on_prefix else [])
        attacks = torch.cat([training_attacks["suffix"]] + ([training_attacks["prefix"]] if on_prefix else []))
        harmful_batch, benign_batch, target = rerouting_samplers(base, attacks, free)
        rerouted = train_rerouting(base, harmful_batch, benign_batch, target, toy.TOPIC_AND_AFTER,
                                   steps=reroute_steps, seed=seed)
        tag = "rerouting+prefix" if on_prefix else "rerouting"
        out["rerouted_clean"][tag] = {name: toy.refusal_rate(rerouted, x) for name, x in data.test.items()}
        for name, positions in attackers.items():
            before = dict(zip(map(tuple, fresh.tolist()), found[name]))
            results[(f"{tag}, transferred", name)] = evaluate_defence(
                rerouted, lambda score_fn, request: before[tuple(request.tolist())], training_attacks[name], fresh,
                data.benign_eval)
            results[(f"{tag}, adaptive", name)] = evaluate_defence(
                rerouted, gcg_against(rerouted, positions), training_attacks[name], fresh, data.benign_eval)
    out["results"] = results
    return out
