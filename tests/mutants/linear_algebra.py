"""Mutants and alternatives for chapter 01_linear_algebra."""
from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------- mutants


def cos_plain_dot(a, b):
    return (a * b).sum(-1)


def cos_norm_over_all(a, b):
    # normalises by the norm of the whole batch instead of each vector
    return (a * b).sum(-1) / (np.linalg.norm(a) * np.linalg.norm(b))


def cos_in_place(a, b):
    a /= np.linalg.norm(a, axis=-1, keepdims=True)  # mutates the learner's input
    b /= np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def cos_eps_denominator(a, b):
    # "safe" division: wrong for short vectors (unfriendly magnitudes)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-8)


def proj_assumes_unit(x, d):
    return (x @ d)[..., None] * d


def proj_divides_by_norm(x, d):
    return ((x @ d) / np.linalg.norm(d))[..., None] * d


def proj_only_2d(x, d):
    # works for a batch, breaks for a single vector (wrong axis for the coefficient)
    return np.outer(x @ d / (d @ d), d)


def remove_assumes_unit(x, d):
    return x - (x @ d)[..., None] * d


def remove_returns_projection(x, d):
    return (x @ d / (d @ d))[..., None] * d


def remove_in_place(x, d):
    x -= (x @ d / (d @ d))[..., None] * d
    return x


def basis_transpose(v, b):
    return (b.T @ v.T).T


def basis_forward(v, b):
    return (b @ v.T).T


def basis_rows_not_columns(v, b):
    return np.linalg.solve(b, v) if v.ndim == 1 else np.linalg.solve(b, v)  # batch rows used as columns


def power_norm_eigenvalue(A, num_iters=500):
    v = np.random.default_rng(0).normal(size=A.shape[0])
    for _ in range(num_iters):
        w = A @ v
        v = w / np.linalg.norm(w)
    return float(np.linalg.norm(A @ v)), v  # loses the sign of the eigenvalue


def power_no_normalisation(A, num_iters=500):
    v = np.ones(A.shape[0])
    for _ in range(num_iters):
        v = A @ v  # overflows (or underflows) without normalising
    v = v / np.linalg.norm(v)
    return float(v @ A @ v), v


def power_few_iterations(A, num_iters=500):
    v = np.random.default_rng(0).normal(size=A.shape[0])
    for _ in range(3):  # ignores num_iters: not converged
        v = A @ v
        v /= np.linalg.norm(v)
    return float(v @ A @ v), v


def power_ignores_num_iters(A, num_iters=500):
    v = np.random.default_rng(0).normal(size=A.shape[0])
    v /= np.linalg.norm(v)
    for _ in range(500):  # the parameter is never used
        v = A @ v
        v /= np.linalg.norm(v)
    return float(v @ A @ v), v


def power_largest_algebraic(A, num_iters=500):
    w, V = np.linalg.eigh(A)
    return float(w[-1]), V[:, -1]


def lowrank_smallest(M, k):
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    return (U[:, -k:] * S[-k:]) @ Vt[-k:]


def lowrank_no_singular_values(M, k):
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    return U[:, :k] @ Vt[:k]


def lowrank_vt_columns(M, k):
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    return (U[:, :k] * S[:k]) @ Vt[:, :k].T  # columns of Vt instead of rows


def lowrank_truncates_columns(M, k):
    out = M.copy()
    out[:, k:] = 0  # keeps k columns, not k directions
    return out


def scores_unscaled(q, k):
    return np.einsum("bqhd,bkhd->bhqk", q, k)


def scores_by_d(q, k):
    return np.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1]


def scores_keys_first(q, k):
    return np.einsum("bqhd,bkhd->bhkq", q, k) / np.sqrt(q.shape[-1])


def scores_by_sqrt_seq(q, k):
    return np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[1])  # the wrong axis's size


def mix_heads_last(p, v):
    return np.einsum("bhqk,bkhd->bhqd", p, v)


def mix_sums_queries(p, v):
    return np.einsum("bhkq,bkhd->bqhd", p, v)


MUTANTS = {
    "cosine_similarity": [cos_plain_dot, cos_norm_over_all, cos_in_place, cos_eps_denominator],
    "project_onto": [proj_assumes_unit, proj_divides_by_norm, proj_only_2d],
    "remove_direction": [remove_assumes_unit, remove_returns_projection, remove_in_place],
    "erasure_quiz": ["a", "b", "d"],
    "change_basis": [basis_transpose, basis_forward, basis_rows_not_columns],
    "power_iteration": [power_norm_eigenvalue, power_no_normalisation, power_few_iterations, power_largest_algebraic,
                        power_ignores_num_iters],
    "low_rank_approximation": [lowrank_smallest, lowrank_no_singular_values, lowrank_truncates_columns, lowrank_vt_columns],
    "attention_scores": [scores_unscaled, scores_by_d, scores_keys_first, scores_by_sqrt_seq],
    "mix_values": [mix_heads_last, mix_sums_queries],
}

# --------------------------------------------------------------------------- correct alternatives


def cos_loops(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    flat_a, flat_b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    out = [float(x @ y) / (np.sqrt(x @ x) * np.sqrt(y @ y)) for x, y in zip(flat_a, flat_b)]
    return np.array(out).reshape(a.shape[:-1])


def cos_normalise_first(a, b):
    return np.einsum("...d,...d->...", a / np.linalg.norm(a, axis=-1, keepdims=True),
                     b / np.linalg.norm(b, axis=-1, keepdims=True))


def proj_unit_first(x, d):
    u = d / np.linalg.norm(d)
    return np.multiply.outer(x @ u, u)


def remove_with_matrix(x, d):
    u = d / np.linalg.norm(d)
    P = np.eye(len(u)) - np.outer(u, u)
    return x @ P  # P is symmetric, so x @ P == (P @ x.T).T


def basis_inverse(v, b):
    return v @ np.linalg.inv(b).T


def power_other_start(A, num_iters=500):
    v = np.arange(1.0, A.shape[0] + 1.0)
    v /= np.linalg.norm(v)
    for _ in range(num_iters):
        v = A @ v
        v = v / np.sqrt(v @ v)
    return (v @ A @ v) / (v @ v), -v  # the opposite sign is just as correct


def power_lagging_estimate(A, num_iters=500):
    # the eigenvalue estimate from the last vector before its final normalisation: correct once converged
    v = np.random.default_rng(3).standard_normal(A.shape[0])
    v /= np.linalg.norm(v)
    value = 0.0
    for _ in range(num_iters):
        w = A @ v
        value = float(v @ w)
        v = w / np.linalg.norm(w)
    return value, v


def lowrank_sum_of_outer(M, k):
    U, S, Vt = np.linalg.svd(M)
    return sum(S[i] * np.outer(U[:, i], Vt[i]) for i in range(k))


def scores_matmul(q, k):
    qh = np.transpose(q, (0, 2, 1, 3))  # [b, h, q, d]
    kh = np.transpose(k, (0, 2, 3, 1))  # [b, h, d, k]
    return (qh @ kh) / np.sqrt(q.shape[-1])


def mix_matmul(p, v):
    vh = np.transpose(v, (0, 2, 1, 3))  # [b, h, k, d]
    return np.transpose(p @ vh, (0, 2, 1, 3))


ALTERNATIVES = {
    "cosine_similarity": [cos_loops, cos_normalise_first],
    "project_onto": [proj_unit_first],
    "remove_direction": [remove_with_matrix],
    "erasure_quiz": ["C", " c ", "(c)"],
    "change_basis": [basis_inverse],
    "power_iteration": [power_other_start, power_lagging_estimate],
    "low_rank_approximation": [lowrank_sum_of_outer],
    "attention_scores": [scores_matmul],
    "mix_values": [mix_matmul],
}
