"""What the operator sees while Phoenix works: lines on stderr, and waits as one status line.

On a terminal a wait (a droplet booting, sshd coming up, DNS propagating) is one line that
updates in place with the time spent so far; elsewhere (a log, CI) a wait prints a plain
line only when what it reports changes, so a log is not one line per poll.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Console:
    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._status = ""          # the status text last shown
        self._since: float | None = None  # when the current wait began
        self._open = False         # a status line is on screen without its newline

    def say(self, message: str) -> None:
        """A line that stays (a step starts or ends, a change was made)."""
        self._close()
        self._since = None
        self._status = ""
        self.stream.write(message + "\n")
        self.stream.flush()

    __call__ = say

    def wait(self, message: str) -> None:
        """The state of a wait: replaces the previous one on a terminal."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if self.tty:
            self.stream.write(f"\r\033[K{message} · {now - self._since:.0f} s")
            self._open = True
        elif message != self._status:
            self.stream.write(message + "\n")
        self._status = message
        self.stream.flush()

    def done(self, message: str) -> None:
        """A line that takes the place of the status line (a wait's outcome)."""
        if self._open:
            self.stream.write("\r\033[K")
            self._open = False
        self.say(message)

    def _close(self) -> None:
        if self._open:
            self.stream.write("\n")  # the last state of the wait stays on screen
            self._open = False


def waiter(say: Callable[[str], None]) -> Callable[[str], None]:
    """The status-line form of `say` when it is a Console, else `say` itself."""
    return say.wait if isinstance(say, Console) else say
