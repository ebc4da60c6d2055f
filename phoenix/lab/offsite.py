"""The lab's offsite store: a droplet that keeps the forge's restic repository, append-only.

It is made through the lab's DigitalOcean API like any droplet, its host key handed over in
user_data (as phoenix.provision does), so the first connection is already checked. The store's
own side is files/phoenix_offsite_store.py (the same script a production store runs): a `restic`
user whose keys are each pinned to one command, in a root-owned file. The forge's backup key
(also the standby's and the recovery host's) may only run `rclone serve restic --stdio
--append-only` on the repository; the operator's key speaks SFTP (init, prune, repairs).
Retention is the store's own timer (restic forget --prune on the local folder, with the keep-*
policy of group_data), so the forge never needs, nor has, the right to delete. The store's
address and pinned key are recorded in <lab>/offsite/<name>.json, which group_data/lab.py
reads (PHOENIX_LAB_OFFSITE picks the name).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phoenix.backup.replication import account_spec
from phoenix.backup.store import setup_store
from phoenix.backup.store import store_spec as store_spec_for
from phoenix.errors import PhoenixError
from phoenix.lab.config import DEFAULT_OFFSITE, LabConfig
from phoenix.lab.sh import run
from phoenix.secrets import read_secret
from phoenix.sshconf import Target, known_hosts_line, public_half

if TYPE_CHECKING:  # pydo takes most of a second to import, and every lab converge reads
    # this module (group_data/lab.py)
    from phoenix.provision.do import DO

DEFAULT_NAME = DEFAULT_OFFSITE
TAG = "phoenix-offsite"
USER = "restic"
HOME = "/srv/restic"
# Litestream's replicas: an account of their own on the same host, plain SFTP with
# delete rights (Litestream compacts and removes its own LTX files); restic's stays append-only.
REPLICA_USER = "litestream"
REPLICA_HOME = "/srv/litestream"


@dataclass(frozen=True)
class Offsite:
    name: str
    droplet_id: int
    ip: str
    host_public_key: str
    user: str = USER
    path: str = f"{HOME}/forge"
    replica_user: str = REPLICA_USER
    replica_path: str = f"{REPLICA_HOME}/forge"

    @property
    def repository(self) -> str:
        return f"sftp:{self.user}@{self.ip}:{self.path}"

    @property
    def known_hosts(self) -> list[str]:
        return [known_hosts_line(self.ip, self.host_public_key).strip()]

    @property
    def replica_url(self) -> str:
        return f"sftp://{self.replica_user}@{self.ip}:22{self.replica_path}"

    def settings(self) -> dict:
        """The group_data keys that point a forge at this store."""
        return {"backup_repository": self.repository, "backup_known_hosts": self.known_hosts}


def _folder(config: LabConfig) -> Path:
    path = config.state_dir / "offsite"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def record_path(config: LabConfig, name: str = DEFAULT_NAME) -> Path:
    return config.state_dir / "offsite" / f"{name}.json"


def load(config: LabConfig, name: str | None = None) -> Offsite | None:
    """The recorded store `name` (default the config's: PHOENIX_LAB_OFFSITE, then offsite-1),
    or None."""
    path = record_path(config, name or config.offsite)
    if not path.exists():
        return None
    return Offsite(**json.loads(path.read_text()))


def _key_pair(config: LabConfig, secret: str, comment: str) -> Path:
    """An operator secret of the lab that is an SSH key pair (made once)."""
    path = config.state_dir / "secrets" / secret
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path


def backup_key(config: LabConfig) -> Path:
    """The forge's backup key pair, the operator secret `backup_ssh_key` of the lab."""
    return _key_pair(config, "backup_ssh_key", "phoenix-forge-backup")


def replica_key(config: LabConfig) -> Path:
    """The forge's key on the replica account, the operator secret `litestream_ssh_key`."""
    return _key_pair(config, "litestream_ssh_key", "phoenix-forge-litestream")


def replica_spec(offsite: Offsite, config: LabConfig) -> dict:
    """files/phoenix_offsite_store.py's spec of the replica account (phoenix.replication)."""
    return account_spec(offsite.replica_url, public_half(replica_key(config)).read_text())


def _host_key(config: LabConfig, name: str) -> tuple[str, str]:
    private = _folder(config) / f"{name}.host_ed25519"
    if not private.exists():
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"{name}-host",
                "-f",
                str(private),
            ]
        )
    return private.read_text(), public_half(private).read_text()


def root_target(config: LabConfig, offsite: Offsite) -> Target:
    """The store's root over SSH, as the operator, its host key pinned."""
    known = _folder(config) / f"{offsite.name}.known_hosts"
    known.write_text("".join(line + "\n" for line in offsite.known_hosts))
    return Target(host=offsite.ip, key=config.ssh_key, known_hosts=known)


def store_spec(
    config: LabConfig, offsite: Offsite, settings: Mapping[str, Any] | None = None
) -> dict:
    """The spec of files/phoenix_offsite_store.py for this store: the lab's forge key, the lab
    operator's key, the lab's restic password, the keep-* policy of `settings` (default:
    group_data for the lab)."""
    if settings is None:
        from phoenix.settings import load

        settings = load("lab")
    return store_spec_for(
        {**settings, **offsite.settings()},
        forge_key=public_half(backup_key(config)).read_text(),
        operator_key=public_half(config.ssh_key).read_text(),
        password=read_secret("restic_password", folder=str(config.state_dir / "secrets")),
    )


def ensure(
    config: LabConfig,
    do: DO,
    *,
    name: str = DEFAULT_NAME,
    path: str | None = None,
    settings: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Offsite:
    """Find or create the store `name` and make it an append-only store with its own
    retention (files/phoenix_offsite_store.py); idempotent."""
    if not name.startswith("offsite-"):
        raise PhoenixError(f"an offsite store's name starts with offsite- (not {name!r})")
    from phoenix.provision.do import public_ip  # imported here: pydo takes most of a second
    from phoenix.provision.droplet import user_data, wait_ssh

    private, public = _host_key(config, name)
    found = [d for d in do.droplets(tag=TAG) if d["name"] == name]
    if len(found) > 1:
        raise PhoenixError(f"more than one lab droplet is named {name}; destroy the extra ones")
    if found:
        droplet = found[0]
    else:
        fingerprint = do.ensure_key("phoenix-lab-operator", public_half(config.ssh_key).read_text())
        progress(f"creating the offsite store {name}")
        droplet = do.create(
            {
                "name": name,
                "region": "nyc1",
                "size": "s-1vcpu-1gb",
                "image": "debian-12-x64",
                "ssh_keys": [fingerprint],
                "tags": ["phoenix-test", TAG],
                "user_data": user_data(private, public),
            }
        )
    droplet = do.wait_active(droplet["id"], timeout=240)  # cloud-init on a loaded machine
    ip = public_ip(droplet)
    if ip is None:
        raise PhoenixError(f"the offsite store {name} is active without a public address")
    offsite = Offsite(
        name=name,
        droplet_id=droplet["id"],
        ip=ip,
        host_public_key=public.strip(),
        path=path or f"{HOME}/forge",
    )
    target = root_target(config, offsite)
    wait_ssh(target, timeout=120, progress=progress)
    try:
        # The replica account first: each run reloads sshd when its drop-in is new, and the
        # restic run's later steps (retention units) leave it time before anyone connects.
        setup_store(target, replica_spec(offsite, config), timeout=600)
        setup_store(target, store_spec(config, offsite, settings), timeout=600)
    except PhoenixError as exc:
        raise PhoenixError(f"the offsite store {name}: {exc}") from None
    record = record_path(config, name)
    _folder(config)
    record.write_text(json.dumps(asdict(offsite), indent=2, sort_keys=True) + "\n")
    return offsite


def destroy(config: LabConfig, do: DO, offsite: Offsite) -> None:
    """Destroy the store's droplet (its repository with it) and forget its record."""
    if do.get(offsite.droplet_id) is not None:
        do.destroy(offsite.droplet_id)
    forget(config, offsite)


def forget(config: LabConfig, offsite: Offsite) -> None:
    """Drop the store's record and keys (its droplet is gone or going)."""
    record_path(config, offsite.name).unlink(missing_ok=True)
    for suffix in (".known_hosts", ".host_ed25519", ".host_ed25519.pub"):
        (_folder(config) / f"{offsite.name}{suffix}").unlink(missing_ok=True)
