"""Running the host's own tools (ip, mount, debootstrap…) with errors that say what failed."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from phoenix.errors import PhoenixError

# What the lab needs on the host, and the Debian package that brings each.
REQUIRED = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "apt-cacher-ng": "apt-cacher-ng",
    "ip": "iproute2",
    "ssh-keygen": "openssh-client",
    "ssh": "openssh-client",
    "git": "git",
    "mount": "mount",
    "pebble": "pebble",  # the lab's ACME CA
    "openssl": "openssl",  # its listener certificate
}


def missing_tools() -> list[str]:
    return sorted(
        {pkg for tool, pkg in REQUIRED.items() if shutil.which(tool) is None and not _in_sbin(tool)}
    )


def _in_sbin(tool: str) -> bool:
    return any(shutil.which(tool, path=p) for p in ("/usr/sbin", "/sbin"))


def run(
    cmd: Sequence[str], *, check: bool = True, input: str | None = None, timeout: float | None = 120
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, input=input, timeout=timeout
        )
    except FileNotFoundError as exc:
        raise PhoenixError(f"{cmd[0]} is not installed: {exc}") from None
    except subprocess.TimeoutExpired:
        raise PhoenixError(f"{' '.join(cmd)} did not finish within {timeout} s") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise PhoenixError(
            f"{' '.join(cmd)} failed (exit {proc.returncode}): " + " / ".join(detail)
        )
    return proc
