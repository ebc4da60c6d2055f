"""The health of the forge's recovery points, from the operator's side: the age of
the newest restic snapshot, and each Litestream replica's lag behind its database (asked on
the forge: files/phoenix_litestream_status.py). `phoenix backup status` prints them; each has a
threshold (backup_max_age, litestream_max_lag) past which it is a problem.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import posixpath
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from phoenix.backup import pitr
from phoenix.errors import PhoenixError
from phoenix.settings import Readable, project
from phoenix.sshconf import Target, last_line, run

STATUS_SCRIPT = "/usr/local/sbin/phoenix-litestream-status"
# Litestream's services, one per database owner; only the primary runs them (see activate).
GITEA_STREAM, HERMES_STREAM = "phoenix-litestream-gitea", "phoenix-litestream-hermes"
UNITS = (GITEA_STREAM, HERMES_STREAM)


def parse_url(url: str) -> dict:
    """host, port, user and path of an sftp://USER@HOST[:PORT]/PATH replica URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url or "")
    if (
        parts.scheme != "sftp"
        or not parts.hostname
        or not parts.username
        or not parts.path.startswith("/")
        or parts.password
    ):
        raise PhoenixError(
            f"litestream_replica_url {url!r} is not sftp://USER@HOST[:PORT]/PATH "
            "(a key, never a password in the URL)"
        )
    return {
        "host": parts.hostname,
        "port": parts.port or 22,
        "user": parts.username,
        "path": parts.path.rstrip("/"),
    }


def account_spec(url: str, forge_public_key: str) -> dict:
    """files/phoenix_offsite_store.py's spec of the replica account: plain SFTP for the forge's
    Litestream key (delete rights: Litestream compacts its own files), no restic retention."""
    where = parse_url(url)
    return {
        "user": where["user"],
        "home": posixpath.dirname(where["path"]),
        "repository": where["path"],
        "full_keys": [forge_public_key.strip()],
    }


def binary_path(settings: Readable, repo: Path | None = None) -> str:
    """Where the deploy puts the pinned Litestream: a virtualenv named after its lock file."""
    repo = repo or project()
    lock = (
        repo
        / Path(
            str(settings.get("litestream_requirements") or "files/litestream-requirements.txt")
        ).expanduser()
    )
    try:
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    except OSError as exc:
        raise PhoenixError(f"litestream_requirements {lock}: {exc.strerror}") from None
    return posixpath.join(
        str(settings.get("litestream_install_dir") or "/opt/litestream"),
        f"venv-{digest[:16]}",
        "bin",
        "litestream",
    )


def snapshot_age(snapshots: list[dict], now: datetime.datetime | None = None) -> float | None:
    """Seconds since the newest snapshot (restic's time), None without one."""
    if not snapshots:
        return None
    # restic writes nanoseconds and the operator's offset ("Z" or "+01:00"): pitr.parse keeps
    # microseconds; a time without an offset is UTC
    when = max(pitr.parse(s["time"]) for s in snapshots)
    now = now or datetime.datetime.now(datetime.UTC)
    return round((now - when).total_seconds(), 1)


def replica_lags(
    target: Target, settings: Mapping[str, Any], binary: str, timeout: float = 120
) -> list[dict]:
    """Each database's replica lag, asked on the forge (root) with its units' configuration."""
    folder = settings.get("litestream_config_dir") or "/etc/litestream"
    configs = [posixpath.join(folder, f"{unit}.yml") for unit in UNITS]
    command = shlex.join([STATUS_SCRIPT, binary, posixpath.join(folder, "credentials"), *configs])
    proc = run(
        target, command, timeout=timeout, late=f"the replica status on {target.host} did not answer"
    )
    if proc.returncode != 0:
        raise PhoenixError(
            f"cannot read the replica status on {target.host}: "
            f"{last_line(proc.stderr)} (is Litestream deployed there? "
            "tasks/litestream.py)"
        )
    return json.loads(proc.stdout)["databases"]


# The repository snapshots' timer fires up to this late (its AccuracySec=; systemd's default
# is a minute): frequent_snapshot_run_budget counts it (templates/phoenix-backup.timer.j2).
REPO_TIMER_ACCURACY = 1


def repo_snapshot_period(settings: Mapping[str, Any]) -> int | None:
    """Seconds between the starts of two repository snapshot runs, None when they
    are off. frequent_snapshot_interval is the promise: a disaster loses at most that much of the
    repositories' writes. A run saves what was pushed before it started, and only once it
    has ended: the newest saved run may have started one period plus the run in flight (up
    to frequent_snapshot_run_budget, the timer's lateness included) before the disaster. So runs
    start every interval - budget. PhoenixError (one line) when the budget leaves no period."""
    interval = int(settings.get("frequent_snapshot_interval") or 0)
    if interval <= 0:
        return None
    budget = settings.get("frequent_snapshot_run_budget")
    if (
        not isinstance(budget, int | float)
        or isinstance(budget, bool)
        or budget <= REPO_TIMER_ACCURACY
        or budget >= interval
    ):
        raise PhoenixError(
            f"frequent_snapshot_run_budget {budget!r} must be a number of seconds "
            f"above the timer's accuracy ({REPO_TIMER_ACCURACY} s) and below "
            f"frequent_snapshot_interval ({interval} s): the runs start every "
            "interval - budget"
        )
    return max(1, int(interval - budget))


def repo_run_problem(status: Mapping[str, Any] | None, settings: Mapping[str, Any]) -> str | None:
    """One line when the last repository snapshot run (its status file on the forge: files/
    phoenix-backup `repositories`) took longer than frequent_snapshot_run_budget allows (less the
    timer's accuracy): then a disaster may lose more than frequent_snapshot_interval of pushes."""
    if not status or repo_snapshot_period(settings) is None:
        return None
    took = status.get("duration_seconds")
    if took is None:
        return (
            "the last repository snapshot run recorded no duration (an older "
            "phoenix-backup: converge the forge)"
        )
    allowed = float(settings["frequent_snapshot_run_budget"]) - REPO_TIMER_ACCURACY
    if float(took) <= allowed:
        return None
    return (
        f"the last repository snapshot run ({status.get('time', '?')}) took {took:.1f} s, "
        f"over the {allowed:g} s frequent_snapshot_run_budget allows (its "
        f"{settings['frequent_snapshot_run_budget']} s less the timer's {REPO_TIMER_ACCURACY} "
        f"s): pushes older than frequent_snapshot_interval "
        f"({settings['frequent_snapshot_interval']} s) may be lost in a disaster"
    )


def repo_run_status(
    target: Target, settings: Mapping[str, Any], timeout: float = 60
) -> dict | None:
    """The forge's last repository snapshot run (backup_repo_status_file), None before its
    first. PhoenixError when the forge cannot be asked."""
    return _job_status(
        target, str(settings.get("backup_repo_status_file") or ""), "the repository job's", timeout
    )


def full_run_status(
    target: Target, settings: Mapping[str, Any], timeout: float = 60
) -> dict | None:
    """The forge's last full snapshot of its own (backup_status_file), None before its first:
    until then it is not yet protected. PhoenixError when the forge cannot be asked."""
    return _job_status(
        target, str(settings.get("backup_status_file") or ""), "the backup job's", timeout
    )


def _job_status(target: Target, path: str, whose: str, timeout: float) -> dict | None:
    proc = run(
        target,
        f"cat {shlex.quote(path)} 2>/dev/null || true",
        timeout=timeout,
        late=f"{whose} status on {target.host} did not answer",
    )
    if proc.returncode != 0:
        raise PhoenixError(f"cannot read {path} on {target.host}: {last_line(proc.stderr)}")
    try:
        return json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        raise PhoenixError(
            f"{path} on {target.host} is not JSON: {last_line(proc.stdout)}"
        ) from None


def repo_snapshot_max_age(settings: Mapping[str, Any]) -> float | None:
    """How old the newest repository snapshot may be: three intervals and a
    minute (a run in flight, a slow store); None when they are off."""
    interval = int(settings.get("frequent_snapshot_interval") or 0)
    return 3 * interval + 60 if interval > 0 else None


# The kinds of data and what keeps each: the databases stream (Litestream), every other file
# is in the frequent snapshots (files/phoenix_backup.py `repositories`), all in the full one.
FREQUENT_KINDS = (
    "repositories",
    "attachments, avatars, LFS objects, packages (Gitea's data folder)",
    "the houses' files (memories, skills, cron output)",
)


def newest_by_kind(
    age: float | None, repo_age: float | None, lags: list[dict], settings: Mapping[str, Any]
) -> list[dict]:
    """Per kind of data: the newest point that holds it (its age in seconds) and the bound
    `problems` holds it to. The databases: their replicas' largest lag, or the full snapshot
    without replicas; every other file: the newer of the full and the frequent snapshot."""
    full_bound = float(settings.get("backup_max_age") or 7200)
    out = []
    read = [float(db["lag_seconds"]) for db in lags if db.get("lag_seconds") is not None]
    if lags:
        out.append(
            {
                "kind": "databases (Gitea's, the houses')",
                "from": "replicas",
                "age_seconds": max(read) if len(read) == len(lags) else None,
                "bound_seconds": float(settings.get("litestream_max_lag") or 60),
            }
        )
    else:
        out.append(
            {
                "kind": "databases (Gitea's, the houses')",
                "from": "full snapshot",
                "age_seconds": age,
                "bound_seconds": full_bound,
            }
        )
    limit = repo_snapshot_max_age(settings)
    newest = min((a for a in (age, repo_age) if a is not None), default=None)
    for kind in FREQUENT_KINDS:
        out.append(
            {
                "kind": kind,
                "from": "frequent snapshot"
                if repo_age is not None and newest == repo_age
                else "full snapshot",
                "age_seconds": newest if limit is not None else age,
                "bound_seconds": limit if limit is not None else full_bound,
            }
        )
    return out


def problems(
    age: float | None,
    lags: list[dict],
    settings: Mapping[str, Any],
    repo_age: float | None = None,
    *,
    check_repo: bool = False,
    repo_status: Mapping[str, Any] | None = None,
    future: Iterable[str] = (),
) -> list[str]:
    """One line per threshold passed (empty: healthy). With `check_repo`, `repo_age` (the
    newest repository snapshot's, None: none) is checked when frequent_snapshot_interval is on,
    and `repo_status` (the last run's status file) against frequent_snapshot_run_budget.
    `future`: the lines of pitr.future, snapshots that claim a time past now + tolerance (the
    ages are of the others)."""
    found = list(future)
    limit = repo_snapshot_max_age(settings)
    if check_repo and limit is not None and age is not None:
        if repo_age is None:
            found.append(
                "no frequent snapshot of the forge yet (phoenix-backup-repositories): "
                + ", ".join(FREQUENT_KINDS)
                + " only as new as the full one"
            )
        elif repo_age > limit:
            found.append(
                f"the newest frequent snapshot ({', '.join(FREQUENT_KINDS)}) is "
                f"{repo_age:.0f} s old (3 x frequent_snapshot_interval + 60 s: {limit:.0f})"
            )
    if check_repo and (slow := repo_run_problem(repo_status, settings)):
        found.append(slow)
    max_age = float(settings.get("backup_max_age") or 7200)
    if age is None:
        found.append("no restic snapshot of the forge yet")
    elif age > max_age:
        found.append(f"the newest snapshot is {age:.0f} s old (backup_max_age {max_age:.0f})")
    max_lag = float(settings.get("litestream_max_lag") or 60)
    for db in lags:
        if db.get("error"):
            found.append(f"{db['path']}: its replica cannot be read: {db['error']}")
        elif float(db.get("lag_seconds") or 0) > max_lag:
            found.append(
                f"{db['path']}: its replica lags {db['lag_seconds']:.0f} s "
                f"(litestream_max_lag {max_lag:.0f})"
            )
    return found
