"""Real lab droplets: Debian 12 booted with `systemd-nspawn -b` in their own network namespace.

A droplet is an overlay of the cached image (its own upper layer keeps its disk across power
off/on), an SSH host key of its own (or the one given in user_data, as cloud-init would
install it on DigitalOcean), the creator's authorized keys, and an address on the lab bridge.
Every object is written to the ledger before it is made, so `phoenix lab down` finds it.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from phoenix.lab import image, net, procs
from phoenix.lab import image as lab_image  # `image` is also the DO image slug argument
from phoenix.lab.config import LabConfig
from phoenix.lab.do.drivers import DriverError, Droplet
from phoenix.lab.objects import Ledger
from phoenix.lab.sh import run
from phoenix.poll import poll

BOOT_TIMEOUT = 180.0  # cloud-init's first boot on a loaded 2-core machine
FIRST_DROPLET_HOST = 10  # .10 … .199 for droplets
LAST_DROPLET_HOST = 199  # .200 … .250 are the reserved-IP pool


def wait_ssh(ip: str, timeout: float, *, error: Callable[[], str]) -> None:
    """Until sshd on `ip` says hello; at `timeout`, a PhoenixError of `error()`."""

    def hello() -> bool | None:
        try:
            with socket.create_connection((ip, 22), timeout=0.5) as sock:
                sock.settimeout(2)
                return True if sock.recv(4).startswith(b"SSH-") else None
        except OSError:
            return None

    poll(hello, timeout=timeout, what=f"SSH on {ip}", interval=0.1, error=error)


def console_tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console log)"


class NspawnDriver:
    def __init__(self, config: LabConfig, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger

    # ---- records -------------------------------------------------------------------------
    def _record(self, droplet_id: int) -> dict | None:
        return self.ledger.read()["droplets"].get(str(droplet_id))

    def _update(self, droplet_id: int, **changes) -> None:
        with self.ledger.edit() as data:
            record = data["droplets"].get(str(droplet_id))
            if record is not None:
                record.update(changes)

    @staticmethod
    def _droplet(record: dict) -> Droplet:
        status = record["status"]
        proc = record.get("process")
        if status == "active" and not (proc and procs.alive(proc)):
            status = "off"  # its container died under it
        return Droplet(
            id=record["id"],
            name=record["name"],
            region=record["region"],
            size=record["size"],
            image=record["image"],
            tags=record["tags"],
            status=status,
            ip=record["ip"] if status != "new" else None,
            extra_ips=record.get("extra_ips", []),
            created_at=record["created_at"],
        )

    def dir(self, droplet_id: int) -> Path:
        return self.config.droplets_dir / str(droplet_id)

    # ---- the driver interface -------------------------------------------------------------
    def create(self, *, name, region, size, image, tags, ssh_keys, user_data) -> Droplet:
        if not (image_ok := lab_image.rootfs(self.config)).is_dir():
            raise DriverError(f"the lab image is missing ({image_ok}); run `phoenix lab up`")
        with self.ledger.edit() as data:
            droplet_id = data.get("next_id", 1001)
            data["next_id"] = droplet_id + 1
            used = {r["ip"] for r in data["droplets"].values()}
            # Round robin from the last one given, as a cloud does: a new droplet does not
            # get the address of the one just destroyed (a DNS cutover must really move).
            span = LAST_DROPLET_HOST - FIRST_DROPLET_HOST + 1
            start = data.get("last_host", FIRST_DROPLET_HOST - 1) + 1 - FIRST_DROPLET_HOST
            hosts = [FIRST_DROPLET_HOST + (start + k) % span for k in range(span)]
            pick = next(
                (n for n in hosts if str(self.config.subnet.network_address + n) not in used), None
            )
            if pick is None:
                raise DriverError("the lab subnet has no free droplet address left")
            data["last_host"] = pick
            ip = str(self.config.subnet.network_address + pick)
            record = {
                "id": droplet_id,
                "name": name,
                "region": region,
                "size": size,
                "image": image,
                "tags": list(tags),
                "status": "new",
                "ip": ip,
                "extra_ips": [],
                "dir": str(self.dir(droplet_id)),
                "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            data["droplets"][str(droplet_id)] = record
        threading.Thread(
            target=self._build_and_boot,
            name=f"droplet-{droplet_id}",
            args=(droplet_id, ssh_keys, user_data),
            daemon=True,
        ).start()
        return self._droplet(record)

    def _build_and_boot(self, droplet_id: int, ssh_keys: list[str], user_data: str | None):
        try:
            self.prepare(droplet_id, ssh_keys=ssh_keys, user_data=user_data)
            self.boot(droplet_id)
        except Exception as exc:  # recorded: the API shows the droplet never went active
            print(f"droplet {droplet_id} failed to build or boot: {exc}", flush=True)
            self._update(droplet_id, error=str(exc))

    def prepare(self, droplet_id: int, *, ssh_keys: list[str], user_data: str | None) -> None:
        """The droplet's disk (an overlay on the image) and its cloud-init seed.

        What DigitalOcean's hypervisor gives a droplet the lab writes into its own layer: the
        network's resolver, the apt proxy, and where its metadata (the NoCloud seed) is.
        Keys, hostname and user_data reach it only through cloud-init, as on DigitalOcean."""
        record = self._require(droplet_id)
        base = self.dir(droplet_id)
        root = base / "root"
        for sub in ("upper", "work", "root"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.ledger.add("mounts", str(root))
        if not root.is_mount():
            run(
                [
                    "mount",
                    "-t",
                    "overlay",
                    "overlay",
                    "-o",
                    f"lowerdir={image.rootfs(self.config)},upperdir={base / 'upper'},"
                    f"workdir={base / 'work'}",
                    str(root),
                ]
            )
        seed = write_seed(self.config, record, ssh_keys=ssh_keys, user_data=user_data)
        (root / "etc/cloud/cloud.cfg.d/05-phoenix-lab-seed.cfg").write_text(
            "# phoenix lab: this droplet's metadata (DigitalOcean's would be link-local)\n"
            f"datasource:\n  NoCloud:\n    seedfrom: {seed}\n"
        )
        (root / "etc/resolv.conf").write_text(f"nameserver {self.config.bridge_ip}\n")
        (root / "etc/apt/apt.conf.d/01phoenix-lab-proxy").write_text(
            "// The lab's apt proxy (phoenix lab): droplets reach Debian only through it.\n"
            f'Acquire::http::Proxy "{self.config.apt_proxy}";\n'
        )

    def boot(self, droplet_id: int) -> None:
        record = self._require(droplet_id)
        base = self.dir(droplet_id)
        ns = net.create_netns(self.config, self.ledger, droplet_id, record["ip"])
        for ip in record.get("extra_ips", []):
            net.add_address(self.config, droplet_id, ip)
        console = base / "console.log"
        proc = procs.spawn(
            self.ledger,
            f"droplet-{droplet_id}",
            [
                "systemd-nspawn",
                "--quiet",
                "-D",
                str(base / "root"),
                "-b",
                "--register=no",
                "--keep-unit",
                f"--machine={self.config.tag}-{droplet_id}",
                f"--hostname={record['name']}",
                f"--network-namespace-path=/run/netns/{ns}",
                # Beside the path, --private-network keeps CAP_NET_ADMIN (and a writable
                # /proc/sys/net) inside the droplet's own namespace, as on a real droplet:
                # without it nftables cannot load a firewall.
                "--private-network",
                "--resolv-conf=off",
                "--timezone=off",
                "--console=read-only",
            ],
            log=console,
        )
        self._update(droplet_id, process=proc)
        wait_ssh(
            record["ip"],
            BOOT_TIMEOUT,
            error=lambda: (
                f"droplet {record['name']} ({record['ip']}) did not answer SSH within "
                f"{BOOT_TIMEOUT:.0f} s; last console lines:\n{console_tail(console)}"
            ),
        )
        self._update(droplet_id, status="active", error=None)

    def get(self, droplet_id: int) -> Droplet | None:
        record = self._record(droplet_id)
        return None if record is None else self._droplet(record)

    def list(self) -> list[Droplet]:
        return [self._droplet(r) for r in self.ledger.read()["droplets"].values()]

    def _require(self, droplet_id: int) -> dict:
        record = self._record(droplet_id)
        if record is None:
            raise DriverError(f"droplet {droplet_id} does not exist")
        return record

    def power_off(self, droplet_id: int) -> None:
        self._require(droplet_id)
        procs.stop(self.ledger, f"droplet-{droplet_id}", timeout=30)
        self._update(droplet_id, status="off", process=None)

    def power_on(self, droplet_id: int) -> None:
        record = self._require(droplet_id)
        proc = record.get("process")
        if record["status"] == "active" and proc and procs.alive(proc):
            return
        self.boot(droplet_id)

    def destroy(self, droplet_id: int) -> None:
        self._require(droplet_id)
        destroy_droplet(self.config, self.ledger, droplet_id)

    def add_address(self, droplet_id: int, ip: str) -> None:
        record = self._require(droplet_id)
        if ip not in record["extra_ips"]:
            self._update(droplet_id, extra_ips=record["extra_ips"] + [ip])
        if record["status"] == "active":
            net.add_address(self.config, droplet_id, ip)

    def remove_address(self, droplet_id: int, ip: str) -> None:
        record = self._record(droplet_id)
        if record is None:
            return
        self._update(droplet_id, extra_ips=[x for x in record["extra_ips"] if x != ip])
        net.remove_address(self.config, droplet_id, ip)


def seed_dir(config: LabConfig, droplet_id: int) -> Path:
    return config.artifacts_dir / "seed" / str(droplet_id)


def write_seed(
    config: LabConfig, record: dict, *, ssh_keys: list[str], user_data: str | None
) -> str:
    """The droplet's NoCloud seed on the artifact server, in the shape of DigitalOcean's
    metadata: meta-data (instance id, hostname, the account keys given at create), user-data
    as sent, and vendor-data as DigitalOcean's (root logins, no default user). Served only
    to the droplet's own address (`phoenix.lab.server`), as a metadata service is."""
    folder = seed_dir(config, record["id"])
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    meta = {
        "instance-id": f"i-{record['id']}",
        "local-hostname": record["name"],
        "public-keys": [k.strip() for k in ssh_keys],
    }
    vendor = {"disable_root": False, "users": []}
    for name, text in (
        ("meta-data", json.dumps(meta, indent=2) + "\n"),
        ("user-data", user_data or ""),
        ("vendor-data", "#cloud-config\n" + json.dumps(vendor) + "\n"),
    ):
        path = folder / name
        path.touch(mode=0o600)
        path.write_text(text)
    return f"{config.artifact_url}/seed/{record['id']}/"


def destroy_droplet(config: LabConfig, ledger: Ledger, droplet_id: int) -> None:
    """Remove everything of one droplet; safe to repeat, and on half-made droplets."""
    # Destroying a droplet pulls its plug, as DigitalOcean does, and the API answers at once:
    # an orderly shutdown first (up to 30 s on a loaded machine) outlasted clients' timeouts.
    procs.stop(ledger, f"droplet-{droplet_id}", timeout=2)
    shutil.rmtree(seed_dir(config, droplet_id), ignore_errors=True)
    base = config.droplets_dir / str(droplet_id)
    root = base / "root"
    if root.is_mount():
        run(["umount", str(root)], check=False)
        if root.is_mount():
            run(["umount", "-l", str(root)], check=False)
    ledger.discard("mounts", str(root))
    net.delete_netns(config, droplet_id)
    ledger.discard("netns", net.netns_name(config, droplet_id))
    ledger.discard("links", net.veth_name(config, droplet_id))
    shutil.rmtree(base, ignore_errors=True)
    with ledger.edit() as data:
        data["droplets"].pop(str(droplet_id), None)
