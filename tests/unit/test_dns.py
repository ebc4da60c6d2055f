"""Cutover, rollback and the propagation check, against the lab Cloudflare API and DNS server
(real `cloudflare` SDK, loopback only)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from phoenix.cutover.dns import cutover, make_client, rollback
from phoenix.cutover.dnswire import (
    NOERROR,
    NXDOMAIN,
    REFUSED,
    DNSQueryError,
    parse_server,
    query_a,
    resolve,
    resolve_a,
    wait_for_propagation,
)
from phoenix.errors import PhoenixError
from phoenix.lab.cloudflare.api import make_server
from phoenix.lab.cloudflare.dnsserver import DNSServer
from phoenix.lab.cloudflare.zones import Zones

TOKEN = "cf-secret-token-5f2b9c0d7e"
OLD, NEW, NEWER = "10.213.78.10", "10.213.79.20", "10.213.79.30"


def seed() -> dict[str, list[dict]]:
    return {
        "example.com": [
            {"name": "git.example.com", "type": "A", "content": OLD, "ttl": 3600,
             "comment": "the forge", "tags": ["role:forge"]},
            {"name": "ci.example.com", "type": "A", "content": "10.213.78.11", "ttl": 1},
            {"name": "pages.example.com", "type": "A", "content": "10.213.78.12",
             "proxied": True},
            {"name": "docs.example.com", "type": "CNAME", "content": "git.example.com"},
            # shadowed by the lab.example.com zone: cutover must not touch it
            {"name": "git.lab.example.com", "type": "A", "content": "10.213.78.99", "ttl": 600},
        ],
        "lab.example.com": [
            {"name": "git.lab.example.com", "type": "A", "content": "10.213.78.13", "ttl": 600},
        ],
    }


@pytest.fixture(scope="module")
def servers():
    api = make_server(token=TOKEN).start()
    dns = DNSServer(api.zones).start()
    yield api, dns
    dns.stop()
    api.stop()


@pytest.fixture
def lab(servers):
    """Both servers on one fresh store; `lab.dns_port`, `lab.zones`, `lab.client()`."""
    api, dns = servers
    zones = Zones(seed())
    api.zones = api.api.zones = dns.zones = zones
    api.api.requests.clear()
    api.api.rate_limit_next(0)

    class Lab:
        base_url = f"http://127.0.0.1:{api.port}/client/v4"
        dns_port = dns.port
        server = api

        def __init__(self) -> None:
            self.zones = zones

        def client(self, token: str = TOKEN, **kwargs):
            return make_client(token=token, base_url=self.base_url, **kwargs)

        def record(self, name: str) -> dict:
            zone, records = zones.lookup(name)
            (record,) = [r for r in records if r["type"] == "A"]
            return record

        def patches(self) -> int:
            return sum(method == "PATCH" for method, _, _ in api.api.requests)

    return Lab()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def without_modified_on(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "modified_on"}


# cutover ---------------------------------------------------------------------------------------


def test_cutover_points_records_at_new_ip_and_dns_answers_with_ttl_300(lab):
    saved: dict = {}
    result = cutover(records=["git.example.com", "ci.example.com."], new_ip=NEW,
                     client=lab.client(), saved=saved)
    assert {name: r["changed"] for name, r in result.items()} == \
        {"git.example.com": True, "ci.example.com": True}
    assert result["git.example.com"]["after"] == {"content": NEW, "ttl": 300, "proxied": False}
    for name in ("git.example.com", "ci.example.com"):
        answer = query_a(name, "127.0.0.1", lab.dns_port, timeout=1)
        assert (answer.rcode, answer.records, answer.authoritative) == \
            (NOERROR, [(NEW, 300)], True)
    git = lab.record("git.example.com")
    assert saved["git.example.com"] == {"zone_id": git["zone_id"], "record_id": git["id"],
                                        "content": OLD, "ttl": 3600, "proxied": False}
    assert saved["ci.example.com"]["ttl"] == 1


def test_cutover_twice_keeps_the_original_saved_value(lab):
    saved: dict = {}
    cutover(records=["git.example.com"], new_ip=NEW, client=lab.client(), saved=saved)
    first = {name: dict(value) for name, value in saved.items()}
    patches = lab.patches()
    again = cutover(records=["git.example.com"], new_ip=NEW, client=lab.client(), saved=saved)
    assert again["git.example.com"]["changed"] is False
    assert lab.patches() == patches  # nothing was sent
    cutover(records=["git.example.com"], new_ip=NEWER, client=lab.client(), saved=saved)
    assert saved == first
    assert saved["git.example.com"]["content"] == OLD
    assert resolve_a("git.example.com", "127.0.0.1", lab.dns_port, timeout=1) == [NEWER]


def test_cutover_saves_everything_before_it_changes_anything(lab):
    seen = []

    def on_saved(saved: dict) -> None:
        seen.append((dict(saved), lab.record("git.example.com")["content"]))

    cutover(records=["git.example.com", "ci.example.com"], new_ip=NEW, client=lab.client(),
            saved={}, on_saved=on_saved)
    ((saved, content_then),) = seen
    assert set(saved) == {"git.example.com", "ci.example.com"}
    assert content_then == OLD


def test_cutover_uses_the_longest_matching_zone(lab):
    cutover(records=["git.lab.example.com"], new_ip=NEW, client=lab.client(), saved={})
    assert resolve_a("git.lab.example.com", "127.0.0.1", lab.dns_port, timeout=1) == [NEW]
    shadowed = [r for r in lab.zones.records(lab.zones.find_zone("example.com")["id"])
                if r["name"] == "git.lab.example.com"]
    assert [r["content"] for r in shadowed] == ["10.213.78.99"]


def test_missing_record_is_named_and_nothing_changes(lab):
    saved: dict = {}
    with pytest.raises(PhoenixError, match="nothere.example.com") as caught:
        cutover(records=["git.example.com", "nothere.example.com"], new_ip=NEW,
                client=lab.client(), saved=saved)
    assert "no A record" in str(caught.value)
    assert saved == {} and lab.patches() == 0
    assert lab.record("git.example.com")["content"] == OLD


def test_name_outside_every_zone_is_named(lab):
    with pytest.raises(PhoenixError, match=r"git\.example\.net"):
        cutover(records=["git.example.net"], new_ip=NEW, client=lab.client(), saved={})


def test_bad_new_ip_is_refused_before_any_request(lab):
    with pytest.raises(PhoenixError, match="not an IPv4 address"):
        cutover(records=["git.example.com"], new_ip="2001:db8::1", client=lab.client(),
                saved={})
    assert not lab.server.api.requests


# rollback --------------------------------------------------------------------------------------


def test_rollback_restores_every_field_exactly(lab):
    names = ["git.example.com", "ci.example.com", "pages.example.com"]
    before = {name: lab.record(name) for name in names}
    saved: dict = {}
    cutover(records=names, new_ip=NEW, client=lab.client(), saved=saved)
    assert {lab.record(name)["content"] for name in names} == {NEW}

    done = rollback(client=lab.client(), saved=saved)
    assert [(d["name"], d["changed"]) for d in done] == [(name, True) for name in names]
    for name in names:
        assert without_modified_on(lab.record(name)) == without_modified_on(before[name])
    answer = query_a("git.example.com", "127.0.0.1", lab.dns_port, timeout=1)
    assert answer.records == [(OLD, 3600)]
    assert not any(d["changed"] for d in rollback(client=lab.client(), saved=saved))


# errors ----------------------------------------------------------------------------------------


def test_wrong_token_is_a_clear_error_without_the_token(lab):
    wrong = "wrong-token-a1b2c3d4e5"
    with pytest.raises(PhoenixError) as caught:
        cutover(records=["git.example.com"], new_ip=NEW, client=lab.client(wrong), saved={})
    message = str(caught.value)
    assert "rejected the API token (CLOUDFLARE_API_TOKEN)" in message
    assert wrong not in message and TOKEN not in message


def test_unreachable_api_fails_fast_and_names_the_url(lab):
    base_url = f"http://127.0.0.1:{closed_port()}/client/v4"
    client = make_client(token=TOKEN, base_url=base_url, max_retries=0, timeout=2)
    start = time.monotonic()
    with pytest.raises(PhoenixError) as caught:
        rollback(client=client, saved={"git.example.com": {
            "zone_id": "z", "record_id": "r", "content": OLD, "ttl": 3600, "proxied": False}})
    assert time.monotonic() - start < 2
    assert base_url in str(caught.value) and "unreachable" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_one_429_is_retried_by_the_sdk(lab):
    lab.server.api.rate_limit_next(1, retry_after=0.05)
    saved: dict = {}
    cutover(records=["git.example.com"], new_ip=NEW, client=lab.client(max_retries=2),
            saved=saved)
    assert lab.record("git.example.com")["content"] == NEW
    assert saved["git.example.com"]["content"] == OLD


def test_rate_limit_beyond_the_retries_is_a_clear_error(lab):
    lab.server.api.rate_limit_next(10, retry_after=0.01)
    with pytest.raises(PhoenixError, match="rate limited"):
        cutover(records=["git.example.com"], new_ip=NEW, client=lab.client(max_retries=1),
                saved={})


def test_the_token_wins_over_global_key_variables(lab, monkeypatch):
    # The SDK would send X-Auth-Email/X-Auth-Key from these instead of the token.
    monkeypatch.setenv("CLOUDFLARE_EMAIL", "someone@example.com")
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "global-key")
    result = cutover(records=["git.example.com"], new_ip=NEW, client=lab.client(), saved={})
    assert result["git.example.com"]["changed"]


def test_empty_token_is_refused(lab):
    with pytest.raises(PhoenixError, match="CLOUDFLARE_API_TOKEN is empty"):
        make_client(token=" ", base_url=lab.base_url)


# propagation -----------------------------------------------------------------------------------


def test_wait_for_propagation_returns_once_every_resolver_answers(lab):
    cutover(records=["git.example.com", "ci.example.com"], new_ip=NEW, client=lab.client(),
            saved={})
    second = DNSServer(lab.zones).start()
    lines: list[str] = []
    try:
        wait_for_propagation(["git.example.com", "ci.example.com"], NEW,
                             resolvers=[("127.0.0.1", lab.dns_port), ("127.0.0.1", second.port)],
                             timeout=2, interval=0.05, progress=lines.append)
    finally:
        second.stop()
    assert lines[-1] == f"4/4 answers show {NEW}"


def test_wait_for_propagation_times_out_naming_record_and_answer(lab):
    start = time.monotonic()
    with pytest.raises(PhoenixError) as caught:
        wait_for_propagation(["git.example.com"], NEW, resolvers=[("127.0.0.1", lab.dns_port)],
                             timeout=0.3, interval=0.05)
    assert time.monotonic() - start < 1.5
    assert "git.example.com" in str(caught.value) and OLD in str(caught.value)


# the lab DNS server ----------------------------------------------------------------------------


def test_dns_server_negative_answers(lab):
    assert query_a("nothere.example.com", "127.0.0.1", lab.dns_port, 1).rcode == NXDOMAIN
    assert query_a("example.net", "127.0.0.1", lab.dns_port, 1).rcode == REFUSED
    nodata = query_a("docs.example.com", "127.0.0.1", lab.dns_port, 1)  # CNAME only
    assert (nodata.rcode, nodata.records) == (NOERROR, [])
    assert resolve_a("nothere.example.com", "127.0.0.1", lab.dns_port, 1) == []
    with pytest.raises(DNSQueryError, match="REFUSED"):
        resolve_a("example.net", "127.0.0.1", lab.dns_port, 1)


def test_dns_server_serves_automatic_ttl_as_300_and_ignores_case(lab):
    assert query_a("CI.Example.COM", "127.0.0.1", lab.dns_port, 1).records == \
        [("10.213.78.11", 300)]


def test_resolve_a_against_nothing_fails_fast(lab):
    start = time.monotonic()
    with pytest.raises(DNSQueryError):
        resolve_a("git.example.com", "127.0.0.1", closed_port(), timeout=0.5)
    assert time.monotonic() - start < 1


def test_an_answer_too_big_for_udp_comes_over_tcp(lab):
    zone = lab.zones.find_zone("example.com")
    many = [f"10.213.80.{n}" for n in range(1, 41)]  # 40 A records: > 512 bytes
    for address in many:
        lab.zones.create(zone["id"], {"type": "A", "name": "big.example.com", "ttl": 600,
                                      "content": address})
    answer = query_a("big.example.com", "127.0.0.1", lab.dns_port, timeout=1)
    assert answer.tcp and answer.addresses == sorted(many)


def test_aaaa_records_are_served_and_asked_for(lab):
    zone = lab.zones.find_zone("example.com")
    lab.zones.create(zone["id"], {"type": "AAAA", "name": "git.example.com", "ttl": 600,
                                  "content": "2001:db8::7"})
    assert resolve("git.example.com", "127.0.0.1", lab.dns_port, 1, rdtype="AAAA") == \
        ["2001:db8::7"]
    assert resolve_a("git.example.com", "127.0.0.1", lab.dns_port, 1) == [OLD]


def test_an_ipv6_resolver_is_asked_over_ipv6(lab):
    try:
        server = DNSServer(lab.zones, host="::1").start()
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    try:
        host, port = parse_server(f"[::1]:{server.port}")
        assert resolve_a("git.example.com", host, port, 1) == [OLD]
    finally:
        server.stop()


def test_resolver_addresses_are_parsed_with_and_without_ports():
    assert parse_server("1.1.1.1") == ("1.1.1.1", 53)
    assert parse_server("10.0.0.1:5353") == ("10.0.0.1", 5353)
    assert parse_server("2606:4700::1111") == ("2606:4700::1111", 53)
    assert parse_server("[2606:4700::1111]:5353") == ("2606:4700::1111", 5353)
    for bad in ("dns.example.com", "[::1", "1.1.1.1:x", "1.1.1.1:70000"):
        with pytest.raises(PhoenixError, match="resolver"):
            parse_server(bad)


def test_a_malformed_reply_is_reported_as_such_not_as_a_timeout():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))

        def reply_garbage() -> None:
            packet, client = sock.recvfrom(512)
            sock.sendto(packet[:2] + b"\x81\x80\x00\x01\x00\x01\x00", client)  # cut short

        thread = threading.Thread(target=reply_garbage, daemon=True)
        thread.start()
        start = time.monotonic()
        with pytest.raises(DNSQueryError, match="malformed"):
            query_a("git.example.com", "127.0.0.1", sock.getsockname()[1], timeout=2)
        assert time.monotonic() - start < 1
        thread.join(timeout=1)


def test_dns_server_answers_a_proxied_name_with_the_edge(lab):
    from phoenix.lab.cloudflare.zones import EDGE_V4

    answer = query_a("pages.example.com", "127.0.0.1", lab.dns_port, timeout=1)
    assert sorted(ip for ip, _ in answer.records) == sorted(EDGE_V4)
    assert "10.213.78.12" not in [ip for ip, _ in answer.records]  # never the origin


def test_aaaa_records_move_with_a_or_go_and_come_back(lab):
    zone = lab.zones.find_zone("git.example.com")
    lab.zones.create(zone["id"], {"name": "git.example.com", "type": "AAAA",
                                  "content": "2001:db8::1", "ttl": 600})
    aaaa = lambda: [r for r in lab.zones.lookup("git.example.com")[1] if r["type"] == "AAAA"]
    saved: dict = {}
    result = cutover(records=["git.example.com"], new_ip=NEW, client=lab.client(),
                     saved=saved, new_ipv6="2001:db8::2")
    assert [r["content"] for r in aaaa()] == ["2001:db8::2"]
    assert result["git.example.com AAAA"]["changed"]
    rollback(client=lab.client(), saved=saved)
    assert [r["content"] for r in aaaa()] == ["2001:db8::1"]

    saved = {}  # a droplet without IPv6: the record goes, and comes back on rollback
    result = cutover(records=["git.example.com"], new_ip=NEW, client=lab.client(), saved=saved)
    assert aaaa() == [] and result["git.example.com AAAA"]["after"] is None
    rollback(client=lab.client(), saved=saved)
    assert [(r["content"], r["ttl"]) for r in aaaa()] == [("2001:db8::1", 600)]


def ask(name: str, rdtype: str, port: int):
    """A raw dnspython query to the lab DNS server (the answer's sections, not our client's)."""
    import dns.message
    import dns.query

    return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port,
                         timeout=1)


def test_txt_records_made_through_the_api_are_served_until_removed(lab):
    """What ACME DNS-01 needs of the lab's name servers: the challenge record an ACME client
    makes through the Cloudflare API, answered authoritatively, gone once it is removed."""
    import dns.flags
    import dns.rcode
    import dns.rdatatype

    client = lab.client()
    zone_id = lab.zones.find_zone("example.com")["id"]
    challenge = "_acme-challenge.git.example.com"
    digest = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"  # a key authorization's digest
    quoted = client.dns.records.create(zone_id=zone_id, name=challenge, type="TXT",
                                       content=f'"{digest}"', ttl=60)
    # ACME clients (lego, certbot's plugin) send it unquoted: the same one string
    bare = client.dns.records.create(zone_id=zone_id, name=challenge, type="TXT",
                                     content="second-" + digest, ttl=120)
    long = client.dns.records.create(zone_id=zone_id, name="git.example.com", type="TXT",
                                     content="v" * 300, ttl=1)

    reply = ask(challenge, "TXT", lab.dns_port)
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    (rrset,) = reply.answer
    assert sorted(b"".join(r.strings) for r in rrset) == \
        [digest.encode(), b"second-" + digest.encode()]
    assert rrset.ttl == 60
    (rrset,) = ask("git.example.com", "TXT", lab.dns_port).answer
    assert [[len(s) for s in r.strings] for r in rrset] == [[255, 45]]  # split, as Cloudflare does
    nodata = ask(challenge, "A", lab.dns_port)  # a TXT-only name has no address
    assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA

    for record in (quoted, bare, long):
        client.dns.records.delete(record.id, zone_id=zone_id)
    gone = ask(challenge, "TXT", lab.dns_port)  # nothing left at the name: NXDOMAIN
    assert (gone.rcode(), gone.answer) == (dns.rcode.NXDOMAIN, [])
    assert gone.flags & dns.flags.AA and gone.authority[0].rdtype == dns.rdatatype.SOA
    nodata = ask("git.example.com", "TXT", lab.dns_port)  # its A record stays: NODATA
    assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])
    assert resolve_a("git.example.com", "127.0.0.1", lab.dns_port, 1) == [OLD]
