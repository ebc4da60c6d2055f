"""Backups, continuously (tasks/litestream.py): the forge's databases stream to their
replicas with a lag below litestream_max_lag, in WAL mode; one writer per replica (a host that
is not the forge streams nothing). The newest snapshot's age is checked in checks/backups.py."""

from __future__ import annotations

import json
import shlex

import pytest

from phoenix.backup import replication

from .helpers import out


def test_step4_gitea_runs_sqlite_in_wal_mode(host, settings, streaming):
    db = shlex.quote(settings["gitea_db_path"])
    mode = out(host, f"sqlite3 {db} 'PRAGMA journal_mode'").strip()
    assert mode == "wal", (
        f"gitea.db is in {mode!r} journal mode: Litestream needs WAL "
        "(app.ini [database] SQLITE_JOURNAL_MODE = WAL, gitea restarted)"
    )


def test_step4_replication_runs_only_on_the_forge(host, role, streaming):
    for unit in replication.UNITS:
        service = host.service(unit)
        if role == "primary":
            assert service.is_running and service.is_enabled, (
                f"{unit} is not running and enabled on the forge: its databases do not stream"
            )
        else:
            assert not service.is_running, (
                f"{unit} runs on a {role} host: two writers would share the forge's replicas"
            )


def test_step4_replicas_lag_below_the_threshold(host, settings, role, streaming):
    if role != "primary":
        pytest.skip(f"a {role} host streams nothing until its cutover")
    folder = settings["litestream_config_dir"]
    command = shlex.join(
        [
            replication.STATUS_SCRIPT,
            replication.binary_path(settings),
            f"{folder}/credentials",
            *[f"{folder}/{unit}.yml" for unit in replication.UNITS],
        ]
    )
    result = host.run(command)
    assert result.rc == 0, f"the replica status cannot be read: {result.stderr.strip()[-300:]}"
    lags = json.loads(result.stdout)["databases"]
    problems = replication.problems(0.0, lags, settings)
    assert not problems, "; ".join(problems)
