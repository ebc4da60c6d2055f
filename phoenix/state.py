"""The one state file per role (recovery, standby): what provision made, what cutover saved.

Lives in PHOENIX_STATE_DIR (default $XDG_STATE_HOME/phoenix, else ~/.local/state/phoenix):
<role>.json, the pinned
<role>.known_hosts, and the droplet's SSH host key pair (<role>.host_ed25519, 0600).
Written atomically, 0600, so a crash never leaves half a state and nobody else reads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROLES = ("recovery", "standby", "primary")  # primary: the forge a drill destroys


def state_dir() -> Path:
    named = os.environ.get("PHOENIX_STATE_DIR")
    if named:
        return Path(named).expanduser()
    return Path(os.environ.get("XDG_STATE_HOME") or "~/.local/state").expanduser() / "phoenix"


class State:
    def __init__(self, role: str, folder: Path | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role}")
        self.role = role
        self.folder = folder or state_dir()
        self.path = self.folder / f"{role}.json"
        self.known_hosts = self.folder / f"{role}.known_hosts"
        self.host_key = self.folder / f"{role}.host_ed25519"
        self.data: dict[str, Any] = {}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    def save(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.data, out, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    @property
    def droplet(self) -> dict[str, Any]:
        """What provision recorded ({} before it ran: falsy, like no droplet)."""
        return self.data.get("droplet") or {}

    @property
    def address(self) -> str | None:
        return (self.data.get("droplet") or {}).get("ip")
