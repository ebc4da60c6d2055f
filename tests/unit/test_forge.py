"""phoenix.forge against the Gitea stand-in: the drill's snapshot sees writes and losses."""

from __future__ import annotations

import pytest

from phoenix.errors import PhoenixError
from phoenix.forge import Forge, compare, snapshot
from phoenix.lab import fixtures
from tests.unit.test_standins import Forge as Host
from tests.unit.test_standins import started

TOKEN = "forge-test-token-0123456789"


@pytest.fixture
def host(tmp_path):
    folder = tmp_path / "backup"
    fixtures.make_gitea_backup(folder, repos=2, issues_per_repo=3)
    h = Host(tmp_path / "host", folder)
    fixtures.add_api_token(h.db, "timmy", TOKEN)
    with started("gitea", "web", "--config", str(h.ini)):
        yield h


def test_snapshot_sees_every_repository_branch_and_issue(host):
    snap = snapshot(Forge(host.url))
    assert len(snap) == 2
    assert sum(len(r["issues"]) for r in snap.values()) == 6
    assert all(r["branches"].get("main") for r in snap.values())


def test_compare_reports_an_issue_written_after_the_snapshot_as_missing(host):
    forge = Forge(host.url, token=TOKEN)
    before = snapshot(forge)
    name = next(iter(before))
    created = forge.create_issue(name, "written after the backup")
    forge.close_issue(name, created["number"])
    after = snapshot(forge)
    assert compare(before, after) == []
    lost = compare(after, before)
    assert lost == [f"{name} issue #{created['number']} “written after the backup” is missing"]


def test_a_wrong_token_is_a_clear_error(host):
    name = next(iter(snapshot(Forge(host.url))))
    with pytest.raises(PhoenixError, match="rejected the API token"):
        Forge(host.url, token="wrong-token").create_issue(name, "x")
