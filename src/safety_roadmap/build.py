"""`roadmap build`: regenerate the learner notebooks in `notebooks/` from `solutions/`."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from . import course
from .curriculum import Curriculum, check_against_notebooks
from .errors import RoadmapError


def clean_source(path: Path) -> bool:
    """Drop outputs and execution counts from a source chapter in place; True if it changed."""
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    cleaned = course.dump_notebook(nb)
    if cleaned != text:
        path.write_text(cleaned, encoding="utf-8")
        return True
    return False


def release_text(source: Path, chapter_id: str) -> str:
    """The learner version of one source chapter, exactly as it is committed."""
    with tempfile.TemporaryDirectory(prefix="roadmap-build-") as tmp:
        root = Path(tmp)
        course.add_source(root, chapter_id, source)
        released = course.generate(root, chapter_id, database=False)
        nb = json.loads(released.read_text(encoding="utf-8"))
    return course.dump_notebook(nb)


def build(cur: Curriculum, root: Path, chapter_ids: list[str] | None = None) -> list[Path]:
    """Regenerate the learner notebooks for `chapter_ids` (all chapters when None), cleaning
    outputs out of their sources first."""
    wanted = chapter_ids or [c.id for c in cur.chapters]
    for cid in wanted:
        cur.chapter(cid)  # unknown id -> clear error before any work
    check_against_notebooks(cur, root / "solutions", only=wanted)
    out_dir = root / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for cid in wanted:
        source = root / "solutions" / f"{cid}.ipynb"
        if not source.exists():
            raise RoadmapError(f"solutions/{cid}.ipynb: missing")
        if clean_source(source):
            print(f"cleaned outputs from solutions/{cid}.ipynb")
        target = out_dir / f"{cid}.ipynb"
        target.write_text(release_text(source, cid), encoding="utf-8")
        written.append(target)
    return written
