"""The host's firewall: nftables with a default-drop input policy (ssh, http, https and
Gitea's own ssh port if it has one), and no way to the metadata address for service users."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, QuoteString, StringCommand, deploy
from pyinfra.operations import apt, files, server, systemd

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "base_install_recommends",
    "firewall_metadata_address",
    "firewall_metadata_denied_users",
    "firewall_tcp_ports",
    "gitea_ssh_port",
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Debian's; deploy.py has the base install take them in its one apt run, and this
# task still ensures them (a no-op then).
PACKAGES = ["nftables"]
RULES = "/etc/nftables.conf"


@deploy("Firewall the host")
def firewall_host() -> None:
    data = host.data
    ports = sorted({int(p) for p in data.firewall_tcp_ports} | {int(data.gitea_ssh_port)})
    if 22 not in ports:
        raise DeployError("firewall_tcp_ports lacks 22: the deploy itself would be locked out")
    # nft resolves these names when it loads the rules: the deploy runs this task after the
    # tasks that create the users (Caddy's comes with its package).
    denied = list(data.firewall_metadata_denied_users)
    apt.packages(
        name="Ensure nftables is installed",
        packages=PACKAGES,
        no_recommends=not data.base_install_recommends,
    )
    rules = files.template(
        name=f"Ensure the firewall drops all input but TCP {', '.join(map(str, ports))}",
        src=str(TEMPLATES / "nftables.conf.j2"),
        dest=RULES,
        user="root",
        group="root",
        mode="0644",
        firewall_tcp_ports=ports,
        firewall_metadata_denied_users=denied,
        firewall_metadata_address=data.firewall_metadata_address,
    )
    server.shell(
        name="Check and load the new firewall rules",
        commands=[
            StringCommand(
                "nft", "-c", "-f", QuoteString(RULES), "&&", "nft", "-f", QuoteString(RULES)
            )
        ],
        _if=rules.did_change,
    )
    systemd.service(
        name="Ensure the firewall is loaded at boot",
        service="nftables.service",
        running=True,
        enabled=True,
    )
