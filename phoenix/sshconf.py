"""The one SSH settings builder: targets, options for ssh, an ssh_config for testinfra,
pyinfra data, and running a command on a target.

Host keys are pinned: a known_hosts file per target, strict checking, never
trust-on-first-use. testinfra ignores --ssh-extra-args (its issue #618), so it gets a file.
A target comes from a role's state file (or PHOENIX_HOST, `role_target`), from one state
(`state_target`), or from an sftp store's address (`sftp_target`).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phoenix.context import Context, current
from phoenix.errors import NotConfigured, PhoenixError

if TYPE_CHECKING:
    from phoenix.state import State

SFTP = re.compile(r"^sftp:(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>.+)$")
SFTP_URL = re.compile(
    r"^sftp://(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+)(?::(?P<port>\d+))?"
    r"/(?P<path>.+)$"
)


@dataclass(frozen=True)
class Target:
    host: str
    key: Path  # the operator's private key
    known_hosts: Path  # holds the pinned host key of `host`
    user: str = "root"
    port: int = 22
    connect_timeout: int = 5


def ssh_options(target: Target) -> list[str]:
    return [
        "-i",
        str(target.key),
        "-p",
        str(target.port),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={target.known_hosts}",
        "-o",
        f"ConnectTimeout={target.connect_timeout}",
        # A peer gone silent (a store or droplet off the network) ends the session in
        # ~45 s with a clear "Timeout, server not responding", not a hang of minutes.
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=3",
        "-o",
        "LogLevel=ERROR",
    ]


def ssh_command(target: Target, *remote: str) -> list[str]:
    return ["ssh", *ssh_options(target), f"{target.user}@{target.host}", *remote]


def ssh_config(target: Target, alias: str | None = None) -> str:
    return "\n".join(
        [
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
        ]
    )


def pyinfra_data(target: Target) -> dict:
    """Host data for a pyinfra inventory entry."""
    return {
        "ssh_user": target.user,
        "ssh_port": target.port,
        "ssh_key": str(target.key),
        "ssh_strict_host_key_checking": "yes",
        "ssh_known_hosts_file": str(target.known_hosts),
    }


def known_hosts_line(host: str, public_key: str) -> str:
    kind, blob = public_key.split()[:2]
    return f"{host} {kind} {blob}\n"


def public_half(private_key: Path) -> Path:
    """The .pub beside a private key (ssh-keygen appends, it does not replace a suffix)."""
    return private_key.with_name(private_key.name + ".pub")


# --- targets -----------------------------------------------------------------------------------


def state_target(state: State) -> Target:
    """The droplet a state file describes, its host key pinned in the state's known_hosts."""
    if not state.address:
        raise NotConfigured(f"no {state.role} droplet in {state.path}; run `phoenix provision`")
    return Target(
        host=state.address, key=Path(state.data["ssh_key"]), known_hosts=state.known_hosts
    )


def role_target(role: str, ctx: Context | None = None) -> Target:
    """PHOENIX_HOST (its key pinned in PHOENIX_KNOWN_HOSTS), else the role's state file."""
    from phoenix.state import State

    ctx = ctx or current()
    if ctx.host:
        if not ctx.known_hosts:
            raise NotConfigured(
                f"PHOENIX_HOST needs PHOENIX_KNOWN_HOSTS: a file with the host's "
                f"pinned key (no trust on first use); {pin_hint(ctx.host)}"
            )
        if not ctx.known_hosts.is_file():
            raise NotConfigured(
                f"PHOENIX_KNOWN_HOSTS {ctx.known_hosts} is missing; "
                + pin_hint(ctx.host, ctx.known_hosts)
            )
        return Target(host=ctx.host, key=ctx.ssh_key, known_hosts=ctx.known_hosts)
    state = State(role)
    if not state.address and role == "primary":
        # Nothing an operator runs writes the primary's state (provision makes a recovery
        # droplet): today's forge is named by its address.
        raise NotConfigured(
            f"no primary forge in {state.path}: aim at today's forge with "
            "PHOENIX_HOST=IP and PHOENIX_KNOWN_HOSTS=FILE; " + pin_hint("IP")
        )
    if not state.address:
        raise NotConfigured(
            f"no {role} droplet in {state.path}: run `phoenix provision"
            f"{' --standby' if role == 'standby' else ''}` or set PHOENIX_HOST"
        )
    return state_target(state)


def pin_hint(host: str, known_hosts: Path | str = "FILE") -> str:
    """How to make a known_hosts file for `host` without trusting the network on first use."""
    return (
        f"make it with `ssh-keyscan -t ed25519 {host} > {known_hosts}`, then check "
        f"`ssh-keygen -lf {known_hosts}` against the host's fingerprint obtained out of band "
        "(its console, or `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on it)"
    )


def sftp_parts(repository: str, *, why: str = "") -> dict[str, Any]:
    """user, host, port, path of `sftp:USER@HOST:/PATH` or `sftp://USER@HOST:PORT/PATH`."""
    match = SFTP.match(repository) or SFTP_URL.match(repository)
    if not match:
        raise NotConfigured(f"backup_repository {repository!r} is not sftp:USER@HOST:/PATH{why}")
    groups = match.groupdict()
    return {
        "user": groups.get("user") or None,
        "host": groups["host"],
        "port": int(groups.get("port") or 22),
        "path": groups["path"],
    }


def sftp_target(
    repository: str, *, key: Path, known_hosts: Path, user: str = "root", connect_timeout: int = 10
) -> Target:
    """The store of an sftp repository (`user` when the address names none)."""
    parts = sftp_parts(repository)
    return Target(
        host=parts["host"],
        user=parts["user"] or user,
        port=parts["port"],
        key=key,
        known_hosts=known_hosts,
        connect_timeout=connect_timeout,
    )


# --- running a command -------------------------------------------------------------------------


def last_line(stderr: str, default: str = "no output") -> str:
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else default


def run(
    target: Target, command: str, *, timeout: float, late: str, input: str | None = None
) -> subprocess.CompletedProcess:
    """`command` on `target`, failed or not; `late` is the error when it outlasts `timeout`."""
    try:
        return subprocess.run(
            ssh_command(target, command),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise PhoenixError(f"{late} within {timeout:.0f} s") from None


def remote(target: Target, command: str, *, timeout: float = 120) -> str:
    """`command` on `target`; its stdout, or PhoenixError with its stderr."""
    proc = subprocess.run(
        ssh_command(target, command),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise PhoenixError(f"on {target.host}: `{command}` failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout
