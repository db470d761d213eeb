"""Helpers for tests that drive the `roadmap` command in process, as a learner types it."""
from __future__ import annotations

import pytest

from safety_roadmap.cli import main


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run `roadmap ARGS...`: (exit code, stdout, stderr)."""
    try:
        rc = main(list(args))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line(text: str, *fragments: str) -> str:
    """The only non-blank line of `text`, asserted to contain every fragment (bad input: one line)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]
