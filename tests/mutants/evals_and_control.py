"""Mutants and alternatives for chapter 16_evals_and_control."""
from __future__ import annotations

import copy
import math
from statistics import NormalDist

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- error bars


def se_population(scores):
    s = np.asarray(scores, float)
    return float(s.std() / math.sqrt(s.size))


def se_over_n(scores):
    s = np.asarray(scores, float)
    return float(s.std(ddof=1) / s.size)


def se_binomial_formula(scores):
    # p(1-p)/n is the ddof=0 variance: off for small n and wrong for partial credit
    p = float(np.mean(scores))
    return math.sqrt(p * (1 - p) / len(scores))


def se_loop(scores):
    xs = [float(v) for v in scores]
    n = len(xs)
    mean = sum(xs) / n
    var = sum((v - mean) ** 2 for v in xs) / (n - 1)
    return math.sqrt(var / n)


def clustered_iid(scores, clusters):
    s = np.asarray(scores, float)
    return float(s.std(ddof=1) / math.sqrt(s.size))


def clustered_raw_sums(scores, clusters):
    s = np.asarray(scores, float)
    total = 0.0
    for c in np.unique(clusters):
        total += s[clusters == c].sum() ** 2
    return math.sqrt(total) / s.size


def clustered_cluster_means(scores, clusters):
    s = np.asarray(scores, float)
    means = np.array([s[clusters == c].mean() for c in np.unique(clusters)])
    return float(means.std(ddof=1) / math.sqrt(len(means))) if len(means) > 1 else 0.0


def clustered_divides_by_clusters(scores, clusters):
    s = np.asarray(scores, float)
    d = s - s.mean()
    sums = np.array([d[clusters == c].sum() for c in np.unique(clusters)])
    return float(math.sqrt((sums ** 2).sum()) / len(sums))


def clustered_adjacent_runs(scores, clusters):
    # assumes a cluster's items sit next to each other (true only for sorted data)
    s = np.asarray(scores, float)
    d = s - s.mean()
    sums, run = [], d[0]
    for i in range(1, len(s)):
        if clusters[i] == clusters[i - 1]:
            run += d[i]
        else:
            sums.append(run)
            run = d[i]
    sums.append(run)
    return math.sqrt(sum(x * x for x in sums)) / len(s)


def clustered_dict_loop(scores, clusters):
    s = [float(v) for v in scores]
    mean = sum(s) / len(s)
    per = {}
    for v, c in zip(s, clusters):
        per[c] = per.get(c, 0.0) + (v - mean)
    return math.sqrt(sum(x * x for x in per.values())) / len(s)


def _cse(d, clusters):
    return clustered_dict_loop(d, clusters)


def paired_unpaired(a, b, clusters):
    return float(np.mean(a) - np.mean(b)), math.hypot(_cse(a, clusters), _cse(b, clusters))


def paired_b_minus_a(a, b, clusters):
    d = np.asarray(b, float) - np.asarray(a, float)
    return float(d.mean()), _cse(d, clusters)


def paired_iid(a, b, clusters):
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))


def paired_loop(a, b, clusters):
    d = [float(x) - float(y) for x, y in zip(a, b)]
    return sum(d) / len(d), _cse(np.array(d), clusters)


def power_one_sided(delta, sd, alpha=0.05, power=0.8, two_sided=True):
    z = NormalDist()
    return math.ceil(((z.inv_cdf(1 - alpha) + z.inv_cdf(power)) * sd / abs(delta)) ** 2)


def power_rounded(delta, sd, alpha=0.05, power=0.8, two_sided=True):
    z = NormalDist()
    za = z.inv_cdf(1 - alpha / 2) if two_sided else z.inv_cdf(1 - alpha)
    return int(round(((za + z.inv_cdf(power)) * sd / abs(delta)) ** 2))


def power_fixed_alpha(delta, sd, alpha=0.05, power=0.8, two_sided=True):
    z = NormalDist()
    za = z.inv_cdf(0.975) if two_sided else z.inv_cdf(0.95)  # ignores alpha
    return math.ceil(((za + z.inv_cdf(power)) * sd / abs(delta)) ** 2)


def power_no_abs(delta, sd, alpha=0.05, power=0.8, two_sided=True):
    z = NormalDist()
    za = z.inv_cdf(1 - alpha / 2) if two_sided else z.inv_cdf(1 - alpha)
    n = ((za + z.inv_cdf(power)) * sd / delta) ** 2
    return math.ceil(n) if delta > 0 else -math.ceil(n)


def power_search(delta, sd, alpha=0.05, power=0.8, two_sided=True):
    # a correct alternative: the smallest n whose normal-approximation power reaches the target
    z = NormalDist()
    za = z.inv_cdf(1 - alpha / 2) if two_sided else z.inv_cdf(1 - alpha)
    n = 1
    while z.cdf(abs(delta) * math.sqrt(n) / sd - za) < power - 1e-12:
        n += 1
    return n


def contamination_iid(orig, para, clusters):
    d = np.asarray(orig, float) - np.asarray(para, float)
    return float(d.mean() / (d.std(ddof=1) / math.sqrt(d.size)))


def contamination_reversed(orig, para, clusters):
    return -contamination_alt(orig, para, clusters)


def contamination_raw_difference(orig, para, clusters):
    return float(np.mean(orig) - np.mean(para))


def contamination_alt(orig, para, clusters):
    diff, se = paired_loop(orig, para, clusters)
    if se == 0:
        return 0.0 if diff == 0 else (math.inf if diff > 0 else -math.inf)
    return diff / se


# --------------------------------------------------------------------------- sandbagging


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def noise_in_place(model, x, y, scales, n_draws, generator):
    out = []
    for scale in scales:
        accs = []
        for _ in range(n_draws):
            with torch.no_grad():
                for p in model.parameters():  # the original model: noise piles up
                    p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
            accs.append(_acc(model, x, y))
        out.append(sum(accs) / n_draws)
    return np.array(out)


def noise_variance(model, x, y, scales, n_draws, generator):
    out = []
    for scale in scales:
        total = 0.0
        for _ in range(n_draws):
            m = copy.deepcopy(model)
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(scale ** 2 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
            total += _acc(m, x, y)
        out.append(total / n_draws)
    return np.array(out)


def noise_global_rng(model, x, y, scales, n_draws, generator):
    out = []
    for scale in scales:
        total = 0.0
        for _ in range(n_draws):
            m = copy.deepcopy(model)
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(scale * torch.randn(p.shape, dtype=p.dtype))
            total += _acc(m, x, y)
        out.append(total / n_draws)
    return np.array(out)


def noise_one_draw_per_scale(model, x, y, scales, n_draws, generator):
    out = []
    for scale in scales:
        m = copy.deepcopy(model)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
        out.append(_acc(m, x, y))  # ignores n_draws
    return np.array(out)


def noise_randn_like_alt(model, x, y, scales, n_draws, generator):
    # correct: state_dict order equals parameters() order here; noise via torch.normal
    results = np.zeros(len(scales))
    for i, scale in enumerate(scales):
        for _ in range(n_draws):
            m = copy.deepcopy(model)
            for p in m.parameters():
                p.data = p.data + torch.normal(0.0, 1.0, size=p.shape, generator=generator, dtype=p.dtype) * scale
            results[i] += _acc(m, x, y)
    return results / n_draws


def tune_original(model, x_few, y_few, x_eval, y_eval, steps=30, lr=1e-3):
    before = _acc(model, x_eval, y_eval)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(model(x_few), y_few)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return before, _acc(model, x_eval, y_eval)


def tune_no_zero_grad(model, x_few, y_few, x_eval, y_eval, steps=30, lr=1e-3):
    before = _acc(model, x_eval, y_eval)
    m = copy.deepcopy(model)
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    for _ in range(steps):
        F.cross_entropy(m(x_few), y_few).backward()
        opt.step()
    return before, _acc(m, x_eval, y_eval)


def tune_fixed_steps(model, x_few, y_few, x_eval, y_eval, steps=30, lr=1e-3):
    before = _acc(model, x_eval, y_eval)
    m = copy.deepcopy(model)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)  # ignores lr
    for _ in range(30):  # ignores steps
        loss = F.cross_entropy(m(x_few), y_few)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, _acc(m, x_eval, y_eval)


def tune_eval_on_few(model, x_few, y_few, x_eval, y_eval, steps=30, lr=1e-3):
    before = _acc(model, x_eval, y_eval)
    m = copy.deepcopy(model)
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(m(x_few), y_few)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, _acc(m, x_few, y_few)  # measured on the training examples


def tune_state_dict_copy(model, x_few, y_few, x_eval, y_eval, steps=30, lr=1e-3):
    # correct: a fresh copy via state_dict, NLL of log-softmax (= cross-entropy)
    with torch.no_grad():
        before = (model(x_eval).argmax(1) == y_eval).double().mean().item()
    m = copy.deepcopy(model)
    m.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.nll_loss(F.log_softmax(m(x_few), dim=-1), y_few).backward()
        opt.step()
    with torch.no_grad():
        after = (m(x_eval).argmax(1) == y_eval).double().mean().item()
    return before, after


# --------------------------------------------------------------------------- gridworld

_MOVES = ((0, 1), (1, 0), (0, -1), (-1, 0))


def _feats(pos, goal):
    f = np.zeros(31)
    f[pos[0] * 5 + pos[1]] = 1
    f[25 + int(np.sign(goal[0] - pos[0])) + 1] = 1
    f[28 + int(np.sign(goal[1] - pos[1])) + 1] = 1
    return f


def _move(pos, a):
    dx, dy = _MOVES[a]
    return min(4, max(0, pos[0] + dx)), min(4, max(0, pos[1] + dy))


def reach_training_layout(W, goal, max_steps=20):
    return reach_alt(W, (4, 4), max_steps)


def reach_start_not_counted(W, goal, max_steps=20):
    hits = 0
    for x in range(5):
        for y in range(5):
            pos = (x, y)
            for _ in range(max_steps):
                pos = _move(pos, int(np.argmax(W @ _feats(pos, goal))))
                if pos == tuple(goal):
                    hits += 1
                    break
    return hits / 25


def reach_one_step_short(W, goal, max_steps=20):
    return reach_alt(W, goal, max_steps - 1)


def reach_ignores_max_steps(W, goal, max_steps=20):
    return reach_alt(W, goal, 20)


def reach_alt(W, goal, max_steps=20):
    goal = tuple(goal)
    ok = 0
    for x in range(5):
        for y in range(5):
            pos, steps = (x, y), 0
            while pos != goal and steps < max_steps:
                q = [float(W[a] @ _feats(pos, goal)) for a in range(4)]
                pos = _move(pos, q.index(max(q)))  # the first maximum, as argmax does
                steps += 1
            ok += pos == goal
    return ok / 25


# --------------------------------------------------------------------------- control

def _phi(x):
    return NormalDist().cdf(x)


def outcomes_defer_first(ta, td, sep):
    deferred = 1 - _phi(td - sep)
    return 0.0, deferred, 1 - deferred


def outcomes_no_min(ta, td, sep):
    audited = 1 - _phi(ta - sep)
    deferred = (1 - _phi(td - sep)) - audited  # negative when td > ta
    return audited, deferred, 1 - audited - deferred


def outcomes_alt(ta, td, sep):
    lo = min(ta, td)
    through = _phi(lo - sep)
    audited = 1 - _phi(ta - sep)
    return audited, 1 - through - audited, through


def safety_per_output(p, n, ta, td, sep):
    return 1 - p * outcomes_alt(ta, td, sep)[2]


def safety_caught_continues(p, n, ta, td, sep):
    return (1 - p * outcomes_alt(ta, td, sep)[2]) ** n


def safety_ignores_deferral(p, n, ta, td, sep):
    a, d, t = outcomes_alt(ta, td, sep)
    return safety_alt(p, n, ta, ta, sep)


def safety_alt(p, n, ta, td, sep):
    # a loop over tasks: P(still playing) and P(red has won) so far
    audited, deferred, through = outcomes_alt(ta, td, sep)
    playing, red = 1.0, 0.0
    for _ in range(n):
        red += playing * p * through
        playing *= (1 - p) + p * deferred
    return 1 - red


def simulate_scores_first(p, n, ta, td, sep, runs, generator):
    scores = generator.standard_normal((runs, n))
    attacks = generator.random((runs, n)) < p
    return _judge(attacks, scores + sep * attacks, ta, td)


def simulate_any_through(p, n, ta, td, sep, runs, generator):
    attacks = generator.random((runs, n)) < p
    scores = generator.standard_normal((runs, n)) + sep * attacks
    through = attacks & (scores <= min(ta, td))
    return float(1 - through.any(1).mean())  # ignores that a caught backdoor ends the run


def simulate_per_task(p, n, ta, td, sep, runs, generator):
    attacks = generator.random((runs, n)) < p
    scores = generator.standard_normal((runs, n)) + sep * attacks
    through = attacks & (scores <= min(ta, td))
    return float(1 - through.mean())  # safety per output


def _judge(attacks, scores, ta, td):
    safe = 0
    for run_attacks, run_scores in zip(attacks, scores):
        outcome = True
        for attacked, s in zip(run_attacks, run_scores):
            if not attacked:
                continue
            if s > ta:
                break
            if s <= min(ta, td):
                outcome = False
                break
        safe += outcome
    return safe / len(attacks)


def simulate_alt(p, n, ta, td, sep, runs, generator):
    attacks = generator.random((runs, n)) < p
    scores = generator.standard_normal((runs, n)) + sep * attacks
    return _judge(attacks, scores, ta, td)


def _useful(ta, td, q):
    lo = min(ta, td)
    return 1 - max(0.0, _phi(ta) - _phi(lo)) * (1 - q)


def frontier_best_case(tds, n, ta, sep, q, grid):
    return (np.array([_useful(ta, td, q) for td in tds]),
            np.array([max(safety_alt(p, n, ta, td, sep) for p in grid) for td in tds]))


def frontier_fixed_p(tds, n, ta, sep, q, grid):
    return (np.array([_useful(ta, td, q) for td in tds]),
            np.array([safety_alt(0.01, n, ta, td, sep) for td in tds]))


def frontier_swapped(tds, n, ta, sep, q, grid):
    use, safe = frontier_alt(tds, n, ta, sep, q, grid)
    return safe, use


def frontier_alt(tds, n, ta, sep, q, grid):
    use, safe = [], []
    for td in tds:
        use.append(_useful(ta, td, q))
        safe.append(min(safety_alt(p, n, ta, td, sep) for p in grid))
    return np.array(use), np.array(safe)


MUTANTS = {
    "iid_standard_error": [se_population, se_over_n, se_binomial_formula],
    "clustered_standard_error": [clustered_iid, clustered_raw_sums, clustered_cluster_means,
                                 clustered_divides_by_clusters, clustered_adjacent_runs],
    "paired_difference": [paired_unpaired, paired_b_minus_a, paired_iid],
    "items_needed": [power_one_sided, power_rounded, power_fixed_alpha, power_no_abs],
    "contamination_z": [contamination_iid, contamination_reversed, contamination_raw_difference],
    "noise_sweep": [noise_in_place, noise_variance, noise_global_rng, noise_one_draw_per_scale],
    "finetune_recovery": [tune_original, tune_no_zero_grad, tune_fixed_steps, tune_eval_on_few],
    "goal_reach_rate": [reach_training_layout, reach_start_not_counted, reach_one_step_short,
                        reach_ignores_max_steps],
    "outcome_probabilities": [outcomes_defer_first, outcomes_no_min],
    "deployment_safety": [safety_per_output, safety_caught_continues, safety_ignores_deferral],
    "simulate_safety": [simulate_scores_first, simulate_any_through, simulate_per_task],
    "safety_usefulness_frontier": [frontier_best_case, frontier_fixed_p, frontier_swapped],
    "misgeneralisation_quiz": ["a", "b", "d"],
}

ALTERNATIVES = {
    "iid_standard_error": [se_loop],
    "clustered_standard_error": [clustered_dict_loop],
    "paired_difference": [paired_loop],
    "items_needed": [power_search],
    "contamination_z": [contamination_alt],
    "noise_sweep": [noise_randn_like_alt],
    "finetune_recovery": [tune_state_dict_copy],
    "goal_reach_rate": [reach_alt],
    "outcome_probabilities": [outcomes_alt],
    "deployment_safety": [safety_alt],
    "simulate_safety": [simulate_alt],
    "safety_usefulness_frontier": [frontier_alt],
    "misgeneralisation_quiz": ["c", " (C) "],
}
