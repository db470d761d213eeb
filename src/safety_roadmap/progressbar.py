"""Progress bars that read the same live in JupyterLab and in a saved or graded notebook.

`tqdm.auto` draws a widget in a notebook; a notebook executed without a browser
(`roadmap grade`, nbgrader, nbclient) keeps only the widget's first frame, so the
saved chapter shows `0%| 0/20` for a loop that finished. These bars are plain
text on stdout with carriage returns: JupyterLab redraws them in place while the
cell runs, and a saved notebook shows their last state (`100%| 20/20`).

Chapters import them instead of tqdm's (same arguments, same methods):

    from safety_roadmap.progressbar import tqdm, trange
"""
from __future__ import annotations

import sys
from typing import Any

from tqdm.std import tqdm as _text_tqdm

__all__ = ["tqdm", "trange"]


class tqdm(_text_tqdm):  # noqa: N801 - the name chapters already use
    """tqdm's text bar, on stdout (stderr reads as an error in a notebook), 80 columns, redrawn at
    most twice a second so a saved notebook stays small."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("file", sys.stdout)   # looked up per bar: the kernel replaces sys.stdout
        kwargs.setdefault("ncols", 80)
        kwargs.setdefault("mininterval", 0.5)
        super().__init__(*args, **kwargs)


def trange(*args: int, **kwargs: Any) -> tqdm:
    """`tqdm(range(*args), **kwargs)`."""
    return tqdm(range(*args), **kwargs)
