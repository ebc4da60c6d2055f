"""The one SSH settings builder: options for ssh, an ssh_config for testinfra, pyinfra data.

Host keys are pinned: a known_hosts file per target, strict checking, never
trust-on-first-use. testinfra ignores --ssh-extra-args (its issue #618), so it gets a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Target:
    host: str
    key: Path            # the operator's private key
    known_hosts: Path    # holds the pinned host key of `host`
    user: str = "root"
    port: int = 22
    connect_timeout: int = 5


def ssh_options(target: Target) -> list[str]:
    return ["-i", str(target.key), "-p", str(target.port),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={target.known_hosts}",
            "-o", f"ConnectTimeout={target.connect_timeout}",
            # A peer gone silent (a store or droplet off the network) ends the session in
            # ~45 s with a clear "Timeout, server not responding", not a hang of minutes.
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR"]


def ssh_command(target: Target, *remote: str) -> list[str]:
    return ["ssh", *ssh_options(target), f"{target.user}@{target.host}", *remote]


def ssh_config(target: Target, alias: str | None = None) -> str:
    return "\n".join([
        f"Host {alias or target.host}",
        f"  HostName {target.host}",
        f"  User {target.user}",
        f"  Port {target.port}",
        f"  IdentityFile {target.key}",
        "  IdentitiesOnly yes",
        "  BatchMode yes",
        "  StrictHostKeyChecking yes",
        f"  UserKnownHostsFile {target.known_hosts}",
        f"  ConnectTimeout {target.connect_timeout}",
        "  ServerAliveInterval 15",
        "  ServerAliveCountMax 3",
        "  LogLevel ERROR",
        "",
    ])


def pyinfra_data(target: Target) -> dict:
    """Host data for a pyinfra inventory entry."""
    return {"ssh_user": target.user, "ssh_port": target.port, "ssh_key": str(target.key),
            "ssh_strict_host_key_checking": "yes",
            "ssh_known_hosts_file": str(target.known_hosts)}


def known_hosts_line(host: str, public_key: str) -> str:
    kind, blob = public_key.split()[:2]
    return f"{host} {kind} {blob}\n"


def public_half(private_key: Path) -> Path:
    """The .pub beside a private key (ssh-keygen appends, it does not replace a suffix)."""
    return private_key.with_name(private_key.name + ".pub")
