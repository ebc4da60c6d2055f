"""Faults injected end to end in the lab (issue 19), through the lab server's fault switch.

One droplet is provisioned while DigitalOcean loses the answer to the create (a 504 after
serving), rate-limits a list and times out a read; the same droplet then takes a reserved-IP
cutover and rollback whose answers are lost, a DNS cutover through a rate-limited, timing-out
Cloudflare, a DNS cutover whose second edit fails, and a destroy whose answer is lost. Each
ends recovered, or in one clear line with nothing half done. Last, every exchange the lab
server recorded in this session is validated against the providers' contracts.
(Network loss mid-converge: test_deploy.py; the store lost mid-backup: test_backups.py.)
"""

from __future__ import annotations

import json

import pydo
import pytest

from phoenix.cutover import dns
from phoenix.cutover import traffic as cut
from phoenix.cutover.dnswire import resolve_a
from phoenix.errors import PhoenixError
from phoenix.lab.client import faults
from phoenix.lab.httpd import Exchange, Fault
from phoenix.lab.server import LAB_RECORD, LAB_ZONE, exchanges_file
from phoenix.provision.do import DO
from phoenix.provision.droplet import provision
from phoenix.settings import load
from phoenix.sshconf import state_target as target
from phoenix.state import State
from tests.contracts import DOContract, cf_problems

pytestmark = pytest.mark.lab

SECOND = f"www-faults.{LAB_ZONE}"


def fault(lab, api: str, **fields) -> None:
    faults(lab, api, add=fields)


@pytest.fixture(scope="module")
def provisioned(lab, tmp_path_factory):
    """A droplet provisioned through lost and refused answers; destroyed at the end."""
    do = DO(token=lab.do_token_file.read_text().strip(), endpoint=lab.do_endpoint, timeout=3)
    state = State("recovery", tmp_path_factory.mktemp("faults-state"))
    settings = load("lab")
    faults(lab, "do", clear=True)
    try:
        fault(lab, "do", method="POST", path=r"^/v2/droplets$", when="after", status=504)
        fault(lab, "do", method="GET", path=r"^/v2/droplets$", status=429, retry_after=1)
        fault(lab, "do", method="GET", path=r"^/v2/droplets/\d+$", when="after", status=0,
              delay=5)  # longer than the client's 3 s: a read timeout
        fault(lab, "do", method="GET", path=r"^/v2/account/keys$", status=503)
        droplet = provision(role="recovery", settings=settings, client=do, state=state,
                            key=lab.ssh_key)  # and strict SSH with the pinned host key
        hit = [f["hits"] for f in faults(lab, "do", clear=True)]
        yield do, state, droplet, settings, hit
    finally:
        faults(lab, "do", clear=True)
        faults(lab, "cf", clear=True)
        for found in do.droplets(tag="phoenix-recovery"):
            do.destroy(found["id"])


def test_a_lost_create_answer_leaves_one_droplet(provisioned):
    do, state, droplet, _, hits = provisioned
    assert hits == [1, 1, 1, 1]
    assert [d["id"] for d in do.droplets(tag="phoenix-recovery")] == [droplet["id"]]
    assert state.droplet["id"] == droplet["id"] and state.address == droplet["ip"]


def test_reserved_ip_cutover_and_rollback_survive_lost_answers(lab, provisioned):
    do, state, droplet, settings, _ = provisioned
    raw = pydo.Client(token=lab.do_token_file.read_text().strip(), endpoint=lab.do_endpoint)
    ip = raw.reserved_ips.create(body={"region": settings["provision_region"]},
                                 enforce_https=False)["reserved_ip"]["ip"]
    try:
        cut.record_verdict(state, target(state), passed=True)
        fault(lab, "do", method="POST", path=r"/reserved_ips/.*/actions$", when="after",
              status=503)  # the assign's answer is lost
        fault(lab, "do", method="POST", path=r"^/v2/droplets/\d+/actions$", when="after",
              status=0)  # the power-off's answer never comes
        fault(lab, "do", method="GET", path=r"^/v2/reserved_ips/", status=429, retry_after=1)
        fault(lab, "do", method="GET", path=r"^/v2/actions/\d+$", when="after", status=0,
              delay=5)  # following the unassign: a read timeout
        cut.cutover(settings={**settings, "cutover_reserved_ip": ip}, state=state, do=do,
                    reserved_ip=True, force=False, say=lambda _: None)
        assert do.reserved_ip(ip)["droplet"]["id"] == droplet["id"]
        cut.rollback(state=state, do=do, say=lambda _: None)
        assert do.reserved_ip(ip)["droplet"] is None
        assert do.get(droplet["id"])["status"] == "off"
        assert [f["hits"] for f in faults(lab, "do", clear=True)] == [1, 1, 1, 1]
        actions = raw.actions.list(per_page=200, enforce_https=False)["actions"]
        mine = [a["type"] for a in actions if a["resource_id"] == droplet["id"]
                and a["type"] == "power_off"]
        assert mine == ["power_off"]  # one action, not two
    finally:
        faults(lab, "do", clear=True)
        raw.reserved_ips.delete(reserved_ip=ip, enforce_https=False)


def _cf(lab, timeout: float = 10) -> dns.cloudflare.Cloudflare:
    return dns.make_client(token=lab.cf_token_file.read_text().strip(),
                           base_url=lab.cf_base_url, timeout=timeout)


def test_dns_cutover_survives_rate_limits_and_timeouts(lab, provisioned):
    _, _, droplet, _, _ = provisioned
    client, server = _cf(lab, timeout=2), (lab.bridge_ip, lab.dns_port)
    before = resolve_a(LAB_RECORD, *server)
    fault(lab, "cf", method="GET", path=r"/zones$", status=429, retry_after=1)
    fault(lab, "cf", method="GET", path=r"/dns_records$", status=502)
    fault(lab, "cf", method="PATCH", path=r"/dns_records/", when="after", status=0,
          delay=3, count=2)  # the edit's answer lost twice: the SDK's third try gets it
    fault(lab, "cf", method="GET", path=r"/dns_records/\w+$", status=503)  # rollback's read
    saved: dict = {}
    dns.cutover(records=[LAB_RECORD], new_ip=droplet["ip"], client=client, saved=saved)
    assert resolve_a(LAB_RECORD, *server) == [droplet["ip"]]
    dns.rollback(client=client, saved=saved)
    assert resolve_a(LAB_RECORD, *server) == before
    assert [f["hits"] for f in faults(lab, "cf", clear=True)] == [1, 1, 2, 1]


def test_a_cutover_whose_second_edit_fails_moves_no_name(lab, provisioned):
    _, _, droplet, _, _ = provisioned
    client, server = _cf(lab), (lab.bridge_ip, lab.dns_port)
    zone = client.zones.list(name=LAB_ZONE).result[0]
    second = client.dns.records.create(zone_id=zone.id, name=SECOND, type="A", ttl=300,
                                       content="192.0.2.80")
    try:
        before = {name: resolve_a(name, *server) for name in (LAB_RECORD, SECOND)}
        fault(lab, "cf", method="PATCH", path=second.id, when="after", status=500, count=5)
        saved: dict = {}
        with pytest.raises(PhoenixError) as caught:
            dns.cutover(records=[LAB_RECORD, SECOND], new_ip=droplet["ip"], client=client,
                        saved=saved)
        assert "\n" not in str(caught.value) and "Put back" in str(caught.value)
        assert {name: resolve_a(name, *server) for name in before} == before
        faults(lab, "cf", clear=True)
        dns.rollback(client=client, saved=saved)  # what `phoenix rollback` does: no change
        assert {name: resolve_a(name, *server) for name in before} == before
    finally:
        faults(lab, "cf", clear=True)
        client.dns.records.delete(second.id, zone_id=zone.id)


def test_a_lost_destroy_answer_still_destroys(lab, provisioned):
    do, _, droplet, _, _ = provisioned
    fault(lab, "do", method="DELETE", path=rf"^/v2/droplets/{droplet['id']}$", when="after",
          status=500)
    do.destroy(droplet["id"])
    assert do.get(droplet["id"]) is None
    assert [f["hits"] for f in faults(lab, "do", clear=True)] == [1]


def _recorded(lab, api: str) -> list[Exchange]:
    path = exchanges_file(lab, api)
    out = []
    for line in path.read_text().splitlines():
        data = json.loads(line)
        data["fault"] = Fault(**data["fault"]) if data["fault"] else None
        out.append(Exchange(**data))
    return out


def test_every_exchange_the_lab_served_keeps_the_contracts(lab, provisioned):
    """The nspawn-backed lab, as used by this session's lab tests so far."""
    do_exchanges, cf_exchanges = _recorded(lab, "do"), _recorded(lab, "cf")
    assert do_exchanges and cf_exchanges
    contract = DOContract()
    assert [p for ex in do_exchanges for p in contract.check(ex)] == []
    assert cf_problems(cf_exchanges) == []
