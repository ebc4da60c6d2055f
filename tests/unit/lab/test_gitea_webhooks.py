"""The Gitea stand-in's webhooks, held to 1.22: the tables, one hook task per event and hook,
one delivery each with 1.22's headers and signature, ALLOWED_HOST_LIST, no retries."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import sqlite3
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from phoenix.lab import fixtures
from tests.unit.lab.test_standins import Forge, backup, started  # noqa: F401 -- fixture

TOKEN = "lab-" + uuid.uuid4().hex
SECRET = "lab-hook-" + uuid.uuid4().hex
ISSUES = "/repos/Timmy_Foundation/timmy-config/issues"
gitea = fixtures.standin_module("gitea")


@contextlib.contextmanager
def receiver(status: int = 202):
    """An HTTP server on loopback that records every request (headers, body)."""
    got: list[tuple[dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append((dict(self.headers), body))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/gitea", got
    finally:
        server.shutdown()
        server.server_close()


def with_webhook_section(forge: Forge, allowed: str | None) -> None:
    if allowed is not None:
        section = f"\n[webhook]\nALLOWED_HOST_LIST = {allowed}\n"
        forge.ini.write_text(forge.ini.read_text() + section)


def add_hook(forge: Forge, url: str, **extra) -> dict:
    body = {"type": "gitea", "active": True, "events": ["issues"],
            "config": {"url": url, "content_type": "json", "secret": SECRET}, **extra}
    status, hook, _ = forge.api("POST", "/admin/hooks", body, token=TOKEN)
    assert status == 201, hook
    return hook


def tasks(forge: Forge) -> list[sqlite3.Row]:
    with contextlib.closing(sqlite3.connect(forge.db)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM hook_task ORDER BY id").fetchall()


def wait_delivered(forge: Forge, count: int, timeout: float = 15) -> list[sqlite3.Row]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = tasks(forge)
        if len(rows) >= count and all(r["is_delivered"] for r in rows):
            return rows
        time.sleep(0.1)
    pytest.fail(f"hook tasks not delivered in {timeout} s: {[dict(r) for r in tasks(forge)]}")


@pytest.fixture
def forge(tmp_path, backup):  # noqa: F811 -- the module fixture above
    forge = Forge(tmp_path, backup[0])
    fixtures.add_api_token(forge.db, "timmy", TOKEN)
    return forge


def test_an_issue_event_is_delivered_once_signed_with_giteas_and_githubs_headers(forge):
    with_webhook_section(forge, "loopback")
    with receiver() as (url, got), started("gitea", "web", "--config", str(forge.ini)):
        hook = add_hook(forge, url)
        assert hook["events"] == ["issues"] and "secret" not in json.dumps(hook)
        assert forge.api("GET", "/admin/hooks", token=TOKEN)[1][0]["id"] == hook["id"]
        status, issue, _ = forge.api("POST", ISSUES, {"title": "Dispatch me"}, token=TOKEN)
        assert status == 201
        (task,) = wait_delivered(forge, 1)
    assert len(got) == 1
    headers, body = got[0]
    assert task["is_succeed"] == 1 and task["payload_version"] == 2
    assert body == task["payload_content"].encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == f"sha256={digest}"
    assert headers["X-Gitea-Signature"] == digest
    assert headers["X-Gitea-Event"] == headers["X-GitHub-Event"] == "issues"
    assert headers["X-GitHub-Delivery"] == headers["X-Gitea-Delivery"] == task["uuid"]
    payload = json.loads(body)
    assert payload["action"] == "opened" and payload["number"] == issue["number"]
    assert payload["issue"]["title"] == "Dispatch me"
    assert payload["repository"]["full_name"] == "Timmy_Foundation/timmy-config"
    assert json.loads(task["response_content"])["status"] == 202


def test_the_default_allowed_host_list_refuses_loopback_and_nothing_is_retried(forge):
    with_webhook_section(forge, None)  # 1.22's default: external only
    with receiver() as (url, got), started("gitea", "web", "--config", str(forge.ini)):
        add_hook(forge, url)
        assert forge.api("POST", ISSUES, {"title": "Refused"}, token=TOKEN)[0] == 201
        (task,) = wait_delivered(forge, 1)
        time.sleep(1.5)
    assert got == [] and len(tasks(forge)) == 1
    assert task["is_succeed"] == 0
    body = json.loads(task["response_content"])["body"]
    assert "webhook can only call allowed HTTP servers" in body
    assert "webhook.ALLOWED_HOST_LIST" in body


def test_a_failed_delivery_is_not_retried(forge):
    with_webhook_section(forge, "127.0.0.1/32")
    with receiver(status=500) as (url, got), started("gitea", "web", "-c", str(forge.ini)):
        add_hook(forge, url)
        forge.api("POST", ISSUES, {"title": "Fails"}, token=TOKEN)
        (task,) = wait_delivered(forge, 1)
        time.sleep(1.5)
    assert len(got) == 1 and task["is_succeed"] == 0


def test_undelivered_tasks_go_out_at_start_and_closing_sends_closed(forge):
    with_webhook_section(forge, "loopback")
    with receiver() as (url, got):
        with started("gitea", "web", "-c", str(forge.ini)):
            add_hook(forge, url)
        with contextlib.closing(sqlite3.connect(forge.db)) as conn, conn:  # as a crash leaves it
            conn.execute(
                "INSERT INTO hook_task (hook_id, uuid, payload_content, payload_version, "
                "event_type, is_delivered, delivered, is_succeed, request_content, "
                "response_content) VALUES (1, 'left-over', '{}', 2, 'issues', 0, 0, 0, '', '')")
        with started("gitea", "web", "-c", str(forge.ini)):
            wait_delivered(forge, 1)
            forge.api("PATCH", f"{ISSUES}/1", {"state": "closed"}, token=TOKEN)
            wait_delivered(forge, 2)
    assert [h["X-GitHub-Delivery"] for h, _ in got][0] == "left-over"
    assert json.loads(got[1][1])["action"] == "closed"


def test_an_older_database_gains_the_webhook_tables_at_start(forge):
    with contextlib.closing(sqlite3.connect(forge.db)) as conn, conn:
        conn.execute("DROP TABLE hook_task")
        conn.execute("DROP TABLE webhook")
    with started("gitea", "web", "-c", str(forge.ini)):
        assert forge.api("GET", "/admin/hooks", token=TOKEN)[:2] == (200, [])
    with contextlib.closing(sqlite3.connect(forge.db)) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"webhook", "hook_task", "UQE_hook_task_uuid"} <= names


def test_the_authorization_header_is_encrypted_under_secret_key(forge):
    with_webhook_section(forge, "loopback")
    with receiver() as (url, got), started("gitea", "web", "-c", str(forge.ini)):
        add_hook(forge, url, authorization_header="Bearer lab-header")
        forge.api("POST", ISSUES, {"title": "With a header"}, token=TOKEN)
        wait_delivered(forge, 1)
    assert got[0][0]["Authorization"] == "Bearer lab-header"
    with contextlib.closing(sqlite3.connect(forge.db)) as conn:
        stored = conn.execute("SELECT header_authorization_encrypted FROM webhook").fetchone()[0]
    assert "lab-header" not in stored
    assert gitea.decrypt_secret("lab-secret-key-one", stored) == "Bearer lab-header"
    with pytest.raises(ValueError, match="SECRET_KEY"):
        gitea.decrypt_secret("another-key", stored)
    empty = gitea.encrypt_secret(gitea.DEFAULT_SECRET_KEY, "x")
    assert gitea.decrypt_secret(gitea.DEFAULT_SECRET_KEY, empty) == "x"


@pytest.mark.parametrize(
    ("allowed", "address", "admitted"),
    [
        ("external", "127.0.0.1", False),
        ("external", "10.1.2.3", False),
        ("external", "93.184.216.34", True),
        ("private", "10.1.2.3", True),
        ("loopback", "127.0.0.12", True),
        ("127.0.0.11/32,127.0.0.12/32", "127.0.0.13", False),
        ("127.0.0.11/32,127.0.0.12/32", "127.0.0.12", True),
        ("*", "10.0.0.1", True),
    ],
)
def test_host_match_list_as_hostmatcher(allowed, address, admitted):
    import ipaddress

    matcher = gitea.HostMatchList("webhook.ALLOWED_HOST_LIST", allowed)
    assert matcher.match(address, ipaddress.ip_address(address)) is admitted


def test_regenerate_hooks_walks_the_rows_not_the_disk(forge):
    """1.22's SyncRepositoryHooks: a row whose git data is missing gets a hooks folder; a
    repository on disk that no row names is left as it was."""
    import shutil
    import subprocess

    from tests.unit.lab.test_standins import run

    gone = forge.repos / "timmy" / "the-nexus.git"
    shutil.rmtree(gone)
    stray = forge.repos / "nobody" / "stray.git"
    subprocess.run(["git", "init", "-q", "--bare", str(stray)], check=True)
    result = run("gitea", "admin", "regenerate", "hooks", "-c", str(forge.ini))
    assert result.returncode == 0, result.stderr
    assert (gone / "hooks" / "post-receive.d" / "gitea").is_file()
    assert not (gone / "HEAD").exists()
    assert "has a row but no git data" in result.stderr
    assert not (stray / "hooks" / "post-receive.d").exists()
