"""What the operator sees while Phoenix works: lines on stderr, and waits as one status line.

On a terminal a wait (a droplet booting, sshd coming up, a deploy operation running, DNS
propagating) is one line that updates in place, its elapsed time ticking every second;
elsewhere (a log, CI) a wait prints a plain line only when what it reports changes, so a log
is not one line per poll. With `phoenix -q` it prints nothing: results go to stdout, errors
to stderr through the CLI, not through it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from phoenix.context import current

# Whatever prints a line for the operator: print, Console.say, a list's append in a test.
Say = Callable[[str], None]


class Console:
    def __init__(
        self, stream: TextIO | None = None, *, tty: bool | None = None, quiet: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self._quiet = quiet  # None: as the command's -q says (read when a line is printed)
        self.tty = self.stream.isatty() if tty is None else tty
        self._status = ""  # the status text last shown
        self._since: float | None = None  # when the current wait began
        self._open = False  # a status line is on screen without its newline
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None

    @property
    def quiet(self) -> bool:
        return current().verbosity < 0 if self._quiet is None else self._quiet

    def say(self, message: str) -> None:
        """A line that stays (a step starts or ends, a change was made)."""
        if self.quiet:
            return
        with self._lock:
            self._close()
            self._since = None
            self._status = ""
            self.stream.write(message + "\n")
            self.stream.flush()

    __call__ = say

    def wait(self, message: str) -> None:
        """The state of a wait: replaces the previous one on a terminal."""
        if self.quiet:
            return
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
            if self.tty:
                self._status = message
                self._draw()
                self._tick_in_background()
            elif message != self._status:
                self._status = message
                self.stream.write(message + "\n")
                self.stream.flush()

    def done(self, message: str) -> None:
        """A line that takes the place of the status line (a wait's outcome)."""
        with self._lock:
            if self._open:
                self.stream.write("\r\033[K")
                self._open = False
        self.say(message)

    def clear(self) -> None:
        """The wait is over and says nothing worth keeping: its line goes."""
        with self._lock:
            if self._open:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self._open = False
            self._since = None

    def _draw(self) -> None:
        elapsed = time.monotonic() - (self._since or time.monotonic())
        self.stream.write(f"\r\033[K{self._status} · {elapsed:.0f} s")
        self.stream.flush()
        self._open = True

    def _tick_in_background(self) -> None:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="console-tick", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while True:
            time.sleep(1)
            with self._lock:
                if self._open:
                    self._draw()

    def _close(self) -> None:
        if self._open:
            self.stream.write("\n")  # the last state of the wait stays on screen
            self._open = False


def waiter(say: Callable[[str], None]) -> Callable[[str], None]:
    """The status-line form of `say` when it is a Console, else `say` itself."""
    return say.wait if isinstance(say, Console) else say
