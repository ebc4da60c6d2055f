"""`phoenix check` against the lab: a configured lab passes, and `phoenix recover` with one bad
item stops before any call that creates or changes something (the lab's DigitalOcean and
Cloudflare record every exchange)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phoenix.backup import snapshots as backup
from phoenix.backup.store import store_from_settings
from phoenix.errors import NOT_CONFIGURED
from phoenix.lab import offsite
from phoenix.lab.client import client_environment
from phoenix.lab.server import exchanges_file
from phoenix.settings import REPO, load

STORE = "offsite-chk"  # its own store: this test never touches another's backups
CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def env(lab, do_client, tmp_path_factory):
    """The operator's environment in the lab, with a store of its own."""
    made = None
    try:
        made = offsite.ensure(lab, do_client, name=STORE)
        settings = {**load("lab"), **made.settings()}
        store = store_from_settings(
            settings, key=lab.ssh_key, known_hosts=tmp_path_factory.mktemp("kh") / "store")
        backup.init(store)
        yield {"store": store, **client_environment(lab), "PHOENIX_ENV": "lab", "PHOENIX_LAB_OFFSITE": STORE,
               "PHOENIX_STATE_DIR": str(tmp_path_factory.mktemp("state")),
               "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": str(Path.home())}
    finally:
        if made is not None:
            offsite.destroy(lab, do_client, made)


def phoenix(env: dict, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in env.items() if isinstance(v, str)}
    return subprocess.run([sys.executable, "-m", "phoenix", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def changes_since(lab, marks: dict[str, int]) -> list[str]:
    """The creating or changing calls each lab API recorded after `marks` (file offsets)."""
    found = []
    for api, offset in marks.items():
        with exchanges_file(lab, api).open() as log:
            log.seek(offset)
            found += [f"{api} {e['method']} {e['path']}" for e in map(json.loads, log)
                      if e["method"] in CHANGES]
    return found


def test_a_configured_lab_passes_every_check(env):
    result = phoenix(env, "check", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["problems"] == []
    # the lab pins timmy-config's commit (its artifact): deploy.sh runs from that one only
    assert json.loads(result.stdout)["timmy-config"].startswith("pinned: "), result.stdout
    # recover --dry: the plan, its checks passed (the lab's backup archive: this store holds
    # no snapshot yet), and no droplet to ask pyinfra about
    source = load("lab")["restore_source"]
    dry = phoenix(env, "recover", "--dry", "--restore-source", source)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "1. " in dry.stdout and "no recovery droplet yet" in dry.stdout


def test_the_operator_reads_arrivals_on_the_real_store_and_latest_follows_them(env, tmp_path):
    """restic:latest over the store's SFTP (its forced internal-sftp, the operator's key): the
    snapshot that arrived last, though the one before claims a later time."""
    import time

    from phoenix.backup import arrival, restic

    store = env["store"]
    (tmp_path / "memories").mkdir()
    (tmp_path / "memories" / "fleet.yaml").write_text("wizards: [ezra]\n")
    ids = []
    for claimed in ("2026-12-01 12:00:00", "2026-11-30 12:00:00"):
        proc = restic.restic(store, "backup", "--json", "--host", store.host or "forge",
                             "--tag", store.tag, "--time", claimed, str(tmp_path / "memories"),
                             what="a snapshot")
        ids.append(json.loads(proc.stdout.strip().splitlines()[-1])["snapshot_id"])
        time.sleep(1.1)   # the store's clock keeps whole seconds apart
    arrived = arrival.arrivals(store)
    assert arrived is not None
    full = [next(name for name in arrived if name.startswith(short)) for short in ids]
    assert arrived[full[1]] > arrived[full[0]]
    assert backup.resolve_snapshot(store, "latest") == full[1]


def test_recover_with_one_bad_item_stops_before_any_change(lab, env, tmp_path):
    marks = {api: exchanges_file(lab, api).stat().st_size for api in ("do", "cf")}
    gone = tmp_path / "gone.tar.gz"
    result = phoenix(env, "recover", "--restore-source", str(gone))
    assert result.returncode == NOT_CONFIGURED, result.stderr
    problems = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert problems == [f"restore source {gone} does not exist: give restic:latest, "
                        "restic:ID, a backup .tar.gz, a gitea dump .zip, or the runbook's "
                        "backup folder or .db"], result.stderr
    # the checks asked both APIs (read-only), and nothing was created or changed
    assert changes_since(lab, marks) == []
    assert all(exchanges_file(lab, api).stat().st_size > marks[api] for api in marks)
