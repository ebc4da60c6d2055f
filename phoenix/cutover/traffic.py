"""`phoenix cutover` and `phoenix rollback` (runbook step 8 and the rollback plan).

Cutover moves users to the recovered droplet: either the DNS records (Cloudflare) or a
DigitalOcean reserved IP. It refuses unless a validation passed on that droplet: on its
address, with its pinned host key, not longer ago than `validation_max_age`. It refuses while
the old primary still answers, unless told `--fence` (power it off through the API, disk
kept). The old values are written to the state file before anything changes. Once traffic has
moved, the droplet is made the primary: a marker on it that every later converge honours, its
backup timer on, a standby's refresh off (fencing and that: phoenix/cutover/primary.py). Rollback
confirms its droplet by name and attempt tag, powers a fenced old primary on again, puts the
old values back and powers the new droplet off with its disk kept, for forensics.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

from phoenix.console import Say, waiter
from phoenix.cutover import dns
from phoenix.cutover.dnswire import resolvers, wait_for_propagation
from phoenix.cutover.primary import activate, fence, host_role, live_old_primaries
from phoenix.errors import NotConfigured, PhoenixError
from phoenix.provision.do import DO, public_ip
from phoenix.sshconf import Target
from phoenix.state import State, cutting_over, now


def pinned_keys(known_hosts: Path, host: str) -> list[str]:
    """The "type blob" keys `known_hosts` pins for `host` (plain, unhashed entries)."""
    if not known_hosts.exists():
        return []
    keys = []
    for line in known_hosts.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and host in parts[0].split(","):
            keys.append(" ".join(parts[1:3]))
    return sorted(keys)


def record_verdict(
    state: State, target: Target, *, passed: bool, junit: Path | None = None
) -> dict:
    """What a validation proved: which address, answering with which host key, and when. The
    droplet is credited only when the address proved is the state's own."""
    with state.locked():
        droplet = state.droplet or {}
        verdict = {
            "passed": passed,
            "address": target.host,
            "host_keys": pinned_keys(target.known_hosts, target.host),
            "droplet_id": droplet.get("id") if target.host == droplet.get("ip") else None,
            "at": now(),
            "at_epoch": round(time.time()),
            "junit": str(junit or ""),
        }
        state.data["validation"] = verdict
        state.save()
    return verdict


def require_validated(state: State, settings: dict | None = None) -> None:
    """A passed verdict for this droplet, its address and pinned host key, young enough."""
    v = state.data.get("validation") or {}
    droplet = state.droplet or {}
    where = f"{droplet.get('name')} ({state.address})"
    again = "run `phoenix validate`, or use --force to cut over anyway"
    if not v.get("passed"):
        raise PhoenixError(f"the validation suite has not passed on {where}; {again}")
    if v.get("address") != state.address or v.get("droplet_id") != droplet.get("id"):
        raise PhoenixError(
            f"the last passed validation proved {v.get('address')}, not {where}; {again}"
        )
    if v.get("host_keys") != pinned_keys(state.known_hosts, state.address or ""):
        raise PhoenixError(
            f"{where} is pinned to another host key than the one the validation met; {again}"
        )
    max_age = float((settings or {}).get("validation_max_age", 3600))
    age = time.time() - float(v.get("at_epoch") or 0)
    if age > max_age:
        raise PhoenixError(
            f"the validation of {where} is {age / 60:.0f} min old (over "
            f"validation_max_age {max_age:.0f} s); {again}"
        )


def cutover(
    *,
    settings: dict,
    state: State,
    do: DO | None,
    reserved_ip: bool,
    force: bool,
    say: Say,
    wait: bool = True,
    fence_old: bool = False,
    activate_host: bool = True,
) -> dict:
    with cutting_over(state.folder), state.locked():
        return _cutover(
            settings=settings,
            state=state,
            do=do,
            reserved_ip=reserved_ip,
            force=force,
            say=say,
            wait=wait,
            fence_old=fence_old,
            activate_host=activate_host,
        )


def _cutover(
    *,
    settings: dict,
    state: State,
    do: DO | None,
    reserved_ip: bool,
    force: bool,
    say: Say,
    wait: bool,
    fence_old: bool,
    activate_host: bool,
) -> dict:
    if not state.address:
        raise NotConfigured(f"no {state.role} droplet in {state.path}; run `phoenix provision`")
    if not force:
        require_validated(state, settings)
    if activate_host and host_role(state) == "standby":
        raise PhoenixError(
            f"{state.droplet['name']} is an unpromoted standby (no houses, cron "
            "or backups): promote it with `phoenix recover --standby`"
        )
    if reserved_ip:
        result = _cutover_reserved_ip(
            settings=settings, state=state, do=do, say=say, fence_old=fence_old
        )
    else:
        result = _cutover_dns(
            settings=settings, state=state, do=do, say=say, wait=wait, fence_old=fence_old
        )
    state.data["cutover"] = {
        "at": now(),
        "address": state.address,
        "how": "reserved_ip" if reserved_ip else "dns",
    }
    state.save()
    if activate_host:
        try:
            activate(state, say)
        except PhoenixError as exc:
            raise PhoenixError(
                f"traffic moved to {state.address}, but making it the primary "
                f"failed ({exc}); run `phoenix cutover` again"
            ) from None
    return result


def _cutover_dns(
    *, settings: dict, state: State, do: DO | None, say: Say, wait: bool, fence_old: bool
) -> dict:
    address = state.address
    assert address, "cutover checked the droplet's address"
    client = dns.client()
    old = [ip for ip in dns.current_addresses(client, settings["dns_records"]) if ip != address]
    fence(
        state=state,
        live=live_old_primaries(old=old, settings=settings, do=do),
        do=do,
        fence_it=fence_old,
        say=say,
    )
    saved = state.data.setdefault("dns_saved", {})
    ipv6 = (state.droplet or {}).get("ipv6")
    result = dns.cutover(
        records=settings["dns_records"],
        new_ip=address,
        ttl=settings["dns_ttl"],
        client=client,
        saved=saved,
        on_saved=lambda _: state.save(),
        new_ipv6=ipv6,
    )
    state.save()
    for name, change in result.items():
        after = change["after"]
        say(
            f"{name}: already {after['content']}"
            if not change["changed"]
            else f"{name}: {change['before']['content']} removed (the droplet has no IPv6; "
            "rollback makes it again)"
            if after is None
            else f"{name}: {change['before']['content']} -> {after['content']} (ttl {after['ttl']}"
            f"{', proxied' if after['proxied'] else ''})"
        )
    proxied = dns.proxied_names(saved)
    direct = [
        name
        for name in dict.fromkeys(dns.full_name(n) for n in settings["dns_records"])
        if name not in proxied
    ]
    if proxied:
        # Public DNS answers Cloudflare's edge for these, never the origin: confirm the
        # record through the API and that the origin serves the name.
        dns.confirm(client=client, saved=saved, names=proxied, ip=address)
        for name in proxied:
            status = probe_origin(address, name, settings)
            say(
                f"{name}: proxied; Cloudflare holds {address}, which answers "
                f"{settings.get('origin_probe_scheme', 'https')} for it (HTTP {status})"
            )
    if wait and direct:
        wait_for_propagation(
            direct,
            address,
            resolvers=resolvers(settings),
            timeout=settings.get("dns_propagation_timeout", 900),
            interval=2,
            progress=waiter(say),
        )
        say(f"every resolver answers {address}")
    return result


def probe_origin(ip: str, name: str, settings: dict, timeout: float = 10) -> int:
    """One GET / to the origin as Cloudflare's edge sends it (SNI and Host = the name): the
    HTTP status, or PhoenixError. The origin's certificate is not checked here (Cloudflare's
    "Full" mode does not either; "Full (strict)" is the TLS task's to prove)."""
    scheme = settings.get("origin_probe_scheme", "https")
    port = int(settings.get("origin_probe_port", 443))
    try:
        sock = socket.create_connection((ip, port), timeout=timeout)
        if scheme == "https":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=name)
        with sock:
            sock.sendall(
                f"GET / HTTP/1.1\r\nHost: {name}\r\nUser-Agent: phoenix-cutover"
                "\r\nConnection: close\r\n\r\n".encode()
            )
            line = sock.makefile("rb").readline(200).decode("latin-1").split()
        status = int(line[1])
    except (OSError, ValueError, IndexError) as exc:
        raise PhoenixError(
            f"the origin {ip}:{port} does not answer {scheme} for {name} "
            f"({exc or 'no HTTP status line'}); Cloudflare would show its "
            "error page: check the forge, then run the cutover again"
        ) from None
    if status >= 500:
        raise PhoenixError(
            f"the origin {ip}:{port} answers HTTP {status} for {name}; check "
            "the forge, then run the cutover again"
        )
    return status


def _cutover_reserved_ip(
    *, settings: dict, state: State, do: DO | None, say: Say, fence_old: bool
) -> dict:
    ip = settings.get("cutover_reserved_ip")
    if not ip:
        raise NotConfigured("--reserved-ip needs `cutover_reserved_ip` in group_data")
    assert do is not None
    current = do.reserved_ip(ip).get("droplet") or {}
    if current and current.get("id") != state.droplet["id"]:
        holder = do.get(current["id"]) or {}
        live = (
            []
            if holder.get("status") in (None, "off")
            else [
                {
                    "ip": public_ip(holder) or ip,
                    "droplet": holder,
                    "why": f"droplet {holder['name']} ({holder['id']}) holds {ip} and is "
                    f"{holder['status']}",
                }
            ]
        )
        fence(state=state, live=live, do=do, fence_it=fence_old, say=say)
    saved = state.data.setdefault("reserved_ip_saved", {})
    saved.setdefault(ip, {"droplet_id": current.get("id")})
    state.save()
    if current.get("id") == state.droplet["id"]:
        say(f"reserved IP {ip} already points at {state.droplet['name']}")
        return {ip: {"changed": False}}
    do.assign_reserved_ip(ip, state.droplet["id"])
    say(f"reserved IP {ip}: droplet {current.get('id')} -> {state.droplet['id']}")
    return {ip: {"changed": True, "before": current.get("id"), "after": state.droplet["id"]}}


def rollback_needs(state: State, *, power_off: bool = True) -> set[str]:
    """The APIs a rollback of `state` calls ("cloudflare": saved DNS values; "digitalocean": a
    fenced old primary, a reserved IP, the droplet to power off). None: nothing to roll back,
    said before any token is asked for."""
    needs = {"cloudflare"} if state.data.get("dns_saved") else set()
    if (
        state.data.get("fenced")
        or state.data.get("reserved_ip_saved")
        or (power_off and state.droplet)
    ):
        needs.add("digitalocean")
    return needs


def rollback(*, state: State, do: DO | None, say: Say, power_off: bool = True) -> list[str]:
    with cutting_over(state.folder), state.locked():
        return _rollback(state=state, do=do, say=say, power_off=power_off)


def _rollback(*, state: State, do: DO | None, say: Say, power_off: bool) -> list[str]:
    done: list[str] = []
    if power_off and state.droplet and do is not None:
        confirm_droplet(state, do)  # before anything changes: the right droplet, or nothing
    for fenced in state.data.get("fenced") or []:  # the old primary serves again
        assert do is not None, "a fenced droplet needs the DigitalOcean API to power it on"
        droplet = do.get(fenced["id"])
        if droplet and droplet["status"] == "off":
            do.action(fenced["id"], "power_on")
        line = f"old primary {fenced['name']} ({fenced['id']}) powered on again"
        say(line)
        done.append(line)
    if state.data.get("dns_saved"):
        for item in dns.rollback(client=dns.client(), saved=state.data["dns_saved"]):
            line = (
                f"{item['name']}: back to {item['content']} (ttl {item['ttl']})"
                if item["changed"]
                else f"{item['name']}: already {item['content']}"
            )
            say(line)
            done.append(line)
    for ip, before in list((state.data.get("reserved_ip_saved") or {}).items()):
        assert do is not None
        if (do.reserved_ip(ip).get("droplet") or {}).get("id") != before["droplet_id"]:
            do.assign_reserved_ip(ip, before["droplet_id"])
        line = f"reserved IP {ip}: back to droplet {before['droplet_id']}"
        say(line)
        done.append(line)
    if power_off and state.droplet and do is not None:
        droplet = do.get(state.droplet["id"])
        if droplet and droplet["status"] != "off":
            do.action(state.droplet["id"], "power_off")
            line = f"droplet {droplet['name']} ({droplet['id']}) powered off (disk kept)"
        else:
            line = f"droplet {state.droplet['name']} is already off"
        say(line)
        done.append(line)
    if done:  # this attempt is over: the next provision makes a new droplet
        state.data["rolled_back"] = {"at": now(), "undone": done}
        state.save()
    else:
        say("nothing to roll back")
    return done


def confirm_droplet(state: State, do: DO) -> dict | None:
    """The droplet of the state's id is the one this attempt made (its name and tag), or
    PhoenixError: an id reused or a state file from elsewhere must not power off production."""
    mine = state.droplet or {}
    droplet = do.get(mine["id"])
    if droplet is None:
        return None
    tag = mine.get("tag") or (state.data.get("attempt") or {}).get("tag")
    if droplet["name"] != mine.get("name") or (tag and tag not in droplet.get("tags", [])):
        raise PhoenixError(
            f"droplet {mine['id']} is {droplet['name']} with tags "
            f"{', '.join(droplet.get('tags', []))}, not {mine.get('name')} "
            f"({tag}) that {state.path} made; not touching it"
        )
    return droplet
