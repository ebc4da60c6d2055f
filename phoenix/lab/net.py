"""The lab network: one bridge with a /24, one network namespace and veth per droplet.

Droplets see only the bridge: the host's bridge address serves the lab APIs, DNS, artifacts
and the apt proxy; there is no NAT, so a droplet cannot reach anything beyond this machine.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

from phoenix.errors import PhoenixError
from phoenix.lab.config import LabConfig
from phoenix.lab.objects import Ledger
from phoenix.lab.sh import run


def used_networks() -> list[tuple[str, ipaddress.IPv4Network]]:
    """Networks this machine already uses: its routes, addresses and resolvers."""
    found: list[tuple[str, ipaddress.IPv4Network]] = []
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout):
        dst = route.get("dst")
        if dst and dst != "default" and route.get("type", "unicast") == "unicast":
            try:
                found.append(
                    (
                        f"route {dst} dev {route.get('dev')}",
                        ipaddress.IPv4Network(dst, strict=False),
                    )
                )
            except ValueError:
                pass
    for link in json.loads(run(["ip", "-j", "-4", "addr"]).stdout):
        for addr in link.get("addr_info", []):
            found.append(
                (
                    f"address on {link['ifname']}",
                    ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False),
                )
            )
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            match = re.match(r"\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)", line)
            if match:
                found.append((f"resolver {match[1]}", ipaddress.IPv4Network(match[1])))
    except OSError:
        pass
    return found


def check_subnet(config: LabConfig) -> None:
    for what, net in used_networks():
        if what.endswith(f"dev {config.bridge}") or what == f"address on {config.bridge}":
            continue  # our own bridge from an earlier `lab up`
        if net.overlaps(config.subnet) and net.prefixlen > 0:
            raise PhoenixError(
                f"lab subnet {config.subnet} overlaps {what} ({net}); "
                "choose another with PHOENIX_LAB_SUBNET"
            )


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def ensure_bridge(config: LabConfig, ledger: Ledger) -> None:
    """The lab's bridge, made by this lab; one that exists but is not in this lab's ledger
    belongs to someone else (another lab, the machine) and is never adopted: `lab down`
    would delete it under its owner."""
    exists = link_exists(config.bridge)
    if exists and config.bridge not in ledger.read()["links"]:
        raise PhoenixError(
            f"bridge {config.bridge} already exists and is not this lab's "
            f"(not in {config.objects_file}); give this lab its own PHOENIX_LAB_TAG "
            "(or PHOENIX_LAB_BRIDGE), or remove the bridge if it is a leftover"
        )
    check_subnet(config)
    if not exists:
        ledger.add("links", config.bridge)
        run(["ip", "link", "add", config.bridge, "type", "bridge"])
    addr = f"{config.bridge_ip}/{config.subnet.prefixlen}"
    if addr not in run(["ip", "-4", "addr", "show", config.bridge]).stdout:
        run(["ip", "addr", "add", addr, "dev", config.bridge])
    run(["ip", "link", "set", config.bridge, "up"])


def netns_name(config: LabConfig, droplet_id: int) -> str:
    return f"{config.tag}-{droplet_id}"


def veth_name(config: LabConfig, droplet_id: int) -> str:
    return f"{config.tag}v{droplet_id}"


def create_netns(config: LabConfig, ledger: Ledger, droplet_id: int, ip: str) -> str:
    """A namespace whose eth0 has `ip` on the bridge; the bridge is its default route."""
    ns, veth = netns_name(config, droplet_id), veth_name(config, droplet_id)
    ledger.add("netns", ns)
    ledger.add("links", veth)
    delete_netns(config, droplet_id)  # a half-made one from an interrupted run
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    run(["ip", "link", "set", veth, "master", config.bridge, "up"])
    run(["ip", "-n", ns, "addr", "add", f"{ip}/{config.subnet.prefixlen}", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "route", "add", "default", "via", config.bridge_ip])
    return ns


def delete_netns(config: LabConfig, droplet_id: int) -> None:
    ns, veth = netns_name(config, droplet_id), veth_name(config, droplet_id)
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False)
    if Path(f"/run/netns/{ns}").exists():
        run(["ip", "netns", "del", ns], check=False)


def add_address(config: LabConfig, droplet_id: int, ip: str) -> None:
    ns = netns_name(config, droplet_id)
    have = run(["ip", "-n", ns, "-4", "addr", "show", "dev", "eth0"]).stdout
    if f"inet {ip}/" not in have:
        run(["ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "eth0"])


def remove_address(config: LabConfig, droplet_id: int, ip: str) -> None:
    ns = netns_name(config, droplet_id)
    if Path(f"/run/netns/{ns}").exists():
        run(["ip", "-n", ns, "addr", "del", f"{ip}/32", "dev", "eth0"], check=False)
