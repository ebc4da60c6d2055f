"""The forge's certificate over ACME DNS-01 (phoenix/forge/dns01.py) and its place in Caddy's
storage (phoenix/forge/caddycert.py), against Debian's real Pebble, the lab's Cloudflare API
(real `cloudflare` SDK) and its authoritative DNS server, all on loopback. Pebble resolves the
challenge through that DNS server and validates for real (PEBBLE_VA_ALWAYS_VALID unset)."""

from __future__ import annotations

import datetime

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from phoenix.cutover.dns import make_client
from phoenix.errors import PhoenixError
from phoenix.forge import caddycert, dns01
from phoenix.lab.cloudflare.api import make_server
from phoenix.lab.cloudflare.dnsserver import DNSServer
from phoenix.lab.cloudflare.zones import Zones

TOKEN = "cf-dns01-token-3b8e1f"
READ_ONLY = "cf-dns01-readonly-9d2c4a"  # Zone:Read and DNS:Read, no DNS:Edit
NAME = "forge.lab.test"
OLD = "10.213.78.10"  # the dead forge: DNS keeps pointing there

pytestmark = pytest.mark.skipif(not shutil.which("pebble"), reason="Debian's pebble is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listener_cert(folder: Path) -> tuple[Path, Path, Path]:
    """(CA, certificate for 127.0.0.1, key) for Pebble's own HTTPS, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr, ext = (folder / n for n in ("cert.pem", "key.pem", "req.csr", "ext"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for cmd in (["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
                 "-subj", "/CN=test Pebble listener CA"],
                ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
                ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert]):
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    return ca, cert, key


class Pebble:
    """Debian's pebble on loopback, resolving through `dns_port`."""

    def __init__(self, folder: Path, dns_port: int) -> None:
        self.ca, cert, key = listener_cert(folder)
        self.acme, self.management = free_port(), free_port()
        config = folder / "pebble.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.acme}",
            "managementListenAddress": f"127.0.0.1:{self.management}",
            "certificate": str(cert), "privateKey": str(key),
            "httpPort": free_port(), "tlsPort": free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEBBLE_")}
        env["PEBBLE_VA_SLEEPTIME"] = "1"
        self.log = folder / "pebble.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                ["pebble", "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.acme), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.management), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.1)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.acme}/dir"

    def root(self) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(f"https://127.0.0.1:{self.management}/roots/0",
                                    context=context, timeout=5) as answer:
            return answer.read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The lab's Cloudflare (API and its name server) and two Pebbles: one resolving through
    that name server, one through another that has never heard of the record (a CA that
    cannot see the challenge)."""
    zones = Zones({"lab.test": [{"name": NAME, "type": "A", "content": OLD, "ttl": 300}]})
    api = make_server(token=TOKEN, read_token=READ_ONLY, zones=zones).start()
    dns = DNSServer(zones).start()
    elsewhere = DNSServer(Zones({"lab.test": []})).start()
    tmp = tmp_path_factory.mktemp("pebble")
    pebble = Pebble(tmp / "good", dns.port)
    blind = Pebble(tmp / "blind", elsewhere.port)
    yield api, dns, pebble, blind
    for stop in (pebble.stop, blind.stop, elsewhere.stop, dns.stop, api.stop):
        stop()


def client(api, token: str = TOKEN):
    return make_client(token=token, base_url=f"http://127.0.0.1:{api.port}/client/v4")


def issue(world, *, pebble=None, name: str = NAME, token: str = TOKEN, **kwargs):
    api, dns, good, _ = world
    ca = pebble or good
    args = {"name": name, "cf": client(api, token), "directory": ca.directory,
            "email": "operator@lab.test", "ca_bundle": str(ca.ca),
            "authoritative": [("127.0.0.1", dns.port)], "resolvers": [("127.0.0.1", dns.port)],
            "timeout": 30, "say": lambda _: None, **kwargs}
    return dns01.issue(**args)


def txt_records(api) -> list[dict]:
    return [r for z in api.zones.zone_list() for r in api.zones.records(z["id"])
            if r["type"] == "TXT"]


def test_a_certificate_over_dns01_while_dns_points_at_the_old_forge(world):
    api, _, pebble, _ = world
    issued = issue(world)
    chain = x509.load_pem_x509_certificates(issued.fullchain_pem.encode())
    names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == [NAME]
    # the chain ends at Pebble's root, and only that root is trusted here
    root = x509.load_pem_x509_certificate(pebble.root())
    chain[-1].verify_directly_issued_by(root)
    assert txt_records(api) == []  # the challenge's TXT record is gone
    (a,) = [r for r in api.zones.records(api.zones.find_zone(NAME)["id"]) if r["type"] == "A"]
    assert a["content"] == OLD  # DNS untouched
    assert issued.account["status"] == "valid"
    assert issued.account["location"].startswith(pebble.directory.rsplit("/", 1)[0])
    assert issued.account["contact"] == ["mailto:operator@lab.test"]


def test_caddy_storage_layout_is_certmagics_for_the_issuer(world):
    _, _, pebble, _ = world
    issued = issue(world)
    files = caddycert.storage_files(issued)
    issuer = f"127.0.0.1-{pebble.acme}-dir"  # certmagic: host:port + path, made Safe
    assert sorted(files) == sorted([
        f"certificates/{issuer}/{NAME}/{NAME}.crt",
        f"certificates/{issuer}/{NAME}/{NAME}.key",
        f"certificates/{issuer}/{NAME}/{NAME}.json",
        f"acme/{issuer}/users/operator@lab.test/operator.json",
        f"acme/{issuer}/users/operator@lab.test/operator.key",
    ])
    meta = json.loads(files[f"certificates/{issuer}/{NAME}/{NAME}.json"])
    assert meta["sans"] == [NAME] and meta["issuer_data"]["url"].startswith("https://127.0.0.1")
    assert files[f"certificates/{issuer}/{NAME}/{NAME}.key"].startswith(b"-----BEGIN EC PRIVATE KEY")
    assert files[f"acme/{issuer}/users/operator@lab.test/operator.key"].startswith(
        b"-----BEGIN RSA PRIVATE KEY")


def test_issuer_keys_and_safe_names_as_certmagic_makes_them():
    assert caddycert.issuer_key("https://acme-v02.api.letsencrypt.org/directory") == (
        "acme-v02.api.letsencrypt.org-directory")
    assert caddycert.safe(caddycert.issuer_key("https://10.213.82.1:14000/dir")) == (
        "10.213.82.1-14000-dir")
    assert caddycert.safe("*.Example.com") == "wildcard_.example.com"
    assert caddycert.safe("a/../b") == "ab"


def test_a_ca_that_cannot_see_the_record_refuses_in_one_line_and_no_txt_is_left(world):
    api, _, _, blind = world
    with pytest.raises(PhoenixError) as refused:
        issue(world, pebble=blind)
    line = str(refused.value)
    assert "\n" not in line
    assert line.startswith(f"the ACME CA refused the DNS-01 challenge for {NAME}: ")
    assert line.endswith("; no TXT record left")
    assert txt_records(api) == []


def test_a_ca_that_does_not_answer_times_out_in_one_line(world, tmp_path):
    api = world[0]
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True).start()
    directory = f"https://127.0.0.1:{silent.getsockname()[1]}/dir"
    started = time.monotonic()
    try:
        with pytest.raises(PhoenixError) as late:
            issue(world, directory=directory, timeout=2)
    finally:
        silent.close()
    assert time.monotonic() - started < 10
    assert str(late.value) == f"the ACME CA at {directory} did not answer in time (ReadTimeout)"
    assert txt_records(api) == []


def test_a_token_without_dns_edit_is_refused_in_one_line_and_no_txt_is_left(world):
    api = world[0]
    with pytest.raises(PhoenixError) as refused:
        issue(world, token=READ_ONLY)
    line = str(refused.value)
    assert "\n" not in line and READ_ONLY not in line
    assert "Cloudflare rejected the API token" in line and "DNS:Edit" in line
    assert txt_records(api) == []


def test_a_name_in_no_zone_is_refused_before_the_ca_is_asked(world):
    api = world[0]
    with pytest.raises(PhoenixError, match="No Cloudflare zone this token can see holds "
                                           "forge.other.test"):
        issue(world, name="forge.other.test", directory="https://127.0.0.1:1/dir")
    assert txt_records(api) == []


def test_a_restored_certificate_counts_only_when_validation_would_trust_it(world, tmp_path):
    _, _, pebble, _ = world
    issued = issue(world)
    chain = x509.load_pem_x509_certificates(issued.fullchain_pem.encode())
    root = tmp_path / "root.pem"
    root.write_bytes(pebble.root())
    assert caddycert.untrusted(chain, NAME, str(root)) is None
    # the same certificate against another CA (an older lab's Pebble, a CA the operator no
    # longer trusts) and against the system's store: refused, with the reason
    other = tmp_path / "other.pem"
    other.write_bytes(pebble.ca.read_bytes())
    assert caddycert.untrusted(chain, NAME, str(other)).startswith(
        "not trusted by https_trust_bundle (")
    assert caddycert.untrusted(chain, NAME, None).startswith("not trusted by the system store (")
    assert caddycert.untrusted(chain, "other.lab.test", str(root)) is not None
    left = (chain[0].not_valid_after_utc - datetime.datetime.now(datetime.UTC)).days
    assert abs(caddycert.days_left(chain) - left) < 1
