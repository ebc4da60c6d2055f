"""The backup's Gitea version against the release this deploy installs (phoenix/forge/
versions.py): one operation on the staged backup, before Gitea is stopped or its data touched."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import DeployError
from pyinfra.operations import server

from phoenix.errors import PhoenixError
from phoenix.forge import versions

# The host data this module reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = ("gitea_migration_seconds", "gitea_start_timeout", "gitea_version")


def check_backup_version(db_path: str, *, label: str) -> None:
    """A database newer than gitea_version's (or older than Gitea migrates) refuses the restore
    in one line; an older one gets the start timeout its migrations need."""
    data = host.data
    try:
        command = versions.guard_command(
            db_path,
            gitea_version=str(data.gitea_version),
            base=int(data.gitea_start_timeout),
            per_migration=int(data.gitea_migration_seconds),
            where=f"{host.name}: {label}",
        )
    except PhoenixError as exc:
        raise DeployError(f"{host.name}: {exc}") from None
    server.shell(
        name=f"Check the backup's Gitea version against Gitea {data.gitea_version}, its start "
        "sized for the migrations",
        commands=[command],
    )
