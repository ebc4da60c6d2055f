"""Issue 21, build 2: the repositories alone every few minutes, and a restore that takes them
from the newest repository snapshot after the full one (files/phoenix_backup.py `repositories`,
files/phoenix_restore.py `repositories`), against a local restic repository in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from phoenix.backup import snapshots as backup
from phoenix.backup.restic import JOB
from phoenix.backup.store import Store
from phoenix.lab.fixtures import make_gitea_backup
from phoenix.scripts import load
from tests.unit.tasks.test_litestream import binary  # noqa: F401  (the pinned Litestream)
from tests.unit.test_backup import RESTORE, PASSWORD, job_config, run_job, run_restore

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def commit(bare: Path, work: Path, message: str) -> str:
    """A commit pushed to the bare repository's default branch; its sha."""
    if not work.exists():
        git("clone", "-q", str(bare), str(work))
    (work / "trickle.txt").write_text(message + "\n")
    git("add", "trickle.txt", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    # the fixture's hooks call the old forge's Gitea binary: not here
    git("push", "-q", "--receive-pack", "git -c core.hooksPath=/dev/null receive-pack",
        "origin", "HEAD", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def head(bare: Path) -> str:
    return git("--git-dir", str(bare), "rev-parse", "HEAD")


@pytest.fixture
def line(tmp_path):
    forge = tmp_path / "forge"
    make_gitea_backup(forge / "gitea", repos=2, issues_per_repo=1)
    (forge / "gitea" / "manifest.json").unlink()
    (forge / "etc").mkdir()
    (forge / "etc" / "app.ini").write_text("[server]\nDOMAIN = forge.lab.test\n")
    job = tmp_path / "job"
    job.mkdir()
    config = job_config(job, forge, tmp_path / "repo")
    data = json.loads(config.read_text())
    data["paths"] = []
    data["repo_status_file"] = str(job / "repositories.json")
    # a budget no run keeps (1 ms once the timer's accuracy is taken off): logged, recorded
    data.update(repo_run_budget=1.001, repo_timer_accuracy=1)
    config.write_text(json.dumps(data))
    store = Store(repository=str(tmp_path / "repo"), password=PASSWORD)
    backup.init(store)
    return forge, config, store


def branch_rows(db: Path, rel: Path, main_at: str) -> tuple[int, str, str]:
    """Gitea 1.22's `branch` table (models/git/branch.go, as xorm makes it on SQLite) with
    rows for the repository at rel: main at `main_at`, and a branch git does not have."""
    owner, name = rel.parts[0], rel.parts[1][:-len(".git")]
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE `branch` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "
                     "`repo_id` INTEGER NULL, `name` TEXT NOT NULL, `commit_id` TEXT NULL, "
                     "`commit_message` TEXT NULL, `pusher_id` INTEGER NULL, "
                     "`is_deleted` INTEGER NULL, `deleted_by_id` INTEGER NULL, "
                     "`deleted_unix` INTEGER NULL, `commit_time` INTEGER NULL, "
                     "`created_unix` INTEGER NULL, `updated_unix` INTEGER NULL)")
        repo_id, owner_name = conn.execute(
            "SELECT id, owner_name FROM repository WHERE lower(owner_name) = ? AND "
            "lower_name = ?", (owner, name)).fetchone()
        conn.executemany("INSERT INTO branch (repo_id, name, commit_id, is_deleted) "
                         "VALUES (?, ?, ?, 0)", [(repo_id, "main", main_at),
                                                 (repo_id, "lost-feature", "f" * 40)])
    return repo_id, owner_name, name


def restore_full(config: Path, snapshot: str, where: Path) -> Path:
    """What `phoenix-restore stage` then `apply` leave: the full snapshot's gitea.db and
    repositories in place."""
    staged = where / "staged"
    assert run_restore(config, "stage", snapshot, str(staged)).returncode == 0
    live = where / "live"
    live.mkdir()
    shutil.move(staged / "repositories", live / "repositories")
    shutil.move(staged / "gitea.db", live / "gitea.db")
    return live


def newer_repositories(config: Path, snapshot: str, live: Path, aside: Path, report: Path,
                       *before: str) -> subprocess.CompletedProcess:
    """`phoenix-restore repositories` on the restored forge at `live`."""
    return run_restore(config, "repositories", snapshot, "--report", str(report), *before,
                       db_path=str(live / "gitea.db"), repo_root=str(live / "repositories"),
                       aside_dir=str(aside))


def restore_module():
    return load(RESTORE)


def test_a_restore_takes_the_newest_repository_snapshot_after_the_full_one(line, tmp_path):
    forge, config, store = line
    repos = forge / "gitea" / "repositories"
    bare, deleted = sorted(repos.glob("*/*.git"))[:2]
    assert run_job(config).returncode == 0
    full = json.loads((tmp_path / "job" / "status.json").read_text())["snapshot_id"]
    in_full = head(bare)
    time.sleep(1.1)  # restic's times are to the nanosecond; keep them apart for the order
    pushed = commit(bare, tmp_path / "work", "after the full snapshot")
    made = repos / "newcomer" / "fresh.git"  # a repository gitea.db (the full's) has no row for
    git("init", "-q", "--bare", str(made))
    shutil.rmtree(deleted)  # deleted on the forge between the two snapshots
    proc = run_job(config, "repositories")
    assert proc.returncode == 0, proc.stderr
    status = json.loads((tmp_path / "job" / "repositories.json").read_text())
    assert status["tag"] == "phoenix-repositories"
    # the run's length, from the process's start, against its budget (here: over it)
    assert status["duration_seconds"] >= status["stage_seconds"] + status["backup_seconds"]
    assert status["budget_seconds"] == pytest.approx(0.001)
    assert "over its budget of 0.001 s" in proc.stderr
    # restic:latest, restic:@TIME and the line's retention keep meaning the full snapshots
    assert backup.latest_snapshot_id(store) == full
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
    assert backup.resolve_snapshot(store, "@" + now) == full
    time.sleep(1.1)
    later = commit(bare, tmp_path / "work", "after the repository snapshot")

    live = restore_full(config, full, tmp_path / "restore")
    rel = bare.relative_to(repos)
    assert head(live / "repositories" / rel) == in_full
    # Gitea 1.22's branch table (models/git/branch.go), as the forge's newest database (its
    # replica) would have it: main at the later commit, a branch pushed and lost since
    repo_id, owner, name = branch_rows(live / "gitea.db", rel, later)
    gone = deleted.relative_to(repos)
    assert head(live / "repositories" / gone)  # the full snapshot's copy is there
    with sqlite3.connect(live / "gitea.db") as conn:  # as the replica has it: row deleted
        conn.execute("DELETE FROM repository WHERE lower(owner_name) = ? AND lower_name = ?",
                     (gone.parts[0].lower(), gone.parts[1][:-len(".git")].lower()))
    report = tmp_path / "restore" / "repositories.json"
    proc = newer_repositories(config, full, live, tmp_path / "aside", report)
    assert proc.returncode == 0, proc.stderr
    assert head(live / "repositories" / rel) == pushed != later
    done = json.loads(report.read_text())
    assert done["snapshot"].startswith(status["snapshot_id"]) and str(rel) in done["replaced"]
    assert done["without_row"] == ["newcomer/fresh.git"]
    assert not (live / "repositories" / "newcomer").exists()
    # deleted since the full snapshot: not served, listed, and its copy set aside
    assert done["deleted_since_full"] == [str(gone)] and str(gone) not in done["changed"]
    assert not (live / "repositories" / gone).exists()
    assert "was deleted before repository snapshot" in proc.stderr
    # the branch table follows the git data: main repaired, the lost branch marked deleted,
    # each listed; the database as it was is kept aside
    branches = done["branches"]
    assert branches["updated"] == [f"{owner}/{name} main: the database had {later[:10]}, "
                                   f"git has {pushed[:10]}"], branches
    assert branches["deleted"] == [f"{owner}/{name} lost-feature: the database had "
                                   f"{'f' * 10}, git has no such branch"], branches
    with sqlite3.connect(live / "gitea.db") as conn:
        assert dict(conn.execute("SELECT name, commit_id FROM branch WHERE repo_id = ? AND "
                                 "is_deleted = 0", (repo_id,)).fetchall()) == {"main": pushed}
    with sqlite3.connect(branches["database_before"]) as conn:
        assert conn.execute("SELECT commit_id FROM branch WHERE name = 'main'").fetchone() \
            == (later,)
    # nothing dropped: the full snapshot's copy and the row-less repository are set aside
    aside = list((tmp_path / "aside").glob("*/repositories"))[0]
    assert head(aside / "full-snapshot" / rel) == in_full
    assert (aside / "without-row" / "newcomer" / "fresh.git" / "HEAD").exists()
    assert (aside / "deleted-since-full" / gone / "HEAD").exists()


def test_a_repository_snapshot_after_the_time_asked_for_or_none_leaves_the_full_ones(
        line, tmp_path):
    forge, config, store = line
    bare = sorted((forge / "gitea" / "repositories").glob("*/*.git"))[0]
    assert run_job(config).returncode == 0
    full = json.loads((tmp_path / "job" / "status.json").read_text())["snapshot_id"]
    live = restore_full(config, full, tmp_path / "restore")
    rel = bare.relative_to(forge / "gitea" / "repositories")
    in_full = head(bare)
    args = (full, live, tmp_path / "aside", tmp_path / "r.json")
    proc = newer_repositories(config, *args)   # none yet
    assert proc.returncode == 0 and "no repository snapshot after" in proc.stderr
    time.sleep(1.1)
    cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    time.sleep(1.1)
    commit(bare, tmp_path / "work", "after the cut-off")
    assert run_job(config, "repositories").returncode == 0
    proc = newer_repositories(config, *args, "--before", cutoff)
    assert proc.returncode == 0 and "at or before" in proc.stderr
    assert head(live / "repositories" / rel) == in_full != head(bare)
    assert json.loads((tmp_path / "r.json").read_text())["snapshot"] is None
    proc = newer_repositories(config, *args, "--before", "yesterday")
    assert proc.returncode == 1 and "is not an ISO 8601 time" in proc.stderr
    with sqlite3.connect(live / "gitea.db") as conn:  # the full snapshot's db is untouched
        assert conn.execute("SELECT COUNT(*) FROM repository").fetchone()[0] == 2


# --- a restored repository is hostile input -----------------------------------------------------

def hostile_repositories(tmp_path: Path) -> tuple[list[Path], Path, Path, str]:
    """Bare repositories whose own config makes a careless git run a program (it touches a
    marker): core.fsmonitor with a worktree and an index, and a promisor remote whose
    upload-pack git runs to fetch a missing commit. Returns (hostile, marker, sound, sha)."""
    marker = tmp_path / "pwned"
    hook = tmp_path / "hook"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    work = tmp_path / "w"
    git("init", "-q", "-b", "main", str(work))
    (work / "f").write_text("one\n")
    git("add", "f", cwd=work)  # an index, which fsmonitor needs
    git("commit", "-q", "-m", "one", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work)
    sound = tmp_path / "sound.git"
    git("clone", "-q", "--bare", str(work), str(sound))
    monitor = tmp_path / "monitor.git"
    shutil.copytree(work / ".git", monitor)
    (tmp_path / "wt").mkdir()
    for key, value in (("core.bare", "false"), ("core.worktree", str(tmp_path / "wt")),
                       ("core.fsmonitor", str(hook))):
        git("--git-dir", str(monitor), "config", key, value)
    promisor = tmp_path / "promisor.git"
    git("init", "-q", "--bare", str(promisor))
    for key, value in (("core.repositoryformatversion", "1"),
                       ("extensions.partialClone", "origin"), ("remote.origin.url", str(work)),
                       ("remote.origin.promisor", "true"), ("remote.origin.uploadpack", str(hook))):
        git("--git-dir", str(promisor), "config", key, value)
    (promisor / "refs" / "heads" / "main").write_text(sha + "\n")  # its commit is missing
    (promisor / "objects" / "pack" / "x.promisor").write_text("")
    return [monitor, promisor], marker, sound, sha


def test_git_runs_no_program_a_restored_repositorys_config_names(tmp_path):
    job = restore_module()
    hostile, marker, sound, sha = hostile_repositories(tmp_path)
    owner = (tmp_path / "sound.git").stat()
    for repo in hostile:
        job._git_sound(str(repo), owner)
        job._git_branches(str(repo), owner)
        assert not marker.exists(), f"git ran the program {repo.name}'s config names"
    assert job._git_sound(str(sound), owner) is None
    branches = job._git_branches(str(sound), owner)
    assert {name: found[:2] for name, found in branches.items()} == {"main": (sha, "one")}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to Gitea's user")
def test_git_on_restored_repositories_runs_as_their_roots_owner_not_root(tmp_path):
    job = restore_module()
    _hostile, _marker, sound, sha = hostile_repositories(tmp_path)
    root = Path(tempfile.mkdtemp(prefix="phoenix-git-"))  # tmp_path is root's alone (0700)
    try:
        root.chmod(0o755)
        repo = root / "sound.git"
        shutil.copytree(sound, repo)
        job.own_tree(str(repo), 65534, 65534)
        owner = repo.stat()
        assert job._git_sound(str(repo), owner) is None
        assert job.run_git(str(repo), "update-ref", "refs/heads/probe", sha,
                           owner=owner).returncode == 0
        assert (repo / "refs" / "heads" / "probe").stat().st_uid == 65534
    finally:
        shutil.rmtree(root)


def test_a_repository_snapshot_claiming_the_future_is_never_the_newest(line, tmp_path,
                                                                       capsys):
    from tests.unit.test_backup import future_snapshot

    forge, config, store = line
    assert run_job(config).returncode == 0
    full = json.loads((tmp_path / "job" / "status.json").read_text())["snapshot_id"]
    time.sleep(1.1)
    assert run_job(config, "repositories").returncode == 0
    real = json.loads((tmp_path / "job" / "repositories.json").read_text())["snapshot_id"]
    later = future_snapshot(store, forge / "etc", tag="phoenix-repositories")
    restore = restore_module()
    line = restore.ResticLine({"backup_job": str(JOB), "backup_config": str(config)})
    found = restore.newer_repository_snapshot(line, full)
    assert found is not None and found["id"].startswith(real[:8])
    assert f"snapshot {later} claims 2099-" in capsys.readouterr().err


# --- a point means that point: restic:<id> against restic:latest ---------------------------------

def issues(db: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT id, repo_id, name FROM issue ORDER BY id").fetchall()
    finally:
        conn.close()


def all_refs(root: Path) -> dict[str, str]:
    """owner/name.git -> its refs and their commits, every bare repository below root."""
    return {str(bare.relative_to(root)): git("--git-dir", str(bare), "for-each-ref",
                                             "--format=%(refname) %(objectname)")
            for bare in sorted(root.glob("*/*.git"))}


@pytest.fixture
def incident(line, binary, tmp_path):
    """A forge whose gitea.db `litestream replicate` streams to a file replica: full snapshot
    A, then (the incident) issues written and a push, streamed and in a repository snapshot."""
    from tests.unit.tasks.test_litestream import rows as replica_rows

    forge, config, store = line
    repos, db = forge / "gitea" / "repositories", forge / "gitea" / "gitea.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    stream = tmp_path / "litestream.yml"
    stream.write_text(json.dumps({"dbs": [{"path": str(db), "replica": {
        "type": "file", "path": str(tmp_path / "replica"), "sync-interval": "200ms"}}]}))
    proc = subprocess.Popen([binary, "replicate", "-config", str(stream)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert run_job(config).returncode == 0
        snapshot = json.loads((tmp_path / "job" / "status.json").read_text())["snapshot_id"]
        at_snapshot = {"issues": issues(db), "refs": all_refs(repos)}
        time.sleep(1.1)  # restic's and Litestream's times: the incident comes after A's
        conn = sqlite3.connect(db)
        for n in range(3):
            conn.execute("INSERT INTO issue (repo_id, \"index\", name) VALUES (1, ?, ?)",
                         (100 + n, f"written after the snapshot {n}"))
            conn.commit()
        conn.close()
        commit(sorted(repos.glob("*/*.git"))[0], tmp_path / "work", "pushed after the snapshot")
        assert run_job(config, "repositories").returncode == 0
        newer = json.loads((tmp_path / "job" / "repositories.json").read_text())["snapshot_id"]
        probe = tmp_path / "probe.db"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the replica holds the incident's writes
            probe.unlink(missing_ok=True)
            subprocess.run([binary, "restore", "-config", str(stream), "-o", str(probe),
                            str(db)], capture_output=True, check=False)
            if probe.exists() and replica_rows(probe) == len(at_snapshot["issues"]) + 3:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("litestream replicate did not stream the writes in 30 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"line": line, "binary": binary, "replica": tmp_path / "replica",
            "snapshot": snapshot, "repository_snapshot": newer, "at_snapshot": at_snapshot,
            "at_end": {"issues": issues(db), "refs": all_refs(repos)}}


def restore_source(requested: str, incident: dict, where: Path) -> tuple[Path, dict]:
    """What tasks/restore.py has the host do for restore_source `requested`, every step by the
    one restore program (files/phoenix_restore.py) with one configuration: the snapshot
    staged through the job's restic line and put in place (`stage`, `apply`), the point
    (pitr.replay_until, from the snapshot's time as restic lists it), the replica to it
    (`replay`), the repository snapshots up to it (`repositories --before`), and the record
    (`record`). Returns the live folder and restored.json."""
    from phoenix.backup import pitr
    from tests.unit.test_sources import ME, MY_GROUP

    _forge, config, store = incident["line"]
    snapshot = backup.resolve_snapshot(store, backup.restore_ref(requested))
    claimed = next(s["time"] for s in backup.list_snapshots(store) if s["id"] == snapshot)
    until = pitr.replay_until(requested, claimed)
    where.mkdir()
    live, staged = where / "live", where / "staged"
    db, reports = live / "gitea.db", {"databases": str(where / "litestream.json"),
                                      "repositories": str(where / "repositories.json")}
    settings = {"db_path": str(db), "repo_root": str(live / "repositories"),
                "custom_dir": str(live / "custom"), "data_dir": str(live / "data"),
                "aside_dir": str(where / "aside"), "user": ME, "group": MY_GROUP}

    def step(*args: str) -> subprocess.CompletedProcess:
        done = run_restore(config, *args, **settings)
        assert done.returncode == 0, done.stderr
        return done

    step("stage", snapshot, str(staged))
    step("apply", str(staged))
    spec = where / "litestream-restore.json"
    spec.write_text(json.dumps({
        "litestream": incident["binary"], "source": "forge",
        "manifest": str(staged / "manifest.json"), "timestamp": until,
        "snapshot_time": pitr.parse(claimed).isoformat(), "timeout": 20,
        "repo_root": str(live / "repositories"), "report": reports["databases"],
        "dbs": [{"path": str(db), "name": "gitea", "user": ME, "config": {"dbs": [
            {"path": str(db), "replica": {"type": "file", "path": str(incident["replica"])}}]}}]}))
    step("replay", str(spec))
    step("repositories", snapshot, "--report", reports["repositories"],
         *(["--before", until] if until else []))
    plan = where / "restore-plan.json"
    plan.write_text(json.dumps({
        "source": requested, "label": f"restic snapshot {snapshot[:8]}",
        "origin": "phoenix snapshot", "lacks": [], "snapshot": {"id": snapshot, "time": claimed},
        "until": until, "reports": reports}))
    step("record", str(plan), str(where / "restored.json"))
    return live, json.loads((where / "restored.json").read_text())


def test_a_snapshot_restored_by_its_id_comes_back_as_it_was(incident, tmp_path):
    """Rolling back to snapshot A, from before an incident: A's rows and A's refs, though the
    replica, a repository snapshot and a newer full snapshot hold the incident."""
    _forge, config, store = incident["line"]
    snapshot = incident["snapshot"]
    data = json.loads(config.read_text())
    del data["keep"]  # as through the append-only endpoint: the store's retention, not the job's
    config.write_text(json.dumps(data))
    assert run_job(config).returncode == 0  # a newer full snapshot: A is no longer the latest
    assert backup.latest_snapshot_id(store) != snapshot
    live, record = restore_source(f"restic:{snapshot}", incident, tmp_path / "by-id")
    assert issues(live / "gitea.db") == incident["at_snapshot"]["issues"]
    assert all_refs(live / "repositories") == incident["at_snapshot"]["refs"]
    assert incident["at_snapshot"] != incident["at_end"]
    from phoenix.backup import pitr

    point = record["point"]
    assert point["snapshot"]["id"] == snapshot  # up to its own time (to the second)
    assert point["until"] == pitr.normalize(point["snapshot"]["time"])
    assert point["databases"]["each"]["gitea"]["from"] == "backup"
    assert "not after the snapshot's own time" in point["databases"]["each"]["gitea"]["why"]
    assert point["repositories"] == {
        "from": "backup",
        "why": f"no repository snapshot after it and at or before {point['until']}"}


def test_latest_still_replays_the_replicas_and_repository_snapshots_to_their_newest(
        incident, tmp_path):
    live, record = restore_source("restic:latest", incident, tmp_path / "latest")
    assert backup.restore_ref("restic:latest") == "latest"
    assert issues(live / "gitea.db") == incident["at_end"]["issues"]
    assert all_refs(live / "repositories") == incident["at_end"]["refs"]
    point = record["point"]
    assert point["snapshot"]["id"] == incident["snapshot"] and point["until"] is None
    assert point["databases"]["each"]["gitea"]["from"] == "replica"
    assert point["repositories"]["from"] == "repository snapshot"
    assert point["repositories"]["id"].startswith(incident["repository_snapshot"][:8])


def test_a_frequent_snapshot_brings_back_every_file_written_since_the_full_one(line, tmp_path):
    """Attachments and LFS objects (read in place), an avatar, the houses' memories: written
    after the full snapshot, they come back from the frequent one; a memory deleted since is
    set aside, a file without a row is set aside and listed, a row whose file came back is
    kept, one whose file did not is taken out; the houses' databases stay Litestream's."""
    from phoenix.lab.fixtures import add_attachment, add_lfs_object

    forge, config, _store = line
    data, db = forge / "gitea" / "data", forge / "gitea" / "gitea.db"
    house = forge / "hermes" / "ezra"
    (house / "memories").mkdir(parents=True)
    (house / "memories" / "MEMORY.md").write_text("before\n")
    (house / "memories" / "old.md").write_text("forgotten later\n")
    with sqlite3.connect(house / "state.db") as conn:
        conn.execute("CREATE TABLE s (x)")
    settings = json.loads(config.read_text())
    settings["paths"] = [str(forge / "hermes")]
    config.write_text(json.dumps(settings))
    issue = sqlite3.connect(db).execute("SELECT repo_id, id FROM issue LIMIT 1").fetchone()
    kept_uuid = add_attachment(data, db, repo_id=issue[0], issue_id=issue[1], name="a.log",
                               content=b"in the full snapshot")
    assert run_job(config).returncode == 0
    full = json.loads((tmp_path / "job" / "status.json").read_text())["snapshot_id"]
    time.sleep(1.1)
    # written after the full snapshot
    uuid = add_attachment(data, db, repo_id=issue[0], issue_id=issue[1], name="after.log",
                          content=b"written after the full snapshot")
    oid = add_lfs_object(data, db, repo_id=issue[0], content=b"lfs after")
    (data / "avatars").mkdir(exist_ok=True)
    (data / "avatars" / "newavatar").write_bytes(b"png")
    (house / "memories" / "MEMORY.md").write_text("after\n")
    (house / "memories" / "old.md").unlink()
    (house / "skills").mkdir()
    (house / "skills" / "new.md").write_text("a skill\n")
    with sqlite3.connect(house / "state.db") as conn:
        conn.execute("INSERT INTO s VALUES (1)")  # Litestream's: never in this snapshot
    proc = run_job(config, "repositories")
    assert proc.returncode == 0, proc.stderr
    status = json.loads((tmp_path / "job" / "repositories.json").read_text())
    assert status["in_place"] == ["attachments", "lfs"]
    staged = tmp_path / "job" / "staging-repositories"
    # sent in place: nothing of the write-once folders was copied into the staging folder
    assert not (staged / "gitea" / "data" / "attachments").exists()
    assert (staged / "gitea" / "data" / "avatars" / "newavatar").exists()
    assert not list(staged.rglob("state.db*"))
    time.sleep(1.1)
    late = add_attachment(data, db, repo_id=issue[0], issue_id=issue[1], name="late.log",
                          content=b"within the interval: lost")

    # the restore: the full snapshot in place, gitea.db at its replica's newest point
    live = restore_full(config, full, tmp_path / "restore")
    staged_full = tmp_path / "restore" / "staged"
    shutil.move(staged_full / "data", live / "data")
    shutil.copytree(staged_full.with_name("staged.files") / str(forge / "hermes").lstrip("/"),
                    live / "hermes")
    snapshot_copy = tmp_path / "restore" / "snapshot-gitea.db"
    shutil.copy(live / "gitea.db", snapshot_copy)
    shutil.copy(db, live / "gitea.db")  # the replica's: every row, the late one's too
    with sqlite3.connect(live / "gitea.db") as conn:  # a row lost with its repository
        conn.execute("DELETE FROM lfs_meta_object")
    databases = tmp_path / "restore" / "litestream.json"
    databases.write_text(json.dumps({"databases": [
        {"name": "gitea", "used": "replica", "snapshot_copy": str(snapshot_copy)}]}))
    report = tmp_path / "restore" / "repositories.json"
    settings_restore = dict(db_path=str(live / "gitea.db"), repo_root=str(live / "repositories"),
                            aside_dir=str(tmp_path / "aside"), data_dir=str(live / "data"),
                            paths=[str(live / "hermes")])
    # the snapshot holds the forge's absolute paths below files/: restore them where they were
    settings_restore["paths"] = [str(forge / "hermes")]
    shutil.rmtree(forge / "hermes")
    shutil.move(live / "hermes", forge / "hermes")
    proc = run_restore(config, "repositories", full, "--report", str(report), "--databases",
                       str(databases), **settings_restore)
    assert proc.returncode == 0, proc.stderr
    done = json.loads(report.read_text())
    attachment = live / "data" / "attachments" / uuid[0] / uuid[1] / uuid
    assert attachment.read_bytes() == b"written after the full snapshot"
    assert (live / "data" / "avatars" / "newavatar").read_bytes() == b"png"
    assert (house / "memories" / "MEMORY.md").read_text() == "after\n"
    assert (house / "skills" / "new.md").read_text() == "a skill\n"
    assert not (house / "memories" / "old.md").exists()
    assert str(house / "memories" / "old.md") in done["files"]["deleted_since_full"]
    with sqlite3.connect(house / "state.db") as conn:  # the full snapshot's copy, untouched
        assert conn.execute("SELECT count(*) FROM s").fetchone() == (0,)
    # rows: the one whose file came back kept, the late one taken out and listed; the LFS
    # object whose row is gone set aside and listed
    with sqlite3.connect(live / "gitea.db") as conn:
        uuids = {r[0] for r in conn.execute("SELECT uuid FROM attachment")}
    assert {uuid, kept_uuid} <= uuids and late not in uuids
    assert [r["uuid"] for r in done["rows"]["rows_without_files"]] == [late]
    lfs_file = live / "data" / "lfs" / oid[0:2] / oid[2:4] / oid[4:]
    assert done["rows"]["files_without_row"] == [str(lfs_file)] and not lfs_file.exists()
    assert list((tmp_path / "aside").glob(f"*/without-row/**/{oid[4:]}"))
