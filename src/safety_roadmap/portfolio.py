"""`roadmap portfolio`: a static page (and a PDF) showing a learner's own work, to share or keep.

Per chapter it shows the best recorded score, the figures the learner's executed
notebook holds, and their written (manually graded) answers in full; per phase the
checkpoint questions with the learner's answers to them, if written. A capstone
write-up is a chapter's written answers, so it needs nothing special.

It reads only the learner's notebooks, `curriculum.yaml`, the progress database and
the learner's checkpoint answers: never `solutions/`, never a code cell's source (so
no test cell, hidden or not, can leak), never an HTML output. Every learner text is
escaped, and the page forbids scripts and remote loads (Content-Security-Policy),
so it is safe to open and works offline.

Checkpoint answers convention: `<workspace>/checkpoints/<phase id>.md`, each answer
under a heading `## N` (N is the question's number on the page).
"""
from __future__ import annotations

import base64
import binascii
import html
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional

from .curriculum import Chapter, Curriculum, Phase
from .errors import RoadmapError
from .exercises import cell_source, nbgrader_meta
from .grading import read_notebook

IMAGE_TYPES = ("image/png", "image/jpeg")
PLACEHOLDER = "YOUR ANSWER HERE"          # what nbgrader leaves in an unanswered written-answer cell
CHECKPOINTS = "checkpoints"
_HEADING = re.compile(r"^##[ \t]*(\d+)\b.*$", re.M)
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

if TYPE_CHECKING:
    from .progress import ChapterProgress
# chapter id -> its recorded progress; None when the progress database could not be read
Progress = Optional[Mapping[str, "ChapterProgress"]]


@dataclass
class Figure:
    mime: str
    data: bytes
    cell: int           # 1-based cell number in the notebook, so the learner can find it


@dataclass
class Answer:
    question: str       # the markdown cell just above the answer (the notebook's prompt)
    text: str


@dataclass
class ChapterWork:
    chapter: Chapter
    notebook: Path
    figures: list[Figure] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)


@dataclass
class Built:
    index: Path
    pdf: Path | None
    pdf_skipped: str | None          # why there is no PDF
    chapters: list[str]
    warnings: list[str]


# --------------------------------------------------------------------------- reading the learner's files


def _images(cell: dict, number: int) -> list[Figure]:
    out = []
    for output in cell.get("outputs") or []:
        data = output.get("data") if isinstance(output, dict) else None
        if not isinstance(data, dict):
            continue
        for mime in IMAGE_TYPES:
            raw = data.get(mime)
            if raw is None:
                continue
            text = "".join(raw) if isinstance(raw, list) else str(raw)
            try:
                raw_bytes = base64.b64decode(text, validate=False)
            except (binascii.Error, ValueError):
                raw_bytes = b""
            if raw_bytes:   # a damaged image is left out rather than breaking the page
                out.append(Figure(mime, raw_bytes, number))
            break
    return out


def read_work(path: Path, chapter: Chapter, nb: dict) -> ChapterWork:
    """The figures and written answers in one learner notebook (code cells' sources are never read)."""
    work = ChapterWork(chapter, path)
    prompt = ""
    for i, cell in enumerate(nb["cells"], 1):
        if not isinstance(cell, dict):
            continue
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") == "code":
            work.figures += _images(cell, i)
        elif cell.get("cell_type") == "markdown" and meta.get("solution"):
            text = cell_source(cell).strip()
            if text and text != PLACEHOLDER:
                work.answers.append(Answer(prompt, text))
            prompt = ""     # a second answer in a row does not repeat the question
        elif cell.get("cell_type") == "markdown":
            prompt = cell_source(cell).strip()
    return work


def _load(path: Path) -> dict:
    try:
        return read_notebook(path)
    except RoadmapError as exc:
        raise RoadmapError(f"{exc}; skipped") from None
    except OSError as exc:
        raise RoadmapError(f"{path}: cannot be read ({exc.strerror or exc}); skipped") from None


def _chapter_of(path: Path, nb: dict, cur: Curriculum) -> Chapter:
    """By file name (`01_linear_algebra.ipynb`), else by the exercises its graded cells belong to."""
    ids = {c.id: c for c in cur.chapters}
    if path.stem in ids:
        return ids[path.stem]
    grade_ids = {nbgrader_meta(c).get("grade_id") for c in nb["cells"] if isinstance(c, dict)}
    best = max(cur.chapters, key=lambda c: len(grade_ids & {e.id for e in c.exercises}), default=None)
    if best is None or not grade_ids & {e.id for e in best.exercises}:
        raise RoadmapError(f"{path}: not a notebook of this course (no graded cell of any chapter); skipped")
    return best


def _candidates(cur: Curriculum, paths: list[Path] | None, ws: Path) -> list[Path]:
    """Named notebooks, the chapter notebooks in named folders, or (no names) those in the workspace."""
    if not paths:
        return [ws / f"{c.id}.ipynb" for c in cur.chapters if (ws / f"{c.id}.ipynb").is_file()]
    out = []
    for p in paths:
        if p.is_dir():
            out += [p / f"{c.id}.ipynb" for c in cur.chapters if (p / f"{c.id}.ipynb").is_file()]
        elif p.is_file():
            out.append(p)
        else:
            raise RoadmapError(f"{p}: no such file or folder (name your notebooks, or a folder holding them, "
                               "or nothing for your workspace)")
    return out


def collect(cur: Curriculum, paths: list[Path] | None, ws: Path) -> tuple[dict[str, ChapterWork], list[str]]:
    """chapter id -> the learner's work in it; and a warning per notebook that was skipped."""
    works: dict[str, ChapterWork] = {}
    warnings = []
    for path in _candidates(cur, paths, ws):
        try:
            nb = _load(path)
            chapter = _chapter_of(path, nb, cur)
            work = read_work(path, chapter, nb)
        except RoadmapError as exc:
            warnings.append(str(exc))
            continue
        except (AttributeError, TypeError, KeyError) as exc:   # JSON shaped unlike a notebook's cells
            warnings.append(f"{path}: not a notebook this command can read ({exc.__class__.__name__}: {exc}); "
                            "skipped")
            continue
        if chapter.id in works:
            warnings.append(f"{path}: a second notebook for {chapter.id} (the first was "
                            f"{works[chapter.id].notebook}); skipped")
            continue
        works[chapter.id] = work
    return works, warnings


def checkpoint_answers(ws: Path, phase: Phase) -> dict[int, str]:
    """Question number (1-based) -> the learner's answer, from `<ws>/checkpoints/<phase id>.md`."""
    path = ws / CHECKPOINTS / f"{phase.id}.md"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    marks = list(_HEADING.finditer(text))
    out = {}
    for m, nxt in zip(marks, marks[1:] + [None]):
        body = text[m.end():nxt.start() if nxt else len(text)].strip()
        n = int(m.group(1))
        if body and 1 <= n <= len(phase.checkpoints):
            out[n] = body
    return out


# --------------------------------------------------------------------------- the page

_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; color: #1d2430; max-width: 60rem; margin: 2rem auto; padding: 0 1.2rem; }
header { border-bottom: 3px solid #2b6cb0; margin-bottom: 1.5rem; }
h1 { margin: 0 0 .2rem; } h2 { margin-top: 2.2rem; color: #2b6cb0; } h3 { margin: 1.4rem 0 .3rem; }
.meta, .muted { color: #5a6472; } .score { font-weight: 600; }
.chapter { border: 1px solid #d5dbe3; border-radius: 8px; padding: .4rem 1.2rem 1rem; margin: 1rem 0; break-inside: avoid-page; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; max-width: 100%; } figure img { max-width: 100%; max-height: 26rem; border: 1px solid #e2e6eb; }
figcaption { font-size: .85rem; color: #5a6472; }
.prompt, .text { white-space: pre-wrap; overflow-wrap: anywhere; }
.prompt { color: #5a6472; font-size: .92rem; border-left: 3px solid #d5dbe3; padding-left: .7rem; }
.text { background: #f5f7fa; border-radius: 6px; padding: .6rem .8rem; margin: .4rem 0 1rem; }
.todo { background: #fff8e1; border: 1px solid #f0c36d; border-radius: 8px; padding: .6rem 1.2rem; }
code { background: #eef1f5; padding: 0 .25rem; border-radius: 3px; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _score(chapter: Chapter, progress: Progress) -> str:
    if progress is None:
        return "score unavailable (the progress database could not be read)"
    cp = progress.get(chapter.id)
    if cp is None or not cp.started:
        return "not graded yet (<code>roadmap grade</code> records a score)"
    passed = sum(1 for e in cp.exercises if e.points >= e.max_points)
    seen = f"; reference solution viewed for {_e(', '.join(cp.solutions_viewed))}" if cp.solutions_viewed else ""
    return (f'<span class="score">{cp.points:g} / {cp.max_points:g} points</span> '
            f"({passed} of {len(cp.exercises)} exercises passed; best result per exercise){seen}")


def _prompt(text: str) -> str:
    """The question cell as plain text: heading marks dropped, the rest kept as written."""
    return re.sub(r"^#{1,6}[ \t]+", "", text, flags=re.M)


def _chapter_html(work: ChapterWork | None, chapter: Chapter, progress: Progress) -> str:
    parts = [f'<section class="chapter" id="{_e(chapter.id)}"><h3>{_e(chapter.id)} · {_e(chapter.title)}</h3>',
             f'<p class="meta">{_score(chapter, progress)}</p>']
    if work is None:
        parts.append('<p class="muted">Your notebook of this chapter was not among those read.</p>')
    elif not work.figures and not work.answers:
        parts.append(f'<p class="muted">No figures or written answers in {_e(work.notebook.name)} yet.</p>')
    if work and work.figures:
        parts.append('<h4>Figures</h4><div class="figures">')
        for f in work.figures:
            data = base64.b64encode(f.data).decode("ascii")
            parts.append(f'<figure><img alt="figure from cell {f.cell}" src="data:{f.mime};base64,{data}">'
                         f"<figcaption>cell {f.cell} of {_e(work.notebook.name)}</figcaption></figure>")
        parts.append("</div>")
    if work and work.answers:
        parts.append("<h4>Written answers</h4>")
        for a in work.answers:
            if a.question:
                parts.append(f'<div class="prompt">{_e(_prompt(a.question))}</div>')
            parts.append(f'<div class="text">{_e(a.text)}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def _phase_html(n: int, phase: Phase, chapters: list[str], works: dict[str, ChapterWork], progress: Progress,
                answers: dict[int, str], ws_shown: str) -> str:
    parts = [f"<h2>Phase {n}: {_e(phase.title)}</h2>"]
    if chapters:
        parts += [_chapter_html(works.get(cid), next(c for c in phase.chapters if c.id == cid), progress)
                  for cid in chapters]
    else:
        parts.append('<p class="muted">No work in this phase yet.</p>')
    if phase.checkpoints:
        where = f"{ws_shown}/{CHECKPOINTS}/{phase.id}.md"
        parts.append(f'<h3>Checkpoints</h3><p class="muted">Your answers come from <code>{_e(where)}</code>, '
                     "each under a heading <code>## N</code> with the question's number.</p><ol>")
        for i, q in enumerate(phase.checkpoints, 1):
            mine = (f'<div class="text">{_e(answers[i])}</div>' if i in answers
                    else '<div class="muted">(not answered yet)</div>')
            parts.append(f"<li><div>{_e(q)}</div>{mine}</li>")
        parts.append("</ol>")
    return "\n".join(parts)


def _next_steps(ws_shown: str) -> str:
    return ('<div class="todo"><p><strong>Nothing to show yet.</strong> Your portfolio is built from your own '
            f"notebooks in <code>{_e(ws_shown)}</code>. To fill it:</p><ol>"
            "<li><code>make lab</code> opens your workspace; work through a chapter and run its cells (your "
            "figures and written answers appear here).</li>"
            "<li><code>roadmap grade</code> checks your answers and records your score.</li>"
            "<li>Then run <code>roadmap portfolio --out DIR</code> again.</li></ol></div>")


def render(cur: Curriculum, works: dict[str, ChapterWork], progress: Progress, ws: Path, *,
           include: set[str], ws_shown: str, name: str | None = None, when: datetime | None = None) -> str:
    """The whole page. `include`: the chapter ids that get a section; `ws`: where the learner's
    checkpoint answers are; `ws_shown`: that folder as the page names it."""
    when = when or datetime.now(timezone.utc)
    who = f"Portfolio of {_e(name)}" if name else "Portfolio"
    total = max_total = 0.0
    if progress:
        total = sum(progress[c].points for c in include if c in progress)
        max_total = sum(progress[c].max_points for c in include if c in progress)
    summary = (f"{len(include)} chapter(s) with work; {total:g} / {max_total:g} points in them"
               if include else "no chapter with work yet")
    body = [f"<header><h1>{who}</h1><p class=\"meta\">{_e(cur.title)} · {summary} · "
            f"built {when:%Y-%m-%d}</p></header>"]
    if not include:
        body.append(_next_steps(ws_shown))
    for n, phase in enumerate(cur.phases, 1):
        chapters = [c.id for c in phase.chapters if c.id in include]
        body.append(_phase_html(n, phase, chapters, works, progress, checkpoint_answers(ws, phase), ws_shown))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            f"<title>{who} · {_e(cur.title)}</title>\n<style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


# --------------------------------------------------------------------------- PDF and the command


def browser() -> str | None:
    """A Chromium or Chrome on this machine ($CHROMIUM first), or None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if shutil.which(env) else None
    return next((found for b in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(b))), None)


def headless(exe: str, url: str, *flags: str, timeout: float = 120) -> str | None:
    """Run headless Chromium on `url` with `flags` (e.g. --print-to-pdf=...); None, or why it failed."""
    with tempfile.TemporaryDirectory(prefix="roadmap-chromium-") as profile:
        cmd = [exe, "--headless", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}", *flags, url]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")      # Chromium refuses to start as root without it
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"{Path(exe).name} took over {timeout:g} s"
        except OSError as exc:
            return f"{exe} could not start ({exc.strerror or exc})"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"{Path(exe).name} exited with status {done.returncode} ({last})"
    return None


def write_pdf(index: Path, pdf: Path) -> str | None:
    """Print the page to `pdf` with headless Chromium; None, or why there is no PDF."""
    exe = browser()
    if exe is None and os.environ.get("CHROMIUM"):
        return f"$CHROMIUM is {os.environ['CHROMIUM']}, which is not a program here (print index.html from your browser)"
    if exe is None:
        return "no Chromium or Chrome found (install one, or print index.html from your browser)"
    pdf.unlink(missing_ok=True)
    why = headless(exe, index.resolve().as_uri(), f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    if why is None and (not pdf.is_file() or not pdf.read_bytes().startswith(b"%PDF")):
        why = f"{Path(exe).name} wrote no PDF"
    return why


def build(cur: Curriculum, out: Path, ws: Path, paths: list[Path] | None = None, *, pdf: bool = True,
          name: str | None = None, ws_shown: str | None = None) -> Built:
    """Write `out/index.html` (and `out/portfolio.pdf` when possible) from the learner's work."""
    from .progress import learner_status

    if out.exists() and not out.is_dir():
        raise RoadmapError(f"{out}: is a file; --out must name a folder (new or existing)")
    works, warnings = collect(cur, paths, ws)
    scores: Progress
    try:
        scores = {c.id: c for p in learner_status(cur).phases for c in p.chapters}
    except RoadmapError as exc:
        scores = None
        warnings.append(f"scores left out: {exc}")
    if paths:
        include = set(works)
    else:
        graded = {cid for cid, cp in (scores or {}).items() if cp.started}
        include = {cid for cid, w in works.items() if w.figures or w.answers} | graded
    out.mkdir(parents=True, exist_ok=True)
    (out / "portfolio.pdf").unlink(missing_ok=True)     # never leave an older PDF beside a newer page
    index = out / "index.html"
    index.write_text(render(cur, works, scores, ws, include=include, ws_shown=ws_shown or str(ws), name=name),
                     encoding="utf-8")
    why = write_pdf(index, out / "portfolio.pdf") if pdf else "not asked for (--no-pdf)"
    order = [c.id for c in cur.chapters if c.id in include]
    return Built(index, None if why else out / "portfolio.pdf", why, order, warnings)
