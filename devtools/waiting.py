"""Polling a condition until a deadline: how tests and benchmarks synchronise with another process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], deadline_s: float, *, interval_s: float = 0.05, what: str = "a condition",
             error: type[Exception] = TimeoutError) -> T:
    """Call `condition` until it returns something truthy, and return that; raise `error` after `deadline_s`.

    The condition is always tried once more after the deadline has passed, so a slow poll never fails a wait
    the last check would have met. Exceptions from the condition propagate (a server that died, say).
    """
    deadline = time.monotonic() + deadline_s
    while True:
        expired = time.monotonic() > deadline
        value = condition()
        if value:
            return value
        if expired:
            raise error(f"timed out after {deadline_s:g} s waiting for {what}")
        time.sleep(interval_s)
