"""When each snapshot arrived on the store, by the store's own clock.

A snapshot's time is whatever the forge wrote into it (restic --time, or a snapshot file forged
through its append-only key); only the store sees when the file came. restic keeps one file per
snapshot, `snapshots/<id>`, written once: its mtime is the arrival. The operator reads it through
its own SFTP access (the store's `internal-sftp`, over the one SSH settings builder's ssh), or
from the folder itself for a local repository. An s3 or REST store shows no arrival here: None.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from phoenix import sshconf
from phoenix.backup.store import Store
from phoenix.errors import PhoenixError


def arrivals(store: Store, *, timeout: float = 60) -> dict[str, float] | None:
    """Each snapshot's arrival (epoch seconds) by its full id, or None where the store's kind
    shows none."""
    repository = store.repository
    if repository.startswith("sftp:") and store.ssh is not None:
        folder = sshconf.sftp_parts(repository)["path"].rstrip("/") + "/snapshots"
        argv = sshconf.ssh_command(store.ssh, "-s", "sftp")
        return sftp_mtimes(argv, folder, timeout=timeout, where=store.location)
    if ":" in repository.split("/", 1)[0] and not repository.startswith("local:"):
        return None  # s3:, rest:, rclone: … a listing without times
    folder = Path(repository.removeprefix("local:")) / "snapshots"
    try:
        return {entry.name: entry.stat().st_mtime for entry in os.scandir(folder)}
    except OSError as exc:
        raise PhoenixError(f"cannot list {folder}: {exc.strerror}") from None


def sftp_mtimes(argv: list[str], folder: str, *, timeout: float, where: str) -> dict[str, float]:
    """The mtime of each file in `folder`, over SFTP spoken (paramiko's client) to the program
    `argv` (ssh … -s sftp, or an sftp-server) on a socket pair; nothing is written."""
    import paramiko

    ours, theirs = socket.socketpair()
    fd = theirs.fileno()
    proc = subprocess.Popen(argv, stdin=fd, stdout=fd, stderr=subprocess.PIPE)
    theirs.close()
    ours.settimeout(timeout)
    try:
        client = paramiko.SFTPClient(_Pipe(ours))  # type: ignore[arg-type]  # duck-typed
        try:
            return {
                attr.filename: float(attr.st_mtime or 0) for attr in client.listdir_attr(folder)
            }
        finally:
            client.close()
    except (OSError, EOFError, paramiko.SSHException) as exc:
        proc.kill()
        err = (proc.communicate(timeout=5)[1] or b"").decode(errors="replace").strip()
        why = err.splitlines()[-1] if err else (getattr(exc, "strerror", None) or str(exc))
        raise PhoenixError(
            f"cannot read when snapshots arrived on {where} ({folder}): {why}"
        ) from None
    finally:
        ours.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Pipe:
    """The socket as paramiko's SFTP client wants a channel: send, recv, close, a name."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> int:
        return self.sock.send(data)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def close(self) -> None:
        self.sock.close()

    def get_name(self) -> str:
        return "store"


def newest(snapshots: list[dict], arrived: dict[str, float]) -> dict:
    """The snapshot that arrived last; a claimed time only breaks a tie. A snapshot with no
    file (listed between the two reads) counts as arrived now."""
    import time

    from phoenix.backup import pitr

    now = time.time()
    return max(
        snapshots, key=lambda s: (arrived.get(s["id"], now), pitr.parse(s["time"]).timestamp())
    )
