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


# --------------------------------------------------------------------------- RLOO and the RLHF step

def rloo_batch_mean(rewards):
    return rewards - rewards.mean()  # the reply's own reward is in its baseline


def rloo_divide_by_b(rewards):
    return rewards - (rewards.sum() - rewards) / len(rewards)


def rloo_no_baseline(rewards):
    return rewards.clone()


def _whole_logp(model, replies):
    return model(replies).log_softmax(-1).gather(-1, replies.unsqueeze(-1)).squeeze(-1).sum(dim=1)


def _step(policy, reference, reward_model, optimizer, beta, batch_size, generator, *, baseline="rloo",
          detach=True, sign=1.0, reduce="mean", zero_grad=True, resample=False):
    replies = policy.sample(batch_size, generator)
    if resample:
        replies = policy.sample(batch_size, generator)  # a second draw: not the replies the caller can reproduce
    logp = _whole_logp(policy, replies)
    with torch.no_grad():
        logp_ref = _whole_logp(reference, replies)
        reward = reward_model(replies)
    shaped = reward - sign * beta * ((logp.detach() if detach else logp) - logp_ref)
    if baseline == "rloo":
        adv = shaped - (shaped.sum() - shaped) / (len(shaped) - 1)
    elif baseline == "mean":
        adv = shaped - shaped.mean()
    else:
        adv = shaped
    if detach:
        adv = adv.detach()
    loss = -(adv * logp)
    loss = loss.mean() if reduce == "mean" else loss.sum()
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return replies


def step_batch_mean_baseline(policy, reference, reward_model, optimizer, beta, batch_size, generator):
    return _step(policy, reference, reward_model, optimizer, beta, batch_size, generator, baseline="mean")


def step_not_detached(policy, reference, reward_model, optimizer, beta, batch_size, generator):
    return _step(policy, reference, reward_model, optimizer, beta, batch_size, generator, detach=False)


def step_kl_sign(policy, reference, reward_model, optimizer, beta, batch_size, generator):
    return _step(policy, reference, reward_model, optimizer, beta, batch_size, generator, sign=-1.0)


def step_sum(policy, reference, reward_model, optimizer, beta, batch_size, generator):
    return _step(policy, reference, reward_model, optimizer, beta, batch_size, generator, reduce="sum")


def step_no_zero_grad(policy, reference, reward_model, optimizer, beta, batch_size, generator):
    return _step(policy, reference, reward_model, optimizer, beta, batch_size, generator, zero_grad=False)


def step_resamples(policy, reference, reward_model, optimizer, beta, batch_size, generator):
    return _step(policy, reference, reward_model, optimizer, beta, batch_size, generator, resample=True)


def step_no_baseline(policy, reference, reward_model, optimizer, beta, batch_size, generator):
    return _step(policy, reference, reward_model, optimizer, beta, batch_size, generator, baseline="none")


# --------------------------------------------------------------------------- DPO

def _margin(lc, lr, rc, rr):
    return (lc - rc) - (lr - rr)


def dpo_no_reference(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta):
    return -F.logsigmoid(beta * (logp_chosen - logp_rejected)).mean()


def dpo_beta_outside(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta):
    return -beta * F.logsigmoid(_margin(logp_chosen, logp_rejected, ref_chosen, ref_rejected)).mean()


def dpo_ratio_flipped(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta):
    return -F.logsigmoid(-beta * _margin(logp_chosen, logp_rejected, ref_chosen, ref_rejected)).mean()


def dpo_naive_log(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta):
    return -torch.log(torch.sigmoid(beta * _margin(logp_chosen, logp_rejected, ref_chosen, ref_rejected))).mean()


def _train(policy, reference, chosen, rejected, beta, steps, lr, *, per_token=False, ref_from_policy=False,
           fresh_optimizer=False, loss_after=False):
    def logps(model, tokens):
        lp = model(tokens).log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        return lp.mean(dim=1) if per_token else lp.sum(dim=1)

    with torch.no_grad():
        source = policy if ref_from_policy else reference
        ref_c, ref_r = logps(source, chosen), logps(source, rejected)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        if fresh_optimizer:
            optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
        margin = (logps(policy, chosen) - ref_c) - (logps(policy, rejected) - ref_r)
        loss = -F.logsigmoid(beta * margin).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss_after:
            with torch.no_grad():
                margin = (logps(policy, chosen) - ref_c) - (logps(policy, rejected) - ref_r)
                loss = -F.logsigmoid(beta * margin).mean()
        losses.append(loss.item())
    return losses


def train_dpo_per_token(policy, reference, chosen, rejected, beta, steps, lr):
    return _train(policy, reference, chosen, rejected, beta, steps, lr, per_token=True)


def train_dpo_ref_is_policy(policy, reference, chosen, rejected, beta, steps, lr):
    return _train(policy, reference, chosen, rejected, beta, steps, lr, ref_from_policy=True)


def train_dpo_fresh_optimizer(policy, reference, chosen, rejected, beta, steps, lr):
    return _train(policy, reference, chosen, rejected, beta, steps, lr, fresh_optimizer=True)


def train_dpo_loss_after_step(policy, reference, chosen, rejected, beta, steps, lr):
    return _train(policy, reference, chosen, rejected, beta, steps, lr, loss_after=True)


def train_dpo_swapped_pairs(policy, reference, chosen, rejected, beta, steps, lr):
    return _train(policy, reference, rejected, chosen, beta, steps, lr)


# --------------------------------------------------------------------------- constitutions

def score_unweighted(responses, constitution):
    return np.array([sum(p.score(r) for p in constitution) for r in responses], dtype=float)


def score_first_principle(responses, constitution):
    return np.array([sum(p.weight * p.score(r) for p in constitution[:1]) for r in responses], dtype=float)


def score_mean(responses, constitution):
    return np.array([np.mean([p.weight * p.score(r) for p in constitution]) if constitution else 0.0
                     for r in responses], dtype=float)


def _principle(text, weight, score):
    from safety_roadmap.toys.reward_hacking_and_rlhf import Principle
    return Principle(text, weight, score)


def _toy():
    from safety_roadmap.toys import reward_hacking_and_rlhf as toy
    return toy


def _loophole():
    from safety_roadmap.reference.reward_hacking_and_rlhf import LOOPHOLE_CONSTITUTION
    return LOOPHOLE_CONSTITUTION


def _no_repeat_rule():
    toy = _toy()
    return [_principle("Mention as many tips as you can.", 1.0, toy.tip_mentions),
            _principle("Do not flatter the user.", 0.5, lambda r: -toy.compliments(r))]


def _flattery_welcome():
    toy = _toy()
    return [_principle("Give many different tips.", 1.0, toy.tips_given),
            _principle("Do not repeat a tip.", 1.0, lambda r: -toy.repeats(r)),
            _principle("Be warm to the user.", 0.5, toy.compliments)]


MUTANTS = {
    "q_learning_update": [q_ignores_done, q_sarsa_like, q_in_place, q_no_learning_rate, q_mean_next],
    "greedy_returns": [greedy_argmin, greedy_drops_last_reward, greedy_proxy_twice, greedy_no_reset,
                       greedy_ties_to_highest],
    "response_log_probs": [logp_probabilities, logp_raw_logits, logp_naive_log, logp_shifted, logp_global_max_shift],
    "bradley_terry_loss": [bt_sign_flipped, bt_no_log, bt_naive_log_sigmoid, bt_sum, bt_detached],
    "per_token_kl": [kl_swapped, kl_no_normalisation, kl_naive_logs, kl_kl_div_misread, kl_global_max_shift],
    "rloo_advantages": [rloo_batch_mean, rloo_divide_by_b, rloo_no_baseline],
    "rlhf_step": [step_batch_mean_baseline, step_not_detached, step_kl_sign, step_sum, step_no_zero_grad,
                  step_resamples, step_no_baseline],
    "dpo_loss": [dpo_no_reference, dpo_beta_outside, dpo_ratio_flipped, dpo_naive_log],
    "train_dpo": [train_dpo_per_token, train_dpo_ref_is_policy, train_dpo_fresh_optimizer, train_dpo_loss_after_step,
                  train_dpo_swapped_pairs],
    "constitution_score": [score_unweighted, score_first_principle, score_mean],
    "my_constitution": [_loophole(), _no_repeat_rule(), _flattery_welcome()],
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


def rloo_loop(rewards):
    out = torch.empty_like(rewards)
    for i in range(len(rewards)):
        others = torch.cat([rewards[:i], rewards[i + 1:]])
        out[i] = rewards[i] - others.mean()
    return out


def rloo_scaled_mean(rewards):
    b = len(rewards)
    return b / (b - 1) * (rewards - rewards.mean())  # algebraically the same as leave-one-out


def step_no_grad_block(policy, reference, reward_model, optimizer, beta, batch_size, generator):
    replies = policy.sample(batch_size, generator)
    logits = policy(replies)
    logp = logits.log_softmax(-1).gather(-1, replies[..., None])[..., 0].sum(-1)
    ref_logp = reference(replies).log_softmax(-1).gather(-1, replies[..., None])[..., 0].sum(-1).detach()
    shaped = reward_model(replies).detach() - beta * (logp.detach() - ref_logp)
    advantage = len(shaped) / (len(shaped) - 1) * (shaped - shaped.mean())
    optimizer.zero_grad()
    (-(advantage * logp).sum() / batch_size).backward()
    optimizer.step()
    return replies


def dpo_softplus(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta):
    chosen_reward = beta * (logp_chosen - ref_chosen)
    rejected_reward = beta * (logp_rejected - ref_rejected)
    return F.softplus(rejected_reward - chosen_reward).mean()


def train_dpo_cross_entropy(policy, reference, chosen, rejected, beta, steps, lr):
    pairs = torch.cat([chosen, rejected])
    n = len(chosen)
    with torch.no_grad():
        ref_lp = F.cross_entropy(reference(pairs).transpose(1, 2), pairs, reduction="none").sum(1).neg()
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        lp = -F.cross_entropy(policy(pairs).transpose(1, 2), pairs, reduction="none").sum(1)
        ratio = lp - ref_lp
        loss = F.softplus(-beta * (ratio[:n] - ratio[n:])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def score_loop(responses, constitution):
    totals = np.zeros(len(responses))
    for p in constitution:
        for i, r in enumerate(responses):
            totals[i] += p.weight * p.score(r)
    return totals


def _heavier_weights():
    toy = _toy()
    return [_principle("Give the user many different tips.", 2.0, toy.tips_given),
            _principle("Never repeat a tip.", 2.0, lambda r: -toy.repeats(r)),
            _principle("No compliments: they read as flattery.", 0.6, lambda r: -toy.compliments(r))]


def _gold_like():
    toy = _toy()
    return [_principle("Each different tip helps the user.", 1.0, toy.tips_given),
            _principle("Saying a tip twice wastes the user's time.", 1.0, lambda r: -toy.repeats(r)),
            _principle("Flattery is slightly annoying.", 0.3, lambda r: -toy.compliments(r))]


ALTERNATIVES = {
    "q_learning_update": [q_explicit_loops],
    "greedy_returns": [greedy_for_loop],
    "response_log_probs": [logp_cross_entropy, logp_one_hot, logp_row_max_by_hand],
    "bradley_terry_loss": [bt_softplus, bt_two_class_cross_entropy],
    "per_token_kl": [kl_torch_kl_div, kl_entropy_form],
    "rloo_advantages": [rloo_loop, rloo_scaled_mean],
    "rlhf_step": [step_no_grad_block],
    "dpo_loss": [dpo_softplus],
    "train_dpo": [train_dpo_cross_entropy],
    "constitution_score": [score_loop],
    "my_constitution": [_heavier_weights(), _gold_like()],
    "deceptive_alignment_quiz": ["A", " a ", "(a)"],
    "alignment_faking_quiz": ["D", "d"],
    "scalable_oversight_quiz": ["C", "c"],
    "weak_to_strong_pgr": [0.75, 21 / 28, "0.75", 0.7501],
}
