"""A learner's workspace: their own copies of the chapter notebooks, apart from the course's files.

Learners who edit the tracked `notebooks/` get conflicts on every `git pull` and
can only reset a whole chapter. So `make lab` opens `workspace/` instead: a
git-ignored folder in the checkout (or $SAFETY_ROADMAP_WORKSPACE), filled by
copying the release notebooks. It lives in the checkout, not in a hidden user
data folder, so a learner sees their files next to the course, JupyterLab can
open it as its root, and two clones never share answers by surprise.

- `sync` copies the release of every chapter that has no copy yet, and never
  writes over a file that exists: a course update brings new chapters, and
  leaves the learner's work alone.
- `reset` puts one exercise's answer cells back to the release, after saving
  the whole notebook under `.backups/`.
- `solution_text` is the reference answer from the source chapter.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import exercises
from .course import dump_notebook
from .curriculum import Chapter, Curriculum
from .errors import RoadmapError

WORKSPACE_ENV = "SAFETY_ROADMAP_WORKSPACE"
BACKUPS = ".backups"
_MARKER = re.compile(r"^[ \t]*### (?:BEGIN|END) SOLUTION[ \t]*\n?", re.M)


def workspace_dir(root: Path) -> Path:
    """$SAFETY_ROADMAP_WORKSPACE, else `workspace/` in the checkout."""
    env = os.environ.get(WORKSPACE_ENV)
    return Path(env).expanduser() if env else Path(root) / "workspace"


def release_path(root: Path, chapter_id: str) -> Path:
    return Path(root) / "notebooks" / f"{chapter_id}.ipynb"


def sync(cur: Curriculum, root: Path, ws: Path) -> list[Path]:
    """Copy each chapter's release notebook into `ws` unless a file of that name is there; return
    the copies made. An existing file is never opened for writing."""
    if ws.exists() and not ws.is_dir():
        raise RoadmapError(f"{ws}: is a file, not a folder; move it aside or set ${WORKSPACE_ENV}")
    ws.mkdir(parents=True, exist_ok=True)
    added = []
    for chapter in cur.chapters:
        release, target = release_path(root, chapter.id), ws / f"{chapter.id}.ipynb"
        if not release.exists() or target.exists():
            continue
        try:
            with release.open("rb") as src, target.open("xb") as dst:   # "x": fails rather than overwrite
                shutil.copyfileobj(src, dst)
        except FileExistsError:
            continue
        added.append(target)
    return added


def started(cur: Curriculum, root: Path, ws: Path) -> list[Path]:
    """The workspace notebooks where the learner has written an answer (an answer cell differs from the
    release). Opening and saving a chapter does not count; an unreadable file does, so grading says why."""
    out = []
    for chapter in cur.chapters:
        mine, release = ws / f"{chapter.id}.ipynb", release_path(root, chapter.id)
        if mine.is_file() and (not release.exists() or _answers(mine) != _answers(release)):
            out.append(mine)
    return out


def _answers(path: Path) -> dict[str, str] | None:
    """grade id -> source of every answer cell; None when the file is not a readable notebook."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return {str(exercises.nbgrader_meta(c).get("grade_id")): exercises.cell_source(c)
                for c in cells if exercises.nbgrader_meta(c).get("solution")}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _learner_notebook(ws: Path, chapter: Chapter) -> tuple[Path, dict]:
    path = ws / f"{chapter.id}.ipynb"
    if not path.is_file():
        raise RoadmapError(f"{path} does not exist: run `make lab` (or `roadmap workspace`) to create your copy")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RoadmapError(f"{path}: not a readable notebook ({exc}); it was left as it is") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise RoadmapError(f"{path}: not a notebook (no list of cells); it was left as it is")
    return path, nb


@dataclass
class Reset:
    exercise: str
    notebook: Path
    backup: Path
    cells: int


def reset(cur: Curriculum, root: Path, ws: Path, chapter_name: str, exercise_name: str) -> Reset:
    """Restore one exercise's answer cells in the learner's notebook from the release, keeping a
    backup of the notebook as it was. Nothing is written unless every answer cell is found."""
    chapter = exercises.chapter_by_name(cur, chapter_name)
    release = exercises.read_cells(release_path(root, chapter.id), f"notebooks/{chapter.id}.ipynb (the release)")
    ex = exercises.find(chapter, release, exercise_name)
    path, nb = _learner_notebook(ws, chapter)
    mine = {exercises.nbgrader_meta(c).get("grade_id"): c for c in nb["cells"]}
    fresh = [release[i] for i in ex.answers]
    missing = [exercises.nbgrader_meta(c).get("grade_id") for c in fresh
               if exercises.nbgrader_meta(c).get("grade_id") not in mine]
    if not fresh:
        raise RoadmapError(f"exercise '{ex.id}' has no answer cell to reset")
    if missing:
        raise RoadmapError(f"{path} has no cell '{missing[0]}' (deleted?); nothing was changed. Copy the cell "
                           f"from {release_path(root, chapter.id)}")
    backup = _backup(path, ws, ex.id)
    for cell in fresh:
        target = mine[exercises.nbgrader_meta(cell).get("grade_id")]
        target["source"] = cell.get("source", "")
        if target.get("cell_type") == "code":
            target["outputs"], target["execution_count"] = [], None
    _write_atomic(path, dump_notebook(nb))
    return Reset(ex.id, path, backup, len(fresh))


def _backup(path: Path, ws: Path, exercise_id: str) -> Path:
    folder = ws / BACKUPS
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        target = folder / f"{path.stem}.{exercise_id}.{stamp}{f'-{n}' if n else ''}.ipynb"
        try:
            with path.open("rb") as src, target.open("xb") as dst:
                shutil.copyfileobj(src, dst)
            return target
        except FileExistsError:
            continue
    raise RoadmapError(f"{folder}: too many backups made this second; nothing was changed")


def _write_atomic(path: Path, text: str) -> None:
    """Replace `path` in one step, so an interrupted write never leaves half a notebook."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def solution_text(cur: Curriculum, root: Path, chapter_name: str, exercise_name: str) -> tuple[Chapter, str, str]:
    """(chapter, exercise id, the reference answer cells' text without nbgrader's markers)."""
    chapter = exercises.chapter_by_name(cur, chapter_name)
    cells = exercises.source_cells(root, chapter)
    ex = exercises.find(chapter, cells, exercise_name)
    parts = [_MARKER.sub("", exercises.cell_source(cells[i])).strip("\n") for i in ex.answers]
    if not parts:
        raise RoadmapError(f"exercise '{ex.id}' has no answer cell")
    return chapter, ex.id, "\n\n".join(parts) + "\n"
