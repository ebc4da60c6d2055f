"""The host's own hardening, beyond its services: network sysctls of a host that is no
router, no core dumps, and no kernel modules for protocols and buses the forge never uses
(what lynis finds that is configuration rather than another package to install)."""

from __future__ import annotations

import io

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy
from pyinfra.operations import files, server

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = ("hardening_blacklisted_modules", "hardening_core_dumps", "hardening_sysctls")

SYSCTL = "/etc/sysctl.d/60-phoenix-network.conf"
LIMITS = "/etc/security/limits.d/60-phoenix-no-core.conf"
MODPROBE = "/etc/modprobe.d/60-phoenix-unused.conf"
HEADER = "# Written by Phoenix (tasks/hardening.py, group_data hardening_*).\n"


@deploy("Harden the host")
def harden_host() -> None:
    data = host.data
    sysctls = files.put(
        name="Ensure the network sysctls of a host that routes nothing",
        src=io.StringIO(
            HEADER
            + "".join(f"{key} = {value}\n" for key, value in sorted(data.hardening_sysctls.items()))
        ),
        dest=SYSCTL,
        user="root",
        group="root",
        mode="0644",
    )
    server.shell(
        name="Apply the network sysctls now (systemd-sysctl does at boot)",
        commands=[StringCommand("sysctl", "-q", "-p", QuoteString(SYSCTL))],
        _if=sysctls.did_change,
    )
    files.put(
        name="Ensure no process leaves a core dump"
        if not data.hardening_core_dumps
        else "Ensure core dumps are allowed",
        src=io.StringIO(HEADER + ("" if data.hardening_core_dumps else "* hard core 0\n")),
        dest=LIMITS,
        user="root",
        group="root",
        mode="0644",
    )
    # `install M /bin/true`: modprobe runs that instead of loading M (the CIS form lynis reads).
    files.put(
        name="Ensure unused kernel modules never load",
        src=io.StringIO(
            HEADER
            + "".join(
                f"install {m} /bin/true\nblacklist {m}\n"
                for m in data.hardening_blacklisted_modules
            )
        ),
        dest=MODPROBE,
        user="root",
        group="root",
        mode="0644",
    )
