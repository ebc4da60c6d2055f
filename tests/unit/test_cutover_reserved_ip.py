"""`phoenix cutover --reserved-ip` and rollback, through pydo against the lab API (memory)."""

from __future__ import annotations

import subprocess

import pytest

from phoenix import cutover as cut
from phoenix.do import DO, public_ip
from phoenix.errors import PhoenixError
from phoenix.lab.doapi import make_server
from phoenix.lab.drivers import MemoryDriver
from phoenix.provision import provision
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


def test_reserved_ip_moves_to_the_new_droplet_and_back(world):
    do, old, new, settings = world
    ip = settings["cutover_reserved_ip"]
    assert holder(do, ip) == old.droplet["id"]
    cut.cutover(settings=settings, state=new, do=do, reserved_ip=True, force=True,
                say=lambda _: None)
    assert holder(do, ip) == new.droplet["id"]
    assert ip in [n["ip_address"] for n in do.get(new.droplet["id"])["networks"]["v4"]]
    # a second cutover changes nothing and keeps the original holder saved
    cut.cutover(settings=settings, state=new, do=do, reserved_ip=True, force=True,
                say=lambda _: None)
    assert new.data["reserved_ip_saved"][ip]["droplet_id"] == old.droplet["id"]

    cut.rollback(state=new, do=do, say=lambda _: None)
    assert holder(do, ip) == old.droplet["id"]
    assert do.get(new.droplet["id"])["status"] == "off"  # powered off, disk kept
    assert public_ip(do.get(new.droplet["id"]))


def test_reserved_ip_cutover_refuses_an_unvalidated_droplet(world):
    do, _, new, settings = world
    with pytest.raises(PhoenixError, match="validation suite has not passed"):
        cut.cutover(settings=settings, state=new, do=do, reserved_ip=True, force=False,
                    say=lambda _: None)
    assert holder(do, settings["cutover_reserved_ip"]) != new.droplet["id"]
