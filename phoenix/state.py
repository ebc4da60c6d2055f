"""The one state file per role (recovery, standby): what provision made, what cutover saved.

Lives in PHOENIX_STATE_DIR (default $XDG_STATE_HOME/phoenix, else ~/.local/state/phoenix):
<role>.json, the pinned <role>.known_hosts, and the droplet's SSH host key pair
(<role>.host_ed25519, 0600) until it is rotated. Written atomically, 0600, so a crash never
leaves half a state and nobody else reads it. A command that changes it holds <role>.lock
(`State.locked()`), so two phoenix commands never write one role's state at the same time; a
file that is not JSON is a one-line error, never a traceback. Beside them, recover.lock holds
one `phoenix recover` per folder for its whole run and cutover.lock one cutover or rollback
of any role.

One state file describes one droplet (one *attempt*): `begin_attempt` starts the next one and
moves what belonged to the last (its validation verdict, the DNS values it saved) into
`history`, so that nothing of an earlier recovery is taken for this one's.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phoenix.context import current
from phoenix.errors import PhoenixError

# What a host is (the one definition: tasks/role.py, cutover and the drill read it here);
# primary: the forge of the day, the one a drill destroys.
ROLES = ("recovery", "standby", "primary")
ROLE_FILE = "/var/lib/phoenix/role"  # on each host: tasks/role.py and a cutover write it
# On a host traffic was moved to, when (activate): a primary past it must be protected.
CUTOVER_FILE = "/var/lib/phoenix/cutover"
# The timers only the primary runs (the deploy installs them by these names, stopped on any
# other host; activate starts them at a cutover) and the standby's own, which it stops.
BACKUP_TIMERS = ("phoenix-backup", "phoenix-backup-repositories")
STANDBY_TIMER = "phoenix-standby-refresh"
# What belongs to one droplet: dropped (kept in history) when the next attempt begins.
PER_DROPLET = (
    "droplet",
    "attempt",
    "validation",
    "dns_saved",
    "reserved_ip_saved",
    "cutover",
    "promoted",
    "fenced",
    "host_key",
    "host_key_next",
    "rolled_back",
)

_held: dict[Path, tuple[int, int]] = {}  # lock path -> (fd, depth): reentrant in-process


def state_dir() -> Path:
    return current().state_dir


@contextmanager
def exclusive(path: Path, refusal: Callable[[str], str]) -> Iterator[None]:
    """flock(path) for the block, reentrant in this process; the holder's pid and start time
    are written in it, and another process is refused with refusal("pid N, since T")."""
    fd, depth = _held.get(path, (-1, 0))
    if depth == 0:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            words = os.read(fd, 128).decode(errors="replace").split()
            os.close(fd)
            holder = f"pid {words[0] if words else '?'}" + (
                f", since {words[1]}" if words[1:] else ""
            )
            raise PhoenixError(refusal(holder)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {now()}\n".encode())
    _held[path] = (fd, depth + 1)
    try:
        yield
    finally:
        fd, depth = _held.pop(path)
        if depth > 1:
            _held[path] = (fd, depth - 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def recovering(folder: Path | None = None) -> AbstractContextManager[None]:
    """One `phoenix recover` at a time per state folder, for its whole run: two would deploy
    to one droplet side by side."""
    lock = (folder or state_dir()) / "recover.lock"
    return exclusive(
        lock,
        lambda holder: (
            f"another phoenix recover ({holder}) is running with the state in {lock.parent}; "
            f"wait for it to finish (it holds {lock})"
        ),
    )


def cutting_over(folder: Path | None = None) -> AbstractContextManager[None]:
    """One cutover or rollback at a time, whatever the role: the recovery's and the
    standby's move the same names."""
    lock = (folder or state_dir()) / "cutover.lock"
    return exclusive(
        lock,
        lambda holder: (
            f"another cutover or rollback ({holder}) is moving traffic with the state in "
            f"{lock.parent}; wait for it to finish"
        ),
    )


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class State:
    def __init__(self, role: str, folder: Path | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role}")
        self.role = role
        self.folder = folder or state_dir()
        self.path = self.folder / f"{role}.json"
        self.lock_path = self.folder / f"{role}.lock"
        self.known_hosts = self.folder / f"{role}.known_hosts"
        self.host_key = self.folder / f"{role}.host_ed25519"
        self.data: dict[str, Any] = {}
        self.reload()

    def reload(self) -> None:
        if not self.path.exists():
            self.data = {}
            return
        try:
            data = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PhoenixError(
                f"the state file {self.path} is not valid JSON ({exc}); move it "
                "aside and look at it before running again"
            ) from None
        if not isinstance(data, dict):
            raise PhoenixError(
                f"the state file {self.path} does not hold a JSON object; move "
                "it aside and look at it before running again"
            )
        self.data = data

    @contextmanager
    def locked(self) -> Iterator[State]:
        """Hold <role>.lock (reentrant in this process) and re-read the file under it."""

        def refusal(holder: str) -> str:
            return (
                f"another phoenix command ({holder}) is using the {self.role} state "
                f"{self.path}; wait for it to finish"
            )

        with exclusive(self.lock_path, refusal):
            self.reload()
            yield self

    def save(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.data, out, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def begin_attempt(self, attempt: dict) -> None:
        """A new droplet: what the last one left (verdict, saved DNS…) goes to history."""
        old = {key: self.data.pop(key) for key in PER_DROPLET if key in self.data}
        if old:
            self.data.setdefault("history", []).append({"ended": now(), **old})
        self.data["attempt"] = attempt
        self.known_hosts.unlink(missing_ok=True)
        for path in (self.host_key, self.host_key.with_name(self.host_key.name + ".pub")):
            path.unlink(missing_ok=True)
        self.save()

    @property
    def droplet(self) -> dict[str, Any]:
        """What provision recorded ({} before it ran: falsy, like no droplet)."""
        return self.data.get("droplet") or {}

    @property
    def address(self) -> str | None:
        return (self.data.get("droplet") or {}).get("ip")

    @property
    def finished(self) -> bool:
        """This droplet went live (cut over or promoted) or was rolled back: the next
        provision makes a new one."""
        return any(self.data.get(key) for key in ("cutover", "promoted", "rolled_back"))
