"""Dispatch's settings and the rows the deploy writes (phoenix/dispatch.py, tasks/dispatch.py,
files/phoenix_dispatch_hooks.py): each house its own address, port and secret; Gitea's system
webhooks as 1.22's API writes them, which the Gitea stand-in then delivers."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import sys
from pathlib import Path

import yaml
from jinja2 import Template

from phoenix import dispatch
from phoenix.lab import fixtures
from phoenix.settings import REPO, load

sys.path.insert(0, str(REPO / "files"))
import phoenix_dispatch_hooks as hooks  # noqa: E402 -- a host program, not a package

SCHEMA = (REPO / "phoenix/lab/fixtures/data/gitea-schema.sql").read_text()


def test_each_house_listens_on_its_own_loopback_address_and_port():
    settings = load()
    found = dispatch.houses(settings)
    assert [h.name for h in found] == settings["wizard_names"]
    assert len({h.address for h in found}) == len({h.port for h in found}) == len(found)
    assert all(h.address.startswith("127.") and h.port != 8644 for h in found)
    assert found[0].url == "http://127.0.0.11:8651/webhooks/gitea-issues"
    houses = "127.0.0.11/32,127.0.0.12/32,127.0.0.13/32"
    assert dispatch.allowed_host_list(settings) == houses
    # a forge's own list stays, so its users' webhooks are still delivered; one that set none
    # had Gitea's default, `external`; the houses are not repeated
    assert dispatch.allowed_host_list(settings, "ci.forge.lab.test") == (
        "ci.forge.lab.test," + houses)
    assert dispatch.allowed_host_list(settings, "") == "external," + houses
    assert dispatch.allowed_host_list(settings, "external,127.0.0.12/32") == (
        "external,127.0.0.12/32,127.0.0.11/32,127.0.0.13/32")


def test_each_house_has_a_secret_of_its_own():
    secrets = {dispatch.house_secret("operator-secret", n) for n in ("ezra", "allegro")}
    assert len(secrets) == 2
    assert "operator-secret" not in "".join(secrets)


def test_the_hermes_config_names_the_route_and_not_its_secret():
    house = dispatch.houses(load())[0]
    text = Template((REPO / "templates/hermes-config.yaml.j2").read_text()).render(
        house="ezra", model_base_url="http://m/v1", model_name="m", model_context_length=64000,
        watchdog=120, webhook=house, webhook_events=["issues"])
    webhook = yaml.safe_load(text)["platforms"]["webhook"]
    assert webhook["enabled"] is True
    assert webhook["extra"]["host"] == house.address and webhook["extra"]["port"] == house.port
    route = webhook["extra"]["routes"]["gitea-issues"]
    assert route["events"] == ["issues"] and "secret" not in route
    assert "{issue.title}" in route["prompt"]


def test_missing_or_changed_hooks_are_written_once(tmp_path):
    db = tmp_path / "gitea.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript(SCHEMA)
    wanted = [{"url": h.url, "secret": f"s-{h.name}", "events": ["issues"]}
              for h in dispatch.houses(load())]
    assert _check(db, wanted).startswith("differs: http://127.0.0.11:8651/")
    assert _apply(db, wanted) == "3 system webhook(s) written"
    assert _check(db, wanted) == "ok"
    assert _apply(db, wanted) == "0 system webhook(s) written"
    wanted[1]["secret"] = "another"
    assert _check(db, wanted) == f"differs: {wanted[1]['url']}"
    _apply(db, wanted)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT url, secret, is_system_webhook, repo_id, owner_id, events "
                            "FROM webhook ORDER BY id").fetchall()
    assert len(rows) == 3 and rows[1][1] == "another"
    assert all(r[2:5] == (1, 0, 0) for r in rows)
    gitea = fixtures.standin_module("gitea")
    assert gitea.hook_has_event(rows[0][5], "issues")
    assert not gitea.hook_has_event(rows[0][5], "push")


def _check(db: Path, wanted: list[dict]) -> str:
    return _call(db, wanted, "--check")


def _apply(db: Path, wanted: list[dict]) -> str:
    return _call(db, wanted)


def _call(db: Path, wanted: list[dict], *args: str) -> str:
    out = io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.StringIO(json.dumps(wanted))
    try:
        with contextlib.redirect_stdout(out):
            assert hooks.main([*args, str(db)]) == 0
    finally:
        sys.stdin = stdin
    return out.getvalue().strip()
