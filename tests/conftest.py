"""Shared fixtures: the lab (root only) and lab clients."""

from __future__ import annotations

import contextlib
import os

import pytest

from phoenix.lab import config as labconfig


@pytest.fixture(scope="session")
def lab_config():
    return labconfig.load()


lab_config_baseline: dict = {}


def machine_snapshot() -> dict:
    """What the lab may add to this machine: namespaces, links, mounts, lab processes."""
    import subprocess

    def out(*cmd: str) -> list[str]:
        return sorted(subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines())

    links = [line.split(":")[1].strip().split("@")[0] for line in out("ip", "-o", "link")]
    procs = [line for line in out("ps", "-eo", "comm")
             if line in ("systemd-nspawn", "apt-cacher-ng")]
    mounts = [line.split()[1] for line in out("cat", "/proc/mounts") if "phoenix" in line]
    return {"netns": out("ip", "netns", "list"), "links": sorted(links),
            "processes": procs, "mounts": mounts}


@pytest.fixture(scope="session")
def lab(lab_config):
    """The lab, up for the session; taken down again if it was down before, also on failure."""
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces, mounts, systemd-nspawn)")
    from phoenix.lab import lab as lablib

    was_up = lablib.status(lab_config)["up"]
    lab_config_baseline.update(machine_snapshot(), was_up=was_up)
    try:
        lablib.up(lab_config, log=lambda m: print(m))
        yield lab_config
    finally:
        if not was_up:
            lablib.down(lab_config)


@pytest.fixture(scope="session")
def do_client(lab):
    from phoenix.provision.do import DO

    return DO(token=lab.do_token_file.read_text().strip(), endpoint=lab.do_endpoint)


@pytest.fixture
def droplet_factory(lab, do_client):
    """Create lab droplets through pydo; every one is destroyed at the end of the test."""
    yield from _droplet_maker(lab, do_client)


@pytest.fixture(scope="module")
def module_droplet_factory(lab, do_client):
    """The same for droplets a whole module shares (a converged forge): destroyed after it."""
    yield from _droplet_maker(lab, do_client)


def _droplet_maker(lab, do_client):
    from phoenix.provision.do import public_ip
    from phoenix.sshconf import public_half

    made: list[int] = []

    def make(name: str, *, tags=("phoenix-test",), user_data: str | None = None,
             wait: bool = True) -> dict:
        key = public_half(lab.ssh_key).read_text()
        fingerprint = do_client.ensure_key("phoenix-lab-operator", key)
        body = {"name": name, "region": "nyc1", "size": "s-2vcpu-4gb",
                "image": "debian-12-x64", "ssh_keys": [fingerprint], "tags": list(tags)}
        if user_data:
            body["user_data"] = user_data
        droplet = do_client.create(body)
        made.append(droplet["id"])
        if wait:
            droplet = do_client.wait_active(droplet["id"], timeout=90)
            assert public_ip(droplet)
        return droplet

    yield make
    for droplet_id in made:
        try:
            do_client.destroy(droplet_id)
        except Exception:
            from phoenix.lab.lab import ledger_for
            from phoenix.lab.nspawn import destroy_droplet

            destroy_droplet(lab, ledger_for(lab), droplet_id)


@contextlib.contextmanager
def network_cut(lab, droplet_id: int):
    """The droplet loses its network (its veth on the bridge down) until the block ends."""
    import subprocess

    from phoenix.lab.net import veth_name

    link = veth_name(lab, droplet_id)
    subprocess.run(["ip", "link", "set", link, "down"], check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
