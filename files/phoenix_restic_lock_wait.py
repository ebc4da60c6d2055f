#!/usr/bin/python3
"""Run restic again while another run holds the repository's lock, for a while.

Debian 12's restic 0.14 has no --retry-lock, and the forge snapshots its repositories every
few minutes, each run holding the store's lock for seconds: a prune or check that met one
failed at once. This is the one wait for it, on both sides:

- the offsite store's retention runs restic through it (files/phoenix_offsite_store.py writes
  this file to /usr/local/sbin/phoenix-offsite-lock-wait, its text coming in the spec):

      phoenix-offsite-lock-wait RESTIC ARGS...   tried again every 5 s for up to 600 s while
                                                 restic says the repository is locked

- the operator's restic (phoenix/restic.py) loads this file and calls `retry_while_locked`
  with its own run, its own reading of "locked", and its own interval and wait.

Debian 12's python3 standard library only; one file.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

WAIT = 600.0  # the store's: its retention runs unattended, a late prune costs nothing
INTERVAL = 5.0
LOCKED = "repository is already locked"  # restic 0.14's words (it exits 1 for everything)


def retry_while_locked(
    run: Callable[[], T],
    locked: Callable[[T], bool],
    *,
    wait: float,
    interval: float,
    waiting: Callable[[], None] = lambda: None,
) -> T:
    """run() until locked(what it returned) is false or `wait` seconds are over, every
    `interval` seconds (`waiting()` before each wait); returns the last result, still locked
    when the wait was over. What run() raises ends the wait."""
    deadline = time.monotonic() + wait
    while True:
        result = run()
        left = deadline - time.monotonic()
        if not locked(result) or left <= 0:
            return result
        waiting()
        time.sleep(min(interval, left))


def main(argv: list[str]) -> int:
    """restic (argv) until it does not meet a lock; its stderr, its exit code."""

    def once() -> subprocess.CompletedProcess:
        return subprocess.run(argv, stderr=subprocess.PIPE, text=True, check=False)

    def waiting() -> None:
        print(
            f"another run holds the repository's lock: trying again in {INTERVAL:g} s", flush=True
        )

    proc = retry_while_locked(
        once,
        lambda p: p.returncode != 0 and LOCKED in p.stderr,
        wait=WAIT,
        interval=INTERVAL,
        waiting=waiting,
    )
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
