"""Lab settings and bad input: overlapping subnets, taken ports, the ledger, the image recipe."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import subprocess
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError
from phoenix.lab import aptproxy, config, image, net
from phoenix.lab.objects import Ledger


def test_default_subnet_does_not_overlap_this_machine():
    net.check_subnet(config.load({}))  # raises if it does


def test_a_subnet_overlapping_a_route_is_refused_naming_it():
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route"], capture_output=True,
                                       text=True).stdout)
    dst = next(r["dst"] for r in routes if r.get("dst") not in (None, "default")
               and r.get("dev") != config.load({}).bridge)
    taken = ipaddress.IPv4Network(dst, strict=False)
    cfg = config.load({"PHOENIX_LAB_SUBNET": str(taken)})
    with pytest.raises(PhoenixError, match=f"overlaps route {dst}"):
        net.check_subnet(cfg)


def test_a_subnet_containing_the_resolver_is_refused():
    resolvers = [line.split()[1] for line in open("/etc/resolv.conf")
                 if line.startswith("nameserver") and "." in line.split()[1]]
    if not resolvers:
        pytest.skip("this machine has no IPv4 resolver")
    around = ipaddress.IPv4Network(f"{resolvers[0]}/24", strict=False)
    with pytest.raises(PhoenixError, match="overlaps"):
        net.check_subnet(config.load({"PHOENIX_LAB_SUBNET": str(around)}))


def test_a_taken_port_is_named():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PhoenixError, match=f"127.0.0.1:{port} for the apt proxy"):
            aptproxy.ensure_port_free("127.0.0.1", port, "the apt proxy")


def test_ledger_records_survive_a_new_reader(tmp_path):
    ledger = Ledger(tmp_path / "objects.json")
    ledger.add("netns", "phx-1001")
    ledger.add("netns", "phx-1001")
    with ledger.edit() as data:
        data["droplets"]["1001"] = {"id": 1001}
    again = Ledger(tmp_path / "objects.json").read()
    assert again["netns"] == ["phx-1001"] and "1001" in again["droplets"]
    ledger.discard("netns", "phx-1001")
    assert Ledger(tmp_path / "objects.json").read()["netns"] == []


def test_image_is_rebuilt_when_its_recipe_changes(tmp_path):
    cfg = config.load({"PHOENIX_LAB_DIR": str(tmp_path)})
    (cfg.image_dir / "rootfs").mkdir(parents=True)
    (cfg.image_dir / "recipe.sha256").write_text(image.recipe_hash(cfg))
    assert image.is_current(cfg)
    other = dataclasses.replace(cfg, mirror="http://mirror.lab.invalid/debian")
    assert not image.is_current(other)


def test_an_image_that_droplets_boot_from_is_never_replaced(tmp_path, monkeypatch):
    cfg = config.load({"PHOENIX_LAB_DIR": str(tmp_path)})
    (cfg.image_dir / "rootfs").mkdir(parents=True)
    monkeypatch.setattr(image, "mounted_over", lambda path: ["/var/lib/other-lab/d/1/root"])
    with pytest.raises(PhoenixError, match="1 droplet.*still use the old image"):
        image.ensure(cfg)
    assert (cfg.image_dir / "rootfs").is_dir()


def test_overlay_mounts_over_an_image_are_found(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "overlay /a/root overlay rw,lowerdir=/img/rootfs,upperdir=/a/upper,workdir=/a/w 0 0\n"
        "overlay /b/root overlay rw,lowerdir=/img/rootfs2,upperdir=/b/upper,workdir=/b/w 0 0\n"
        "proc /proc proc rw 0 0\n")
    assert image.mounted_over(Path("/img/rootfs"), mounts_file=str(mounts)) == ["/a/root"]


def test_the_tag_names_a_second_lab_and_it_reads_the_first_ones_caches():
    first, second = config.load({}), config.load({"PHOENIX_LAB_TAG": "h2"})
    assert (first.bridge, second.bridge) == ("phx-br0", "h2-br0")
    assert second.state_dir != first.state_dir
    assert first.share_from is None and second.share_from == first.state_dir
    alone = config.load({"PHOENIX_LAB_TAG": "h2", "PHOENIX_LAB_SHARE_FROM": "none"})
    assert alone.share_from is None
    with pytest.raises(ValueError, match="PHOENIX_LAB_TAG"):
        config.load({"PHOENIX_LAB_TAG": "Phoenix-Lab-2"})


def test_a_lab_is_loaded_again_from_its_own_variables():
    second = config.load({"PHOENIX_LAB_TAG": "h2", "PHOENIX_LAB_SUBNET": "10.213.177.0/24",
                          "PHOENIX_LAB_DO_PORT": "8790"})
    assert config.load(second.to_env()) == second


def test_a_bridge_that_is_not_this_labs_is_refused_and_left_alone(tmp_path, monkeypatch):
    cfg = config.load({"PHOENIX_LAB_DIR": str(tmp_path)})
    made = []
    monkeypatch.setattr(net, "link_exists", lambda name: True)
    monkeypatch.setattr(net, "run", lambda cmd, **kw: made.append(cmd))
    ledger = Ledger(cfg.objects_file)
    with pytest.raises(PhoenixError, match=f"bridge {cfg.bridge} already exists and is not"):
        net.ensure_bridge(cfg, ledger)
    assert made == [] and ledger.read()["links"] == []


def test_the_seed_has_digitaloceans_metadata_shape_and_is_private(tmp_path):
    from phoenix.lab.nspawn import write_seed

    cfg = config.load({"PHOENIX_LAB_DIR": str(tmp_path)})
    url = write_seed(cfg, {"id": 1001, "name": "forge-1"}, ssh_keys=["ssh-ed25519 AAA op\n"],
                     user_data="#cloud-config\n{}")
    assert url == f"{cfg.artifact_url}/seed/1001/"
    folder = cfg.artifacts_dir / "seed" / "1001"
    meta = json.loads((folder / "meta-data").read_text())
    assert meta == {"instance-id": "i-1001", "local-hostname": "forge-1",
                    "public-keys": ["ssh-ed25519 AAA op"]}
    assert (folder / "user-data").read_text() == "#cloud-config\n{}"
    assert "disable_root" in (folder / "vendor-data").read_text()
    assert oct((folder / "user-data").stat().st_mode & 0o777) == "0o600"


def test_host_mirror_comes_from_this_machines_apt_sources():
    assert config.host_mirror().startswith("http")


def test_an_exited_process_not_yet_reaped_is_not_alive():
    """A container the lab server started and that halted stays a zombie until the server
    reaps it: stopping it must not wait for that forever."""
    import time

    from phoenix.lab import procs

    child = subprocess.Popen(["true"])
    record = {"pid": child.pid, "start": procs.start_time(child.pid)}
    deadline = time.monotonic() + 5
    while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not procs.alive(record)
    procs.stop_record(record, timeout=1)  # returns at once
    child.wait()


def test_the_lab_inventory_lists_the_droplets_named_in_its_variable(monkeypatch):
    from phoenix.lab.config import inventory_droplets
    monkeypatch.setenv("PHOENIX_LAB_DROPLETS", " forge-1, 42 ,,")
    assert inventory_droplets() == ["forge-1", "42"]
    monkeypatch.delenv("PHOENIX_LAB_DROPLETS")
    assert inventory_droplets() == []
