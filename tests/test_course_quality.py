"""Course-wide promises no single chapter's tests can keep: hints that teach without answering,
quizzes that reward knowing rather than guessing, and research work where the course says it is.

Read from the source chapters (solutions/), so they hold for every chapter written later too.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from safety_roadmap.curriculum import load_curriculum

from .conftest import ROOT

CURRICULUM = load_curriculum(ROOT / "curriculum.yaml")
PHASE_OF = {ch.id: i for i, phase in enumerate(CURRICULUM.phases, 1) for ch in phase.chapters}

# Chapters of phase 2 and later without a tests/test_chapter_NN_claims.py, keyed by chapter number, each with
# its reason. "No stochastic outcome" is the only lasting reason (a chapter whose prose states nothing a
# training run or a sample could change); no chapter qualifies today. A chapter being written may sit here
# until its claims test lands; the test fails once the file exists, so the entry cannot go stale.
CLAIMS_EXEMPT: dict[str, str] = {}

_EXERCISE = re.compile(r"#+\s*Exercise[^\n]*?difficulty\s*(\d)\s*/\s*5", re.I)
_HINT = re.compile(r"<details>\s*<summary>[^<]*</summary>(.*?)</details>", re.S)
_OPTION = re.compile(r"^\s*[-*]\s*\*\*\(([a-e])\)\*\*\s*(.+)$", re.M)
_ANSWER = re.compile(r"^\s*\w+\s*=\s*[\"']([a-e])[\"']\s*$", re.M)
_SOLUTION = re.compile(r"### BEGIN SOLUTION(.*?)### END SOLUTION", re.S)


@dataclass
class Exercise:
    """One exercise as the source chapter presents it: its prompt's difficulty, hints, options,
    the reference solution's lines and the points of the test cell that follows."""
    chapter: str
    difficulty: int
    hints: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    solution: str = ""
    answer: str | None = None
    points: float = 0.0
    grade_id: str = ""


def _normalise(line: str) -> str:
    line = re.sub(r"^\s*return\b", "", line.split("#")[0]).replace("'", '"')
    return re.sub(r"\s+", "", line)


def solution_lines(solution: str) -> list[str]:
    """The reference's code lines that could stand on their own (long enough to be an answer)."""
    out = []
    for line in solution.splitlines():
        norm = _normalise(line)
        if len(norm) >= 12 and not line.strip().startswith(("pass", "return None")):
            out.append(norm)
    return out


def exercises(chapter_id: str) -> list[Exercise]:
    nb = json.loads((ROOT / "solutions" / f"{chapter_id}.ipynb").read_text(encoding="utf-8"))
    out: list[Exercise] = []
    current: Exercise | None = None
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "markdown":
            m = _EXERCISE.search(src)
            if m:
                current = Exercise(chapter_id, int(m.group(1)))
            if current is not None:
                current.hints += _HINT.findall(src)
                current.options.update(dict(_OPTION.findall(src)))
            continue
        if current is None:
            continue
        if meta.get("solution") and not meta.get("grade"):
            current.solution += "\n".join(_SOLUTION.findall(src))
            a = _ANSWER.search(current.solution)
            current.answer = a.group(1) if a else current.answer
        if meta.get("grade") and meta.get("points"):
            current.points, current.grade_id = float(meta["points"]), meta["grade_id"]
            out.append(current)
            current = None
    return out


ALL = {ch.id: exercises(ch.id) for ch in CURRICULUM.chapters}


@pytest.mark.parametrize("chapter_id", list(ALL))
def test_hints_teach_without_holding_the_answer(chapter_id: str) -> None:
    leaks = []
    for ex in ALL[chapter_id]:
        lines = solution_lines(ex.solution)
        hints = _normalise(" ".join(h.replace("`", " ") for h in ex.hints).replace("\n", " "))
        hinted = [line for line in lines if line in hints]
        if lines and len(hinted) >= max(1, (len(lines) + 1) // 2):
            leaks.append(f"{ex.grade_id}: the hints hold {len(hinted)} of {len(lines)} solution lines, "
                         f"e.g. {hinted[0][:70]!r}")
    assert not leaks, ("Hint 1 gives the idea, Hint 2 the approach or API; no hint holds the answer:\n  "
                       + "\n  ".join(leaks))


def _quizzes() -> list[Exercise]:
    return [ex for exs in ALL.values() for ex in exs if ex.answer and len(ex.options) >= 3]


def test_quiz_answers_are_not_given_away_by_their_length() -> None:
    quizzes = _quizzes()
    longest = [f"{q.chapter}/{q.grade_id}" for q in quizzes
               if max(q.options, key=lambda k: len(q.options[k])) == q.answer]
    assert len(longest) <= len(quizzes) / 3, (
        f"the right option is the longest in {len(longest)} of {len(quizzes)} quizzes ({longest}): "
        "a learner who picks the longest option should do no better than chance")


def test_quiz_answer_letters_are_spread_out() -> None:
    quizzes = _quizzes()
    letters = Counter(q.answer for q in quizzes)
    most, count = letters.most_common(1)[0]
    assert count <= max(2, 0.4 * len(quizzes)), (
        f"{count} of {len(quizzes)} quiz answers are ({most}): {dict(letters)}; spread the right letters")


def test_every_quiz_answer_is_one_of_its_options() -> None:
    for q in _quizzes():
        assert q.answer in q.options, f"{q.chapter}/{q.grade_id}: answer ({q.answer}) is not an option"


@pytest.mark.parametrize("chapter_id", [c for c in ALL if PHASE_OF[c] >= 2])
def test_research_chapters_put_half_their_points_on_research_work(chapter_id: str) -> None:
    exs = ALL[chapter_id]
    total = sum(ex.points for ex in exs)
    hard = sum(ex.points for ex in exs if ex.difficulty >= 3)
    share = hard / total if total else 0.0
    assert share >= 0.5, (f"{chapter_id}: only {share:.0%} of its points are on exercises of difficulty >= 3; "
                          "the learner should carry the research steps (loops, selection, evaluation)")


def test_every_graded_exercise_states_its_difficulty() -> None:
    graded = {ex.grade_id for exs in ALL.values() for ex in exs}
    for ch in CURRICULUM.chapters:
        for ex in ch.exercises:
            assert ex.id in graded, (f"{ch.id}/{ex.id}: no 'Exercise ... difficulty N/5' heading above its "
                                     "test cell")


@pytest.mark.parametrize("chapter_id", [c for c in ALL if PHASE_OF[c] >= 2])
def test_research_chapters_assert_their_claims(chapter_id: str) -> None:
    """Every outcome a phase 2+ chapter states (a figure title, "the loss collapses") is asserted by a test,
    across seeds where it is stochastic: tests/test_chapter_NN_claims.py (CONVENTIONS.md, honest experiments)."""
    number = chapter_id.split("_", 1)[0]
    path = ROOT / "tests" / f"test_chapter_{number}_claims.py"
    if number in CLAIMS_EXEMPT:
        if path.exists():
            pytest.fail(f"{chapter_id} now has {path.name}: remove {number!r} from CLAIMS_EXEMPT")
        pytest.skip(f"{chapter_id}: {CLAIMS_EXEMPT[number]}")
    assert path.exists(), (f"{chapter_id} has no {path.relative_to(ROOT)}: assert every outcome its prose and figure "
                           "titles state (across >= 3 seeds where stochastic), re-running the reference experiment "
                           "functions, or add it to CLAIMS_EXEMPT with the reason it states none")
    text = path.read_text(encoding="utf-8")
    assert "def test_" in text and "assert" in text, f"{path.name} defines no test that asserts anything"
