"""Mutation testing in `make test`: a fixed sample of generated mutants per exercise must all die.

The full measurement (`make mutation`, scripts/mutation_score.py) runs every generated mutant and
reports a score per exercise (target: >= 95 % of non-equivalent mutants killed). This is its fast,
deterministic form: SAMPLE mutants per exercise, fixed seed, each one rejected by the thorough check
or listed as equivalent in tests/mutation_allowlist.yaml.
"""
from __future__ import annotations

import pytest

from . import mutation

SAMPLE = 4
SEED = 0
ALLOW = mutation.Allowlist.load()
TARGETS = [t for t in mutation.all_targets() if mutation.mutable(t)]


@pytest.mark.parametrize("target", TARGETS, ids=[t.key for t in TARGETS])
def test_sampled_generated_mutants_are_rejected(target: mutation.Target, capsys) -> None:
    score = mutation.score_target(target, k=SAMPLE, seed=SEED, allowlist=ALLOW)
    capsys.readouterr()
    assert score.generated > 0, f"{target.key}: no mutant could be generated from its reference"
    survivors = "\n".join(f"  - {o.mutant.id} (reference line {o.mutant.line})" for o in score.survivors)
    assert not score.survivors, (
        f"{target.key}: the thorough check accepts {len(score.survivors)} generated mutant(s) of the reference:\n"
        f"{survivors}\nFix the check, or list a truly equivalent mutant in tests/mutation_allowlist.yaml.")


def test_allowlist_entries_name_existing_exercises_and_mutants() -> None:
    """A stale allow-list entry hides nothing, but it misleads a reviewer: keep it in sync."""
    by_key = {t.key: t for t in TARGETS}
    for key, entries in ALLOW.entries.items():
        assert key in by_key, f"mutation_allowlist.yaml names {key}, which has no reference to mutate"
        ids = {m.id for m in mutation.generate_mutants(by_key[key])}
        contract = {e for e in entries if e.startswith("contract:")}
        missing = set(entries) - ids - contract
        assert not missing, f"mutation_allowlist.yaml: {key} has no generated mutant {sorted(missing)}"


SOFTMAX = '''
def softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)
'''


def test_operators_cover_the_mistakes_learners_make() -> None:
    ids = [m.id for m in mutation.mutants_from_source(SOFTMAX)]
    text = "\n".join(ids)
    for fragment in ["operator: `x - x.max(axis=-1, keepdims=True)` -> `x + x.max(axis=-1, keepdims=True)`",
                     "drop-keepdims:", "axis: `axis=-1` -> `axis=0`", "method:", "x.min(axis=-1, keepdims=True)",
                     "e.mean(axis=-1, keepdims=True)", "drop-call: `np.exp(shifted)` -> `shifted`"]:
        assert fragment in text, f"no mutant like {fragment!r} among:\n{text}"
    assert len(ids) == len(set(ids)), "mutant ids must be unique"
    assert not any("def softmax(x)" in i for i in ids), "the signature itself is never mutated"


def test_a_weak_check_lets_mutants_survive_and_a_strong_one_kills_them() -> None:
    """The measurement measures: run the same mutants against a check that ignores its input."""
    import numpy as np

    mutants = mutation.mutants_from_source(SOFTMAX)
    x = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -5.0]])
    namespace = {"np": np}
    exec(SOFTMAX, namespace)  # noqa: S102
    expected = namespace["softmax"](x)
    strong_kills = weak_kills = 0
    for m in mutants:
        ns = {"np": np}
        exec(m.source, ns)  # noqa: S102
        with np.errstate(all="ignore"):
            try:
                got = ns["softmax"](x)
                wrong = got.shape != expected.shape or not np.allclose(got, expected)
            except Exception:
                wrong = True
        strong_kills += wrong
        weak_kills += 0  # a check that never compares kills nothing
    assert weak_kills == 0 and strong_kills >= 0.8 * len(mutants)
