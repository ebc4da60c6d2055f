"""The questions of the last converge (a fact and its arguments, never an answer), kept in
Phoenix's state folder so that facts/batch.py asks them together at the next converge's first
question. A hint only: a file that cannot be read or written means one-by-one reads.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from phoenix.context import current

HINTS_KEPT = 1000


def _file() -> Path:
    from phoenix.state import state_dir

    return state_dir() / "fact-questions.json"


def load(host_name: str) -> list[list]:
    """The questions `host_name` was asked last time ([[fact, kwargs, operation], ...])."""
    try:
        saved = json.loads(_file().read_text())
    except (OSError, ValueError):
        return []
    hints = saved.get("hosts", {}).get(host_name) or saved.get("last") or []
    return [h for h in hints if isinstance(h, list) and len(h) == 3]


def save(kept: Mapping[str, Any]) -> None:
    """Each host's questions of this converge (`asked`), for the next one (at exit)."""
    if not kept:
        return
    path = _file()
    try:
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
        hosts = saved.get("hosts", {}) if isinstance(saved, dict) else {}
        last = saved.get("last", []) if isinstance(saved, dict) else []
        for host_name, one in kept.items():
            if one.asked:
                hosts.pop(host_name, None)  # the 50 hosts kept are the latest
                hosts[host_name] = last = one.asked[:HINTS_KEPT]
            if current().flag("PHOENIX_FACT_BATCH_STATS"):
                print(
                    f"fact batch {host_name}: {one.batches} batches, {one.hits} answers "
                    f"kept, {one.misses} asked alone",
                    file=sys.stderr,
                )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"hosts": dict(list(hosts.items())[-50:]), "last": last}))
        tmp.replace(path)
    except OSError:
        pass  # a hint only: the next converge asks one by one
