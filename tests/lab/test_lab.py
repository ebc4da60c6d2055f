"""The lab gives real Debian 12 droplets through the real pydo client (issue 2)."""

from __future__ import annotations

import subprocess

import pytest

from phoenix.lab.client import droplet_target
from phoenix.provision.do import public_ip
from phoenix.sshconf import ssh_command


def ssh(lab, name: str, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_command(droplet_target(lab, name), command), capture_output=True,
                          text=True, timeout=timeout)


def test_droplet_boots_real_systemd_and_sshd(lab, droplet_factory):
    droplet = droplet_factory("lab-boot")
    assert droplet["status"] == "active"
    assert public_ip(droplet).startswith(str(lab.subnet.network_address)[:-1])
    result = ssh(lab, "lab-boot", "systemctl is-system-running --wait; hostname; "
                 "cloud-init status --wait | tail -1; cloud-init query v1.instance_id")
    assert result.stdout.split()[0] == "running", result.stdout + result.stderr
    assert result.stdout.split()[1:] == ["lab-boot", "status:", "done",
                                         f"i-{droplet['id']}"], result.stdout


def test_cloud_init_takes_the_host_key_and_metadata_is_private(lab, droplet_factory, tmp_path):
    """The host key given in user_data is the one sshd serves (cloud-init put it there), and
    the seed holding it answers its own droplet only (as a link-local metadata service)."""
    from phoenix.provision.droplet import user_data

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    private, public = (tmp_path / "k").read_text(), (tmp_path / "k.pub").read_text()
    droplet = droplet_factory("lab-ci", user_data=user_data(private, public))
    other = droplet_factory("lab-ci-other")
    scan = subprocess.run(["ssh-keyscan", "-t", "ed25519", public_ip(droplet)],
                          capture_output=True, text=True, timeout=30).stdout
    assert public.split()[1] in scan
    fetch = ("python3 -c 'import sys, urllib.request as u\ntry: print(u.urlopen(sys.argv[1])"
             ".status)\nexcept Exception as e: print(e.code)' ")
    url = f"{lab.artifact_url}/seed/{droplet['id']}/user-data"
    assert ssh(lab, "lab-ci", fetch + url).stdout.strip() == "200"
    assert ssh(lab, "lab-ci-other", fetch + url).stdout.strip() == "403"
    assert other["id"] != droplet["id"]


def test_droplet_installs_packages_through_the_lab_proxy_and_runs_a_firewall(lab,
                                                                             droplet_factory):
    """nftables from Debian through the lab's proxy, and a table loaded: the droplet has
    CAP_NET_ADMIN in its own namespace, as a real droplet has. apt waits for the first-boot
    agent install's dpkg lock (DPkg::Lock::Timeout), as on DigitalOcean."""
    droplet_factory("lab-apt")
    result = ssh(lab, "lab-apt", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                 "apt-get install -y -qq -o DPkg::Lock::Timeout=120 nftables >/dev/null && "
                 "nft add table inet phoenix_test && nft list ruleset")
    assert result.returncode == 0, result.stderr
    assert "table inet phoenix_test" in result.stdout
    log = (lab.state_dir / "apt-cacher-ng" / "log" / "apt-cacher.log").read_text()
    assert "/nftables_" in log, "the package did not come through the lab's apt proxy"


def test_power_off_and_on_keeps_the_disk(lab, droplet_factory, do_client):
    droplet = droplet_factory("lab-power")
    assert ssh(lab, "lab-power", "echo kept > /root/marker").returncode == 0
    do_client.action(droplet["id"], "power_off")
    assert do_client.get(droplet["id"])["status"] == "off"
    assert ssh(lab, "lab-power", "true", timeout=30).returncode != 0
    do_client.action(droplet["id"], "power_on")
    assert do_client.get(droplet["id"])["status"] == "active"
    assert ssh(lab, "lab-power", "cat /root/marker").stdout.strip() == "kept"


def test_destroy_removes_the_droplet(lab, droplet_factory, do_client):
    droplet = droplet_factory("lab-destroy")
    do_client.destroy(droplet["id"])
    import time

    deadline = time.monotonic() + 60
    while do_client.get(droplet["id"]) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert do_client.get(droplet["id"]) is None
    assert not (lab.droplets_dir / str(droplet["id"])).exists()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{lab.tag}-{droplet['id']}" not in netns


def test_lab_down_leaves_the_machine_as_before(lab):
    """Last in this module: down, compare with the machine before the session, up again."""
    from phoenix.lab import lab as lablib
    from tests.conftest import lab_config_baseline, machine_snapshot

    if lab_config_baseline.get("was_up"):
        pytest.skip("the lab was already up before the tests: no clean baseline to compare")
    lablib.down(lab)
    after = machine_snapshot(lab.tag)
    try:
        assert after == {k: v for k, v in lab_config_baseline.items() if k != "was_up"}
    finally:
        lablib.up(lab)  # for the tests that follow in this session
