"""A foreign backup is hostile input: a `gitea dump` or a `forge:` fetch may have been written
by whoever took the forge. Each is read as data, within limits, and a refusal is one line that
leaves nothing behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from phoenix.backup import fetch, importers, sources
from phoenix.errors import PhoenixError
from phoenix.lab import fixtures

VERSION = fixtures.GITEA_VERSION


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PHOENIX_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture(scope="module")
def forge_sql(tmp_path_factory) -> str:
    """The fixture forge's database as Gitea 1.22's dump writes it (xorm's dialect)."""
    folder = tmp_path_factory.mktemp("made") / "gitea"
    fixtures.make_gitea_backup(folder)
    conn = sqlite3.connect(folder / "gitea.db")
    try:
        return "".join(fixtures.standin_module("gitea").xorm_dump(conn))
    finally:
        conn.close()


def dump_zip(path: Path, sql: str, **members: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(importers.DUMP_SQL, sql)
        for name, body in members.items():
            zf.writestr(name.replace("__", "/"), body)
    return path


def refused(zip_path: Path, **limits) -> str:
    """The one line an import of `zip_path` is refused with; nothing of it stays on disk."""
    dest = zip_path.parent / "imported" / "gitea"
    with pytest.raises(PhoenixError) as err:
        importers.import_dump(
            zip_path, dest, gitea_version=VERSION, limits=importers.Limits(**limits)
        )
    said = str(err.value)
    assert "\n" not in said and said.endswith("nothing was restored"), said
    assert not dest.exists()
    return said


# --- the dump's SQL runs as data ---------------------------------------------------------------


def test_a_dump_that_attaches_a_file_of_its_choosing_is_refused(tmp_path, forge_sql):
    planted = tmp_path / "planted.db"
    sql = forge_sql + (
        f"ATTACH DATABASE '{planted}' AS planted;\n"
        "CREATE TABLE planted.owned (x TEXT);\n"
        "INSERT INTO planted.owned VALUES ('written by the dump');\n"
    )
    said = refused(dump_zip(tmp_path / "dump.zip", sql))
    assert "holds ATTACH" in said and "gitea-db.sql line" in said
    assert not planted.exists()


def test_a_dump_that_vacuums_into_a_file_is_refused(tmp_path, forge_sql):
    copy = tmp_path / "x.db"
    said = refused(dump_zip(tmp_path / "dump.zip", forge_sql + f"VACUUM INTO '{copy}';\n"))
    assert "runs VACUUM" in said
    assert not copy.exists()


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("PRAGMA writable_schema = ON;", "holds PRAGMA 'writable_schema'"),
        (
            "CREATE TRIGGER admin AFTER INSERT ON `user` BEGIN "
            "UPDATE `user` SET is_admin = 1; END;",
            "holds CREATE TRIGGER 'admin'",
        ),
        ("INSERT INTO `version` (`version`) VALUES (randomblob(1000000000));", "holds a call of randomblob()"),
        ("ROLLBACK;", "holds TRANSACTION 'ROLLBACK'"),
    ],
)
def test_what_no_dump_holds_is_refused_before_it_runs(tmp_path, forge_sql, statement, says):
    said = refused(dump_zip(tmp_path / "dump.zip", forge_sql + statement + "\n"))
    assert says in said


def test_a_query_that_never_ends_is_refused(tmp_path, forge_sql):
    endless = (
        "INSERT INTO `version` (`version`) WITH RECURSIVE c(x) AS "
        "(SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c WHERE x < 0;\n"
    )
    started = time.monotonic()
    said = refused(dump_zip(tmp_path / "dump.zip", forge_sql + endless), sql_seconds=5)
    assert "holds a recursive query" in said
    assert time.monotonic() - started < 5


def test_sql_that_outlasts_the_deadline_is_refused(tmp_path, forge_sql):
    rows = ",".join(f"({i})" for i in range(1000))  # then 10^12 rows to look through
    slow = (
        f"CREATE TABLE n (x INTEGER);\nINSERT INTO n VALUES {rows};\n"
        "INSERT INTO n SELECT a.x FROM n a, n b, n c, n d WHERE a.x + b.x + c.x + d.x < 0;\n"
    )
    started = time.monotonic()
    said = refused(dump_zip(tmp_path / "dump.zip", forge_sql + slow), sql_seconds=1)
    assert "took more than 1 s to load" in said
    assert time.monotonic() - started < 10


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path, forge_sql):
    bomb = dump_zip(tmp_path / "dump.zip", forge_sql, data__lfs__big=b"\0" * (64 << 20))
    assert bomb.stat().st_size < 1 << 20
    assert "a zip bomb?" in refused(bomb)
    said = refused(bomb, member_bytes=16 << 20, expansion=10_000)
    assert "'data/lfs/big' unpacks to 64 MiB, over the 16 MiB" in said


def test_a_dump_larger_than_the_free_space_is_refused_before_it_is_unpacked(
        tmp_path, forge_sql, monkeypatch):
    dump = dump_zip(tmp_path / "dump.zip", forge_sql, custom__big=os.urandom(4 << 20))
    monkeypatch.setattr(importers, "_free_bytes", lambda path: 2 << 20)
    said = refused(dump)
    assert "needs 4 MiB unpacked and" in said and "has 2 MiB free" in said


def test_a_torn_dump_says_where_it_ends(tmp_path, forge_sql):
    torn = forge_sql[: len(forge_sql) // 2]
    said = refused(dump_zip(tmp_path / "dump.zip", torn))
    assert "gitea-db.sql is not a sound SQL dump (it ends inside the statement of line" in said


def test_sqlites_own_dump_loads_in_one_transaction_with_counters_at_the_largest_id(tmp_path):
    """Older tools write SQLite's .dump (BEGIN TRANSACTION…COMMIT, sqlite_sequence's rows):
    it loads too, and a counter it claims is not taken (Gitea's own restore has max(id))."""
    made = tmp_path / "made"
    fixtures.make_gitea_backup(made)
    conn = sqlite3.connect(made / "gitea.db")
    sql = "\n".join(conn.iterdump()).replace(
        "INSERT INTO \"sqlite_sequence\" VALUES('issue',12);",
        "INSERT INTO \"sqlite_sequence\" VALUES('issue',9223372036854775807);",
    )
    assert "BEGIN TRANSACTION;" in sql and "9223372036854775807" in sql
    dest = tmp_path / "gitea"
    importers.import_dump(dump_zip(tmp_path / "dump.zip", sql), dest, gitea_version=VERSION)
    restored = sqlite3.connect(dest / "gitea.db")
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        if table != "sqlite_sequence":
            query = f"SELECT * FROM `{table}` ORDER BY rowid"
            assert restored.execute(query).fetchall() == conn.execute(query).fetchall(), table
    assert dict(restored.execute("SELECT name, seq FROM sqlite_sequence")) == {
        "version": 1, "user": 4, "org_user": 3, "public_key": 3, "repository": 3, "issue": 12}
    conn.close()
    restored.close()


# --- forge: ------------------------------------------------------------------------------------


@pytest.fixture
def forge(monkeypatch):
    """The old forge's shell is this machine's (ssh_command runs the command here)."""
    import phoenix.sshconf

    run: dict[str, str] = {}
    monkeypatch.setattr(
        phoenix.sshconf, "ssh_command", lambda target, cmd: ["sh", "-c", run.get("cmd", cmd)]
    )
    return run


TARGET = type("Target", (), {"host": "old-forge"})()


@pytest.mark.parametrize(
    ("stream", "limits", "says"),
    [
        ("exec yes", {"fetch_bytes": 1 << 20}, "the copy is over 1 MiB"),
        ("exec sleep 30", {"fetch_seconds": 0.5}, "the copy took more than 0.5 s"),
    ],
)
def test_a_forge_stream_that_never_ends_is_refused(tmp_path, forge, stream, limits, says):
    forge["cmd"] = stream
    dest = tmp_path / "fetched" / "backup"
    started = time.monotonic()
    with pytest.raises(PhoenixError) as err:
        fetch.fetch_from_forge(
            "forge:/backups/gitea", dest, target=TARGET, limits=importers.Limits(**limits)
        )
    assert time.monotonic() - started < 10
    assert says in str(err.value) and "\n" not in str(err.value)
    assert not dest.exists() and list((tmp_path / "fetched").iterdir()) == []


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_in_the_forges_backup_is_refused_in_one_line(tmp_path, forge, link):
    there = tmp_path / "old-forge" / "backups" / "gitea"
    there.mkdir(parents=True)
    fixtures.make_gitea_backup(tmp_path / "made", repos=0)
    subprocess.run(["cp", str(tmp_path / "made" / "gitea.db"), str(there)], check=True)
    if link == "symlink":
        (there / "latest.db").symlink_to("/etc/passwd")
    else:
        (there / "latest.db").hardlink_to(there / "gitea.db")
    with pytest.raises(PhoenixError) as err:
        sources.resolve(f"forge:{there}", {"gitea_version": VERSION}, forge_target=TARGET)
    said = str(err.value)
    assert "\n" not in said and said.endswith("refused, nothing was restored")
    kind = "symlink (to '/etc/passwd')" if link == "symlink" else "hard link"
    assert f"'./latest.db' is a {kind}" in said or f"'./gitea.db' is a {kind}" in said
    assert [p.name for p in sources.cache_dir().iterdir()] == []
