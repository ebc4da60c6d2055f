"""Runbook step 9.1 after a DNS cutover (phoenix/cutover/after.py), against the lab Cloudflare
API and DNS server (real `cloudflare` SDK) and an HTTP/2 origin with TLS for the forge's name,
all on loopback. A proxied name resolves to Cloudflare's edge, never to the origin: the check
proves it through the API and the origin instead, and a direct name still has to resolve to
the droplet."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

from phoenix.cutover.after import check_after_cutover
from phoenix.cutover.dns import cutover, make_client
from phoenix.cutover.dnswire import parse_server, resolve_a
from phoenix.errors import PhoenixError
from phoenix.lab.cloudflare.api import make_server
from phoenix.lab.cloudflare.dnsserver import DNSServer
from phoenix.lab.cloudflare.zones import EDGE_V4, Zones
from tests.unit.test_forge import make_ca

TOKEN = "cf-after-token-7c1e0b"
NAME = "forge.lab.test"  # as in the lab
OLD = "10.213.78.10"  # the dead forge
DROPLET = "127.0.0.1"  # the recovered one: the origin below listens there


class H2Origin:
    """The droplet's HTTPS (Caddy's place): HTTP/2 over TLS, Gitea's version on
    /api/v1/version, 404 elsewhere."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["h2"])
        self.sock = socket.create_server((DROPLET, 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()
            return
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2c.initiate_connection()
        with tls:
            try:
                tls.sendall(h2c.data_to_send())
                while data := tls.recv(65536):
                    for event in h2c.receive_data(data):
                        if isinstance(event, h2.events.RequestReceived):
                            path = dict(event.headers)[b":path"]
                            found = path == b"/api/v1/version"
                            body = b'{"version":"1.22.6"}' if found else b""
                            h2c.send_headers(event.stream_id, [
                                (":status", "200" if found else "404"),
                                ("content-type", "application/json"),
                                ("content-length", str(len(body)))])
                            h2c.send_data(event.stream_id, body, end_stream=True)
                    tls.sendall(h2c.data_to_send())
            except (OSError, h2.exceptions.ProtocolError):
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    return {"good": make_ca(root / "good", "forge", [NAME]),
            "other": make_ca(root / "other", "other", [NAME])}


@pytest.fixture(scope="module")
def servers():
    api = make_server(token=TOKEN).start()
    dns = DNSServer(api.zones).start()
    yield api, dns
    dns.stop()
    api.stop()


@pytest.fixture
def world(servers, pki):
    """A zone with the forge's name (proxied or not, at the dead forge), and the droplet's
    origin serving the name with a certificate of the `good` CA."""
    api, dns = servers
    origin = H2Origin(*pki["good"][1:])

    class World:
        client = make_client(token=TOKEN, base_url=f"http://127.0.0.1:{api.port}/client/v4")
        resolver = f"127.0.0.1:{dns.port}"
        saved: dict = {}

        def zone(self, *, proxied: bool) -> None:
            zones = Zones({"lab.test": [{"name": NAME, "type": "A", "content": OLD, "ttl": 600,
                                     "proxied": proxied}]})
            api.zones = api.api.zones = dns.zones = zones

        def cut_over(self) -> None:  # what `phoenix cutover` did before the check
            self.saved = {}
            cutover(records=[NAME], new_ip=DROPLET, client=self.client, saved=self.saved)

        def check(self, trust: Path = pki["good"][0]) -> str:
            settings = {"gitea_domain": NAME, "https_trust_bundle": str(trust),
                        "dns_resolvers": [self.resolver]}
            return check_after_cutover(settings, DROPLET, saved=self.saved, client=self.client,
                                       port=origin.port, timeout=0, say=lambda _: None)

    yield World()
    origin.close()


def test_a_proxied_name_passes_on_the_api_record_and_the_origin(world):
    world.zone(proxied=True)
    world.cut_over()
    # public DNS answers Cloudflare's edge for it: the droplet's address never shows there
    assert resolve_a(NAME, *parse_server(world.resolver), 1) == sorted(EDGE_V4)
    detail = world.check()
    assert detail.startswith(f"https://{NAME}/api/v1/version: HTTP/2 200 from {DROPLET}")
    assert "proxied" in detail


def test_a_proxied_name_fails_in_one_line_on_an_origin_certificate_not_trusted(world, pki):
    world.zone(proxied=True)
    world.cut_over()
    with pytest.raises(PhoenixError) as failed:
        world.check(trust=pki["other"][0])  # the origin's certificate is from another CA
    message = str(failed.value)
    assert "\n" not in message
    assert f"the origin {DROPLET}" in message and "proxied" in message
    assert "certificate" in message


def test_a_proxied_name_fails_while_cloudflare_holds_another_address(world):
    world.zone(proxied=True)
    world.saved = {}
    cutover(records=[NAME], new_ip="10.213.79.99", client=world.client, saved=world.saved)
    with pytest.raises(PhoenixError, match=rf"Cloudflare holds 10\.213\.79\.99 for {NAME}, "
                                           rf"not {DROPLET}: run the cutover again"):
        world.check()


def test_a_name_no_longer_proxied_is_checked_as_a_direct_one(world):
    world.zone(proxied=True)
    world.cut_over()
    zone_id, record_id = world.saved[NAME]["zone_id"], world.saved[NAME]["record_id"]
    world.client.dns.records.edit(record_id, zone_id=zone_id, name=NAME, type="A",
                                  content=DROPLET, ttl=300, proxied=False)
    detail = world.check()
    assert "proxied" not in detail and f"DNS via {world.resolver}" in detail


def test_a_direct_name_must_resolve_to_the_droplet(world):
    world.zone(proxied=False)
    world.saved = {}
    cutover(records=[NAME], new_ip="10.213.79.99", client=world.client, saved=world.saved)
    with pytest.raises(PhoenixError, match=rf"resolves to 10\.213\.79\.99 at .*, not {DROPLET}"):
        world.check()  # the origin answers, but users are sent elsewhere
    world.cut_over()
    assert f"HTTP/2 200 from {DROPLET} (DNS via {world.resolver})" in world.check()
