"""Inventory entries for a role, from the state file or the environment (no CLI needed)."""

from __future__ import annotations

from phoenix.settings import env_name
from phoenix.sshconf import pyinfra_data, role_target


def hosts_for(role: str) -> tuple[list, set[str]]:
    """([(address, host data)], extra groups): in the lab, hosts are in group `lab` too."""
    t = role_target(role)
    groups = {"lab"} if env_name() == "lab" else set()
    return [(t.host, pyinfra_data(t))], groups
