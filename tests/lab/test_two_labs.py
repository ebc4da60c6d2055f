"""Two labs side by side (issue 10): a second lab comes up, makes a droplet and goes down
again while the first one converges a forge, and neither touches the other's objects."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from phoenix.errors import PhoenixError
from phoenix.lab import config as labconfig
from phoenix.lab import image as lab_image
from phoenix.lab import lab as lablib
from phoenix.lab.client import droplet_target
from phoenix.provision.do import DO, public_ip
from phoenix.sshconf import public_half, ssh_command
from tests.lab.test_deploy import converge

pytestmark = pytest.mark.lab


def second_lab(first: labconfig.LabConfig) -> labconfig.LabConfig:
    """A lab named after the first (its tag + "2"), on a subnet and ports of its own, reading
    the first one's image and package cache."""
    octets = str(first.subnet.network_address).split(".")
    octets[2] = str((int(octets[2]) + 100) % 256)
    env = {**first.to_env(),
           "PHOENIX_LAB_TAG": (first.tag + "2")[:8],
           "PHOENIX_LAB_SUBNET": str(ipaddress.IPv4Network(".".join(octets) + "/24")),
           # the lab that holds the image the first one boots from (itself, or the one it reads)
           "PHOENIX_LAB_SHARE_FROM": str(lab_image.rootfs(first).parents[1]),
           **{f"PHOENIX_LAB_{k}_PORT": str(getattr(first, f"{k.lower()}_port") + 20)
              for k in ("DO", "CF", "ARTIFACT", "APT")}}
    for key in ("PHOENIX_LAB_DIR", "PHOENIX_LAB_BRIDGE"):
        env.pop(key)  # derived from the new tag
    return labconfig.load(env)


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_a_second_lab_comes_and_goes_while_the_first_converges(lab, droplet_factory):
    name = f"twolab-{os.getpid()}"
    droplet_factory(name)
    second = second_lab(lab)
    assert second.bridge != lab.bridge and second.state_dir != lab.state_dir
    before = links()
    with ThreadPoolExecutor(1) as pool:
        converging = pool.submit(converge, name)
        try:
            timings = lablib.up(second, log=print)
            assert timings["image_build_s"] == 0.0, "the second lab built an image of its own"
            do2 = DO(token=second.do_token_file.read_text().strip(),
                     endpoint=second.do_endpoint)
            key = do2.ensure_key("op", public_half(second.ssh_key).read_text())
            made = do2.create({"name": "second-1", "region": "nyc1", "size": "s-1vcpu-1gb",
                               "image": "debian-12-x64", "ssh_keys": [key]})
            made = do2.wait_active(made["id"], timeout=120)
            assert ipaddress.IPv4Address(public_ip(made)) in second.subnet
            out = subprocess.run(ssh_command(droplet_target(second, "second-1"),
                                             "cloud-init status --wait | tail -1; hostname"),
                                 capture_output=True, text=True, timeout=120).stdout.split()
            assert out == ["status:", "done", "second-1"]
            assert (second.state_dir / "apt-cacher-ng" / "cache").is_mount()
            # The first lab's image is the second one's lower layer now: never purged under it
            # (when the first lab reads yet another lab's image, it has none of its own to purge).
            if lab_image.rootfs(lab).parents[1] == lab.state_dir:
                with pytest.raises(PhoenixError, match="another lab reads"):
                    lablib.down(lab, purge=True)
        finally:
            lablib.down(second, purge=True)
        result = converging.result(timeout=900)
    # The first lab converged undisturbed and still works; the second left nothing behind.
    assert result.returncode == 0, result.stderr[-3000:]
    assert lablib.status(lab)["up"]
    assert lab.bridge in links()
    assert not {link for link in links() - before if link.startswith(second.tag)}
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{second.tag}-" not in netns
    assert not second.state_dir.exists()
    check = subprocess.run(ssh_command(droplet_target(lab, name), "systemctl is-active gitea"),
                           capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "active", check.stderr
