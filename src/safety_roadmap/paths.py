"""Where the project's files are, from any working directory."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import RoadmapError

ROOT_ENV = "SAFETY_ROADMAP_ROOT"


def _is_root(path: Path) -> bool:
    return (path / "curriculum.yaml").is_file() and (path / "solutions").is_dir()


def project_root() -> Path:
    """The checkout holding `curriculum.yaml` and `solutions/`.

    Looked up in order: $SAFETY_ROADMAP_ROOT, the checkout this package was
    installed from (an editable install, as `make lab` does), then the current
    directory and its parents.
    """
    env = os.environ.get(ROOT_ENV)
    if env:
        root = Path(env).expanduser().resolve()
        if not _is_root(root):
            raise RoadmapError(f"${ROOT_ENV} is {env}, which holds no curriculum.yaml and solutions/")
        return root
    here = Path(__file__).resolve()
    for candidate in [here.parents[2], *[Path.cwd(), *Path.cwd().parents]]:
        if _is_root(candidate):
            return candidate
    raise RoadmapError("cannot find the course files (curriculum.yaml and solutions/): run from inside the "
                       f"checkout, or set ${ROOT_ENV} to it")


def curriculum_path(root: Path | None = None) -> Path:
    return (root or project_root()) / "curriculum.yaml"
