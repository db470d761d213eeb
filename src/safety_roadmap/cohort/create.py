"""`roadmap cohort init DIR`: a ready nbgrader course directory, one assignment per chapter."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from .. import course
from ..curriculum import Curriculum, check_against_notebooks
from ..errors import RoadmapError
from . import layout

CONFIG_TEXT = '''\
# nbgrader configuration for this cohort, written by `roadmap cohort init`.
# Plain `nbgrader` commands run from this folder read it, and so does `roadmap cohort ...`.
# See https://nbgrader.readthedocs.io/en/stable/configuration/config_options.html
c = get_config()  # noqa: F821

c.CourseDirectory.course_id = "{course_id}"

# Where `nbgrader release_assignment` / `collect` exchange files. A local folder suits one machine;
# on a shared JupyterHub, point it at the shared exchange (for example /srv/nbgrader/exchange).
c.Exchange.root = "exchange"

# Per-cell time limit when autograding, in seconds (`roadmap cohort grade --timeout` overrides it).
c.Execute.timeout = {timeout}
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]

# A test cell a student deleted is put back and graded, instead of being left for manual grading.
c.OverwriteCells.add_missing_cells = True

# Feedback without the hidden tests: nbgrader's own feedback would show their source and tracebacks.
c.GenerateFeedback.preprocessors = [
    "safety_roadmap.cohort.feedback.HideHiddenTests",
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
'''

README_TEXT = '''\
# {title}: a cohort course

An ordinary nbgrader course directory, made by `roadmap cohort init`.

    source/<chapter>/<chapter>.ipynb     the source chapters (solutions, hidden tests)
    release/<chapter>/<chapter>.ipynb    what students get
    submitted/<student>/<chapter>/       what students hand in (`nbgrader collect` puts it here)
    autograded/, feedback/               written by grading and by the report
    gradebook.db                         nbgrader's gradebook
    nbgrader_config.py                   nbgrader settings (timeouts, exchange, feedback)
    reports/                             grades.csv, exercises.csv, summary.txt (`roadmap cohort report`)
    .roadmap/                            roadmap's bookkeeping: what was graded from which bytes

With roadmap:

    roadmap cohort grade .  [--workers N] [--timeout S] [--memory-mb MB] [--force]
    roadmap cohort report .

With plain nbgrader, from this folder: `nbgrader release_assignment <chapter>`,
`nbgrader collect <chapter>`, `nbgrader autograde <chapter>`, `nbgrader formgrader`,
`nbgrader generate_feedback <chapter>`, `nbgrader export`. Both share the gradebook.
`roadmap cohort grade` runs each submission's kernel in a bubblewrap sandbox and flags
tampering; plain `nbgrader autograde` runs student code as you, unsandboxed.
roadmap loads nbgrader_config.py only while its hash is the trusted one: after editing it,
pass --trust-config once.
'''


def init_cohort(course_dir: Path, cur: Curriculum, root: Path, chapter_ids: list[str] | None = None,
                *, timeout: int = 120, trust_config: bool = False) -> list[str]:
    """Create (or extend) a cohort course directory; return one line per thing done."""
    wanted = list(dict.fromkeys(chapter_ids or [c.id for c in cur.chapters]))
    if not wanted:
        raise RoadmapError("the curriculum has no chapters yet")
    for cid in wanted:
        cur.chapter(cid)  # unknown id -> one clear line before any work
    check_against_notebooks(cur, root / "solutions", only=wanted)
    course_dir = Path(course_dir).expanduser()
    if course_dir.exists() and not course_dir.is_dir():
        raise RoadmapError(f"{course_dir}: is a file, not a folder")
    existing: list[str] = []
    if course_dir.exists() and any(course_dir.iterdir()):
        if not ((course_dir / layout.GRADEBOOK).is_file() and (course_dir / "source").is_dir()):
            raise RoadmapError(f"{course_dir}: exists and is not empty, and is not a cohort course folder; "
                               "choose a new or empty folder")
        existing = layout.assignments(course_dir)
    course_dir.mkdir(parents=True, exist_ok=True)
    course_dir = course_dir.resolve()
    done: list[str] = []
    if not (course_dir / layout.CONFIG_FILE).exists():
        (course_dir / layout.CONFIG_FILE).write_text(
            CONFIG_TEXT.format(course_id=layout.COURSE_ID, timeout=int(timeout)), encoding="utf-8")
        layout.trust_config(course_dir)
        done.append(f"wrote {layout.CONFIG_FILE}")
    elif trust_config:
        layout.trust_config(course_dir)
    if not (course_dir / "README.md").exists():
        (course_dir / "README.md").write_text(README_TEXT.format(title=cur.title), encoding="utf-8")
    if not (course_dir / layout.GRADEBOOK).exists():
        course.create_gradebook(course_dir / layout.GRADEBOOK)
        done.append(f"created {layout.GRADEBOOK}")
    (course_dir / "submitted").mkdir(exist_ok=True)
    api = layout.api(layout.make_config(course_dir))
    for cid in wanted:
        if cid in existing:
            done.append(f"{cid}: already in the course (left unchanged)")
            continue
        course.add_source(course_dir, cid, root / "solutions" / f"{cid}.ipynb")
        result = api.generate_assignment(cid, force=True, create=True)
        if not result.get("success"):
            lines = (result.get("error") or result.get("log") or "").strip().splitlines()
            raise RoadmapError(f"nbgrader could not generate '{cid}': {lines[-1] if lines else 'unknown error'}")
        done.append(f"{cid}: source/{cid}/, release/{cid}/ and the gradebook entry")
    marker = layout.state_dir(course_dir) / layout.MARKER
    info = layout.read_json(marker, {})
    info.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    info["curriculum"] = cur.title
    info["chapters"] = sorted(set(info.get("chapters", [])) | set(wanted))
    layout.write_json(marker, info)
    return done
