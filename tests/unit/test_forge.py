"""phoenix.forge.api against the Gitea stand-in behind a TLS front: the drill's snapshot sees
writes and losses of every kind a user would miss, and a 2FA login that a wrong SECRET_KEY
breaks; the forge is reached by address with TLS for its name, and a certificate from another
CA or for another name is refused with a clear error."""

from __future__ import annotations

import base64
import hashlib
import socket
import sqlite3
import ssl
import struct
import subprocess
import threading
import zlib
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError
from phoenix.forge.api import Forge as RealForge
from phoenix.forge.api import TwoFactorUser, compare, snapshot, tally, totp
from phoenix.forge.tls import served_certificate
from phoenix.lab import fixtures
from tests.unit.lab.test_standins import Forge as Host
from tests.unit.lab.test_standins import started

TOKEN = "forge-test-token-0123456789"
OTP_SECRET = base64.b32encode(b"drill-otp-secret-20b").decode().rstrip("=")
EZRA = TwoFactorUser("ezra", fixtures.password_of("ezra"), OTP_SECRET)


def png(seed: int) -> bytes:
    """A small valid PNG (1x1, one grey level)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes([0, seed % 256]))) + chunk(b"IEND", b""))

NAME = "forge.test"


def make_ca(folder: Path, label: str, names: list[str]) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) made with openssl."""
    folder.mkdir(parents=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "cert.pem", folder / "key.pem", folder / "req.csr"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ext = folder / "ext"
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n")
    for cmd in (["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
                 "-subj", f"/CN={label} CA"],
                ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={names[0]}"],
                ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert]):
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    return ca, cert, key


class TLSFront:
    """A TLS terminator on 127.0.0.1 in front of a plain-HTTP port (Caddy's place)."""

    def __init__(self, cert: Path, key: Path, backend_port: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.backend = backend_port
        self.sock = socket.create_server(("127.0.0.1", 0))
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
        back = socket.create_connection(("127.0.0.1", self.backend))
        threading.Thread(target=_pump, args=(back, tls), daemon=True).start()
        _pump(tls, back)

    def close(self) -> None:
        self.sock.close()


def _pump(src: socket.socket, dest: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dest.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dest):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    return {"good": make_ca(root / "good", "forge", [NAME]),
            "other": make_ca(root / "other", "other", [NAME]),
            "wrong-name": make_ca(root / "wrong-name", "forge", ["elsewhere.test"])}


@pytest.fixture
def host(tmp_path, pki):
    folder = tmp_path / "backup"
    fixtures.make_gitea_backup(folder, repos=2, issues_per_repo=3)
    h = Host(tmp_path / "host", folder)
    # Gitea's links name the forge by ROOT_URL, which does not resolve from the operator's
    # side before the cutover (as in the drill): the client must still follow them.
    h.write_ini(lfs=True, root_url=f"http://forge.lab.invalid:{h.port}/")
    fixtures.add_api_token(h.db, "timmy", TOKEN)
    with sqlite3.connect(h.db) as conn:
        conn.executescript(fixtures.enroll_totp_sql(secret_key="lab-secret-key-one", uid=2,
                                                    otp_secret=OTP_SECRET))
    ca, cert, key = pki["good"]
    front = TLSFront(cert, key, h.port)
    h.address = f"127.0.0.1:{front.port}"
    h.trust = str(ca)
    with started("gitea", "web", "--config", str(h.ini)):
        yield h
    front.close()


def Forge(host, **kwargs):  # the forge behind the TLS front, as the drill sees it
    return RealForge(NAME, address=host.address, trust=host.trust, **kwargs)


def test_snapshot_sees_every_repository_branch_and_issue(host):
    snap = snapshot(Forge(host))
    assert len(snap["repositories"]) == 2
    assert len(snap["issues"]) == len(snap["issue bodies"]) == 6
    assert all(sha for sha in snap["branches"].values())


def test_compare_reports_an_issue_written_after_the_snapshot_as_missing(host):
    forge = Forge(host, token=TOKEN)
    before = snapshot(forge)
    name = next(iter(before["repositories"]))
    created = forge.create_issue(name, "written after the backup")
    forge.close_issue(name, created["number"])
    after = snapshot(forge)
    assert compare(before, after) == []
    lost = compare(after, before)
    key = f"{name}#{created['number']}"
    assert lost == [f"issues: {key} is missing", f"issue bodies: {key} is missing"]


def test_snapshot_fingerprints_comments_attachments_avatars_lfs_and_logins(host):
    forge = Forge(host, token=TOKEN)
    name = "Timmy_Foundation/timmy-config"
    issue = forge.create_issue(name, "with everything", "the body a user wrote")
    comment = forge.create_comment(name, issue["number"], "a comment")
    asset = forge.attach(name, issue["number"], "drill.log", b"log line\n" * 100)
    forge.set_avatar(png(7))
    oid = forge.lfs_upload(name, b"large file content " * 1000)
    lfs = {name: {oid: len(b"large file content " * 1000)}}
    snap = snapshot(forge, lfs=lfs, two_factor=[EZRA])

    key = f"{name}#{issue['number']}"
    assert snap["comments"][f"{key} comment {comment['id']}"]
    assert list(snap["attachments"]) == [f"{key} drill.log ({asset['uuid']})"]
    assert snap["avatars"] == {"timmy": hashlib.sha256(png(7)).hexdigest()}
    assert snap["lfs objects"] == {f"{name} {oid[:12]}": oid}  # its sha256 is its oid
    assert snap["logins"] == {"the API token": "logs in as timmy",
                              "2FA login of ezra with a TOTP code": "works"}
    # What was lost is named by kind, and the tally counts each kind
    damaged = {k: dict(v) for k, v in snap.items()}
    damaged["attachments"] = {k: "0" * 64 for k in snap["attachments"]}
    del damaged["comments"][f"{key} comment {comment['id']}"]
    table = tally(snap, damaged)
    assert table["attachments"]["same"] == 0 and table["attachments"]["compared"] == 1
    assert table["comments"]["lost"] == [f"comments: {key} comment {comment['id']} is missing"]
    assert table["issues"]["lost"] == []
    # Issue 21: a branch that came back newer holds its old head: not lost; another head is
    moved = {k: dict(v) for k, v in snap.items()}
    branch, old = next(iter(snap["branches"].items()))
    moved["branches"][branch] = "a" * 40
    assert tally(snap, moved, descends=lambda b, o, n: (b, o, n) == (branch, old, "a" * 40)
                 )["branches"]["lost"] == []
    assert tally(snap, moved, descends=lambda b, o, n: False)["branches"]["lost"] == [
        f"branches: {branch}: {old} before, {'a' * 40} after"]


def test_a_wrong_secret_key_breaks_the_2fa_login(host, pki):
    """The recovered host's SECRET_KEY must be the forge's: another one cannot decrypt the
    TOTP secret, so the 2FA comparison fails."""
    before = snapshot(Forge(host), two_factor=[EZRA])
    assert before["logins"]["2FA login of ezra with a TOTP code"] == "works"
    # The same data served by a Gitea whose app.ini has another SECRET_KEY (a new port)
    (host.root.parent / "again").mkdir()
    again = Host(host.root.parent / "again", None)
    again.data, again.db, again.repos = host.data, host.db, host.repos
    again.write_ini(lfs=True, secret_key="a-different-secret-key")
    ca, cert, key = pki["good"]
    front = TLSFront(cert, key, again.port)
    again.address, again.trust = f"127.0.0.1:{front.port}", str(ca)
    try:
        with started("gitea", "web", "--config", str(again.ini)):
            after = snapshot(Forge(again), two_factor=[EZRA])
    finally:
        front.close()
    assert compare(before, after) == [
        "logins: 2FA login of ezra with a TOTP code: works before, refused (401) after"]


def test_basic_auth_needs_the_current_totp_code(host):
    forge = Forge(host)
    assert forge.login_status("ezra", EZRA.password, totp(OTP_SECRET)) == 200
    assert forge.login_status("ezra", EZRA.password, None) == 401
    wrong = f"{(int(totp(OTP_SECRET)) + 1) % 1_000_000:06d}"
    assert forge.login_status("ezra", EZRA.password, wrong) == 401
    assert forge.login_status("ezra", "not-the-password", totp(OTP_SECRET)) == 401
    # a user without 2FA needs no code; a token works as the basic password
    assert forge.login_status("allegro", fixtures.password_of("allegro"), None) == 200
    assert forge.login_status("timmy", TOKEN, None) == 200


def test_lfs_needs_its_media_type_and_write_access(host):
    import requests

    url = f"{host.url}/Timmy_Foundation/timmy-config.git/info/lfs/objects/batch"
    body = {"operation": "upload", "objects": [{"oid": "a" * 64, "size": 1}]}
    assert requests.post(url, json=body, timeout=10).status_code == 415
    refused = requests.post(url, json=body, timeout=10,
                            headers={"Accept": "application/vnd.git-lfs+json"})
    assert refused.status_code == 401 and "LFS-Authenticate" in refused.headers
    missing = Forge(host, token=TOKEN).lfs_download("Timmy_Foundation/timmy-config",
                                                        "b" * 64, 3)
    assert missing is None


def test_a_wrong_token_is_a_clear_error(host):
    name = next(iter(snapshot(Forge(host))["repositories"]))
    with pytest.raises(PhoenixError, match="rejected the API token"):
        Forge(host, token="wrong-token").create_issue(name, "x")


def test_a_certificate_from_another_ca_is_refused(host, pki):
    forge = RealForge(NAME, address=host.address, trust=str(pki["other"][0]), token=TOKEN)
    with pytest.raises(PhoenixError, match="TLS failed.*certificate verify failed"):
        forge.version()


def test_a_certificate_for_another_name_is_refused(host, pki, tmp_path):
    ca, cert, key = pki["wrong-name"]
    front = TLSFront(cert, key, int(host.address.rsplit(":", 1)[1]))
    try:
        forge = RealForge(NAME, address=f"127.0.0.1:{front.port}", trust=str(ca))
        with pytest.raises(PhoenixError, match="TLS failed"):
            forge.version()
    finally:
        front.close()


def _closed_port() -> int:
    with socket.socket() as probe:  # bound, never listening: a connection is refused
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_served_certificate_is_told_by_its_digest(host, pki):
    """What the drill compares: the recovered forge's certificate against the primary's."""
    ip, port = host.address.rsplit(":", 1)
    der = ssl.PEM_cert_to_DER_cert(pki["good"][1].read_text())
    assert served_certificate(ip, NAME, port=int(port)) == hashlib.sha256(der).hexdigest()
    with pytest.raises(PhoenixError, match="no TLS answer for"):
        served_certificate(ip, NAME, port=_closed_port(), timeout=2)


@pytest.fixture
def dns_for(tmp_path):
    """A lab DNS server answering NAME with the address given."""
    from phoenix.lab.cloudflare.dnsserver import DNSServer
    from phoenix.lab.cloudflare.zones import Zones

    servers = []

    def make(ip: str) -> str:
        zones = Zones({"test": [{"name": NAME, "type": "A", "content": ip, "ttl": 60}]})
        server = DNSServer(zones).start()
        servers.append(server)
        return f"127.0.0.1:{server.port}"

    yield make
    for server in servers:
        server.stop()


def _settings(host, resolver: str) -> dict:
    return {"gitea_domain": NAME, "https_trust_bundle": host.trust,
            "dns_resolvers": [resolver]}


def test_step_9_1_wants_http2_200(host, dns_for):
    """The front speaks HTTP/1.1 only: a 200, but not the runbook's `HTTP/2 200`."""
    from phoenix.cutover.after import check_after_cutover

    port = int(host.address.rsplit(":", 1)[1])
    with pytest.raises(PhoenixError, match="answered 'HTTP/1.1 200 OK', not 'HTTP/2 200'"):
        check_after_cutover(_settings(host, dns_for("127.0.0.1")), "127.0.0.1", timeout=0,
                            port=port, say=lambda _: None)


def test_step_9_1_wants_the_name_to_resolve_to_the_new_host(host, dns_for):
    from phoenix.cutover.after import check_after_cutover

    port = int(host.address.rsplit(":", 1)[1])
    with pytest.raises(PhoenixError, match=r"resolves to 10\.0\.0\.9 at .*, not 127\.0\.0\.1"):
        check_after_cutover(_settings(host, dns_for("10.0.0.9")), "127.0.0.1", timeout=0,
                            port=port, say=lambda _: None)


def test_step_9_1_refuses_a_certificate_from_another_ca(host, dns_for, pki):
    from phoenix.cutover.after import check_after_cutover

    port = int(host.address.rsplit(":", 1)[1])
    settings = {**_settings(host, dns_for("127.0.0.1")), "https_trust_bundle": str(pki["other"][0])}
    with pytest.raises(PhoenixError, match="curl .* failed"):
        check_after_cutover(settings, "127.0.0.1", timeout=0, port=port, say=lambda _: None)


def test_snapshot_lists_system_webhooks_and_a_missing_one_is_lost(host):
    forge = Forge(host, token=TOKEN)
    hook = forge._call("POST", "/admin/hooks", json={
        "type": "gitea", "active": True, "events": ["issues"],
        "config": {"url": "http://127.0.0.11:8651/webhooks/gitea-issues",
                   "content_type": "json", "secret": "s"}})
    before = snapshot(forge)
    assert before["webhooks"] == {
        "system webhook to http://127.0.0.11:8651/webhooks/gitea-issues": "issues (active)"}
    forge._call("DELETE", f"/admin/hooks/{hook['id']}")
    assert compare(before, snapshot(forge)) == [
        "webhooks: system webhook to http://127.0.0.11:8651/webhooks/gitea-issues is missing"]
