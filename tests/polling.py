"""One way for tests to wait on another thread or process: poll a condition with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float, what: str | Callable[[], str],
             interval: float = 0.1) -> T:
    """Call `cond` every `interval` s until it returns something truthy, and return that; fail
    with "timed out waiting for <what>" after `timeout` s (`what` may be a function, to report
    the state at that moment). `cond` may raise to fail early."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for "
                                 f"{what() if callable(what) else what}")
        time.sleep(interval)
