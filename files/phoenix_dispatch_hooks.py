"""Gitea's system webhooks for the wizard houses, as 1.22's AddSystemHook writes them
(routers/api/v1/utils/hook.go addHook; models/webhook/webhook.go): one active `gitea` hook per
house URL, JSON, its secret, the issue events. Gitea has no command for webhooks, and the
deploy holds no admin token on the host, so the rows are written as the API would write them.

Run as Gitea's user with the database path as argument and the wanted hooks on stdin (a JSON
list of {url, secret, events}); `--check` prints `ok` or what differs and changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time

EVENTS = (
    "create delete fork issues issue_assign issue_label issue_milestone issue_comment push "
    "pull_request pull_request_assign pull_request_label pull_request_milestone "
    "pull_request_comment pull_request_review pull_request_sync pull_request_review_request "
    "wiki repository release package"
).split()


def stored_events(chosen: list[str]) -> str:
    """webhook.events as addHook stores it (modules/webhook HookEvent)."""
    events = {name: name in chosen for name in EVENTS}
    return json.dumps(
        {
            "push_only": False,
            "send_everything": False,
            "choose_events": True,
            "branch_filter": "",
            "events": events,
        },
        separators=(",", ":"),
    )


def differences(conn: sqlite3.Connection, wanted: list[dict]) -> list[tuple[dict, int | None]]:
    """(hook wanted, id of the row to update or None to insert) for each that differs."""
    found = []
    for hook in wanted:
        row = conn.execute(
            "SELECT id, secret, events, is_active, content_type, http_method FROM webhook "
            "WHERE is_system_webhook = 1 AND COALESCE(repo_id, 0) = 0 "
            "AND COALESCE(owner_id, 0) = 0 AND url = ? ORDER BY id LIMIT 1",
            (hook["url"],),
        ).fetchone()
        want = (hook["secret"], stored_events(hook["events"]), 1, 1, "POST")
        if row is None or tuple(row[1:]) != want:
            found.append((hook, row[0] if row else None))
    return found


def main(argv: list[str]) -> int:
    check = "--check" in argv
    path = [a for a in argv if a != "--check"][0]
    wanted = json.load(sys.stdin)
    conn = sqlite3.connect(f"file:{path}?mode={'ro' if check else 'rw'}", uri=True, timeout=10)
    try:
        todo = differences(conn, wanted)
        if check:
            print("ok" if not todo else "differs: " + " ".join(h["url"] for h, _ in todo))
            return 0
        now = int(time.time())
        with conn:
            for hook, row_id in todo:
                values = (hook["secret"], stored_events(hook["events"]), now)
                if row_id is None:
                    conn.execute(
                        "INSERT INTO webhook (repo_id, owner_id, is_system_webhook, url, "
                        "http_method, content_type, secret, events, is_active, type, meta, "
                        "last_status, header_authorization_encrypted, created_unix, "
                        "updated_unix) VALUES (0, 0, 1, ?, 'POST', 1, ?, ?, 1, 'gitea', '', "
                        "0, '', ?, ?)",
                        (hook["url"], *values[:2], now, now),
                    )
                else:
                    conn.execute(
                        "UPDATE webhook SET secret = ?, events = ?, is_active = 1, "
                        "content_type = 1, http_method = 'POST', updated_unix = ? WHERE id = ?",
                        (*values, row_id),
                    )
        print(f"{len(todo)} system webhook(s) written")
        return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
