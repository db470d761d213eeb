"""`roadmap hint`: the N-th hint of an exercise, from the source chapter, never the solution."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from safety_roadmap.curriculum import load_curriculum
from safety_roadmap.errors import RoadmapError
from safety_roadmap.hints import hint, hints_for

from . import cohort_fixture as fx
from . import notebook_tools as nbt
from .cli_tools import cli
from .conftest import ROOT

REAL = "01_linear_algebra"   # the one chapter certain to exist
N = len(hints_for(load_curriculum(ROOT / "curriculum.yaml"), ROOT, REAL, "cosine_similarity")[1])


def _solution_lines(source_nb: dict) -> set[str]:
    lines = set()
    for cell in source_nb["cells"]:
        for block in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", nbt.source(cell), re.S):
            lines |= {line.strip() for line in block.splitlines() if len(line.strip()) > 12}
    return lines


def test_every_hint_of_the_real_chapter_is_what_the_learner_already_has(curriculum) -> None:
    source = nbt.load(ROOT / "solutions" / f"{REAL}.ipynb")
    release = "\n".join(nbt.source(c) for c in nbt.load(ROOT / "notebooks" / f"{REAL}.ipynb")["cells"])
    solution_lines = _solution_lines(source)
    chapter = curriculum.chapter(REAL)
    total = 0
    for ex in chapter.exercises:
        _, hints = hints_for(curriculum, ROOT, REAL, ex.id)
        total += len(hints)
        for n, text in enumerate(hints, 1):
            assert text and "<details>" not in text and "</summary>" not in text
            for line in text.splitlines():
                assert line.strip() in release, f"{ex.id} hint {n} shows something the learner's notebook lacks"
            for sol in solution_lines:
                assert sol not in text, f"{ex.id} hint {n} reveals solution line {sol!r}"
    # as many as the chapter has <summary>Hint N</summary> blocks
    assert total == sum(len(re.findall(r"<summary>\s*Hint \d+", nbt.source(c))) for c in source["cells"])
    assert total >= len(chapter.exercises)


def test_hint_text_and_numbering(curriculum) -> None:
    assert N >= 2
    first = hint(curriculum, ROOT, REAL, "cosine_similarity")
    assert first.startswith(f"Hint 1 of {N} for cosine_similarity (01_linear_algebra):")
    assert "roadmap hint 01_linear_algebra cosine_similarity 2" in first
    last = hint(curriculum, ROOT, "01", "cosine_similarity", N)   # a unique prefix names the chapter
    assert last.startswith(f"Hint {N} of {N}") and "Still stuck" not in last


def test_hints_come_from_the_exercise_own_cells(tmp_path: Path) -> None:
    root = fx.make_course(tmp_path)
    cur = load_curriculum(root / "curriculum.yaml")
    assert hints_for(cur, root, fx.ALPHA, "double")[1] == fx.EXERCISES["double"][2]
    assert hints_for(cur, root, fx.ALPHA, "add_one")[1] == fx.EXERCISES["add_one"][2]   # not double's
    with pytest.raises(RoadmapError, match="'total' in 02_beta has no hints"):
        hint(cur, root, fx.BETA, "total")


@pytest.mark.parametrize("args,fragment", [
    (["99_nothing", "x"], "no chapter '99_nothing'"),
    (["9", "x"], "no chapter '9'"),                      # a prefix that names no chapter
    ([REAL, "softmax"], "has no exercise 'softmax'"),
    ([REAL, "cosine_similarity", str(N + 1)], f"has {N} hint(s); ask for a number from 1 to {N}"),
    ([REAL, "cosine_similarity", "0"], f"ask for a number from 1 to {N}"),
    ([REAL, "cosine_similarity", "two"], "invalid int value: 'two'"),
    ([REAL], "required"),
])
def test_bad_hint_requests_are_one_line(capsys, monkeypatch, args, fragment) -> None:
    monkeypatch.setenv("SAFETY_ROADMAP_ROOT", str(ROOT))
    rc, out, err = cli(capsys, "hint", *args)
    assert rc != 0 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], err


def test_hint_command_prints_the_hint(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SAFETY_ROADMAP_ROOT", str(ROOT))
    rc, out, err = cli(capsys, "hint", REAL, "cosine_similarity")
    assert rc == 0 and err == ""
    assert out.startswith("Hint 1 of ") and "cosine_similarity (01_linear_algebra)" in out


def test_a_hint_in_a_broken_source_is_a_clear_error(tmp_path: Path) -> None:
    root = fx.make_course(tmp_path)
    cur = load_curriculum(root / "curriculum.yaml")
    (root / "solutions" / f"{fx.ALPHA}.ipynb").write_text('{"cells": [')
    with pytest.raises(RoadmapError, match="not a readable notebook"):
        hint(cur, root, fx.ALPHA, "double")
    (root / "solutions" / f"{fx.ALPHA}.ipynb").write_text(json.dumps({"cells": []}))
    with pytest.raises(RoadmapError, match="no test cell for 'double'"):
        hint(cur, root, fx.ALPHA, "double")


def test_hint_accepts_the_name_the_test_cell_checks(curriculum, capsys, monkeypatch) -> None:
    """Issue 13 item 6: chapter 04's `sgd_step` is graded as `mlp_sgd_step` (chapter 13, the issue's
    example, now names its grade ids after its functions)."""
    by_name = hint(curriculum, ROOT, "04", "sgd_step")
    assert by_name == hint(curriculum, ROOT, "04", "mlp_sgd_step")
    assert by_name.startswith("Hint 1 of ") and "for mlp_sgd_step (04_mlp_from_scratch)" in by_name
    monkeypatch.setenv("SAFETY_ROADMAP_ROOT", str(ROOT))
    rc, out, err = cli(capsys, "hint", "04", "no_such_fn")
    assert rc != 0 and out == "" and len(err.strip().splitlines()) == 1
    assert "valid names:" in err and "mlp_sgd_step (sgd_step)" in err
    rc, _, err = cli(capsys, "hint", "05", "Value")   # one class checked by several exercises
    assert rc != 0 and "value_add_mul" in err and "name one of those" in err
