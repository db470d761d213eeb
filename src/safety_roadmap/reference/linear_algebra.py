"""Reference solutions for chapter 01 (linear algebra for interpretability).

Later chapters import these when a learner skipped ahead, and the checks
compare learners' answers with them.
"""
from __future__ import annotations

import numpy as np


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of the angle between `a` and `b` along the last axis: [..., d] x [..., d] -> [...]."""
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def project_onto(x: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The component of each row of `x` [..., d] along `direction` [d] (any non-zero length)."""
    coeff = (x @ direction) / (direction @ direction)  # [...]
    return coeff[..., None] * direction


def remove_direction(x: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """`x` with its component along `direction` erased: every row becomes orthogonal to it."""
    return x - project_onto(x, direction)


def change_basis(v: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Coordinates of `v` ([d] or [n, d]) in the basis whose *columns* are `basis` [d, d]."""
    return np.linalg.solve(basis, v.T).T


def power_iteration(A: np.ndarray, num_iters: int = 500) -> tuple[float, np.ndarray]:
    """Largest-magnitude eigenvalue of symmetric `A` [d, d] and its unit eigenvector [d]."""
    v = np.random.default_rng(0).normal(size=A.shape[0])
    v /= np.linalg.norm(v)
    for _ in range(num_iters):
        w = A @ v
        v = w / np.linalg.norm(w)
    return float(v @ A @ v), v


def low_rank_approximation(M: np.ndarray, k: int) -> np.ndarray:
    """The best rank-`k` approximation of `M` [m, n] (in Frobenius norm), via the SVD."""
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    return (U[:, :k] * S[:k]) @ Vt[:k]


def attention_scores(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Scaled dot products: q [batch, seq_q, heads, d_head], k [batch, seq_k, heads, d_head]
    -> [batch, heads, seq_q, seq_k], divided by sqrt(d_head)."""
    return np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])


def mix_values(pattern: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Weighted sums of values: pattern [batch, heads, seq_q, seq_k], v [batch, seq_k, heads, d_head]
    -> [batch, seq_q, heads, d_head]."""
    return np.einsum("bhqk,bkhd->bqhd", pattern, v)
