"""Long-lived lab processes: started detached, recorded in the ledger, stopped by record.

Processes started from a shell that ends may be killed with it, so the lab starts its own
with `setsid`. A record holds the PID and its kernel start time, so a PID that was reused
by an unrelated process after a crash is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from phoenix.errors import PhoenixError
from phoenix.lab.objects import Ledger
from phoenix.poll import poll


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None


def alive(record: dict) -> bool:
    """Running, and the same process as recorded; an exited one not yet reaped by its parent
    (a zombie, e.g. a container the lab server started) is not alive."""
    fields = _stat(record["pid"])
    if not fields:
        return False
    return fields[19] == record["start"] and fields[0] not in ("Z", "X")


def spawn(
    ledger: Ledger, name: str, cmd: Sequence[str], *, log: Path, env: dict[str, str] | None = None
) -> dict:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    record = {"pid": proc.pid, "start": start_time(proc.pid), "cmd": list(cmd)}
    with ledger.edit() as data:
        data["processes"][name] = record
    return record


def stop(ledger: Ledger, name: str, *, timeout: float = 15) -> None:
    record = ledger.read()["processes"].get(name)
    if record is not None:
        stop_record(record, timeout=timeout)
    with ledger.edit() as data:
        data["processes"].pop(name, None)


def stop_record(record: dict, *, timeout: float = 15) -> None:
    """SIGTERM, wait, then SIGKILL; a process that is already gone is fine."""
    if not alive(record):
        return
    pid = record["pid"]
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool | None:
        _reap(pid)
        return None if alive(record) else True

    try:
        poll(gone, timeout=timeout, what=f"process {pid} to stop", interval=0.05)
        return
    except PhoenixError:  # it did not stop on SIGTERM
        pass
    os.kill(pid, signal.SIGKILL)
    while alive(record):
        _reap(pid)
        time.sleep(0.05)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
