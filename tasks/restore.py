"""Runbook step 4, restore half: Gitea's data from one backup, resolved once, verified before
anything is stopped or touched, restored once, and never over data without being asked.

The whole restore is this task and one host program, files/phoenix_restore.py (phoenix-restore):

restore_source (phoenix/backup/sources.py) is resolved on the operator's side into a sealed Gitea
folder: a restic snapshot, or a Phoenix archive (what an import of a `gitea dump` zip or of the
runbook's backups becomes). It is staged on the host in a folder named by its id (a snapshot by
`phoenix-restore stage`, through the backup job's restic line) and checked there by
files/phoenix_backup_verify.py (every checksum, PRAGMA integrity_check on a copy of gitea.db).
Then `phoenix-restore apply` sets aside what is there and puts the backup in place; a restic
snapshot is brought to the restore's point (phoenix/backup/pitr.py replay_until) by the
replicas (`replay`) and the repository snapshots (`repositories`, which also makes Gitea's
branch table match the git data): restic:latest to their newest, restic:@TIME to TIME,
restic:<id> to that snapshot's own time (a rollback to before an incident must not replay it);
Gitea's hooks and keys are regenerated. The forge's SSH host keys in the backup are checked and
staged (`host-keys`) for `phoenix recover` to switch sshd to after the deploy. The `pending`
marker holds the resolution while a
restore is under way, so a re-run after a cut-off finishes the same backup (never a newer
`restic:latest`); the `restored` marker holds the manifest's sha256, so a second converge
restores nothing.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, QuoteString, StringCommand, deploy
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd

from facts.markers import Marker
from phoenix.backup import pitr, sources
from phoenix.backup.sources import Resolved
from phoenix.errors import PhoenixError
from tasks import backups, litestream
from tasks._versions import check_backup_version
from tasks.backups import saved_paths
from tasks.role import promoting

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "backup_paths",
    "gitea_binary_path",
    "gitea_config_dir",
    "gitea_db_path",
    "gitea_group",
    "gitea_http_addr",
    "gitea_http_port",
    "gitea_ready_timeout",
    "gitea_repo_root",
    "gitea_start_requires_database",
    "gitea_user",
    "gitea_work_dir",
    "restore_aside_dir",
    "restore_keep_days",
    "restore_force",
    "restore_host_keys",
    "restore_restart_units",
    "restore_source",
    "restore_staging_dir",
    "restore_tool_path",
    "restore_verifier_path",
    "wizard_names",
    "backup_future_tolerance",
    "backup_job_path",
    "gitea_repo_root",
    "litestream_restore_from",
    "litestream_restore_timeout",
    "litestream_restore_timestamp",
    "restore_newer_repositories",
    "ssh_host_keys",
)

FILES = Path(__file__).resolve().parent.parent / "files"
# Installed by earlier deploys, now part of phoenix-restore: removed so that no host keeps a
# second, stale way of restoring.
RETIRED = ("/usr/local/sbin/phoenix-litestream-restore",)
q = QuoteString
logger = logging.getLogger("pyinfra")

_RESOLVED: dict[tuple[str, str], Resolved] = {}


def _markers() -> tuple[str, str]:
    state_dir = host.data.restore_staging_dir
    return posixpath.join(state_dir, "pending"), posixpath.join(state_dir, "restored")


def resolved_source() -> Resolved | None:
    """restore_source resolved once per host and source (phoenix.backup.sources.resolve), so that
    the Gitea task (app.ini) and the restore agree on one backup; a restore of the same source cut
    off on the host is finished with the backup it started with."""
    source = host.data.restore_source
    if not source:
        return None
    key = (host.name, str(source))
    if key not in _RESOLVED:
        pending = Resolved.from_marker(host.get_fact(Marker, path=_markers()[0]))
        try:
            _RESOLVED[key] = sources.resolve(str(source), host.data, pending=pending)
        except PhoenixError as exc:
            raise DeployError(f"restore_source {source}: {exc}") from None
    return _RESOLVED[key]


def backup_app_ini() -> tuple[str, str] | None:
    """(label, text) of the app.ini in restore_source's Gitea folder; None without a source,
    or for a backup that holds none (the runbook's own backups: gitea.db only)."""
    resolved = resolved_source()
    if resolved is None:
        return None
    try:
        text = sources.app_ini(resolved, host.data)
    except PhoenixError as exc:
        raise DeployError(f"restore_source {resolved.requested}: {exc}") from None
    return (resolved.label, text) if text is not None else None


def _restore_config() -> str:
    data = host.data
    return (
        json.dumps(
            {
                "db_path": data.gitea_db_path,
                "repo_root": data.gitea_repo_root,
                "custom_dir": posixpath.join(data.gitea_work_dir, "custom"),
                "data_dir": posixpath.join(data.gitea_work_dir, "data"),
                "aside_dir": data.restore_aside_dir,
                "user": data.gitea_user,
                "group": data.gitea_group,
                "paths": saved_paths(data),  # backup_paths and Caddy's home
                "gitea_binary": data.gitea_binary_path,
                "app_ini": posixpath.join(data.gitea_config_dir, "app.ini"),
                "work_dir": data.gitea_work_dir,
                # the store, through the backup job's restic line
                "backup_job": data.backup_job_path,
                "backup_config": backups.config_path(),
                "cut_file": posixpath.join(data.restore_staging_dir, "cut-after"),
                "staging_dir": data.restore_staging_dir,
                "host_keys": list(data.ssh_host_keys or []),
            },
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )


def _wait_for_api(url: str, timeout: int) -> StringCommand:
    failed = (
        f"Gitea did not answer 200 on {url} within {timeout} s after the restore; "
        "its last log lines follow (journalctl -u gitea)"
    )
    return StringCommand(
        "for",
        "i",
        "in",
        f"$(seq {int(timeout)});",
        "do",
        "[",
        '"$(curl',
        "-s",
        "-o",
        "/dev/null",
        "-w",
        q("%{http_code}"),
        q(url),
        ')"',
        "=",
        "200",
        "]",
        "&&",
        "exit",
        "0;",
        "sleep",
        "1;",
        "done;",
        "echo",
        q(failed),
        ">&2;",
        "journalctl",
        "-u",
        "gitea",
        "-n",
        "20",
        "--no-pager",
        ">&2;",
        "exit",
        "1",
    )


class _Due:
    """A restore that is due on this host: the backup, where it is staged, and for a restic
    snapshot its row and the point the replay stops at (pitr.replay_until; None: the
    replicas' and the repository snapshots' newest)."""

    def __init__(self, resolved: Resolved) -> None:
        self.resolved = resolved
        self.stage = posixpath.join(host.data.restore_staging_dir, resolved.stage_id)
        self.unpacked = posixpath.join(self.stage, "unpacked")
        self.snapshot: dict | None = None
        self.until: str | None = None
        if resolved.kind == "restic":
            row = _snapshot_row(resolved.ref)
            self.snapshot = {"id": resolved.ref, "time": row["time"]}
            self.until = pitr.replay_until(
                resolved.requested, row["time"], host.data.litestream_restore_timestamp
            )


_DUE: dict[str, _Due | str | None] = {}


def _due() -> _Due | str | None:
    """The restore due on this host, decided once per host from restore_source and the
    host's markers: a `_Due`, or why none is (a line to report), or None without a source."""
    if host.name in _DUE:
        return _DUE[host.name]
    data = host.data
    has_database = bool(host.get_fact(File, path=data.gitea_db_path))
    resolved = resolved_source()
    if resolved is None:
        if data.gitea_start_requires_database and not has_database:
            raise DeployError(
                "restore_source is not set and the host has no Gitea database, "
                "so Gitea would not start: set restore_source (restic:latest, a "
                "backup archive, a gitea dump .zip, the runbook's backup), or "
                "gitea_start_requires_database = False for a new forge"
            )
        _DUE[host.name] = None
        return None
    label = resolved.label
    pending_marker, restored_marker = _markers()
    restored = host.get_fact(Marker, path=restored_marker)
    pending_line = host.get_fact(Marker, path=pending_marker)
    pending = Resolved.from_marker(pending_line)
    resuming = pending is not None and pending.manifest_sha == resolved.manifest_sha
    due: _Due | str
    # A promotion restores even the snapshot the standby holds already (its warm
    # copy, so folders only move): the replicas and the repository snapshots are newer.
    if (
        has_database
        and restored == resolved.manifest_sha
        and pending_line is None
        and not promoting()
    ):
        due = f"Gitea data is already restored from {label}"
    elif pending_line is not None and not resuming and not data.restore_force:
        was = f"{pending.label} ({pending.requested})" if pending else "another backup"
        finish = (
            "; that source now names another backup"
            if pending and pending.requested == resolved.requested
            else f": finish it with restore_source={pending.requested if pending else '…'}"
        )
        raise DeployError(
            f"a restore of {was} was cut off on {host.name}{finish}, or set restore_force to "
            f"restore {resolved.label} instead (what is there is set aside first)"
        )
    elif has_database and not data.restore_force and not resuming:
        due = (
            f"the host has Gitea data: not restoring {label} over it (set restore_force to "
            "set that data aside and restore)"
        )
    else:
        due = _Due(resolved)
    _DUE[host.name] = due
    return due


@deploy("Stage and verify the backup before anything of Gitea is touched")
def verify_backup() -> None:
    """Runs before Gitea is installed or configured: the backup's app.ini gives Gitea its
    identity, so a backup that fails verification must stop the deploy before that."""
    data = host.data
    state_dir = data.restore_staging_dir
    files.put(
        name="Ensure the backup verifier is installed",
        src=str(FILES / "phoenix_backup_verify.py"),
        dest=data.restore_verifier_path,
        user="root",
        group="root",
        mode="0755",
    )
    files.put(
        name="Ensure the restore tool is installed",
        src=str(FILES / "phoenix_restore.py"),
        dest=data.restore_tool_path,
        user="root",
        group="root",
        mode="0755",
    )
    for path in RETIRED:
        files.file(
            name=f"Ensure the retired {path} is gone (phoenix-restore does it)",
            path=path,
            present=False,
        )
    files.directory(
        name="Ensure the restore's staging folder exists, root's alone",
        path=state_dir,
        user="root",
        group="root",
        mode="0700",
    )
    files.put(
        name="Ensure the restore tool's configuration is current",
        src=io.StringIO(_restore_config()),
        dest=posixpath.join(state_dir, "config.json"),
        user="root",
        group="root",
        mode="0600",
    )
    due = _due()
    if data.restore_keep_days is not None:  # else what a restore set aside stays for ever
        keep: list[str | QuoteString] = ["--keep-days", q(str(data.restore_keep_days))]
        if isinstance(due, _Due):
            keep += ["--current", q(due.resolved.stage_id)]
        server.shell(
            name=f"Remove what restores set aside or staged over {data.restore_keep_days} days ago",
            commands=[_tool("prune", *keep)],
            # asked when the op runs (the tool is installed by then): a converge with nothing
            # past its days changes nothing
            _if=lambda: bool(_prune_due(keep)),
        )
    if due is None:
        host.noop("no restore_source: nothing to restore")
        return
    if isinstance(due, str):
        host.noop(due)
        return
    resolved = due.resolved
    if resolved.lacks:
        logger.warning(f"[{host.name}] {resolved.label} lacks: " + "; ".join(resolved.lacks))
    tolerance = float(data.backup_future_tolerance or 30)
    if due.snapshot is not None and pitr.future([due.snapshot], tolerance):
        # The forge wrote that time, on the clock its replicas and repository snapshots
        # share: as a point it keeps out what came after the snapshot all the same.
        logger.warning(
            f"[{host.name}] snapshot {resolved.ref[:8]} claims {due.snapshot['time']}, later "
            f"than now + {tolerance:g} s (the forge's clock?): the restore's point is "
            f"{due.until or 'the newest'}"
        )
    files.directory(
        name=f"Ensure the staging folder of backup {resolved.stage_id[:12]} exists, root's alone",
        path=due.stage,
        user="root",
        group="root",
        mode="0700",
    )
    if resolved.kind == "restic":
        _stage_snapshot(resolved.ref, due.unpacked)
    else:
        archive, unpacked = posixpath.join(due.stage, "backup.tar.gz"), due.unpacked
        files.put(
            name=f"Ensure the backup {Path(resolved.ref).name} is staged on the host",
            src=resolved.ref,
            dest=archive,
            user="root",
            group="root",
            mode="0600",
        )
        server.shell(  # the restore itself is gated: this runs only when a restore is due
            name="Unpack the staged backup",
            commands=[
                StringCommand(
                    "rm",
                    "-rf",
                    q(unpacked),
                    q(unpacked + ".tmp"),
                    "&&",
                    "mkdir",
                    q(unpacked + ".tmp"),
                    "&&",
                    "tar",
                    "-xzf",
                    q(archive),
                    "-C",
                    q(unpacked + ".tmp"),
                    "&&",
                    "mv",
                    q(unpacked + ".tmp"),
                    q(unpacked),
                )
            ],
        )
    refused = (
        f"the backup {resolved.requested} ({resolved.label}) failed verification on "
        f"{host.name}: Gitea was not stopped and its data was not touched; use a sound "
        "backup"
    )
    server.shell(
        name="Verify the backup (checksums, integrity_check) before touching Gitea",
        commands=[
            StringCommand(
                q(data.restore_verifier_path),
                q(due.unpacked),
                ">",
                q(posixpath.join(due.stage, "verified.json")),
                "||",
                "{",
                "echo",
                q(refused),
                ">&2;",
                "exit",
                "2;",
                "}",
            )
        ],
    )
    check_backup_version(posixpath.join(due.unpacked, "gitea.db"), label=resolved.label)
    _stage_host_keys(due)


def _stage_host_keys(due: _Due) -> None:
    """The backup's SSH host keys checked and staged (`host-keys`), for `phoenix recover` to
    make them the droplet's over its pinned session (phoenix/provision/droplet.py
    take_backup_host_keys); restore_host_keys False: only the public halves, to be named."""
    data = host.data
    public_only = not data.restore_host_keys
    refused = (
        f"the SSH host keys in {due.resolved.label} are not sound (above): nothing was "
        "touched; recover with --new-host-keys (restore_host_keys=False) to keep the "
        "droplet's new ones"
    )
    server.shell(
        name="Check the backup's SSH host keys and stage them for the switch"
        + (" (public halves only: new host keys)" if public_only else ""),
        commands=[
            StringCommand(
                _tool(
                    "host-keys",
                    q(due.unpacked),
                    q(posixpath.join(data.restore_staging_dir, "host-keys")),
                    *(["--public-only"] if public_only else []),
                ),
                "||",
                "{",
                "echo",
                q(refused),
                ">&2;",
                "exit",
                "2;",
                "}",
            )
        ],
    )


@deploy("Restore Gitea's data from the backup")
def restore_gitea() -> None:
    """The backup verify_backup staged and verified, put in place (what is there set aside)."""
    due = _due()
    if not isinstance(due, _Due):
        return
    data = host.data
    resolved, stage, label = due.resolved, due.stage, due.resolved.label
    state_dir = data.restore_staging_dir
    pending_marker, restored_marker = _markers()
    reports = {
        "databases": posixpath.join(state_dir, "litestream.json"),
        "repositories": posixpath.join(state_dir, "repositories.json"),
    }
    files.put(
        name=f"Record that the restore of {label} is under way",
        src=io.StringIO(resolved.marker() + "\n"),
        dest=pending_marker,
        mode="0600",
    )
    for kind, report in sorted(reports.items()):  # an earlier restore's would speak for this
        files.file(
            name=f"Clear the last restore's report on its {kind}", path=report, present=False
        )
    server.shell(name="Stop Gitea for the restore", commands=["systemctl stop gitea.service"])
    if resolved.kind == "restic" and data.backup_paths:
        # A snapshot also holds backup_paths (the Hermes state): the houses must not write
        # into it while it is swapped under them; their task starts them again.
        houses = ["hermes-backend.service", *[f"hermes-{w}.service" for w in data.wizard_names]]
        server.shell(
            name="Stop the Hermes houses while their state is restored",
            commands=[StringCommand("systemctl", "stop", *houses, "2>/dev/null", "||", "true")],
        )
    server.shell(
        name="Set the data found on the host aside and put the backup's in place",
        commands=[_tool("apply", q(due.unpacked), ">", q(posixpath.join(stage, "applied.json")))],
    )
    if resolved.kind == "restic":
        # The restore's point (due.until): the newest consistent one for restic:latest, the
        # snapshot's own for restic:<id>. The snapshot's databases are in place (and nothing
        # runs on them yet); each one's Litestream replica, when it is newer and lines up,
        # takes its place.
        _replay_replicas(due, reports["databases"])
        # Every other file from the newest frequent snapshot after the full one (minutes) up
        # to the point, once gitea.db is final: a repository or a file it has no row for is
        # set aside, not served; a row whose file came back is kept.
        _newer_repositories(due, reports["repositories"], reports["databases"])
        for unit in data.restore_restart_units:  # a running one reads its restored folder
            server.shell(
                name=f"Restart {unit} (if it runs) on its restored state",
                commands=[
                    StringCommand(
                        "if",
                        "systemctl",
                        "is-active",
                        "-q",
                        q(unit),
                        ";",
                        "then",
                        "systemctl",
                        "restart",
                        q(unit),
                        ";",
                        "fi",
                    )
                ],
            )
    systemd.service(
        name="Start Gitea on the restored data",
        service="gitea.service",
        running=True,
        restarted=True,
    )
    address = "127.0.0.1" if data.gitea_http_addr in ("0.0.0.0", "::") else data.gitea_http_addr
    server.shell(
        name="Wait for Gitea's API to answer",
        commands=[
            _wait_for_api(
                f"http://{address}:{data.gitea_http_port}/api/v1/version", data.gitea_ready_timeout
            )
        ],
    )
    server.shell(
        name=f"Regenerate Gitea's hooks and keys for this host, as {data.gitea_user}",
        commands=[_tool("regenerate")],
    )
    plan = posixpath.join(state_dir, "restore-plan.json")
    files.put(
        name=f"Ensure the record of what {label} restored is planned",
        src=io.StringIO(
            json.dumps(
                {
                    "source": resolved.requested,
                    "label": label,
                    "origin": resolved.origin,
                    "lacks": list(resolved.lacks),
                    "snapshot": due.snapshot,
                    "until": due.until,
                    "reports": reports,
                },
                sort_keys=True,
            )
            + "\n"
        ),
        dest=plan,
        mode="0600",
    )
    server.shell(
        name=f"Record what {label} lacked and where each kind of data came from",
        commands=[_tool("record", q(plan), q(posixpath.join(state_dir, "restored.json")))],
    )
    files.put(
        name=f"Record that {label} is restored",
        src=io.StringIO(resolved.manifest_sha + "\n"),
        dest=restored_marker,
        mode="0600",
    )
    files.file(name="Clear the under-way record", path=pending_marker, present=False)


# --- the steps of a restic snapshot's restore (called when a restore is due) -------------------

_ROWS: dict[tuple[str, str], dict] = {}


def _snapshot_row(snapshot_id: str) -> dict:
    """restic's row of snapshot `snapshot_id` (its hostname: its replicas' folder; its time:
    the restore's point), asked once per host."""
    from phoenix.backup.restic import restic
    from phoenix.backup.store import store_from_settings

    key = (host.name, snapshot_id)
    if key not in _ROWS:
        try:
            store = store_from_settings(host.data)
            proc = restic(
                store,
                "snapshots",
                "--json",
                snapshot_id,
                what=f"read snapshot {snapshot_id[:8]}",
                timeout=300,
            )
            rows = json.loads(proc.stdout.strip().splitlines()[-1] or "[]")
        except (PhoenixError, ValueError, IndexError) as exc:
            raise DeployError(f"restore: snapshot {snapshot_id[:8]}: {exc}") from None
        if len(rows) != 1 or not rows[0].get("hostname") or not rows[0].get("time"):
            raise DeployError(
                f"restore: no single snapshot {snapshot_id[:8]} with a hostname and a time"
            )
        _ROWS[key] = rows[0]
    return _ROWS[key]


def _prune_due(keep: list[str | QuoteString]) -> list[str]:
    """The folders `phoenix-restore prune` would remove now (none where it is not installed)."""
    data = host.data
    out = host.get_fact(
        Command,
        StringCommand(
            "test ! -x", q(data.restore_tool_path), "||", _tool("prune", *keep, "--dry-run")
        ).get_raw_value(),
    )
    return json.loads(out or "{}").get("due", [])


def _tool(*args: str | QuoteString) -> StringCommand:
    data = host.data
    config = posixpath.join(data.restore_staging_dir, "config.json")
    return StringCommand(q(data.restore_tool_path), "--config", q(config), *args)


def _stage_snapshot(snapshot_id: str, dest: str) -> None:
    """`dest` on the host becomes the Gitea folder of `snapshot_id` (its app.ini and extra
    folders in `dest`.files), from the offsite store through the backup job's restic line
    (installed here: a recovery host has no backup job yet). Stages afresh each time."""
    backups.install_job()
    server.shell(  # the restore itself is gated: this runs only when a restore is due
        name=f"Stage restic snapshot {snapshot_id[:8]} from the offsite store",
        commands=[_tool("stage", q(snapshot_id), q(dest))],
    )


def replay_spec(
    *, source: str, snapshot_time: str, until: str | None, unpacked: str, report: str
) -> dict:
    """What `phoenix-restore replay` reads: each streamed database with the Litestream
    configuration of its replica below `source` (the host that made the snapshot), and the
    restore's point (`until`; None: the replicas' newest)."""
    data = host.data
    dbs = [
        {
            "path": path,
            "name": name,
            "user": stream["user"],
            "config": json.loads(
                litestream.config_text(
                    [(path, name)], source=source, key_path=litestream.key_path()
                )
            ),
        }
        for stream in litestream.streams()
        for path, name in stream["dbs"]
    ]
    return {
        "litestream": litestream.binary(),
        "dbs": dbs,
        "source": source,
        "manifest": posixpath.join(unpacked, "manifest.json"),
        "timestamp": until,
        # restic prints nanoseconds: the program's Python reads microseconds
        "snapshot_time": pitr.parse(snapshot_time).isoformat(),
        "timeout": int(data.litestream_restore_timeout),
        "repo_root": data.gitea_repo_root,
        "app_data": posixpath.join(data.gitea_work_dir, "data"),
        "report": report,
    }


def _replay_replicas(due: _Due, report: str) -> None:
    """Each database brought to its replica's newest consistent point (or its point at
    due.until; one not after the snapshot's own time is the snapshot's copy). Never fails the
    restore for a replica: one that cannot be used leaves the snapshot's copy, and the report
    says why and what that costs."""
    data = host.data
    if not litestream.enabled():
        host.noop("litestream_replica_url is not set: the snapshot's databases stay")
        return
    litestream.install()
    row = _snapshot_row(due.resolved.ref)
    source = data.litestream_restore_from or str(row["hostname"])
    spec = replay_spec(
        source=source,
        snapshot_time=row["time"],
        until=due.until,
        unpacked=due.unpacked,
        report=report,
    )
    spec_path = posixpath.join(data.restore_staging_dir, "litestream-restore.json")
    files.put(
        name="Ensure the replica restore's plan is staged",
        src=io.StringIO(json.dumps(spec, indent=1, sort_keys=True) + "\n"),
        dest=spec_path,
        user="root",
        group="root",
        mode="0600",
    )
    point = f"point at {due.until}" if due.until else "newest point"
    server.shell(  # gated by the restore itself: runs only when a restore is due
        name=f"Bring the databases to their replicas' {point} ({source}'s, Litestream)",
        commands=[_tool("replay", q(spec_path))],
    )


def _newer_repositories(due: _Due, report: str, databases: str) -> None:
    """The repositories and the other files from the newest frequent snapshot after the full
    one (at or before due.until), the full one's copies set aside; then Gitea's branch table
    made to match, and the rows that name files checked against them (the replay's report
    `databases` says whether gitea.db is newer than the full snapshot)."""
    before: list[str | QuoteString] = ["--before", q(due.until)] if due.until else []
    if not host.data.restore_newer_repositories:  # the full snapshot's files stay
        before = ["--full-only"]
    server.shell(
        name="Put the files of the newest frequent snapshot in place (repositories, data, houses)",
        commands=[
            _tool(
                "repositories",
                q(due.resolved.ref),
                "--report",
                q(report),
                "--databases",
                q(databases),
                *before,
            )
        ],
    )
