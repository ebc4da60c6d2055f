"""Backups with restic, against a local repository in tmp_path (no root, no network).

The on-host job (files/phoenix_backup.py) runs here on a synthetic forge; the operator's side
(phoenix.backup.snapshots) then lists, checks and restores what it made.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from phoenix import scripts
from phoenix.backup import restic
from phoenix.backup import snapshots as backup
from phoenix.backup.restic import JOB, job_module
from phoenix.backup.store import Store, sftp_command, store_from_settings
from phoenix.errors import PhoenixError
from phoenix.lab.fixtures import add_attachment, add_lfs_object, make_gitea_backup
from phoenix.settings import REPO
from phoenix.sshconf import Target

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def forge(tmp_path_factory) -> Path:
    """A forge's data on disk: gitea.db, repositories/, custom/, app.ini, a memories folder."""
    root = tmp_path_factory.mktemp("forge")
    make_gitea_backup(root / "gitea")
    (root / "gitea" / "manifest.json").unlink()   # live data has no manifest
    data, db = root / "gitea" / "data", root / "gitea" / "gitea.db"
    add_attachment(data, db, repo_id=1, issue_id=1, name="log.txt", content=b"an attachment\n")
    add_lfs_object(data, db, repo_id=1, content=b"an LFS object" * 100)
    for rel, content in (("avatars/1", b"png"), ("jwt/private.pem", b"key"),
                         ("sessions/a/b/session", b"rebuilt"), ("indexers/issues.bleve/x", b"x")):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(content)
    subprocess.run(["git", "init", "-q", "--bare", str(root / "gitea" / "repositories" / "timmy"
                                                       / "the-nexus.wiki.git")], check=True)
    (root / "etc").mkdir()
    (root / "etc" / "app.ini").write_text("[server]\nDOMAIN = forge.lab.test\n")
    (root / "memories").mkdir()
    (root / "memories" / "fleet.yaml").write_text("wizards: [ezra, allegro, bezalel]\n")
    return root


def job_config(tmp: Path, forge: Path, repository: Path, **keep: int) -> Path:
    (tmp / "password").write_text(PASSWORD + "\n")
    (tmp / "password").chmod(0o600)
    config = {
        "repository": str(repository), "password_file": str(tmp / "password"),
        "host": "forge", "tag": "phoenix", "keep": keep or {"hourly": 24, "daily": 7},
        "repo_tag": backup.repo_tag("phoenix"),
        "gitea": {"db_path": str(forge / "gitea" / "gitea.db"),
                  "repo_root": str(forge / "gitea" / "repositories"),
                  "custom_dir": str(forge / "gitea" / "custom"),
                  "data_dir": str(forge / "gitea" / "data"),
                  "app_ini": str(forge / "etc" / "app.ini"), "version": "1.22.3"},
        "paths": [str(forge / "memories"), str(forge / "not-there")],
        "staging_dir": str(tmp / "staging"), "status_file": str(tmp / "status.json"),
        "cache_dir": str(tmp / "cache"),
        "verifier": str(REPO / "files" / "phoenix_backup_verify.py"),
    }
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(repository=str(tmp_path / "repo"), password=PASSWORD)


def run_job(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(JOB), "--config", str(config), *(args or ("run",))],
                          capture_output=True, text=True, timeout=300, check=False)


RESTORE = REPO / "files" / "phoenix_restore.py"


def run_restore(config: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    """The restore's program (phoenix-restore), reaching the store through the job at
    `config` (its restic line); `settings`: the rest of its configuration."""
    tool = config.with_name(config.stem + "-restore.json")
    tool.write_text(json.dumps({"backup_job": str(JOB), "backup_config": str(config),
                                **settings}))
    return subprocess.run([str(RESTORE), "--config", str(tool), *args],
                          capture_output=True, text=True, timeout=300, check=False)


# --- restic's failures, one clear line each -----------------------------------------------------

def test_init_creates_the_repository_once(store):
    assert backup.init(store) is True
    assert backup.init(store) is False
    assert backup.list_snapshots(store) == []


def test_no_repository_says_to_init(store):
    with pytest.raises(PhoenixError, match=r"no restic repository at .*phoenix backup init"):
        backup.list_snapshots(store)


def test_wrong_password_is_named(store):
    backup.init(store)
    wrong = Store(repository=store.repository, password="not the password")
    with pytest.raises(PhoenixError, match="wrong password .*restic_password") as info:
        backup.list_snapshots(wrong)
    assert "not the password" not in str(info.value)
    with pytest.raises(PhoenixError, match="wrong password"):
        backup.init(wrong)  # an existing repository is never created again


def _lock_holder(store, tmp_path) -> subprocess.Popen:
    """A restic backup reading stdin, started on `store` and holding its lock; it ends once
    something is written to its stdin and it is closed."""
    backup.init(store)
    (tmp_path / "pw").write_text(PASSWORD)
    env = {**os.environ, "RESTIC_REPOSITORY": store.repository,
           "RESTIC_PASSWORD_FILE": str(tmp_path / "pw"), "RESTIC_CACHE_DIR": str(tmp_path / "c")}
    holder = subprocess.Popen(["restic", "backup", "--stdin", "-q"], env=env,
                              stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not any((Path(store.repository) / "locks").iterdir()):
        assert time.monotonic() < deadline, "restic took no lock"
        time.sleep(0.1)
    return holder


def test_locked_repository_is_named(store, tmp_path):
    holder = _lock_holder(store, tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(PhoenixError, match="is locked by another run.*restic unlock"):
            restic.restic(store, "check", what="check the repository", lock_wait=3)
        assert time.monotonic() - started >= 3  # tried again until the wait was over
    finally:
        holder.stdin.write(b"x")
        holder.stdin.close()
        holder.wait(timeout=60)


def test_a_run_waits_for_a_lock_another_run_lets_go(store, tmp_path):
    """Issue 21: the forge's repository snapshots hold the store's lock for seconds, every few
    minutes; the operator's check (or prune) meeting one waits, then runs."""
    holder = _lock_holder(store, tmp_path)

    def let_go() -> None:
        time.sleep(3)
        holder.stdin.write(b"x")
        holder.stdin.close()

    releaser = threading.Thread(target=let_go)
    releaser.start()
    try:
        backup.check(store)  # would have failed at once on the lock before
        assert holder.wait(timeout=60) == 0
    finally:
        releaser.join(timeout=60)
        if holder.poll() is None:
            holder.kill()


@pytest.mark.parametrize("code, stderr, kind", [
    (10, "", "no-repository"), (11, "", "locked"), (12, "", "wrong-password"),
    (1, "Fatal: wrong password or no key found\n", "wrong-password"),
    (1, ("Fatal: unable to open config file: stat /x/config: no such file or directory\n"
         "Is there a repository at the following location?\n/x\n"), "no-repository"),
    (1, "unable to create lock in backend: repository is already locked by PID 7\n", "locked"),
    (1, "Host key verification failed.\n", "host-key"),
    (1, "ssh: connect to host 10.0.0.9 port 22: Connection refused\n", "unreachable"),
    (1, "Fatal: something else\n", None),
])
def test_restic_failures_are_classified(code, stderr, kind):
    assert job_module().classify(code, stderr) == kind


def test_unreachable_store_is_named(tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0gfA8OebOyCAeCnYp63FRzOtI7"
                     "nbr7Ae2gtdPRymZa\n")
    target = Target(host="127.0.0.1", port=1, key=tmp_path / "none", known_hosts=known,
                    user="restic", connect_timeout=2)
    store = Store(repository="sftp:restic@127.0.0.1:/srv/restic/forge",
                         password=PASSWORD, ssh=target)
    with pytest.raises(PhoenixError, match="cannot reach the store of sftp:restic@127.0.0.1"):
        backup.list_snapshots(store)


# --- settings ------------------------------------------------------------------------------------

def test_sftp_store_pins_the_host_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PHOENIX_RESTIC_PASSWORD", PASSWORD)
    settings = {"backup_repository": "sftp:restic@10.213.77.5:/srv/restic/forge",
                "backup_known_hosts": ["10.213.77.5 ssh-ed25519 AAAAkey"],
                "ssh_key": str(tmp_path / "id_ed25519"), "backup_host": "forge"}
    store = store_from_settings(settings, known_hosts=tmp_path / "kh")
    assert (store.ssh.host, store.ssh.user, store.ssh.port) == ("10.213.77.5", "restic", 22)
    assert (tmp_path / "kh").read_text() == "10.213.77.5 ssh-ed25519 AAAAkey\n"
    command = sftp_command(store.ssh)
    assert "StrictHostKeyChecking=yes" in command and f"UserKnownHostsFile={tmp_path}/kh" in command
    assert command.endswith("restic@10.213.77.5 -s sftp")
    assert PASSWORD not in repr(store)


def test_sftp_store_without_a_pinned_key_is_refused(monkeypatch):
    monkeypatch.setenv("PHOENIX_RESTIC_PASSWORD", PASSWORD)
    with pytest.raises(PhoenixError, match="backup_known_hosts is empty"):
        store_from_settings({"backup_repository": "sftp:restic@h:/r"})
    with pytest.raises(PhoenixError, match="backup_repository is not set"):
        store_from_settings({"backup_repository": None})


def test_restore_source_names_a_snapshot():
    assert backup.restore_ref("restic:latest") == "latest"
    assert backup.restore_ref("restic:") == "latest"
    assert backup.restore_ref("restic:1a2b3c4d") == "1a2b3c4d"
    assert backup.restore_ref("/var/backups/gitea.tar.gz") is None
    assert backup.restore_ref(None) is None


def test_snapshot_list_is_parsed_oldest_first():
    rows = [{"id": "b" * 64, "short_id": "bbbbbbbb", "time": "2026-01-02T00:00:00Z",
             "hostname": "forge", "paths": ["/s"], "tags": ["phoenix"]},
            {"id": "a" * 64, "time": "2026-01-01T00:00:00Z", "hostname": "forge",
             "paths": ["/s"]}]
    parsed = backup.parse_snapshots(rows)
    assert [s["short_id"] for s in parsed] == ["aaaaaaaa", "bbbbbbbb"]
    assert parsed[0] == {"id": "a" * 64, "short_id": "aaaaaaaa", "time": "2026-01-01T00:00:00Z",
                         "host": "forge", "paths": ["/s"], "tags": []}


# --- the job and the checks -----------------------------------------------------------------------

def test_job_snapshot_lists_verifies_and_restores(store, forge, tmp_path):
    backup.init(store)
    config = job_config(tmp_path, forge, Path(store.repository))
    proc = run_job(config)
    assert proc.returncode == 0, proc.stderr
    status = json.loads((tmp_path / "status.json").read_text())
    assert "not-there is missing" in proc.stderr
    snapshots = backup.list_snapshots(store)
    assert [s["id"] for s in snapshots] == [status["snapshot_id"]]
    assert backup.latest_snapshot_id(store) == status["snapshot_id"]
    assert backup.resolve_snapshot(store, status["snapshot_id"][:8]) == status["snapshot_id"]

    result = backup.verify(store, read_data_subset="100%")
    assert result.snapshot_id == status["snapshot_id"]
    assert result.counts == status["counts"] and result.counts["repositories"] == 3

    staged = tmp_path / "restored" / "gitea"
    staged.parent.mkdir()
    assert run_restore(config, "stage", status["snapshot_id"], str(staged)).returncode == 0
    assert (staged / "manifest.json").exists()
    assert (Path(f"{staged}.files") / str(forge / "memories" / "fleet.yaml").lstrip("/")
            ).read_text() == "wizards: [ezra, allegro, bezalel]\n"
    assert (staged / "app.ini").read_text() == (forge / "etc" / "app.ini").read_text()
    # All of Gitea's data but what it rebuilds; attachments, avatars, LFS counted
    assert (staged / "data" / "jwt" / "private.pem").read_bytes() == b"key"
    assert not (staged / "data" / "sessions").exists()
    assert not (staged / "data" / "indexers").exists()
    assert {k: status["counts"][k] for k in ("attachments", "avatars", "lfs_objects", "wikis")
            } == {"attachments": 1, "avatars": 1, "lfs_objects": 1, "wikis": 1}
    assert status["counts"]["repositories"] == 3      # the wiki is not a repository


def test_the_seal_records_what_the_live_forge_lacks_and_verify_reports_it(tmp_path):
    verifier = scripts.load(backup.VERIFIER)
    folder = tmp_path / "gitea"
    make_gitea_backup(folder)
    uuid = add_attachment(folder / "data", folder / "gitea.db", repo_id=1, issue_id=1,
                          name="gone.txt", content=b"lost before the backup")
    for path in (folder / "data").rglob(uuid):
        path.unlink()
    shutil.rmtree(folder / "repositories" / "timmy" / "the-nexus.git")
    (folder / "repositories" / "stray" / "orphan.git").mkdir(parents=True)
    (folder / "repositories" / "stray" / "orphan.git" / "HEAD").write_text("ref: x\n")
    manifest = verifier.write_manifest(str(folder), gitea_version="1.22.3")
    assert manifest["cross_check"]["attachments_without_file"] == [uuid]
    assert manifest["cross_check"]["repositories_without_folder"] == ["timmy/the-nexus"]
    assert manifest["cross_check"]["folders_without_repository"] == ["stray/orphan"]
    report = verifier.verify(str(folder))
    assert report["cross_check"]["repositories_without_folder"] == ["timmy/the-nexus"]
    # A repository that was there when sealed and is gone now fails, naming it
    manifest["cross_check"]["repositories_without_folder"] = []
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(verifier.BackupError, match="repositories without folder: timmy/the-nexus"):
        verifier.verify(str(folder))


def test_mirror_copies_refs_before_objects_and_leaves_out_what_is_excluded(tmp_path):
    job = job_module()
    src, dest = tmp_path / "src", tmp_path / "dest"
    for rel in ("r.git/objects/ab/cdef", "r.git/refs/heads/main", "r.git/HEAD", "sessions/s"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    order = []
    real = job._replace_with
    job._replace_with = lambda a, b, st, link: (order.append(os.path.relpath(a, src)),
                                                real(a, b, st, link=link))
    try:
        job.mirror(str(src), str(dest), frozenset({"sessions"}))
    finally:
        job._replace_with = real
    assert order.index("r.git/refs/heads/main") < order.index("r.git/objects/ab/cdef")
    assert order.index("r.git/HEAD") < order.index("r.git/objects/ab/cdef")
    assert not (dest / "sessions").exists()


def test_a_second_run_adds_little_and_retention_prunes(store, forge, tmp_path):
    backup.init(store)
    config = job_config(tmp_path, forge, Path(store.repository), hourly=2)
    for _ in range(3):
        assert run_job(config).returncode == 0
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["data_added"] < 20_000, status   # the manifest, the database copy, trees
    # keep-hourly 2 keeps the newest snapshot of each of the last 2 hours: all three runs
    # fall in one hour, so one is left.
    assert [s["id"] for s in backup.list_snapshots(store)] == [status["snapshot_id"]]


def test_retention_forgets_repository_snapshots_past_their_window_and_keeps_full_ones(
        store, tmp_path):
    """Issue 21: the repository snapshots (every few minutes, their own tag) are kept
    `repo_within` only; the full line keeps its keep-* policy, whatever the age."""
    from datetime import datetime, timedelta

    from phoenix.backup.store import repo_tag
    backup.init(store)
    source = tmp_path / "repositories"
    source.mkdir()
    (source / "HEAD").write_text("ref: refs/heads/main\n")
    now = datetime.now()

    def snapshot(tag: str, age: timedelta) -> str:
        when = (now - age).strftime("%Y-%m-%d %H:%M:%S")
        proc = restic.restic(store, "backup", "--json", "--host", "forge", "--tag", tag,
                             "--time", when, str(source), what="a test snapshot")
        return json.loads(proc.stdout.strip().splitlines()[-1])["snapshot_id"][:8]  # 0.14: short

    old_repos = snapshot(repo_tag(store.tag), timedelta(days=3))
    new_repos = snapshot(repo_tag(store.tag), timedelta(hours=1))
    old_full = snapshot(store.tag, timedelta(days=3))
    new_full = snapshot(store.tag, timedelta(hours=1))
    kept, _ = backup.prune(store, keep={"daily": 7}, repo_within="2d")
    left = {s["id"][:8] for s in backup.list_snapshots(store, all_hosts=True)}
    assert left == {new_repos, old_full, new_full}
    assert old_repos not in left and {s["id"][:8] for s in kept} == {old_full, new_full}


def test_a_damaged_pack_fails_verify_and_is_named(store, forge, tmp_path):
    backup.init(store)
    assert run_job(job_config(tmp_path, forge, Path(store.repository))).returncode == 0
    pack = max((p for p in (Path(store.repository) / "data").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    pack.chmod(0o600)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    with pytest.raises(backup.BackupCheckError, match=f"pack {pack.name}") as info:
        backup.verify(store, read_data_subset="100%")
    assert info.value.packs == [pack.name]


def test_a_corrupt_live_database_fails_the_job_and_sends_nothing(store, forge, tmp_path):
    backup.init(store)
    broken = tmp_path / "broken"
    shutil.copytree(forge, broken)
    from phoenix.lab.fixtures import corrupt_database
    corrupt_database(broken / "gitea" / "gitea.db")
    proc = run_job(job_config(tmp_path, broken, Path(store.repository)))
    assert proc.returncode == 1
    assert "FAILED" in proc.stderr and "gitea.db" in proc.stderr
    assert backup.list_snapshots(store) == []


@pytest.mark.parametrize("points_at", ["folder", "file"])
def test_a_symlink_in_the_forges_data_fails_the_run_and_is_never_sealed(
        store, forge, tmp_path, points_at):
    """Gitea's user can put a link in data/; a restore that followed it (chown -R) would hand
    it what the link points at, say /usr/local/sbin."""
    backup.init(store)
    live = tmp_path / "live"
    shutil.copytree(forge, live)
    target = tmp_path / "target"
    target.mkdir()
    (target / "program").write_text("root's\n")
    link = live / "gitea" / "data" / "x"
    link.symlink_to(target if points_at == "folder" else target / "program")
    proc = run_job(job_config(tmp_path, live, Path(store.repository)))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"phoenix-backup: FAILED: {link} is a symlink (to {os.readlink(link)}): a backup of "
        "the forge holds only files and folders; nothing was sent")
    assert not (tmp_path / "staging" / "gitea" / "manifest.json").exists()
    assert backup.list_snapshots(store) == []


def test_a_socket_or_fifo_in_the_forges_data_is_left_out_and_said(store, forge, tmp_path):
    backup.init(store)
    live = tmp_path / "live"
    shutil.copytree(forge, live)
    os.mkfifo(live / "gitea" / "data" / "fifo")
    proc = run_job(job_config(tmp_path, live, Path(store.repository)))
    assert proc.returncode == 0, proc.stderr
    assert f"{live / 'gitea' / 'data' / 'fifo'} is not a regular file" in proc.stderr
    assert not os.path.lexists(tmp_path / "staging" / "gitea" / "data" / "fifo")


@pytest.mark.parametrize("points_at", ["folder", "file"])
def test_the_verifier_refuses_a_backup_holding_a_symlink_and_writes_nothing(tmp_path, points_at):
    folder = tmp_path / "gitea"
    make_gitea_backup(folder, repos=1, issues_per_repo=1)
    sealed = (folder / "manifest.json").read_bytes()
    target = tmp_path / "target"
    target.mkdir()
    (target / "program").write_text("root's\n")
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "x").symlink_to(target if points_at == "folder" else target / "program")
    for args in ((), ("--write-manifest",)):
        proc = subprocess.run([str(backup.VERIFIER), *args, str(folder)], capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.splitlines() == [
            f"phoenix-backup-verify: {folder}: data/x: a symlink: a backup holds only files "
            "and folders"]
        assert (folder / "manifest.json").read_bytes() == sealed


def test_job_without_a_repository_fails_with_its_reason(tmp_path, forge):
    proc = run_job(job_config(tmp_path, forge, tmp_path / "nowhere"))
    assert proc.returncode == 1
    assert "no restic repository at" in proc.stderr
    assert not (tmp_path / "status.json").exists()


def test_each_run_pings_the_alert_url_and_a_failure_pings_fail_with_its_reason(
        store, forge, tmp_path):
    """The operator's alert URL (healthchecks-style) gets a ping per run, the lab's receiver
    standing in for the service; a URL that does not answer changes nothing."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from phoenix.lab.pings import Receiver

    log = tmp_path / "pings.jsonl"
    receiver = Receiver(log)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            receiver.serve(self)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    check = "5f0c3c1e-4d7b-4a8e-9a59-0f6f3c2a1b7d"
    try:
        (tmp_path / "alert_url").write_text(f"http://127.0.0.1:{server.server_port}/ping/{check}\n")
        backup.init(store)
        config = job_config(tmp_path, forge, Path(store.repository))
        job = {**json.loads(config.read_text()), "repo_status_file": str(tmp_path / "r.json")}
        config.write_text(json.dumps({**job, "alert_url_file": str(tmp_path / "alert_url")}))
        assert run_job(config).returncode == 0
        snapshot = json.loads((tmp_path / "status.json").read_text())["snapshot_id"]
        assert run_job(config, "repositories").returncode == 0
        config.write_text(json.dumps({**job, "alert_url_file": str(tmp_path / "alert_url"),
                                      "repository": str(tmp_path / "nowhere")}))
        assert run_job(config).returncode == 1
    finally:
        server.shutdown()
        server.server_close()
    pings = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(p["check"], p["failed"]) for p in pings] == [(check, False)] * 2 + [(check, True)]
    assert pings[0]["body"] == f"full backup: snapshot {snapshot[:8]} saved"
    assert re.fullmatch(r"repositories: snapshot [0-9a-f]{8} saved", pings[1]["body"])
    assert pings[2]["body"].startswith("full backup FAILED: ") and \
        "no restic repository at" in pings[2]["body"]
    # nobody listens there any more: the run still succeeds, and the URL stays out of the log
    config.write_text(json.dumps({**job, "alert_url_file": str(tmp_path / "alert_url")}))
    done = run_job(config)
    assert done.returncode == 0 and "the alert URL did not take the ping: URLError" in done.stderr
    assert check not in done.stderr + done.stdout


# --- the consistent copy ------------------------------------------------------------------------

def test_mirror_keeps_unchanged_files_and_links_git_objects(tmp_path):
    job = job_module()
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "r.git" / "objects" / "ab").mkdir(parents=True)
    (src / "r.git" / "objects" / "ab" / "cdef").write_bytes(b"object")
    (src / "r.git" / "HEAD").write_text("ref: refs/heads/main\n")
    (src / "gone").write_text("x")
    job.mirror(str(src), str(dest))
    head = (dest / "r.git" / "HEAD").stat().st_ino
    assert (dest / "r.git" / "objects" / "ab" / "cdef").stat().st_ino == \
        (src / "r.git" / "objects" / "ab" / "cdef").stat().st_ino
    (src / "gone").unlink()
    assert job.mirror(str(src), str(dest)) == 0
    assert (dest / "r.git" / "HEAD").stat().st_ino == head
    assert not (dest / "gone").exists()
    (src / "r.git" / "HEAD").write_text("ref: refs/heads/dev\n")
    assert job.mirror(str(src), str(dest)) == 1
    assert (dest / "r.git" / "HEAD").read_text() == "ref: refs/heads/dev\n"
    assert (src / "r.git" / "objects" / "ab" / "cdef").read_bytes() == b"object"


def test_mirror_copies_live_sqlite_through_the_backup_api_and_leaves_out_skips(tmp_path):
    """A Hermes house: state.db in WAL mode with rows only in its -wal file, secrets and
    runtime files that must not be in a backup."""
    job = job_module()
    src, dest = tmp_path / "hermes", tmp_path / "dest"
    (src / "ezra" / "logs").mkdir(parents=True)
    (src / "ezra" / "memories").mkdir()
    live = sqlite3.connect(src / "ezra" / "state.db")
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("PRAGMA wal_autocheckpoint=0")
    live.execute("CREATE TABLE sessions (id TEXT)")
    live.execute("INSERT INTO sessions VALUES ('api-1')")
    live.commit()  # in state.db-wal only: a plain copy of state.db would miss it
    assert (src / "ezra" / "state.db-wal").stat().st_size > 0
    (src / "ezra" / ".env").write_text("PHOENIX_MODEL_API_KEY=secret\n")
    (src / "ezra" / "logs" / "gateway.log").write_text("log\n")
    (src / "ezra" / "memories" / "MEMORY.md").write_text("remember\n")
    (src / "ezra" / "notes-wal").write_text("not a database's\n")
    skip = [r"(^|/)\.env$", r"(^|/)logs/"]
    job.mirror(str(src), str(dest), skip=skip, sqlite=True)
    copy = sqlite3.connect(dest / "ezra" / "state.db")
    assert copy.execute("SELECT id FROM sessions").fetchall() == [("api-1",)]
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    copy.close()
    names = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert names == ["ezra", "ezra/memories", "ezra/memories/MEMORY.md", "ezra/notes-wal",
                     "ezra/state.db"]
    job.mirror(str(src), str(dest), skip=skip, sqlite=True)  # a second run keeps them
    assert (dest / "ezra" / "notes-wal").exists() and (dest / "ezra" / "state.db").exists()
    live.close()


def test_database_copy_is_consistent_while_a_writer_is_busy(tmp_path):
    job = job_module()
    db = tmp_path / "live.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (n INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    conn.commit()
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN")
    writer.execute("INSERT INTO t VALUES (-1)")   # not committed: must not be in the copy
    timer = threading.Timer(0.5, lambda: writer.execute("COMMIT"))
    timer.start()
    job.copy_database(str(db), str(tmp_path / "copy.db"))
    timer.join()
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT COUNT(*) FROM t").fetchone()[0] in (1000, 1001)


def test_a_warm_standby_prestages_the_latest_snapshot_and_a_restore_takes_it(
        store, forge, tmp_path):
    backup.init(store)
    config = job_config(tmp_path, forge, Path(store.repository))
    assert run_job(config).returncode == 0
    snapshot = json.loads((tmp_path / "status.json").read_text())["snapshot_id"]
    warm = tmp_path / "warm"
    data = json.loads(config.read_text())
    data["prestage_dir"] = str(warm)
    config.write_text(json.dumps(data))

    proc = run_job(config, "prestage")
    assert proc.returncode == 0, proc.stderr
    assert (warm / snapshot / "manifest.json").exists() and (warm / f"{snapshot}.verified").exists()
    assert run_job(config, "prestage").returncode == 0  # again: nothing to fetch, still there

    # The repository goes away: the restore of that snapshot must come from the warm copy.
    shutil.rmtree(store.repository)
    dest = tmp_path / "promoted" / "gitea"
    dest.parent.mkdir()
    proc = run_restore(config, "stage", snapshot, str(dest))
    assert proc.returncode == 0, proc.stderr
    assert "from the warm copy" in proc.stderr
    assert (dest / "gitea.db").exists() and not (warm / snapshot).exists()


def test_prestage_on_a_host_that_is_no_standby_says_so(store, forge, tmp_path):
    config = job_config(tmp_path, forge, Path(store.repository))
    proc = run_job(config, "prestage")
    assert proc.returncode == 1 and "not a warm standby" in proc.stderr


def test_a_store_that_does_not_answer_is_told_from_one_that_does():
    """A restic failure the patterns do not know is called "cannot reach the store" only when
    the store's sshd really does not answer now."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def greet() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

        thread = threading.Thread(target=greet)
        thread.start()
        assert job_module().store_answers(
            {"repository": f"sftp://restic@127.0.0.1:{port}//srv/restic/forge"}) is True
        thread.join()
    assert job_module().store_answers(
        {"repository": f"sftp://restic@127.0.0.1:{port}//srv/restic/forge"}, 1) is False
    assert job_module().store_answers({"repository": "/srv/restic/forge"}) is None
    append_only = {"repository": "rclone:/srv/restic/forge",  # the store named in `location`
                   "location": f"sftp://restic@127.0.0.1:{port}//srv/restic/forge (append-only)"}
    assert job_module().store_answers(append_only, 1) is False


# --- Caddy's home: what lets a recovered forge serve its certificate before the cutover -------

def test_caddys_home_is_saved_and_restored_whatever_backup_paths_lists():
    """A merge rewrote backup_paths once and dropped Caddy's home: the recovered forge then
    had no certificate, and the ACME CA could not give it one before the DNS cutover."""
    from phoenix.settings import load
    from tasks.backups import saved_paths

    settings = load()
    home = settings["https_state_dir"]
    assert home == "/var/lib/caddy"   # Debian's caddy user's home: its storage is below it
    assert home in saved_paths(settings)
    assert all(p.rstrip("/") in saved_paths(settings) for p in settings["backup_paths"])
    assert saved_paths({"backup_paths": ["/var/lib/hermes"], "https_state_dir": home}) == \
        ["/var/lib/hermes", home]
    assert saved_paths({"backup_paths": [home + "/"], "https_state_dir": home}) == [home]
    assert saved_paths({"backup_paths": ["/var/lib/hermes"], "https_state_dir": None}) == \
        ["/var/lib/hermes"]


def test_caddys_certificate_and_account_pass_the_backup_skips(tmp_path):
    """Caddy 2.6's storage (certmagic's layout) goes through the job's mirror with
    group_data's backup_skip: the certificate, its key and the ACME account all arrive."""
    from phoenix.settings import load

    job = job_module()
    src, dest = tmp_path / "caddy", tmp_path / "dest"
    data = src / ".local" / "share" / "caddy"
    ca = "10.213.91.1-14000-dir"
    kept = [f"certificates/{ca}/forge.lab.test/forge.lab.test.crt",
            f"certificates/{ca}/forge.lab.test/forge.lab.test.key",
            f"certificates/{ca}/forge.lab.test/forge.lab.test.json",
            f"acme/{ca}/users/operator@lab.test/operator.json",
            f"acme/{ca}/users/operator@lab.test/operator.key", "instance.uuid"]
    for rel in [*kept, "locks/issue_cert_forge.lab.test.lock"]:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text(rel)
    job.mirror(str(src), str(dest), skip=load()["backup_skip"], sqlite=True)
    for rel in kept:
        assert (dest / ".local" / "share" / "caddy" / rel).read_text() == rel
    assert not (dest / ".local" / "share" / "caddy" / "locks" / "issue_cert_forge.lab.test.lock"
                ).exists()


FUTURE = "2099-01-01 00:00:00"   # a time the forge may claim: restic's --time is the forge's


def future_snapshot(store: Store, source: Path, *, tag: str = "phoenix",
                    host: str = "forge", when: str = FUTURE) -> str:
    """A snapshot of the forge's line that claims `when`, 2099 unless told (what a compromised
    forge can add)."""
    proc = restic.restic(store, "backup", "--json", "--host", host, "--tag", tag, "--time",
                         when, str(source), what="a snapshot from the future")
    return json.loads(proc.stdout.strip().splitlines()[-1])["snapshot_id"][:8]


def test_a_snapshot_claiming_the_future_is_never_latest(store, forge, tmp_path, capsys):
    backup.init(store)
    config = job_config(tmp_path, forge, Path(store.repository))
    assert run_job(config).returncode == 0
    real = json.loads((tmp_path / "status.json").read_text())["snapshot_id"]
    later = future_snapshot(store, forge / "memories")
    assert backup.resolve_snapshot(store, "latest") == real
    named = capsys.readouterr().err
    assert f"snapshot {later} claims 2099-" in named and "later than now + 30 s: not taken " \
                                                        "as the newest" in named
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert backup.resolve_snapshot(store, "@" + now) == real   # a point in time, too


def test_a_warm_standby_never_prestages_a_snapshot_claiming_the_future(store, forge, tmp_path):
    backup.init(store)
    config = job_config(tmp_path, forge, Path(store.repository))
    assert run_job(config).returncode == 0
    real = json.loads((tmp_path / "status.json").read_text())["snapshot_id"]
    later = future_snapshot(store, forge / "memories", host="forge-recovery-20261202")
    data = json.loads(config.read_text())
    data["prestage_dir"] = str(tmp_path / "warm")
    config.write_text(json.dumps(data))
    proc = run_job(config, "prestage")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "warm" / f"{real}.verified").exists()
    assert f"snapshot {later} claims 2099-" in proc.stderr


def test_backup_status_names_a_snapshot_claiming_the_future(store, forge, tmp_path,
                                                            monkeypatch):
    from types import SimpleNamespace

    from click.testing import CliRunner

    from phoenix import settings, sshconf
    from phoenix.backup import cli as cli_backup
    from phoenix.backup import replication

    backup.init(store)
    config = job_config(tmp_path, forge, Path(store.repository))
    assert run_job(config).returncode == 0
    monkeypatch.setattr(settings, "load", lambda *a, **k: {"backup_max_age": 3600,
                                                           "backup_future_tolerance": 300})
    monkeypatch.setattr(cli_backup, "_store", lambda: store)
    # the forge, asked over ssh for its own last run, is this machine's job here
    status = Path(json.loads(config.read_text())["status_file"])
    monkeypatch.setattr(sshconf, "role_target", lambda role: SimpleNamespace(host="forge"))
    monkeypatch.setattr(replication, "full_run_status",
                        lambda target, s: json.loads(status.read_text()))
    ok = CliRunner().invoke(cli_backup.backup, ["status"])
    assert ok.exit_code == 0, ok.output
    later = future_snapshot(store, forge / "memories")
    found = CliRunner().invoke(cli_backup.backup, ["status"])
    assert found.exit_code == 1 and found.exception.exit_code == 4  # Unhealthy, by main()
    problems = [line for line in found.stderr.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and f"snapshot {later} claims 2099-" in problems[0], found.stderr
    # the age is the real newest's, not a negative one
    age = re.search(r"newest full snapshot: (-?\d+) s old", found.stdout)
    assert age and 0 <= int(age[1]) < 600, found.stdout
    # per kind, the newest point that holds it and its bound (no replicas, no frequent
    # snapshots here: the full one for all)
    for kind in ("databases (Gitea's, the houses')", "repositories"):
        assert re.search(rf"^{re.escape(kind)}: full snapshot, \d+ s old \(at most 3600 s\)$",
                         found.stdout, re.M), found.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (make test runs as root)")
def test_staging_refuses_to_start_on_a_filesystem_too_small_for_it(forge, tmp_path):
    """The staging copy is written on the forge's own disk: when it would not fit (less the
    reserve kept for Gitea and SQLite), the run stops before staging anything, naming the
    numbers, and the forge's data is as it was."""
    shutil.copytree(forge, tmp_path / "forge", symlinks=True)
    forge = tmp_path / "forge"   # a copy of its own: the fixture is shared
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(small)], check=True)
    try:
        (forge / "gitea" / "data" / "attachments").mkdir(parents=True, exist_ok=True)
        big = forge / "gitea" / "data" / "attachments" / "big"
        big.write_bytes(os.urandom(1 << 20) * 64)   # 64 MiB: 300 - 256 reserved is too little
        before = {p: p.stat().st_mtime_ns for p in (forge / "gitea").rglob("*") if p.is_file()}
        config = job_config(tmp_path, forge, tmp_path / "repo")
        data = json.loads(config.read_text())
        data["staging_dir"] = str(small / "staging")
        config.write_text(json.dumps(data))
        proc = run_job(config)
        assert proc.returncode != 0
        line = proc.stderr.strip().splitlines()[-1]
        assert "the staging copy needs 64 MiB more in" in line, proc.stderr
        assert "MiB are free (keeping 256 MiB for the forge): nothing was staged or sent" \
            in line, line
        assert not (small / "staging" / "gitea").exists()
        assert {p: p.stat().st_mtime_ns for p in (forge / "gitea").rglob("*")
                if p.is_file()} == before
    finally:
        subprocess.run(["umount", str(small)], check=False)
