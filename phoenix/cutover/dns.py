"""Runbook step 8: move the forge's DNS names to the new server, and back if it must.

`cutover` records each A record's current value in `saved` before it changes anything, and
never overwrites a value saved by an earlier run: `saved` always holds the address to go back
to. `rollback` writes those values back exactly. `wait_for_propagation` asks the name servers
until they all answer the new address. All Cloudflare failures become a `PhoenixError` that
says what to do, and never contains the token.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import cloudflare

from phoenix.context import Context, current
from phoenix.errors import NotConfigured, PhoenixError


def make_client(
    *, token: str, base_url: str | None, max_retries: int = 3, timeout: float = 10
) -> cloudflare.Cloudflare:
    """A client that authenticates with `token` only (base_url None: the real Cloudflare)."""
    if not token or not token.strip():
        raise NotConfigured(
            "CLOUDFLARE_API_TOKEN is empty: create an API token with "
            "Zone:Read and DNS:Edit on the forge's zone and export it."
        )
    client = cloudflare.Cloudflare(
        api_token=token.strip(), base_url=base_url, max_retries=max_retries, timeout=timeout
    )
    # The SDK prefers CLOUDFLARE_EMAIL / CLOUDFLARE_API_KEY from the environment over the
    # token when they are set; Phoenix means the token it was given.
    client.api_email = client.api_key = client.user_service_key = None
    return client


def client(ctx: Context | None = None) -> cloudflare.Cloudflare:
    """The operator's Cloudflare: CLOUDFLARE_API_TOKEN, CLOUDFLARE_BASE_URL (the lab's)."""
    ctx = ctx or current()
    return make_client(token=ctx.cf_token, base_url=ctx.cf_base_url)


@contextmanager
def _cloudflare_errors(client: cloudflare.Cloudflare, doing: str) -> Iterator[None]:
    """Turn SDK exceptions into one actionable line (the token scrubbed, to be sure)."""
    base_url = str(client.base_url).rstrip("/")
    try:
        yield
    except (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError) as exc:
        message = (
            f"Cloudflare rejected the API token (CLOUDFLARE_API_TOKEN) while {doing} "
            f"({_reason(exc)}): check that the token is current and has Zone:Read "
            f"and DNS:Edit on this zone."
        )
        raise PhoenixError(_scrub(message, client)) from exc
    except cloudflare.NotFoundError as exc:
        raise PhoenixError(
            _scrub(
                f"Cloudflare found nothing while {doing} ({_reason(exc)}): "
                "check the name and that the record still exists.",
                client,
            )
        ) from exc
    except cloudflare.RateLimitError as exc:
        raise PhoenixError(
            f"Cloudflare kept answering 429 (rate limited) while {doing}, "
            f"also after {client.max_retries} retries: wait a few minutes and "
            "run the step again; it resumes where it stopped."
        ) from exc
    except cloudflare.APIConnectionError as exc:  # includes APITimeoutError
        raise PhoenixError(
            f"The Cloudflare API at {base_url} is unreachable while {doing} "
            f"({_cause(exc)}): check the network, or CLOUDFLARE_BASE_URL if "
            "it is set."
        ) from exc
    except cloudflare.APIStatusError as exc:
        raise PhoenixError(
            _scrub(f"Cloudflare answered {exc.status_code} while {doing}: {_reason(exc)}.", client)
        ) from exc


def _reason(exc: cloudflare.APIStatusError) -> str:
    """Cloudflare's own error lines ("code: message"), or the HTTP status."""
    body = exc.body if isinstance(exc.body, dict) else {}
    errors = [
        f"{e.get('code')}: {e.get('message')}"
        for e in body.get("errors") or []
        if isinstance(e, dict)
    ]
    return "; ".join(errors) or f"HTTP {exc.status_code}"


def _cause(exc: Exception) -> str:
    cause = exc.__cause__
    return f"{type(cause).__name__}: {cause}" if cause else type(exc).__name__


def _scrub(message: str, client: cloudflare.Cloudflare) -> str:
    token = client.api_token
    return message.replace(token, "<token>") if token else message


def full_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _find_zone(client: cloudflare.Cloudflare, fqdn: str) -> Any:
    """The zone `fqdn` lives in: the longest zone name it ends with (git.example.com may
    be a zone of its own, delegated from example.com)."""
    labels = fqdn.split(".")
    for start in range(len(labels) - 1):
        candidate = ".".join(labels[start:])
        with _cloudflare_errors(client, f"looking up the Cloudflare zone of {fqdn}"):
            # One page (.result): iterating the list fetches pages until one comes back empty,
            # forever from a server that ignores `page`.
            zones = client.zones.list(name=candidate).result
        if zones:
            return zones[0]
    raise PhoenixError(
        f"No Cloudflare zone this token can see holds {fqdn}: check the "
        "record name, and that the token has Zone:Read on its zone."
    )


def _find_record(client: cloudflare.Cloudflare, zone: Any, fqdn: str) -> Any:
    with _cloudflare_errors(client, f"looking up the A record of {fqdn}"):
        records = client.dns.records.list(
            zone_id=zone.id, name={"exact": fqdn}, type="A", per_page=100
        ).result
    if not records:
        raise PhoenixError(
            f"{fqdn} has no A record in the Cloudflare zone {zone.name}: "
            "create it (any address) or fix the record name."
        )
    if len(records) > 1:
        addresses = ", ".join(sorted(str(r.content) for r in records))
        raise PhoenixError(
            f"{fqdn} has {len(records)} A records ({addresses}); cutover "
            "moves a name with exactly one: remove the extra ones first."
        )
    return records[0]


def token_status(client: cloudflare.Cloudflare) -> str:
    """The token's own status ("active" when usable), read only (/user/tokens/verify)."""
    with _cloudflare_errors(client, "verifying the API token"):
        return str(getattr(client.user.tokens.verify(), "status", None))


def find_a_record(client: cloudflare.Cloudflare, name: str) -> Any:
    """The one A record of `name`, read only: what cutover would move (phoenix check)."""
    fqdn = full_name(name)
    return _find_record(client, _find_zone(client, fqdn), fqdn)


def _value(record: Any) -> dict:
    return {"content": record.content, "ttl": int(record.ttl), "proxied": bool(record.proxied)}


def _find_aaaa(client: cloudflare.Cloudflare, zone: Any, fqdn: str) -> list:
    with _cloudflare_errors(client, f"looking up the AAAA records of {fqdn}"):
        return list(
            client.dns.records.list(
                zone_id=zone.id, name={"exact": fqdn}, type="AAAA", per_page=100
            ).result
        )


def current_addresses(client: cloudflare.Cloudflare, records: list[str]) -> list[str]:
    """The IPv4 addresses the names' A records hold now (the origin, also when proxied)."""
    out = []
    for fqdn in dict.fromkeys(full_name(name) for name in records):
        record = _find_record(client, _find_zone(client, fqdn), fqdn)
        out.append(record.content)
    return list(dict.fromkeys(out))


def cutover(
    *,
    records: list[str],
    new_ip: str,
    ttl: int = 300,
    client: cloudflare.Cloudflare,
    saved: dict,
    on_saved: Callable[[dict], None] | None = None,
    new_ipv6: str | None = None,
) -> dict:
    """Point each name in `records` at `new_ip` with `ttl`, and its AAAA records at
    `new_ipv6`; without one (the droplet has no IPv6) the AAAA records are removed, as they
    would keep sending IPv6 clients to the old server. Rollback puts them back.

    `saved` ({fqdn: {zone_id, record_id, content, ttl, proxied}}, AAAA records under
    "<fqdn> AAAA <record id>" with "type" and "name") gains the current value of every record
    first; an entry already there is kept, as it holds the value from before the first
    cutover. `on_saved(saved)` runs once every record is saved and before the first change,
    so the caller can write its state file. Returns {fqdn or "<fqdn> AAAA": {changed, before,
    after}} (after None: removed). A record already at `new_ip` and `ttl` is left alone
    (proxied records keep ttl 1, "automatic", whatever is asked: that is Cloudflare's rule).
    When an edit of an A record fails, the records this run changed (that one included: its
    answer may have been lost after the change) are put back before the error is raised, so
    no name is left half moved; the AAAA records are changed only once every A record has
    moved.
    """
    try:
        ipaddress.IPv4Address(new_ip)
    except ValueError:
        raise PhoenixError(
            f"{new_ip!r} is not an IPv4 address; cutover needs the new "
            "server's public IPv4 address."
        ) from None
    if new_ipv6 is not None:
        try:
            ipaddress.IPv6Address(new_ipv6)
        except ValueError:
            raise PhoenixError(f"{new_ipv6!r} is not an IPv6 address.") from None
    if ttl != 1 and not 60 <= ttl <= 86400:
        raise PhoenixError(
            f"TTL {ttl} is not allowed by Cloudflare: use 1 (automatic) or 60..86400 seconds."
        )
    found = []
    for fqdn in dict.fromkeys(full_name(name) for name in records):  # every lookup first
        zone = _find_zone(client, fqdn)
        aaaa = _find_aaaa(client, zone, fqdn)
        if new_ipv6 and len(aaaa) > 1:
            raise PhoenixError(
                f"{fqdn} has {len(aaaa)} AAAA records; cutover moves a name "
                "with at most one: remove the extra ones first."
            )
        found.append((fqdn, zone, _find_record(client, zone, fqdn), aaaa))
    for fqdn, zone, record, aaaa in found:
        saved.setdefault(fqdn, {"zone_id": zone.id, "record_id": record.id, **_value(record)})
        for six in aaaa:
            if not any(
                v.get("type") == "AAAA" and v["record_id"] == six.id for v in saved.values()
            ):
                saved[f"{fqdn} AAAA {six.id}"] = {
                    "name": fqdn,
                    "type": "AAAA",
                    "zone_id": zone.id,
                    "record_id": six.id,
                    **_value(six),
                }
    if on_saved is not None:
        on_saved(saved)
    result = {}
    touched: list[tuple[str, Any, Any]] = []
    for fqdn, zone, record, _ in found:
        before = _value(record)
        done = before["content"] == new_ip and (before["ttl"] == ttl or before["proxied"])
        after = before
        if not done:
            touched.append((fqdn, zone, record))
            try:
                with _cloudflare_errors(client, f"pointing {fqdn} at {new_ip}"):
                    edited = client.dns.records.edit(
                        record.id,
                        zone_id=zone.id,
                        name=fqdn,
                        type="A",
                        ttl=ttl,
                        content=new_ip,
                        proxied=before["proxied"],
                    )
            except PhoenixError as exc:
                raise PhoenixError(f"{exc} {_put_back(client, touched)}") from None
            after = _value(edited)
        result[fqdn] = {"changed": not done, "before": before, "after": after}
    for fqdn, zone, _, aaaa in found:
        for six in aaaa:
            if new_ipv6:
                result[f"{fqdn} AAAA"] = _point(client, zone, fqdn, "AAAA", six, new_ipv6, ttl)
            else:
                with _cloudflare_errors(client, f"removing the AAAA record of {fqdn}"):
                    client.dns.records.delete(six.id, zone_id=zone.id)
                result[f"{fqdn} AAAA"] = {"changed": True, "before": _value(six), "after": None}
    return result


def _put_back(client: cloudflare.Cloudflare, touched: list[tuple[str, Any, Any]]) -> str:
    """Undo this run's edits (each record to the value it had); says what came of it."""
    back, stuck = [], []
    for fqdn, zone, record in touched:
        value = _value(record)
        try:
            with _cloudflare_errors(client, f"pointing {fqdn} back at {value['content']}"):
                client.dns.records.edit(record.id, zone_id=zone.id, name=fqdn, type="A", **value)
            back.append(f"{fqdn} ({value['content']})")
        except PhoenixError:
            stuck.append(fqdn)
    if stuck:
        return (
            f"Could not put {', '.join(stuck)} back: run `phoenix rollback` (the old "
            "values are saved), then the cutover again."
        )
    return (
        f"Put back {', '.join(back)}: no name moved; run the cutover again once Cloudflare answers."
    )


def _point(
    client: cloudflare.Cloudflare,
    zone: Any,
    fqdn: str,
    rtype: str,
    record: Any,
    address: str,
    ttl: int,
) -> dict:
    before = _value(record)
    done = before["content"] == address and (before["ttl"] == ttl or before["proxied"])
    after = before
    if not done:
        with _cloudflare_errors(client, f"pointing {fqdn} ({rtype}) at {address}"):
            edited = client.dns.records.edit(
                record.id,
                zone_id=zone.id,
                name=fqdn,
                type=rtype,
                ttl=ttl,
                content=address,
                proxied=before["proxied"],
            )
        after = _value(edited)
    return {"changed": not done, "before": before, "after": after}


def proxied_names(saved: dict) -> list[str]:
    """The names whose A record is proxied: public DNS answers Cloudflare's edge for them."""
    return [name for name, v in saved.items() if v.get("type", "A") == "A" and v["proxied"]]


def read_back(*, client: cloudflare.Cloudflare, saved: dict, name: str) -> dict:
    """The A record of `name` as Cloudflare holds it now ({content, ttl, proxied}), found by
    the id the cutover saved."""
    value = saved[name]
    with _cloudflare_errors(client, f"reading the A record of {name} back"):
        record = client.dns.records.get(value["record_id"], zone_id=value["zone_id"])
    if record is None:
        raise PhoenixError(f"Cloudflare returned no A record for {name}; run the cutover again")
    return _value(record)


def confirm(*, client: cloudflare.Cloudflare, saved: dict, names: list[str], ip: str) -> None:
    """Read the A records of `names` back through the API: each must hold `ip` now."""
    for name in names:
        held = read_back(client=client, saved=saved, name=name)["content"]
        if held != ip:
            raise PhoenixError(
                f"Cloudflare still holds {held} for {name}, not {ip}; run the cutover again"
            )


def rollback(*, client: cloudflare.Cloudflare, saved: dict) -> list[dict]:
    """Put every saved value back (content, ttl and proxied), a removed AAAA record made
    again; returns one entry per record: {name, changed, content, ttl, proxied}. Records
    already back are left alone."""
    done = []
    for key, value in saved.items():
        fqdn, rtype = value.get("name", key), value.get("type", "A")
        want = {k: value[k] for k in ("content", "ttl", "proxied")}
        try:
            with _cloudflare_errors(
                client, f"reading the {rtype} record of {fqdn} to roll it back"
            ):
                current = client.dns.records.get(value["record_id"], zone_id=value["zone_id"])
        except PhoenixError:
            if rtype != "AAAA":
                raise
            current = None  # removed at cutover
        changed = current is None or _value(current) != want
        if current is None and rtype == "AAAA":
            with _cloudflare_errors(client, f"making the AAAA record of {fqdn} again"):
                made = client.dns.records.create(
                    zone_id=value["zone_id"], name=fqdn, type="AAAA", **want
                )
            value["record_id"] = made.id
        elif changed:
            with _cloudflare_errors(client, f"pointing {fqdn} back at {want['content']}"):
                client.dns.records.edit(
                    value["record_id"], zone_id=value["zone_id"], name=fqdn, type=rtype, **want
                )
        done.append({"name": fqdn if rtype == "A" else f"{fqdn} AAAA", "changed": changed, **want})
    return done


def zone_of(client: cloudflare.Cloudflare, name: str) -> Any:
    """The Cloudflare zone that holds `name` (its `id`, `name` and `name_servers`)."""
    return _find_zone(client, full_name(name))


def add_txt(
    client: cloudflare.Cloudflare, *, zone: Any, name: str, content: str, ttl: int = 60
) -> str:
    """A TXT record `name` = `content` in `zone` (an ACME challenge); returns its id."""
    with _cloudflare_errors(client, f"adding the TXT record {name}"):
        made = client.dns.records.create(
            zone_id=zone.id, name=full_name(name), type="TXT", content=content, ttl=ttl
        )
    return str(made.id)


def remove_record(client: cloudflare.Cloudflare, *, zone_id: str, record_id: str) -> None:
    """Delete one record by id (the TXT record `add_txt` made)."""
    with _cloudflare_errors(client, f"removing the record {record_id}"):
        client.dns.records.delete(record_id, zone_id=zone_id)
