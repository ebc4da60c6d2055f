"""The lab stand-ins (Gitea), run as real processes on loopback."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from phoenix.lab import fixtures

STANDINS = fixtures.STANDINS
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
ME = pwd.getpwuid(os.getuid()).pw_name
TOKEN = "lab-" + uuid.uuid4().hex  # made here, never printed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "notify_socket")}
    env.update(extra)
    return env


def run(name: str, *args: str, env: dict[str, str] | None = None,
        timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(STANDINS / f"{name}.py"), *args], capture_output=True,
                          text=True, env=env or clean_env(), timeout=timeout, check=False)


@contextlib.contextmanager
def notify_socket(address: str | None = None):
    """A systemd-style notify socket; yields (NOTIFY_SOCKET value, socket)."""
    tmp = None
    if address is None:
        tmp = tempfile.mkdtemp(prefix="phx-", dir="/tmp")
        address = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(10)
    try:
        yield address, sock
    finally:
        sock.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def started(name: str, *args: str, env: dict[str, str] | None = None):
    """Start a stand-in, wait for its READY=1, yield the process; SIGTERM it at the end."""
    with notify_socket("@phoenix-test-" + uuid.uuid4().hex) as (address, sock):
        proc = subprocess.Popen([PYTHON, str(STANDINS / f"{name}.py"), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**(env or clean_env()), "NOTIFY_SOCKET": address})
        try:
            try:
                message = sock.recv(4096).decode()
            except TimeoutError:
                proc.kill()
                pytest.fail(f"{name} never said READY=1: {proc.communicate()[1]}")
            assert "READY=1" in message.splitlines()
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stdout.close()
            proc.stderr.close()


def http(method: str, url: str, body: dict | None = None, token: str | None = None):
    """(status, parsed JSON body, headers) of one request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"token {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers


# --- Gitea -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def backup(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("backup") / "gitea-backup"
    return folder, fixtures.make_gitea_backup(folder)


class Forge:
    """A restored backup and an app.ini pointing at it, as the deploy lays them out."""

    def __init__(self, root: Path, backup: Path | None = None) -> None:
        self.root = root
        self.data = root / "data"
        if backup is not None:
            shutil.copytree(backup, self.data)
        self.db = self.data / "gitea.db"
        self.repos = self.data / "repositories"
        self.ssh = root / "ssh"
        self.ini = root / "app.ini"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.write_ini()

    def write_ini(self, *, run_user: str = ME, allow_root: bool = os.getuid() == 0,
                  install_lock: bool = True, db: Path | None = None,
                  secret_key: str = "lab-secret-key-one", lfs: bool = False,
                  root_url: str | None = None) -> None:
        unsafe = "I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true\n" if allow_root else ""
        self.ini.write_text(
            f"APP_NAME = Timmy forge (lab)\nRUN_USER = {run_user}\nRUN_MODE = prod\n{unsafe}"
            f"WORK_PATH = {self.root}\n\n"
            f"[server]\nHTTP_ADDR = 127.0.0.1\nHTTP_PORT = {self.port}\n"
            f"ROOT_URL = {root_url or self.url + '/'}\nSSH_ROOT_PATH = {self.ssh}\n"
            f"APP_DATA_PATH = {self.data}\n"
            + (f"LFS_START_SERVER = true\nLFS_JWT_SECRET = {'A' * 43}\n" if lfs else "") + "\n"
            f"[database]\nDB_TYPE = sqlite3\nPATH = {db or self.db}\n\n"
            f"[repository]\nROOT = {self.repos}\n\n"
            f"[security]\nINSTALL_LOCK = {'true' if install_lock else 'false'}\n"
            f"SECRET_KEY = {secret_key}\n")

    def api(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        return http(method, f"{self.url}/api/v1{path}", body, token)


@pytest.fixture
def forge(tmp_path, backup) -> Forge:
    return Forge(tmp_path, backup[0])


def test_gitea_version_flag():
    for flag in ("--version", "-v"):
        result = subprocess.run([str(STANDINS / "gitea.py"), flag], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0
        assert result.stdout.startswith("Gitea version 1.22.3 built with GNU Make")


def test_gitea_serves_the_restored_backup(forge, backup):
    counts = backup[1]["counts"]
    fixtures.add_api_token(forge.db, "timmy", TOKEN)
    with started("gitea", "web", "--config", str(forge.ini)):
        assert forge.api("GET", "/version")[:2] == (200, {"version": "1.22.3"})
        status, found, headers = forge.api("GET", "/repos/search?limit=50")
        assert status == 200 and found["ok"] is True
        assert len(found["data"]) == counts["repositories"] == int(headers["X-Total-Count"])
        status, repo, _ = forge.api("GET", "/repos/Timmy_Foundation/timmy-config")
        assert status == 200 and repo["full_name"] == "Timmy_Foundation/timmy-config"
        assert forge.api("GET", "/users/ezra")[1]["login"] == "ezra"
        assert forge.api("GET", "/repos/nobody/nothing")[0] == 404
        assert http("GET", f"{forge.url}/api/healthz")[0] == 200
        status, _, headers = forge.api("GET",
                                       "/repos/Timmy_Foundation/timmy-config/issues?state=all")
        assert status == 200 and int(headers["X-Total-Count"]) == 4

        new = {"title": "Recovery Test", "body": "Automated post-recovery validation."}
        path = "/repos/Timmy_Foundation/timmy-config/issues"
        assert forge.api("POST", path, new)[0] == 401
        assert forge.api("POST", path, new, token="lab-not-a-token")[0] == 401
        status, issue, _ = forge.api("POST", path, new, token=TOKEN)
        assert status == 201 and issue["number"] == 5 and issue["state"] == "open"
        status, closed, _ = forge.api("PATCH", f"{path}/5", {"state": "closed"}, token=TOKEN)
        assert status == 201 and closed["state"] == "closed"
        assert forge.api("GET", f"{path}/5")[1]["state"] == "closed"

    with sqlite3.connect(forge.db) as conn:
        row = conn.execute('SELECT name, is_closed FROM issue WHERE repo_id = 1 AND "index" = 5'
                           ).fetchone()
        repo_row = conn.execute("SELECT num_issues, num_closed_issues FROM repository "
                                "WHERE id = 1").fetchone()
    assert row == ("Recovery Test", 1)
    assert repo_row == (5, 2)


def test_issue_written_through_the_api_survives_backup_and_restore(forge, tmp_path):
    fixtures.add_api_token(forge.db, "timmy", TOKEN)
    with started("gitea", "web", "-c", str(forge.ini)):
        status, issue, _ = forge.api("POST", "/repos/timmy/the-nexus/issues",
                                     {"title": "Written before the disaster"}, token=TOKEN)
        assert status == 201
    fixtures.write_manifest(forge.data)
    fixtures.make_backup_archive(forge.data, tmp_path / "backup.tar.gz")

    new_host = tmp_path / "new-host"
    with tarfile.open(tmp_path / "backup.tar.gz") as tar:
        tar.extractall(new_host / "data", filter="data")
    assert fixtures.verify_backup(new_host / "data")["issues"] == 13
    forge2 = Forge(new_host)
    with started("gitea", "web", "-c", str(forge2.ini)):
        status, again, _ = forge2.api("GET", f"/repos/timmy/the-nexus/issues/{issue['number']}")
        assert status == 200 and again["title"] == "Written before the disaster"


def test_gitea_notifies_systemd_on_a_socket_path(forge):
    with notify_socket() as (address, sock):
        proc = subprocess.Popen([PYTHON, str(STANDINS / "gitea.py"), "web", "-c", str(forge.ini)],
                                env=clean_env(NOTIFY_SOCKET=address), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            assert sock.recv(4096).decode().splitlines()[0] == "READY=1"
            assert forge.api("GET", "/version")[0] == 200  # ready means listening
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert sock.recv(4096) == b"STOPPING=1"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_gitea_refuses_a_user_other_than_run_user(forge):
    forge.write_ini(run_user="phoenix-nobody")
    result = run("gitea", "web", "--config", str(forge.ini))
    assert result.returncode == 1
    assert f"Expect user 'phoenix-nobody' but current user is: {ME}" in result.stderr
    result = run("gitea", "admin", "regenerate", "hooks", "--config", str(forge.ini))
    assert result.returncode == 1 and "Expect user 'phoenix-nobody'" in result.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="the root refusal needs root")
def test_gitea_refuses_root_like_the_real_one(forge):
    forge.write_ini(run_user="root", allow_root=False)
    result = run("gitea", "web", "-c", str(forge.ini))
    assert result.returncode == 1 and "not supposed to be run as root" in result.stderr


def test_gitea_refuses_without_install_lock(forge):
    forge.write_ini(install_lock=False)
    result = run("gitea", "web", "-c", str(forge.ini))
    assert result.returncode == 1 and "INSTALL_LOCK" in result.stderr


def run_with_readonly_ini(forge: Forge, *args: str) -> subprocess.CompletedProcess:
    """The stand-in with app.ini unwritable, as Phoenix's unit leaves it (root:gitea 0640 under
    ProtectSystem=full): a read-only bind mount for root (who ignores modes), 0440 otherwise."""
    argv = [PYTHON, str(STANDINS / "gitea.py"), *args, "-c", str(forge.ini)]
    if os.getuid() == 0:
        if not shutil.which("unshare"):
            pytest.fail("unshare (util-linux) is needed to test a read-only app.ini as root")
        folder = shlex.quote(str(forge.ini.parent))
        script = (f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && "
                  f"exec {shlex.join(argv)}")
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    else:
        forge.ini.chmod(0o440)
    return subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=20,
                          check=False)


def test_gitea_dies_without_a_jwt_secret_it_cannot_save(forge):
    """Today's app.ini shape (SECRET_KEY, INTERNAL_TOKEN, no [oauth2] JWT_SECRET), unwritable:
    modules/setting/oauth2.go's log.Fatal, before anything listens."""
    text = forge.ini.read_text() + "SECRET_KEY = s3cret\nINTERNAL_TOKEN = tok3n\n"
    forge.ini.write_text(text)
    result = run_with_readonly_ini(forge, "web")
    assert result.returncode == 1
    assert "[F] save oauth2.JWT_SECRET failed" in result.stderr
    assert "Listen:" not in result.stdout
    assert forge.ini.read_text() == text  # nothing written


def test_gitea_dies_without_an_internal_token_or_lfs_secret_it_cannot_save(forge):
    jwt = "A" * 43
    base = forge.ini.read_text() + f"\n[oauth2]\nJWT_SECRET = {jwt}\n"
    forge.ini.write_text(base)
    result = run_with_readonly_ini(forge, "web")
    assert result.returncode == 1 and "[F] Error saving internal token" in result.stderr
    forge.ini.chmod(0o640)
    forge.ini.write_text(base.replace("INSTALL_LOCK = true",
                                      "INSTALL_LOCK = true\nINTERNAL_TOKEN = tok3n")
                         .replace("[server]", "[server]\nLFS_START_SERVER = true\n"
                                              "LFS_JWT_SECRET = too-short"))
    result = run_with_readonly_ini(forge, "web")
    assert result.returncode == 1 and "[F] error saving to custom config" in result.stderr
    forge.ini.chmod(0o640)
    text = forge.ini.read_text().replace("too-short", "B" * 43)
    forge.ini.write_text(text)
    with started("gitea", "web", "-c", str(forge.ini)):  # every secret valid: it runs
        assert forge.api("GET", "/version")[0] == 200
    assert forge.ini.read_text() == text


def test_gitea_saves_the_secrets_it_generates_when_it_can(forge):
    with started("gitea", "web", "-c", str(forge.ini)):
        assert forge.api("GET", "/version")[0] == 200
    saved = fixtures.standin_module("gitea").read_ini(str(forge.ini))
    jwt = saved.get("oauth2", "JWT_SECRET")
    assert fixtures.standin_module("gitea").jwt_secret_ok(jwt) and len(jwt) == 43
    assert saved.get("security", "INTERNAL_TOKEN").count(".") == 2   # a JWT, as Gitea makes


def test_gitea_refuses_a_missing_database(forge):
    forge.write_ini(db=forge.root / "nowhere" / "gitea.db")
    result = run("gitea", "web", "-c", str(forge.ini))
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_gitea_refuses_a_corrupt_database(forge):
    fixtures.corrupt_database(forge.db)
    result = run("gitea", "web", "-c", str(forge.ini))
    assert result.returncode == 1
    assert "integrity_check" in result.stderr and str(forge.db) in result.stderr
    assert run("gitea", "doctor", "check", "-c", str(forge.ini)).returncode == 1


def test_gitea_refuses_a_missing_config(tmp_path):
    result = run("gitea", "web", "-c", str(tmp_path / "app.ini"))
    assert result.returncode == 1 and "Unable to load config file" in result.stderr


def test_regenerate_hooks_is_idempotent(forge):
    hook = forge.repos / "timmy_foundation" / "timmy-config.git" / "hooks" / "post-receive.d" / \
        "gitea"
    assert fixtures.OLD_GITEA_BIN in hook.read_text()  # the dead forge's path, from the backup

    def snapshot() -> dict:
        return {str(p): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
                for p in sorted(forge.repos.glob("*/*.git/hooks/**/*")) if p.is_file()}

    first = run("gitea", "admin", "regenerate", "hooks", "--config", str(forge.ini))
    assert first.returncode == 0, first.stderr
    assert f"--config='{forge.ini}' post-receive" in hook.read_text()
    assert fixtures.OLD_GITEA_BIN not in hook.read_text()
    for repo in forge.repos.glob("*/*.git"):
        assert os.access(repo / "hooks" / "post-receive", os.X_OK)
    before = snapshot()
    second = run("gitea", "admin", "regenerate", "hooks", "-c", str(forge.ini))
    assert second.returncode == 0 and "(0 files changed)" in second.stdout
    assert snapshot() == before

    # a push now runs the regenerated hooks, which call this gitea's `hook` command: straight
    # into the repository on disk it has no Gitea environment, and 1.22 refuses it
    bare, work = forge.repos / "timmy" / "the-nexus.git", forge.root / "work"
    before_refs = git_refs(bare)
    result = push_on_disk(bare, work)
    assert result.returncode == 1
    assert "remote: Gitea: Rejecting changes as Gitea environment not set." in result.stderr
    assert "(pre-receive hook declined)" in result.stderr
    assert git_refs(bare) == before_refs


GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": "Lab", "GIT_AUTHOR_EMAIL": "lab@phoenix.invalid",
           "GIT_COMMITTER_NAME": "Lab", "GIT_COMMITTER_EMAIL": "lab@phoenix.invalid",
           "GIT_TERMINAL_PROMPT": "0"}


def git_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in clean_env(**GIT_ENV).items()
           if not k.startswith(("GITEA_", "SSH_ORIGINAL_COMMAND", "GIT_ASKPASS", "SSH_ASKPASS"))}
    env.update(extra, PATH=f"{Path(PYTHON).parent}:{os.environ['PATH']}")
    return env


def git_refs(bare: Path) -> str:
    return subprocess.run(["git", "--git-dir", str(bare), "for-each-ref"], capture_output=True,
                          text=True, check=True, env=git_env()).stdout


def push_on_disk(bare: Path, work: Path, **extra: str) -> subprocess.CompletedProcess:
    """A commit pushed straight into the bare repository (no Gitea in between): the result of
    the push itself."""
    env = git_env(**extra)
    if not work.exists():
        subprocess.run(["git", "clone", "-q", str(bare), str(work)], env=env, check=True,
                       capture_output=True)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "--allow-empty", "-m", "on disk"],
                   env=env, check=True, capture_output=True)
    return subprocess.run(["git", "-C", str(work), "push", "origin", "HEAD"],
                          capture_output=True, text=True, env=env, check=False)


def test_gitea_hook_refuses_a_push_without_its_environment(forge):
    """cmd/hook.go (1.22): pre-receive and post-receive refuse a push that carries no
    SSH_ORIGINAL_COMMAND while [security] ONLY_ALLOW_PUSH_IF_GITEA_ENVIRONMENT_SET is true (its
    default), with cmd/serv.go fail's message and exit status 1; GITEA_INTERNAL_PUSH=true skips
    the check; the setting false lets such a push through."""
    assert run("gitea", "admin", "regenerate", "hooks", "-c", str(forge.ini)).returncode == 0
    bare = forge.repos / "timmy" / "the-nexus.git"
    hook = [PYTHON, str(STANDINS / "gitea.py"), "hook", f"--config={forge.ini}"]
    line = "0" * 40 + " " + "1" * 40 + " refs/heads/main\n"

    def call(name: str, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*hook, name, *args], input=line, capture_output=True, text=True,
                              cwd=bare, env=git_env(**extra), timeout=20, check=False)

    for name in ("pre-receive", "post-receive"):
        refused = call(name)
        assert (refused.returncode, refused.stdout) == (1, "\n"), refused.stderr
        assert refused.stderr == (
            "Gitea: Rejecting changes as Gitea environment not set.\nIf you are pushing over "
            "SSH you must push with a key managed by\nGitea or set your environment "
            "appropriately.\n")
        assert call(name, SSH_ORIGINAL_COMMAND="receive-pack").returncode == 0
        assert call(name, GITEA_INTERNAL_PUSH="true").returncode == 0
    # update is kept for compatibility: it refuses only refs/pull/*, environment or not
    assert call("update", "refs/heads/main", "0" * 40, "1" * 40).returncode == 0
    assert call("update", "refs/pull/1/head", "0" * 40, "1" * 40).returncode == 1

    # through git: the push is declined, nothing lands; internal pushes land
    before = git_refs(bare)
    assert push_on_disk(bare, forge.root / "w1").returncode == 1
    assert git_refs(bare) == before
    assert push_on_disk(bare, forge.root / "w1", GITEA_INTERNAL_PUSH="1").returncode == 0
    assert git_refs(bare) != before

    # the setting off (go-ini's MustBool words), a direct push is let through
    forge.ini.write_text(forge.ini.read_text().replace(
        "[security]\n", "[security]\nONLY_ALLOW_PUSH_IF_GITEA_ENVIRONMENT_SET = off\n"))
    before = git_refs(bare)
    result = push_on_disk(bare, forge.root / "w1")
    assert result.returncode == 0, result.stderr
    assert git_refs(bare) != before


def test_gitea_serves_git_over_http_and_its_hooks_accept_only_that(forge, tmp_path):
    """routers/web/repo/githttp.go (1.22): info/refs and the two RPCs, a push only for a user
    with write access (anonymous: 401 with WWW-Authenticate); git runs with Gitea's
    environment, so the hooks let the HTTP push land while a push on disk is still refused."""
    assert run("gitea", "admin", "regenerate", "hooks", "-c", str(forge.ini)).returncode == 0
    fixtures.add_api_token(forge.db, "timmy", TOKEN)
    reader = "lab-" + uuid.uuid4().hex
    fixtures.add_api_token(forge.db, "ezra", reader)  # no write access to timmy/the-nexus
    secret = tmp_path / "secret"
    askpass = tmp_path / "askpass"  # git asks it for the user, then the token, from the file
    askpass.write_text(f"#!/bin/sh\ncase \"$1\" in Username*) echo timmy ;; "
                       f"*) cat {shlex.quote(str(secret))} ;; esac\n")
    askpass.chmod(0o700)
    bare = forge.repos / "timmy" / "the-nexus.git"
    url = f"{forge.url}/timmy/the-nexus.git"
    with started("gitea", "web", "-c", str(forge.ini)):
        request = urllib.request.Request(f"{url}/info/refs?service=git-receive-pack")
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(request, timeout=10)
        assert anonymous.value.code == 401
        assert anonymous.value.headers["WWW-Authenticate"] == 'Basic realm="Gitea"'

        def git(*args: str, token: str = TOKEN) -> subprocess.CompletedProcess:
            secret.write_text(token + "\n")
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=60,
                                  env=git_env(GIT_ASKPASS=str(askpass)), check=False)

        work = tmp_path / "work"
        assert git("clone", "-q", url, str(work)).returncode == 0
        # over http.postBuffer (1 MiB): git sends the pack chunked
        (work / "blob.bin").write_bytes(os.urandom(2 * 1024 * 1024))
        assert git("-C", str(work), "add", "blob.bin").returncode == 0
        assert git("-C", str(work), "commit", "-q", "-m", "over http").returncode == 0
        pushed = git("-C", str(work), "push", "origin", "HEAD")
        assert pushed.returncode == 0, pushed.stderr
        head = git("-C", str(work), "rev-parse", "HEAD").stdout.strip()
        branch = git("-C", str(work), "symbolic-ref", "--short", "HEAD").stdout.strip()
        assert f"{head} commit\trefs/heads/{branch}" in git(
            "--git-dir", str(bare), "for-each-ref", "--format=%(objectname) %(objecttype)\t"
            "%(refname)").stdout

        assert git("-C", str(work), "commit", "-q", "--allow-empty", "-m", "by a reader"
                   ).returncode == 0
        refused = git("-C", str(work), "push", "origin", "HEAD", token=reader)
        assert refused.returncode != 0 and "not found" in refused.stderr.lower()
        wrong = git("-C", str(work), "push", "origin", "HEAD", token="lab-wrong")
        assert wrong.returncode != 0 and "Authentication failed" in wrong.stderr
        assert git("--git-dir", str(bare), "rev-parse", branch).stdout.strip() == head
        on_disk = push_on_disk(bare, tmp_path / "disk")
        assert on_disk.returncode == 1 and "Gitea environment not set" in on_disk.stderr
        assert git("--git-dir", str(bare), "rev-parse", branch).stdout.strip() == head
    for result in (pushed, refused, wrong):
        assert TOKEN not in result.stdout + result.stderr


def test_drill_push_commit_goes_over_http_with_the_token_on_stdin(forge, tmp_path, monkeypatch):
    """phoenix.lab.forgework.push_commit, its ssh replaced by a local shell: the commit lands
    through the stand-in's HTTP (its hooks accept it), the token is on no command line, and
    the folder holding it is gone afterwards."""
    from phoenix.lab import forgework
    from phoenix.sshconf import Target

    assert run("gitea", "admin", "regenerate", "hooks", "-c", str(forge.ini)).returncode == 0
    fixtures.add_api_token(forge.db, "timmy", TOKEN)
    commands: list[list[str]] = []
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    def local(_target, command):
        commands.append(["sh", "-c", command])
        return commands[-1]

    monkeypatch.setattr("phoenix.sshconf.ssh_command", local)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("PATH", f"{Path(PYTHON).parent}:{os.environ['PATH']}")
    settings = {"gitea_http_addr": "127.0.0.1", "gitea_http_port": forge.port}
    target = Target("forge.lab.invalid", tmp_path / "key", tmp_path / "known_hosts")
    bare = forge.repos / "timmy" / "the-nexus.git"
    before = git_refs(bare)
    with started("gitea", "web", "-c", str(forge.ini)):
        forgework.push_commit(target, settings, "timmy/the-nexus", "drill: over http",
                              user="timmy", token=TOKEN)
        with pytest.raises(Exception, match="Authentication failed"):
            forgework.push_commit(target, settings, "timmy/the-nexus", "drill: refused",
                                  user="timmy", token="lab-wrong")
    after = git_refs(bare)
    assert after != before
    log = subprocess.run(["git", "--git-dir", str(bare), "log", "-1", "--format=%s"],
                         capture_output=True, text=True, env=git_env(), check=True).stdout
    assert log.strip() == "drill: over http"
    assert all(TOKEN not in " ".join(argv) for argv in commands)
    assert list(tmp.iterdir()) == []  # the token's folder was removed


def test_regenerate_keys_writes_authorized_keys(forge):
    forge.ssh.mkdir(mode=0o700)
    (forge.ssh / "authorized_keys").write_text("ssh-ed25519 AAAAkeep operator@laptop\n")
    result = run("gitea", "admin", "regenerate", "keys", "--config", str(forge.ini))
    assert result.returncode == 0, result.stderr
    keys = forge.ssh / "authorized_keys"
    text = keys.read_text()
    assert text.startswith("ssh-ed25519 AAAAkeep operator@laptop\n")  # not Gitea's: kept
    assert text.count("# gitea public key") == 3 and "serv key-1" in text
    assert keys.stat().st_mode & 0o777 == 0o600
    assert run("gitea", "admin", "regenerate", "keys", "-c", str(forge.ini)).returncode == 0
    assert keys.read_text() == text


def test_gitea_doctor_check(forge):
    result = run("gitea", "doctor", "check", "--config", str(forge.ini))
    assert result.returncode == 0 and "ok" in result.stdout


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
def test_runbook_step9_issue_create_and_close_with_gitea_api_sh(forge, tmp_path):
    """The runbook's own validation (gitea-api.sh from timmy-config) against the stand-in."""
    fixtures.add_api_token(forge.db, "timmy", TOKEN)
    script = tmp_path / "gitea-api.sh"
    script.write_text(fixtures.GITEA_API_SH)
    script.chmod(0o755)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    env = clean_env(GITEA_URL=forge.url, GITEA_TOKEN_FILE=str(token_file))
    with started("gitea", "web", "-c", str(forge.ini)):
        created = subprocess.run([str(script), "issue", "create", "timmy-config", "Recovery Test",
                                  "can be closed"], capture_output=True, text=True, env=env,
                                 check=False)
        assert created.returncode == 0, created.stderr
        assert created.stdout.strip() == "Issue #5 created"
        closed = subprocess.run([str(script), "issue", "close", "timmy-config", "5"],
                                capture_output=True, text=True, env=env, check=False)
        assert closed.stdout.strip() == "Issue #5 closed", closed.stderr
        token_file.write_text("lab-wrong\n")
        refused = subprocess.run([str(script), "issue", "create", "timmy-config", "x"],
                                 capture_output=True, text=True, env=env, check=False)
        assert refused.returncode != 0
    assert TOKEN not in created.stdout + created.stderr + closed.stdout + closed.stderr


# --- what every shipped script promises ------------------------------------------------------

@pytest.mark.parametrize("name", ["gitea.py", "phoenix_backup_verify.py"])
def test_shipped_scripts_are_self_contained(name):
    path = fixtures.VERIFIER if name == fixtures.VERIFIER.name else STANDINS / name
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "#!/usr/bin/python3" and os.access(path, os.X_OK)
    head = " ".join(lines[1:3])
    assert "STAND-IN for" in head or "NOT a stand-in" in head
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            assert top == "__future__" or top in sys.stdlib_module_names, f"{name}: {module}"


def test_gitea_runs_sqlite_in_the_journal_mode_app_ini_sets(forge):
    """Issue 21: SQLITE_JOURNAL_MODE = WAL (what Litestream needs) puts gitea.db in WAL mode;
    a mode the driver does not know stops Gitea, as mattn/go-sqlite3 refuses its DSN."""
    text = forge.ini.read_text()
    forge.ini.write_text(text.replace("[repository]", "SQLITE_JOURNAL_MODE = WAL\n\n[repository]"))
    assert run("gitea", "admin", "regenerate", "keys", "-c", str(forge.ini)).returncode == 0
    with sqlite3.connect(forge.db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    forge.ini.write_text(text.replace("[repository]", "SQLITE_JOURNAL_MODE = FAST\n\n[repository]"))
    result = run("gitea", "admin", "regenerate", "keys", "-c", str(forge.ini))
    assert result.returncode != 0 and "Invalid _journal_mode: FAST" in result.stderr


def basic_status(forge: Forge, login: str, password: str, otp: str | None) -> int:
    import base64
    request = urllib.request.Request(f"{forge.url}/api/v1/user")
    request.add_header("Authorization",
                       "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode())
    if otp:
        request.add_header("X-Gitea-OTP", otp)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_an_empty_secret_key_is_giteas_builtin_one_for_2fa(forge):
    """modules/setting/security.go: an empty SECRET_KEY means `!#@FDEWREWR&*(`, so 2FA rows a
    forge enrolled without a key of its own decrypt under it, and not under ""."""
    from phoenix.forge.api import totp

    otp = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    gitea = fixtures.standin_module("gitea")
    forge.write_ini(secret_key="")
    with sqlite3.connect(forge.db) as conn:
        conn.executescript(fixtures.enroll_totp_sql(secret_key=gitea.DEFAULT_SECRET_KEY, uid=2,
                                                    otp_secret=otp))
        login = conn.execute("SELECT name FROM user WHERE id = 2").fetchone()[0]
    password = fixtures.password_of(login)
    with started("gitea", "web", "-c", str(forge.ini)):
        assert basic_status(forge, login, password, totp(otp)) == 200
        assert basic_status(forge, login, password, None) == 401
    with sqlite3.connect(forge.db) as conn:  # encrypted under "" instead: Gitea cannot read it
        conn.execute("DELETE FROM two_factor")
        conn.executescript(fixtures.enroll_totp_sql(secret_key="", uid=2, otp_secret=otp))
    with started("gitea", "web", "-c", str(forge.ini)):
        assert basic_status(forge, login, password, totp(otp)) == 401


def test_gitea_reads_a_secret_from_its_uri_and_refuses_both_forms(forge, tmp_path):
    token_file = tmp_path / "internal_token"
    token_file.write_text("a-token-from-a-file\n")
    text = forge.ini.read_text() + f"INTERNAL_TOKEN_URI = file:{token_file}\n"
    forge.ini.write_text(text)
    with started("gitea", "web", "-c", str(forge.ini)):
        assert forge.api("GET", "/version")[0] == 200
    saved = fixtures.standin_module("gitea").read_ini(str(forge.ini))
    assert not saved.has_option("security", "INTERNAL_TOKEN")  # read, not generated
    forge.ini.write_text(text + "INTERNAL_TOKEN = a-literal-token\n")
    result = run("gitea", "web", "-c", str(forge.ini))
    assert result.returncode == 1
    assert "Cannot specify both INTERNAL_TOKEN_URI and INTERNAL_TOKEN" in result.stderr
    forge.ini.write_text(text.replace("SECRET_KEY = lab-secret-key-one",
                                      f"SECRET_KEY = x\nSECRET_KEY_URI = file:{token_file}"))
    result = run("gitea", "web", "-c", str(forge.ini))
    assert result.returncode == 1
    assert "Cannot specify both SECRET_KEY_URI and SECRET_KEY" in result.stderr


def test_gitea_serv_serves_git_over_ssh_by_key_and_permission(forge, tmp_path):
    """cmd/serv.go and routers/private/serv.go (1.22), as sshd runs them from authorized_keys'
    `command=`: git as the key's user, a push only with write access, the refusal's reason
    shown to git, and nothing served while the web process (its private API) is down."""
    assert run("gitea", "admin", "regenerate", "hooks", "-c", str(forge.ini)).returncode == 0
    fake_ssh = tmp_path / "ssh"  # what sshd does with the key's command= line, without sshd
    fake_ssh.write_text(
        "#!/bin/sh\nfor last; do :; done\n"
        f'SSH_ORIGINAL_COMMAND="$last" exec {PYTHON} {STANDINS / "gitea.py"} '
        f'--config={forge.ini} serv "key-$LAB_KEY_ID"\n')
    fake_ssh.chmod(0o700)
    bare = forge.repos / "timmy" / "the-nexus.git"

    def git(*args: str, key: int) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=60,
                              env=git_env(GIT_SSH_COMMAND=str(fake_ssh), LAB_KEY_ID=str(key)),
                              check=False)

    work = tmp_path / "work"
    url = "git@forge.lab.invalid:timmy/the-nexus.git"
    down = git("clone", "-q", url, str(tmp_path / "down"), key=1)
    assert down.returncode != 0 and "Gitea: Internal Server Connection Error" in down.stderr
    with started("gitea", "web", "-c", str(forge.ini)):
        cloned = git("clone", "-q", url, str(work), key=1)  # timmy's key: the owner
        assert cloned.returncode == 0, cloned.stderr
        assert git("-C", str(work), "commit", "-q", "--allow-empty", "-m", "over ssh",
                   key=1).returncode == 0
        pushed = git("-C", str(work), "push", "origin", "HEAD", key=1)
        assert pushed.returncode == 0, pushed.stderr
        head = git("-C", str(work), "rev-parse", "HEAD", key=1).stdout.strip()
        assert git("--git-dir", str(bare), "rev-parse", "HEAD", key=1).stdout.strip() == head
        # allegro (key 3) may read timmy's public repository but not write to it
        assert git("clone", "-q", url, str(tmp_path / "reader"), key=3).returncode == 0
        assert git("-C", str(work), "commit", "-q", "--allow-empty", "-m", "by a reader",
                   key=3).returncode == 0
        refused = git("-C", str(work), "push", "origin", "HEAD", key=3)
        assert refused.returncode != 0
        assert ("Gitea: User: 3:allegro with Key: 3:allegro@lab is not authorized to write to "
                "timmy/the-nexus." in refused.stderr)
        assert git("--git-dir", str(bare), "rev-parse", "HEAD", key=1).stdout.strip() == head
        unknown = git("clone", "-q", url, str(tmp_path / "unknown"), key=99)
        assert unknown.returncode != 0 and "Gitea: Cannot find key: 99" in unknown.stderr
    with sqlite3.connect(forge.db) as conn:  # the key's last use, as UpdatePublicKeyInRepo
        assert conn.execute("SELECT updated_unix FROM public_key WHERE id = 1").fetchone()[0] > (
            conn.execute("SELECT created_unix FROM public_key WHERE id = 1").fetchone()[0])


def set_db_version(db: Path, version: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE version SET version = ? WHERE id = 1", (version,))


def db_version_of(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT version FROM version WHERE id = 1").fetchone()[0]


def test_gitea_migrates_an_older_database_in_time_proportional_to_the_gap(forge):
    """models/migrations/migrations.go (1.22): the pending migrations run inside `gitea web`'s
    start-up, before READY=1, one version row update each; the other commands refuse a
    database that is not at this release's version."""
    import time

    gitea = fixtures.standin_module("gitea")
    set_db_version(forge.db, gitea.DB_VERSION - 4)
    refused = run("gitea", "admin", "regenerate", "hooks", "-c", str(forge.ini))
    assert refused.returncode == 1
    assert (f"current database version {gitea.DB_VERSION - 4} is not equal to the expected "
            f"version {gitea.DB_VERSION}") in refused.stderr
    begun = time.monotonic()
    with started("gitea", "web", "-c", str(forge.ini)):  # READY=1 only once migrated
        took = time.monotonic() - begun
        assert db_version_of(forge.db) == gitea.DB_VERSION
        assert forge.api("GET", "/version")[0] == 200
    assert took >= 4 * gitea.MIGRATION_SECONDS  # a lower bound: the machine's load only adds
    assert run("gitea", "admin", "regenerate", "hooks", "-c", str(forge.ini)).returncode == 0


def test_gitea_refuses_a_newer_or_too_old_database_and_leaves_it_as_it_is(forge):
    gitea = fixtures.standin_module("gitea")
    for version, says in ((gitea.DB_VERSION + 13, "is for a newer Gitea"),
                          (gitea.MIN_DB_VERSION - 1, "no longer supports auto-migration")):
        set_db_version(forge.db, version)
        before = forge.db.read_bytes()
        result = run("gitea", "web", "-c", str(forge.ini))
        assert result.returncode == 1 and says in result.stderr, result.stderr
        assert "Listen:" not in result.stdout
        assert forge.db.read_bytes() == before
