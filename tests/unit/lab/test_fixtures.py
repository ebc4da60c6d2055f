"""The lab's synthetic data: timmy-config and a Gitea backup, and the backup verifier."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError
from phoenix.lab import fixtures

# the lab backup has no data folder: nothing of what the manifest counts on disk
NO_FILES = {"wikis": 0, "attachments": 0, "avatars": 0, "repo_avatars": 0, "lfs_objects": 0}

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
VERIFY = fixtures.VERIFIER


def git_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GIT_") and k.lower() not in ("http_proxy", "https_proxy",
                                                             "all_proxy")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, no_proxy="127.0.0.1",
               **extra)
    return env


def tree(root: Path) -> dict[str, tuple]:
    """Every path below root with its kind, mode, content hash and mtime."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[path.relative_to(root).as_posix()] = (path.is_dir(), st.st_mode, digest,
                                                  st.st_mtime_ns)
    return out


# --- timmy-config ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def timmy_config(tmp_path_factory) -> tuple[Path, str]:
    dest = tmp_path_factory.mktemp("forge") / "timmy-config.git"
    return dest, fixtures.make_timmy_config(dest)


@pytest.fixture(scope="module")
def served(timmy_config):
    """The bare repository's folder on a static file server, as the artifact server has it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(timmy_config[0].parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/timmy-config.git"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def clone(served, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("checkout") / "timmy-config"
    result = subprocess.run(["git", "clone", "-q", served, str(dest)], capture_output=True,
                            text=True, env=git_env(), timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return dest


def test_timmy_config_is_deterministic(timmy_config, tmp_path):
    assert re.fullmatch(r"[0-9a-f]{40}", timmy_config[1])
    assert fixtures.make_timmy_config(tmp_path / "again.git") == timmy_config[1]
    with pytest.raises(FileExistsError):
        fixtures.make_timmy_config(timmy_config[0])


def test_timmy_config_clones_over_dumb_http(clone, timmy_config):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True,
                          text=True, env=git_env(), check=False).stdout.strip()
    assert head == timmy_config[1]
    assert "LAB STAND-IN for Timmy_Foundation/timmy-config" in \
        (clone / "README.md").read_text().splitlines()[0]
    deploy = (clone / "deploy.sh").read_text().splitlines()
    assert deploy[0] == "#!/usr/bin/env bash"
    assert "LAB STAND-IN for Timmy_Foundation/timmy-config" in deploy[1]
    assert "set -euo pipefail" in deploy
    for script in ["deploy.sh", *[f"bin/{p.name}" for p in (clone / "bin").iterdir()]]:
        assert os.access(clone / script, os.X_OK), script
    assert re.search(r"^backend:\n(  .*\n)*  port: 8645$", (clone / "config.yaml").read_text(),
                     re.MULTILINE)
    for folder in ("playbooks", "memories"):
        assert len(list((clone / folder).glob("*.yaml"))) >= 2


def test_cron_files_are_cron_d_fragments_with_a_user_field(clone):
    crons = sorted((clone / "cron").glob("*.cron"))
    assert crons
    for cron in crons:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cron.stem)  # its /etc/cron.d name is valid
        jobs = [line for line in cron.read_text().splitlines()
                if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
        assert 2 <= len(jobs) <= 3
        for job in jobs:
            fields = job.split(None, 6)
            assert len(fields) == 7 and fields[5] == "root", job
            assert fields[6].startswith("/root/.hermes/bin/")
            assert (clone / "bin" / Path(fields[6].split()[0]).name).is_file()


def test_deploy_sh_lays_out_hermes_home_idempotently(clone, tmp_path):
    home = tmp_path / "home"
    home.mkdir()

    def deploy() -> str:
        result = subprocess.run([str(clone / "deploy.sh")], capture_output=True, text=True,
                                env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    deploy()
    hermes = home / ".hermes"
    for folder in ("bin", "skins", "playbooks", "memories", "cron"):
        assert (hermes / folder).is_dir()
    assert (hermes / "config.yaml").read_bytes() == (clone / "config.yaml").read_bytes()
    assert (hermes / "cron" / "hermes.cron").is_file()
    assert os.access(hermes / "bin" / "fleet-health.sh", os.X_OK)
    assert [p.name for p in home.iterdir()] == [".hermes"]  # nothing outside ~/.hermes
    first = tree(home)
    assert "(0 changes)" in deploy()
    assert tree(home) == first

    (hermes / "bin" / "fleet-health.sh").write_text("drifted\n")  # a hand edit is put back
    assert "updated .hermes/bin/fleet-health.sh" in deploy()
    assert (hermes / "bin" / "fleet-health.sh").read_bytes() == \
        (clone / "bin" / "fleet-health.sh").read_bytes()


def test_fleet_health_reads_the_houses_heartbeats(clone, tmp_path):
    houses = tmp_path / "hermes"
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HERMES_HOUSES": str(houses)}

    def fleet_health() -> subprocess.CompletedProcess:
        return subprocess.run([str(clone / "bin/fleet-health.sh")], env=env,
                              capture_output=True, text=True, check=False)

    assert fleet_health().returncode == 1  # no heartbeat at all
    for name in ("ezra", "allegro", "bezalel"):  # as Hermes's gateway writes them
        (houses / name / "state").mkdir(parents=True)
        (houses / name / "state" / "gateway.heartbeat").write_text('{"pid": 1}')
    result = fleet_health()
    assert result.returncode == 0 and result.stdout.count(" ok ") == 3
    stale = houses / "allegro" / "state" / "gateway.heartbeat"
    os.utime(stale, (time.time() - 600, time.time() - 600))
    result = fleet_health()
    assert result.returncode == 1 and "allegro STALE" in result.stdout
    # Each run is a JSON line at the runbook's path, ~/.local/timmy/fleet-health/*.json
    reports = list((tmp_path / ".local/timmy/fleet-health").glob("*.json"))
    assert len(reports) == 1
    runs = [json.loads(line) for line in reports[0].read_text().splitlines()]
    assert [r["ok"] for r in runs] == [False, True, False]
    assert runs[1]["houses"]["ezra"]["ok"] is True and runs[2]["houses"]["allegro"] == {
        "age": runs[2]["houses"]["allegro"]["age"], "ok": False}


# --- the Gitea backup ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("made") / "backup"
    return folder, fixtures.make_gitea_backup(folder)


@pytest.fixture
def backup(made, tmp_path) -> Path:
    """A copy of the made backup that a test may damage."""
    import shutil

    return Path(shutil.copytree(made[0], tmp_path / "backup"))


def test_backup_layout_and_manifest(made):
    folder, manifest = made
    assert manifest == json.loads((folder / "manifest.json").read_text())
    assert (manifest["format"], manifest["kind"], manifest["gitea_version"]) == \
        (1, "gitea", "1.22.3")
    assert manifest["counts"] == {"users": 3, "organizations": 1, "repositories": 3,
                                  "issues": 12, **NO_FILES}
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                     if p.is_file() and p.name != "manifest.json")
    assert sorted(manifest["files"]) == on_disk
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest
    assert {"gitea.db", "custom/public/robots.txt", "custom/templates/home.tmpl"} <= \
        set(manifest["files"])
    assert sorted(manifest["refs"]) == ["ezra/hermes-agent", "timmy/the-nexus",
                                        "timmy_foundation/timmy-config"]
    for key, refs in manifest["refs"].items():
        git = subprocess.run(["git", "--git-dir", str(folder / "repositories" / f"{key}.git"),
                              "for-each-ref", "--format=%(refname) %(objectname)"],
                             capture_output=True, text=True, env=git_env(), check=True)
        assert dict(line.split() for line in git.stdout.splitlines()) == refs
        log = subprocess.run(["git", "--git-dir", str(folder / "repositories" / f"{key}.git"),
                              "rev-list", "--count", "main"], capture_output=True, text=True,
                             env=git_env(), check=True)
        assert int(log.stdout) >= 2


def test_backup_database_is_shaped_like_gitea(made):
    with sqlite3.connect(made[0] / "gitea.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"user", "repository", "issue", "access_token", "public_key", "version"} <= tables
        columns = {r[1] for r in conn.execute("PRAGMA table_info(issue)")}
        assert {"id", "repo_id", "index", "poster_id", "name", "content", "is_closed",
                "created_unix"} <= columns
        assert conn.execute("SELECT name FROM user WHERE is_admin = 1").fetchall() == [("timmy",)]
        assert conn.execute("SELECT SUM(num_issues), SUM(num_closed_issues) FROM repository"
                            ).fetchone() == (12, 3)


def test_backup_is_deterministic_and_sized_by_its_arguments(made, tmp_path):
    assert fixtures.make_gitea_backup(tmp_path / "again") == made[1]
    small = fixtures.make_gitea_backup(tmp_path / "small", users=1, repos=5, issues_per_repo=0)
    assert small["counts"] == {"users": 1, "organizations": 1, "repositories": 5, "issues": 0,
                               **NO_FILES}
    assert fixtures.verify_backup(tmp_path / "small")["repositories"] == 5


def test_verify_backup_returns_the_counts(made):
    assert fixtures.verify_backup(made[0]) == made[1]["counts"]


def test_verify_names_a_changed_repository_file(backup):
    changed = "repositories/timmy/the-nexus.git/description"
    with open(backup / changed, "a") as handle:
        handle.write("tampered\n")
    with pytest.raises(fixtures.BackupError, match=re.escape(changed)) as caught:
        fixtures.verify_backup(backup)
    assert caught.value.path == changed and isinstance(caught.value, PhoenixError)


def test_verify_names_a_moved_ref(backup):
    ref = backup / "repositories/ezra/hermes-agent.git/refs/heads/main"
    tag = (backup / "repositories/ezra/hermes-agent.git/refs/tags/v0.1.0").read_text()
    ref.write_text(tag)
    with pytest.raises(fixtures.BackupError) as caught:
        fixtures.verify_backup(backup)
    assert caught.value.path == "repositories/ezra/hermes-agent.git/refs/heads/main"


def test_verify_names_missing_and_unlisted_files(backup):
    (backup / "custom/public/robots.txt").unlink()
    with pytest.raises(fixtures.BackupError, match="custom/public/robots.txt: missing"):
        fixtures.verify_backup(backup)
    fixtures.write_manifest(backup)  # sealed again without it: sound
    fixtures.verify_backup(backup)
    (backup / "stray.txt").write_text("x")
    with pytest.raises(fixtures.BackupError, match="stray.txt: not listed"):
        fixtures.verify_backup(backup)


def test_verify_catches_a_corrupt_database(backup):
    fixtures.corrupt_database(backup / "gitea.db")
    with pytest.raises(fixtures.BackupError, match="gitea.db: checksum mismatch") as caught:
        fixtures.verify_backup(backup)
    assert caught.value.path == "gitea.db"
    with pytest.raises(fixtures.BackupError, match="gitea.db"):
        fixtures.write_manifest(backup)  # a corrupt database cannot be sealed either

    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["files"]["gitea.db"] = hashlib.sha256((backup / "gitea.db").read_bytes()).hexdigest()
    (backup / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(fixtures.BackupError, match="gitea.db: not a sound SQLite database"):
        fixtures.verify_backup(backup)  # the checksum matches: integrity_check is what fails


def test_verify_never_writes_into_the_backup(made):
    before = {p: p.stat().st_mtime_ns for p in made[0].rglob("*")}
    fixtures.verify_backup(made[0])
    assert {p: p.stat().st_mtime_ns for p in made[0].rglob("*")} == before


def test_verifier_cli_on_the_host(made, backup):
    ok = subprocess.run([PYTHON, str(VERIFY), str(made[0])], capture_output=True, text=True,
                        check=False)
    assert ok.returncode == 0 and json.loads(ok.stdout)["counts"] == made[1]["counts"]
    (backup / "gitea.db").write_bytes(b"not sqlite")
    bad = subprocess.run([PYTHON, str(VERIFY), str(backup)], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and "gitea.db" in bad.stderr


def test_add_api_token_stores_only_its_hash(backup, capsys):
    token = "lab-" + os.urandom(16).hex()
    row_id = fixtures.add_api_token(backup / "gitea.db", "ezra", token)
    with sqlite3.connect(backup / "gitea.db") as conn:
        row = conn.execute("SELECT uid, token_hash, token_last_eight FROM access_token "
                           "WHERE id = ?", (row_id,)).fetchone()
        dump = "\n".join(conn.iterdump())
    assert row == (2, hashlib.sha256(token.encode()).hexdigest(), token[-8:])
    assert token not in dump
    with pytest.raises(PhoenixError, match="already"):
        fixtures.add_api_token(backup / "gitea.db", "ezra", token)
    with pytest.raises(PhoenixError, match="no user"):
        fixtures.add_api_token(backup / "gitea.db", "mallory", token + "x")
    out = capsys.readouterr()
    assert token not in out.out + out.err


def test_backup_archive_is_deterministic_and_restorable(made, tmp_path):
    first = fixtures.make_backup_archive(made[0], tmp_path / "one.tar.gz")
    assert fixtures.make_backup_archive(made[0], tmp_path / "two.tar.gz") == first
    with tarfile.open(tmp_path / "one.tar.gz") as tar:
        names = tar.getnames()
        assert names == sorted(names, key=lambda n: Path(n).parts)
        assert "manifest.json" in names and not any(n.startswith(("/", "..")) for n in names)
        tar.extractall(tmp_path / "restored", filter="data")
    assert fixtures.verify_backup(tmp_path / "restored") == made[1]["counts"]
