"""Inventory entries for a role, from the state file or the environment (no CLI needed)."""

from __future__ import annotations

import os
from pathlib import Path

from phoenix.errors import PhoenixError
from phoenix.settings import env_name
from phoenix.sshconf import Target, pyinfra_data
from phoenix.state import State


def target_for(role: str) -> Target:
    host = os.environ.get("PHOENIX_HOST")
    if host:
        key = Path(os.environ.get("PHOENIX_SSH_KEY") or "~/.ssh/id_ed25519").expanduser()
        known = os.environ.get("PHOENIX_KNOWN_HOSTS")
        if not known:
            raise PhoenixError("PHOENIX_HOST needs PHOENIX_KNOWN_HOSTS: a file with the host's "
                               "pinned key (no trust on first use)")
        return Target(host=host, key=key, known_hosts=Path(known).expanduser())
    state = State(role)
    if not state.address:
        raise PhoenixError(f"no {role} droplet in {state.path}: run `phoenix provision"
                           f"{' --standby' if role == 'standby' else ''}` or set PHOENIX_HOST")
    return Target(host=state.address, key=Path(state.data["ssh_key"]),
                  known_hosts=state.known_hosts)


def hosts_for(role: str) -> tuple[list, set[str]]:
    """([(address, host data)], extra groups): in the lab, hosts are in group `lab` too."""
    t = target_for(role)
    groups = {"lab"} if env_name() == "lab" else set()
    return [(t.host, pyinfra_data(t))], groups
