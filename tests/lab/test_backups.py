"""Backups that survive the VPS, for real (issues 6 and 17): a converged forge droplet backs up
to the lab's offsite store through its append-only endpoint, a new droplet is restored from
that store, and the forge's own credentials cannot erase anything there.

Droplets: offsite-bkt (the store), bk-forge-t1 (the forge), bk-forge-t2 and bk-forge-t3 (the
restores); each is destroyed when its fixture ends, also on failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from phoenix.backup import appendonly
from phoenix.backup import snapshots as backup
from phoenix.backup.now import now as backup_now
from phoenix.backup.restic import restic
from phoenix.backup.store import Store, forge_channel, store_from_settings
from phoenix.errors import PhoenixError
from phoenix.forge.tls import https_session, served_certificate
from phoenix.lab import offsite, pings, wheelhouse
from phoenix.lab.client import certificate, droplet_target, wait_https
from phoenix.provision.do import public_ip
from phoenix.settings import REPO, load
from phoenix.sshconf import public_half, ssh_command
from phoenix.state import BACKUP_TIMERS
from tests.conftest import network_cut

pytestmark = pytest.mark.lab

STORE = "offsite-bkt"
FORGE = "bk-forge-t1"
OLD_TIMES = {  # backdated snapshots for the retention test: name -> time
    "A": "2020-01-15 10:00:00", "B": "2020-01-15 10:30:00", "C": "2020-01-15 11:00:00",
    "D": "2020-01-14 09:00:00", "E": "2020-01-13 09:00:00"}


# --- helpers -----------------------------------------------------------------------------------

def ssh(lab, name: str, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_command(droplet_target(lab, name), command), capture_output=True,
                          text=True, timeout=timeout, check=False)


def converge(name: str, tmp: Path, *data: str) -> subprocess.CompletedProcess:
    """The deploy on droplet `name`, backups included."""
    files = ["deploy.py"]
    env = {**os.environ, "PHOENIX_ENV": "lab", "PHOENIX_LAB_DROPLETS": name,
           "PHOENIX_LAB_OFFSITE": STORE}
    argv = ["pyinfra", "-y", *[f"--data={d}" for d in data], "inventories/lab.py", *files]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
                          check=False)


def changes_left(name: str, tmp: Path, *data: str) -> list[str]:
    files = ["deploy.py"]
    env = {**os.environ, "PHOENIX_ENV": "lab", "PHOENIX_LAB_DROPLETS": name,
           "PHOENIX_LAB_OFFSITE": STORE}
    proc = subprocess.run(["pyinfra", "--dry", "--json", *[f"--data={d}" for d in data],
                           "inventories/lab.py", *files], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout
    assert "{" in out, proc.stderr[-2000:]
    return [op["name"] for op in json.loads(out[out.index("{"):])["plan"]
            if op["hosts_with_change"]]


def make_droplet(lab, do_client, name: str) -> dict:
    fingerprint = do_client.ensure_key("phoenix-lab-operator",
                                       public_half(lab.ssh_key).read_text())
    droplet = do_client.create({"name": name, "region": "nyc1", "size": "s-2vcpu-4gb",
                                "image": "debian-12-x64", "ssh_keys": [fingerprint],
                                "tags": ["phoenix-test", "phoenix-bk"]})
    return droplet


def destroy(do_client, droplet: dict | None) -> None:
    if droplet and do_client.get(droplet["id"]) is not None:
        do_client.destroy(droplet["id"])


def api(ip: str, token: str, method: str, path: str, **kwargs) -> requests.Response:
    """Gitea's API over TLS for the forge's name, at `ip` (the token never in clear)."""
    settings = load("lab")
    session, base = https_session(settings["gitea_domain"], address=ip,
                                  trust=settings["https_trust_bundle"])
    return session.request(method, f"{base}/api/v1{path}", timeout=10,
                           headers={"Authorization": f"token {token}"}, **kwargs)


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(lab, do_client, tmp_path_factory):
    """The offsite store and its (initialised) repository, seen from the operator's side."""
    made = None
    try:
        made = offsite.ensure(lab, do_client, name=STORE)
        settings = {**load("lab"), **made.settings()}
        opened = store_from_settings(settings, key=lab.ssh_key,
                                            known_hosts=tmp_path_factory.mktemp("kh") / "store")
        backup.init(opened)
        assert backup.init(opened) is False   # idempotent
        yield made, opened, settings
    finally:
        if made is not None:
            offsite.destroy(lab, do_client, made)


@pytest.fixture(scope="module")
def forge(lab, do_client, store, tmp_path_factory):
    """A converged forge (the lab's backup restored, backups to the store), and its target."""
    tmp = tmp_path_factory.mktemp("forge")
    droplet = None
    try:
        droplet = make_droplet(lab, do_client, FORGE)
        ip = public_ip(do_client.wait_active(droplet["id"], timeout=240))
        # The forge itself (not a recovery waiting for its cutover): it backs up on its timer.
        proc = converge(FORGE, tmp, "phoenix_role=primary")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        certificate(lab, droplet_target(lab, FORGE))  # DNS-01: the name is not moved for it
        wait_https(load("lab"), ip)
        yield droplet_target(lab, FORGE), tmp
    finally:
        destroy(do_client, droplet)


@pytest.fixture(scope="module")
def token(lab) -> str:
    return (lab.state_dir / "secrets" / "gitea_api_token").read_text().strip()


# --- the tests -----------------------------------------------------------------------------------

def test_a_second_converge_changes_nothing(forge):
    _, tmp = forge
    assert changes_left(FORGE, tmp) == []


def test_the_job_creates_a_snapshot_offsite(forge, store):
    target, _ = forge
    _, opened, settings = store
    snapshot = backup_now(target, settings=settings)
    assert snapshot in [s["id"] for s in backup.list_snapshots(opened)]
    status = json.loads(ssh_cat(target, settings["backup_status_file"]))
    assert status["snapshot_id"] == snapshot and status["counts"]["repositories"] >= 1
    # the staging's git objects (and write-once files): each hard-linked, or copied where the
    # unit's sandbox refused the link, and then counted in one line of that run's journal
    links = status["staged_links"]
    assert links["linked"] + links["copied"] >= 1, links
    said = subprocess.run(ssh_command(target, "journalctl -o cat -u phoenix-backup.service "
                                      "_SYSTEMD_INVOCATION_ID=$(systemctl show -P InvocationID "
                                      "phoenix-backup.service)"),
                          capture_output=True, text=True, timeout=30, check=False).stdout
    refused = [line for line in said.splitlines() if "hard link was refused" in line]
    assert len(refused) == (1 if links["copied"] else 0), said
    timer = subprocess.run(ssh_command(target, "systemctl is-enabled phoenix-backup.timer; "
                                       "systemctl is-active phoenix-backup.timer"),
                           capture_output=True, text=True, timeout=30, check=False).stdout.split()
    assert timer == ["enabled", "active"]


def ssh_cat(target, path: str) -> str:
    proc = subprocess.run(ssh_command(target, f"cat {path}"), capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_data_written_then_restored_onto_a_new_droplet_is_all_there(lab, do_client, forge,
                                                                     store, token, tmp_path):
    target, _ = forge
    _, _, settings = store
    title = "Written an hour before the disaster"
    made = api(target.host, token, "POST", "/repos/Timmy_Foundation/timmy-config/issues",
               json={"title": title, "body": "must survive"})
    assert made.status_code == 201, made.text
    number = made.json()["number"]
    note = "/root/.hermes/memories/bk-test-note.yaml"
    assert ssh(lab, FORGE, f"echo 'survives: yes' > {note}").returncode == 0
    snapshot = backup_now(target, settings=settings)
    counts = json.loads(ssh_cat(target, settings["backup_status_file"]))["counts"]
    # Issue 21: written after the snapshot, it lives only in Litestream's replica.
    later = api(target.host, token, "POST", "/repos/Timmy_Foundation/timmy-config/issues",
                json={"title": "Written seconds before the disaster"})
    assert later.status_code == 201, later.text
    streamed = replica_holds(lab, target, later.json()["number"])

    droplet = None
    try:
        droplet = make_droplet(lab, do_client, "bk-forge-t2")
        do_client.wait_active(droplet["id"], timeout=240)
        # The newest snapshot, so that the restore replays what came after it (a snapshot named
        # by its id comes back as it was, with nothing after it)
        source = "restore_source=restic:latest"
        proc = converge("bk-forge-t2", tmp_path, source)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        new = droplet_target(lab, "bk-forge-t2")
        # Caddy's home came back with the backup: the new host serves the forge's certificate
        # by address, before any DNS change, and asked the CA for no other.
        name = load("lab")["gitea_domain"]
        assert served_certificate(new.host, name) == served_certificate(target.host, name)
        got = api(new.host, token, "GET", f"/repos/Timmy_Foundation/timmy-config/issues/{number}")
        assert got.status_code == 200 and got.json()["title"] == title
        staged = f"/var/lib/phoenix/restore/{snapshot}"
        verified = json.loads(ssh_cat(new, f"{staged}/verified.json"))
        assert verified["counts"] == counts
        # ... and the database came back to its replica's newest point, not the snapshot's
        got = api(new.host, token, "GET",
                  f"/repos/Timmy_Foundation/timmy-config/issues/{later.json()['number']}")
        assert got.status_code == 200, f"the write after the snapshot is lost ({streamed})"
        report = json.loads(ssh_cat(new, "/var/lib/phoenix/restore/litestream.json"))
        used = {db["name"]: db["used"] for db in report["databases"]}
        assert report["source"] == FORGE and used["gitea"] == "replica", report
        assert used["hermes-backend-state"] in ("replica", "snapshot"), report
        # A recovery host streams nothing before its cutover (one writer per replica)
        units = ssh(lab, "bk-forge-t2", "systemctl is-active phoenix-litestream-gitea "
                                        "phoenix-litestream-hermes").stdout.split()
        assert units == ["inactive", "inactive"]
        assert ssh_cat(new, note) == "survives: yes\n"  # the memories are back in place
        # The recovery host reached the store as the forge does: append-only, never more.
        job = json.loads(ssh_cat(new, settings["backup_config_dir"] + "/config.json"))
        assert job["repository"].startswith("rclone:") and "rclone_program" in job
        assert "sftp_command" not in job and "keep" not in job
        assert changes_left("bk-forge-t2", tmp_path, source) == []
    finally:
        destroy(do_client, droplet)


def replica_holds(lab, target, number: int, timeout: float = 30) -> str:
    """Wait until the forge's gitea.db replica holds issue `number` (restored on the forge
    into a scratch file with its own units' configuration); returns how long that took."""
    started = time.monotonic()
    lock = hashlib.sha256(wheelhouse.LITESTREAM_LOCK.read_bytes()).hexdigest()[:16]
    check = ("cd /tmp && rm -f rpo.db && CREDENTIALS_DIRECTORY=/etc/litestream/credentials "
             f"/opt/litestream/venv-{lock}/bin/litestream restore -config "
             "/etc/litestream/phoenix-litestream-gitea.yml -o rpo.db "
             "/var/lib/gitea/data/gitea.db >/dev/null 2>&1 && sqlite3 rpo.db "
             "'SELECT max(\"index\") FROM issue WHERE repo_id = (SELECT id FROM "
             "repository WHERE lower_name = \"timmy-config\")'; rm -f rpo.db")
    while time.monotonic() - started < timeout:
        out = ssh(lab, FORGE, check).stdout.strip()
        if out.isdigit() and int(out) >= number:
            return f"replicated within {time.monotonic() - started:.1f} s"
        time.sleep(1)
    raise AssertionError(f"issue {number} did not reach the replica within {timeout:.0f} s")


def test_litestream_streams_the_forges_databases_in_wal_mode(lab, forge):
    """Issue 21: the units run, hardened, as the databases' owners; Gitea's database is in
    WAL mode; the replica account is not restic's."""
    units = ssh(lab, FORGE, "systemctl is-active phoenix-litestream-gitea "
                            "phoenix-litestream-hermes").stdout.split()
    assert units == ["active", "active"]
    users = ssh(lab, FORGE, "systemctl show -p User --value phoenix-litestream-gitea "
                            "phoenix-litestream-hermes").stdout.split()
    assert users == ["gitea", "hermes"]
    mode = ssh(lab, FORGE, "sqlite3 /var/lib/gitea/data/gitea.db 'PRAGMA journal_mode'")
    assert mode.stdout.strip() == "wal"
    exposure = ssh(lab, FORGE, "systemd-analyze security phoenix-litestream-gitea "
                               "2>/dev/null | tail -1").stdout
    score = float(re.search(r"exposure level.*?:\s*([0-9.]+)", exposure).group(1))
    assert score <= 2.5, exposure


def test_repository_runs_start_every_interval_less_budget_and_keep_to_it(lab, forge):
    """Issue 21: OnUnitActiveSec= counts from the oneshot's start (its InactiveExitTimestamp),
    not its end, so the runs start every frequent_snapshot_interval - frequent_snapshot_run_budget;
    each records its length, which `phoenix backup status` and validation read."""
    from phoenix.backup import replication

    target, _ = forge
    settings = load("lab")
    period = replication.repo_snapshot_period(settings)
    status: dict | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not status:
        status = replication.repo_run_status(target, settings)
        time.sleep(2)
    assert status and status["duration_seconds"] > 0, status
    assert replication.repo_run_problem(status, settings) is None, status
    unit = "/org/freedesktop/systemd1/unit/phoenix_2dbackup_2drepositories_2e"
    state = "systemctl show phoenix-backup-repositories.service -p ActiveState --value"
    ask = (f"{state}; busctl get-property org.freedesktop.systemd1 {unit}service "
           "org.freedesktop.systemd1.Unit InactiveExitTimestampMonotonic; "
           f"busctl get-property org.freedesktop.systemd1 {unit}timer "
           f"org.freedesktop.systemd1.Timer NextElapseUSecMonotonic; {state}")
    for _ in range(20):  # between runs: while one is activating the timer has no next elapse
        lines = ssh(lab, FORGE, ask).stdout.split("\n")
        if lines[0] == lines[3] == "inactive":
            break
        time.sleep(1)
    assert lines[0] == lines[3] == "inactive", lines
    started, elapse = (int(line.split()[1]) for line in lines[1:3])   # "t 37447820597"
    assert elapse - started == period * 1_000_000, (lines, period)


def test_verify_restores_the_latest_snapshot(store, forge):
    target, _ = forge
    _, opened, settings = store
    result = backup.verify(opened, read_data_subset="100%")
    status = json.loads(ssh_cat(target, settings["backup_status_file"]))
    assert result.snapshot_id == status["snapshot_id"]
    assert result.counts == status["counts"]


def test_a_wrong_password_is_a_clear_error(lab, store, forge):
    target, _ = forge
    _, opened, settings = store
    wrong = Store(repository=opened.repository, password="not-the-password",
                         ssh=opened.ssh)
    with pytest.raises(PhoenixError, match="wrong password for the restic repository"):
        backup.list_snapshots(wrong)
    # On the forge: the job fails, says why in the journal, and exits non-zero.
    password = settings["backup_config_dir"] + "/password"
    assert ssh(lab, FORGE, f"cp -p {password} {password}.good && "
                           f"echo not-the-password > {password}").returncode == 0
    try:
        with pytest.raises(PhoenixError, match="backup job failed on .*wrong password"):
            backup_now(target, settings=settings)
    finally:
        assert ssh(lab, FORGE, f"mv -f {password}.good {password}").returncode == 0


@pytest.fixture
def backups_stopped(lab, forge):
    """The forge's backup runs stopped (and any under way finished) for one test, started
    again after. The lab's frequent snapshots start every few seconds and each holds a lock in
    the store: a test of something else that needs the store to itself (an exclusive lock, a
    lock it counts, packs it damages and puts back) would race them."""
    timers = " ".join(f"{t}.timer" for t in BACKUP_TIMERS)
    services = " ".join(f"{t}.service" for t in BACKUP_TIMERS)
    stopped = ssh(lab, FORGE, f"systemctl stop {timers}; for _ in $(seq 300); do "
                  f"systemctl is-active -q {services} || exit 0; sleep 1; done; exit 1")
    assert stopped.returncode == 0, stopped.stderr
    try:
        yield
    finally:
        started = ssh(lab, FORGE, f"systemctl start {timers}")
        assert started.returncode == 0, started.stderr


def test_a_damaged_pack_fails_verify_and_stops_a_restore(lab, do_client, store, forge,
                                                        backups_stopped, tmp_path):
    made, opened, _ = store
    root = offsite.root_target(lab, made)
    # The forge's runs are stopped while the store is damaged and put back, as an operator
    # repairing a store would, or packs written meanwhile are damaged or lost with the put-back.
    # The forge's key reaches only its repository: damage it there (one byte in the middle of
    # every pack, so that whatever the snapshot needs is damaged), and put it back after.
    flip = ("import sys; p = sys.argv[1]; d = bytearray(open(p, 'rb').read()); "
            "d[len(d) // 2] ^= 0xFF; open(p, 'wb').write(bytes(d))")
    proc = subprocess.run(ssh_command(root, (
        f"rm -rf /root/data.orig && cp -a {made.path}/data /root/data.orig && "
        f"find {made.path}/data -type f -exec python3 -c {shlex.quote(flip)} {{}} \\; && "
        f"find {made.path}/data -type f -printf '%f\\n'")),
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    damaged = set(proc.stdout.split())
    droplet = None
    try:
        with pytest.raises(backup.BackupCheckError, match="is damaged: pack [0-9a-f]{64}") as info:
            backup.verify(opened, read_data_subset="100%")
        assert info.value.packs and set(info.value.packs) <= damaged

        # A restore from it stops before Gitea is touched: no database on the new droplet.
        droplet = make_droplet(lab, do_client, "bk-forge-t3")
        do_client.wait_active(droplet["id"], timeout=240)
        snapshot = backup.latest_snapshot_id(opened)
        result = converge("bk-forge-t3", tmp_path, f"restore_source=restic:{snapshot}")
        assert result.returncode != 0
        # Stopped where the damage is met: reading the snapshot's manifest while the deploy is
        # planned (issue 13's resolver, on the operator's side), or staging it on the host.
        said = result.stdout + result.stderr
        assert "Stage restic snapshot" in said or "ciphertext verification failed" in said, \
            said[-3000:]
        check = ssh(lab, "bk-forge-t3", "test -e /var/lib/gitea/data/gitea.db; echo $?")
        assert check.stdout.strip() == "1"
    finally:
        destroy(do_client, droplet)
        put_back = subprocess.run(ssh_command(root, (
            f"rm -rf {made.path}/data && mv /root/data.orig {made.path}/data")),
            capture_output=True, text=True, timeout=120, check=False)
        assert put_back.returncode == 0, put_back.stderr


def forge_restic(lab, args: str, *, password_file: str | None = None
                 ) -> subprocess.CompletedProcess:
    """restic on the forge with the forge's own credentials (its job's config: the key, the
    channel, the password), as whoever has root there would run it."""
    settings = load("lab")
    job = f"{settings['backup_job_path']} --config {settings['backup_config_dir']}/config.json"
    flag = f" --password-file {password_file}" if password_file else ""
    return ssh(lab, FORGE, f"{job} restic {args}{flag}", timeout=600)


def test_the_forges_credentials_cannot_erase_the_backups(lab, store, forge, backups_stopped):
    made, opened, settings = store
    target, _ = forge
    backup_now(target, settings=settings)
    before = backup.list_snapshots(opened, all_hosts=True)
    assert len(before) >= 2

    # restic forget --prune: every deletion refused (403), nothing forgotten.
    forgot = forge_restic(lab, "forget --tag phoenix --keep-last 1 --prune")  # every host
    assert forgot.returncode != 0 and "403" in forgot.stderr, forgot.stderr[-800:]

    # Add a key (allowed: append-only), then remove the operator's with it: refused.
    operator_key = next(k["id"] for k in backup.list_keys(opened) if k["current"])
    assert ssh(lab, FORGE, "echo attacker-password > /root/np && chmod 600 /root/np"
               ).returncode == 0
    added = forge_restic(lab, "key add --new-password-file /root/np")
    assert added.returncode == 0, added.stderr[-500:]
    removed = forge_restic(lab, f"key remove {operator_key}", password_file="/root/np")
    assert removed.returncode != 0 and "403" in removed.stderr, removed.stderr[-800:]

    # Over the same channel, by hand: delete a pack, overwrite it. And ssh asking for a shell
    # command (from the forge, with its key) gets the forced command instead.
    with forge_channel(settings) as key:
        channel = appendonly.Channel(ssh_command(key, appendonly.UNFORCED))
        try:
            status, listing = channel.request("GET", "/data/")
            pack = json.loads(listing)[0]["name"]
            assert status == 200 and re.fullmatch(r"[0-9a-f]{64}", pack)
            assert channel.request("DELETE", f"/data/{pack}")[0] == 403
            assert channel.request("POST", f"/data/{pack}", b"garbage")[0] == 403
        finally:
            channel.close()
    erase = ssh(lab, FORGE, f"ssh -i {settings['backup_config_dir']}/id_backup "
                f"-o UserKnownHostsFile={settings['backup_config_dir']}/known_hosts "
                f"-o BatchMode=yes {made.user}@{made.ip} 'echo SHELL-OPEN; rm -rf {made.path}' "
                "</dev/null | tr -cd '[:print:]\\n'")  # rclone answers in binary HTTP/2
    assert "SHELL-OPEN" not in erase.stdout

    # Every snapshot is still there, and restores; the data is whole.
    after = backup.list_snapshots(opened, all_hosts=True)
    assert {s["id"] for s in before} - {s["id"] for s in after} == set()
    ours = [s for s in after  # restic --host is the droplet's name; the full line's snapshots
            if s["host"] == FORGE and settings["backup_tag"] in s["tags"]]
    assert ours
    for n, snap in enumerate(ours):
        result = backup.verify(opened, snapshot=snap["id"],
                               read_data_subset="100%" if n == 0 else "1%")
        assert result.files > 0 and result.counts["repositories"] >= 1

    # verify proves the property, and names the key the forge added; the operator removes it.
    with forge_channel(settings) as key:
        with pytest.raises(backup.BackupCheckError, match="has 2 keys, 1 expected"):
            backup.verify(opened, forge=key, keys_expected=1)
        extra = next(k["id"] for k in backup.list_keys(opened) if not k["current"])
        restic(opened, "key", "remove", extra, what="remove the forge's key")
        result = backup.verify(opened, forge=key, keys_expected=1)
    assert result.refused == [what for what, _, _ in appendonly.PROBES] and result.keys == 1
    assert "append-only: the store refused the forge's key to delete a pack" in result.summary()


def test_retention_runs_on_the_store_and_for_the_operator(lab, do_client, store, forge,
                                                         backups_stopped):
    made, opened, settings = store
    # A line of its own (its own backup_tag), so that the other tests' snapshots, taken in
    # whichever hour, do not change which ones the policy keeps. Each snapshot as another
    # droplet (restic --host): the store's retention follows the tag across the droplets that
    # were the forge, whatever backup_host says. Written with the forge's own channel: adding
    # is what it may do.
    line = replace(opened, tag="bk-retention", host=None)
    staging = settings["backup_staging_dir"]
    for name, when in OLD_TIMES.items():  # backdated snapshots of the same folder
        proc = forge_restic(lab, f"backup -q --host bk-retention-{name} --tag {line.tag} "
                                 f"--time '{when}' {staging}")
        assert proc.returncode == 0, proc.stderr
    newest = forge_restic(lab, f"backup -q --host bk-retention-now --tag {line.tag} {staging}")
    assert newest.returncode == 0, newest.stderr
    # The store's own timer, its policy from group_data (here set for this line). Backdated
    # snapshots are what a forge forging dates would add: the store's guard refuses to prune.
    policy = {**settings, "backup_tag": line.tag, "backup_keep_hourly": 3,
              "backup_keep_daily": 3, "backup_keep_weekly": 0}
    root = offsite.root_target(lab, made)
    prune_now = "systemctl start phoenix-offsite-prune.service"
    try:
        offsite.ensure(lab, do_client, name=STORE, settings=policy)
        refused = subprocess.run(ssh_command(root, prune_now), capture_output=True, text=True,
                                 timeout=600, check=False)
        assert refused.returncode != 0
        journal = subprocess.run(ssh_command(root, "journalctl -u phoenix-offsite-prune -o cat "
                                             "--no-pager | grep 'prune guard'"),
                                 capture_output=True, text=True, timeout=60, check=False).stdout
        assert "not pruning: 5 snapshot(s)" in journal, journal
        assert len(backup.list_snapshots(line)) == 6
        # Told that these dates are wanted (a tolerance past them), the timer's job prunes.
        offsite.ensure(lab, do_client, name=STORE, settings={
            **policy, "backup_prune_time_tolerance": 10 * 365 * 86400})
        pruned = subprocess.run(ssh_command(root, prune_now), capture_output=True, text=True,
                                timeout=600, check=False)
        assert pruned.returncode == 0, pruned.stderr
    finally:
        offsite.ensure(lab, do_client, name=STORE)   # the lab's own policy again
    left = backup.list_snapshots(line)
    names = sorted(s["host"].removeprefix("bk-retention-") for s in left
                   if s["host"].removeprefix("bk-retention-") in OLD_TIMES)
    # hourly 3: now's hour (the newest), 11h (C), 10h (B, not the older A of the same hour);
    # daily 3: today, the 15th (C), the 14th (D); the 13th (E) is a fourth day: pruned.
    assert names == ["B", "C", "D"]
    assert len(left) == 4
    # The operator's prune, with its own key: daily 1 leaves the newest.
    kept, removed = backup.prune(line, keep={"daily": 1})
    assert len(kept) == 1 and kept[0]["host"] == "bk-retention-now"
    assert len(removed) == 3
    assert len(backup.list_snapshots(opened)) >= 1   # the forge's own line is untouched


def test_a_store_lost_during_a_backup_fails_in_one_line_then_the_next_run_completes(
        lab, store, forge, backups_stopped):
    """Issue 19: the store drops off the network while restic talks to it."""
    target, _ = forge
    made, opened, settings = store
    before = {s["id"] for s in backup.list_snapshots(opened)}
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["snapshot"] = backup_now(target, settings=settings, timeout=600)
        except PhoenixError as exc:
            outcome["error"] = str(exc)

    worker = threading.Thread(target=run)
    worker.start()
    # Mid-backup: once restic holds its lock in the store (seen from the host, on the store
    # droplet's disk), so the run that dies leaves that lock behind.
    locks = lab.droplets_dir / str(made.droplet_id) / "root" / made.path.lstrip("/") / "locks"
    deadline = time.monotonic() + 120
    while not (locks.is_dir() and any(locks.iterdir())):
        assert time.monotonic() < deadline and worker.is_alive(), f"no restic lock: {outcome}"
        time.sleep(0.01)
    started = time.monotonic()
    with network_cut(lab, made.droplet_id):
        worker.join(timeout=300)
    print(f"the job ended {time.monotonic() - started:.0f} s after the store went: {outcome}")
    assert not worker.is_alive()
    assert "\n" not in outcome["error"] and "cannot reach the store" in outcome["error"]
    assert before <= {s["id"] for s in backup.list_snapshots(opened)}
    assert any(locks.iterdir())  # the cut-off run's lock is still in the store
    time.sleep(3)  # the bridge relearns the store's address
    snapshot = backup_now(target, settings=settings)  # the store is back: the next run
    assert not any(locks.iterdir())
    assert snapshot in [s["id"] for s in backup.list_snapshots(opened)]
    assert backup.verify(opened, read_data_subset="10%").snapshot_id == snapshot


def test_a_cut_off_restore_of_latest_finishes_with_the_snapshot_it_started_with(
        lab, store, forge, tmp_path):
    """Issue 13: a restore of restic:latest cut off after the database move, a newer snapshot
    meanwhile; the re-run (the pending marker, no restore_force) restores the first one, never
    a mix of the two."""
    target, _ = forge
    _, opened, settings = store
    first = backup_now(target, settings=settings)
    restore_dir = settings["restore_staging_dir"]
    assert ssh(lab, FORGE, f"echo database > {restore_dir}/cut-after").returncode == 0
    # A host an earlier Phoenix deployed has phoenix-litestream-restore: phoenix-restore
    # replays the replicas now, and the deploy takes the stale program away.
    retired = "/usr/local/sbin/phoenix-litestream-restore"
    assert ssh(lab, FORGE, f"printf '#!/bin/sh\\n' > {retired} && chmod 755 {retired}"
               ).returncode == 0
    data = ("phoenix_role=primary", "restore_source=restic:latest")
    cut = converge(FORGE, tmp_path, *data, "restore_force=true")
    assert cut.returncode != 0 and "cut off after database" in cut.stdout + cut.stderr
    assert ssh(lab, FORGE, f"test -e {retired} || echo gone").stdout.strip() == "gone"
    second = backup_now(target, settings=settings)  # restic:latest moves on
    assert second != first and backup.latest_snapshot_id(opened) == second
    again = converge(FORGE, tmp_path, *data)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    want = hashlib.sha256(backup.read_manifest(opened, first)).hexdigest()
    assert ssh_cat(target, f"{restore_dir}/restored").strip() == want
    assert first[:8] in json.loads(ssh_cat(target, f"{restore_dir}/restored.json"))["label"]
    assert ssh(lab, FORGE, f"test -e {restore_dir}/pending || echo done").stdout.strip() == "done"


def forge_pings(lab, secret: str, ip: str) -> list[dict]:
    """What the lab's alert receiver got from `ip` at the check the secret's URL names."""
    check = (lab.state_dir / "secrets" / secret).read_text().strip().rsplit("/", 1)[1]
    return [p for p in pings.read(lab, check) if p["from"] == ip]


WATCH_LOG = "/var/lib/phoenix-backup-watch"  # the watch unit's StateDirectory, the user's


def test_the_store_tells_the_operator_when_backups_stop_arriving(lab, do_client, store, forge):
    """The watch on the store (files/phoenix_backup_watch.py, its timer), its thresholds
    shortened through settings: an ok after a backup arrives; an alert naming the full
    snapshots once the forge's backup timers stop; the all-clear when one arrives again; and
    an alert again when the forge can no longer reach the store (its backup fails). The
    forge's own pings (the secrets alert_url and alert_replicas_url, the lab's receiver): one
    per run, a failure ping with the reason, Litestream's heartbeat."""
    made, opened, settings = store
    target, _ = forge
    root = offsite.root_target(lab, made)

    def on_store(command: str) -> str:
        proc = subprocess.run(ssh_command(root, command), capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def wait_for(what: str, path: str, after: int, timeout: float = 150) -> str:
        """The log `path` once it holds `what` past its first `after` characters."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = on_store(f"cat {WATCH_LOG}/{path} 2>/dev/null || true")
            if what in text[after:]:
                return text[after:]
            time.sleep(2)
        alerts = on_store(f"cat {WATCH_LOG}/alerts 2>/dev/null || true")
        raise AssertionError(f"{what!r} not in {path} within {timeout:.0f} s: "
                             f"{text[after:]!r}; alerts: {alerts[-2000:]!r}")

    def size(path: str) -> int:
        return len(on_store(f"cat {WATCH_LOG}/{path} 2>/dev/null || true"))

    # The operator's commands: what a mail or a webhook would carry, kept in the watch's files
    log = 'printf "== %s\\n" "$PHOENIX_ALERT_SUBJECT" >> "$0"; cat >> "$0"'
    watched = {**settings,
               "backup_alert_command": ["sh", "-c", log, f"{WATCH_LOG}/alerts"],
               "backup_alert_ok_command": ["sh", "-c", log, f"{WATCH_LOG}/oks"],
               "backup_alert_schedule": "*:*:0/5", "backup_max_age": 30}
    block = (f"nft add table inet phoenix_test_cut && nft add chain inet phoenix_test_cut out "
             f"'{{ type filter hook output priority 0; }}' && nft add rule inet "
             f"phoenix_test_cut out ip daddr {made.ip} drop")
    timers = " ".join(f"{t}.timer" for t in BACKUP_TIMERS)
    try:
        offsite.ensure(lab, do_client, name=STORE, settings=watched)
        snapshot = backup_now(target, settings=settings)  # (the one before may be older)
        wait_for("== forge backups arrive\n", "oks", size("oks"), timeout=60)
        base = size("alerts")
        # The forge's own pings reached the operator's alert URL (the lab's receiver)
        got = [p["body"] for p in forge_pings(lab, "alert_url", target.host)]
        assert f"full backup: snapshot {snapshot[:8]} saved" in got, got[-5:]
        assert any(re.fullmatch(r"repositories: snapshot [0-9a-f]{8} saved", b) for b in got)

        # The forge's backup timers stop: the full snapshots' arrival is late, named.
        assert ssh(lab, FORGE, f"systemctl stop {timers}").returncode == 0
        stopped = time.time()
        said = wait_for("== forge backups stopped arriving at the offsite store\n", "alerts",
                        base)
        assert re.search(r"^full snapshots: the newest arrived \d+ s ago \(.*\), past its 30 s$",
                         said, re.M), said
        assert "repository snapshots" not in said and "database replicas" not in said, said

        # ... and the operator's alert URL missed its pings meanwhile (a run under way when
        # the timers stopped may still end, within frequent_snapshot_run_budget)
        late = stopped + float(settings["frequent_snapshot_run_budget"]) + 2
        time.sleep(max(0.0, late + 20 - time.time()))  # room for two or three missed runs
        assert [p for p in forge_pings(lab, "alert_url", target.host) if p["at"] > late] == []
        # They run again: the all-clear, once.
        assert ssh(lab, FORGE, f"systemctl start {timers}").returncode == 0
        before = size("alerts")
        backup_now(target, settings=settings)
        said = wait_for("(full snapshots)", "alerts", before, timeout=60)
        assert said == ("== forge backups arrive at the offsite store again\n"
                        "forge backups arrive at the offsite store again (full snapshots)\n")

        # The store unreachable from the forge: its backup fails, and nothing arrives.
        assert ssh(lab, FORGE, block).returncode == 0
        with pytest.raises(PhoenixError, match="cannot reach the store"):
            backup_now(target, settings=settings, timeout=120)
        failed = [p["body"] for p in forge_pings(lab, "alert_url", target.host) if p["failed"]]
        assert any(b.startswith("full backup FAILED: ") and "cannot reach the store" in b
                   for b in failed), failed
        before = size("alerts")
        said = wait_for("== forge backups stopped arriving", "alerts", before)
        assert "full snapshots: the newest arrived" in said, said
        # Litestream's own heartbeat reached its URL while the replicas flowed
        assert [p for p in forge_pings(lab, "alert_replicas_url", target.host)
                if not p["failed"] and p["body"] == ""]

        # The operator empties the alert command: the store's setup takes the watch away.
        offsite.ensure(lab, do_client, name=STORE, settings=settings)
        left = on_store("systemctl list-unit-files --no-legend 'phoenix-backup-watch*'; "
                        "ls -d /usr/local/sbin/phoenix-backup-watch "
                        "/etc/phoenix-offsite/watch.json 2>/dev/null || true")
        assert left.strip() == "", left
        assert on_store("ls /etc/phoenix-offsite").split() == ["password"]
    finally:
        ssh(lab, FORGE, f"nft delete table inet phoenix_test_cut; systemctl start {timers}")
        on_store("systemctl disable --now phoenix-backup-watch.timer 2>/dev/null || true")
