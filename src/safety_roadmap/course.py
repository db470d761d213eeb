"""Scratch nbgrader course directories: the plumbing `build` and `grade` share.

nbgrader works on a course directory (`source/`, `release/`, `submitted/`,
`autograded/` and a gradebook). We make a throw-away one per run so the
learner's checkout is never touched, and create the gradebook in process
(nbgrader would otherwise shell out to `alembic`, which is slow and fails
when the environment's `bin/` is not on PATH).
"""
from __future__ import annotations

import json
import logging
import shutil
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import RoadmapError

LEARNER_ID = "learner"


@lru_cache(maxsize=1)
def _alembic_head() -> str:
    import nbgrader
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(nbgrader.__file__).parent / "alembic"))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    if head is None:  # pragma: no cover - nbgrader always ships migrations
        raise RoadmapError("nbgrader's database migrations are missing; reinstall nbgrader")
    return head


def create_gradebook(path: Path) -> str:
    """Create an empty, up-to-date nbgrader gradebook at `path`; return its URL."""
    from nbgrader.api import Base
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{Path(path).resolve()}"
    engine = create_engine(url, future=True)
    Base.metadata.create_all(bind=engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("DELETE FROM alembic_version"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": _alembic_head()})
    engine.dispose()
    return url


def make_config(root: Path, *, timeout: int | None = None, database: bool = True) -> Any:
    """A traitlets config for a course directory at `root`."""
    from traitlets.config import Config

    cfg = Config()
    cfg.CourseDirectory.root = str(root)
    cfg.CourseDirectory.db_url = f"sqlite:///{(root / 'gradebook.db').resolve()}"
    cfg.Exchange.root = str(root / "exchange")
    if timeout is not None:
        cfg.Execute.timeout = int(timeout)
    # nbgrader's default for Python kernels, plus a quiet kernel log (no transport warnings on stderr).
    cfg.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]
    cfg.OverwriteCells.add_missing_cells = True
    if not database:
        cfg.GenerateAssignment.no_database = True
        cfg.SaveCells.enabled = False
    return cfg


def api_for(root: Path, **config: Any) -> Any:
    """An in-process `NbGraderAPI` for the course at `root`, with nbgrader's logging kept quiet."""
    return api_from_config(make_config(root, **config))


def api_from_config(cfg: Any) -> Any:
    """An in-process `NbGraderAPI` for a ready-made config (see `make_config`), logging kept quiet."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    logging.getLogger("traitlets").setLevel(logging.ERROR)
    # nbgrader 0.9.6 triggers SQLAlchemy 2 "not in session" warnings on every autograde: noise, not a fault.
    warnings.filterwarnings("ignore", message=".*not in session.*")
    return NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)


def add_source(root: Path, chapter_id: str, source_nb: Path) -> None:
    """Place a chapter's source notebook as assignment `chapter_id` of the course."""
    dest = root / "source" / chapter_id
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_nb, dest / f"{chapter_id}.ipynb")


def generate(root: Path, chapter_id: str, *, database: bool = True) -> Path:
    """Run nbgrader's own assignment generation; return the released notebook's path."""
    if database and not (root / "gradebook.db").exists():
        create_gradebook(root / "gradebook.db")
    result = api_for(root, database=database).generate_assignment(chapter_id, force=True, create=True)
    if not result.get("success"):
        detail = (result.get("error") or result.get("log") or "").strip().splitlines()
        raise RoadmapError(f"nbgrader could not generate '{chapter_id}': {detail[-1] if detail else 'unknown error'}")
    return root / "release" / chapter_id / f"{chapter_id}.ipynb"


def dump_notebook(nb: dict) -> str:
    """The one on-disk form of a notebook (nbformat's own layout), so builds are byte-for-byte stable."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
