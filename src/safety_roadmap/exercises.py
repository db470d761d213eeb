"""A chapter notebook's exercises: what each is called and which cells hold it.

Every command that takes an exercise (`roadmap hint`, `reset`, `solution`)
accepts its grade id (`patching_recovery`) or the function or class its test
cell hands to the check (`check_patching_recovery(normalised_recovery)`), so a
learner can use the name they see in their code.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .curriculum import Chapter, Curriculum
from .errors import RoadmapError

_CHECKED = re.compile(r"\bcheck_\w+\(\s*([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Exercise:
    """One graded cell and the cells that belong to it (indices into the notebook's cells)."""
    id: str
    test: int
    names: list[str] = field(default_factory=list)     # what the test cell passes to its checks
    answers: list[int] = field(default_factory=list)   # the learner's answer cells
    prose: list[int] = field(default_factory=list)     # plain markdown cells introducing it (hints live here)


def cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def nbgrader_meta(cell: dict) -> dict:
    meta = (cell.get("metadata") or {}).get("nbgrader") or {}
    return meta if isinstance(meta, dict) else {}


def read_cells(path: Path, what: str) -> list[dict]:
    """The notebook's cells, or a one-line RoadmapError naming `what` (how the learner knows the file)."""
    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    except FileNotFoundError:
        raise RoadmapError(f"{what} is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RoadmapError(f"{what}: not a readable notebook ({exc})") from None
    if not isinstance(cells, list):
        raise RoadmapError(f"{what}: not a readable notebook (its 'cells' is not a list)")
    return cells


def exercises_in(cells: list[dict]) -> list[Exercise]:
    """Every graded cell of a notebook, in order, with its answer and prose cells."""
    found: list[Exercise] = []
    answers: list[int] = []
    prose: list[int] = []
    for i, cell in enumerate(cells):
        meta = nbgrader_meta(cell)
        if meta.get("grade") and meta.get("grade_id"):
            own = [i] if meta.get("solution") else []   # a free-text answer is its own graded cell
            names = list(dict.fromkeys(_CHECKED.findall(cell_source(cell))))
            found.append(Exercise(str(meta["grade_id"]), i, names, answers + own, prose))
            answers, prose = [], []
        elif meta.get("solution"):
            answers.append(i)
        elif cell.get("cell_type") == "markdown":
            prose.append(i)
    return found


def chapter_by_name(cur: Curriculum, name: str) -> Chapter:
    """The chapter by id, or by a prefix that names exactly one (`01` for `01_linear_algebra`)."""
    ids = [c.id for c in cur.chapters]
    if name in ids:
        return cur.chapter(name)
    matches = [c for c in ids if c.startswith(name)] if name else []
    if len(matches) == 1:
        return cur.chapter(matches[0])
    return cur.chapter(name)  # raises with the list of known chapters


def source_cells(root: Path, chapter: Chapter) -> list[dict]:
    return read_cells(Path(root) / "solutions" / f"{chapter.id}.ipynb",
                      f"solutions/{chapter.id}.ipynb (the course files)")


def find(chapter: Chapter, cells: list[dict], name: str) -> Exercise:
    """The chapter's exercise called `name` (grade id or checked name); else one line listing valid names."""
    known = {e.id for e in chapter.exercises}
    listed = [e for e in exercises_in(cells) if e.id in known]
    for ex in listed:
        if ex.id == name:
            return ex
    if name in known:
        raise RoadmapError(f"{chapter.id}'s notebook has no test cell for '{name}'")
    by_name = [ex for ex in listed if name in ex.names]
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        raise RoadmapError(f"'{name}' is checked by {len(by_name)} exercises of {chapter.id}: "
                           f"{', '.join(e.id for e in by_name)}; name one of those")
    valid = [ex.id + (f" ({', '.join(n for n in ex.names if n != ex.id)})"
                      if [n for n in ex.names if n != ex.id] else "") for ex in listed]
    raise RoadmapError(f"chapter {chapter.id} has no exercise '{name}'; valid names: "
                       f"{', '.join(valid) or 'none yet'}")
