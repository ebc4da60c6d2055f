"""One primary at a time: the role this host plays, recorded on the host.

`recovery`: a new forge not yet live (houses run for validation; no backups until cutover);
`standby`: no houses, no cron, no backups, only the refresh of its staged snapshot;
`primary`: everything. The marker /var/lib/phoenix/role holds it. "primary" is written by a
promotion (phoenix_promote, `phoenix recover --standby`) or by `phoenix cutover`, and every
later converge honours it over group_data's phoenix_role: re-running the standby inventory
against a promoted standby keeps it the forge.
"""

from __future__ import annotations

import io

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Command
from pyinfra.operations import files

from phoenix.state import ROLE_FILE, ROLES

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = ("phoenix_promote", "phoenix_role")


def _marker() -> str:
    return (host.get_fact(Command, command=f"cat {ROLE_FILE} 2>/dev/null || true") or "").strip()


def promoting() -> bool:
    """This converge promotes the host: phoenix_promote, and its marker (from before this
    run) does not say primary yet. A second promotion of the forge is no promotion."""
    return (
        host.data.get("phoenix_promote") in (True, "True", "true", "1") and _marker() != "primary"
    )


def role() -> str:
    """What this converge makes the host: its marker's "primary" (from before this run, as
    facts are) or a promotion wins; otherwise phoenix_role."""
    marker = _marker()
    if marker == "primary" or host.data.get("phoenix_promote") in (True, "True", "true", "1"):
        return "primary"
    wanted = host.data.get("phoenix_role") or "recovery"
    if wanted not in ROLES:
        raise ValueError(f"phoenix_role {wanted!r} is not one of {', '.join(ROLES)}")
    return wanted


@deploy("Record this host's role")
def record_role() -> None:
    files.put(
        name=f"Ensure {ROLE_FILE} says {role()}",
        src=io.StringIO(role() + "\n"),
        dest=ROLE_FILE,
        user="root",
        group="root",
        mode="0644",
    )
