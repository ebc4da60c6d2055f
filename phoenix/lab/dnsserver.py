"""A tiny authoritative DNS server for the lab, and the stub query Phoenix checks DNS with.

The server answers A queries over UDP from the `Zones` store behind the lab's Cloudflare API,
with each record's TTL (Cloudflare's "automatic", ttl 1, is served as 300): NXDOMAIN for an
unknown name inside a zone, NODATA for a known name without A records, REFUSED for a name
outside every zone. Stdlib only (socket + struct): no resolver library is installed here.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
import threading
from dataclasses import dataclass, field

from phoenix.lab.cfapi import Zones

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
TYPE_A, TYPE_SOA, TYPE_ANY, CLASS_IN = 1, 6, 255, 1
AUTO_TTL = 300  # what Cloudflare serves for ttl 1 ("automatic")
NEGATIVE_TTL = 60


class DNSQueryError(Exception):
    """A DNS query got no usable answer (timeout, SERVFAIL, REFUSED, garbage)."""


# Wire format -------------------------------------------------------------------------------


def encode_name(name: str) -> bytes:
    labels = [label.encode("idna") for label in name.rstrip(".").split(".") if label]
    if any(len(label) > 63 for label in labels):
        raise ValueError(f"DNS label longer than 63 bytes in {name!r}")
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def decode_name(packet: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` (following compression pointers) and the offset after it."""
    labels: list[str] = []
    end, jumps = None, 0
    while True:
        if offset >= len(packet):
            raise ValueError("name runs past the end of the packet")
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            if jumps > 20:
                raise ValueError("compression loop")
            if end is None:
                end = offset + 2
            offset, jumps = struct.unpack_from("!H", packet, offset)[0] & 0x3FFF, jumps + 1
        elif length == 0:
            return ".".join(labels), (end if end is not None else offset + 1)
        else:
            labels.append(packet[offset + 1:offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length


def build_query(name: str, qtype: int = TYPE_A) -> tuple[int, bytes]:
    """(id, packet) of a recursion-desired query for `name`."""
    qid = secrets.randbelow(0x10000)
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return qid, header + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


@dataclass
class DNSAnswer:
    rcode: int
    records: list[tuple[str, int]] = field(default_factory=list)  # (address, ttl) of A RRs
    authoritative: bool = False

    @property
    def addresses(self) -> list[str]:
        return sorted(address for address, _ in self.records)

    @property
    def status(self) -> str:
        return RCODES.get(self.rcode, f"RCODE{self.rcode}")


def parse_response(packet: bytes, qid: int, name: str) -> DNSAnswer:
    qid_got, flags, qdcount, ancount = struct.unpack_from("!HHHH", packet)
    if qid_got != qid or not flags & 0x8000:
        raise ValueError("not the answer to our query")
    if flags & 0x0200:
        raise ValueError("answer truncated (TC): too many records for UDP")
    offset = 12
    for _ in range(qdcount):
        qname, offset = decode_name(packet, offset)
        if qname.lower() != name.rstrip(".").lower():
            raise ValueError("answer is for another name")
        offset += 4
    answer = DNSAnswer(rcode=flags & 0x000F, authoritative=bool(flags & 0x0400))
    for _ in range(ancount):
        _, offset = decode_name(packet, offset)
        rtype, rclass, ttl, length = struct.unpack_from("!HHIH", packet, offset)
        offset += 10
        if rtype == TYPE_A and rclass == CLASS_IN and length == 4:
            answer.records.append((socket.inet_ntoa(packet[offset:offset + 4]), ttl))
        offset += length
    return answer


def query_a(name: str, server: str, port: int = 53, timeout: float = 2.0) -> DNSAnswer:
    """Ask `server` (an IP address, never a host name: nothing else is looked up) for A records.

    Raises DNSQueryError when no well-formed answer arrives in time.
    """
    family = socket.AF_INET6 if ipaddress.ip_address(server).version == 6 else socket.AF_INET
    qid, packet = build_query(name)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((server, port))  # a connected socket drops datagrams from others
            sock.send(packet)
            while True:  # skip stray datagrams until ours arrives or time runs out
                try:
                    return parse_response(sock.recv(4096), qid, name)
                except (ValueError, struct.error) as exc:
                    if "truncated" in str(exc):
                        raise DNSQueryError(f"{server}:{port}: {exc}") from None
        except socket.timeout:
            raise DNSQueryError(f"no answer from {server}:{port} within {timeout:g} s") from None
        except OSError as exc:  # e.g. ICMP port unreachable: nothing listens there
            raise DNSQueryError(f"{server}:{port}: {exc.strerror or exc}") from None


def resolve_a(name: str, server: str, port: int = 53, timeout: float = 2.0) -> list[str]:
    """The A addresses `server` answers for `name`, sorted; [] for NXDOMAIN or no A record."""
    answer = query_a(name, server, port, timeout)
    if answer.rcode not in (NOERROR, NXDOMAIN):
        raise DNSQueryError(f"{server}:{port} answered {answer.status} for {name}")
    return answer.addresses


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
