"""Mutants and alternatives for chapter 10_reward_hacking_and_rlhf."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- mutants


def q_ignores_done(Q, s, a, r, s_next, done, alpha, gamma):
    Q = Q.copy()
    Q[s, a] += alpha * (r + gamma * Q[s_next].max() - Q[s, a])  # bootstraps past the end of the episode
    return Q


def q_sarsa_like(Q, s, a, r, s_next, done, alpha, gamma):
    Q = Q.copy()
    target = r if done else r + gamma * Q[s_next, a]
    Q[s, a] += alpha * (target - Q[s, a])
    return Q


def q_in_place(Q, s, a, r, s_next, done, alpha, gamma):
    target = r if done else r + gamma * Q[s_next].max()
    Q[s, a] += alpha * (target - Q[s, a])  # writes into the caller's table
    return Q


def q_no_learning_rate(Q, s, a, r, s_next, done, alpha, gamma):
    Q = Q.copy()
    Q[s, a] = r if done else r + gamma * Q[s_next].max()
    return Q


def q_mean_next(Q, s, a, r, s_next, done, alpha, gamma):
    Q = Q.astype(float)
    target = r if done else r + gamma * Q[s_next].mean()
    Q[s, a] += alpha * (target - Q[s, a])
    return Q


def greedy_argmin(env, Q):
    s, done, p_tot, t_tot = env.reset(), False, 0.0, 0.0
    while not done:
        s, p, t, done = env.step(int(np.argmin(Q[s])))
        p_tot, t_tot = p_tot + p, t_tot + t
    return p_tot, t_tot


def greedy_drops_last_reward(env, Q):
    s, p_tot, t_tot = env.reset(), 0.0, 0.0
    while True:
        s, p, t, done = env.step(int(np.argmax(Q[s])))
        if done:
            break  # the reward of the final step (goal or tamper) is lost
        p_tot, t_tot = p_tot + p, t_tot + t
    return p_tot, t_tot


def greedy_proxy_twice(env, Q):
    s, done, p_tot = env.reset(), False, 0.0
    while not done:
        s, p, t, done = env.step(int(np.argmax(Q[s])))
        p_tot += p
    return p_tot, p_tot  # reports the proxy as if it were the true reward


def greedy_no_reset(env, Q):
    s, done, p_tot, t_tot = 0, False, 0.0, 0.0  # assumes the start is state 0 and never resets
    while not done:
        s, p, t, done = env.step(int(np.argmax(Q[s])))
        p_tot, t_tot = p_tot + p, t_tot + t
    return p_tot, t_tot


def greedy_ties_to_highest(env, Q):
    s, done, p_tot, t_tot = env.reset(), False, 0.0, 0.0
    while not done:
        row = Q[s]
        action = len(row) - 1 - int(np.argmax(row[::-1]))   # the last of the best actions
        s, p, t, done = env.step(action)
        p_tot, t_tot = p_tot + p, t_tot + t
    return p_tot, t_tot


def _log_softmax_global_max(x):
    x = x - x.max()   # one shift for the whole tensor, not one per distribution
    return x - torch.log(torch.exp(x).sum(-1, keepdim=True))


def logp_global_max_shift(logits, tokens):
    return _log_softmax_global_max(logits).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def kl_global_max_shift(logits_p, logits_q):
    lp, lq = _log_softmax_global_max(logits_p), _log_softmax_global_max(logits_q)
    return (lp.exp() * (lp - lq)).sum(-1)


def cai_exact_ties(responses_a, responses_b, constitution):
    d = _totals(responses_a, constitution) - _totals(responses_b, constitution)
    return np.where(d == 0, 0.5, (d > 0).astype(float))


def cai_isclose_default(responses_a, responses_b, constitution):
    ta, tb = _totals(responses_a, constitution), _totals(responses_b, constitution)
    return np.where(np.isclose(ta, tb), 0.5, (ta > tb).astype(float))   # atol 1e-8: looser than 1e-9


def logp_probabilities(logits, tokens):
    return logits.softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def logp_raw_logits(logits, tokens):
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def logp_naive_log(logits, tokens):
    return torch.log(torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)).gather(
        -1, tokens.unsqueeze(-1)).squeeze(-1)


def logp_shifted(logits, tokens):
    # an off-by-one "next-token" shift that this chapter's models do not need
    lp = logits.log_softmax(-1)[..., :-1, :].gather(-1, tokens[..., 1:].unsqueeze(-1)).squeeze(-1)
    return torch.cat([torch.zeros_like(lp[..., :1]), lp], -1)


def bt_sign_flipped(r_chosen, r_rejected):
    return -F.logsigmoid(r_rejected - r_chosen).mean()


def bt_no_log(r_chosen, r_rejected):
    return -torch.sigmoid(r_chosen - r_rejected).mean()


def bt_naive_log_sigmoid(r_chosen, r_rejected):
    return -torch.log(1 / (1 + torch.exp(-(r_chosen - r_rejected)))).mean()


def bt_sum(r_chosen, r_rejected):
    return -F.logsigmoid(r_chosen - r_rejected).sum()


def bt_detached(r_chosen, r_rejected):
    return torch.tensor(-F.logsigmoid(r_chosen - r_rejected).mean().detach().item())


def kl_swapped(logits_p, logits_q):
    lp, lq = logits_p.log_softmax(-1), logits_q.log_softmax(-1)
    return (lq.exp() * (lq - lp)).sum(-1)


def kl_no_normalisation(logits_p, logits_q):
    return (logits_p.softmax(-1) * (logits_p - logits_q)).sum(-1)


def kl_naive_logs(logits_p, logits_q):
    p, q = logits_p.softmax(-1), logits_q.softmax(-1)
    return (p * torch.log(p / q)).sum(-1)


def kl_kl_div_misread(logits_p, logits_q):
    # F.kl_div(input, target) computes KL(target || input): this is KL(q || p)
    return F.kl_div(logits_p.log_softmax(-1), logits_q.log_softmax(-1), log_target=True, reduction="none").sum(-1)


def penalty_swapped(reward, logp_policy, logp_ref, beta):
    return reward - beta * (logp_ref - logp_policy)


def penalty_batch_mean(reward, logp_policy, logp_ref, beta):
    return reward - beta * (logp_policy - logp_ref).mean()  # one KL estimate for the whole batch


def penalty_no_beta(reward, logp_policy, logp_ref, beta):
    return reward - (logp_policy - logp_ref)


def reinforce_no_baseline(logp, rewards, baseline):
    return -(rewards.detach() * logp).mean()


def reinforce_sign(logp, rewards, baseline):
    return ((rewards - baseline).detach() * logp).mean()


def reinforce_not_detached(logp, rewards, baseline):
    return -((rewards - baseline) * logp).mean()


def reinforce_sum(logp, rewards, baseline):
    return -((rewards - baseline).detach() * logp).sum()


def _totals(responses, constitution, weighted=True):
    return np.array([sum((p.weight if weighted else 1.0) * p.score(r) for p in constitution) for r in responses])


def cai_reversed(responses_a, responses_b, constitution):
    d = _totals(responses_a, constitution) - _totals(responses_b, constitution)
    return np.where(np.abs(d) < 1e-9, 0.5, (d < 0).astype(float))


def cai_unweighted(responses_a, responses_b, constitution):
    d = _totals(responses_a, constitution, False) - _totals(responses_b, constitution, False)
    return np.where(np.abs(d) < 1e-9, 0.5, (d > 0).astype(float))


def cai_ties_to_b(responses_a, responses_b, constitution):
    d = _totals(responses_a, constitution) - _totals(responses_b, constitution)
    return (d > 0).astype(float)


def cai_first_principle(responses_a, responses_b, constitution):
    return cai_unweighted(responses_a, responses_b, list(constitution)[:1])


MUTANTS = {
    "q_learning_update": [q_ignores_done, q_sarsa_like, q_in_place, q_no_learning_rate, q_mean_next],
    "greedy_returns": [greedy_argmin, greedy_drops_last_reward, greedy_proxy_twice, greedy_no_reset,
                       greedy_ties_to_highest],
    "response_log_probs": [logp_probabilities, logp_raw_logits, logp_naive_log, logp_shifted, logp_global_max_shift],
    "bradley_terry_loss": [bt_sign_flipped, bt_no_log, bt_naive_log_sigmoid, bt_sum, bt_detached],
    "per_token_kl": [kl_swapped, kl_no_normalisation, kl_naive_logs, kl_kl_div_misread, kl_global_max_shift],
    "kl_penalised_reward": [penalty_swapped, penalty_batch_mean, penalty_no_beta],
    "reinforce_with_baseline": [reinforce_no_baseline, reinforce_sign, reinforce_not_detached, reinforce_sum],
    "constitutional_ai_labels": [cai_reversed, cai_unweighted, cai_ties_to_b, cai_first_principle, cai_exact_ties,
                                 cai_isclose_default],
    "deceptive_alignment_quiz": ["b", "c", "d"],
    "alignment_faking_quiz": ["a", "b", "c"],
    "scalable_oversight_quiz": ["a", "b", "d"],
    "weak_to_strong_pgr": [0.25, 0.21, 0.83, 75, "0.7"],
}

# --------------------------------------------------------------------------- correct alternatives


def q_explicit_loops(Q, s, a, r, s_next, done, alpha, gamma):
    new = np.empty(Q.shape)
    for i in range(Q.shape[0]):
        for j in range(Q.shape[1]):
            new[i, j] = Q[i, j]
    best_next = 0.0 if done else max(Q[s_next, k] for k in range(Q.shape[1]))
    new[s, a] = (1 - alpha) * Q[s, a] + alpha * (r + gamma * best_next)
    return new


def greedy_for_loop(env, Q):
    totals = np.zeros(2)
    s = env.reset()
    for _ in range(10_000):
        s, p, t, done = env.step(Q[s].argmax())
        totals += (p, t)
        if done:
            break
    return float(totals[0]), float(totals[1])


def logp_cross_entropy(logits, tokens):
    v = logits.shape[-1]
    nll = F.cross_entropy(logits.reshape(-1, v), tokens.reshape(-1), reduction="none")
    return -nll.reshape(tokens.shape)


def logp_one_hot(logits, tokens):
    return (logits.log_softmax(-1) * F.one_hot(tokens, logits.shape[-1]).to(logits.dtype)).sum(-1)


def bt_softplus(r_chosen, r_rejected):
    return F.softplus(r_rejected - r_chosen).mean()


def bt_two_class_cross_entropy(r_chosen, r_rejected):
    logits = torch.stack([r_chosen, r_rejected], -1)  # "class 0 = chosen wins"
    return F.cross_entropy(logits, torch.zeros(len(r_chosen), dtype=torch.long))


def logp_row_max_by_hand(logits, tokens):
    shifted = logits - logits.max(dim=-1, keepdim=True).values   # one shift per distribution
    log_probs = shifted - shifted.exp().sum(-1, keepdim=True).log()
    return log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def kl_torch_kl_div(logits_p, logits_q):
    return F.kl_div(logits_q.log_softmax(-1), logits_p.log_softmax(-1), log_target=True, reduction="none").sum(-1)


def kl_entropy_form(logits_p, logits_q):
    lp, lq = F.log_softmax(logits_p, dim=-1), F.log_softmax(logits_q, dim=-1)
    p = lp.exp()
    cross_entropy = -(p * lq).sum(-1)
    entropy = -(p * lp).sum(-1)
    return cross_entropy - entropy


def penalty_rearranged(reward, logp_policy, logp_ref, beta):
    log_ratio = logp_policy - logp_ref
    return reward - log_ratio * beta


def reinforce_advantage_first(logp, rewards, baseline):
    with torch.no_grad():
        advantage = rewards - baseline
    return (-advantage * logp).sum() / len(logp)


def cai_vectorised(responses_a, responses_b, constitution):
    totals_a = np.array([sum(p.weight * p.score(r) for p in constitution) for r in responses_a], dtype=float)
    totals_b = np.array([sum(p.weight * p.score(r) for p in constitution) for r in responses_b], dtype=float)
    diff = totals_a - totals_b
    return np.where(np.isclose(diff, 0.0, atol=1e-9, rtol=0.0), 0.5, np.sign(diff) / 2 + 0.5)


ALTERNATIVES = {
    "q_learning_update": [q_explicit_loops],
    "greedy_returns": [greedy_for_loop],
    "response_log_probs": [logp_cross_entropy, logp_one_hot, logp_row_max_by_hand],
    "bradley_terry_loss": [bt_softplus, bt_two_class_cross_entropy],
    "per_token_kl": [kl_torch_kl_div, kl_entropy_form],
    "kl_penalised_reward": [penalty_rearranged],
    "reinforce_with_baseline": [reinforce_advantage_first],
    "constitutional_ai_labels": [cai_vectorised],
    "deceptive_alignment_quiz": ["A", " a ", "(a)"],
    "alignment_faking_quiz": ["D", "d"],
    "scalable_oversight_quiz": ["C", "c"],
    "weak_to_strong_pgr": [0.75, 21 / 28, "0.75", 0.7501],
}
