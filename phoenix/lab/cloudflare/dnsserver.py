"""A small authoritative DNS server for the lab: it stands in for Cloudflare's name servers.

It answers from the `Zones` store behind the lab's Cloudflare API, over UDP and TCP (RFC 7766:
a client that gets a truncated UDP answer asks again over TCP), A, AAAA and TXT records with
each record's TTL (Cloudflare's "automatic", ttl 1, is served as 300), a proxied A or AAAA record
with Cloudflare's edge addresses (zones.EDGE_V4/EDGE_V6), never the origin: NXDOMAIN for an
unknown name inside a zone, NODATA (with the zone's SOA) for a known name without such records,
REFUSED for a name outside every zone. TXT is there for ACME DNS-01 (Pebble resolves the
challenge through this server). Messages are parsed and built with dnspython.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import dns.tokenizer

from phoenix.cutover.dnswire import AUTO_TTL, NEGATIVE_TTL
from phoenix.lab.cloudflare.zones import EDGE_V4, EDGE_V6, Zones

UDP_LIMIT = 512  # without EDNS (RFC 1035 4.2.1); larger answers are truncated over UDP
SERVED = {dns.rdatatype.A: "A", dns.rdatatype.AAAA: "AAAA", dns.rdatatype.TXT: "TXT"}


def _soa(zone: str) -> dns.rrset.RRset:
    """The zone's SOA: negative answers carry it in the authority section (RFC 2308)."""
    return dns.rrset.from_text(
        zone + ".",
        NEGATIVE_TTL,
        "IN",
        "SOA",
        f"ns1.{zone}. hostmaster.{zone}. 1 10800 3600 604800 {NEGATIVE_TTL}",
    )


def _txt_strings(content: str) -> list[bytes]:
    """A TXT record's character strings: Cloudflare takes its content as quoted strings
    (`"a" "b"`) or, as ACME clients send it, bare text for one string; either is split into
    strings of at most 255 bytes."""
    strings: list[bytes] = []
    if content.startswith('"'):
        try:
            tokens = dns.tokenizer.Tokenizer(content)
            while not (token := tokens.get()).is_eol_or_eof():
                if not token.is_quoted_string():
                    raise dns.exception.SyntaxError("text outside the quotes")
                strings.append(token.unescape_to_bytes().value)
        except dns.exception.SyntaxError:
            strings = []  # not quoted strings after all: the text as it is
    whole = strings or [content.encode()]
    return [part[i : i + 255] for part in whole for i in range(0, max(len(part), 1), 255)]


def _rdatas(rtype: str, records: list[dict]) -> list[dns.rdata.Rdata]:
    """What DNS answers for `records` of one type; Cloudflare answers a proxied name with
    its edge, never the origin."""
    if rtype == "TXT":
        return [
            dns.rdtypes.ANY.TXT.TXT(
                dns.rdataclass.IN, dns.rdatatype.TXT, _txt_strings(r["content"])
            )
            for r in records
        ]
    edge = EDGE_V4 if rtype == "A" else EDGE_V6
    served = [a for r in records for a in (edge if r["proxied"] else [r["content"]])]
    return [dns.rdata.from_text("IN", rtype, a) for a in dict.fromkeys(served)]


def respond(zones: Zones, request: dns.message.Message) -> dns.message.Message:
    """The answer to one parsed query."""
    response = dns.message.make_response(request)
    response.flags &= ~dns.flags.RA  # authoritative only, never recursive
    if request.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    if len(request.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = request.question[0]
    qname = question.name.to_text(omit_final_dot=True)
    found = zones.lookup(qname) if question.rdclass == dns.rdataclass.IN else None
    if found is None:
        response.set_rcode(dns.rcode.REFUSED)
        return response
    zone, records = found
    response.flags |= dns.flags.AA
    apex = qname.lower() == zone["name"]
    if not records and not apex:
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(_soa(zone["name"]))
        return response
    wanted = (
        [SERVED[question.rdtype]]
        if question.rdtype in SERVED
        else list(SERVED.values())
        if question.rdtype == dns.rdatatype.ANY
        else []
    )
    for rtype in wanted:
        matching = [r for r in records if r["type"] == rtype]
        if matching:
            ttl = min(AUTO_TTL if r["ttl"] == 1 else r["ttl"] for r in matching)
            # the name as asked (keeps the client's 0x20 letter case)
            response.answer.append(
                dns.rrset.from_rdata_list(question.name, ttl, _rdatas(rtype, matching))
            )
    if question.rdtype == dns.rdatatype.SOA and apex:
        response.answer.append(_soa(zone["name"]))
    if not response.answer:
        response.authority.append(_soa(zone["name"]))
    return response


def answer(zones: Zones, packet: bytes, *, limit: int | None = UDP_LIMIT) -> bytes | None:
    """The wire response to one query packet (None: too broken to answer at all). Over UDP
    (`limit`) an answer that does not fit is sent truncated: the question and TC only."""
    try:
        request = dns.message.from_wire(packet)
    except dns.message.ShortHeader:
        return None
    except dns.exception.DNSException:
        if len(packet) < 12 or packet[2] & 0x80:
            return None
        qid = struct.unpack_from("!H", packet)[0]  # FORMERR with the id, as BIND does
        return struct.pack("!HHHHHH", qid, 0x8000 | dns.rcode.FORMERR, 0, 0, 0, 0)
    if request.flags & dns.flags.QR:
        return None  # a response: never answer those (no reflection loops)
    response = respond(zones, request)
    size = max(limit, request.payload) if limit is not None else 65535
    try:
        return response.to_wire(max_size=size)
    except dns.exception.TooBig:
        response.answer.clear()
        response.authority.clear()
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=size)


def _bind_pair(family: int, host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same port. With port 0 the free UDP port the
    kernel picks may be taken for TCP by another process: try another, a few times."""
    for attempt in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            udp.bind((host, port))
            tcp.bind((host, udp.getsockname()[1]))
            return udp, tcp
        except OSError:
            udp.close()
            tcp.close()
            if port != 0 or attempt == 19:
                raise
    raise AssertionError("unreachable")


class DNSServer:
    """Serves `zones` on host:port over UDP and TCP (port 0: any free port, the same for
    both, see `.port`) in threads."""

    def __init__(self, zones: Zones, host: str = "127.0.0.1", port: int = 0) -> None:
        self.zones = zones
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        self._udp, self._tcp = _bind_pair(family, host, port)
        self._tcp.listen(16)
        self._udp.settimeout(0.2)  # how often the loops look at the stop flag
        self._tcp.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self._udp.getsockname()[1]

    def _safe_answer(self, packet: bytes, limit: int | None) -> bytes | None:
        try:
            return answer(self.zones, packet, limit=limit)
        except Exception:  # a bug must not kill the server: tell the client instead
            return packet[:2] + struct.pack("!H", 0x8000 | dns.rcode.SERVFAIL) + bytes(8)

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                packet, client = self._udp.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            response = self._safe_answer(packet, UDP_LIMIT)
            if response is not None:
                try:
                    self._udp.sendto(response, client)
                except OSError:
                    pass

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._tcp_client, args=(conn,), daemon=True).start()

    def _tcp_client(self, conn: socket.socket) -> None:
        """Length-prefixed messages (RFC 1035 4.2.2) until the client closes or idles 5 s."""
        conn.settimeout(5)
        with conn:
            while not self._stop.is_set():
                try:
                    head = _read(conn, 2)
                    if head is None:
                        return
                    packet = _read(conn, struct.unpack("!H", head)[0])
                    if packet is None:
                        return
                    response = self._safe_answer(packet, None)
                    if response is None:
                        return
                    conn.sendall(struct.pack("!H", len(response)) + response)
                except OSError:
                    return

    def start(self) -> DNSServer:
        for target, name in ((self._serve_udp, "lab-dns-udp"), (self._serve_tcp, "lab-dns-tcp")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._udp.close()
        self._tcp.close()


def _read(conn: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data
