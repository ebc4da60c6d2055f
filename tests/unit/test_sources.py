"""One restore path (issue 13): every source resolved once into a sealed backup, the on-host
restore tool (set aside, put in place, resumable), and what `phoenix recover` restores."""

from __future__ import annotations

import grp
import json
import os
import pwd
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from phoenix import recover
from phoenix.backup import sources
from phoenix.errors import PhoenixError
from phoenix.lab import fixtures
from phoenix.scripts import load

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "files" / "phoenix_restore.py"
ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name
SETTINGS = {"gitea_version": fixtures.GITEA_VERSION}


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PHOENIX_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("made") / "gitea"
    fixtures.make_gitea_backup(folder)
    return folder


def live_forge(root: Path, made: Path) -> Path:
    """A forge laid out as Gitea keeps it (data/, data/gitea-repositories, custom/), with an
    attachment and an LFS object; returns its app.ini."""
    data = root / "data"
    data.mkdir(parents=True)
    for name, dest in (("gitea.db", data / "gitea.db"),
                       ("repositories", data / "gitea-repositories"),
                       ("custom", root / "custom")):
        subprocess.run(["cp", "-a", str(made / name), str(dest)], check=True)
    fixtures.add_attachment(data, data / "gitea.db", repo_id=1, issue_id=1, name="a.log",
                            content=b"attached\n")
    fixtures.add_lfs_object(data, data / "gitea.db", repo_id=1, content=b"lfs object\n" * 9)
    (data / "avatars").mkdir()
    (data / "avatars" / "1").write_bytes(b"\x89PNG")
    ini = root / "app.ini"
    unsafe = "I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true\n" if os.getuid() == 0 else ""
    ini.write_text(f"RUN_USER = {ME}\n{unsafe}WORK_PATH = {root}\n\n"
                   "[server]\nLFS_START_SERVER = true\nLFS_JWT_SECRET = lab-lfs-secret\n\n"
                   f"[database]\nDB_TYPE = sqlite3\nPATH = {data / 'gitea.db'}\n\n"
                   f"[repository]\nROOT = {data / 'gitea-repositories'}\n\n"
                   "[security]\nINSTALL_LOCK = true\nSECRET_KEY = lab-secret\n")
    return ini


def gitea_dump(ini: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(fixtures.STANDINS / "gitea.py"), "dump", "-c",
                           str(ini), "-f", str(out), *args], capture_output=True, text=True,
                          check=False, timeout=60)


def unpack(resolved: sources.Resolved, dest: Path) -> dict:
    """The sealed archive unpacked and checked by the on-host verifier; its report."""
    with tarfile.open(resolved.ref) as tar:
        tar.extractall(dest, filter="data")
    return fixtures.verifier().verify(str(dest))


def db_counts(db: Path) -> dict[str, int]:
    return fixtures.verifier().db_counts(str(db))


# --- gitea dump ------------------------------------------------------------------------------

def test_a_gitea_dump_restores_all_it_holds(tmp_path, made):
    ini = live_forge(tmp_path / "forge", made)
    done = gitea_dump(ini, tmp_path / "gitea-dump-1.zip")
    assert done.returncode == 0, done.stderr
    names = zipfile.ZipFile(tmp_path / "gitea-dump-1.zip").namelist()
    # Gitea 1.22 cmd/dump.go's layout
    assert {"gitea-db.sql", "app.ini", "data/gitea.db", "custom/public/robots.txt"} <= set(names)
    assert any(n.startswith("repos/timmy_foundation/timmy-config.git/") for n in names)
    assert any(n.startswith("data/lfs/") for n in names)
    assert any(n.startswith("data/attachments/") for n in names)
    assert oct(os.stat(tmp_path / "gitea-dump-1.zip").st_mode & 0o777) == "0o600"

    resolved = sources.resolve(str(tmp_path / "gitea-dump-1.zip"), SETTINGS)
    assert resolved.kind == "archive" and resolved.origin == "gitea dump"
    assert resolved.lacks == ()
    report = unpack(resolved, tmp_path / "restored")
    want = db_counts(tmp_path / "forge" / "data" / "gitea.db")
    assert {k: report["counts"][k] for k in want} == want
    assert report["counts"]["attachments"] == 1 and report["counts"]["lfs_objects"] == 1
    assert (tmp_path / "restored" / "app.ini").read_text() == ini.read_text()
    # resolved once: the same zip resolves to the same sealed bytes, from the cache
    assert sources.resolve(str(tmp_path / "gitea-dump-1.zip"), SETTINGS) == resolved


def test_a_dump_in_xorms_dialect_restores_every_row_it_came_from(tmp_path, made):
    """gitea-db.sql as Gitea 1.22 writes it (xorm's DumpTables: no transaction, no
    sqlite_sequence, control characters and blobs as X'..') comes back row for row."""
    ini = live_forge(tmp_path / "forge", made)
    forge_db = tmp_path / "forge" / "data" / "gitea.db"
    conn = sqlite3.connect(forge_db)
    with conn:
        conn.execute("UPDATE issue SET content = ? WHERE id = 1",
                     ("two lines;\r\nit's\ttabbed\x7f",))
        conn.execute("CREATE TABLE `webauthn_credential` (`id` INTEGER PRIMARY KEY "
                     "AUTOINCREMENT NOT NULL, `public_key` BLOB NULL)")
        conn.execute("INSERT INTO webauthn_credential (public_key) VALUES (?)",
                     (bytes(range(256)),))
        conn.execute("DELETE FROM issue WHERE id = 12")
    assert gitea_dump(ini, tmp_path / "dump.zip").returncode == 0
    sql = zipfile.ZipFile(tmp_path / "dump.zip").read("gitea-db.sql").decode()
    assert sql.startswith("/*Generated by xorm ") and "from sqlite3 to sqlite3*/\n\n" in sql
    assert "BEGIN TRANSACTION" not in sql and "sqlite_sequence" not in sql
    assert "'two lines;' || X'0d0a' || 'it''s' || X'09' || 'tabbed' || X'7f'" in sql

    resolved = sources.resolve(str(tmp_path / "dump.zip"), SETTINGS)
    unpack(resolved, tmp_path / "restored")
    restored = sqlite3.connect(tmp_path / "restored" / "gitea.db")
    tables = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'")]
    for table in tables:
        query = f"SELECT * FROM `{table}` ORDER BY rowid"
        assert restored.execute(query).fetchall() == conn.execute(query).fetchall(), table
    # the counters Gitea's own restore has: every table's largest id (issue 12 was deleted)
    counters = dict(restored.execute("SELECT name, seq FROM sqlite_sequence"))
    assert counters["issue"] == 11 and counters["webauthn_credential"] == 1
    conn.close()
    restored.close()


def test_a_dump_without_repositories_says_so_and_keeps_the_rest(tmp_path, made):
    ini = live_forge(tmp_path / "forge", made)
    assert gitea_dump(ini, tmp_path / "dump.zip", "--skip-repository").returncode == 0
    resolved = sources.resolve(str(tmp_path / "dump.zip"), SETTINGS)
    # cmd/dump.go dumps LFS objects only with the repositories: both are named
    assert [line.split(":")[0] for line in resolved.lacks] == ["repositories", "LFS objects"]
    assert resolved.lacks[0].startswith("repositories: the database names 3")
    report = unpack(resolved, tmp_path / "restored")
    assert report["counts"]["repositories"] == 3 and report["repositories"] == []


def test_a_dump_with_a_corrupt_database_is_refused_in_one_line(tmp_path, made):
    ini = live_forge(tmp_path / "forge", made)
    assert gitea_dump(ini, tmp_path / "whole.zip").returncode == 0
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(tmp_path / "whole.zip") as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "gitea-db.sql":
                body = body[:len(body) // 2]  # a torn dump: cut in the middle of a statement
            dst.writestr(info, body)
    with pytest.raises(PhoenixError) as err:
        sources.resolve(str(broken), SETTINGS)
    assert "gitea-db.sql is not a sound SQL dump" in str(err.value)
    assert "\n" not in str(err.value)
    assert not list(sources.cache_dir().glob("*.tar.gz"))


def test_a_zip_that_is_not_a_dump_is_refused(tmp_path):
    other = tmp_path / "photos.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("holiday.jpg", b"\xff\xd8")
    with pytest.raises(PhoenixError, match="is a zip but not a gitea dump"):
        sources.resolve(str(other), SETTINGS)
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    with pytest.raises(PhoenixError, match="is not a zip file"):
        sources.resolve(str(tmp_path / "fake.zip"), SETTINGS)


# --- the runbook's backups ---------------------------------------------------------------------

def test_the_runbooks_dated_database_with_custom_restores_and_names_what_it_lacks(
        tmp_path, made):
    folder = tmp_path / "backups" / "gitea"
    folder.mkdir(parents=True)
    older = tmp_path / "older"
    fixtures.make_gitea_backup(older, repos=0)
    subprocess.run(["cp", str(older / "gitea.db"), str(folder / "gitea-20260101.db")], check=True)
    subprocess.run(["cp", str(made / "gitea.db"), str(folder / "gitea-20260102.db")], check=True)
    subprocess.run(["cp", "-a", str(made / "custom"), str(folder / "custom")], check=True)

    resolved = sources.resolve(str(folder), SETTINGS)
    assert resolved.origin == "runbook backup"
    assert len(resolved.lacks) == 2, resolved.lacks
    assert resolved.lacks[0].startswith("repositories: the database names 3")
    assert resolved.lacks[1].startswith("app.ini")
    report = unpack(resolved, tmp_path / "restored")
    assert report["counts"]["repositories"] == 3  # the newest, gitea-20260102.db
    assert (tmp_path / "restored" / "custom" / "public" / "robots.txt").is_file()
    # The bare .db file given directly reads custom/ beside it too.
    direct = sources.resolve(str(folder / "gitea-20260102.db"), SETTINGS)
    assert direct.manifest_sha == resolved.manifest_sha


def test_the_runbooks_backup_on_the_old_forge_is_fetched_then_sealed(tmp_path, made,
                                                                      monkeypatch):
    """forge:PATH reads the old forge over ssh (here: the same script, run locally)."""
    import phoenix.sshconf

    monkeypatch.setattr(phoenix.sshconf, "ssh_command", lambda target, cmd: ["sh", "-c", cmd])
    there = tmp_path / "old-forge" / "backups" / "gitea"
    there.mkdir(parents=True)
    subprocess.run(["cp", str(made / "gitea.db"), str(there / "gitea-20261127.db")], check=True)
    subprocess.run(["cp", "-a", str(made / "custom"), str(there / "custom")], check=True)
    target = type("Target", (), {"host": "old-forge"})()
    resolved = sources.resolve(f"forge:{there}", SETTINGS, forge_target=target)
    assert resolved.origin == "runbook backup" and resolved.lacks[0].startswith("repositories")
    assert unpack(resolved, tmp_path / "restored")["counts"]["repositories"] == 3
    with pytest.raises(PhoenixError) as err:
        sources.resolve(f"forge:{tmp_path}/nowhere", SETTINGS, forge_target=target)
    assert str(err.value).startswith("cannot fetch the runbook backup from old-forge")
    assert "no gitea.db or gitea-YYYYMMDD.db in" in str(err.value)


def test_a_backup_whose_repositories_disagree_with_its_database_is_refused(tmp_path, made):
    folder = tmp_path / "backups"
    subprocess.run(["cp", "-a", str(made), str(folder)], check=True)
    (folder / "manifest.json").unlink()
    subprocess.run(["rm", "-rf", str(folder / "repositories" / "timmy_foundation")], check=True)
    with pytest.raises(PhoenixError) as err:
        sources.resolve(str(folder), SETTINGS)
    assert "names 3 repositories and its folder holds 2" in str(err.value)
    assert "nothing was restored" in str(err.value) and "\n" not in str(err.value)


def test_a_missing_or_unreadable_source_is_one_line(tmp_path):
    with pytest.raises(PhoenixError, match="does not exist"):
        sources.resolve(str(tmp_path / "nowhere"), SETTINGS)
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "notes.txt").write_text("x")
    with pytest.raises(PhoenixError, match="holds no gitea.db and no gitea-YYYYMMDD.db"):
        sources.resolve(str(tmp_path / "backups"), SETTINGS)
    (tmp_path / "bad.tar.gz").write_bytes(b"no")
    with pytest.raises(PhoenixError, match="not a Phoenix backup archive"):
        sources.resolve(str(tmp_path / "bad.tar.gz"), SETTINGS)


# --- resolved once -----------------------------------------------------------------------------

def test_a_cut_off_restore_keeps_the_snapshot_it_started_with():
    pending = sources.Resolved(requested="restic:latest", kind="restic", ref="a" * 64,
                               stage_id="a" * 64, manifest_sha="b" * 64,
                               label="restic snapshot aaaaaaaa", origin="phoenix snapshot")
    line = pending.marker()
    assert "\n" not in line and sources.Resolved.from_marker(line) == pending
    # No store is configured here: resolving restic:latest anew would fail; the marker's wins.
    assert sources.resolve("restic:latest", {}, pending=pending) == pending
    with pytest.raises(PhoenixError, match="backup_repository is not set"):
        sources.resolve("restic:other", {}, pending=pending)
    assert sources.Resolved.from_marker("b" * 64) is None  # a marker of before issue 13


def test_a_pending_archive_is_reused_only_while_it_is_the_same_bytes(tmp_path, made):
    archive = tmp_path / "backup.tar.gz"
    fixtures.make_backup_archive(made, archive)
    first = sources.resolve(str(archive), SETTINGS)
    assert first.kind == "archive" and first.stage_id == sources.sha256_file(archive)
    assert sources.resolve(str(archive), SETTINGS, pending=first) is first
    other = tmp_path / "other"
    fixtures.make_gitea_backup(other, repos=0)
    fixtures.make_backup_archive(other, archive)  # the file was replaced since the cut-off
    again = sources.resolve(str(archive), SETTINGS, pending=first)
    assert again.manifest_sha != first.manifest_sha


# --- the on-host restore tool ------------------------------------------------------------------

def tool(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), "--config", str(config), *args],
                          capture_output=True, text=True, check=False, timeout=60)


def host_layout(root: Path, made: Path) -> tuple[Path, Path]:
    """A host with old Gitea data, a staged (verified) backup; returns (config, unpacked)."""
    work = root / "var/lib/gitea"
    (work / "data/gitea-repositories/old/one.git").mkdir(parents=True)
    (work / "data/gitea.db").write_text("the old database")
    (work / "data/gitea.db-wal").write_text("its wal")
    (work / "data/avatars").mkdir()
    (work / "data/avatars/7").write_text("old avatar")
    (work / "custom").mkdir()
    (root / "hermes").mkdir()
    (root / "hermes/state.db").write_text("old hermes state")
    unpacked = root / "stage/unpacked"
    subprocess.run(["mkdir", "-p", str(unpacked.parent)], check=True)
    subprocess.run(["cp", "-a", str(made), str(unpacked)], check=True)
    (unpacked / "data/avatars").mkdir(parents=True)
    (unpacked / "data/avatars/1").write_text("new avatar")
    (Path(str(unpacked) + ".files") / str(root / "hermes").lstrip("/")).mkdir(parents=True)
    (Path(str(unpacked) + ".files") / str(root / "hermes").lstrip("/") / "state.db") \
        .write_text("backup hermes state")
    config = root / "config.json"
    config.write_text(json.dumps({
        "db_path": str(work / "data/gitea.db"),
        "repo_root": str(work / "data/gitea-repositories"),
        "custom_dir": str(work / "custom"), "data_dir": str(work / "data"),
        "aside_dir": str(root / "aside"), "user": ME, "group": MY_GROUP,
        "paths": [str(root / "hermes")], "gitea_binary": "/bin/false",
        "app_ini": str(root / "app.ini"), "work_dir": str(work),
        "cut_file": str(root / "cut-after")}))
    return config, unpacked


def test_apply_sets_aside_everything_it_replaces(tmp_path, made):
    config, unpacked = host_layout(tmp_path, made)
    done = tool(config, "apply", str(unpacked))
    assert done.returncode == 0, done.stderr
    work = tmp_path / "var/lib/gitea"
    result = json.loads(done.stdout)
    aside = Path(result["aside"])
    old = aside / str(work).lstrip("/")
    assert (old / "data/gitea.db").read_text() == "the old database"
    assert (old / "data/gitea.db-wal").read_text() == "its wal"
    assert (old / "data/gitea-repositories/old/one.git").is_dir()
    assert (old / "data/avatars/7").read_text() == "old avatar"
    assert (aside / str(tmp_path / "hermes").lstrip("/") / "state.db").read_text() == \
        "old hermes state"
    assert db_counts(work / "data/gitea.db")["repositories"] == 3
    assert sorted(p.name for p in (work / "data/gitea-repositories").iterdir()) == \
        sorted(p.name for p in (made / "repositories").iterdir())
    assert (work / "data/avatars/1").read_text() == "new avatar"
    assert (work / "custom/public/robots.txt").is_file()
    assert (tmp_path / "hermes/state.db").read_text() == "backup hermes state"
    assert not (work / "data/gitea.db-wal").exists()


def test_apply_leaves_the_old_hosts_litestream_state_out(tmp_path, made):
    """A snapshot taken before the job left it out holds .gitea.db-litestream: the new host's
    Litestream must not meet the old host's generations and positions."""
    config, unpacked = host_layout(tmp_path, made)
    (unpacked / "data/.gitea.db-litestream/generations").mkdir(parents=True)
    (unpacked / "data/.gitea.db-litestream/generation").write_text("0123456789abcdef")
    done = tool(config, "apply", str(unpacked))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["skipped"] == [".gitea.db-litestream"]
    assert not (tmp_path / "var/lib/gitea/data/.gitea.db-litestream").exists()
    assert "left out of the data folder: .gitea.db-litestream" in done.stderr


@pytest.mark.parametrize("step", ["set-aside", "database", "in-place"])
def test_a_restore_cut_off_is_finished_by_the_next_run_and_loses_nothing(tmp_path, made, step):
    config, unpacked = host_layout(tmp_path, made)
    (tmp_path / "cut-after").write_text(step)
    cut = tool(config, "apply", str(unpacked))
    assert cut.returncode == 137 and f"cut off after {step}" in cut.stderr
    first_aside = next((tmp_path / "aside").iterdir())
    # the deploy stages the backup afresh before it applies again
    subprocess.run(["rm", "-rf", str(unpacked), str(unpacked) + ".files"], check=True)
    fresh_config, unpacked = host_layout(tmp_path / "again", made)
    done = tool(config, "apply", str(unpacked))
    assert done.returncode == 0, done.stderr
    work = tmp_path / "var/lib/gitea"
    assert db_counts(work / "data/gitea.db")["repositories"] == 3
    old = first_aside / str(work).lstrip("/")
    assert (old / "data/gitea.db").read_text() == "the old database"  # kept where it went
    assert (old / "data/avatars/7").read_text() == "old avatar"


def test_apply_without_a_staged_database_touches_nothing(tmp_path, made):
    config, unpacked = host_layout(tmp_path, made)
    (unpacked / "gitea.db").unlink()
    done = tool(config, "apply", str(unpacked))
    assert done.returncode == 1 and "holds no gitea.db" in done.stderr
    assert (tmp_path / "var/lib/gitea/data/gitea.db").read_text() == "the old database"
    assert not (tmp_path / "aside").exists()


def outside_target(tmp_path: Path) -> tuple[Path, tuple[int, int]]:
    """A folder a staged link points at, owned by another user than Gitea's (when root can
    make it so): a restore that followed the link would chown it. Returns it and its owner."""
    target = tmp_path / "usr-local-sbin"
    target.mkdir()
    (target / "program").write_text("#!/bin/sh\n")
    if os.getuid() == 0:
        for path in (target, target / "program"):
            os.chown(path, 65534, 65534)
    st = target.stat()
    return target, (st.st_uid, st.st_gid)


def owners(target: Path) -> set[tuple[int, int]]:
    return {(p.lstat().st_uid, p.lstat().st_gid) for p in (target, target / "program")}


@pytest.mark.parametrize("points_at", ["folder", "file"])
def test_apply_refuses_a_staged_symlink_and_touches_nothing(tmp_path, made, points_at):
    config, unpacked = host_layout(tmp_path, made)
    target, owner = outside_target(tmp_path)
    link = unpacked / "data" / "x"
    link.symlink_to(target if points_at == "folder" else target / "program")
    done = tool(config, "apply", str(unpacked))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"phoenix-restore: FAILED: {link} is a symlink (to {os.readlink(link)}) in the staged "
        "backup: refusing it; nothing was set aside"]
    assert (tmp_path / "var/lib/gitea/data/gitea.db").read_text() == "the old database"
    assert not (tmp_path / "aside").exists()
    assert owners(target) == {owner}


def test_chown_tree_never_follows_a_symlink(tmp_path):
    restore = load(TOOL)
    target, owner = outside_target(tmp_path)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "x").symlink_to(target)
    (tmp_path / "top").symlink_to(target)
    for path, link in ((tree, tree / "sub" / "x"), (tmp_path / "top", tmp_path / "top")):
        with pytest.raises(restore.RestoreError, match=f"^{link} is a symlink .*: refusing"):
            restore.chown_tree(str(path), 4242, 4242)
    assert owners(target) == {owner}
    assert tree.stat().st_uid != 4242


def test_set_aside_moves_whole_never_over_what_is_there_and_only_when_needed(tmp_path):
    """The one way every step of a restore replaces data: moved whole into a folder of its
    own, never over something set aside before, and no folder for a step that moved nothing."""
    restore = load(TOOL)
    aside = restore.Aside(str(tmp_path / "aside"))
    assert restore.set_aside(str(tmp_path / "absent"), aside) is None
    (tmp_path / "empty").mkdir()
    assert restore.set_aside(str(tmp_path / "empty"), aside) is None
    assert not (tmp_path / "aside").exists()
    db = tmp_path / "live" / "gitea.db"
    db.parent.mkdir()
    db.write_text("life 1\n")
    first = Path(restore.set_aside(str(db), aside, "litestream/gitea/gitea.db"))
    assert first.read_text() == "life 1\n" and not db.exists()
    db.write_text("life 2\n")
    with pytest.raises(restore.RestoreError, match=f"^{first} exists: refusing to set {db} aside"):
        restore.set_aside(str(db), aside, "litestream/gitea/gitea.db")
    assert db.read_text() == "life 2\n" and first.read_text() == "life 1\n"
    # another step in the same second: a folder of its own
    second = Path(restore.set_aside(str(db), restore.Aside(str(tmp_path / "aside")),
                                    "litestream/gitea/gitea.db"))
    assert second.read_text() == "life 2\n" and first.read_text() == "life 1\n"
    assert second.parents[2] != first.parents[2]


def test_regenerate_runs_gitea_as_its_user_and_says_what_failed(tmp_path, made):
    config, _unpacked = host_layout(tmp_path, made)
    gitea = tmp_path / "gitea"
    gitea.write_text(f"#!/bin/sh\necho \"$(id -un) $*\" >> {tmp_path}/calls\n"
                     "[ \"$5\" = keys ] && [ -e " f"{tmp_path}/fail ] && "
                     "{ echo 'authorized_keys: permission denied' >&2; exit 1; }; exit 0\n")
    gitea.chmod(0o755)
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "gitea_binary": str(gitea)}))
    done = tool(config, "regenerate")
    assert done.returncode == 0, done.stderr
    ini = settings["app_ini"]
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"{ME} --config {ini} admin regenerate hooks", f"{ME} --config {ini} admin regenerate keys"]
    (tmp_path / "fail").touch()
    failed = tool(config, "regenerate")
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1] == ("phoenix-restore: FAILED: gitea admin "
                                                      "regenerate keys failed: authorized_keys: "
                                                      "permission denied")


# --- phoenix recover ---------------------------------------------------------------------------

def test_recover_restores_the_latest_snapshot_unless_told_otherwise():
    assert recover.recovery_data(standby=False) == {"restore_source": "restic:latest"}
    assert recover.recovery_data(standby=False, source="/b/gitea-dump.zip") == \
        {"restore_source": "/b/gitea-dump.zip"}
    promote = recover.recovery_data(standby=True)
    assert promote["restore_source"] == "restic:latest" and promote["phoenix_promote"] == "True"
    assert "restore of restic:latest" in recover.plan("recovery")[1]
    # the backup's SSH host keys come back unless the operator asks for new ones
    assert "restore_host_keys" not in recover.recovery_data(standby=False)
    assert recover.recovery_data(standby=False, new_host_keys=True)["restore_host_keys"] == "False"


def test_the_dump_sql_database_is_the_one_restored(tmp_path, made):
    """gitea-db.sql is the dump's consistent copy; the data/gitea.db beside it was copied live
    and is left out, torn or not."""
    ini = live_forge(tmp_path / "forge", made)
    assert gitea_dump(ini, tmp_path / "dump.zip").returncode == 0
    torn = tmp_path / "torn.zip"
    with zipfile.ZipFile(tmp_path / "dump.zip") as src, zipfile.ZipFile(torn, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            dst.writestr(info, body[:4096] if info.filename == "data/gitea.db" else body)
    resolved = sources.resolve(str(torn), SETTINGS)
    assert unpack(resolved, tmp_path / "restored")["counts"]["issues"] == 12
