"""The recovery deploy (issue 3) on real lab droplets: a fresh droplet converges to a working
forge, a second converge changes nothing, bad inputs stop it before harm, and a converge cut
off inside apt is finished by the next one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from phoenix.do import public_ip
from phoenix.lab import fixtures
from phoenix.lab.client import droplet_target
from phoenix.sshconf import ssh_command

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
UNITS = ["gitea", "hermes-backend", "hermes-ezra", "hermes-allegro", "hermes-bezalel"]
GITEA_STATE = "find /var/lib/gitea /etc/gitea -type f | sort | xargs sha256sum | sha256sum"


def converge(name: str, *, dry: bool = False, timeout: float = 600,
             **data: object) -> subprocess.CompletedProcess:
    """pyinfra inventories/lab.py deploy.py --json on one droplet, as an operator runs it."""
    cmd = [sys.executable, "-m", "pyinfra", "-y", "--json", "inventories/lab.py", "deploy.py"]
    cmd += ["--dry"] if dry else []
    for key, value in data.items():
        cmd += ["--data", f"{key}={value}"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PHOENIX_LAB_DROPLETS": name})


def ssh(lab, name: str, command: str, timeout: float = 60) -> str:
    result = subprocess.run(ssh_command(droplet_target(lab, name), command),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result.stdout.strip()


def backup_manifest(lab) -> dict:
    archive = lab.state_dir / "backups" / "lab-gitea-backup.tar.gz"  # group_data/lab.py
    with tarfile.open(archive) as tar:
        return json.load(tar.extractfile("manifest.json"))


def api(ip: str, path: str) -> tuple[int, object, dict]:
    with urllib.request.urlopen(f"http://{ip}:3000/api/v1/{path}", timeout=10) as response:
        return response.status, json.load(response), dict(response.headers)


@pytest.fixture(scope="module")
def forge(lab, module_droplet_factory):
    """A fresh droplet, converged once; (name, ip, seconds the converge took)."""
    name = f"deploy-forge-{os.getpid()}"
    droplet = module_droplet_factory(name)
    started = time.monotonic()
    result = converge(name)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"first converge of {name}: {seconds:.1f} s")
    return name, public_ip(droplet), seconds


def test_services_are_active_and_enabled(lab, forge):
    name, _ip, _seconds = forge
    assert ssh(lab, name, "systemctl is-active " + " ".join(UNITS)).split() == ["active"] * 5
    assert ssh(lab, name, "systemctl is-enabled " + " ".join(UNITS)).split() == ["enabled"] * 5
    assert json.loads(ssh(lab, name, "curl -fsS http://127.0.0.1:8645/health"))["status"] == "ok"


def test_gitea_answers_the_operator_with_the_backups_data(lab, forge):
    name, ip, _seconds = forge
    status, version, _headers = api(ip, "version")
    assert status == 200 and version["version"] == fixtures.GITEA_VERSION
    counts = backup_manifest(lab)["counts"]
    _status, found, headers = api(ip, "repos/search?limit=50")
    assert int(headers["X-Total-Count"]) == counts["repositories"]
    issues = sum(int(api(ip, f"repos/{r['full_name']}/issues?state=all")[2]["X-Total-Count"])
                 for r in found["data"])
    assert issues == counts["issues"]
    users = ssh(lab, name, "sqlite3 -readonly /var/lib/gitea/data/gitea.db "
                "'SELECT COUNT(*) FROM user WHERE COALESCE(type, 0) = 0'")
    assert int(users) == counts["users"]


def test_a_second_converge_changes_nothing(forge):
    name, _ip, _seconds = forge
    plan = converge(name, dry=True)
    assert plan.returncode == 0, plan.stderr[-3000:]
    changing = [op["name"] for op in json.loads(plan.stdout)["plan"] if op["hosts_with_change"]]
    assert changing == []
    started = time.monotonic()
    again = converge(name)
    print(f"no-change converge: {time.monotonic() - started:.1f} s")
    assert again.returncode == 0, again.stderr[-3000:]
    results = json.loads(again.stdout)["results"]
    assert results["totals"]["success"] == 0, [op["name"] for op in results["operations"]
                                                if op["success"]]


def test_a_corrupt_backup_stops_before_gitea_is_touched(lab, forge, tmp_path):
    name, _ip, _seconds = forge
    folder, archive = tmp_path / "backup", tmp_path / "corrupt-backup.tar.gz"
    fixtures.make_gitea_backup(folder)
    fixtures.corrupt_database(folder / "gitea.db")
    fixtures.make_backup_archive(folder, archive)
    before = ssh(lab, name, f"{GITEA_STATE}; systemctl show -p MainPID gitea")
    result = converge(name, restore_source=archive, restore_force="true")
    assert result.returncode != 0
    assert "gitea.db" in result.stderr and str(archive) in result.stderr, result.stderr[-3000:]
    assert ssh(lab, name, f"{GITEA_STATE}; systemctl show -p MainPID gitea") == before


def test_a_wrong_gitea_sha256_installs_nothing(lab, forge):
    name, _ip, _seconds = forge
    before = ssh(lab, name, "sha256sum /usr/local/bin/gitea; systemctl show -p MainPID gitea")
    result = converge(name, gitea_sha256="badc0ffee" * 7 + "0")
    assert result.returncode != 0
    assert "gitea_sha256 mismatch" in result.stderr, result.stderr[-3000:]
    after = ssh(lab, name, "sha256sum /usr/local/bin/gitea; systemctl show -p MainPID gitea")
    assert after == before


# On the droplet: kill dpkg while a package is half-installed (in the middle of unpacking),
# as a lost connection or a crash would: the hardest state to come back from.
KILL_DPKG = ("for i in $(seq 20000); do "
             "if grep -qs '^Status: .* half-installed' /var/lib/dpkg/updates/0*; then "
             "kill -9 $(pgrep -x dpkg); echo killed; exit 0; fi; sleep 0.01; done; exit 1")


def test_a_converge_cut_off_inside_apt_is_finished_by_the_next(lab, droplet_factory):
    name = f"deploy-cut-{os.getpid()}"
    droplet_factory(name)
    killer = subprocess.Popen(ssh_command(droplet_target(lab, name), KILL_DPKG),
                              stdout=subprocess.PIPE, text=True)
    cut = converge(name)
    assert killer.wait(timeout=60) == 0 and "killed" in killer.stdout.read()
    assert cut.returncode != 0
    assert ssh(lab, name, "dpkg --audit; ls -A /var/lib/dpkg/updates"), "dpkg not interrupted"
    finished = converge(name)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert ssh(lab, name, "dpkg --audit; ls -A /var/lib/dpkg/updates") == ""
    assert ssh(lab, name, "systemctl is-active " + " ".join(UNITS)).split() == ["active"] * 5
