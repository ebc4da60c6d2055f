"""Runbook step 4, install half: Gitea's user, folders, pinned binary, app.ini and unit.

Gitea is started here only once its database exists (the unit's condition): on a fresh host
the restore task puts the data in place and starts it.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.api.util import get_template
from pyinfra.operations import files, server

from phoenix import dispatch
from phoenix.backup import sources
from phoenix.errors import PhoenixError
from phoenix.forge import appini
from phoenix.secrets import read_secret
from tasks._ops import secret_file, verified_file
from tasks._units import run_unit
from tasks.restore import backup_app_ini, resolved_source

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "dispatch_address_first",
    "dispatch_port_first",
    "dispatch_route",
    "wizard_names",
    "gitea_binary_path",
    "gitea_binary_url",
    "gitea_config_dir",
    "gitea_db_path",
    "gitea_disable_registration",
    "gitea_domain",
    "gitea_group",
    "gitea_home",
    "gitea_http_addr",
    "gitea_http_port",
    "gitea_log_level",
    "gitea_repo_root",
    "gitea_root_url",
    "gitea_sha256",
    "gitea_sqlite_journal_mode",
    "gitea_ssh_port",
    "gitea_start_requires_database",
    "gitea_user",
    "gitea_version",
    "gitea_work_dir",
    "phoenix_state_dir",
    "secrets_dir",
    "unit_hardening",
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SETTINGS = (
    "gitea_user",
    "gitea_group",
    "gitea_home",
    "gitea_work_dir",
    "gitea_config_dir",
    "gitea_binary_path",
    "gitea_db_path",
    "gitea_repo_root",
    "gitea_domain",
    "gitea_root_url",
    "gitea_http_addr",
    "gitea_http_port",
    "gitea_ssh_port",
    "gitea_log_level",
    "gitea_disable_registration",
    "gitea_start_requires_database",
    "gitea_sqlite_journal_mode",
)


def _settings() -> dict:
    return {key: host.data.get(key) for key in (*SETTINGS, "unit_hardening")}


def _operator_secret(name: str) -> str | None:
    try:
        return read_secret(name, folder=host.data.secrets_dir)
    except PhoenixError as exc:
        if "is missing" in str(exc):
            return None
        raise DeployError(str(exc)) from None


def _app_ini() -> str:
    """app.ini rendered here and sent over SFTP only: Phoenix's settings merged over the
    backup's app.ini, the forge's identity (SECRET_KEY, INTERNAL_TOKEN, JWT_SECRET,
    LFS_JWT_SECRET) from the backup, else from the operator's secrets (phoenix/forge/appini.py)."""
    found = backup_app_ini()
    old = appini.parse(found[1]) if found else {}
    resolved = resolved_source()
    try:
        chosen = appini.resolve_identity(
            backup=appini.identity(
                old,
                lambda path: sources.saved_file(resolved, host.data, path) if resolved else None,
            ),
            operator=_operator_secret,
            lfs=appini.lfs_on(old),
            where=found[0] if found else "the backup",
        )
    except PhoenixError as exc:
        raise DeployError(f"{host.name}: {exc}") from None
    text = get_template(str(TEMPLATES / "app.ini.j2")).render(
        **_settings(),
        secret_key=appini.written_secret_key(chosen["gitea_secret_key"]),
        internal_token=chosen["gitea_internal_token"],
        jwt_secret=chosen["gitea_jwt_secret"],
        webhook_allowed_hosts=dispatch.allowed_host_list(
            host.data, appini.value(old, "webhook", "ALLOWED_HOST_LIST") if old else None
        ),
    )
    if not old:
        return text
    merged = appini.merge(appini.parse(text), old)
    if "gitea_lfs_jwt_secret" in chosen and appini.lfs_on(old):
        merged["server"]["LFS_JWT_SECRET"] = chosen["gitea_lfs_jwt_secret"]
    return appini.render(merged, appini.header_of(text))


@deploy("Install Gitea")
def install_gitea() -> None:
    data = host.data
    user, group = data.gitea_user, data.gitea_group
    server.group(name=f"Ensure the {group} group exists", group=group, system=True)
    server.user(
        name=f"Ensure the {user} system user exists (Gitea's RUN_USER)",
        user=user,
        group=group,
        home=data.gitea_home,
        shell="/bin/bash",
        system=True,
        create_home=True,
    )
    for path in (
        data.gitea_work_dir,
        *(posixpath.join(data.gitea_work_dir, sub) for sub in ("custom", "data", "log")),
        data.gitea_repo_root,
    ):
        files.directory(
            name=f"Ensure {path} exists, {user}'s alone",
            path=path,
            user=user,
            group=group,
            mode="0750",
        )
    files.directory(
        name=f"Ensure {data.gitea_config_dir} exists, readable by {group} only",
        path=data.gitea_config_dir,
        user="root",
        group=group,
        mode="0750",
    )

    binary = verified_file(
        name=f"Ensure the Gitea {data.gitea_version} binary is installed, its sha256 checked",
        src=data.gitea_binary_url,
        dest=data.gitea_binary_path,
        sha256=data.gitea_sha256,
        staging_dir=posixpath.join(data.phoenix_state_dir, "downloads"),
        setting="gitea_sha256",
        mode="0755",
    )
    app_ini = secret_file(
        name="Ensure app.ini is current (INSTALL_LOCK, the operator's secrets)",
        content=_app_ini(),
        dest=posixpath.join(data.gitea_config_dir, "app.ini"),
        user="root",
        group=group,
        mode="0640",
    )
    unit = files.template(
        name="Ensure the Gitea unit is current",
        src=str(TEMPLATES / "gitea.service.j2"),
        dest="/etc/systemd/system/gitea.service",
        user="root",
        group="root",
        mode="0644",
        **_settings(),
    )
    run_unit(
        "gitea.service",
        files=[unit],
        restart_for=[binary, app_ini, unit],
        what="Gitea unit",
        running_name="Ensure Gitea is running and enabled",
        restart_name="Restart Gitea for a new binary, app.ini or unit",
    )
