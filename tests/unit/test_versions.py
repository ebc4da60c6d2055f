"""The backup's Gitea version against the release Phoenix installs (phoenix/forge/versions.py)."""

from __future__ import annotations

import sqlite3
import subprocess

import pytest

from phoenix.errors import PhoenixError
from phoenix.forge import versions


def test_an_older_database_gets_a_start_timeout_sized_for_its_migrations():
    assert versions.db_version_for("1.22.3") == 299
    assert versions.start_timeout(backup_db_version=299, gitea_version="1.22.3", base=90,
                                  per_migration=10) == 90
    assert versions.start_timeout(backup_db_version=280, gitea_version="1.22.3", base=90,
                                  per_migration=10) == 90 + 19 * 10
    assert versions.release_for(280) == "Gitea 1.21"
    assert versions.release_for(285) == "a Gitea before 1.22"


@pytest.mark.parametrize(("found", "says"), [(312, "from Gitea 1.23, newer than Gitea 1.22.3"),
                                             (69, "older than Gitea 1.5.3's")])
def test_a_database_gitea_refuses_is_refused_in_one_line(found, says):
    with pytest.raises(PhoenixError) as info:
        versions.start_timeout(backup_db_version=found, gitea_version="1.22.3", base=90,
                               per_migration=10)
    message = str(info.value)
    assert says in message and "nothing was touched" in message and "\n" not in message


def test_an_unknown_release_is_named():
    with pytest.raises(PhoenixError, match="Gitea 2.0.0"):
        versions.db_version_for("2.0.0")


def guard(tmp_path, version):
    db = tmp_path / "staged gitea.db"
    db.unlink(missing_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE version (id INTEGER PRIMARY KEY, version TEXT)")
        if version is not None:
            conn.execute("INSERT INTO version VALUES (1, ?)", (version,))
    dropin = tmp_path / "run" / "gitea.service.d" / "50-phoenix-migration.conf"
    command = versions.guard_command(str(db), gitea_version="1.22.3", base=90, per_migration=10,
                                     where="forge-1", dropin=str(dropin), reload="true")
    before = db.read_bytes()
    done = subprocess.run(command.get_raw_value(), shell=True, capture_output=True, text=True,
                          check=False)
    assert db.read_bytes() == before  # read only
    return done, dropin


def test_the_hosts_guard_sizes_the_start_or_refuses_before_anything_is_touched(tmp_path):
    done, dropin = guard(tmp_path, 280)
    assert done.returncode == 0, done.stderr
    assert dropin.read_text() == "[Service]\nTimeoutStartSec=280\n"  # 90 + 19 migrations x 10
    done, dropin = guard(tmp_path, 299)
    assert done.returncode == 0 and not dropin.exists()  # nothing to migrate: the unit's own
    for found, says in ((300, "refuses a newer one"), (12, "no longer migrates"),
                        ("0299", "no Gitea version row"), ("299; rm -rf /", "no Gitea version"),
                        (None, "no Gitea version row")):
        done, dropin = guard(tmp_path, found)
        assert done.returncode == 2, (found, done.stderr)
        assert done.stderr.count("\n") == 1 and says in done.stderr and "forge-1" in done.stderr
        assert not dropin.exists()
