"""`roadmap hint CHAPTER EXERCISE [N]`: the N-th hint for an exercise, from its source chapter.

Hints are the `<details><summary>Hint N</summary>...</details>` blocks in the
markdown cells that introduce an exercise (between the previous exercise's test
cell and this exercise's test cell). Only plain markdown cells are read, never
solution cells or code, so a hint shows exactly what the learner's own notebook
already holds behind a click, and nothing of the solution.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import exercises
from .curriculum import Chapter, Curriculum
from .errors import RoadmapError

_HINT = re.compile(r"<details>\s*<summary>\s*(?:<b>|<strong>)?\s*Hint\s+(\d+)\s*(?:</b>|</strong>)?\s*</summary>"
                   r"(.*?)</details>", re.S | re.I)
_SOLUTION = re.compile(r"###\s*BEGIN SOLUTION.*?###\s*END SOLUTION", re.S)


def hints_for(cur: Curriculum, root: Path, chapter_id: str, exercise_name: str) -> tuple[Chapter, list[str]]:
    """The chapter and the exercise's hints, in order (Hint 1 first)."""
    chapter, _, hints = _named_hints(cur, root, chapter_id, exercise_name)
    return chapter, hints


def _named_hints(cur: Curriculum, root: Path, chapter_id: str, exercise_name: str) -> tuple[Chapter, str, list[str]]:
    """The chapter, the exercise's grade id and its hints; `exercise_name` is the grade id or the
    function/class name the test cell checks."""
    chapter = exercises.chapter_by_name(cur, chapter_id)
    cells = exercises.source_cells(root, chapter)
    ex = exercises.find(chapter, cells, exercise_name)
    found: dict[int, str] = {}
    for i in ex.prose:
        for number, body in _HINT.findall(exercises.cell_source(cells[i])):
            found.setdefault(int(number), _SOLUTION.sub("", body).strip())
    return chapter, ex.id, [found[n] for n in sorted(found)]


def hint(cur: Curriculum, root: Path, chapter_id: str, exercise_name: str, number: int = 1) -> str:
    """The text `roadmap hint` prints for hint `number` (1-based)."""
    chapter, exercise_id, hints = _named_hints(cur, root, chapter_id, exercise_name)
    if not hints:
        raise RoadmapError(f"exercise '{exercise_id}' in {chapter.id} has no hints")
    if not 1 <= number <= len(hints):
        raise RoadmapError(f"exercise '{exercise_id}' has {len(hints)} hint(s); ask for a number from 1 to "
                           f"{len(hints)}")
    lines = [f"Hint {number} of {len(hints)} for {exercise_id} ({chapter.id}):", "", hints[number - 1], ""]
    if number < len(hints):
        lines.append(f"Still stuck? `roadmap hint {chapter.id} {exercise_id} {number + 1}`")
    return "\n".join(lines).rstrip() + "\n"
