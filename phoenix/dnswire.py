"""DNS over UDP, the client side: how Phoenix asks a name server for A records.

Used by the cutover (propagation), the validation suite and the lab's DNS server (which
shares the wire format). Stdlib only (socket + struct): no resolver library is needed, and
the server is always given as an IP address, so nothing else is looked up.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
from dataclasses import dataclass, field

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
