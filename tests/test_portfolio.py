"""`roadmap portfolio`: the learner's own work on one page, and nothing of the course's answers.

Runs on the tiny two-chapter course of `cohort_fixture`, with learner notebooks written
here to look executed (an image output, a written answer), so no kernel starts. The
real-browser test renders the page in headless Chromium, where one is installed.
"""
from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from safety_roadmap import portfolio, progress
from safety_roadmap.cli import main

from . import cohort_fixture as fx

SECRET = "REFERENCE-ONLY-5e1d"          # planted in the course's source chapter; must never reach the page
RED = (200, 30, 30)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain PNG of one colour, written by hand (no imaging library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


FIGURE = png(160, 90, RED)


def _nbg(grade_id: str, *, grade: bool, solution: bool, points: int = 0) -> dict:
    return {"nbgrader": {"grade": grade, "grade_id": grade_id, "locked": not solution, "points": points,
                         "schema_version": 3, "solution": solution}}


def learner_notebook(chapter: str, answer: str | None = "Doubling is linear, so it commutes with sums.",
                     figure: bool = True) -> dict:
    """What a learner's executed workspace copy looks like: code with outputs, a written answer."""
    first = fx.CHAPTER_EXERCISES[chapter][0]
    plot = {"cell_type": "code", "execution_count": 3, "metadata": {}, "source": "plt.plot(xs)  # my plot",
            "outputs": [{"output_type": "display_data", "metadata": {},
                         "data": {"image/png": base64.b64encode(FIGURE).decode() + "\n",
                                  "text/plain": "<Figure size 640x480>"}}] if figure else []}
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": f"# {chapter}"},
        {"cell_type": "code", "execution_count": 1, "metadata": _nbg(f"{first}_solution", grade=False, solution=True),
         "source": "def double(x):\n    return x + x  # my-own-code-line", "outputs": []},
        {"cell_type": "code", "execution_count": 2, "metadata": _nbg(first, grade=True, solution=False, points=2),
         "source": f"check_{first}({first})  # test-cell-source", "outputs": [
             {"output_type": "execute_result", "execution_count": 2, "metadata": {},
              "data": {"text/html": "<script>window.testOutput = 1</script>", "text/plain": "ok"}}]},
        plot,
        {"cell_type": "markdown", "metadata": {}, "source": "### Written answer\n\nWhy does doubling commute with sums?"},
        {"cell_type": "markdown", "metadata": _nbg(f"{chapter}_why", grade=True, solution=True, points=2),
         "source": answer if answer is not None else "YOUR ANSWER HERE"},
        {"cell_type": "markdown", "metadata": _nbg(f"{chapter}_more", grade=True, solution=True, points=1),
         "source": "YOUR ANSWER HERE\n"},
    ]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def write_nb(path: Path, nb: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def grade(chapter: str, **points: float) -> None:
    """Record a `roadmap grade` result in the progress database."""
    full = {"double": 2, "add_one": 1, "square": 1, "total": 2}
    exs = [SimpleNamespace(id=e, points=points.get(e, 0), max_points=full[e],
                           status="passed" if points.get(e, 0) == full[e] else "failed", message="")
           for e in fx.CHAPTER_EXERCISES[chapter]]
    progress.record(SimpleNamespace(chapter=chapter, notebook=f"/ws/{chapter}.ipynb",
                                    points=sum(e.points for e in exs), max_points=sum(e.max_points for e in exs),
                                    exercises=exs))


@pytest.fixture()
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny course, with SECRET in its source chapter's solution, model answer and hidden tests."""
    root = fx.make_course(tmp_path / "course")
    src = root / "solutions" / f"{fx.ALPHA}.ipynb"
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if (cell["metadata"].get("nbgrader") or {}).get("solution") or "HIDDEN TESTS" in "".join(cell["source"]):
            cell["source"] = "".join(cell["source"]).replace("### END", f"# {SECRET}\n### END")
    nb["cells"].append({"cell_type": "markdown", "id": "model-answer", "source": f"Model answer: {SECRET}",
                        "metadata": _nbg(f"{fx.ALPHA}_why", grade=True, solution=True, points=2)})
    src.write_text(json.dumps(nb), encoding="utf-8")
    assert src.read_text(encoding="utf-8").count(SECRET) == 5      # 2 solutions, 2 hidden tests, 1 model answer
    (root / "notebooks").mkdir()
    write_nb(root / "notebooks" / f"{fx.ALPHA}.ipynb", nb)     # even a (bad) release holding it must not leak
    monkeypatch.setenv("SAFETY_ROADMAP_ROOT", str(root))
    monkeypatch.setenv(progress.DB_ENV, str(tmp_path / "data" / "progress.sqlite3"))
    monkeypatch.setenv("SAFETY_ROADMAP_WORKSPACE", str(tmp_path / "ws"))
    return tmp_path


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    try:
        rc = main(["portfolio", *args])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def page(tmp: Path, capsys: pytest.CaptureFixture, *args: str) -> str:
    rc, out, err = run(capsys, "--out", str(tmp / "site"), "--no-pdf", *args)
    assert rc == 0, err
    assert "PDF skipped: not asked for (--no-pdf)" in out
    return (tmp / "site" / "index.html").read_text(encoding="utf-8")


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(text: str) -> Tags:
    t = Tags()
    t.feed(text)
    return t


def test_empty_workspace_says_what_to_do(course: Path) -> None:
    """The real command line, in a fresh process."""
    done = subprocess.run([sys.executable, "-m", "safety_roadmap", "portfolio", "--out", str(course / "site"),
                           "--no-pdf"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "no chapter with work yet" in done.stdout and "PDF skipped" in done.stdout
    html_ = (course / "site" / "index.html").read_text(encoding="utf-8")
    assert "Nothing to show yet" in html_ and "make lab" in html_ and "roadmap grade" in html_
    assert "Can you square and sum?" in html_            # the checkpoints are there to answer
    assert "<img" not in html_ and "points in them" not in html_
    assert not (course / "ws").exists()                   # reading never creates the workspace
    assert not (course / "data" / "progress.sqlite3").exists()


def test_partly_done_course(course: Path, capsys: pytest.CaptureFixture) -> None:
    ws = course / "ws"
    write_nb(ws / f"{fx.ALPHA}.ipynb", learner_notebook(fx.ALPHA))
    write_nb(ws / f"{fx.BETA}.ipynb", learner_notebook(fx.BETA, answer=None, figure=False))   # opened, untouched
    grade(fx.ALPHA, double=2)
    grade(fx.ALPHA, add_one=1)                            # best per exercise: 2 + 1
    (ws / "checkpoints").mkdir()
    (ws / "checkpoints" / "more.md").write_text("notes before any heading are ignored\n## 2. why\nBecause sums "
                                                "are linear.\n\n## 9\nno such question\n", encoding="utf-8")
    rc, out, err = run(capsys, "--out", str(course / "site"), "--no-pdf")
    assert rc == 0 and err == ""
    assert f": 1 chapter(s): {fx.ALPHA}\n" in out
    html_ = (course / "site" / "index.html").read_text(encoding="utf-8")
    assert "3 / 3 points" in html_ and "2 of 2 exercises passed" in html_
    assert f'src="data:image/png;base64,{base64.b64encode(FIGURE).decode()}"' in html_
    assert "Doubling is linear, so it commutes with sums." in html_
    assert "Why does doubling commute with sums?" in html_          # the question, above the answer
    assert f'id="{fx.BETA}"' not in html_                            # nothing done there: no section
    assert "YOUR ANSWER HERE" not in html_                           # unanswered cells are not "answers"
    text = " ".join(parse(html_).text)
    assert "Because sums are linear." in text and "no such question" not in text and "notes before" not in text
    assert text.count("(not answered yet)") == 2                     # basics' 1 and more's 1


def test_a_graded_chapter_without_its_notebook_still_shows_its_score(course: Path, capsys) -> None:
    grade(fx.BETA, square=1)
    html_ = page(course, capsys)
    assert f'id="{fx.BETA}"' in html_ and "1 / 3 points" in html_ and "was not among those read" in html_


def test_named_notebooks_are_found_by_content(course: Path, capsys: pytest.CaptureFixture) -> None:
    mine = write_nb(course / "elsewhere" / "my copy.ipynb", learner_notebook(fx.ALPHA, answer="Named copy."))
    blank = write_nb(course / "elsewhere" / "blank.ipynb", learner_notebook(fx.BETA, answer=None, figure=False))
    html_ = page(course, capsys, str(mine), str(blank))
    assert "Named copy." in html_ and "not graded yet" in html_
    assert "No figures or written answers in blank.ipynb yet." in html_     # named, so shown even when empty


def test_no_reference_solution_or_test_reaches_the_page(course: Path, capsys: pytest.CaptureFixture) -> None:
    ws = course / "ws"
    write_nb(ws / f"{fx.ALPHA}.ipynb", learner_notebook(fx.ALPHA))
    write_nb(ws / f"{fx.BETA}.ipynb", learner_notebook(fx.BETA))
    grade(fx.ALPHA, double=2)
    html_ = page(course, capsys)
    assert "Doubling is linear" in html_                      # the page has the learner's work...
    for leak in (SECRET, fx.HIDDEN_MARK, "Model answer", "test-cell-source", "my-own-code-line", "testOutput"):
        assert leak not in html_, leak                      # ...and no code, test, output HTML or reference


def test_learner_text_is_escaped(course: Path, capsys: pytest.CaptureFixture) -> None:
    evil = '<script>alert("x")</script><img src=x onerror="alert(1)"> & </div>'
    ws = course / "ws"
    write_nb(ws / f"{fx.ALPHA}.ipynb", learner_notebook(fx.ALPHA, answer=evil))
    (ws / "checkpoints").mkdir()
    (ws / "checkpoints" / "basics.md").write_text(f"## 1\n{evil}\n", encoding="utf-8")
    html_ = page(course, capsys, "--name", "<b>Ada</b>")
    parsed = parse(html_)
    assert "script" not in parsed.tags and "b" not in parsed.tags
    assert parsed.tags.count("img") == 1                      # only the learner's figure
    assert " ".join(parsed.text).count(evil) == 2              # shown as text, exactly as written
    assert "Portfolio of <b>Ada</b>" in " ".join(parsed.text)
    assert "default-src 'none'" in html_                      # and scripts could not run anyway


def test_bad_input_is_one_line(course: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    rc, out, err = run(capsys, "--out", str(course / "site"), str(course / "missing"))
    assert rc == 1 and out == "" and err.count("\n") == 1 and "missing: no such file or folder" in err
    (course / "a_file").write_text("x", encoding="utf-8")
    rc, out, err = run(capsys, "--out", str(course / "a_file"), "--no-pdf")
    assert rc == 1 and err.count("\n") == 1 and "is a file; --out must name a folder" in err
    rc, out, err = run(capsys, "--no-pdf")
    assert rc == 2 and "--out" in err and err.count("\n") == 1
    monkeypatch.setenv("CHROMIUM", str(course / "no-such-browser"))
    rc, out, err = run(capsys, "--out", str(course / "site"))
    assert rc == 0 and "PDF skipped: $CHROMIUM is " in out and "no-such-browser, which is not a program" in out


def test_unreadable_notebooks_are_skipped_with_a_warning(course: Path, capsys: pytest.CaptureFixture) -> None:
    ws = course / "ws"
    write_nb(ws / f"{fx.ALPHA}.ipynb", learner_notebook(fx.ALPHA))
    (ws / f"{fx.BETA}.ipynb").write_text('{"cells": [{"cell_ty', encoding="utf-8")
    stray = write_nb(course / "stray.ipynb", {"cells": [{"cell_type": "markdown", "source": "hi"}], "nbformat": 4})
    odd = write_nb(course / f"{fx.BETA}.ipynb", {"cells": [{"cell_type": "code", "metadata": "?", "outputs": 3}],
                                                 "nbformat": 4})
    (course / "site").mkdir()
    (course / "site" / "portfolio.pdf").write_bytes(b"%PDF an old one")
    rc, out, err = run(capsys, "--out", str(course / "site"), "--no-pdf", str(ws), str(stray), str(odd))
    lines = err.splitlines()
    assert rc == 0 and len(lines) == 3, err
    assert all(line.startswith("roadmap portfolio: warning: ") for line in lines)
    assert f"{fx.BETA}.ipynb: not a notebook: corrupt JSON at line 1" in lines[0] and "skipped" in lines[0]
    assert "stray.ipynb: not a notebook of this course" in lines[1]
    assert f"{odd}: not a notebook this command can read" in lines[2]
    assert not (course / "site" / "portfolio.pdf").exists()     # no stale PDF beside the new page
    assert f": 1 chapter(s): {fx.ALPHA}\n" in out


def test_unreadable_progress_database_leaves_scores_out(course: Path, capsys, monkeypatch) -> None:
    bad = course / "broken.db"
    bad.write_bytes(b"not sqlite at all")
    monkeypatch.setenv(progress.DB_ENV, str(bad))
    write_nb(course / "ws" / f"{fx.ALPHA}.ipynb", learner_notebook(fx.ALPHA))
    rc, out, err = run(capsys, "--out", str(course / "site"), "--no-pdf")
    assert rc == 0 and "warning: scores left out" in err and bad.read_bytes() == b"not sqlite at all"
    assert "score unavailable" in (course / "site" / "index.html").read_text(encoding="utf-8")


@pytest.mark.browser
def test_in_a_real_browser(course: Path, capsys: pytest.CaptureFixture) -> None:
    """Chromium prints the PDF, and a screenshot shows the page with the learner's (red) figure drawn."""
    exe = portfolio.browser()
    if exe is None:
        pytest.skip("no Chromium: install Debian's chromium (`.ci/run` does) or set $CHROMIUM")
    from PIL import Image

    write_nb(course / "ws" / f"{fx.ALPHA}.ipynb", learner_notebook(fx.ALPHA))
    grade(fx.ALPHA, double=2, add_one=1)
    rc, out, err = run(capsys, "--out", str(course / "site"))
    assert rc == 0, err
    pdf = course / "site" / "portfolio.pdf"
    assert "wrote" in out and str(pdf) in out and pdf.read_bytes().startswith(b"%PDF")
    shot = course / "shot.png"
    why = portfolio.headless(exe, (course / "site" / "index.html").as_uri(), f"--screenshot={shot}",
                             "--window-size=1200,1600", "--hide-scrollbars")
    assert why is None and shot.is_file(), why
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 1600)
    colours = img.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the screenshot is nearly one colour: the page did not render"
    red = sum(n for n, c in colours if all(abs(a - b) <= 8 for a, b in zip(c, RED)))
    assert red > 0.5 * 160 * 90, f"the learner's figure is not drawn ({red} red pixels)"


def test_capstone_write_up_on_the_real_course(tmp_path: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Chapter 18 partly done (two of its five write-up cells answered, nothing graded): the page shows
    those answers in full under their prompts, the phase 3 checkpoints, and no model answer."""
    from .conftest import ROOT

    release = json.loads((ROOT / "notebooks" / "18_capstone.ipynb").read_text(encoding="utf-8"))
    mine = {"capstone_claim": "Claim: SAE recovery falls with density (Sharkey et al. 2022). Refuted if the "
                              "paired effect is above -0.01.",
            "capstone_method": "Method: 12 directions in 6 dimensions, 24 latents, 3 seeds, densities 0.02 to 0.4."}
    for cell in release["cells"]:
        gid = (cell["metadata"].get("nbgrader") or {}).get("grade_id")
        if gid in mine:
            cell["source"] = mine[gid]
    ws = tmp_path / "ws"
    write_nb(ws / "18_capstone.ipynb", release)
    monkeypatch.setenv("SAFETY_ROADMAP_ROOT", str(ROOT))
    monkeypatch.setenv(progress.DB_ENV, str(tmp_path / "progress.sqlite3"))
    monkeypatch.setenv("SAFETY_ROADMAP_WORKSPACE", str(ws))
    html_ = page(tmp_path, capsys)
    text = " ".join(parse(html_).text)
    for answer in mine.values():
        assert answer in text
    assert "How did you run the replication?" in text                 # the prompt above the method answer
    assert "Has anyone in the field engaged with" in text              # phase 3's checkpoints close the page
    assert "Model answer" not in html_ and "YOUR ANSWER HERE" not in html_
