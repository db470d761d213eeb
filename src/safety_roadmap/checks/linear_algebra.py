"""Checks for chapter 01_linear_algebra. Each `check_<exercise>(fn, thorough=False)`."""
from __future__ import annotations

import contextlib
import io
from typing import Any, Callable

import numpy as np

from ..reference import linear_algebra as ref
from ._core import (Case, CheckFailure, Mistake, NotAttempted, check_choice, compare, non_contiguous, read_only,
                    rng_for, run_check)

__all__ = ["check_cosine_similarity", "check_project_onto", "check_remove_direction", "check_change_basis",
           "check_power_iteration", "check_low_rank_approximation", "check_attention_scores",
           "check_mix_values", "check_erasure_quiz"]


def fix_first_note(fn: Any, name: str, dep: str, dep_check: Callable[..., None]) -> str:
    """A line telling the learner to fix `dep` first, only when `fn` calls the notebook's `dep` and
    `dep`'s own thorough check fails (run quietly). Shared by chapters 01, 04 and 05; a candidate for _core."""
    code, scope = getattr(fn, "__code__", None), getattr(fn, "__globals__", None)
    if code is None or scope is None or dep not in code.co_names or not callable(scope.get(dep)):
        return ""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dep_check(scope[dep], thorough=True)
    except NotAttempted:
        return f"\n  Your `{name}` calls `{dep}`, which is not attempted yet: solve `{dep}` first."
    except CheckFailure:
        return (f"\n  Your `{name}` calls `{dep}`, and `{dep}` fails its own thorough check: fix `{dep}` first "
                f"(`check_{dep}({dep}, thorough=True)` says how), then run this check again.")
    return ""


def _vectors(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    return rng.normal(size=shape) * scale


# --------------------------------------------------------------------------- cosine similarity

def _cosine_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 1)
    cases = [Case((np.array([1.0, 0.0]), np.array([0.0, 2.0])), "perpendicular vectors"),
             Case((np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])), "parallel vectors of different lengths"),
             Case((_vectors(rng, (4, 8)), _vectors(rng, (4, 8))), "a batch of 4 pairs")]
    if thorough:
        cases += [Case((_vectors(rng, (3, 5, 16)), _vectors(rng, (3, 5, 16))), "two batch dimensions"),
                  Case((np.array([3.0, -4.0]), np.array([-3.0, 4.0])), "opposite vectors"),
                  Case((_vectors(rng, (6, 32), 1e6), _vectors(rng, (6, 32), 1e-4)), "very different scales"),
                  Case((_vectors(rng, (5, 6), 1e-5), _vectors(rng, (5, 6), 1e-5)), "tiny vectors (entries near 1e-5)"),
                  Case((_vectors(rng, (3, 4)) * np.array([[1e3], [1.0], [1e-3]]), _vectors(rng, (3, 4))),
                       "rows of very different lengths"),
                  Case((non_contiguous(_vectors(rng, (5, 7))), _vectors(rng, (5, 7))), "a strided (sliced) input"),
                  Case((read_only(_vectors(rng, (2, 9))), read_only(_vectors(rng, (2, 9)))), "read-only inputs"),
                  Case((_vectors(rng, (4, 3)).astype(np.float32), _vectors(rng, (4, 3)).astype(np.float32)),
                       "float32 inputs")]
        cases += [Case((_vectors(rng, (n, d)), _vectors(rng, (n, d))), f"random {n}x{d}")
                  for n, d in [(1, 1), (10, 2), (7, 64)]]
    return cases


def check_cosine_similarity(fn: Callable[..., Any], thorough: bool = False) -> None:
    """cosine_similarity(a, b): [..., d] x [..., d] -> [...]."""
    __tracebackhide__ = True
    run_check("cosine_similarity", fn, ref.cosine_similarity, _cosine_cases(thorough), rtol=1e-5, atol=1e-6,
              thorough=thorough, mistakes=[
                  Mistake("you returned the plain dot product; divide by both vectors' lengths.",
                          lambda a, b: (a * b).sum(-1)),
                  Mistake("you divided by the *squared* lengths; np.linalg.norm is already the square root.",
                          lambda a, b: (a * b).sum(-1) / ((a * a).sum(-1) * (b * b).sum(-1))),
                  Mistake("np.linalg.norm without axis=-1 gives one length for the whole batch; pass axis=-1 "
                          "to get one length per vector.",
                          lambda a, b: (a * b).sum(-1) / (np.linalg.norm(a) * np.linalg.norm(b))),
                  Mistake("you added a small number to the denominator; it changes the answer for short vectors. "
                          "The prompt promises no vector is all zeros, so divide by the lengths alone.",
                          lambda a, b: (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-8)),
                  Mistake("you summed over the wrong axis: the vectors lie along the *last* axis.",
                          lambda a, b: (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))),
              ])


# --------------------------------------------------------------------------- projection and erasure

def _projection_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 2)
    cases = [Case((np.array([[3.0, 4.0]]), np.array([1.0, 0.0])), "a unit direction along the x-axis"),
             Case((_vectors(rng, (5, 3)), np.array([0.0, 2.0, 0.0])), "a direction of length 2"),
             Case((_vectors(rng, (8, 6)), _vectors(rng, (6,))), "a random direction"),
             Case((_vectors(rng, (4,)), _vectors(rng, (4,))), "a single vector [d] instead of a batch")]
    if thorough:
        cases += [
                  Case((_vectors(rng, (2, 3, 5)), _vectors(rng, (5,))), "two batch dimensions"),
                  Case((_vectors(rng, (6, 10)), _vectors(rng, (10,), 1e-3)), "a very short direction"),
                  Case((_vectors(rng, (6, 10)), _vectors(rng, (10,), 1e3)), "a very long direction"),
                  Case((non_contiguous(_vectors(rng, (4, 6))), _vectors(rng, (6,))), "a strided (sliced) input"),
                  Case((read_only(_vectors(rng, (3, 4))), read_only(_vectors(rng, (4,)))), "read-only inputs")]
        d = _vectors(rng, (7,))
        cases.append(Case((np.stack([2 * d, -d, 0 * d]), d), "rows already parallel to the direction"))
    return cases


def check_project_onto(fn: Callable[..., Any], thorough: bool = False) -> None:
    """project_onto(x, direction): [..., d] x [d] -> [..., d]."""
    __tracebackhide__ = True
    run_check("project_onto", fn, ref.project_onto, _projection_cases(thorough), rtol=1e-6, atol=1e-9,
              thorough=thorough, mistakes=[
                  Mistake("you assumed `direction` has length 1; divide by direction @ direction.",
                          lambda x, d: (x @ d)[..., None] * d),
                  Mistake("you divided by the length of `direction` once; a projection needs its squared length.",
                          lambda x, d: ((x @ d) / np.linalg.norm(d))[..., None] * d),
                  Mistake("you returned what is left after removing the direction, not the projection.",
                          ref.remove_direction),
              ])


def check_remove_direction(fn: Callable[..., Any], thorough: bool = False) -> None:
    """remove_direction(x, direction): [..., d] x [d] -> [..., d], orthogonal to direction."""
    __tracebackhide__ = True
    try:
        _run_remove_direction(fn, thorough)
    except CheckFailure as exc:
        note = fix_first_note(fn, "remove_direction", "project_onto", check_project_onto)
        if not note:
            raise
        raise CheckFailure(f"{exc}{note}") from None


def _run_remove_direction(fn: Callable[..., Any], thorough: bool) -> None:
    __tracebackhide__ = True
    run_check("remove_direction", fn, ref.remove_direction, _projection_cases(thorough), rtol=1e-6, atol=1e-9,
              thorough=thorough, mistakes=[
                  Mistake("you assumed `direction` has length 1; normalise it first (or divide by its squared length).",
                          lambda x, d: x - (x @ d)[..., None] * d),
                  Mistake("you returned the projection itself; erasing means subtracting it from x.",
                          ref.project_onto),
                  Mistake("you zeroed the coordinate where `direction` is largest instead of projecting.",
                          lambda x, d: np.where(np.arange(d.shape[0]) == np.abs(d).argmax(), 0.0, x)),
              ])


# --------------------------------------------------------------------------- change of basis

def _basis(rng: np.random.Generator, d: int, kind: str) -> np.ndarray:
    if kind == "orthonormal":
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        return q
    while True:
        b = rng.normal(size=(d, d))
        if np.linalg.cond(b) < 50:
            return b


def _basis_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 3)
    cases = [Case((np.array([2.0, 3.0]), np.array([[1.0, 0.0], [0.0, 1.0]])), "the standard basis"),
             Case((np.array([3.0, 1.0]), np.array([[1.0, 1.0], [0.0, 1.0]])), "a sheared 2-D basis"),
             Case((_vectors(rng, (3,)), _basis(rng, 3, "general")), "a random 3-D basis"),
             Case((_vectors(rng, (4, 3)), _basis(rng, 3, "general")), "a batch of 4 vectors (rows of v)")]
    if thorough:
        cases += [Case((_vectors(rng, (5, 4)), _basis(rng, 4, "general")), "a batch of 5 vectors (rows)"),
                  Case((_vectors(rng, (6,)), _basis(rng, 6, "orthonormal")), "an orthonormal basis"),
                  Case((_vectors(rng, (4,)), np.diag([2.0, 0.5, -1.0, 10.0])), "a scaled, flipped basis"),
                  Case((read_only(_vectors(rng, (3, 3))), read_only(_basis(rng, 3, "general"))), "read-only inputs")]
        cases += [Case((_vectors(rng, (d,)), _basis(rng, d, "general")), f"a random {d}-D basis") for d in (2, 5, 8)]
    return cases


def check_change_basis(fn: Callable[..., Any], thorough: bool = False) -> None:
    """change_basis(v, basis): coordinates c with basis @ c == v; v is [d] or [n, d]."""
    __tracebackhide__ = True
    run_check("change_basis", fn, ref.change_basis, _basis_cases(thorough), rtol=1e-6, atol=1e-9,
              thorough=thorough, mistakes=[
                  Mistake("you used basis.T @ v, which only works when the basis is orthonormal; "
                          "solve basis @ c = v instead.", lambda v, b: (b.T @ v.T).T),
                  Mistake("you computed basis @ v, which goes the other way (from new coordinates to standard ones).",
                          lambda v, b: (b @ v.T).T),
                  Mistake("for a batch, each *row* of v is a vector: solve against v.T and transpose back.",
                          lambda v, b: np.linalg.solve(b, v)),
              ])


# --------------------------------------------------------------------------- power iteration

def _symmetric(rng: np.random.Generator, eigenvalues: list[float]) -> np.ndarray:
    d = len(eigenvalues)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * np.asarray(eigenvalues, dtype=float)) @ q.T


def _power_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 4)
    cases = [Case((np.array([[2.0, 0.0], [0.0, 1.0]]),), "diag(2, 1)"),
             Case((_symmetric(rng, [5.0, 2.0, 1.0, 0.5]),), "eigenvalues 5, 2, 1, 0.5"),
             Case((_symmetric(rng, [-3.0, 1.0, 0.5]),), "the largest-magnitude eigenvalue is negative (-3)")]
    if thorough:
        slow = _symmetric(rng, [1.0, 0.99, 0.5, 0.2, -0.1, 0.05])
        cases += [Case((_symmetric(rng, [-6.0, 3.0, 1.0]),), "the largest-magnitude eigenvalue is negative (-6)"),
                  Case((slow,), "eigenvalues 1 and 0.99 (slow: needs num_iters=4000)", {"num_iters": 4000}),
                  Case((slow,), "the same matrix with num_iters=3 (cannot have converged yet)", {"num_iters": 3}),
                  Case((_symmetric(rng, [8.0, 1.0, 0.5, 0.1]),), "num_iters=60 on a fast matrix", {"num_iters": 60}),
                  Case((_symmetric(rng, [400.0, 100.0, 50.0, 1.0, 0.1]),), "large eigenvalues (400, ...)"),
                  Case((_symmetric(rng, [1e-3, 1e-4, 1e-5]),), "tiny eigenvalues (1e-3, ...)"),
                  Case((_symmetric(rng, [10.0, -4.0] + list(rng.uniform(-3, 3, size=10))),), "a 12x12 matrix"),
                  Case((read_only(_symmetric(rng, [3.0, 1.0, 0.2])),), "a read-only matrix")]
    return cases


def _compare_eigen(got: Any, expected: Any, case: Case) -> str | None:
    """Eigenvectors are only defined up to sign: accept v or -v, and check A v = lambda v."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a tuple (eigenvalue, eigenvector), got {type(got).__name__}"
    value, vector = got
    exp_value, exp_vector = expected
    if case.kwargs.get("num_iters", 500) < 10:
        return _compare_unconverged(value, vector, case)
    problem = compare(float(np.asarray(value)), exp_value, rtol=1e-5, atol=1e-10, what="eigenvalue")
    if problem:
        return problem
    vec = np.asarray(vector, dtype=float)
    if vec.shape != exp_vector.shape:
        return f"eigenvector: expected shape {exp_vector.shape}, got {vec.shape}"
    if abs(np.linalg.norm(vec) - 1) > 1e-5:
        return f"eigenvector: expected a unit vector, got length {np.linalg.norm(vec):.4g} (normalise it)"
    if vec @ exp_vector < 0:
        vec = -vec  # the sign of an eigenvector is arbitrary
    return compare(vec, exp_vector, rtol=1e-4, atol=1e-6, what="eigenvector (up to sign)")


def _compare_unconverged(value: Any, vector: Any, case: Case) -> str | None:
    """After a few iterations the vector depends on the start, which the prompt leaves free; what holds
    for any random start: a unit vector, not yet the top eigenvector, and a finite eigenvalue estimate."""
    A, t = case.args[0], case.kwargs["num_iters"]
    vec = np.asarray(vector, dtype=float)
    if vec.shape != (A.shape[0],) or not np.isfinite(vec).all():
        return f"eigenvector: expected {A.shape[0]} finite numbers, got {vec.shape} {vec[:4]}"
    if abs(np.linalg.norm(vec) - 1) > 1e-5:
        return f"eigenvector: expected a unit vector, got length {np.linalg.norm(vec):.4g} (normalise it)"
    top = np.linalg.eigh(A)[1][:, -1]
    sine = float(np.sqrt(max(0.0, 1 - (vec @ top) ** 2)))
    if sine < 1e-3:
        return (f"with num_iters={t} and |lambda2/lambda1| = 0.99 the vector can only have turned a little towards "
                f"the top eigenvector, yet yours is already on it (sin of the angle {sine:.1e}): "
                f"does your loop run `num_iters` times, not a fixed number?")
    if not np.isfinite(float(np.asarray(value))) or abs(float(np.asarray(value))) > np.abs(np.linalg.eigvalsh(A)).max() + 1e-9:
        return f"eigenvalue: {value!r} is outside the range of A's eigenvalues; use the Rayleigh quotient v @ A @ v"
    return None


def check_power_iteration(fn: Callable[..., Any], thorough: bool = False) -> None:
    """power_iteration(A, num_iters=500) -> (eigenvalue, unit eigenvector) of largest magnitude."""
    __tracebackhide__ = True
    run_check("power_iteration", fn, ref.power_iteration, _power_cases(thorough), compare_fn=_compare_eigen,
              thorough=thorough, mistakes=[
                  Mistake("your eigenvalue lost its sign: use the Rayleigh quotient v @ A @ v, not the norm of A @ v.",
                          lambda A, num_iters=500: (float(np.linalg.norm(A @ ref.power_iteration(A)[1])),
                                                    ref.power_iteration(A)[1])),
                  Mistake("your loop ignores `num_iters` (it always runs 500 times); use the argument.",
                          lambda A, num_iters=500: ref.power_iteration(A)),
                  Mistake("you returned the algebraically largest eigenvalue; power iteration finds the one of "
                          "largest *magnitude*.",
                          lambda A, num_iters=500: (float(np.linalg.eigh(A)[0][-1]), np.linalg.eigh(A)[1][:, -1])),
              ])


# --------------------------------------------------------------------------- SVD

def _low_rank_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 5)
    cases = [Case((np.diag([3.0, 2.0, 1.0]), 1), "diag(3, 2, 1), k=1"),
             Case((_vectors(rng, (6, 4)), 2), "a random 6x4 matrix, k=2")]
    if thorough:
        cases += [Case((_vectors(rng, (3, 7)), 2), "a wide 3x7 matrix, k=2"),
                  Case((_vectors(rng, (5, 5)), 5), "k equal to the full rank"),
                  Case((_vectors(rng, (8, 6)), 1), "k=1 on an 8x6 matrix"),
                  Case((np.outer(rng.normal(size=9), rng.normal(size=4)) * 1e4, 1), "an exactly rank-1 matrix, large values"),
                  Case((read_only(_vectors(rng, (4, 6))), 3), "a read-only matrix")]
    return cases


def check_low_rank_approximation(fn: Callable[..., Any], thorough: bool = False) -> None:
    """low_rank_approximation(M, k): [m, n] -> [m, n] of rank k."""
    __tracebackhide__ = True
    run_check("low_rank_approximation", fn, ref.low_rank_approximation, _low_rank_cases(thorough),
              rtol=1e-6, atol=1e-8, thorough=thorough, mistakes=[
                  Mistake("you kept the *smallest* k singular values; np.linalg.svd sorts them largest first.",
                          lambda M, k: (lambda U, S, Vt: (U[:, -k:] * S[-k:]) @ Vt[-k:])(
                              *np.linalg.svd(M, full_matrices=False))),
                  Mistake("you took the first k *columns* of Vt (Vt[:, :k].T); Vt is V already transposed, so the "
                          "top right-singular vectors are its first k *rows*: Vt[:k].",
                          lambda M, k: (lambda U, S, Vt: (U[:, :k] * S[:k]) @ Vt[:, :k].T)(
                              *np.linalg.svd(M, full_matrices=False))),
                  Mistake("you dropped the singular values: U[:, :k] @ Vt[:k] needs S[:k] in between.",
                          lambda M, k: (lambda U, S, Vt: U[:, :k] @ Vt[:k])(*np.linalg.svd(M, full_matrices=False))),
              ])


# --------------------------------------------------------------------------- einsum drills

def _qk_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 6)
    cases = [Case((_vectors(rng, (1, 3, 1, 4)), _vectors(rng, (1, 3, 1, 4))), "batch 1, 3 positions, 1 head"),
             Case((_vectors(rng, (2, 5, 3, 8)), _vectors(rng, (2, 5, 3, 8))), "batch 2, 5 positions, 3 heads"),
             Case((_vectors(rng, (2, 4, 2, 16)), _vectors(rng, (2, 6, 2, 16))), "4 queries attending to 6 keys")]
    if thorough:
        cases += [Case((_vectors(rng, (3, 2, 5, 7)), _vectors(rng, (3, 9, 5, 7))), "2 queries, 9 keys, 5 heads, d_head 7"),
                  Case((_vectors(rng, (3, 7, 4, 9)), _vectors(rng, (3, 7, 4, 9))), "d_head = 9 (not a power of two)"),
                  Case((non_contiguous(_vectors(rng, (1, 4, 2, 8))), _vectors(rng, (1, 4, 2, 8))), "a strided input"),
                  Case((_vectors(rng, (2, 3, 5, 4)).astype(np.float32), _vectors(rng, (2, 3, 5, 4)).astype(np.float32)),
                       "float32 inputs")]
    return cases


def check_attention_scores(fn: Callable[..., Any], thorough: bool = False) -> None:
    """attention_scores(q, k): [b, q, h, d] x [b, k, h, d] -> [b, h, q, k], scaled by 1/sqrt(d)."""
    __tracebackhide__ = True
    run_check("attention_scores", fn, ref.attention_scores, _qk_cases(thorough), rtol=1e-5, atol=1e-6,
              thorough=thorough, mistakes=[
                  Mistake("you forgot to divide by sqrt(d_head).", lambda q, k: np.einsum("bqhd,bkhd->bhqk", q, k)),
                  Mistake("you divided by d_head instead of sqrt(d_head).",
                          lambda q, k: np.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1]),
                  Mistake("the last two axes are swapped: the output is [batch, heads, seq_q, seq_k] (queries first).",
                          lambda q, k: np.einsum("bqhd,bkhd->bhkq", q, k) / np.sqrt(q.shape[-1])),
              ])


def _mix_cases(thorough: bool) -> list[Case]:
    rng = rng_for(thorough, 7)

    def pattern(b: int, h: int, q: int, k: int) -> np.ndarray:
        logits = rng.normal(size=(b, h, q, k))
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    cases = [Case((np.ones((1, 1, 2, 2)) / 2, _vectors(rng, (1, 2, 1, 3))), "uniform attention over 2 positions"),
             Case((pattern(2, 3, 4, 4), _vectors(rng, (2, 4, 3, 5))), "batch 2, 3 heads, 4 positions"),
             Case((pattern(2, 2, 3, 6), _vectors(rng, (2, 6, 2, 4))), "3 queries over 6 keys")]
    if thorough:
        cases += [Case((pattern(3, 5, 2, 7), _vectors(rng, (3, 7, 5, 6))), "batch 3, 5 heads, 2 queries over 7 keys"),
                  Case((pattern(1, 4, 5, 5), _vectors(rng, (1, 5, 4, 7))), "4 heads, d_head 7"),
                  Case((np.eye(4)[None, None].repeat(2, 1), _vectors(rng, (1, 4, 2, 3))),
                       "each position attends only to itself"),
                  Case((read_only(pattern(1, 2, 3, 3)), read_only(_vectors(rng, (1, 3, 2, 2)))), "read-only inputs")]
    return cases


def check_mix_values(fn: Callable[..., Any], thorough: bool = False) -> None:
    """mix_values(pattern, v): [b, h, q, k] x [b, k, h, d] -> [b, q, h, d]."""
    __tracebackhide__ = True
    run_check("mix_values", fn, ref.mix_values, _mix_cases(thorough), rtol=1e-6, atol=1e-9,
              thorough=thorough, mistakes=[
                  Mistake("the output axes are in the wrong order: return [batch, seq_q, heads, d_head].",
                          lambda p, v: np.einsum("bhqk,bkhd->bhqd", p, v)),
                  Mistake("you contracted over the query axis; the sum runs over *keys* (the last axis of pattern).",
                          lambda p, v: np.einsum("bhkq,bkhd->bqhd", p, v)),
              ])


# --------------------------------------------------------------------------- concept question

_ERASURE_DIGEST = "c0c3de5ad58ffdc4a89ab5bd89285348bf819e60cf9fc6ebec1daeede6544ebc"  # sha256 of "erasure_quiz:<letter>"


def check_erasure_quiz(answer: Any, thorough: bool = False) -> None:
    """Which matrix erases a unit direction d from every activation it multiplies?"""
    __tracebackhide__ = True
    check_choice("erasure_quiz", answer, _ERASURE_DIGEST, "abcd")

