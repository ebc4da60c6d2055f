"""`phoenix cutover` and `phoenix rollback` (runbook step 8 and the rollback plan).

Cutover moves users to the recovered droplet: either the DNS A records (Cloudflare) or a
DigitalOcean reserved IP. It refuses unless the validation suite passed on that droplet.
The old values are written to the state file before anything changes; rollback puts them
back and powers the new droplet off with its disk kept, for forensics.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from phoenix import dns
from phoenix.console import waiter
from phoenix.dnswire import parse_server
from phoenix.do import DO
from phoenix.errors import PhoenixError
from phoenix.state import State

Say = Callable[[str], None]


def resolvers(settings: dict) -> list[tuple[str, int]]:
    return [parse_server(item) for item in settings["dns_resolvers"]]


def cf_client() -> dns.cloudflare.Cloudflare:
    token = os.environ.get("CLOUDFLARE_API_TOKEN", "")
    return dns.make_client(token=token, base_url=os.environ.get("CLOUDFLARE_BASE_URL") or None)


def require_validated(state: State) -> None:
    result = state.data.get("validation") or {}
    droplet = state.droplet or {}
    if not (result.get("passed") and result.get("droplet_id") == droplet.get("id")):
        raise PhoenixError(f"the validation suite has not passed on {state.address} "
                           "(run `phoenix validate`), or use --force to cut over anyway")


def cutover(*, settings: dict, state: State, do: DO | None, reserved_ip: bool, force: bool,
            say: Say, wait: bool = True) -> dict:
    if not state.address:
        raise PhoenixError(f"no {state.role} droplet in {state.path}; run `phoenix provision`")
    if not force:
        require_validated(state)
    if reserved_ip:
        return _cutover_reserved_ip(settings=settings, state=state, do=do, say=say)
    saved = state.data.setdefault("dns_saved", {})
    result = dns.cutover(records=settings["dns_records"], new_ip=state.address,
                         ttl=settings["dns_ttl"], client=cf_client(), saved=saved,
                         on_saved=lambda _: state.save())
    state.save()
    for name, change in result.items():
        say(f"{name}: {change['before']['content']} -> {change['after']['content']} "
            f"(ttl {change['after']['ttl']})" if change["changed"] else
            f"{name}: already {state.address}")
    if wait:
        dns.wait_for_propagation(settings["dns_records"], state.address,
                                 resolvers=resolvers(settings),
                                 timeout=settings.get("dns_propagation_timeout", 900),
                                 interval=2, progress=waiter(say))
        say(f"every resolver answers {state.address}")
    return result


def _cutover_reserved_ip(*, settings: dict, state: State, do: DO | None, say: Say) -> dict:
    ip = settings.get("cutover_reserved_ip")
    if not ip:
        raise PhoenixError("--reserved-ip needs `cutover_reserved_ip` in group_data")
    assert do is not None
    current = do.reserved_ip(ip).get("droplet") or {}
    saved = state.data.setdefault("reserved_ip_saved", {})
    saved.setdefault(ip, {"droplet_id": current.get("id")})
    state.save()
    if current.get("id") == state.droplet["id"]:
        say(f"reserved IP {ip} already points at {state.droplet['name']}")
        return {ip: {"changed": False}}
    do.assign_reserved_ip(ip, state.droplet["id"])
    say(f"reserved IP {ip}: droplet {current.get('id')} -> {state.droplet['id']}")
    return {ip: {"changed": True, "before": current.get("id"), "after": state.droplet["id"]}}


def rollback(*, state: State, do: DO | None, say: Say, power_off: bool = True) -> list[str]:
    done: list[str] = []
    if state.data.get("dns_saved"):
        for item in dns.rollback(client=cf_client(), saved=state.data["dns_saved"]):
            line = (f"{item['name']}: back to {item['content']} (ttl {item['ttl']})"
                    if item["changed"] else f"{item['name']}: already {item['content']}")
            say(line)
            done.append(line)
        state.data.setdefault("history", []).append({"rolled_back": state.data.pop("dns_saved")})
        state.save()
    for ip, before in list((state.data.get("reserved_ip_saved") or {}).items()):
        assert do is not None
        do.assign_reserved_ip(ip, before["droplet_id"])
        line = f"reserved IP {ip}: back to droplet {before['droplet_id']}"
        say(line)
        done.append(line)
        state.data["reserved_ip_saved"].pop(ip)
        state.save()
    if power_off and state.droplet and do is not None:
        droplet = do.get(state.droplet["id"])
        if droplet and droplet["status"] != "off":
            do.action(state.droplet["id"], "power_off")
            line = f"droplet {state.droplet['name']} powered off (disk kept)"
        else:
            line = f"droplet {state.droplet['name']} is already off"
        say(line)
        done.append(line)
    if not done:
        say("nothing to roll back")
    return done
