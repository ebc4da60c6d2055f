"""The droplet image: a cached debootstrap of Debian 12, rebuilt only when its recipe changes.

Minimal on purpose (what a DigitalOcean Debian 12 image boots with): the deploy must install
everything else itself. Like DigitalOcean's image it carries Debian's cloud-init, which takes
the droplet's keys, hostname and user_data from a NoCloud seed the lab serves; `apt-daily*`
timers as Debian ships them; and a first-boot job that holds the dpkg lock for a while, as
DigitalOcean's monitoring-agent install does. No SSH host keys (cloud-init makes them, or
installs the ones given in user_data).

Nothing lab-specific is in the image (the apt proxy, the resolver and the seed address are
written into each droplet's own layer), so labs with other subnets share one image read-only.
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
from phoenix.lab.config import LabConfig, child_environment
from phoenix.lab.sh import run

RELEASE = "bookworm"
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "sudo",
    "ca-certificates",
    "iproute2",
    "ifupdown",
    "netbase",
    "less",
]
# Installed by apt inside the new root, after debootstrap: debootstrap's own dependency order
# fails to configure cloud-init's Python dependencies (python3-cryptography) in one pass.
APT_PACKAGES = ["cloud-init"]
REVISION = 2  # bump when the steps below change
AGENT_LOCK_SECONDS = 8  # how long the first-boot "agent install" holds the dpkg lock

# cloud-init as the lab runs it: only the NoCloud datasource (seeded over HTTP, the address
# written per droplet); the network is the lab's (the namespace's eth0), not cloud-init's.
CLOUD_CFG = """\
# phoenix lab: cloud-init reads a NoCloud seed from the lab's artifact server (the address is
# in 05-phoenix-lab-seed.cfg, written per droplet); the lab configures the network itself.
datasource_list: [ NoCloud, None ]
network: {config: disabled}
# The minimal image has no `locales` package (update-locale): cloud-init's locale module
# would fail and mark the whole boot as an error.
locale: false
"""

# Stands in for DigitalOcean's monitoring-agent install at first boot: it holds the dpkg lock
# (fcntl, as apt and dpkg take it) for a while, so a deploy must wait for it as on a droplet.
AGENT_INSTALL = f"""\
#!/usr/bin/python3
# phoenix lab: stands in for DigitalOcean's first-boot monitoring-agent install (do-agent),
# which holds the dpkg lock while it installs. Holds it {AGENT_LOCK_SECONDS} s, then exits.
import fcntl, time
locks = [open(p, "a") for p in ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")]
for lock in locks:
    fcntl.lockf(lock, fcntl.LOCK_EX)
time.sleep({AGENT_LOCK_SECONDS})
"""

AGENT_UNIT = """\
[Unit]
Description=Monitoring agent install at first boot (phoenix lab stand-in; holds the dpkg lock)
ConditionPathExists=!/var/lib/phoenix-lab/agent-installed
After=cloud-init.service

[Service]
Type=exec
ExecStart=/usr/local/sbin/phoenix-lab-agent-install
ExecStartPost=/bin/sh -c 'mkdir -p /var/lib/phoenix-lab && touch /var/lib/phoenix-lab/agent-installed'

[Install]
WantedBy=multi-user.target
"""


def recipe(config: LabConfig) -> dict:
    return {
        "release": RELEASE,
        "variant": "minbase",
        "packages": PACKAGES,
        "apt_packages": APT_PACKAGES,
        "mirror": config.mirror,
        "revision": REVISION,
        "cloud_cfg": CLOUD_CFG,
        "agent": [AGENT_INSTALL, AGENT_UNIT],
    }


def recipe_hash(config: LabConfig) -> str:
    return hashlib.sha256(json.dumps(recipe(config), sort_keys=True).encode()).hexdigest()


def _current(image_dir: Path, config: LabConfig) -> bool:
    stamp = image_dir / "recipe.sha256"
    return (
        (image_dir / "rootfs").is_dir()
        and stamp.is_file()
        and stamp.read_text().strip() == recipe_hash(config)
    )


def rootfs(config: LabConfig) -> Path:
    """The image droplets boot from: this lab's own, else the one it shares read-only."""
    if not _current(config.image_dir, config) and config.share_from is not None:
        shared = config.share_from / "image"
        if _current(shared, config):
            return shared / "rootfs"
    return config.image_dir / "rootfs"


def is_current(config: LabConfig) -> bool:
    return _current(rootfs(config).parent, config)


def mounted_over(path: Path, *, mounts_file: str = "/proc/mounts") -> list[str]:
    """Overlay mounts (droplets of any lab) whose lower layer is `path`."""
    found = []
    with open(mounts_file) as mounts:
        for line in mounts:
            fields = line.split()
            if fields[0] == "overlay" and any(
                opt == f"lowerdir={path}" or opt.startswith(f"lowerdir={path}:")
                for opt in fields[3].split(",")
            ):
                found.append(fields[1])
    return found


def ensure(config: LabConfig, *, log=print) -> float:
    """Build the image unless the cached one (or the shared one) matches the recipe; returns
    the seconds spent. An image that droplets of any lab still boot from is never replaced."""
    if is_current(config):
        return 0.0
    users = mounted_over(config.image_dir / "rootfs")
    if users:
        raise PhoenixError(
            f"the lab image recipe changed but {len(users)} droplet(s) still "
            f"use the old image (e.g. {users[0]}); take their lab down first"
        )
    started = time.monotonic()
    tmp = config.state_dir / f"image.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"building the lab image (debootstrap {RELEASE}) in {tmp}")
    env_proxy = {"http_proxy": config.apt_proxy}
    try:
        _debootstrap(config, tmp / "rootfs", env_proxy)
        _apt_install(config, tmp / "rootfs")
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

    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        RELEASE,
        str(target),
        config.mirror,
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=child_environment(env), timeout=1800
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise PhoenixError(
            "building the lab image failed (debootstrap exit "
            f"{proc.returncode}): " + " / ".join(tail)
        )


def _apt_install(config: LabConfig, root: Path) -> None:
    """APT_PACKAGES with apt's own resolver, in a container of the new root (proc, dev)."""
    import subprocess

    cmd = [
        "systemd-nspawn",
        "--quiet",
        "--register=no",
        "--keep-unit",
        "-D",
        str(root),
        f"--machine={config.tag}-image-{os.getpid()}",
        f"--setenv=http_proxy={config.apt_proxy}",
        "--setenv=DEBIAN_FRONTEND=noninteractive",
        "sh",
        "-c",
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
        + " ".join(APT_PACKAGES),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise PhoenixError(
            "building the lab image failed (apt-get install "
            f"{' '.join(APT_PACKAGES)}, exit {proc.returncode}): " + " / ".join(tail)
        )


def _customise(config: LabConfig, root: Path) -> None:
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/cloud/cloud.cfg.d/90-phoenix-lab.cfg").write_text(CLOUD_CFG)
    agent = root / "usr/local/sbin/phoenix-lab-agent-install"
    agent.write_text(AGENT_INSTALL)
    agent.chmod(0o755)
    (root / "etc/systemd/system/phoenix-lab-agent-install.service").write_text(AGENT_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "phoenix-lab-agent-install.service").unlink(missing_ok=True)
    (wants / "phoenix-lab-agent-install.service").symlink_to(
        "/etc/systemd/system/phoenix-lab-agent-install.service"
    )
    mirror = config.mirror.rstrip("/")
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror} {RELEASE} main\n"
        f"deb {mirror} {RELEASE}-updates main\n"
        f"deb {security} {RELEASE}-security main\n"
    )
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("droplet\n")
    # Not in the lab's reach and only slows boot down (apt-daily* stay as Debian ships them).
    link = root / "etc/systemd/system/e2scrub_reap.service"
    link.unlink(missing_ok=True)
    link.symlink_to("/dev/null")
    run(["chroot", str(root), "apt-get", "clean"])
