"""The Gitea stand-in's answers against Gitea 1.22's API (contracts/gitea/api.json), for
every call Phoenix, the drill and the runbook's gitea-api.sh make: recorded from a run of the
drill's writes and snapshot through phoenix.forge.api, then checked one by one."""

from __future__ import annotations

import json
import sqlite3
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from phoenix.forge.api import Forge, snapshot
from phoenix.lab import fixtures
from tests.contracts import GiteaContract
from tests.unit.lab.test_standins import Forge as Host
from tests.unit.lab.test_standins import started
from tests.unit.test_forge import EZRA, NAME, OTP_SECRET, TOKEN, TLSFront, make_ca, png


def _exchange(response: requests.Response) -> tuple:
    request = response.request
    url = urlsplit(request.url)
    body = request.body
    kind = request.headers.get("Content-Type", "")
    if body is not None and ("json" in kind):
        body = json.loads(body)
    elif body is not None:
        body = None  # multipart or LFS content: not JSON, checked by the route itself
    try:
        answer = response.json() if response.content else None
    except ValueError:
        answer = response.content
    return (request.method, url.path, parse_qs(url.query), body, response.status_code, answer)


@pytest.fixture(scope="module")
def exchanges(tmp_path_factory) -> list[tuple]:
    root = tmp_path_factory.mktemp("contract")
    fixtures.make_gitea_backup(root / "backup", repos=2, issues_per_repo=2)
    host = Host(root / "host", root / "backup")
    host.write_ini(lfs=True)
    fixtures.add_api_token(host.db, "timmy", TOKEN)
    with sqlite3.connect(host.db) as conn:
        conn.executescript(fixtures.enroll_totp_sql(secret_key="lab-secret-key-one", uid=2,
                                                    otp_secret=OTP_SECRET))
    seen: list[tuple] = []
    ca, cert, key = make_ca(root / "pki", "forge", [NAME])
    front = TLSFront(cert, key, host.port)  # Caddy's place: the forge is HTTPS only
    with started("gitea", "web", "--config", str(host.ini)):
        forge = Forge(NAME, address=f"127.0.0.1:{front.port}", trust=str(ca), token=TOKEN)
        forge.session.hooks["response"].append(lambda r, *a, **k: seen.append(_exchange(r)))
        name = "Timmy_Foundation/timmy-config"
        forge.version()
        issue = forge.create_issue(name, "contract", "a body")
        forge.create_comment(name, issue["number"], "a comment")
        forge.attach(name, issue["number"], "contract.log", b"x\n" * 10)
        forge.set_avatar(png(1))
        content = b"lfs content\n" * 100
        oid = forge.lfs_upload(name, content)
        forge.close_issue(name, issue["number"])
        for served in (f"/repos/{name}/issues/{issue['number']}",  # served, not used by Phoenix
                       f"/repos/{name}/issues/{issue['number']}/assets", "/users/ezra"):
            forge._call("GET", served)
        hook = forge._call("POST", "/admin/hooks", json={  # what dispatch's rows stand for
            "type": "gitea", "active": True, "events": ["issues"],
            "config": {"url": "http://127.0.0.11:8651/webhooks/gitea-issues",
                       "content_type": "json", "secret": "contract"}})
        forge._call("GET", f"/admin/hooks/{hook['id']}")
        snapshot(forge, lfs={name: {oid: len(content)}}, two_factor=[EZRA])
        forge._call("DELETE", f"/admin/hooks/{hook['id']}")
        # the failures Phoenix turns into messages
        for bad in (lambda: forge.create_issue("nobody/nothing", "x"),
                    lambda: forge.create_comment(name, 999, "x")):
            with pytest.raises(Exception):  # noqa: B017 -- PhoenixError, recorded above
                bad()
    front.close()
    return seen


def test_every_exchange_keeps_to_gitea_1_22s_api(exchanges):
    contract = GiteaContract()
    problems = [p for ex in exchanges for p in contract.check(*ex)]
    assert not problems, "\n".join(problems)


def test_the_recorded_run_covers_the_routes_phoenix_uses(exchanges):
    contract = GiteaContract()
    used = set()
    for method, path, *_ in exchanges:
        used |= {key for m, pattern, key, _op in contract.operations
                 if m == method and pattern.match(path)}
    assert used == set(contract.spec["operations"]), sorted(set(contract.spec["operations"])
                                                            - used)
    statuses = {status for *_, status, _answer in exchanges}
    assert {200, 201, 204, 404} <= statuses


def test_the_contract_refuses_a_field_gitea_does_not_have():
    contract = GiteaContract()
    answer = {"version": "1.22.3", "build": "lab"}
    assert contract.check("GET", "/api/v1/version", {}, None, 200, answer) == [
        "GET /api/v1/version -> 200: answer: (top): Additional properties are not allowed "
        "('build' was unexpected)"]
    assert contract.check("GET", "/api/v1/nothing", {}, None, 200, {}) == [
        "GET /api/v1/nothing -> 200: not an operation of the contract"]
