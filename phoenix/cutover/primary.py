"""One primary at a time: the old one fenced before a cutover, the new one made the primary
after it (runbook step 8 and the rollback plan; phoenix/cutover/traffic.py calls both).

While the old primary still answers (a droplet of this account that is not off, or an address
accepting `fence_probe_ports`), two forges would serve and back up at once: cutover refuses,
or with --fence powers it off through DigitalOcean, disk kept (rollback powers it on again).
In a provider outage (the power_off action errors, the droplet stays `active`) fencing cannot
be confirmed: --fence-unconfirmed then lets the cutover through only while the old primary
answers on none of `fence_probe_ports` from the operator's machine, and records that it did.
Once traffic has moved, the marker /var/lib/phoenix/role on the droplet says `primary`
(tasks/role.py honours it on every later converge), its backups and replication start and a
standby's refresh stops.
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from phoenix.backup import replication
from phoenix.backup.now import now as backup_now
from phoenix.console import Say
from phoenix.errors import PhoenixError
from phoenix.provision.do import DO
from phoenix.sshconf import remote, state_target
from phoenix.state import BACKUP_TIMERS, CUTOVER_FILE, ROLE_FILE, STANDBY_TIMER, State, now

# ---- fencing: the old primary must not come back beside the new one -------------------------


# The ports --fence-unconfirmed probes, while the operator allows it for one cutover
_UNCONFIRMED: ContextVar[list[int] | None] = ContextVar("fence_unconfirmed", default=None)


@contextmanager
def unconfirmed_fencing(ports: list[int] | None) -> Iterator[None]:
    """While the block runs, a fence DigitalOcean cannot complete is accepted when the old
    primary answers on none of `ports` from here (None: not accepted)."""
    token = _UNCONFIRMED.set([int(p) for p in ports] if ports is not None else None)
    try:
        yield
    finally:
        _UNCONFIRMED.reset(token)


def _answers(ip: str, ports: list[int], timeout: float = 3) -> int | None:
    """The first of `ports` that accepts a TCP connection on `ip`, or None."""
    for port in ports:
        try:
            with socket.create_connection((ip, int(port)), timeout=timeout):
                return int(port)
        except OSError:
            continue
    return None


def _droplet_at(do: DO, ip: str) -> dict | None:
    for droplet in do.droplets():
        if ip in [n.get("ip_address") for n in droplet.get("networks", {}).get("v4", [])]:
            return droplet
    return None


def live_old_primaries(*, old: list[str], settings: dict, do: DO | None) -> list[dict[str, Any]]:
    """Which old addresses still serve: a droplet of this account that is not off (it may
    come back), or any address that accepts a connection on `fence_probe_ports`."""
    live: list[dict[str, Any]] = []
    for ip in old:
        try:
            droplet = _droplet_at(do, ip) if do is not None else None
        except PhoenixError as exc:  # the API itself is down: only a probe can tell
            if _UNCONFIRMED.get() is None:
                raise
            why = f"DigitalOcean cannot say ({exc})"
            live.append({"ip": ip, "droplet": None, "why": why, "failure": why})
            continue
        if droplet is not None:
            if droplet["status"] != "off":
                live.append(
                    {
                        "ip": ip,
                        "droplet": droplet,
                        "why": f"droplet {droplet['name']} ({droplet['id']}) is "
                        f"{droplet['status']}",
                    }
                )
            continue
        port = _answers(ip, settings.get("fence_probe_ports", [22, 443]))
        if port is not None:
            live.append({"ip": ip, "droplet": None, "why": f"it answers on port {port}"})
    return live


def _unconfirmed(state: State, item: dict, failure: str, say: Say) -> None:
    """Fencing failed (`failure`); with --fence-unconfirmed, go on only while `item`'s address
    answers on no probed port, and record it. This proves what this machine sees, not what
    every user sees: hence an explicit choice, said on screen and kept in the state file."""
    ports = _UNCONFIRMED.get()
    ip = item["ip"]
    if ports is None:
        raise PhoenixError(
            f"fencing the old primary at {ip} failed: {failure}. If DigitalOcean is failing "
            "(status.digitalocean.com), stop it by hand (its console, support), or run "
            "`phoenix cutover --fence-unconfirmed`: it goes on only while "
            f"{ip} answers on none of fence_probe_ports from this machine"
        )
    port = _answers(ip, ports)
    if port is not None:
        raise PhoenixError(
            f"fencing the old primary at {ip} failed ({failure}) and it still answers on "
            f"port {port}: two forges would serve. Stop it by hand, then run cutover again"
        )
    droplet = item.get("droplet") or {}
    # Apart from "fenced": nothing was powered off, so rollback has nothing to power on
    state.data.setdefault("fenced_unconfirmed", []).append(
        {
            "id": droplet.get("id"),
            "name": droplet.get("name"),
            "ip": ip,
            "at": now(),
            "failure": failure,
            "silent_ports": ports,
        }
    )
    state.save()
    say(
        f"NOT fenced by DigitalOcean: the old primary at {ip} ({failure}) answers on none of "
        f"ports {', '.join(map(str, ports))} from here; going on (--fence-unconfirmed, "
        f"recorded in {state.path})"
    )


def fence(*, state: State, live: list[dict], do: DO | None, fence_it: bool, say: Say) -> None:
    if not live:
        return
    what = "; ".join(f"{item['ip']}: {item['why']}" for item in live)
    if not fence_it:
        raise PhoenixError(
            f"the old primary still answers ({what}); two forges would serve "
            "and back up at once. Run `phoenix cutover --fence` to power it off "
            "through DigitalOcean (disk kept), or stop it by hand"
        )
    for item in live:
        droplet = item["droplet"]
        if droplet is None or do is None:
            failure = item.get("failure", "it is no droplet this DigitalOcean token can see")
            _unconfirmed(state, item, failure, say)
            continue
        try:
            do.action(droplet["id"], "power_off")
        except PhoenixError as exc:  # the action errored or never ended; the API may be down
            _unconfirmed(state, item, str(exc), say)
            continue
        state.data.setdefault("fenced", []).append(
            {"id": droplet["id"], "name": droplet["name"], "ip": item["ip"], "at": now()}
        )
        state.save()
        say(
            f"fenced the old primary {droplet['name']} ({droplet['id']}, {item['ip']}): "
            "powered off, disk kept"
        )


# ---- the new primary ------------------------------------------------------------------------


def host_role(state: State) -> str:
    out = _ssh(state, f"cat {ROLE_FILE} 2>/dev/null || true").strip()
    return out or "unknown"


def _switch(verb: str, units: list[str]) -> str:
    """Shell: `systemctl VERB --now` each unit this host has (a role may lack some)."""
    return "".join(
        f"if systemctl cat {u} >/dev/null 2>&1; then systemctl {verb} --now {u}; fi; "
        for u in map(shlex.quote, units)
    )


def activate(state: State, say: Say) -> None:
    """The droplet is the forge now: its marker says so (every later converge honours it),
    its backups start, a standby's refresh stops."""
    _ssh(
        state,
        f"set -e; mkdir -p {ROLE_FILE.rsplit('/', 1)[0]}; "
        f"echo primary > {ROLE_FILE}.new; mv -f {ROLE_FILE}.new {ROLE_FILE}; "
        f"date -u +%FT%TZ > {CUTOVER_FILE}; "
        + _switch("disable", [f"{STANDBY_TIMER}.timer"])
        + _switch(
            "enable",
            [f"{t}.timer" for t in BACKUP_TIMERS] + [f"{u}.service" for u in replication.UNITS],
        ),
    )
    say(
        f"{state.droplet['name']} is the primary now: backups and replication on, "
        f"marker {ROLE_FILE}"
    )


def protect(state: State, settings: dict, say: Say) -> str | None:
    """The new primary's first full snapshot, now rather than at its timer's next hour: until
    it exists a second disaster recovers from the previous primary's snapshot and replicas.
    Returns its id; None when the host already has one of its own or has no backup job yet
    (its converge takes the first one)."""
    if not settings.get("backup_repository"):
        return None
    status = str(settings.get("backup_status_file") or "")
    found = _ssh(
        state,
        f"if ! systemctl cat phoenix-backup.service >/dev/null 2>&1; then "
        f"echo no-job; elif [ -s {shlex.quote(status)} ]; then echo has; "
        "else echo none; fi",
    ).strip()
    if found != "none":
        return None
    try:
        snapshot = backup_now(state_target(state), settings=settings)
    except PhoenixError as exc:
        raise PhoenixError(
            f"{state.droplet['name']} serves the forge, but its first full "
            f"snapshot failed ({exc}): it is not yet protected; run `phoenix "
            "backup now` once the cause is fixed"
        ) from None
    say(
        f"{state.droplet['name']}'s first full snapshot {snapshot[:8]} is saved: a disaster "
        "from now on recovers this primary"
    )
    return snapshot


def _ssh(state: State, command: str) -> str:
    return remote(state_target(state), command)
