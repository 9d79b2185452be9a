"""Bounded waits that say what they waited for and what they last saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    what: str,
    fn: Callable[[], T],
    timeout_s: float = 20.0,
    every_s: float = 0.1,
    context: Callable[[], str] | None = None,
) -> T:
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every_s)
    extra = f"\n{context()}" if context is not None else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}{extra}")
