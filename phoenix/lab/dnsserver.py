"""A tiny authoritative DNS server for the lab (the wire format is phoenix/dnswire.py).

The server answers A queries over UDP from the `Zones` store behind the lab's Cloudflare API,
with each record's TTL (Cloudflare's "automatic", ttl 1, is served as 300): NXDOMAIN for an
unknown name inside a zone, NODATA for a known name without A records, REFUSED for a name
outside every zone.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading

from phoenix.dnswire import (AUTO_TTL, CLASS_IN, FORMERR, NEGATIVE_TTL, NOERROR, NOTIMP,
                             NXDOMAIN, REFUSED, SERVFAIL, TYPE_A, TYPE_ANY, TYPE_SOA,
                             decode_name, encode_name)
from phoenix.lab.cfapi import Zones

# The server --------------------------------------------------------------------------------


def _soa(zone: str) -> bytes:
    """The zone's SOA as an authority RR: negative answers carry it so resolvers cache them."""
    rdata = (encode_name(f"ns1.{zone}") + encode_name(f"hostmaster.{zone}")
             + struct.pack("!IIIII", 1, 10800, 3600, 604800, NEGATIVE_TTL))
    return (encode_name(zone) + struct.pack("!HHIH", TYPE_SOA, CLASS_IN, NEGATIVE_TTL,
                                            len(rdata)) + rdata)


def answer(zones: Zones, query: bytes) -> bytes | None:
    """The response to one query packet (None: too broken to answer at all)."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack_from("!HHH", query)
    if flags & 0x8000:
        return None  # a response: never answer those (no reflection loops)
    rd = flags & 0x0100
    opcode = flags & 0x7800

    def reply(rcode: int, question: bytes = b"", answers: list[bytes] = (),
              authority: list[bytes] = (), aa: bool = False) -> bytes:
        out_flags = 0x8000 | opcode | rd | (0x0400 if aa else 0) | rcode
        header = struct.pack("!HHHHHH", qid, out_flags, 1 if question else 0, len(answers),
                             len(authority), 0)
        packet = header + question + b"".join(answers) + b"".join(authority)
        if len(packet) > 512:  # plain UDP limit: say so, the client may retry over TCP
            header = struct.pack("!HHHHHH", qid, out_flags | 0x0200, 1, 0, 0, 0)
            packet = header + question
        return packet

    if opcode != 0:
        return reply(NOTIMP)
    if qdcount != 1:
        return reply(FORMERR)
    try:
        qname, end = decode_name(query, 12)
        qtype, qclass = struct.unpack_from("!HH", query, end)
    except (ValueError, struct.error):
        return reply(FORMERR)
    question = query[12:end + 4]  # echoed as sent (keeps the client's 0x20 letter case)
    found = zones.lookup(qname) if qclass == CLASS_IN else None
    if found is None:
        return reply(REFUSED, question)
    zone, records = found
    if not records and qname.rstrip(".").lower() != zone["name"]:
        return reply(NXDOMAIN, question, authority=[_soa(zone["name"])], aa=True)
    answers = []
    if qtype in (TYPE_A, TYPE_ANY):
        for record in records:
            if record["type"] == "A":
                ttl = AUTO_TTL if record["ttl"] == 1 else record["ttl"]
                answers.append(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, ttl, 4)
                               + socket.inet_aton(record["content"]))
    if qtype == TYPE_SOA and qname.rstrip(".").lower() == zone["name"]:
        answers.append(_soa(zone["name"]))
    authority = [] if answers else [_soa(zone["name"])]
    return reply(NOERROR, question, answers, authority, aa=True)


class DNSServer:
    """Serves `zones` over UDP on host:port (port 0: any free port, see `.port`) in a thread."""

    def __init__(self, zones: Zones, host: str = "127.0.0.1", port: int = 0) -> None:
        self.zones = zones
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)  # how often the loop looks at the stop flag
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, client = self._sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            try:
                response = answer(self.zones, query)
            except Exception:  # a bug must not kill the server: tell the client instead
                response = query[:2] + struct.pack("!H", 0x8000 | SERVFAIL) + bytes(8)
            if response is not None:
                try:
                    self._sock.sendto(response, client)
                except OSError:
                    pass

    def start(self) -> "DNSServer":
        self._thread = threading.Thread(target=self._serve, name="lab-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:  # wake the loop now instead of at its next timeout
            self._sock.sendto(b"", self._sock.getsockname())
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._sock.close()
