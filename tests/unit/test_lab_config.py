"""Lab settings and bad input: overlapping subnets, taken ports, the ledger, the image recipe."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import subprocess

import pytest

from phoenix.errors import PhoenixError
from phoenix.lab import aptproxy, config, image, net
from phoenix.lab.nspawn import parse_user_data
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
    with pytest.raises(PhoenixError, match="droplets still use the old image"):
        image.ensure(other, in_use=True)


def test_cloud_config_in_json_form_is_read():
    data = parse_user_data('#cloud-config\n{"ssh_keys": {"ed25519_public": "ssh-ed25519 AAA"}}')
    assert data["ssh_keys"]["ed25519_public"] == "ssh-ed25519 AAA"
    assert parse_user_data(None) == {}


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
