"""The droplet image: a cached debootstrap of Debian 12, rebuilt only when its recipe changes.

Minimal on purpose (what a DigitalOcean Debian 12 image boots with, less cloud-init): the
deploy must install everything else itself. The image carries the lab's apt proxy and
resolver, and no SSH host keys (each droplet gets its own, or the ones it was given).
A build goes to a temporary folder and replaces the image only once it is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from phoenix.errors import PhoenixError
from phoenix.lab.config import LabConfig
from phoenix.lab.sh import run

RELEASE = "bookworm"
PACKAGES = ["systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "sudo",
            "ca-certificates", "iproute2", "ifupdown", "netbase", "less"]
REVISION = 1  # bump when the steps below change


def recipe(config: LabConfig) -> dict:
    return {"release": RELEASE, "variant": "minbase", "packages": PACKAGES,
            "mirror": config.mirror, "proxy": config.apt_proxy,
            "resolver": config.bridge_ip, "revision": REVISION}


def recipe_hash(config: LabConfig) -> str:
    return hashlib.sha256(json.dumps(recipe(config), sort_keys=True).encode()).hexdigest()


def rootfs(config: LabConfig) -> Path:
    return config.image_dir / "rootfs"


def is_current(config: LabConfig) -> bool:
    stamp = config.image_dir / "recipe.sha256"
    return rootfs(config).is_dir() and stamp.is_file() and \
        stamp.read_text().strip() == recipe_hash(config)


def ensure(config: LabConfig, *, in_use: bool, log=print) -> float:
    """Build the image unless the cached one matches the recipe; returns seconds spent."""
    if is_current(config):
        return 0.0
    if in_use:
        raise PhoenixError("the lab image recipe changed but droplets still use the old "
                           "image; run `phoenix lab down` first")
    started = time.monotonic()
    tmp = config.state_dir / f"image.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"building the lab image (debootstrap {RELEASE}) in {tmp}")
    env_proxy = {"http_proxy": config.apt_proxy}
    try:
        _debootstrap(config, tmp / "rootfs", env_proxy)
        _customise(config, tmp / "rootfs")
        (tmp / "recipe.json").write_text(json.dumps(recipe(config), indent=2))
        (tmp / "recipe.sha256").write_text(recipe_hash(config) + "\n")
        old = config.state_dir / f"image.old-{os.getpid()}"
        if config.image_dir.exists():
            config.image_dir.rename(old)
        tmp.rename(config.image_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return time.monotonic() - started


def _debootstrap(config: LabConfig, target: Path, env: dict[str, str]) -> None:
    import subprocess

    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
           RELEASE, str(target), config.mirror]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env},
                          timeout=1800)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise PhoenixError("building the lab image failed (debootstrap exit "
                           f"{proc.returncode}): " + " / ".join(tail))


def _customise(config: LabConfig, root: Path) -> None:
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    mirror = config.mirror.rstrip("/")
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror} {RELEASE} main\n"
        f"deb {mirror} {RELEASE}-updates main\n"
        f"deb {security} {RELEASE}-security main\n")
    (root / "etc/apt/apt.conf.d/01phoenix-lab-proxy").write_text(
        "// The lab's apt proxy (phoenix lab): droplets reach Debian only through it.\n"
        f'Acquire::http::Proxy "{config.apt_proxy}";\n')
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text(f"nameserver {config.bridge_ip}\n")
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("droplet\n")
    # Not in the lab's reach and only slows boot down.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_reap.service"):
        link = root / "etc/systemd/system" / f"{unit}"
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    run(["chroot", str(root), "apt-get", "clean"])
