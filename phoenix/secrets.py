"""Operator secrets: read from files outside the repo (or the environment), never logged.

A secret NAME is looked up as the environment variable PHOENIX_<NAME> (upper case), then as
the file <secrets dir>/<name>, where the folder is PHOENIX_SECRETS_DIR, else the host data's
`secrets_dir`, else $XDG_CONFIG_HOME/phoenix/secrets (~/.config/phoenix/secrets). A file
readable by group or others is refused: a secret must stay 0600.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from phoenix.context import current
from phoenix.errors import NotConfigured


def secrets_dir(default: str | None = None) -> Path:
    return current().secrets_dir(default)


def read_secret(name: str, *, folder: str | None = None) -> str:
    env = current().secret(name)
    if env:
        return env
    path = secrets_dir(folder) / name
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise NotConfigured(
            f"secret {name} is missing: set PHOENIX_{name.upper()} or write it "
            f"to {path} (mode 0600)"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise NotConfigured(
            f"secret file {path} is readable by others (mode "
            f"{stat.S_IMODE(mode):04o}); chmod 600 it"
        )
    value = path.read_text().strip()
    if not value:
        raise NotConfigured(f"secret file {path} is empty")
    return value


def optional_secret(name: str, *, folder: str | None = None) -> str | None:
    """A secret the operator may leave unset: None when neither its variable nor its file
    exists; set but unreadable, too open or empty is the same error as read_secret's."""
    if not current().secret(name) and not (secrets_dir(folder) / name).exists():
        return None
    return read_secret(name, folder=folder)


def write_secret(path: Path, value: str) -> None:
    """Create or replace a secret file with mode 0600 from the start (no window at 0644)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
