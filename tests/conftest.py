"""Shared fixtures: the lab (root only) and lab clients."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import pytest

from phoenix.lab import config as labconfig


@pytest.fixture(scope="session")
def lab_config():
    return labconfig.load()


lab_config_baseline: dict = {}


def other_labs(own_tag: str) -> list[str]:
    """The tags of the other labs this machine may be running beside this session's (make test
    runs the drills in a lab of their own): each keeps its state under /var/lib/phoenix-lab-TAG,
    the default lab under /var/lib/phoenix-lab."""
    tags = {p.name.removeprefix("phoenix-lab-") for p in Path("/var/lib").glob("phoenix-lab-*")}
    if Path("/var/lib/phoenix-lab").is_dir():
        tags.add(labconfig.DEFAULT_TAG)
    return sorted(tags - {own_tag})


def state_folder(tag: str) -> str:
    return "/var/lib/phoenix-lab" + ("" if tag == labconfig.DEFAULT_TAG else f"-{tag}")


def machine_snapshot(own_tag: str = labconfig.DEFAULT_TAG) -> dict:
    """What the lab may add to this machine: namespaces, links, mounts, lab processes. Objects
    named for another lab running beside this one are its own, not this lab's: left out."""
    import subprocess

    others = other_labs(own_tag)

    def out(*cmd: str) -> list[str]:
        return sorted(subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines())

    def another_labs(text: str) -> bool:
        """Named for another lab's tag (netns TAG-ID, bridge TAG-br0, veth TAGvID, nspawn's
        --machine=TAG-ID) or under its state folder."""
        return any(re.search(rf"(^|=){tag}(-|v\d+$)", text) or f"{state_folder(tag)}/" in text
                   for tag in others)

    links = [line.split(":")[1].strip().split("@")[0] for line in out("ip", "-o", "link")]
    procs = [line.split(None, 1)[0] for line in out("ps", "-eo", "comm,args")
             if line.split(None, 1)[0] in ("systemd-nspawn", "apt-cacher-ng")
             and not another_labs(line.split(None, 1)[1])]
    mounts = [line.split()[1] for line in out("cat", "/proc/mounts") if "phoenix" in line
              and not another_labs(line.split()[1] + "/")]
    return {"netns": [n for n in out("ip", "netns", "list") if not another_labs(n.split()[0])],
            "links": sorted(link for link in links if not another_labs(link)),
            "processes": sorted(procs), "mounts": mounts}


@pytest.fixture(scope="session")
def lab(lab_config):
    """The lab, up for the session; taken down again if it was down before, also on failure."""
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces, mounts, systemd-nspawn)")
    from phoenix.lab import lab as lablib

    was_up = lablib.status(lab_config)["up"]
    lab_config_baseline.update(machine_snapshot(lab_config.tag), was_up=was_up)
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
            # as long as the lab lets a boot take (on a loaded machine), and a margin
            from phoenix.lab.nspawn import BOOT_TIMEOUT

            droplet = do_client.wait_active(droplet["id"], timeout=BOOT_TIMEOUT + 60)
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
