"""What every torch-based check shares: run on one thread, and leave the notebook's RNG alone.

Checks use tiny tensors; on a busy 2-core machine torch's thread pool made them
5-20x slower, so a check runs on one thread and restores the caller's setting.
Building modules inside a check draws from torch's global RNG, so a check forks
it: the learner's notebook produces the same numbers whether or not it ran one.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one CPU thread inside the block; the caller's thread count is restored afterwards."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def torch_check(check: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a check: one thread, and the global torch RNG forked (restored when it returns)."""

    @functools.wraps(check)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        with one_thread(), torch.random.fork_rng(devices=[]):
            return check(*args, **kwargs)

    return wrapped
