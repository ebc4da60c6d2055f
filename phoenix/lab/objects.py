"""The lab's ledger: every object it creates on this machine, written down before it exists.

`phoenix lab down` walks this file to remove what the lab made, also after a crash or a
killed test, so the machine is left as it was found. Writes are serialised with a file lock
because the CLI and the lab server process both record objects.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """Lock, read, let the caller change the dict, then write it back atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
            os.replace(tmp, self.path)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        data.setdefault("processes", {})  # name -> {"pid", "cmd"}
        data.setdefault("links", [])  # bridge and veth names
        data.setdefault("netns", [])
        data.setdefault("mounts", [])
        data.setdefault("droplets", {})  # id (str) -> droplet record
        return data

    def read(self) -> dict[str, Any]:
        with self.edit() as data:
            return json.loads(json.dumps(data))

    def add(self, kind: str, value: str) -> None:
        with self.edit() as data:
            if value not in data[kind]:
                data[kind].append(value)

    def discard(self, kind: str, value: str) -> None:
        with self.edit() as data:
            if value in data[kind]:
                data[kind].remove(value)
