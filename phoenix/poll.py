"""One way to wait: ask until there is an answer or the time is up.

Every deadline loop in Phoenix and its lab goes through `poll()`, so a wait always ends with
one line that says what was awaited and for how long, never with a silent hang. (restic's
lock wait is the one other: the store host runs it too, files/phoenix_restic_lock_wait.py.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from phoenix.errors import PhoenixError

T = TypeVar("T")


def poll(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 1.0,
    progress: Callable[[str], None] | None = None,
    error: Callable[[], str] | None = None,
) -> T:
    """Call `check()` until it returns something other than None, and return that.

    `check` may raise to stop the wait early (a refusal that waiting cannot fix).
    `what` names the awaited outcome, for progress lines (with the deadline) and the default
    error.
    `error` builds the error line at the deadline (it may name the last state seen).
    The deadline is checked after each call, so `check` runs at least once.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            raise PhoenixError(error() if error else f"{what}: not within {timeout:g} s")
        if progress:  # what is awaited and for how long, not only that something is
            progress(f"{what} (up to {timeout:g} s)")
        time.sleep(min(interval, left))
