"""`roadmap hint CHAPTER EXERCISE [N]`: the N-th hint for an exercise, from its source chapter.

Hints are the `<details><summary>Hint N</summary>...</details>` blocks in the
markdown cells that introduce an exercise (between the previous exercise's test
cell and this exercise's test cell). Only plain markdown cells are read, never
solution cells or code, so a hint shows exactly what the learner's own notebook
already holds behind a click, and nothing of the solution.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .curriculum import Chapter, Curriculum
from .errors import RoadmapError

_HINT = re.compile(r"<details>\s*<summary>\s*(?:<b>|<strong>)?\s*Hint\s+(\d+)\s*(?:</b>|</strong>)?\s*</summary>"
                   r"(.*?)</details>", re.S | re.I)
_SOLUTION = re.compile(r"###\s*BEGIN SOLUTION.*?###\s*END SOLUTION", re.S)


def _chapter(cur: Curriculum, chapter_id: str) -> Chapter:
    """The chapter by id, or by a prefix that names exactly one (`01` for `01_linear_algebra`)."""
    ids = [c.id for c in cur.chapters]
    if chapter_id in ids:
        return cur.chapter(chapter_id)
    matches = [c for c in ids if c.startswith(chapter_id)] if chapter_id else []
    if len(matches) == 1:
        return cur.chapter(matches[0])
    return cur.chapter(chapter_id)  # raises with the list of known chapters


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def hints_for(cur: Curriculum, root: Path, chapter_id: str, exercise_id: str) -> tuple[Chapter, list[str]]:
    """The chapter and the exercise's hints, in order (Hint 1 first)."""
    chapter = _chapter(cur, chapter_id)
    known = [e.id for e in chapter.exercises]
    if exercise_id not in known:
        raise RoadmapError(f"chapter {chapter.id} has no exercise '{exercise_id}' (its exercises: "
                           f"{', '.join(known) or 'none yet'})")
    path = Path(root) / "solutions" / f"{chapter.id}.ipynb"
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
    except FileNotFoundError:
        raise RoadmapError(f"solutions/{chapter.id}.ipynb is missing from the course files") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RoadmapError(f"solutions/{chapter.id}.ipynb: not a readable notebook ({exc})") from None
    block: list[dict] = []
    for cell in cells:
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if meta.get("grade") and meta.get("grade_id") == exercise_id:
            break
        if meta.get("grade"):
            block = []
        elif cell.get("cell_type") == "markdown" and not meta.get("solution"):
            block.append(cell)
    else:
        raise RoadmapError(f"solutions/{chapter.id}.ipynb has no test cell for '{exercise_id}'")
    found: dict[int, str] = {}
    for cell in block:
        for number, body in _HINT.findall(_source(cell)):
            found.setdefault(int(number), _SOLUTION.sub("", body).strip())
    return chapter, [found[n] for n in sorted(found)]


def hint(cur: Curriculum, root: Path, chapter_id: str, exercise_id: str, number: int = 1) -> str:
    """The text `roadmap hint` prints for hint `number` (1-based)."""
    chapter, hints = hints_for(cur, root, chapter_id, exercise_id)
    if not hints:
        raise RoadmapError(f"exercise '{exercise_id}' in {chapter.id} has no hints")
    if not 1 <= number <= len(hints):
        raise RoadmapError(f"exercise '{exercise_id}' has {len(hints)} hint(s); ask for a number from 1 to "
                           f"{len(hints)}")
    lines = [f"Hint {number} of {len(hints)} for {exercise_id} ({chapter.id}):", "", hints[number - 1], ""]
    if number < len(hints):
        lines.append(f"Still stuck? `roadmap hint {chapter.id} {exercise_id} {number + 1}`")
    return "\n".join(lines).rstrip() + "\n"
