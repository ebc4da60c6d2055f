"""`forge:`: the runbook's backup fetched from the old forge while it still answers.

The forge may have been taken over, so what it sends is hostile input: the copy is a tar
stream written to disk as it comes, within a size and a deadline, and only folders and
regular files come out of it (no link is followed, nothing lands outside the folder).
"""

from __future__ import annotations

import os
import selectors
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from phoenix.backup.importers import CHUNK, LIMITS, Limits
from phoenix.errors import PhoenixError

RUNBOOK_PLACES = ("/backups/gitea", "/var/backups/gitea", "/root/backups")


def _stream(proc: subprocess.Popen, out: IO[bytes], *, what: str, limits: Limits) -> bytes:
    """The command's stdout into `out`, within the fetch's size and time; returns the last of
    its stderr. Refuses (PhoenixError) a stream too long or too slow, and kills the command."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + limits.fetch_seconds
    written, tail = 0, b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        selector.register(proc.stderr, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise PhoenixError(
                    f"{what}: the copy took more than {limits.fetch_seconds:g} s: refused, "
                    "nothing was restored"
                )
            for key, _ in selector.select(timeout=left):
                chunk = os.read(key.fd, CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.fileobj is proc.stderr:
                    tail = (tail + chunk)[-4096:]
                else:
                    written += len(chunk)
                    if written > limits.fetch_bytes:
                        raise PhoenixError(
                            f"{what}: the copy is over {limits.fetch_bytes >> 20} MiB: refused, "
                            "nothing was restored"
                        )
                    out.write(chunk)
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        raise PhoenixError(
            f"{what}: the copy took more than {limits.fetch_seconds:g} s: refused, nothing was "
            "restored"
        ) from None
    return tail


def _checked_members(tar: tarfile.TarFile, *, what: str, limits: Limits) -> list[tarfile.TarInfo]:
    """The fetched backup's members: folders and regular files inside it, nothing else."""
    members = tar.getmembers()
    for member in members:
        if member.name.startswith("/") or ".." in member.name.split("/"):
            refused = f"{member.name!r} would land outside the restore"
        elif member.issym() or member.islnk():
            kind = "symlink" if member.issym() else "hard link"
            refused = (
                f"{member.name!r} is a {kind} (to {member.linkname!r}); a backup is read as "
                "data, no link in it is followed"
            )
        elif not (member.isfile() or member.isdir()) or member.issparse():
            refused = f"{member.name!r} is not a regular file or folder"
        else:
            continue
        raise PhoenixError(f"{what}: {refused}: refused, nothing was restored")
    if sum(member.size for member in members) > limits.fetch_bytes:
        raise PhoenixError(
            f"{what}: it unpacks to over {limits.fetch_bytes >> 20} MiB: refused, nothing "
            "was restored"
        )
    return members


def fetch_from_forge(spec: str, dest: Path, *, target: Any, limits: Limits | None = None) -> Path:
    """`forge:[PATH]`: the runbook backup folder on the old forge (PATH, else the first of the
    runbook's places that holds a database), copied here over ssh with its pinned host key,
    as a tar stream to disk within the fetch's limits; only folders and regular files come
    out of it. dest is a new folder, removed again if the fetch is refused."""
    from phoenix.sshconf import ssh_command

    limits = limits or LIMITS
    wanted = spec[len("forge:") :].strip()
    places = [wanted] if wanted else list(RUNBOOK_PLACES)
    what = f"the runbook backup from {target.host} ({', '.join(places)})"
    script = (
        "for d in " + " ".join(shlex.quote(p) for p in places) + "; do "
        'if ls "$d"/gitea.db >/dev/null 2>&1 || '
        'ls "$d"/gitea-[0-9]*.db >/dev/null 2>&1; then '
        'echo "$d" >&2; exec tar -C "$d" -cf - .; fi; done; '
        "echo 'no gitea.db or gitea-YYYYMMDD.db in '\"$*\" >&2; exit 3"
    )
    command = ssh_command(
        target, "sh -c " + shlex.quote(script) + " - " + " ".join(shlex.quote(p) for p in places)
    )
    dest.mkdir(parents=True)
    try:
        with tempfile.TemporaryFile(dir=dest.parent, prefix="phoenix-fetch-") as held:
            with subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            ) as proc:
                try:
                    tail = _stream(proc, held, what=what, limits=limits)
                finally:
                    if proc.poll() is None:
                        proc.kill()
            if proc.returncode != 0:
                last = tail.decode(errors="replace").strip().splitlines()
                raise PhoenixError(
                    f"cannot fetch the runbook backup from {target.host} "
                    f"({', '.join(places)}): {last[-1] if last else 'no output'}"
                )
            held.seek(0)
            try:
                with tarfile.open(fileobj=held, mode="r:") as tar:
                    tar.extractall(
                        dest, members=_checked_members(tar, what=what, limits=limits), filter="data"
                    )
            except (tarfile.TarError, OSError, EOFError) as exc:
                said = " ".join(str(exc).split())
                raise PhoenixError(
                    f"{what} does not unpack: {said}; nothing was restored"
                ) from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest
