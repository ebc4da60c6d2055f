"""Fencing in a provider outage: DigitalOcean reports the old primary `active` while its
power_off action errors. Cutover refuses; `--fence-unconfirmed` goes on only while the old
primary answers on no probed port from here, and records that it did."""

from __future__ import annotations

import socket
import subprocess

import pytest

from phoenix.cutover import traffic as cut
from phoenix.cutover.primary import fence, unconfirmed_fencing
from phoenix.errors import PhoenixError
from phoenix.lab.do.api import make_server
from phoenix.lab.do.drivers import DriverError, MemoryDriver
from phoenix.provision.do import DO
from phoenix.provision.droplet import provision
from phoenix.settings import load
from phoenix.state import State

TOKEN = "lab-fence-token"


class Outage(MemoryDriver):
    """The hypervisor cannot be reached: every power_off action errors, the droplet stays."""

    outage = True

    def power_off(self, droplet_id: int) -> None:
        if self.outage:
            raise DriverError("the hypervisor does not answer")
        super().power_off(droplet_id)


@pytest.fixture
def world(tmp_path):
    # TEST-NET-1 (RFC 5737): routed nowhere, so no lab on this machine answers there
    driver = Outage(subnet="192.0.2.0/24")
    srv = make_server(driver, token=TOKEN, reserved_ips=["192.0.2.210"]).start()
    do = DO(token=TOKEN, endpoint=f"http://127.0.0.1:{srv.port}")
    key = tmp_path / "operator"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    settings = {**load(None), "provision_timeout": 10}
    old = State("primary", tmp_path / "state")
    provision(role="primary", settings=settings, client=do, state=old, key=key, check_ssh=False)
    new = State("recovery", tmp_path / "state")
    provision(role="recovery", settings=settings, client=do, state=new, key=key,
              check_ssh=False)
    yield driver, do, old, new, settings
    srv.stop()


@pytest.fixture
def listening():
    """A port on this machine that answers, as the old primary's sshd would."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server


def test_an_errored_power_off_refuses_then_the_override_needs_silence(world, listening):
    driver, do, old, new, _ = world
    port = listening.getsockname()[1]
    live = [{"ip": "127.0.0.1", "droplet": do.get(old.droplet["id"]), "why": "it is active"}]
    said: list[str] = []

    with pytest.raises(PhoenixError, match=r"fencing the old primary at 127\.0\.0\.1 failed: "
                       r"power_off of droplet \d+ ended errored.*--fence-unconfirmed"):
        fence(state=new, live=live, do=do, fence_it=True, say=said.append)
    assert do.get(old.droplet["id"])["status"] == "active"  # DigitalOcean could not

    with unconfirmed_fencing([port]), pytest.raises(PhoenixError,
                                                     match=f"still answers on port {port}"):
        fence(state=new, live=live, do=do, fence_it=True, say=said.append)
    assert "fenced_unconfirmed" not in new.data

    listening.close()  # the old primary went dark, as seen from here
    with unconfirmed_fencing([port]):
        fence(state=new, live=live, do=do, fence_it=True, say=said.append)
    record = State("recovery", new.path.parent).data["fenced_unconfirmed"]
    assert [(r["id"], r["ip"], r["silent_ports"]) for r in record] == [
        (old.droplet["id"], "127.0.0.1", [port])]
    assert "ended errored" in record[0]["failure"]
    assert said[-1].startswith("NOT fenced by DigitalOcean: the old primary at 127.0.0.1")
    # nothing was powered off, so a rollback has nothing to power on again
    assert "fenced" not in new.data


def test_the_cutover_moves_the_reserved_ip_only_with_the_override(world):
    driver, do, old, new, settings = world
    ip = do.call("create a reserved IP", do.client.reserved_ips.create,
                 body={"droplet_id": old.droplet["id"]})["reserved_ip"]["ip"]
    settings = {**settings, "cutover_reserved_ip": ip}

    def cutover() -> None:
        cut.cutover(settings=settings, state=new, do=do, reserved_ip=True, force=True,
                    say=lambda _: None, activate_host=False, fence_old=True)

    with pytest.raises(PhoenixError, match="ended errored"):
        cutover()
    assert do.reserved_ip(ip)["droplet"]["id"] == old.droplet["id"]
    # the old droplet's address (in TEST-NET-1) answers on no port
    with unconfirmed_fencing([22, 443]):
        cutover()
    assert do.reserved_ip(ip)["droplet"]["id"] == new.droplet["id"]
    assert new.data["fenced_unconfirmed"][0]["id"] == old.droplet["id"]
