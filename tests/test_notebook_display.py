"""What a learner sees in a notebook (issue 13 item 5): one clean message per failing check, and
progress bars whose saved state is their last one, in a real kernel executed as `roadmap grade` does."""
from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

CELLS = [
    "from safety_roadmap.checks.linear_algebra import check_cosine_similarity",
    # 1: a wrong answer
    "def cosine_similarity(a, b):\n    return (a * b).sum(-1)\n\ncheck_cosine_similarity(cosine_similarity)",
    # 2: an answer that crashes inside the learner's own code
    "def cosine_similarity(a, b):\n    scale = 1 / undefined_length\n    return scale\n\n"
    "check_cosine_similarity(cosine_similarity)",
    # 3: the course's progress bars, as chapters use them
    "from safety_roadmap.progressbar import tqdm, trange\n"
    "for _ in tqdm(range(20), desc='demo'):\n    pass\n"
    "with tqdm(total=3, desc='manual') as bar:\n    bar.update(3)\n"
    "for _ in trange(5):\n    pass",
]


@pytest.fixture(scope="module")
def executed() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True).execute()
    return nb


def _shown(cell: nbformat.NotebookNode) -> tuple[str, list[dict]]:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert len(errors) == 1, cell.outputs
    return _ANSI.sub("", "\n".join(errors[0].traceback)), errors


def test_a_failing_check_shows_its_message_once_and_no_library_frames(executed) -> None:
    text, [err] = _shown(executed.cells[1])
    assert err.ename == "CheckFailure"   # still an error output: nbgrader and Validate score it as failed
    assert text.startswith("CheckFailure: `cosine_similarity` is wrong on case")
    assert text.count("is wrong on case") == 1
    assert "Likely cause" in text
    for noise in ("_core.py", "site-packages", "safety_roadmap/checks", "Traceback", "run_check"):
        assert noise not in text, noise


def test_a_crash_in_the_learner_code_names_their_line_not_ours(executed) -> None:
    text, _ = _shown(executed.cells[2])
    assert text.startswith("CheckFailure: `cosine_similarity` raised NameError")
    assert "on case 1 of" in text
    assert "Where your code raised it:" in text and "in cosine_similarity" in text
    assert "scale = 1 / undefined_length" in text
    assert "_core.py" not in text and "The above exception" not in text


def _rendered(text: str) -> list[str]:
    """Stream text as a notebook frontend draws it: a carriage return overwrites its line."""
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n") if line.rsplit("\r", 1)[-1].strip()]


def test_progress_bars_are_saved_at_their_last_state(executed) -> None:
    outputs = executed.cells[3].outputs
    assert all(o.output_type == "stream" and o.name == "stdout" for o in outputs), outputs  # no widget frames
    lines = _rendered("".join(o.text for o in outputs))
    assert len(lines) == 3, lines
    assert lines[0].startswith("demo: 100%") and "20/20" in lines[0]
    assert lines[1].startswith("manual: 100%") and "3/3" in lines[1]
    assert "5/5" in lines[2]
    assert not any(re.search(r"\b0/(20|3|5)\b", line) for line in lines)


def test_chapters_use_the_course_progress_bars() -> None:
    """tqdm.auto saves `0%| 0/20` into a notebook executed without a browser: chapters use ours."""
    from .conftest import ROOT

    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        assert "tqdm.auto" not in text and "tqdm.notebook" not in text, (
            f"{path.name}: import progress bars with `from safety_roadmap.progressbar import tqdm` "
            "(or `trange`) instead of tqdm.auto")
