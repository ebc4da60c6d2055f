"""The offsite store: where `backup_repository` is, what opens it, how hosts reach it, and how
the operator sets it up append-only. phoenix/backup/snapshots.py runs restic on it.

An sftp store is reached with the operator's key and its host key pinned (phoenix.sshconf,
never trust on first use); the forge's key, on the operator's machine only meanwhile
(`forge_channel`), is how `verify` proves the store refuses what a compromised forge would do.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phoenix import sshconf
from phoenix.errors import NotConfigured, PhoenixError
from phoenix.secrets import read_secret
from phoenix.settings import REPO, Readable
from phoenix.sshconf import Target, ssh_command

STORE_SCRIPT = REPO / "files" / "phoenix_offsite_store.py"
# restic run again while another run holds the lock: the store's retention and the operator's
LOCK_WAIT_SCRIPT = REPO / "files" / "phoenix_restic_lock_wait.py"
WATCH_SCRIPT = REPO / "files" / "phoenix_backup_watch.py"


def repo_tag(tag: str) -> str:
    """The tag of the repository snapshots beside the line's `tag`: another tag, so
    that `restic:latest` and the line's retention keep meaning the full snapshots."""
    return f"{tag}-repositories"


@dataclass(frozen=True)
class Store:
    """A restic repository and what opens it. Secrets stay out of repr()."""

    repository: str
    password: str = field(repr=False)
    ssh: Target | None = None  # sftp: the store, the operator's key, its host key
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # s3 credentials
    host: str | None = None  # restic --host: None, the whole primary line
    tag: str = "phoenix"  # the line's --tag (backup_tag)
    future_tolerance: float = 30  # backup_future_tolerance: later is never the newest

    @property
    def location(self) -> str:
        return re.sub(r"//[^/@]*@", "//", self.repository)


# --- the store from settings -------------------------------------------------------------------


def known_hosts_lines(value: Any) -> list[str]:
    """backup_known_hosts as lines: a string (one or more lines) or a list of lines."""
    if not value:
        return []
    lines = value.splitlines() if isinstance(value, str) else list(value)
    return [line.strip() for line in lines if line.strip()]


def store_from_settings(
    settings: Readable, *, key: Path | None = None, known_hosts: Path | None = None
) -> Store:
    """The Store that `settings` (group_data, or pyinfra's host.data) describe.

    sftp: `key` is the operator's SSH key (default: settings' ssh_key, then PHOENIX_SSH_KEY or
    ~/.ssh/id_ed25519); the store's pinned host key (backup_known_hosts) is written to
    `known_hosts` (default: <PHOENIX_STATE_DIR>/backup.known_hosts).
    """
    repository = settings.get("backup_repository")
    if not repository:
        raise NotConfigured(
            "backup_repository is not set (group_data): say where the offsite "
            "restic repository is, e.g. "
            "sftp:restic@store.example:/srv/restic/forge"
        )
    folder = settings.get("secrets_dir")
    password = read_secret("restic_password", folder=folder)
    env: dict[str, str] = {}
    ssh = None
    if repository.startswith("sftp:"):
        sshconf.sftp_parts(repository)  # an address that is not one: say so first
        lines = known_hosts_lines(settings.get("backup_known_hosts"))
        if not lines:
            raise PhoenixError(
                "backup_known_hosts is empty: pin the store's host key "
                "(`ssh-keyscan` it once, check its fingerprint); Phoenix never "
                "trusts a host key on first use"
            )
        if known_hosts is None:
            from phoenix.state import state_dir

            known_hosts = state_dir() / "backup.known_hosts"
        known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        known_hosts.write_text("".join(line + "\n" for line in lines))
        if key is None:
            named = settings.get("ssh_key")
            key = Path(named).expanduser() if named else None
        if key is None:
            from phoenix.provision.droplet import operator_key

            key = operator_key()
        ssh = sshconf.sftp_target(
            repository,
            key=Path(key),
            known_hosts=known_hosts,
            connect_timeout=int(settings.get("backup_connect_timeout") or 10),
        )
    elif repository.startswith("s3:"):
        env = {
            "AWS_ACCESS_KEY_ID": read_secret("backup_s3_access_key_id", folder=folder),
            "AWS_SECRET_ACCESS_KEY": read_secret("backup_s3_secret_access_key", folder=folder),
        }
    return Store(
        repository=repository,
        password=password,
        ssh=ssh,
        env=env,
        host=settings.get("backup_host") or None,
        tag=settings.get("backup_tag") or "phoenix",
        future_tolerance=float(settings.get("backup_future_tolerance") or 30),
    )


def sftp_command(target: Target) -> str:
    """restic's sftp.command: the one SSH settings builder's ssh, strict host key checking."""
    return shlex.join(ssh_command(target, "-s", "sftp"))


def append_only(settings: Readable) -> bool:
    """Whether hosts reach the store through its append-only endpoint (sftp stores only)."""
    return bool(settings.get("backup_append_only")) and str(
        settings.get("backup_repository") or ""
    ).startswith("sftp:")


def channel_config(repository: str, target: Target, *, append_only: bool) -> dict[str, str]:
    """How the job on a host (forge, standby, recovery) reaches the sftp store `repository`
    with `target` (the host's key, the pinned host key): keys of its config.json.

    Append-only: restic's rclone backend, whose program is ssh to the store; the store runs
    the key's forced command (`rclone serve restic --stdio --append-only REPO`) whatever
    restic asks for, so the path here only names the store in messages."""
    path = sshconf.sftp_parts(repository)["path"]
    if not append_only:
        return {"sftp_command": sftp_command(target)}
    return {
        "repository": f"rclone:{path}",
        "rclone_program": shlex.join(ssh_command(target)),
        "location": f"{repository} (append-only)",
    }


def store_spec(
    settings: Mapping[str, Any], *, forge_key: str, operator_key: str, password: str
) -> dict:
    """What files/phoenix_offsite_store.py makes of the store of `backup_repository`: the forge's
    public key append-only, the operator's SFTP, the retention timer with the keep-* policy.
    Holds the repository password: never print it."""
    repository = str(settings.get("backup_repository") or "")
    parts = sshconf.sftp_parts(repository, why=": only an sftp store can be made append-only here")
    path = parts["path"] if parts["path"].startswith("/") else "/" + parts["path"]
    keep = {k: int(settings.get(f"backup_keep_{k}") or 0) for k in ("hourly", "daily", "weekly")}
    return {
        "user": parts["user"] or "restic",
        "home": os.path.dirname(path.rstrip("/")),
        "repository": path,
        "append_keys": [forge_key.strip()],
        "full_keys": [operator_key.strip()],
        "password": password,
        "prune": {
            "tag": settings.get("backup_tag") or "phoenix",
            "keep": keep,
            "schedule": settings.get("backup_prune_schedule") or "daily",
            "time_tolerance": int(settings.get("backup_prune_time_tolerance") or 7200),
            "lock_tolerance": int(settings.get("backup_prune_lock_tolerance") or 300),
            # the repository snapshots, kept for a while (the full ones stay)
            "repo_tag": repo_tag(settings.get("backup_tag") or "phoenix"),
            "repo_keep_within": settings.get("frequent_snapshot_keep_within") or "2d",
        },
        **({"watch": watch} if (watch := watch_spec(settings, path)) else {}),
    }


def watch_spec(settings: Mapping[str, Any], repository: str) -> dict | None:
    """What files/phoenix_backup_watch.py checks on the store, or None without an alert
    command: full snapshots against backup_max_age, repository snapshots against their own
    limit, and the replicas (when Litestream's account is on this store) against
    backup_alert_replica_max_age."""
    command = settings.get("backup_alert_command") or []
    for name in ("backup_alert_command", "backup_alert_ok_command"):
        value = settings.get(name) or []
        if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
            raise NotConfigured(
                f"{name} must be a list of words, the program first (it runs without a "
                'shell), e.g. ["mail", "-s", "forge backups", "ops@example.org"]'
            )
    if not command:
        return None
    from phoenix.backup import replication

    tag = str(settings.get("backup_tag") or "phoenix")
    folder = repository.rstrip("/") + "/snapshots"
    checks: list[dict[str, Any]] = [
        {
            "name": "full snapshots",
            "folder": folder,
            "tag": tag,
            "max_age": float(settings.get("backup_max_age") or 7200),
        }
    ]
    repo_limit = replication.repo_snapshot_max_age(settings)
    if repo_limit is not None:
        checks.append(
            {
                "name": "repository snapshots",
                "folder": folder,
                "tag": repo_tag(tag),
                "max_age": repo_limit,
            }
        )
    url = settings.get("litestream_replica_url")
    if url:
        checks.append(
            {
                "name": "database replicas",
                "folder": replication.parse_url(url)["path"],
                "max_age": float(settings.get("backup_alert_replica_max_age") or 86400),
            }
        )
    return {
        "checks": checks,
        "alert_command": command,
        "ok_command": list(settings.get("backup_alert_ok_command") or []),
        "repeat": float(settings.get("backup_alert_repeat") or 86400),
        "schedule": settings.get("backup_alert_schedule") or "*:0/15",
    }


def setup_store(root: Target, spec: Mapping[str, Any], *, timeout: float = 900) -> list[str]:
    """Run files/phoenix_offsite_store.py as root on the store (the spec on stdin, never argv,
    with the lock wait's program for its retention); returns what it changed."""
    script = STORE_SCRIPT.read_text()
    spec = {**spec, "lock_wait": LOCK_WAIT_SCRIPT.read_text()}
    if spec.get("watch"):
        spec["watch_program"] = WATCH_SCRIPT.read_text()
    proc = sshconf.run(
        root,
        f"python3 -c {shlex.quote(script)}",
        input=json.dumps(spec),
        timeout=timeout,
        late=f"setting up the store {root.host} did not finish",
    )
    if proc.returncode != 0:
        raise PhoenixError(
            f"setting up the store {root.host} failed: {sshconf.last_line(proc.stderr)}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])["changed"]


@contextlib.contextmanager
def forge_channel(settings: Mapping[str, Any]) -> Iterator[Target]:
    """The forge's own way into the store, on the operator's machine: the backup_ssh_key
    secret (which the deploy puts on the forge) in a 0600 file that lives only meanwhile,
    and the store's pinned host key."""
    repository = str(settings.get("backup_repository") or "")
    sshconf.sftp_parts(repository)  # an address that is not one: say so before the secret
    key = read_secret("backup_ssh_key", folder=settings.get("secrets_dir"))
    with tempfile.TemporaryDirectory(prefix="phoenix-forge-key-") as tmp:  # 0700
        path = os.path.join(tmp, "id_backup")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key.strip() + "\n")
        known = Path(tmp) / "known_hosts"
        known.write_text(
            "".join(line + "\n" for line in known_hosts_lines(settings.get("backup_known_hosts")))
        )
        yield sshconf.sftp_target(
            repository,
            key=Path(path),
            known_hosts=known,
            connect_timeout=int(settings.get("backup_connect_timeout") or 10),
        )
