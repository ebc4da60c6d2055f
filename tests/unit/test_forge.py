"""phoenix.forge against the Gitea stand-in: the drill's snapshot sees writes and losses of
every kind a user would miss, and a 2FA login that a wrong SECRET_KEY breaks."""

from __future__ import annotations

import base64
import sqlite3
import struct
import zlib

import pytest

from phoenix.errors import PhoenixError
from phoenix.forge import Forge, TwoFactorUser, compare, snapshot, tally, totp
from phoenix.lab import fixtures
from tests.unit.test_standins import Forge as Host
from tests.unit.test_standins import started

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


@pytest.fixture
def host(tmp_path):
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
    with started("gitea", "web", "--config", str(h.ini)):
        yield h


def test_snapshot_sees_every_repository_branch_and_issue(host):
    snap = snapshot(Forge(host.url))
    assert len(snap["repositories"]) == 2
    assert len(snap["issues"]) == len(snap["issue bodies"]) == 6
    assert all(sha for sha in snap["branches"].values())


def test_compare_reports_an_issue_written_after_the_snapshot_as_missing(host):
    forge = Forge(host.url, token=TOKEN)
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
    forge = Forge(host.url, token=TOKEN)
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
    assert snap["avatars"] == {"timmy": fixtures.hashlib.sha256(png(7)).hexdigest()}
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


def test_a_wrong_secret_key_breaks_the_2fa_login(host):
    """The recovered host's SECRET_KEY must be the forge's: another one cannot decrypt the
    TOTP secret, so the 2FA comparison fails."""
    before = snapshot(Forge(host.url), two_factor=[EZRA])
    assert before["logins"]["2FA login of ezra with a TOTP code"] == "works"
    # The same data served by a Gitea whose app.ini has another SECRET_KEY (a new port)
    (host.root.parent / "again").mkdir()
    again = Host(host.root.parent / "again", None)
    again.data, again.db, again.repos = host.data, host.db, host.repos
    again.write_ini(lfs=True, secret_key="a-different-secret-key")
    with started("gitea", "web", "--config", str(again.ini)):
        after = snapshot(Forge(again.url), two_factor=[EZRA])
    assert compare(before, after) == [
        "logins: 2FA login of ezra with a TOTP code: works before, refused (401) after"]


def test_basic_auth_needs_the_current_totp_code(host):
    forge = Forge(host.url)
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
    missing = Forge(host.url, token=TOKEN).lfs_download("Timmy_Foundation/timmy-config",
                                                        "b" * 64, 3)
    assert missing is None


def test_a_wrong_token_is_a_clear_error(host):
    name = next(iter(snapshot(Forge(host.url))["repositories"]))
    with pytest.raises(PhoenixError, match="rejected the API token"):
        Forge(host.url, token="wrong-token").create_issue(name, "x")
