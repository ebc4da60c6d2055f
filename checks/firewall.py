"""The firewall (tasks/firewall.py, the security baseline the runbook lacks): nftables drops
input by default, the internal ports are closed from outside, service users cannot reach the
metadata address."""

from __future__ import annotations

import re
import shlex
import socket

from .helpers import out


def _connects(address: str, port: int, timeout: float = 3) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def test_security_internal_ports_closed_from_outside(address, settings):
    """Gitea and the backend serve this host only: Caddy is the one way in."""
    ports = {
        "gitea_http_port": settings["gitea_http_port"],
        "backend_port": settings["backend_port"],
    }
    reached = [f"{port} ({what})" for what, port in ports.items() if _connects(address, port)]
    assert not reached, (
        f"{address} accepts connections from here on port "
        f"{', '.join(reached)}: bind it to 127.0.0.1 and check the firewall"
    )


def test_security_firewall_drops_input_by_default(host, settings):
    rules = out(host, "nft list chain inet filter input 2>&1 || true")
    assert "policy drop" in rules, (
        "the nftables input chain (inet filter input) is missing "
        "or accepts by default: systemctl status nftables"
    )
    for port in settings["firewall_tcp_ports"]:
        assert re.search(rf"\b{port}\b", rules), f"the firewall does not open TCP {port}"


def test_security_service_users_cannot_reach_metadata(host, settings):
    """Each service user's connection to the metadata address is refused at once (root's is
    not: cloud-init needs it)."""
    address = settings["firewall_metadata_address"]
    reached = []
    for user in settings["firewall_metadata_denied_users"]:
        if host.run(f"id -u {shlex.quote(user)}").rc != 0:
            continue  # a user this host does not have (another test names a missing service)
        result = host.run(
            f"runuser -u {shlex.quote(user)} -- curl -sS -m 3 -o /dev/null http://{address}/"
        )
        if result.rc != 7 or "Couldn't connect" not in result.stderr:
            reached.append(f"{user} (curl exit {result.rc}: {result.stderr.strip()[:80]})")
    assert not reached, (
        f"service users not refused by the firewall on {address}: "
        + "; ".join(reached)
        + " (nft list chain inet filter output)"
    )
