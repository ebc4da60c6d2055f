"""Backups that survive the VPS: the runbook's unversioned backup_databases.sh as
code. files/phoenix_backup.py runs hourly from a systemd timer and sends a sealed, consistent copy
of the forge to the offsite restic repository `backup_repository`.

Its restic line (the program, its configuration and secrets: install_job) is the restore's way
to the store too; the restore itself is tasks/restore.py's.
"""

from __future__ import annotations

import io
import json
import posixpath
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.facts.files import File
from pyinfra.facts.server import Hostname
from pyinfra.operations import apt, files, server

from phoenix.backup import replication, store
from phoenix.errors import PhoenixError
from phoenix.secrets import optional_secret, read_secret
from phoenix.sshconf import sftp_target
from phoenix.state import BACKUP_TIMERS
from tasks._ops import secret_file
from tasks._units import run_unit
from tasks.role import promoting, role

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "backup_cache_dir",
    "backup_config_dir",
    "backup_connect_timeout",
    "backup_gitea_exclude",
    "backup_host",
    "backup_job_path",
    "backup_keep_daily",
    "backup_keep_hourly",
    "backup_keep_weekly",
    "backup_known_hosts",
    "backup_paths",
    "backup_randomized_delay",
    "backup_repository",
    "backup_schedule",
    "backup_skip",
    "backup_staging_dir",
    "backup_status_file",
    "backup_tag",
    "backup_timeout",
    "backup_timer_enabled",
    "gitea_config_dir",
    "gitea_db_path",
    "gitea_repo_root",
    "gitea_version",
    "gitea_work_dir",
    "hermes_root",
    "https_state_dir",
    "restore_verifier_path",
    "secrets_dir",
    "ssh_host_keys",
    "standby_prestage_dir",
    "standby_warm",
    "unit_hardening",
    # the repository snapshots
    "backup_repo_staging_dir",
    "backup_repo_status_file",
    "frequent_snapshot_interval",
    "frequent_snapshot_run_budget",
    # a snapshot dated past now + this is never the newest (prestage, newer repositories)
    "backup_future_tolerance",
    "backup_disk_reserve_mib",
)

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
FILES = REPO / "files"
UNIT_SETTINGS = ("backup_schedule", "backup_randomized_delay", "backup_timeout", "backup_job_path")


def _secret(name: str) -> str:
    try:
        return read_secret(name, folder=host.data.secrets_dir)
    except PhoenixError as exc:
        raise DeployError(str(exc)) from None


def _paths() -> dict[str, str]:
    folder = host.data.backup_config_dir
    return {
        name: posixpath.join(folder, name)
        for name in (
            "config.json",
            "password",
            "id_backup",
            "known_hosts",
            "credentials.env",
            "alert_url",
        )
    }


def config_path() -> str:
    """Where the job's config.json is on the host (the standby refresh reads it too)."""
    return _paths()["config.json"]


def write_paths() -> list[str]:
    """The only folders the job's units may write (ProtectSystem=strict): made here, since
    the sandboxed job could not create them itself."""
    data = host.data
    return sorted(
        {
            posixpath.dirname(data.backup_staging_dir.rstrip("/")),
            posixpath.dirname(data.backup_status_file),
            data.backup_cache_dir,
        }
    )


def _database_folders(gitea: dict | None) -> list[str]:
    """The folders of the SQLite databases the job copies online: Gitea's and the houses'."""
    data = host.data
    db_path = (gitea or {}).get("db_path") or data.gitea_db_path
    folders = [posixpath.dirname(db_path)]
    if data.get("hermes_root"):
        folders.append(data.hermes_root)
    return folders


def saved_paths(data: Any) -> list[str]:
    """The folders a snapshot holds besides Gitea's, and a restore puts back: backup_paths,
    and Caddy's home (https_state_dir) added here rather than listed there, so that editing
    backup_paths cannot leave a recovered forge without its certificate. `data`: host.data
    or a settings dict (phoenix.settings.load)."""
    paths = [p.rstrip("/") for p in data.get("backup_paths") or []]
    state = data.get("https_state_dir")
    if state and state.rstrip("/") not in paths:
        paths.append(state.rstrip("/"))
    return paths


def host_key_files(data: Any) -> list[str]:
    """sshd's host keys, both halves: in every snapshot (root's alone, as on the host), so a
    recovered forge can answer with the key its users' known_hosts hold (tasks/restore.py)."""
    return [path + suffix for path in data.get("ssh_host_keys") or [] for suffix in ("", ".pub")]


def _job_config(
    paths: dict[str, str], gitea: dict | None = None, extra_paths: list[str] | None = None
) -> dict:
    """What files/phoenix_backup.py reads: no secret in it, only where the secrets are. `gitea`:
    where the forge keeps its files, when it is not where Phoenix puts them (an adopted one)."""
    data = host.data
    repository = data.backup_repository
    config = {
        "repository": repository,
        "password_file": paths["password"],
        "host": data.backup_host or host.get_fact(Hostname),
        "tag": data.backup_tag,
        "future_tolerance": data.backup_future_tolerance,
        "keep": {
            "hourly": int(data.backup_keep_hourly),
            "daily": int(data.backup_keep_daily),
            "weekly": int(data.backup_keep_weekly),
        },
        "gitea": gitea
        or {
            "db_path": data.gitea_db_path,
            "repo_root": data.gitea_repo_root,
            "custom_dir": posixpath.join(data.gitea_work_dir, "custom"),
            "data_dir": posixpath.join(data.gitea_work_dir, "data"),
            "app_ini": posixpath.join(data.gitea_config_dir, "app.ini"),
            "version": data.gitea_version,
        },
        "paths": saved_paths(data) + list(extra_paths or []) + host_key_files(data),
        "skip": list(data.backup_skip),
        "staging_dir": data.backup_staging_dir,
        "staging_reserve_mib": data.backup_disk_reserve_mib,
        "status_file": data.backup_status_file,
        "cache_dir": data.backup_cache_dir,
        # Every file but the databases, every frequent_snapshot_interval seconds.
        "repo_tag": store.repo_tag(data.get("backup_tag") or "phoenix"),
        "repo_staging_dir": data.backup_repo_staging_dir,
        "repo_status_file": data.backup_repo_status_file,
        "repo_run_budget": data.frequent_snapshot_run_budget,
        "repo_timer_accuracy": replication.REPO_TIMER_ACCURACY,
        "verifier": data.restore_verifier_path,
        "prestage_dir": data.standby_prestage_dir if data.standby_warm else None,
    }
    config["gitea"] = {**config["gitea"], "exclude": list(data.backup_gitea_exclude)}
    if repository.startswith("sftp:"):
        try:
            target = sftp_target(
                repository,
                key=Path(paths["id_backup"]),
                known_hosts=Path(paths["known_hosts"]),
                connect_timeout=data.backup_connect_timeout,
            )
        except PhoenixError as exc:
            raise DeployError(str(exc)) from None
        append_only = store.append_only(data)
        config.update(store.channel_config(repository, target, append_only=append_only))
        if append_only:  # retention is the store's (or the operator's): this key cannot delete
            del config["keep"]
    elif repository.startswith("s3:"):
        config["credentials_file"] = paths["credentials.env"]
    return config


def install_job(gitea: dict | None = None, extra_paths: list[str] | None = None) -> None:
    """The job, its configuration and its secrets: what both the timer and a restore (its way
    to the store) need. Operations: call inside a @deploy."""
    data = host.data
    paths = _paths()
    config = _job_config(paths, gitea, extra_paths)
    # On a forge Phoenix did not build (adopt), apt-daily may hold the lock: wait, as base does
    apt.packages(
        name="Ensure restic is installed",
        packages=["restic"],
        extra_install_args="-o DPkg::Lock::Timeout=180",
    )
    files.directory(
        name="Ensure the backup job's folder exists, root's alone",
        path=data.backup_config_dir,
        user="root",
        group="root",
        mode="0700",
    )
    files.put(
        name="Ensure the backup job is installed",
        src=str(FILES / "phoenix_backup.py"),
        dest=data.backup_job_path,
        user="root",
        group="root",
        mode="0755",
    )
    files.put(
        name="Ensure the backup verifier is installed",
        src=str(FILES / "phoenix_backup_verify.py"),
        dest=data.restore_verifier_path,
        user="root",
        group="root",
        mode="0755",
    )
    secret_file(
        name="Ensure the restic repository password is in place (0600)",
        content=_secret("restic_password") + "\n",
        dest=paths["password"],
        user="root",
        group="root",
        mode="0600",
    )
    if "sftp_command" in config or "rclone_program" in config:  # the store over ssh
        known = store.known_hosts_lines(data.backup_known_hosts)
        if not known:
            raise DeployError(
                "backup_known_hosts is empty: pin the store's host key; Phoenix "
                "never trusts a host key on first use"
            )
        secret_file(
            name="Ensure the forge's SSH key for the backup store is in place (0600)",
            content=_secret("backup_ssh_key").strip() + "\n",
            dest=paths["id_backup"],
            user="root",
            group="root",
            mode="0600",
        )
        files.put(
            name="Ensure the backup store's host key is pinned",
            src=io.StringIO("".join(line + "\n" for line in known)),
            dest=paths["known_hosts"],
            user="root",
            group="root",
            mode="0644",
        )
    try:  # the operator's alert URL: pinged after each run (files/phoenix_backup.py)
        alert = optional_secret("alert_url", folder=data.secrets_dir)
    except PhoenixError as exc:
        raise DeployError(str(exc)) from None
    if alert:
        secret_file(
            name="Ensure the operator's alert URL is in place (0600)",
            content=alert + "\n",
            dest=paths["alert_url"],
            user="root",
            group="root",
            mode="0600",
        )
        config["alert_url_file"] = paths["alert_url"]
    if "credentials_file" in config:
        content = (
            f"AWS_ACCESS_KEY_ID={_secret('backup_s3_access_key_id')}\n"
            f"AWS_SECRET_ACCESS_KEY={_secret('backup_s3_secret_access_key')}\n"
        )
        secret_file(
            name="Ensure the S3 credentials of the backup are in place (0600)",
            content=content,
            dest=paths["credentials.env"],
            user="root",
            group="root",
            mode="0600",
        )
    files.put(
        name="Ensure the backup job's configuration is current",
        src=io.StringIO(json.dumps(config, indent=1, sort_keys=True) + "\n"),
        dest=paths["config.json"],
        user="root",
        group="root",
        mode="0600",
    )


def repo_snapshot_job(data: Any) -> tuple[str, str, str, str, str] | None:
    """Every file but the databases, every few minutes: (unit, command, description,
    timer line, schedule), None when frequent_snapshot_interval is 0. OnUnitActiveSec= counts
    from the service's last start, also for a oneshot still running (systemd's
    src/core/timer.c, timer_enter_waiting(): base = MAX(trigger->inactive_exit_timestamp,
    last_trigger); inactive_exit is when the service left "inactive", i.e. started; seen on a
    lab droplet too). So the period is what phoenix.backup.replication.
    repo_snapshot_period gives: interval - budget."""
    settings = {
        key: data.get(key) for key in ("frequent_snapshot_interval", "frequent_snapshot_run_budget")
    }
    try:
        period = replication.repo_snapshot_period(settings)
    except PhoenixError as exc:
        raise DeployError(str(exc)) from None
    if period is None:
        return None
    return (
        BACKUP_TIMERS[1],
        "repositories",
        "Phoenix snapshot of the forge's files between full snapshots",
        f"OnUnitActiveSec={period}s",
        f"every {period} s (at most {settings['frequent_snapshot_interval']} s of writes lost)",
    )


@deploy("Back the forge up offsite, hourly")
def configure_backups(gitea: dict | None = None, extra_paths: list[str] | None = None) -> None:
    """`gitea`: the forge's own paths (db_path, repo_root, custom_dir, data_dir, app_ini,
    version) for a forge Phoenix did not build (tasks/adopt.py), else Phoenix's; `extra_paths`:
    folders saved besides backup_paths (its storage outside the data folder)."""
    data = host.data
    if not data.backup_repository:
        host.noop("backup_repository is not set: this host has no backup job")
        return
    install_job(gitea, extra_paths)
    settings = {key: data.get(key) for key in UNIT_SETTINGS}
    config_path = _paths()["config.json"]
    # The unit may also write the folders of the databases it copies (not made here: they
    # are gitea's and hermes's): SQLite's online backup of a WAL database (Gitea's too, for
    # Litestream) must create the -shm beside it when no program has it open (a stopped Gitea).
    # "-": a forge without them (an adopted one has no Hermes) would otherwise fail the
    # unit's start (226/NAMESPACE).
    for path in write_paths():
        files.directory(
            name=f"Ensure {path} exists for the backup job, root's alone",
            path=path,
            user="root",
            group="root",
            mode="0700",
        )
    jobs = [
        (
            BACKUP_TIMERS[0],
            "run",
            "Phoenix backup of the forge to its offsite restic repository",
            f"OnCalendar={data.backup_schedule}",
            data.backup_schedule,
        )
    ]
    if (repo_job := repo_snapshot_job(data)) is not None:
        jobs.append(repo_job)
    # One primary: only the forge backs up. A recovery host's timer starts at cutover
    # (phoenix.cutover.traffic.activate), a standby's at its promotion.
    on = bool(data.backup_timer_enabled) and role() == "primary"
    for unit, command, description, when, schedule in jobs:
        service = files.template(
            name=f"Ensure the {unit} job's unit is current",
            src=str(TEMPLATES / "phoenix-backup.service.j2"),
            dest=f"/etc/systemd/system/{unit}.service",
            user="root",
            group="root",
            mode="0644",
            config_path=config_path,
            job_command=command,
            description=description,
            backup_write_paths=write_paths() + [f"-{path}" for path in _database_folders(gitea)],
            unit_hardening=data.unit_hardening,
            **settings,
        )
        timer = files.template(
            name=f"Ensure the {unit} timer's unit is current",
            src=str(TEMPLATES / "phoenix-backup.timer.j2"),
            dest=f"/etc/systemd/system/{unit}.timer",
            user="root",
            group="root",
            mode="0644",
            description=description,
            when=when,
            schedule=schedule,
            unit=unit,
            accuracy=replication.REPO_TIMER_ACCURACY,
            **settings,
        )
        run_unit(
            f"{unit}.timer",
            files=[service, timer],
            also=[f"{unit}.service"],
            restart_for=[timer],
            running=on,
            what=f"{unit} units",
            running_name=f"Ensure {unit} runs {schedule}"
            if on
            else f"Ensure {unit} does not run yet ({role()}: not the forge)",
            restart_name=f"Restart the {unit} timer for its new schedule",
        )
    # A primary is protected from its first moment (a forge adopted or built): its first full
    # snapshot now, not at the timer's next hour, or a disaster would recover the previous
    # primary's data. A promotion's comes once users are served (phoenix recover's protect).
    if on and not promoting() and not host.get_fact(File, path=data.backup_status_file):
        server.shell(
            name="Ensure this primary has a full snapshot of its own (its first)",
            commands=["systemctl start phoenix-backup.service"],
        )
