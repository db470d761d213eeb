"""Mutants and alternatives for chapter 11_red_teaming_and_robustness."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- mutants


def wilson_is_wald(successes, n, z=1.96):
    p = successes / n
    half = z * math.sqrt(p * (1 - p) / n)
    return max(0.0, p - half), min(1.0, p + half)


def wilson_fixed_z(successes, n, z=1.96):
    z = 1.96  # ignores the argument
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_centred_on_p(successes, n, z=1.96):
    p = successes / n
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, p - half), min(1.0, p + half)


def wilson_missing_square(successes, n, z=1.96):
    p = successes / n
    centre = (p + z / (2 * n)) / (1 + z / n)  # z where z**2 belongs
    half = z * math.sqrt(p * (1 - p) / n + z / (4 * n * n)) / (1 + z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _random_candidates(request, free_positions, allowed, n_queries, generator):
    candidates = request.repeat(n_queries, 1)
    picks = torch.randint(0, len(allowed), (n_queries, len(free_positions)), generator=generator)
    candidates[:, list(free_positions)] = allowed[picks]
    return candidates


def random_returns_last(score_fn, request, free_positions, allowed, n_queries, generator):
    candidates = _random_candidates(request, free_positions, allowed, n_queries, generator)
    score_fn(candidates)
    return candidates[-1].clone()  # keeps the last try instead of the best


def random_argmax(score_fn, request, free_positions, allowed, n_queries, generator):
    candidates = _random_candidates(request, free_positions, allowed, n_queries, generator)
    return candidates[score_fn(candidates).argmax()].clone()


def random_any_token(score_fn, request, free_positions, allowed, n_queries, generator):
    vocab = int(max(allowed.max(), request.max())) + 1
    return random_search_reference_like(score_fn, request, free_positions, torch.arange(vocab), n_queries, generator)


def random_all_positions(score_fn, request, free_positions, allowed, n_queries, generator):
    return random_search_reference_like(score_fn, request, list(range(len(request))), allowed, n_queries, generator)


def random_over_budget(score_fn, request, free_positions, allowed, n_queries, generator):
    return random_search_reference_like(score_fn, request, free_positions, allowed, 10 * n_queries, generator)


def random_in_place(score_fn, request, free_positions, allowed, n_queries, generator):
    best = random_search_reference_like(score_fn, request, free_positions, allowed, n_queries, generator)
    request[:] = best  # overwrites the caller's request
    return request


def random_global_rng(score_fn, request, free_positions, allowed, n_queries, generator):
    candidates = request.repeat(n_queries, 1)
    picks = torch.randint(0, len(allowed), (n_queries, len(free_positions)))   # ignores `generator`
    candidates[:, list(free_positions)] = allowed[picks]
    return candidates[score_fn(candidates).argmin()].clone()


def random_reseeds(score_fn, request, free_positions, allowed, n_queries, generator):
    generator.manual_seed(0)   # "for reproducibility": every call now draws the same candidates
    return random_search_reference_like(score_fn, request, free_positions, allowed, n_queries, generator)


def random_never_last(score_fn, request, free_positions, allowed, n_queries, generator):
    candidates = request.repeat(n_queries, 1)
    picks = torch.randint(0, len(allowed) - 1, (n_queries, len(free_positions)), generator=generator)
    candidates[:, list(free_positions)] = allowed[picks]   # the last allowed token is never drawn
    return candidates[score_fn(candidates).argmin()].clone()


def random_rounded(score_fn, request, free_positions, allowed, n_queries, generator):
    u = torch.rand(n_queries, len(free_positions), generator=generator)
    picks = torch.round(u * (len(allowed) - 1)).long()      # the two end tokens get half the weight
    candidates = request.repeat(n_queries, 1)
    candidates[:, list(free_positions)] = allowed[picks]
    return candidates[score_fn(candidates).argmin()].clone()


def random_fixed_budget(score_fn, request, free_positions, allowed, n_queries, generator):
    return random_search_reference_like(score_fn, request, free_positions, allowed, 64, generator)


def random_suffix_positions(score_fn, request, free_positions, allowed, n_queries, generator):
    k = len(free_positions)   # assumes the free positions are the last k
    candidates = request.repeat(n_queries, 1)
    candidates[:, -k:] = allowed[torch.randint(0, len(allowed), (n_queries, k), generator=generator)]
    return candidates[score_fn(candidates).argmin()].clone()


def random_search_reference_like(score_fn, request, free_positions, allowed, n_queries, generator):
    candidates = _random_candidates(request, free_positions, allowed, n_queries, generator)
    return candidates[score_fn(candidates).argmin()].clone()


def grad_flipped(model, tokens, positions):
    return -grad_reference_like(model, tokens, positions)


def grad_of_probability(model, tokens, positions):
    weight = model.embedding.weight
    one_hot = F.one_hot(tokens, weight.shape[0]).float().requires_grad_(True)
    torch.sigmoid(model.from_embeddings((one_hot @ weight)[None])[0]).backward()
    return one_hot.grad[list(positions)]


def grad_wrt_embeddings(model, tokens, positions):
    emb = model.embedding(tokens).detach().requires_grad_(True)
    model.from_embeddings(emb[None])[0].backward()
    return emb.grad[list(positions)]  # [P, d]: never mapped back to the vocabulary


def grad_all_positions(model, tokens, positions):
    weight = model.embedding.weight
    one_hot = F.one_hot(tokens, weight.shape[0]).float().requires_grad_(True)
    model.from_embeddings((one_hot @ weight)[None])[0].backward()
    return one_hot.grad  # ignores `positions`


def grad_mask_positions(model, tokens, positions):
    mask = torch.zeros(len(tokens), dtype=torch.bool)
    mask[list(positions)] = True
    return grad_reference_like(model, tokens, range(len(tokens)))[mask]   # rows come back in sorted order


def grad_reference_like(model, tokens, positions):
    weight = model.embedding.weight
    one_hot = F.one_hot(tokens, weight.shape[0]).float().requires_grad_(True)
    model.from_embeddings((one_hot @ weight)[None])[0].backward()
    return one_hot.grad[list(positions)]


def _gcg(model, tokens, free_positions, allowed, top_k, *, largest=False, respect_allowed=True, evaluate=True,
         worst=False):
    grads = grad_reference_like(model, tokens, free_positions)
    if respect_allowed:
        mask = torch.full_like(grads, float("inf") if not largest else -float("inf"))
        mask[:, allowed] = 0.0
        grads = grads + mask
    top = grads.topk(top_k, dim=1, largest=largest).indices
    candidates = []
    for i, pos in enumerate(free_positions):
        for tok in top[i][: (top_k if evaluate else 1)]:
            cand = tokens.clone()
            cand[pos] = tok
            candidates.append(cand)
    batch = torch.stack(candidates)
    if not evaluate:  # trusts the linear estimate: takes the single most negative gradient entry
        flat = grads.argmin()
        cand = tokens.clone()
        cand[free_positions[int(flat) // grads.shape[1]]] = int(flat) % grads.shape[1]
        return cand
    with torch.no_grad():
        scores = model.from_embeddings(model.embedding(batch))
    return batch[scores.argmax() if worst else scores.argmin()].clone()


def gcg_wrong_sign(model, tokens, free_positions, allowed, top_k):
    return _gcg(model, tokens, free_positions, allowed, top_k, largest=True)


def gcg_ignores_allowed(model, tokens, free_positions, allowed, top_k):
    return _gcg(model, tokens, free_positions, allowed, top_k, respect_allowed=False)


def gcg_no_exact_evaluation(model, tokens, free_positions, allowed, top_k):
    return _gcg(model, tokens, free_positions, allowed, top_k, evaluate=False)


def gcg_keeps_worst(model, tokens, free_positions, allowed, top_k):
    return _gcg(model, tokens, free_positions, allowed, top_k, worst=True)


def gcg_swaps_every_position(model, tokens, free_positions, allowed, top_k):
    grads = grad_reference_like(model, tokens, free_positions)
    mask = torch.full_like(grads, float("inf"))
    mask[:, allowed] = 0.0
    best = (grads + mask).argmin(dim=1)
    out = tokens.clone()
    out[list(free_positions)] = best  # one swap per position in a single step
    return out


def gcg_assumes_suffix(model, tokens, free_positions, allowed, top_k):
    grads = grad_reference_like(model, tokens, free_positions)
    mask = torch.full_like(grads, float("inf"))
    mask[:, allowed] = 0.0
    top = (grads + mask).topk(top_k, dim=1, largest=False).indices
    candidates = [tokens.clone()]
    for i in range(len(free_positions)):
        for tok in top[i]:
            cand = tokens.clone()
            cand[len(tokens) - len(free_positions) + i] = tok   # writes to the last positions, not free_positions[i]
            candidates.append(cand)
    batch = torch.stack(candidates)
    with torch.no_grad():
        return batch[model(batch).argmin()].clone()


def _wilson(k, n, z=1.96):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _defence(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests, *, fresh_from_training=False,
             refusals_on=None, interval=_wilson, attack=True):
    with torch.no_grad():
        asr_training = float((score_fn(training_attacks) <= 0).float().mean())
        refused = score_fn(benign_requests if refusals_on is None else refusals_on) > 0
    if fresh_from_training:  # re-scores the attacks the defence was trained on
        successes = int((score_fn(training_attacks) <= 0).sum())
        n = len(training_attacks)
    else:
        successes = 0
        for request in fresh_requests:
            adversarial = attack_fn(score_fn, request) if attack else request
            with torch.no_grad():
                successes += int(score_fn(adversarial[None])[0] <= 0)
        n = len(fresh_requests)
    return {"asr_training": asr_training, "asr_fresh": successes / n, "asr_fresh_interval": interval(successes, n),
            "false_refusal_rate": float(refused.float().mean())}


def defence_refuses_at_zero(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests):
    with torch.no_grad():
        asr_training = float((score_fn(training_attacks) < 0).float().mean())   # a score of exactly 0 is not refused
        false_refusals = float((score_fn(benign_requests) >= 0).float().mean())
    successes = 0
    for request in fresh_requests:
        adversarial = attack_fn(score_fn, request)
        with torch.no_grad():
            successes += int(score_fn(adversarial[None])[0] < 0)
    n = len(fresh_requests)
    return {"asr_training": asr_training, "asr_fresh": successes / n, "asr_fresh_interval": _wilson(successes, n),
            "false_refusal_rate": false_refusals}


def defence_on_training_attacks(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests):
    return _defence(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests, fresh_from_training=True)


def defence_refusals_on_harmful(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests):
    return _defence(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests, refusals_on=fresh_requests)


def defence_wald_interval(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests):
    return _defence(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests, interval=wilson_is_wald)


def defence_never_attacks(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests):
    return _defence(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests, attack=False)


def defence_attacks_under_no_grad(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests):
    with torch.no_grad():
        return _defence(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests)


def direction_unnormalised(acts_harmful, acts_benign):
    return acts_harmful.mean(0) - acts_benign.mean(0)


def direction_reversed(acts_harmful, acts_benign):
    d = acts_benign.mean(0) - acts_harmful.mean(0)
    return d / d.norm()


def direction_wrong_axis(acts_harmful, acts_benign):
    d = acts_harmful.mean(1).mean() - acts_benign.mean(1).mean()  # averages the features away
    return d / d.abs()


def monitor_mean(hidden, direction):
    return (hidden @ direction).mean(dim=1)


def monitor_abs(hidden, direction):
    return (hidden @ direction).abs().amax(dim=1)


def monitor_pooled_first(hidden, direction):
    return hidden.amax(dim=1) @ direction  # max of each feature, then projected: not a projection's max


def threshold_wrong_tail(benign_scores, max_false_refusal):
    return float(torch.quantile(benign_scores.flatten().double(), max_false_refusal))


def threshold_off_by_one(benign_scores, max_false_refusal):
    ordered = benign_scores.flatten().sort(descending=True).values
    k = int(math.floor(max_false_refusal * ordered.numel() + 1e-9))
    return float(ordered[min(k + 1, ordered.numel() - 1)])  # one refusal too many


def threshold_too_strict(benign_scores, max_false_refusal):
    ordered = benign_scores.flatten().sort(descending=True).values
    k = int(math.floor(max_false_refusal * ordered.numel() + 1e-9))
    return float(ordered[max(k - 1, 0)])  # wastes part of the budget


def threshold_gaussian(benign_scores, max_false_refusal):
    s = benign_scores.flatten()
    return float(s.mean() + 2 * s.std())



# --------------------------------------------------------------------------- the attack loop and rerouting

def _step(model, tokens, free_positions, allowed, top_k):
    from safety_roadmap.reference.red_teaming_and_robustness import gcg_step
    return gcg_step(model, tokens, free_positions, allowed, top_k)


def _lets_through(model, tokens):
    with torch.no_grad():
        return bool(model(tokens[None])[0] <= 0)


def attack_no_early_stop(model, request, free_positions, allowed, steps, top_k):
    tokens = request.clone()
    for _ in range(steps):
        tokens = _step(model, tokens, free_positions, allowed, top_k)
    return tokens, steps


def attack_checks_after(model, request, free_positions, allowed, steps, top_k):
    tokens, taken = request.clone(), 0
    for _ in range(steps):
        tokens = _step(model, tokens, free_positions, allowed, top_k)
        taken += 1
        if _lets_through(model, tokens):
            break
    return tokens, taken


def attack_counts_queries(model, request, free_positions, allowed, steps, top_k):
    tokens, taken = request.clone(), 0
    for _ in range(steps):
        if _lets_through(model, tokens):
            break
        tokens = _step(model, tokens, free_positions, allowed, top_k)
        taken += 1 + len(free_positions) * top_k          # counts candidates, not steps
    return tokens, taken


def attack_off_by_one(model, request, free_positions, allowed, steps, top_k):
    tokens, taken = request.clone(), 0
    for _ in range(steps + 1):                            # one step too many
        if _lets_through(model, tokens):
            break
        tokens = _step(model, tokens, free_positions, allowed, top_k)
        taken += 1
    return tokens, taken


def attack_restarts_each_step(model, request, free_positions, allowed, steps, top_k):
    tokens, taken = request.clone(), 0
    for _ in range(steps):
        if _lets_through(model, tokens):
            break
        tokens = _step(model, request, free_positions, allowed, top_k)   # always from the original request
        taken += 1
    return tokens, taken


def attack_while_loop(model, request, free_positions, allowed, steps, top_k):
    tokens, taken = request.clone(), 0
    while taken < steps and not _lets_through(model, tokens):
        tokens = _step(model, tokens, list(free_positions), allowed, top_k)
        taken += 1
    return tokens, taken


def losses_unnormalised(h_harmful, target, h_benign, h_benign_frozen):
    return ((h_harmful - target) ** 2).sum(-1).mean(), ((h_benign - h_benign_frozen) ** 2).sum(-1).mean()


def losses_not_squared(h_harmful, target, h_benign, h_benign_frozen):
    return ((h_harmful - target).norm(dim=-1).mean() / target.norm(),
            (h_benign - h_benign_frozen).norm(dim=-1).mean() / h_benign_frozen.norm(dim=-1).mean())


def losses_per_row_retain(h_harmful, target, h_benign, h_benign_frozen):
    reroute = ((h_harmful - target) ** 2).sum(-1).mean() / (target ** 2).sum()
    return reroute, (((h_benign - h_benign_frozen) ** 2).sum(-1) / (h_benign_frozen ** 2).sum(-1)).mean()


def losses_detached(h_harmful, target, h_benign, h_benign_frozen):
    reroute = ((h_harmful.detach() - target) ** 2).sum(-1).mean() / (target ** 2).sum()
    retain = ((h_benign - h_benign_frozen) ** 2).sum(-1).mean() / (h_benign_frozen ** 2).sum(-1).mean()
    return reroute, retain


def losses_target_scale_for_retain(h_harmful, target, h_benign, h_benign_frozen):
    scale = (target ** 2).sum()
    return ((h_harmful - target) ** 2).sum(-1).mean() / scale, ((h_benign - h_benign_frozen) ** 2).sum(-1).mean() / scale


def losses_mse(h_harmful, target, h_benign, h_benign_frozen):
    width = h_harmful.shape[-1]
    reroute = F.mse_loss(h_harmful, target.expand_as(h_harmful)) * width / target.pow(2).sum()
    retain = F.mse_loss(h_benign, h_benign_frozen) / h_benign_frozen.pow(2).mean()
    return reroute, retain


def _rerouting_losses(h, t, b, bf):
    from safety_roadmap.reference.red_teaming_and_robustness import rerouting_losses
    return rerouting_losses(h, t, b, bf)


def _reroute(model, harmful_batch, benign_batch, target, positions, steps, lr, alpha, seed, *, copy_model=True,
             freeze_readout=True, use_alpha=True, retain_self=False, all_positions=False, one_batch=False,
             seeded=True, freeze_result=True):
    import copy
    g = torch.Generator().manual_seed(seed) if seeded else torch.Generator().manual_seed(torch.seed() % 2 ** 31)
    tuned = copy.deepcopy(model) if copy_model else model
    tuned.requires_grad_(True)
    if freeze_readout:
        tuned.readout.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in tuned.parameters() if p.requires_grad], lr=lr)
    fixed = (harmful_batch(g), benign_batch(g)) if one_batch else None
    for _ in range(steps):
        harmful, benign = fixed if one_batch else (harmful_batch(g), benign_batch(g))
        source = tuned if retain_self else model
        with torch.no_grad():
            frozen = source.hidden(source.embedding(benign))
        h = tuned.hidden(tuned.embedding(harmful))
        h = h if all_positions else h[:, list(positions)]
        reroute, retain = _rerouting_losses(h, target, tuned.hidden(tuned.embedding(benign)), frozen)
        loss = reroute + (alpha if use_alpha else 1.0) * retain
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return tuned.requires_grad_(False) if freeze_result else tuned


def reroute_in_place(model, harmful_batch, benign_batch, target, positions, steps=200, lr=1e-2, alpha=3.0, seed=0):
    return _reroute(model, harmful_batch, benign_batch, target, positions, steps, lr, alpha, seed, copy_model=False)


def reroute_trains_readout(model, harmful_batch, benign_batch, target, positions, steps=200, lr=1e-2, alpha=3.0,
                           seed=0):
    return _reroute(model, harmful_batch, benign_batch, target, positions, steps, lr, alpha, seed,
                    freeze_readout=False)


def reroute_ignores_alpha(model, harmful_batch, benign_batch, target, positions, steps=200, lr=1e-2, alpha=3.0,
                          seed=0):
    return _reroute(model, harmful_batch, benign_batch, target, positions, steps, lr, alpha, seed, use_alpha=False)


def reroute_retain_against_self(model, harmful_batch, benign_batch, target, positions, steps=200, lr=1e-2,
                                alpha=3.0, seed=0):
    return _reroute(model, harmful_batch, benign_batch, target, positions, steps, lr, alpha, seed, retain_self=True)


def reroute_all_positions(model, harmful_batch, benign_batch, target, positions, steps=200, lr=1e-2, alpha=3.0,
                          seed=0):
    return _reroute(model, harmful_batch, benign_batch, target, positions, steps, lr, alpha, seed,
                    all_positions=True)


def reroute_one_batch(model, harmful_batch, benign_batch, target, positions, steps=200, lr=1e-2, alpha=3.0, seed=0):
    return _reroute(model, harmful_batch, benign_batch, target, positions, steps, lr, alpha, seed, one_batch=True)


def reroute_unseeded(model, harmful_batch, benign_batch, target, positions, steps=200, lr=1e-2, alpha=3.0, seed=0):
    return _reroute(model, harmful_batch, benign_batch, target, positions, steps, lr, alpha, seed, seeded=False)


def reroute_returns_trainable(model, harmful_batch, benign_batch, target, positions, steps=200, lr=1e-2, alpha=3.0,
                              seed=0):
    return _reroute(model, harmful_batch, benign_batch, target, positions, steps, lr, alpha, seed,
                    freeze_result=False)


def reroute_state_dict_copy(model, harmful_batch, benign_batch, target, positions, steps=200, lr=1e-2, alpha=3.0,
                            seed=0):
    # copies through a state dict instead of deepcopy, and builds the optimizer from named parameters
    import copy
    tuned = copy.deepcopy(model)
    tuned.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
    for name, p in tuned.named_parameters():
        p.requires_grad_(not name.startswith("readout"))
    optimizer = torch.optim.Adam([p for _, p in tuned.named_parameters() if p.requires_grad], lr=lr)
    g = torch.Generator()
    g.manual_seed(seed)
    for _ in range(steps):
        harmful = harmful_batch(g)
        benign = benign_batch(g)
        optimizer.zero_grad()
        with torch.no_grad():
            reference_benign = model.hidden(model.embedding(benign))
        reroute, retain = _rerouting_losses(tuned.hidden(tuned.embedding(harmful))[:, list(positions)], target,
                                            tuned.hidden(tuned.embedding(benign)), reference_benign)
        (reroute + alpha * retain).backward()
        optimizer.step()
    for p in tuned.parameters():
        p.requires_grad_(False)
    return tuned


MUTANTS = {
    "wilson_interval": [wilson_is_wald, wilson_fixed_z, wilson_centred_on_p, wilson_missing_square],
    "random_search_attack": [random_returns_last, random_argmax, random_any_token, random_all_positions,
                             random_over_budget, random_in_place, random_global_rng, random_reseeds, random_never_last,
                             random_rounded, random_fixed_budget, random_suffix_positions],
    "token_gradients": [grad_flipped, grad_of_probability, grad_wrt_embeddings, grad_all_positions,
                        grad_mask_positions],
    "gcg_step": [gcg_wrong_sign, gcg_ignores_allowed, gcg_no_exact_evaluation, gcg_keeps_worst,
                 gcg_swaps_every_position, gcg_assumes_suffix],
    "evaluate_defence": [defence_on_training_attacks, defence_refusals_on_harmful, defence_wald_interval,
                         defence_never_attacks, defence_attacks_under_no_grad, defence_refuses_at_zero],
    "harmful_direction": [direction_unnormalised, direction_reversed, direction_wrong_axis],
    "monitor_scores": [monitor_mean, monitor_abs, monitor_pooled_first],
    "gcg_attack": [attack_no_early_stop, attack_checks_after, attack_counts_queries, attack_off_by_one,
                   attack_restarts_each_step],
    "rerouting_losses": [losses_unnormalised, losses_not_squared, losses_per_row_retain, losses_detached,
                         losses_target_scale_for_retain],
    "train_rerouting": [reroute_in_place, reroute_ignores_alpha, reroute_retain_against_self,
                        reroute_all_positions, reroute_one_batch, reroute_unseeded, reroute_returns_trainable],
    "refusal_threshold": [threshold_wrong_tail, threshold_off_by_one, threshold_too_strict, threshold_gaussian],
}

# --------------------------------------------------------------------------- correct alternatives


def wilson_quadratic(successes, n, z=1.96):
    # the interval is where (p_hat - p)^2 = z^2 p (1 - p) / n: a quadratic a p^2 + b p + c = 0
    p_hat = successes / n
    a = 1 + z ** 2 / n
    b = -(2 * p_hat + z ** 2 / n)
    c = p_hat ** 2
    root = math.sqrt(max(b * b - 4 * a * c, 0.0))
    return max(0.0, (-b - root) / (2 * a)), min(1.0, (-b + root) / (2 * a))


def random_one_at_a_time(score_fn, request, free_positions, allowed, n_queries, generator):
    best, best_score = None, float("inf")
    for _ in range(n_queries):
        cand = request.clone()
        for pos in free_positions:
            cand[pos] = allowed[torch.randint(len(allowed), (1,), generator=generator)]
        score = float(score_fn(cand[None])[0])
        if score < best_score:
            best, best_score = cand, score
    return best


def random_multinomial(score_fn, request, free_positions, allowed, n_queries, generator):
    weights = torch.ones(n_queries * len(free_positions), len(allowed))
    picks = torch.multinomial(weights, 1, generator=generator).reshape(n_queries, len(free_positions))
    candidates = request.clone().repeat(n_queries, 1)
    for j, pos in enumerate(free_positions):
        candidates[:, pos] = allowed[picks[:, j]]
    scores = score_fn(candidates)
    return candidates[int(torch.argmin(scores))]


def grad_via_embedding_matrix(model, tokens, positions):
    emb = model.embedding(tokens).detach().requires_grad_(True)        # [L, d]
    logit = model.from_embeddings(emb[None])[0]
    (g,) = torch.autograd.grad(logit, emb)
    return g[list(positions)] @ model.embedding.weight.T                # [P, V]


def grad_relative_to_current(model, tokens, positions):
    g = grad_via_embedding_matrix(model, tokens, positions)
    return g - g.gather(1, tokens[list(positions)][:, None])           # estimated change from each swap


def gcg_exhaustive(model, tokens, free_positions, allowed, top_k):
    # tries every allowed token at every free position: at least as good as the top-k shortlist
    candidates = [tokens.clone()]
    for pos in free_positions:
        for tok in allowed:
            cand = tokens.clone()
            cand[pos] = tok
            candidates.append(cand)
    batch = torch.stack(candidates)
    with torch.no_grad():
        return batch[model(batch).argmin()].clone()


def gcg_always_moves(model, tokens, free_positions, allowed, top_k):
    # classic GCG: takes the best candidate swap even when no candidate beats the current tokens
    return _gcg(model, tokens, free_positions, allowed, top_k)


def defence_vectorised(score_fn, attack_fn, training_attacks, fresh_requests, benign_requests):
    adversarial = torch.stack([attack_fn(score_fn, r) for r in fresh_requests])
    with torch.no_grad():
        evaded = score_fn(adversarial) <= 0
        out = {"asr_training": (score_fn(training_attacks) <= 0).double().mean().item(),
               "asr_fresh": evaded.double().mean().item(),
               "false_refusal_rate": (score_fn(benign_requests) > 0).double().mean().item()}
    out["asr_fresh_interval"] = wilson_quadratic(int(evaded.sum()), len(evaded))
    return out


def direction_normalize(acts_harmful, acts_benign):
    return F.normalize(acts_harmful.sum(0) / len(acts_harmful) - acts_benign.sum(0) / len(acts_benign), dim=0)


def monitor_einsum(hidden, direction):
    return torch.einsum("nlh,h->nl", hidden, direction).max(dim=1).values


def threshold_by_counting(benign_scores, max_false_refusal):
    scores = sorted(float(s) for s in benign_scores.flatten())
    n = len(scores)
    budget = math.floor(max_false_refusal * n + 1e-9)
    for t in scores:                      # ascending: the first one within budget is the smallest
        if sum(s > t for s in scores) <= budget:
            return t
    return scores[-1]


def threshold_midpoint(benign_scores, max_false_refusal):
    ordered = benign_scores.flatten().sort(descending=True).values
    k = int(math.floor(max_false_refusal * ordered.numel() + 1e-9))
    if k == 0 or k >= ordered.numel():
        return float(ordered[min(k, ordered.numel() - 1)])
    return float(ordered[k] + ordered[k - 1]) / 2 if ordered[k] < ordered[k - 1] else float(ordered[k])


ALTERNATIVES = {
    "wilson_interval": [wilson_quadratic],
    "random_search_attack": [random_one_at_a_time, random_multinomial],
    "token_gradients": [grad_via_embedding_matrix, grad_relative_to_current],
    "gcg_step": [gcg_exhaustive, gcg_always_moves],
    "evaluate_defence": [defence_vectorised],
    "harmful_direction": [direction_normalize],
    "monitor_scores": [monitor_einsum],
    "gcg_attack": [attack_while_loop],
    "rerouting_losses": [losses_mse],
    "train_rerouting": [reroute_state_dict_copy],
    "refusal_threshold": [threshold_by_counting, threshold_midpoint],
}
