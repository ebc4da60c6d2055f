"""The alert when backups stop: files/phoenix_backup_watch.py, run on the offsite store, looks
at what arrived there and runs the operator's alert command, once per change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phoenix import scripts
from phoenix.backup.store import WATCH_SCRIPT, store_spec, watch_spec

HOUR = 3600


def watch(tmp: Path, checks: list[dict], command: list[str] | None = None,
          env: dict | None = None) -> subprocess.CompletedProcess:
    config = tmp / "watch.json"
    alert = command or ["sh", "-c", 'echo "== $PHOENIX_ALERT_SUBJECT" >> "$0"; cat >> "$0"',
                        str(tmp / "alerts")]
    config.write_text(json.dumps({"checks": checks, "alert_command": alert, "repeat": 86400}))
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp)}
    return subprocess.run([sys.executable, str(WATCH_SCRIPT), str(config), str(tmp / "state")],
                          capture_output=True, text=True, env={**base, **(env or {})},
                          timeout=120)


def alerts(tmp: Path) -> str:
    path = tmp / "alerts"
    return path.read_text() if path.exists() else ""


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_it_alerts_once_when_snapshots_stop_and_once_when_they_come_back(tmp_path):
    snapshots = tmp_path / "repo" / "snapshots"
    snapshots.mkdir(parents=True)
    (snapshots / "a1").write_text("x")
    checks = [{"name": "full snapshots", "folder": str(snapshots), "max_age": 2 * HOUR}]

    fresh = watch(tmp_path, checks)
    assert fresh.returncode == 0 and alerts(tmp_path) == ""  # arriving: nothing said

    age(snapshots / "a1", 7 * 24 * HOUR)  # the last one came a week ago
    stopped = watch(tmp_path, checks)
    assert stopped.returncode == 1
    said = alerts(tmp_path)
    assert said.startswith("== forge backups stopped arriving at the offsite store\n")
    assert "full snapshots: the newest arrived 168.0 h ago" in said and "past its 7200 s" in said

    again = watch(tmp_path, checks)
    assert again.returncode == 1 and alerts(tmp_path) == said  # no second alert meanwhile

    (snapshots / "b2").write_text("y")  # a new snapshot arrives
    back = watch(tmp_path, checks)
    assert back.returncode == 0
    assert alerts(tmp_path)[len(said):] == (
        "== forge backups arrive at the offsite store again\n"
        "forge backups arrive at the offsite store again (full snapshots)\n")
    assert watch(tmp_path, checks).returncode == 0
    assert alerts(tmp_path).count("==") == 2


def test_a_store_that_never_got_anything_alerts_too(tmp_path):
    (tmp_path / "empty").mkdir()
    result = watch(tmp_path, [{"name": "database replicas", "folder": str(tmp_path / "empty"),
                               "max_age": 60}])
    assert result.returncode == 1
    assert "database replicas: nothing has arrived in" in alerts(tmp_path)


def test_a_failed_alert_is_said_and_tried_again(tmp_path):
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    (snapshots / "a1").write_text("x")
    age(snapshots / "a1", 3 * HOUR)
    checks = [{"name": "full snapshots", "folder": str(snapshots), "max_age": 2 * HOUR}]
    failed = watch(tmp_path, checks, command=["sh", "-c", "echo no mail server >&2; exit 75"])
    assert failed.returncode == 2
    assert "the alert command failed: exit 75: no mail server" in failed.stderr
    assert not (tmp_path / "state").exists()
    assert watch(tmp_path, checks).returncode == 1
    assert "full snapshots: the newest arrived 3.0 h ago" in alerts(tmp_path)


@pytest.fixture
def restic_repo(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "RESTIC_REPOSITORY": str(tmp_path / "repo"),
           "RESTIC_PASSWORD_FILE": str(tmp_path / "pw"),
           "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "pw").write_text("watch-test-password\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_text("forge data")

    def restic(*args: str) -> str:
        return subprocess.run(["restic", "-q", *args], env=env, check=True, capture_output=True,
                              text=True, cwd=tmp_path, timeout=120).stdout

    restic("init")
    restic("backup", "--tag", "phoenix", "data")
    restic("backup", "--tag", "phoenix-repositories", "data")
    return env, restic


def test_with_the_stores_password_full_and_repository_snapshots_are_told_apart(
        tmp_path, restic_repo):
    """The repository snapshots (every few minutes) keep arriving while the full ones
    stopped: the watch, which can read the tags on the store, still says so."""
    env, restic = restic_repo
    snaps = json.loads(restic("snapshots", "--json"))
    full = next(s["id"] for s in snaps if "phoenix" in s["tags"])
    age(tmp_path / "repo" / "snapshots" / full, 5 * HOUR)
    folder = str(tmp_path / "repo" / "snapshots")
    checks = [
        {"name": "full snapshots", "folder": folder, "tag": "phoenix", "max_age": 2 * HOUR},
        {"name": "repository snapshots", "folder": folder, "tag": "phoenix-repositories",
         "max_age": 960},
    ]
    result = watch(tmp_path, checks, env=env)
    assert result.returncode == 1, result.stderr
    said = alerts(tmp_path)
    assert "full snapshots: the newest arrived 5.0 h ago" in said
    assert "repository snapshots" not in said
    # without the password, any snapshot's arrival counts: the repository one is fresh
    (tmp_path / "state").unlink()
    blind = {k: v for k, v in env.items() if k != "RESTIC_PASSWORD_FILE"}
    assert watch(tmp_path, checks, env=blind).returncode == 0


def test_the_watch_is_set_up_on_the_store_only_with_an_alert_command():
    settings = {"backup_repository": "sftp:restic@store:/srv/restic/forge",
                "backup_tag": "phoenix", "backup_max_age": 7200,
                "frequent_snapshot_interval": 300,
                "litestream_replica_url": "sftp://litestream@store/srv/litestream/forge"}
    spec = store_spec(settings, forge_key="k", operator_key="o", password="p")
    assert "watch" not in spec
    command = ["mail", "-s", "forge backups", "ops@example.org"]
    found = watch_spec({**settings, "backup_alert_command": command}, "/srv/restic/forge")
    assert found is not None and found["alert_command"] == command
    assert [(c["name"], c["folder"], c.get("tag"), c["max_age"]) for c in found["checks"]] == [
        ("full snapshots", "/srv/restic/forge/snapshots", "phoenix", 7200),
        ("repository snapshots", "/srv/restic/forge/snapshots", "phoenix-repositories", 960),
        ("database replicas", "/srv/litestream/forge", None, 86400),
    ]
    store = scripts.load(WATCH_SCRIPT.parent / "phoenix_offsite_store.py")
    service, timer = store.watch_units({"repository": "/srv/restic/forge", "user": "restic"},
                                       found, password=True)
    # its config (the alert command) and the password are root's files, handed in as
    # credentials; it runs as the store's user
    assert "LoadCredential=watch:/etc/phoenix-offsite/watch.json" in service
    assert "Environment=RESTIC_PASSWORD_FILE=%d/password" in service
    assert "User=restic" in service and "OnCalendar=*:0/15" in timer
    with pytest.raises(SystemExit, match="no watch_program"):
        store.install_watch({}, found)


def test_an_alert_command_given_as_one_string_is_refused():
    """A string would run as one program named after the whole line (no shell there)."""
    from phoenix.errors import NotConfigured

    with pytest.raises(NotConfigured, match="backup_alert_command must be a list of words"):
        watch_spec({"backup_alert_command": "mail -s forge ops@example.org"}, "/srv/r")


def test_an_emptied_alert_command_takes_the_watch_off_the_store(tmp_path, monkeypatch):
    """install_watch's files, then the store's setup without a watch: all of them gone and the
    timer disabled (main calls it for the store's own account only, never a replica's)."""
    store = scripts.load(WATCH_SCRIPT.parent / "phoenix_offsite_store.py")
    ran: list[tuple[str, ...]] = []
    for name, value in (("UNIT_DIR", tmp_path / "units"), ("CONFIG_DIR", tmp_path / "etc"),
                        ("WATCH_PATH", tmp_path / "sbin" / "phoenix-backup-watch")):
        value.parent.mkdir(parents=True, exist_ok=True)
        monkeypatch.setattr(store, name, str(value))
    (tmp_path / "units").mkdir()
    monkeypatch.setattr(store, "sh", lambda *argv: ran.append(argv))
    watch = watch_spec({"backup_alert_command": ["true"]}, "/srv/restic/forge")
    assert store.install_watch({"repository": "/srv/restic/forge", "user": "restic",
                                "watch_program": "#!/bin/sh\n"}, watch)
    made = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert made == ["phoenix-backup-watch", "phoenix-backup-watch.service",
                    "phoenix-backup-watch.timer", "watch.json"]
    assert store.remove_watch() is True
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert ("systemctl", "disable", "--now", "phoenix-backup-watch.timer") in ran
    assert store.remove_watch() is False  # a second setup changes nothing
