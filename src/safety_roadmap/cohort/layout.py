"""Where a cohort keeps what, and the nbgrader configuration every cohort command shares."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .. import course
from ..errors import RoadmapError

COURSE_ID = "ai-safety-roadmap"
CONFIG_FILE = "nbgrader_config.py"
GRADEBOOK = "gradebook.db"
STATE_DIR = ".roadmap"          # our bookkeeping: what was graded from which bytes, problems seen
MARKER = "cohort.json"          # written by `roadmap cohort init`
STATE_FILE = "graded.json"      # per submission: hash of what was graded, and what went wrong
REPORTS = "reports"
TRUSTED_CONFIG = "nbgrader_config.trusted.py"   # the last nbgrader_config.py the instructor trusted
IGNORE = (".ipynb_checkpoints", "__pycache__", "feedback")  # never part of a submission (nbgrader's ignore list)


def state_dir(course_dir: Path) -> Path:
    return Path(course_dir) / STATE_DIR


def require_cohort(course_dir: Path) -> Path:
    """The resolved course directory, or a one-line error saying what is missing."""
    path = Path(course_dir).expanduser()
    if not path.exists():
        raise RoadmapError(f"{course_dir}: no such folder (create a cohort with `roadmap cohort init {course_dir}`)")
    if not path.is_dir():
        raise RoadmapError(f"{course_dir}: is a file, not a course folder")
    path = path.resolve()
    missing = [p for p in (GRADEBOOK, "source") if not (path / p).exists()]
    if missing:
        raise RoadmapError(f"{course_dir}: not a cohort course folder (no {' or '.join(missing)}); "
                           f"create one with `roadmap cohort init {course_dir}`")
    return path


def config_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def trust_config(course_dir: Path) -> str:
    """Record the current `nbgrader_config.py` as the instructor's (its hash, and a copy to diff against)."""
    data = (Path(course_dir) / CONFIG_FILE).read_bytes()
    marker = state_dir(course_dir) / MARKER
    info = read_json(marker, {})
    info["config_sha256"] = config_digest(data)
    write_json(marker, info)
    (state_dir(course_dir) / TRUSTED_CONFIG).write_bytes(data)
    return info["config_sha256"]


def verified_config_bytes(course_dir: Path) -> bytes | None:
    """The bytes of `nbgrader_config.py` if they are the ones last trusted; a clear refusal otherwise.

    The file is Python that runs in the grader: a changed file is never executed (a student who could
    write it would otherwise run code in the instructor's next command)."""
    path = Path(course_dir) / CONFIG_FILE
    if not path.exists():
        return None
    data = path.read_bytes()
    want = read_json(state_dir(course_dir) / MARKER, {}).get("config_sha256")
    if want == config_digest(data):
        return data
    what = ("has no recorded hash (made before roadmap checked it)" if not want else
            f"changed since it was last trusted (compare it with {STATE_DIR}/{TRUSTED_CONFIG})")
    raise RoadmapError(f"{path} {what}; it is code this command would run, so it was not loaded. "
                       "If the change is yours, rerun with --trust-config")


def load_file_config(course_dir: Path) -> Any:
    """The course's own `nbgrader_config.py` (an instructor may have edited it), as a traitlets Config,
    loaded only if its hash is the trusted one (`verified_config_bytes`)."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    data = verified_config_bytes(course_dir)
    if data is None:
        return Config()
    path = Path(course_dir) / CONFIG_FILE
    with tempfile.TemporaryDirectory(prefix="roadmap-config-") as tmp:   # load exactly the bytes we hashed
        (Path(tmp) / CONFIG_FILE).write_bytes(data)
        try:
            return PyFileConfigLoader(CONFIG_FILE, path=tmp).load_config()
        except Exception as exc:  # the file is Python: any error in it is the instructor's to fix
            raise RoadmapError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})") from None


def make_config(course_dir: Path, *, timeout: int | None = None, db_path: Path | None = None,
                file_config: Any = None) -> Any:
    """nbgrader config for a cohort: the project's defaults, then the course's file, then our overrides."""
    course_dir = Path(course_dir)
    cfg = course.make_config(course_dir)
    cfg.CourseDirectory.course_id = COURSE_ID
    cfg.merge(file_config if file_config is not None else load_file_config(course_dir))
    if timeout is not None:
        cfg.Execute.timeout = int(timeout)
    cfg.CourseDirectory.root = str(course_dir)
    cfg.CourseDirectory.db_url = f"sqlite:///{Path(db_path or course_dir / GRADEBOOK).resolve()}"
    return cfg


def api(cfg: Any) -> Any:
    """An in-process NbGraderAPI for a config (nbgrader's logging kept quiet)."""
    return course.api_from_config(cfg)


def assignments(course_dir: Path) -> list[str]:
    """The assignments registered in the course's gradebook, in name order."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{Path(course_dir) / GRADEBOOK}") as gb:
        return sorted(a.name for a in gb.assignments)


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise RoadmapError(f"{path}: unreadable ({exc}); delete it to start the bookkeeping afresh "
                           "(the gradebook is not affected)") from None


def write_json(path: Path, data: Any) -> None:
    """Write atomically, so an interrupted run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
