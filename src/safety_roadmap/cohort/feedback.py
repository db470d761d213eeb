"""Feedback without the hidden tests.

nbgrader's `generate_feedback` renders the autograded notebook, in which the
hidden tests have been put back: their source, and the tracebacks that quote
them, would reach the student. `HideHiddenTests` runs first in the feedback
pipeline (the cohort's `nbgrader_config.py` lists it, so plain
`nbgrader generate_feedback` uses it too): it cuts the hidden regions out of
every cell and shortens tracebacks in test cells to their last line.
"""
from __future__ import annotations

import html
import re
from typing import Any

from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import is_grade
from nbformat.notebooknode import NotebookNode
from traitlets import Unicode

BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
NOTE = "# (hidden tests were run here)"


def strip_hidden(source: str, begin: str = BEGIN, end: str = END) -> str:
    """The source with every hidden-test region (markers included) replaced by one comment line."""
    out, hidden = [], False
    for line in source.split("\n"):
        if begin in line:
            hidden = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + NOTE)
        elif end in line and hidden:
            hidden = False
        elif not hidden:
            out.append(line)
    return "\n".join(out)


class HideHiddenTests(NbGraderPreprocessor):
    """Remove hidden tests from the feedback a student sees (source and tracebacks)."""

    begin_test_delimeter = Unicode(BEGIN, help="marks the start of a hidden-test region").tag(config=True)
    end_test_delimeter = Unicode(END, help="marks the end of a hidden-test region").tag(config=True)

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> Any:
        src = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        if self.begin_test_delimeter in src:
            cell.source = strip_hidden(src, self.begin_test_delimeter, self.end_test_delimeter)
        if cell.cell_type == "code" and is_grade(cell):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    # a traceback quotes the test cell's lines, hidden ones included; keep only its verdict
                    out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
        return cell, resources


def hidden_lines(source_nb: dict[str, Any], min_length: int = 12) -> set[str]:
    """Every substantial line inside a hidden-test region of a source notebook (for leak checks)."""
    lines: set[str] = set()
    for cell in source_nb.get("cells", []):
        src = cell.get("source", "")
        src = src if isinstance(src, str) else "".join(src)
        hidden = False
        for line in src.split("\n"):
            if BEGIN in line:
                hidden = True
            elif END in line:
                hidden = False
            elif hidden and len(line.strip()) >= min_length:
                lines.add(line.strip())
    return lines


_TAG = re.compile(r"<[^>]+>")


def visible_text(page: str) -> str:
    """An HTML page as the text a reader sees: tags gone, entities decoded (syntax highlighting
    splits code into many spans, so a raw substring search would miss a leaked line)."""
    return html.unescape(_TAG.sub("", page))


def leaked(page: str, lines: set[str]) -> list[str]:
    """The hidden lines that appear in a rendered page (whitespace-insensitive)."""
    flat = re.sub(r"\s+", "", visible_text(page))
    return sorted(line for line in lines if re.sub(r"\s+", "", line) in flat)
