#!/usr/bin/python3
"""Tells the operator when the forge's backups stop arriving; runs on the offsite store.

A forge cannot be trusted to report on itself: once taken over it can keep saying "backed
up" while it sends nothing, and a dead one says nothing at all. The store sees what
arrives: each restic snapshot is one file under the repository's `snapshots/`, and its
mtime is when it reached the store (rclone sets it on arrival), on the store's clock, which
the forge cannot set. Litestream's replica files arrive the same way.

    phoenix-backup-watch CONFIG STATE

CONFIG (JSON; holds the alert command, so root's 0600 file, handed in as a credential):
  checks         [{"name", "folder", "max_age" (s), "tag" (optional)}]; a check is late when
                 the newest file in `folder` (any depth) arrived more than max_age ago. With
                 `tag`, and RESTIC_REPOSITORY + RESTIC_PASSWORD_FILE in the environment, only
                 the snapshots restic lists with that tag count (full and repository runs
                 apart); without the password, any snapshot's arrival counts.
  alert_command  argv run with the message on stdin and PHOENIX_ALERT_SUBJECT set: when a
                 check becomes late, again every `repeat` seconds while it stays late, and
                 once when all arrive again. Failed: no state change, tried at the next run.
  ok_command     optional argv run after a run that found nothing late (a dead man's switch
                 elsewhere then also notices this store or its timer stopping).
STATE: JSON this program keeps (what it last alerted about, and when).

Exit 0: all arrive; 1: something is late (the unit fails, `systemctl --failed` shows it);
2: the alert command failed. Python's standard library only (Debian 12).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def newest_arrival(folder: str, names: set[str] | None = None) -> float | None:
    """The newest mtime of a file under `folder` (only files named in `names`, if given)."""
    newest = None

    def unreadable(exc: OSError) -> None:  # one it may not read proves nothing; one pruned
        if isinstance(exc, PermissionError):  # meanwhile is gone, and that is all
            raise exc

    for root, _dirs, files in os.walk(folder, onerror=unreadable):
        for name in files:
            if names is not None and name not in names:
                continue
            try:
                mtime = os.stat(os.path.join(root, name)).st_mtime
            except FileNotFoundError:  # pruned meanwhile
                continue
            newest = mtime if newest is None else max(newest, mtime)
    return newest


def tagged(tag: str) -> set[str] | None:
    """The ids of the snapshots tagged `tag`, by restic with the store's password; None when
    the store has no password (then every snapshot file counts)."""
    if not (os.environ.get("RESTIC_REPOSITORY") and os.environ.get("RESTIC_PASSWORD_FILE")):
        return None
    proc = subprocess.run(
        ["restic", "snapshots", "--json", "--no-lock", "--tag", tag],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip() or "no output").splitlines()[-1]
        raise RuntimeError(f"restic snapshots --tag {tag} failed: {last}")
    return {snap["id"] for snap in json.loads(proc.stdout or "[]")}


def ago(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def late(checks: list[dict], now: float) -> list[str]:
    """One line per check whose newest file arrived too long ago (or never)."""
    found = []
    for check in checks:
        try:
            names = tagged(check["tag"]) if check.get("tag") else None
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            found.append(f"{check['name']}: cannot tell: {exc}")
            continue
        try:
            newest = newest_arrival(check["folder"], names)
        except PermissionError as exc:
            found.append(f"{check['name']}: cannot tell: {exc}")
            continue
        if newest is None:
            found.append(f"{check['name']}: nothing has arrived in {check['folder']}")
        elif now - newest > float(check["max_age"]):
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(newest))
            found.append(
                f"{check['name']}: the newest arrived {ago(now - newest)} ago "
                f"({at}), past its {float(check['max_age']):.0f} s"
            )
    return found


def run(argv: list[str], message: str, subject: str) -> str | None:
    """Run a command the operator configured; None when it worked, else why not."""
    try:
        proc = subprocess.run(
            argv,
            input=message,
            text=True,
            capture_output=True,
            timeout=120,
            env={**os.environ, "PHOENIX_ALERT_SUBJECT": subject},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode != 0:
        return f"exit {proc.returncode}: " + (proc.stderr.strip() or "no output")[-300:]
    return None


def main(config_path: str, state_path: str, now: float | None = None) -> int:
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    now = time.time() if now is None else now
    try:
        with open(state_path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        state = {}
    found = late(config["checks"], now)
    names = sorted(line.split(":", 1)[0] for line in found)
    repeat = float(config.get("repeat") or 86400)
    if found and (
        names != state.get("late") or now - float(state.get("alerted_at") or 0) >= repeat
    ):
        subject = "forge backups stopped arriving at the offsite store"
        message = subject + ":\n" + "\n".join(found) + "\n"
    elif not found and state.get("late"):
        subject = "forge backups arrive at the offsite store again"
        message = subject + " (" + ", ".join(state["late"]) + ")\n"
    else:
        subject = message = ""
    for line in found:
        print(line, file=sys.stderr)
    if message:
        failed = run(config["alert_command"], message, subject)
        if failed:
            print(f"phoenix-backup-watch: the alert command failed: {failed}", file=sys.stderr)
            return 2
        state = {"late": names, "alerted_at": now} if found else {}
        tmp = state_path + ".new"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        os.replace(tmp, state_path)
    if found:
        return 1
    if config.get("ok_command"):
        failed = run(config["ok_command"], "forge backups arrive\n", "forge backups arrive")
        if failed:
            print(f"phoenix-backup-watch: the ok command failed: {failed}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: phoenix-backup-watch CONFIG STATE")
    try:
        sys.exit(main(sys.argv[1], sys.argv[2]))
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"phoenix-backup-watch: {type(exc).__name__}: {exc}")
