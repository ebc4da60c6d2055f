"""DNS queries, the client side: how Phoenix asks a name server for A, AAAA or TXT records,
and waits until every resolver answers the new address (`wait_for_propagation`).

Used by the cutover (propagation) and the validation suite, through dnspython: UDP first,
TCP when the answer comes back truncated (TC), IPv4 or IPv6 servers. A server is always an
IP address (never a host name: nothing else is looked up), written `addr`, `addr:port` or
`[v6addr]:port`. A reply that is malformed or not ours is an error that says so, not a timeout.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from phoenix.errors import PhoenixError
from phoenix.poll import poll

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
AUTO_TTL = 300  # what Cloudflare serves for ttl 1 ("automatic")
NEGATIVE_TTL = 60
RECORD_TYPES = ("A", "AAAA", "TXT")  # TXT: an ACME DNS-01 challenge (phoenix/forge/dns01.py)


class DNSQueryError(Exception):
    """A DNS query got no usable answer (timeout, SERVFAIL, REFUSED, a malformed reply)."""


@dataclass
class DNSAnswer:
    rcode: int
    # (address, ttl); a TXT record's value is its character strings joined, as ACME reads it
    records: list[tuple[str, int]] = field(default_factory=list)
    authoritative: bool = False
    tcp: bool = False  # the UDP answer was truncated and this one came over TCP

    @property
    def addresses(self) -> list[str]:
        return sorted(address for address, _ in self.records)

    @property
    def status(self) -> str:
        return dns.rcode.to_text(dns.rcode.Rcode(self.rcode))


def parse_server(item: str, default_port: int = 53) -> tuple[str, int]:
    """`1.1.1.1`, `1.1.1.1:53`, `2606:4700::1111` or `[2606:4700::1111]:53` → (address, port)."""
    text = item.strip()
    host, port = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise PhoenixError(f"DNS resolver {item!r}: write an IPv6 one as [address]:port")
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = str(ipaddress.ip_address(host))
        number = int(port) if port else default_port
    except ValueError:
        raise PhoenixError(
            f"DNS resolver {item!r} is not an IP address with an optional port "
            "(1.1.1.1, 1.1.1.1:53, [2606:4700::1111]:53)"
        ) from None
    if not 0 < number < 65536:
        raise PhoenixError(f"DNS resolver {item!r}: port {number} is out of range")
    return address, number


def resolvers(settings: dict) -> list[tuple[str, int]]:
    """The resolvers a cutover waits on and step 9.1 asks (dns_resolvers)."""
    return [parse_server(item) for item in settings["dns_resolvers"]]


def address_text(server: str, port: int) -> str:
    """`addr:port`, with an IPv6 address in brackets: the form parse_server reads."""
    return f"[{server}]:{port}" if ":" in server else f"{server}:{port}"


def query(
    name: str, server: str, port: int = 53, timeout: float = 2.0, *, rdtype: str = "A"
) -> DNSAnswer:
    """Ask `server` for `rdtype` records of `name`; DNSQueryError when no usable answer comes."""
    if rdtype not in RECORD_TYPES:
        raise ValueError(f"record type {rdtype} is not one Phoenix asks for")
    where = address_text(server, port)
    request = dns.message.make_query(name, rdtype)
    try:
        reply, tcp = dns.query.udp_with_fallback(
            request, server, timeout=timeout, port=port, ignore_unexpected=True
        )
    except dns.exception.Timeout:
        raise DNSQueryError(f"no answer from {where} within {timeout:g} s") from None
    except dns.query.BadResponse:
        raise DNSQueryError(
            f"{where} sent a reply that is not the answer to our query for {name}"
        ) from None
    except dns.exception.DNSException as exc:  # FormError, ShortHeader, TrailingJunk…
        raise DNSQueryError(
            f"{where} sent a malformed reply for {name}: {type(exc).__name__}"
        ) from None
    except OSError as exc:  # e.g. ICMP port unreachable or a TCP reset: nothing listens there
        raise DNSQueryError(f"{where}: {exc.strerror or exc}") from None
    wanted = dns.rdatatype.from_text(rdtype)
    answer = DNSAnswer(
        rcode=int(reply.rcode()), authoritative=bool(reply.flags & dns.flags.AA), tcp=tcp
    )
    for rrset in reply.answer:
        if rrset.rdtype == wanted and rrset.rdclass == dns.rdataclass.IN:
            answer.records += [(_value(rdata), rrset.ttl) for rdata in rrset]
    return answer


def _value(rdata: dns.rdata.Rdata) -> str:
    if rdata.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode(errors="replace")  # type: ignore[attr-defined]
    return str(rdata.address)  # type: ignore[attr-defined]


def query_a(name: str, server: str, port: int = 53, timeout: float = 2.0) -> DNSAnswer:
    return query(name, server, port, timeout, rdtype="A")


def resolve(
    name: str, server: str, port: int = 53, timeout: float = 2.0, *, rdtype: str = "A"
) -> list[str]:
    """The addresses `server` answers for `name`, sorted; [] for NXDOMAIN or no such record."""
    answer = query(name, server, port, timeout, rdtype=rdtype)
    if answer.rcode not in (NOERROR, NXDOMAIN):
        raise DNSQueryError(f"{address_text(server, port)} answered {answer.status} for {name}")
    return answer.addresses


def resolve_a(name: str, server: str, port: int = 53, timeout: float = 2.0) -> list[str]:
    return resolve(name, server, port, timeout, rdtype="A")


def wait_for_propagation(
    records: list[str],
    ip: str,
    *,
    resolvers: list[tuple[str, int]],
    timeout: float = 600,
    interval: float = 5,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Return once every resolver (address, port) answers exactly `ip` for every record."""
    deadline = time.monotonic() + timeout
    pending = {
        (name.strip().rstrip(".").lower(), resolver): "has not been asked"
        for name in records
        for resolver in resolvers
    }
    total = len(pending)

    def agreed() -> bool | None:
        for fqdn, (server, port) in list(pending):
            remaining = max(0.1, min(2.0, deadline - time.monotonic()))
            try:
                answer = resolve_a(fqdn, server, port, timeout=remaining)
            except DNSQueryError as exc:
                pending[fqdn, (server, port)] = f"fails ({exc})"
                continue
            if answer == [ip]:
                del pending[fqdn, (server, port)]
            else:
                pending[fqdn, (server, port)] = f"answers {', '.join(answer) or 'no address'}"
        if not pending:
            if progress is not None:
                progress(f"{total}/{total} answers show {ip}")
            return True
        (fqdn, (server, port)), seen = next(iter(pending.items()))
        if progress is not None:
            progress(
                f"{total - len(pending)}/{total} answers show {ip}; {fqdn} at "
                f"{address_text(server, port)} {seen}"
            )
        return None

    def late() -> str:
        where = "; ".join(
            f"{name} at {address_text(srv, prt)} {what}"
            for (name, (srv, prt)), what in pending.items()
        )
        return (
            f"DNS has not moved to {ip} after {timeout:g} s: {where}. Check the record in "
            "Cloudflare, or wait longer (the old TTL may still be running out) and run the "
            "check again."
        )

    poll(agreed, timeout=timeout, what=f"DNS answers {ip}", interval=interval, error=late)
