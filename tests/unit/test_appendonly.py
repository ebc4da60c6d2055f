"""The append-only endpoint (issue 17), on this machine: restic's rclone backend talking to a
real `rclone serve restic --stdio --append-only` on a local repository (no ssh, no root).

The forced command of the store is stood in for by `sh -c 'exec rclone … REPO'`, which
ignores the arguments restic appends, as sshd does with a key's forced command.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phoenix import scripts
from phoenix.backup import appendonly
from phoenix.backup import snapshots as backup
from phoenix.backup.restic import job_module, restic
from phoenix.backup.store import LOCK_WAIT_SCRIPT, Store, append_only, channel_config, store_spec
from phoenix.errors import PhoenixError
from phoenix.sshconf import Target
from tests.unit import test_backup
from tests.unit.test_backup import PASSWORD, job_config, run_job, run_restore

forge = test_backup.forge   # the same synthetic forge (a fixture)

pytestmark = pytest.mark.skipif(shutil.which("restic") is None or shutil.which("rclone") is None,
                                reason="restic and rclone are needed (make deps installs them)")


def serve(repo: Path, *, append_only: bool = True) -> list[str]:
    """What the store's forced command runs, as a local program."""
    flag = "--append-only " if append_only else ""
    return ["sh", "-c", (f"exec rclone serve restic --stdio {flag}--config /dev/null -q "
                         f"{shlex.quote(str(repo))}"), "forced"]


@pytest.fixture
def repo(tmp_path) -> Path:
    store = Store(repository=str(tmp_path / "repo"), password=PASSWORD)
    backup.init(store)
    return tmp_path / "repo"


def test_the_job_writes_and_restores_through_the_append_only_endpoint(repo, forge, tmp_path):
    config = job_config(tmp_path, forge, repo)
    data = json.loads(config.read_text())
    data.pop("keep")
    data.update({"repository": "rclone:/srv/restic/forge", "location": "the store (append-only)",
                 "rclone_program": shlex.join(serve(repo))})
    config.write_text(json.dumps(data))
    proc = run_job(config)
    assert proc.returncode == 0, proc.stderr
    snapshot = json.loads(proc.stdout)["snapshot_id"]
    assert "saved to the store (append-only)" in proc.stderr
    local = Store(repository=str(repo), password=PASSWORD)
    assert [s["id"] for s in backup.list_snapshots(local)] == [snapshot]
    restored = run_restore(config, "stage", snapshot, str(tmp_path / "restored"))
    assert restored.returncode == 0, restored.stderr
    assert (tmp_path / "restored" / "gitea.db").is_file()


def test_every_forbidden_operation_is_refused_by_an_append_only_endpoint(repo):
    found = appendonly.refusals(serve(repo))
    assert found == {what: 403 for what, _, _ in appendonly.PROBES}
    assert len(list((repo / "keys").iterdir())) == 1   # nothing was removed


def test_a_plain_endpoint_is_caught_and_named(repo, monkeypatch):
    before = (repo / "config").read_bytes()
    found = appendonly.refusals(serve(repo, append_only=False))
    # Allowed, but harmless: the deletions name files that do not exist, the config is
    # written with its own bytes.
    assert found["delete a pack"] == 404 and found["overwrite the repository's config"] == 200
    assert (repo / "config").read_bytes() == before
    monkeypatch.setattr(appendonly, "ssh_command", lambda *_: serve(repo, append_only=False))
    target = Target(host="store.example", key=Path("k"), known_hosts=Path("kh"))
    with pytest.raises(PhoenixError, match="not append-only for the forge's key: it could "
                                           "delete a pack"):
        appendonly.prove(target)


def test_a_key_that_runs_any_command_is_no_endpoint(tmp_path):
    with pytest.raises(PhoenixError, match="no append-only endpoint answered the forge's key"):
        appendonly.refusals(["sh", "-c", "exit 0"])


def test_operator_prune_applies_the_policy(repo, tmp_path):
    store = Store(repository=str(repo), password=PASSWORD)
    (tmp_path / "d").mkdir()
    for when in ("2020-01-13 09:00:00", "2020-01-14 09:00:00", "2020-01-15 10:00:00"):
        restic(store, "backup", "-q", "--host", "forge", "--tag", "phoenix", "--time",
                      when, str(tmp_path / "d"), what="backup")
    with pytest.raises(PhoenixError, match="keeps nothing"):
        backup.prune(store, keep={"daily": 0})
    kept, removed = backup.prune(store, keep={"daily": 2})
    assert [s["time"][:10] for s in kept] == ["2020-01-14", "2020-01-15"]
    assert [s["time"][:10] for s in removed] == ["2020-01-13"]


def test_an_added_key_fails_the_key_check(repo, tmp_path):
    store = Store(repository=str(repo), password=PASSWORD)
    assert backup.check_keys(store, expected=1) == 1
    (tmp_path / "new").write_text("another password\n")
    restic(store, "key", "add", "--new-password-file", str(tmp_path / "new"),
                  what="add a key")
    with pytest.raises(backup.BackupCheckError, match="has 2 keys, 1 expected"):
        backup.check_keys(store, expected=1)


def test_channel_config_pins_the_forge_to_the_endpoint(tmp_path):
    target = Target(host="10.0.0.5", user="restic", key=tmp_path / "id",
                    known_hosts=tmp_path / "kh")
    repository = "sftp:restic@10.0.0.5:/srv/restic/forge"
    config = channel_config(repository, target, append_only=True)
    assert config["repository"] == "rclone:/srv/restic/forge"
    argv = shlex.split(config["rclone_program"])
    assert argv[0] == "ssh" and argv[-1] == "restic@10.0.0.5"
    assert "StrictHostKeyChecking=yes" in argv and "sftp_command" not in config
    assert set(channel_config(repository, target, append_only=False)) == {"sftp_command"}
    assert append_only({"backup_append_only": True, "backup_repository": repository})
    assert not append_only({"backup_append_only": True, "backup_repository": "s3:x/y"})
    # restic's rclone.args: what a channel asks for (the forced command wins on a store)
    job = job_module()
    assert job.restic_argv({**config}, "snapshots")[1:5] == [
        "-o", f"rclone.program={config['rclone_program']}", "-o",
        "rclone.args=serve restic --stdio --append-only"]


def test_store_setup_pins_each_key_to_one_command():
    script = scripts.load(backup.REPO / "files" / "phoenix_offsite_store.py")
    keys = script.authorized_keys({"repository": "/srv/restic/forge",
                                   "append_keys": ["ssh-ed25519 AAAAforge forge"],
                                   "full_keys": ["ssh-ed25519 AAAAop op"]}).splitlines()
    assert keys[1] == ('restrict,command="/usr/bin/rclone serve restic --stdio --append-only '
                       '--config /dev/null -q /srv/restic/forge" ssh-ed25519 AAAAforge forge')
    assert keys[2] == 'restrict,command="internal-sftp" ssh-ed25519 AAAAop op'
    with pytest.raises(SystemExit, match="not an SSH public key"):
        script.authorized_keys({"repository": "/r", "append_keys": ["garbage"]})
    service, timer = script.prune_units({"repository": "/srv/restic/forge", "user": "restic"},
                                        {"host": "forge", "tag": "phoenix",
                                         "keep": {"hourly": 24, "daily": 7}})
    assert (f"ExecStart={script.LOCK_WAIT_PATH} /usr/bin/restic forget --group-by tags --tag "
            "phoenix --keep-hourly 24 --keep-daily 7 --prune") in service
    assert "User=restic" in service and "OnCalendar=daily" in timer
    assert f"ExecStartPre={script.GUARD_PATH} 7200" in service
    with pytest.raises(SystemExit, match="keeps nothing"):
        script.prune_units({"repository": "/r", "user": "restic"},
                           {"host": "f", "tag": "t", "keep": {}})
    # Issue 21: with repository snapshots, those past their window are forgotten first, so
    # that the full line's --prune reclaims their data in the same run.
    service, _ = script.prune_units({"repository": "/r", "user": "restic"},
                                    {"host": "forge", "tag": "phoenix", "keep": {"daily": 7},
                                     "repo_tag": "phoenix-repositories",
                                     "repo_keep_within": "2d"})
    starts = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    wait = script.LOCK_WAIT_PATH
    assert starts == [f"ExecStart={wait} /usr/bin/restic forget --group-by tags --tag "
                      "phoenix-repositories --keep-within 2d",
                      f"ExecStart={wait} /usr/bin/restic forget --group-by tags --tag phoenix "
                      "--keep-daily 7 --prune"]


def test_the_stores_prune_waits_for_a_lock_the_forges_run_holds(tmp_path):
    """Issue 21: the forge's repository snapshots hold the lock for seconds, every few minutes;
    the store's retention tries again while restic says the repository is locked, and fails
    at once on anything else."""
    (tmp_path / "wait").write_text(LOCK_WAIT_SCRIPT.read_text())
    fake = tmp_path / "restic"
    fake.write_text("#!/bin/sh\n"  # locked on its first run, then done
                    f"if [ ! -e {tmp_path}/ran ]; then touch {tmp_path}/ran; "
                    "echo 'unable to create lock in backend: repository is already locked by "
                    "PID 7 on forge' >&2; exit 1; fi\necho pruned\n")
    fake.chmod(0o755)
    done = subprocess.run([sys.executable, str(tmp_path / "wait"), str(fake)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "pruned" in done.stdout and "trying again" in done.stdout
    other = tmp_path / "other"
    other.write_text("#!/bin/sh\necho 'Fatal: wrong password' >&2; exit 3\n")
    other.chmod(0o755)
    failed = subprocess.run([sys.executable, str(tmp_path / "wait"), str(other)],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 3 and "wrong password" in failed.stderr
    assert "trying again" not in failed.stdout


def test_the_store_writes_the_lock_wait_it_is_sent():
    """The store's script runs alone (`python3 -c`): the lock wait's program comes in the spec,
    and a spec without it is refused rather than a retention unit left without its wait."""
    script = scripts.load(backup.REPO / "files" / "phoenix_offsite_store.py")
    assert script.lock_wait({"lock_wait": LOCK_WAIT_SCRIPT.read_text()}).startswith(
        "#!/usr/bin/python3\n")
    with pytest.raises(SystemExit, match="no lock_wait"):
        script.lock_wait({})


def test_the_prune_guard_refuses_snapshots_dated_far_from_their_arrival(repo, tmp_path):
    """A forge could add snapshots dated later in each hour/day than the real ones, so that
    keep-* keeps those and forgets the real ones: the store's guard stops the prune."""
    script = scripts.load(backup.REPO / "files" / "phoenix_offsite_store.py")
    (tmp_path / "guard").write_text(script.GUARD)
    (tmp_path / "d").mkdir()
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RESTIC_REPOSITORY": str(repo),
           "RESTIC_PASSWORD_FILE": str(tmp_path / "pw"),
           "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    channel = ["restic", "-r", "rclone:forge", "-o", f"rclone.program={shlex.join(serve(repo))}"]

    def guard() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(tmp_path / "guard"), "7200"], env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    def forge_backup(*args: str) -> None:
        subprocess.run([*channel, "backup", "-q", *args, str(tmp_path / "d")], env=env,
                       check=True, capture_output=True, timeout=120)

    forge_backup()
    assert guard().returncode == 0
    forge_backup("--time", "2030-01-01 23:59:00")   # through the append-only endpoint
    refused = guard()
    assert refused.returncode == 1
    assert "not pruning: 1 snapshot(s)" in refused.stderr and "claims 2030-01-01" in refused.stderr


def test_the_stores_retention_forgets_the_forges_line_across_its_droplets(repo, tmp_path):
    """backup_host unset: each droplet that was the forge backs up as its own name; the store's
    daily retention (its unit's commands, run as the store runs them) applies the policy to
    the line by its tag, whatever the hosts, as `phoenix backup prune` does."""
    from datetime import datetime, timedelta

    script = scripts.load(backup.REPO / "files" / "phoenix_offsite_store.py")
    (tmp_path / "wait").write_text(LOCK_WAIT_SCRIPT.read_text())
    spec = store_spec({"backup_repository": "sftp:restic@store.example:/srv/restic/forge",
                              "backup_keep_daily": 2, "frequent_snapshot_keep_within": "2d"},
                             forge_key="ssh-ed25519 AAAAforge", operator_key="ssh-ed25519 AAAAop",
                             password=PASSWORD)
    service, _ = script.prune_units(spec, spec["prune"])
    store = Store(repository=str(repo), password=PASSWORD)
    (tmp_path / "staging").mkdir()
    noon = datetime(2026, 11, 20, 12, 0)   # away from midnight: keep-daily counts days

    def snapshot(host: str, tag: str, age: timedelta) -> str:
        proc = restic(store, "backup", "--json", "--host", host, "--tag", tag, "--time",
                             (noon - age).strftime("%Y-%m-%d %H:%M:%S"), str(tmp_path / "staging"),
                             what="a test snapshot")
        return json.loads(proc.stdout.strip().splitlines()[-1])["snapshot_id"][:8]

    first, second = "forge-recovery-20261201", "forge-recovery-20261202"
    full = [snapshot(first, "phoenix", timedelta(days=3)), snapshot(first, "phoenix",
                                                                   timedelta(days=2)),
            snapshot(second, "phoenix", timedelta(days=1)), snapshot(second, "phoenix",
                                                                    timedelta(hours=1))]
    repos = [snapshot(first, "phoenix-repositories", timedelta(days=3)),
             snapshot(first, "phoenix-repositories", timedelta(days=1, hours=1)),
             snapshot(second, "phoenix-repositories", timedelta(hours=1))]
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RESTIC_REPOSITORY": str(repo),
           "RESTIC_PASSWORD_FILE": str(tmp_path / "pw"),
           "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    for line in service.splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line[len("ExecStart="):])
            assert argv[:2] == [script.LOCK_WAIT_PATH, "/usr/bin/restic"]
            proc = subprocess.run([sys.executable, str(tmp_path / "wait"), "restic", *argv[2:]],
                                  env=env, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
    left = {s["id"][:8] for s in backup.list_snapshots(store, all_hosts=True)}
    # keep-daily 2 over the whole line: the newest of the last two days, whichever droplet;
    # keep-within 2d of the line's newest repository snapshot, whichever droplet
    assert left == {full[2], full[3], repos[1], repos[2]}


def plant_lock(repo: Path, claimed: str, hostname: str = "forge-1") -> str:
    """A restic lock dated `claimed`, written as anyone holding the repository's password (the
    forge) could: restic's own format (internal/crypto/crypto.go: IV || AES-256-CTR ||
    Poly1305-AES of the ciphertext; the master key in keys/ under scrypt), named by the sha256
    of its bytes. restic itself always dates a lock now, and it is a Go program: no faketime."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.poly1305 import Poly1305

    def aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
        crypt = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
        return crypt.update(data) + crypt.finalize()

    def mac(k: bytes, r: bytes, iv: bytes, data: bytes) -> bytes:
        s = Cipher(algorithms.AES(k), modes.ECB()).encryptor().update(iv)
        return Poly1305.generate_tag(r + s, data)

    keyfile = json.loads(next((repo / "keys").iterdir()).read_bytes())
    user = hashlib.scrypt(PASSWORD.encode(), salt=base64.b64decode(keyfile["salt"]),
                          n=keyfile["N"], r=keyfile["r"], p=keyfile["p"], dklen=64,
                          maxmem=1 << 30)
    sealed = base64.b64decode(keyfile["data"])
    iv, body, tag = sealed[:16], sealed[16:-16], sealed[-16:]
    assert mac(user[32:48], user[48:64], iv, body) == tag, "not restic's key format"
    master = json.loads(aes_ctr(user[:32], iv, body))
    enc = base64.b64decode(master["encrypt"])
    k, r = base64.b64decode(master["mac"]["k"]), base64.b64decode(master["mac"]["r"])
    lock = json.dumps({"time": claimed, "exclusive": False, "hostname": hostname,
                       "username": "root", "pid": 4242}).encode()
    iv = os.urandom(16)
    body = aes_ctr(enc, iv, lock)
    data = iv + body + mac(k, r, iv, body)
    name = hashlib.sha256(data).hexdigest()
    (repo / "locks" / name).write_bytes(data)
    return name


def test_a_lock_dated_in_the_future_no_longer_stops_the_stores_retention(repo, tmp_path):
    """restic 0.14 never takes a future-dated lock for stale: one planted by the forge stopped
    the store's prune every day. The lock guard before it removes that lock (and an unreadable
    one left for long), names them, and leaves a live lock alone."""
    import time
    from datetime import UTC, datetime, timedelta

    script = scripts.load(backup.REPO / "files" / "phoenix_offsite_store.py")
    spec = store_spec({"backup_repository": "sftp:restic@store.example:/srv/restic/forge",
                       "backup_keep_daily": 2},
                      forge_key="ssh-ed25519 AAAAforge", operator_key="ssh-ed25519 AAAAop",
                      password=PASSWORD)
    service, _ = script.prune_units(spec, spec["prune"])
    pre = [shlex.split(line[len("ExecStartPre="):]) for line in service.splitlines()
           if line.startswith("ExecStartPre=")]
    assert [argv[0] for argv in pre] == [script.GUARD_PATH, script.LOCK_GUARD_PATH]
    assert pre[1][1] == "300"  # backup_prune_lock_tolerance's default
    (tmp_path / "lockguard").write_text(script.LOCK_GUARD)
    (tmp_path / "wait").write_text(LOCK_WAIT_SCRIPT.read_text())
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "d").mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RESTIC_REPOSITORY": str(repo),
           "RESTIC_PASSWORD_FILE": str(tmp_path / "pw"),
           "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    forget = ["restic", "forget", "--group-by", "tags", "--tag", "phoenix", "--keep-daily", "2",
              "--prune"]

    def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    planted = plant_lock(repo, tomorrow)
    blocked = run(*forget)
    assert blocked.returncode != 0 and "repository is already locked" in blocked.stderr, \
        blocked.stderr
    garbage = repo / "locks" / ("ab" * 32)
    garbage.write_bytes(os.urandom(120))
    os.utime(garbage, (time.time() - 900, time.time() - 900))  # arrived 15 min ago
    # a live lock: a backup reading its stdin holds one while the guard runs
    live = subprocess.Popen(["restic", "backup", "--stdin", "--stdin-filename", "live"],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # restic writes a lock as <id>-tmp-<n> and renames it: wait for the name it keeps
        def locks() -> set[str]:
            return {p.name for p in (repo / "locks").iterdir() if "-tmp-" not in p.name}

        deadline = time.monotonic() + 60
        while len(locks()) < 3:
            assert time.monotonic() < deadline, "the backup took no lock"
            time.sleep(0.2)
        mine = locks() - {planted, garbage.name}
        guard = run(sys.executable, str(tmp_path / "lockguard"), pre[1][1])
        assert guard.returncode == 0, guard.stderr
        left = {p.name for p in (repo / "locks").iterdir()}
        assert left == mine, guard.stdout   # the live lock stays; both others are gone
        assert f"removed lock {planted[:8]} of forge-1 (pid 4242) claims " \
               f"{tomorrow[:10]}" in guard.stdout, guard.stdout
        assert f"removed lock {garbage.name[:8]} unreadable" in guard.stdout, guard.stdout
        assert "3 lock(s), 2 removed" in guard.stdout, guard.stdout
    finally:
        live.communicate(b"live data\n", timeout=60)
    assert live.returncode == 0
    pruned = run(sys.executable, str(tmp_path / "wait"), *forget, timeout=300)
    assert pruned.returncode == 0, pruned.stderr
    again = run(sys.executable, str(tmp_path / "lockguard"), "300")
    assert again.stdout.strip().endswith("0 lock(s), 0 removed (dated more than 300 s after "
                                         "their arrival, or unreadable)"), again.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (make test runs as root)")
def test_the_stores_setup_never_takes_over_a_folder_it_did_not_create(tmp_path):
    """The account's home is the repository's parent: /srv for /srv/forge. Setup used to chown
    it to the account the forge's key reaches; now it makes what is missing, owned by the
    account, and leaves what existed as it was; a repository of someone else's is refused."""
    import pwd

    script = scripts.load(backup.REPO / "files" / "phoenix_offsite_store.py")
    account = pwd.getpwnam("nobody")
    srv = tmp_path / "srv"
    srv.mkdir(mode=0o755)
    made = script.folders(account, str(srv), str(srv / "forge"))
    assert made == [str(srv / "forge")]
    assert (srv.stat().st_uid, srv.stat().st_mode & 0o777) == (0, 0o755)  # still root's
    assert (srv / "forge").stat().st_uid == account.pw_uid
    assert script.folders(account, str(srv), str(srv / "forge")) == []   # a second run: nothing
    assert srv.stat().st_uid == 0
    deeper = tmp_path / "store" / "restic"
    assert script.folders(account, str(deeper), str(deeper / "forge")) == [
        str(deeper), str(deeper / "forge")]
    assert deeper.stat().st_uid == account.pw_uid and (tmp_path / "store").stat().st_uid == 0
    theirs = srv / "theirs"
    theirs.mkdir()
    (theirs / "data").write_text("kept")
    with pytest.raises(SystemExit, match=r"theirs exists and is not nobody's \(uid 0\)"):
        script.folders(account, str(srv), str(theirs))
    assert theirs.stat().st_uid == 0 and (theirs / "data").read_text() == "kept"
