"""`phoenix lab up | down | status`: bring the lab's objects into being and remove them all.

`up` is idempotent: it makes only what is missing. `down` removes every object in the
ledger (droplets, namespaces, veths, the bridge, mounts, processes), also after a crash;
the image and the apt cache stay as caches unless `purge` is asked for.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid

from phoenix.errors import PhoenixError
from phoenix.lab import aptproxy, image, net, pebble, procs
from phoenix.lab.config import LabConfig, child_environment
from phoenix.lab.nspawn import destroy_droplet
from phoenix.lab.objects import Ledger
from phoenix.lab.sh import missing_tools, run
from phoenix.secrets import write_secret

SERVER = "lab-server"


def require_root_and_tools() -> None:
    if os.geteuid() != 0:
        raise PhoenixError("the lab needs root (network namespaces, mounts, systemd-nspawn)")
    missing = missing_tools()
    if missing:
        raise PhoenixError(
            "the lab needs these Debian packages: apt-get install " + " ".join(missing)
        )


def ledger_for(config: LabConfig) -> Ledger:
    return Ledger(config.objects_file)


def ensure_secrets(config: LabConfig) -> None:
    """Lab tokens and the operator's SSH key, made once, readable by root only."""
    for path in (config.do_token_file, config.cf_token_file):
        if not path.exists():
            write_secret(path, "lab-" + secrets.token_hex(24))
    # The operator secrets a deploy reads (phoenix/secrets.py), made up for the lab.
    for name in (
        "gitea_secret_key",
        "gitea_internal_token",
        "restic_password",
        "gitea_api_token",
        "hermes_model_api_key",
        "hermes_api_server_key",
        "hermes_webhook_secret",
    ):
        path = config.state_dir / "secrets" / name
        if not path.exists():
            write_secret(path, secrets.token_hex(32))
    # The operator's alert URLs: checks of the lab's receiver (phoenix/lab/pings.py)
    for name in ("alert_url", "alert_replicas_url"):
        alert = config.state_dir / "secrets" / name
        if not alert.exists():
            write_secret(alert, f"{config.artifact_url}/ping/{uuid.uuid4()}")
    jwt = config.state_dir / "secrets" / "gitea_jwt_secret"  # Gitea's format: 32 bytes base64url
    if not jwt.exists():
        write_secret(jwt, base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="))
    if not config.ssh_key.exists():
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "phoenix-lab-operator",
                "-f",
                str(config.ssh_key),
            ]
        )


def up(config: LabConfig, *, log=print) -> dict:
    require_root_and_tools()
    timings: dict[str, float] = {}
    ledger = ledger_for(config)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_secrets(config)
    net.ensure_bridge(config, ledger)
    aptproxy.start(config, ledger)
    timings["image_build_s"] = image.ensure(config, log=log)
    from phoenix.lab import artifacts

    artifacts.publish(config, log=log)
    start_server(config, ledger)
    pebble.start(config, ledger)  # after the DNS server it resolves through
    return timings


def start_server(config: LabConfig, ledger: Ledger) -> None:
    record = ledger.read()["processes"].get(SERVER)
    if record and procs.alive(record):
        return
    for port, what in (
        (config.do_port, "the DigitalOcean API"),
        (config.cf_port, "the Cloudflare API"),
        (config.artifact_port, "the artifact server"),
    ):
        aptproxy.ensure_port_free(config.bridge_ip, port, what)
    env = child_environment(config.to_env())
    log = config.state_dir / "logs" / "server.log"
    procs.spawn(ledger, SERVER, [sys.executable, "-m", "phoenix.lab.server"], log=log, env=env)
    for port, what in (
        (config.do_port, "the lab's DigitalOcean API"),
        (config.cf_port, "the lab's Cloudflare API"),
        (config.artifact_port, "the lab's artifact server"),
    ):
        aptproxy.wait_port(config.bridge_ip, port, what=what, log=log)


def down(config: LabConfig, *, purge: bool = False) -> float:
    """Remove every lab object in the ledger; returns the seconds it took."""
    started = time.monotonic()
    if os.geteuid() != 0:
        raise PhoenixError("the lab needs root to remove its objects")
    if purge:
        for shared in (config.image_dir / "rootfs", config.state_dir / "apt-cacher-ng" / "cache"):
            users = [
                m
                for m in image.mounted_over(shared)
                if not m.startswith(str(config.state_dir) + "/")
            ]
            if users:
                raise PhoenixError(
                    f"cannot purge: another lab reads {shared} (mounted at "
                    f"{users[0]}); take that lab down first"
                )
    ledger = ledger_for(config)
    if config.objects_file.exists():
        procs.stop(ledger, SERVER)
        for droplet_id in list(ledger.read()["droplets"]):
            destroy_droplet(config, ledger, int(droplet_id))
        data = ledger.read()
        for record in data["processes"].values():
            procs.stop_record(record)
        for mount in data["mounts"]:
            subprocess.run(["umount", "-l", mount], capture_output=True)
        for ns in data["netns"]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for link in data["links"]:
            if net.link_exists(link):
                subprocess.run(["ip", "link", "del", link], capture_output=True)
        with ledger.edit() as data:
            for kind in ("links", "netns", "mounts"):
                data[kind] = []
            data["processes"] = {}
            data["droplets"] = {}
    # Records of droplets that no longer exist (the offsite stores) would mislead a deploy.
    shutil.rmtree(config.state_dir / "offsite", ignore_errors=True)
    if purge and config.state_dir.exists():
        shutil.rmtree(config.state_dir)
    return time.monotonic() - started


def status(config: LabConfig) -> dict:
    ledger = ledger_for(config)
    if not config.objects_file.exists():
        return {"up": False, "processes": {}, "droplets": []}
    data = ledger.read()
    processes = {
        name: procs.alive(rec)
        for name, rec in data["processes"].items()
        if not name.startswith("droplet-")
    }
    return {
        "up": bool(processes.get(SERVER)),
        "processes": processes,
        "image": image.is_current(config),
        "droplets": [
            {k: r.get(k) for k in ("id", "name", "ip", "status", "tags", "error")}
            for r in data["droplets"].values()
        ],
    }
