"""Runbook step 9.4, "file a simple issue and watch dispatch" (tasks/dispatch.py): an issue
filed through the API reaches every wizard house through Gitea's webhook, signed, and the
wizard runs on it: a session in the house's state.db, keyed by Gitea's delivery id, whose
prompt holds the issue's title and which has an answer. The issue is closed again."""

from __future__ import annotations

import json
import secrets
import shlex
import time

import pytest

from phoenix import dispatch

from .api import _call
from .helpers import DISPATCH_ISSUE_TITLE, house_home

# Run on the host as root (python3, read only): what Gitea did with the issue's event for each
# house (its webhook row, its hook task and the answer) and what the house kept of it.
PROBE = r"""
import json, sqlite3, sys
spec = json.loads(sys.argv[1])
def ro(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
gitea = ro(spec["gitea_db"])
issue = gitea.execute("SELECT id, created_unix FROM issue WHERE name = ?",
                      (spec["title"],)).fetchone()
out = {"issue_created": issue[1] if issue else None, "houses": {}}
for house in spec["houses"]:
    found = {"hook": None, "task": None, "session": None}
    hook = gitea.execute(
        "SELECT id, is_active FROM webhook WHERE url = ? AND is_system_webhook = 1 "
        "ORDER BY id LIMIT 1", (house["url"],)).fetchone()
    if hook:
        found["hook"] = {"id": hook[0], "active": bool(hook[1])}
        task = gitea.execute(
            "SELECT uuid, is_delivered, is_succeed, response_content FROM hook_task "
            "WHERE hook_id = ? AND payload_content LIKE ? ORDER BY id DESC LIMIT 1",
            (hook[0], "%" + spec["nonce"] + "%")).fetchone()
        if task:
            try:
                answer = json.loads(task[3] or "{}")
            except ValueError:
                answer = {}
            found["task"] = {"uuid": task[0], "delivered": bool(task[1]),
                             "succeed": bool(task[2]), "status": answer.get("status", 0),
                             "body": str(answer.get("body", ""))[:300]}
            try:
                state = ro(house["state_db"])
                row = state.execute(
                    "SELECT id, started_at FROM sessions WHERE source = 'webhook' AND chat_id = ?",
                    (f"webhook:{house['route']}:{task[0]}",)).fetchone()
                if row:
                    said = [r[0] for r in state.execute(
                        "SELECT role FROM messages WHERE session_id = ? AND "
                        "(role != 'user' OR content LIKE ?) ORDER BY id",
                        (row[0], "%" + spec["title"] + "%"))]
                    answer = state.execute(
                        "SELECT content FROM messages WHERE session_id = ? AND "
                        "role = 'assistant' AND COALESCE(content, '') != '' ORDER BY id DESC",
                        (row[0],)).fetchone()
                    found["session"] = {"id": row[0], "started": row[1],
                                        "prompt_has_title": "user" in said,
                                        "answer": (answer[0] if answer else "")[:300]}
            except sqlite3.Error as exc:
                found["session_error"] = str(exc)
    out["houses"][house["name"]] = found
print(json.dumps(out))
"""


def _probe(host, settings, title: str, nonce: str) -> dict:
    spec = {
        "gitea_db": settings["gitea_db_path"],
        "title": title,
        "nonce": nonce,
        "houses": [
            {
                "name": h.name,
                "url": h.url,
                "route": h.route,
                "state_db": f"{house_home(settings, h.name)}/state.db",
            }
            for h in dispatch.houses(settings)
        ],
    }
    run = host.run(f"python3 -c {shlex.quote(PROBE)} {shlex.quote(json.dumps(spec))}")
    assert run.rc == 0, f"reading Gitea's and the houses' databases failed: {run.stderr[-300:]}"
    return json.loads(run.stdout)


def _done(found: dict) -> bool:
    session = found.get("session") or {}
    return bool(session.get("prompt_has_title") and session.get("answer"))


def _settled(found: dict) -> bool:
    """Done, or past waiting for: no webhook, or a delivery Gitea made and will not retry
    (1.22 delivers each hook task once)."""
    hook, task = found.get("hook"), found.get("task")
    if _done(found) or hook is None or not hook["active"] or task is None:
        return True
    return task["delivered"] and not task["succeed"]


def _cause(host, house: dispatch.House, found: dict, wait: int) -> str:
    """Why one house has no session for the issue, in the words an operator acts on."""
    unit = f"hermes-{house.name}"
    hook, task, session = found.get("hook"), found.get("task"), found.get("session")
    if hook is None:
        return (
            f"{house.name}: Gitea has no system webhook for {house.url} (the webhook row is "
            "missing from gitea.db; a converge puts it back)"
        )
    if not hook["active"]:
        return f"{house.name}: Gitea's webhook for {house.url} is not active"
    if task is None:
        return f"{house.name}: Gitea made no hook task for the issue ([security] DISABLE_WEBHOOKS?)"
    if not task["delivered"]:
        return f"{house.name}: Gitea has not delivered the issue's webhook after {wait} s"
    if "ALLOWED_HOST_LIST" in task["body"]:
        return (
            f"{house.name}: Gitea's [webhook] ALLOWED_HOST_LIST refuses the house's address "
            f"{house.address}: {task['body']}"
        )
    if task["status"] == 401:
        return (
            f"{house.name}: the house refused Gitea's signature (401): its route secret "
            "differs from the secret of Gitea's webhook"
        )
    if not host.service(unit).is_running:
        return f"{house.name}: {unit} is not running, so nothing took the webhook: {task['body']}"
    if not task["succeed"]:
        return f"{house.name}: the delivery to {house.url} failed: {task['status']} {task['body']}"
    if session is None:
        return (
            f"{house.name}: the house accepted the webhook but has no session for delivery "
            f"{task['uuid']} after {wait} s"
        )
    if not session["prompt_has_title"]:
        return f"{house.name}: the session's prompt does not hold the issue's title"
    return f"{house.name}: the wizard has not answered in its session {session['id']} in {wait} s"


def test_step9_4_issue_dispatched_to_each_wizard(
    host, forge_https, gitea_token, settings, role, record_property
):
    if role == "standby":
        pytest.skip("an unpromoted standby runs no house: nothing to dispatch to")
    session, base = forge_https
    api = f"{base}/api/v1"
    repo = settings["validate_issue_repo"]
    nonce = f"phoenix-nonce-{secrets.token_hex(8)}"
    title = nonce.join(DISPATCH_ISSUE_TITLE)
    created = _call(
        session,
        "POST",
        f"{api}/repos/{repo}/issues",
        gitea_token,
        json={"title": title, "body": "Automated dispatch check; closed by the same run."},
    )
    assert created.status_code == 201, (
        f"filing the dispatch issue in {repo} answered {created.status_code}: {created.text[:200]}"
    )
    number = created.json()["number"]
    wait = int(settings["dispatch_wait"])
    try:
        deadline = time.monotonic() + wait
        while True:
            seen = _probe(host, settings, title, nonce)
            if all(_settled(f) for f in seen["houses"].values()) or time.monotonic() > deadline:
                break
            time.sleep(2)
    finally:
        _call(session, "PATCH", f"{api}/repos/{repo}/issues/{number}", gitea_token,
              json={"state": "closed"})  # fmt: skip
    causes = [
        _cause(host, h, seen["houses"][h.name], wait)
        for h in dispatch.houses(settings)
        if not _done(seen["houses"][h.name])
    ]
    assert not causes, "the issue did not reach every wizard: " + "; ".join(causes)
    if seen["issue_created"]:
        slowest = max(f["session"]["started"] for f in seen["houses"].values())
        record_property("dispatch_seconds", round(slowest - seen["issue_created"], 1))
