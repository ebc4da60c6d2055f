"""`phoenix cutover --reserved-ip` and rollback, through pydo against the lab API (memory)."""

from __future__ import annotations

import subprocess

import pytest

from phoenix.cutover import traffic as cut
from phoenix.errors import PhoenixError
from phoenix.lab.do.api import make_server
from phoenix.lab.do.drivers import MemoryDriver
from phoenix.provision.do import DO, public_ip
from phoenix.provision.droplet import provision
from phoenix.settings import load
from phoenix.state import State

TOKEN = "lab-reserved-ip-token"
POOL = ["10.213.78.200", "10.213.78.201"]


@pytest.fixture
def world(tmp_path):
    srv = make_server(MemoryDriver(), token=TOKEN, reserved_ips=POOL).start()
    do = DO(token=TOKEN, endpoint=f"http://127.0.0.1:{srv.port}")
    key = tmp_path / "operator"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    settings = {**load(None), "provision_timeout": 10}
    old = State("primary", tmp_path / "state")
    provision(role="primary", settings=settings, client=do, state=old, key=key, check_ssh=False)
    ip = do.call("create a reserved IP", do.client.reserved_ips.create,
                 body={"droplet_id": old.droplet["id"]})["reserved_ip"]["ip"]
    new = State("recovery", tmp_path / "state")
    provision(role="recovery", settings=settings, client=do, state=new, key=key,
              check_ssh=False)
    yield do, old, new, {**settings, "cutover_reserved_ip": ip}
    srv.stop()


def holder(do: DO, ip: str) -> int | None:
    return (do.reserved_ip(ip).get("droplet") or {}).get("id")


def cut_to(new, do, settings, **kw):
    # activate_host=False: memory-driver droplets have no sshd (the lab tests make the host
    # the primary for real)
    cut.cutover(settings=settings, state=new, do=do, reserved_ip=True, say=lambda _: None,
                activate_host=False, **{"force": True, **kw})


def test_reserved_ip_moves_to_the_new_droplet_and_back(world):
    do, old, new, settings = world
    ip = settings["cutover_reserved_ip"]
    assert holder(do, ip) == old.droplet["id"]
    with pytest.raises(PhoenixError, match="old primary still answers.*--fence"):
        cut_to(new, do, settings)  # the old one is active: two forges would serve
    assert holder(do, ip) == old.droplet["id"]
    cut_to(new, do, settings, fence_old=True)
    assert do.get(old.droplet["id"])["status"] == "off"  # fenced, disk kept
    assert holder(do, ip) == new.droplet["id"]
    assert ip in [n["ip_address"] for n in do.get(new.droplet["id"])["networks"]["v4"]]
    # a second cutover changes nothing and keeps the original holder saved
    cut_to(new, do, settings)
    assert new.data["reserved_ip_saved"][ip]["droplet_id"] == old.droplet["id"]

    cut.rollback(state=new, do=do, say=lambda _: None)
    assert holder(do, ip) == old.droplet["id"]
    assert do.get(old.droplet["id"])["status"] == "active"  # the fenced one serves again
    assert do.get(new.droplet["id"])["status"] == "off"  # powered off, disk kept
    assert public_ip(do.get(new.droplet["id"]))


def test_reserved_ip_cutover_refuses_an_unvalidated_droplet(world):
    do, _, new, settings = world
    with pytest.raises(PhoenixError, match="validation suite has not passed"):
        cut_to(new, do, settings, force=False)
    assert holder(do, settings["cutover_reserved_ip"]) != new.droplet["id"]


def verdict(new, **changes):
    import time

    from phoenix.cutover.traffic import pinned_keys

    new.data["validation"] = {"passed": True, "address": new.address,
                              "droplet_id": new.droplet["id"], "at_epoch": time.time(),
                              "host_keys": pinned_keys(new.known_hosts, new.address), **changes}
    new.save()


def test_a_verdict_for_another_address_does_not_let_cutover_through(world):
    do, old, new, settings = world
    verdict(new, address=old.address, droplet_id=None)  # PHOENIX_HOST validated another host
    with pytest.raises(PhoenixError, match=f"proved {old.address}, not"):
        cut_to(new, do, settings, force=False, fence_old=True)
    assert holder(do, settings["cutover_reserved_ip"]) == old.droplet["id"]


def test_an_old_or_foreign_verdict_is_refused(world):
    do, _, new, settings = world
    verdict(new, at_epoch=0)
    with pytest.raises(PhoenixError, match="min old.*validation_max_age"):
        cut_to(new, do, settings, force=False, fence_old=True)
    verdict(new, host_keys=["ssh-ed25519 AAAAnotthekey"])
    with pytest.raises(PhoenixError, match="another host key"):
        cut_to(new, do, settings, force=False, fence_old=True)
    verdict(new)
    cut_to(new, do, settings, force=False, fence_old=True)
    assert holder(do, settings["cutover_reserved_ip"]) == new.droplet["id"]


def test_rollback_confirms_its_droplet(world):
    do, old, new, settings = world
    new.data["droplet"] = {**new.droplet, "id": old.droplet["id"]}  # an id not its own
    new.save()
    with pytest.raises(PhoenixError, match="not touching it"):
        cut.rollback(state=new, do=do, say=lambda _: None)
    assert do.get(old.droplet["id"])["status"] == "active"
