"""Backups, continuously (issue 21): the forge's databases stream to their replicas with a lag
below litestream_max_lag, in WAL mode; one writer per replica (a host that is not the forge
streams nothing); the newest snapshot is younger than backup_max_age."""

from __future__ import annotations

import datetime
import json
import shlex

import pytest

from phoenix import replication

from .helpers import out


@pytest.fixture(scope="module")
def streaming(settings) -> bool:
    if not settings.get("litestream_replica_url"):
        pytest.skip("litestream_replica_url is not set: this forge's databases do not stream")
    return True


def test_step4_gitea_runs_sqlite_in_wal_mode(host, settings, streaming):
    db = shlex.quote(settings["gitea_db_path"])
    mode = out(host, f"sqlite3 {db} 'PRAGMA journal_mode'").strip()
    assert mode == "wal", (f"gitea.db is in {mode!r} journal mode: Litestream needs WAL "
                           "(app.ini [database] SQLITE_JOURNAL_MODE = WAL, gitea restarted)")


def test_step4_replication_runs_only_on_the_forge(host, role, streaming):
    for unit in replication.UNITS:
        service = host.service(unit)
        if role == "primary":
            assert service.is_running and service.is_enabled, \
                f"{unit} is not running and enabled on the forge: its databases do not stream"
        else:
            assert not service.is_running, \
                f"{unit} runs on a {role} host: two writers would share the forge's replicas"


def test_step4_replicas_lag_below_the_threshold(host, settings, role, streaming):
    if role != "primary":
        pytest.skip(f"a {role} host streams nothing until its cutover")
    folder = settings["litestream_config_dir"]
    command = shlex.join([replication.STATUS_SCRIPT, replication.binary_path(settings),
                          f"{folder}/credentials",
                          *[f"{folder}/{unit}.yml" for unit in replication.UNITS]])
    result = host.run(command)
    assert result.rc == 0, f"the replica status cannot be read: {result.stderr.strip()[-300:]}"
    lags = json.loads(result.stdout)["databases"]
    problems = replication.problems(0.0, lags, settings)
    assert not problems, "; ".join(problems)


def test_step4_newest_snapshot_is_recent(host, settings, role, streaming):
    if role != "primary" or not settings.get("backup_repository"):
        pytest.skip("only the forge backs up")
    text = out(host, f"cat {shlex.quote(settings['backup_status_file'])} 2>/dev/null || true")
    if not text:
        # A forge that has just become the primary (a promoted standby) has not backed up
        # yet: its first snapshot must at least be on its way.
        timer = out(host, "systemctl is-active phoenix-backup.timer || true").strip()
        assert timer == "active", ("the forge has taken no snapshot yet and its backup timer "
                                   f"is {timer or 'missing'} (phoenix backup now)")
        return
    when = datetime.datetime.fromisoformat(json.loads(text)["time"])
    age = (datetime.datetime.now(datetime.UTC) - when).total_seconds()
    assert age <= float(settings["backup_max_age"]), \
        f"the newest snapshot is {age:.0f} s old (backup_max_age {settings['backup_max_age']})"
