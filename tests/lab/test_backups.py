"""Backups that survive the VPS, for real (issue 6): a converged forge droplet backs up to the
lab's offsite SFTP store, and a new droplet is restored from that store.

Droplets: offsite-bkt (the store), bk-forge-t1 (the forge), bk-forge-t2 and bk-forge-t3 (the
restores); each is destroyed when its fixture ends, also on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from phoenix import backup
from phoenix.errors import PhoenixError
from phoenix.lab import offsite
from phoenix.lab.client import droplet_target
from phoenix.settings import REPO, load
from phoenix.sshconf import public_half, ssh_command
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
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)


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
    return requests.request(method, f"http://{ip}:3000/api/v1{path}", timeout=10,
                            headers={"Authorization": f"token {token}"}, **kwargs)


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(lab, do_client, tmp_path_factory):
    """The offsite store and its (initialised) repository, seen from the operator's side."""
    made = None
    try:
        made = offsite.ensure(lab, do_client, name=STORE)
        settings = {**load("lab"), **made.settings()}
        opened = backup.store_from_settings(settings, key=lab.ssh_key,
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
        do_client.wait_active(droplet["id"], timeout=90)
        proc = converge(FORGE, tmp)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
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
    snapshot = backup.now(target, settings=settings)
    assert snapshot in [s["id"] for s in backup.list_snapshots(opened)]
    status = json.loads(ssh_cat(target, settings["backup_status_file"]))
    assert status["snapshot_id"] == snapshot and status["counts"]["repositories"] >= 1
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
    snapshot = backup.now(target, settings=settings)
    counts = json.loads(ssh_cat(target, settings["backup_status_file"]))["counts"]

    droplet = None
    try:
        droplet = make_droplet(lab, do_client, "bk-forge-t2")
        do_client.wait_active(droplet["id"], timeout=90)
        source = f"restore_source=restic:{snapshot[:12]}"
        proc = converge("bk-forge-t2", tmp_path, source)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        new = droplet_target(lab, "bk-forge-t2")
        got = api(new.host, token, "GET", f"/repos/Timmy_Foundation/timmy-config/issues/{number}")
        assert got.status_code == 200 and got.json()["title"] == title
        staged = f"/var/lib/phoenix/restore/{snapshot}"
        verified = json.loads(ssh_cat(new, f"{staged}/verified.json"))
        assert verified["counts"] == counts
        assert ssh_cat(new, note) == "survives: yes\n"  # the memories are back in place
        assert changes_left("bk-forge-t2", tmp_path, source) == []
    finally:
        destroy(do_client, droplet)


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
    wrong = backup.Store(repository=opened.repository, password="not-the-password",
                         ssh=opened.ssh)
    with pytest.raises(PhoenixError, match="wrong password for the restic repository"):
        backup.list_snapshots(wrong)
    # On the forge: the job fails, says why in the journal, and exits non-zero.
    password = settings["backup_config_dir"] + "/password"
    assert ssh(lab, FORGE, f"cp -p {password} {password}.good && "
                           f"echo not-the-password > {password}").returncode == 0
    try:
        with pytest.raises(PhoenixError, match="backup job failed on .*wrong password"):
            backup.now(target, settings=settings)
    finally:
        assert ssh(lab, FORGE, f"mv -f {password}.good {password}").returncode == 0


def test_a_damaged_pack_fails_verify_and_stops_a_restore(lab, do_client, store, tmp_path):
    made, opened, _ = store
    root = offsite.root_target(lab, made)
    copy = "/srv/restic/damaged"
    proc = subprocess.run(ssh_command(root, (
        f"rm -rf {copy} && cp -a {made.path} {copy} && "
        f"pack=$(find {copy}/data -type f -printf '%s %p\\n' | sort -n | tail -1 | cut -d' ' -f2) "
        f"&& python3 -c 'import sys; p = sys.argv[1]; d = bytearray(open(p, \"rb\").read()); "
        f"d[len(d) // 2] ^= 0xFF; open(p, \"wb\").write(bytes(d))' \"$pack\" && basename \"$pack\"")),
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    pack = proc.stdout.strip()
    damaged = backup.Store(repository=f"sftp:{made.user}@{made.ip}:{copy}",
                           password=opened.password, ssh=opened.ssh)
    with pytest.raises(backup.BackupCheckError, match=f"pack {pack}") as info:
        backup.verify(damaged, read_data_subset="100%")
    assert info.value.packs == [pack]

    # A restore from it stops before Gitea is touched: no database on the new droplet.
    droplet = None
    try:
        droplet = make_droplet(lab, do_client, "bk-forge-t3")
        do_client.wait_active(droplet["id"], timeout=90)
        snapshot = backup.latest_snapshot_id(damaged)
        result = converge("bk-forge-t3", tmp_path, f"backup_repository={damaged.repository}",
                          f"restore_source=restic:{snapshot}")
        assert result.returncode != 0
        assert "Stage restic snapshot" in result.stdout + result.stderr
        check = ssh(lab, "bk-forge-t3", "test -e /var/lib/gitea/data/gitea.db; echo $?")
        assert check.stdout.strip() == "1"
    finally:
        destroy(do_client, droplet)


def test_retention_prunes_as_configured(lab, store, forge):
    target, tmp = forge
    _, opened, settings = store
    # A snapshot line of its own (backup_host), so that the other tests' snapshots, taken in
    # whichever hour, do not change which ones the policy keeps.
    line = replace(opened, host="bk-retention")
    staging = settings["backup_staging_dir"]
    job = f"{settings['backup_job_path']} --config {settings['backup_config_dir']}/config.json"
    for name, when in OLD_TIMES.items():  # backdated snapshots of the same folder
        proc = ssh(lab, FORGE, f"cd {staging} && {job} restic backup -q --host {line.host} "
                               f"--tag phoenix --tag old-{name} --time '{when}' .")
        assert proc.returncode == 0, proc.stderr
    configured = (f"backup_host={line.host}", "backup_keep_hourly=3", "backup_keep_daily=3",
                  "backup_keep_weekly=0")
    proc = converge(FORGE, tmp, *configured)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    newest = backup.now(target, settings=settings)
    left = backup.list_snapshots(line)
    names = sorted(t[4:] for s in left for t in s["tags"] if t.startswith("old-"))
    # hourly 3: now's hour (the newest), 11h (C), 10h (B, not the older A of the same hour);
    # daily 3: today, the 15th (C), the 14th (D); the 13th (E) is a fourth day: pruned.
    assert names == ["B", "C", "D"]
    assert [s["id"] for s in left if not any(t.startswith("old-") for t in s["tags"])] == [newest]
    assert len(backup.list_snapshots(opened)) >= 1   # the forge's own line is untouched


def test_a_store_lost_during_a_backup_fails_in_one_line_then_the_next_run_completes(
        lab, store, forge):
    """Issue 19: the store drops off the network while restic talks to it."""
    target, _ = forge
    made, opened, settings = store
    before = {s["id"] for s in backup.list_snapshots(opened)}
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["snapshot"] = backup.now(target, settings=settings, timeout=600)
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
    snapshot = backup.now(target, settings=settings)  # the store is back: the next run
    assert not any(locks.iterdir())
    assert snapshot in [s["id"] for s in backup.list_snapshots(opened)]
    assert backup.verify(opened, read_data_subset="10%").snapshot_id == snapshot
