"""The lab's DigitalOcean and Cloudflare held to the providers' contracts (issue 19).

Phoenix's own calls (provision, cutover, rollback) and every other route of the lab run
against the lab servers (memory driver: the nspawn driver changes no answer's shape); every
request and answer that crosses them is validated: DigitalOcean's against its OpenAPI
description, Cloudflare's against the SDK's models and its error envelope.
"""

from __future__ import annotations

import subprocess

import cloudflare
import pydo
import pytest

from phoenix.cutover import dns
from phoenix.cutover import traffic as cut
from phoenix.errors import PhoenixError
from phoenix.lab.cloudflare import api as cfapi
from phoenix.lab.do.api import make_server
from phoenix.lab.do.drivers import MemoryDriver
from phoenix.lab.httpd import Fault
from phoenix.provision.do import DO
from phoenix.provision.droplet import provision
from phoenix.settings import load
from phoenix.sshconf import state_target as target
from phoenix.state import State
from tests.contracts import DOContract, cf_problems, model_problems, record_model

DO_TOKEN, CF_TOKEN = "lab-contract-do", "lab-contract-cf"


@pytest.fixture(scope="module")
def contract():
    return DOContract()


@pytest.fixture
def do_server():
    server = make_server(MemoryDriver(), token=DO_TOKEN, reserved_ips=["10.9.0.200"])
    server.exchanges = []
    server.recorder = server.exchanges.append
    yield server.start()
    server.stop()


def test_every_do_exchange_keeps_the_contract(do_server, contract, tmp_path):
    url = f"http://127.0.0.1:{do_server.port}"
    do = DO(token=DO_TOKEN, endpoint=url, retries=0)
    raw = pydo.Client(token=DO_TOKEN, endpoint=url, retry_total=0)
    kw = {"enforce_https": False}
    key = tmp_path / "operator"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    settings = {**load(None), "provision_timeout": 10, "cutover_reserved_ip": "10.9.0.200"}
    state = State("recovery", tmp_path / "state")

    # Phoenix's own calls: provision, a reserved-IP cutover and its rollback, destroy.
    droplet = provision(role="recovery", settings=settings, client=do, state=state, key=key,
                        check_ssh=False)
    raw.reserved_ips.create(body={"region": settings["provision_region"]}, **kw)
    cut.record_verdict(state, target(state), passed=True)
    # activate_host=False: a memory-driver droplet has no sshd to make the primary
    cut.cutover(settings=settings, state=state, do=do, reserved_ip=True, force=False,
                say=lambda _: None, activate_host=False)
    cut.rollback(state=state, do=do, say=lambda _: None)
    # The lab's other routes, through pydo as a client would call them.
    keys = raw.ssh_keys.list(**kw)["ssh_keys"]
    raw.ssh_keys.get(ssh_key_identifier=keys[0]["fingerprint"], **kw)
    actions = raw.actions.list(**kw)["actions"]
    raw.droplet_actions.list(droplet_id=droplet["id"], **kw)
    raw.droplet_actions.get(droplet_id=droplet["id"], action_id=actions[0]["id"], **kw)
    assign = next(a for a in actions if a["type"] == "assign_ip")
    raw.reserved_ips_actions.get(reserved_ip="10.9.0.200", action_id=assign["id"], **kw)
    raw.reserved_ips.list(**kw)
    raw.tags.create(body={"name": "contract"}, **kw)
    raw.tags.list(**kw)
    raw.tags.get(tag_id="phoenix-recovery", **kw)
    raw.reserved_ips.delete(reserved_ip="10.9.0.200", **kw)
    do.destroy(droplet["id"])
    raw.droplets.destroy_by_tag(tag_name="phoenix-recovery", **kw)
    raw.ssh_keys.delete(ssh_key_identifier=keys[0]["id"], **kw)
    # Error answers: 401, 404, 422, and the fault switch's 429 and 5xx.
    assert "droplet" not in raw.droplets.get(droplet_id=droplet["id"], **kw)  # 404 as a dict
    with pytest.raises(PhoenixError, match="rejected the API token"):
        DO(token="wrong", endpoint=url, retries=0).droplets()
    with pytest.raises(PhoenixError, match="refused to create"):
        do.create({"name": "x", "region": "mars1", "size": "s-1vcpu-1gb",
                   "image": "debian-12-x64"})
    for status in (429, 500, 503):
        do_server.inject(Fault(status=status, retry_after=0))
        with pytest.raises(PhoenixError):
            do.droplets()

    problems = [p for ex in do_server.exchanges for p in contract.check(ex)]
    assert problems == []
    statuses = {ex.status for ex in do_server.exchanges}
    assert {200, 201, 202, 204, 401, 404, 422, 429, 500, 503} <= statuses
    seen = {(ex.method, t) for ex in do_server.exchanges
            for m, pattern, t, _ in contract.operations if m == ex.method and
            pattern.match(ex.path)}
    every = {(m, t) for m, _, t, _ in contract.operations}
    assert every - seen == set()  # every operation of the vendored contract was exercised


def test_the_do_contract_refuses_an_invented_field(do_server, contract, monkeypatch):
    """What the tightening is for: a field the lab makes up fails, in answers and requests."""
    json_of = type(do_server.account).droplet_json
    monkeypatch.setattr(type(do_server.account), "droplet_json",
                        lambda self, d: {**json_of(self, d), "ipv4_address": d.ip})
    do = DO(token=DO_TOKEN, endpoint=f"http://127.0.0.1:{do_server.port}", retries=0)
    do.create({"name": "forge", "region": "nyc1", "size": "s-1vcpu-1gb",
               "image": "debian-12-x64", "firewall": "none"})
    problems = [p for ex in do_server.exchanges for p in contract.check(ex)]
    assert any("'ipv4_address' was unexpected" in p for p in problems), problems
    assert any("request" in p and "'firewall' was unexpected" in p for p in problems), problems


# -- Cloudflare ------------------------------------------------------------------------------

ZONES = {"example.com": [
    {"name": "git.example.com", "type": "A", "content": "192.0.2.10", "ttl": 3600},
    {"name": "forge.example.com", "type": "A", "content": "192.0.2.10", "ttl": 3600,
     "proxied": True}]}


@pytest.fixture
def cf_server():
    server = cfapi.make_server(token=CF_TOKEN, zones=ZONES)
    server.exchanges = []
    server.recorder = server.exchanges.append
    yield server.start()
    server.stop()


def test_every_cloudflare_exchange_keeps_the_sdk_models(cf_server, monkeypatch):
    base = f"http://127.0.0.1:{cf_server.port}/client/v4"
    client = dns.make_client(token=CF_TOKEN, base_url=base, max_retries=0)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", CF_TOKEN)
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", base)
    saved: dict = {}
    records = ["git.example.com", "forge.example.com"]
    dns.cutover(records=records, new_ip="198.51.100.7", client=client, saved=saved)
    dns.rollback(client=client, saved=saved)
    zone = client.zones.list(name="example.com").result[0]
    client.zones.get(zone_id=zone.id)
    client.user.tokens.verify()
    made = client.dns.records.create(zone_id=zone.id, name="tmp", type="TXT",
                                     content="hello", ttl=300)
    client.dns.records.update(made.id, zone_id=zone.id, name="tmp", type="TXT",
                              content="again", ttl=300)
    client.dns.records.delete(made.id, zone_id=zone.id)
    errors = [
        (cloudflare.NotFoundError, lambda: client.dns.records.get("0" * 32, zone_id=zone.id)),
        (cloudflare.BadRequestError, lambda: client.dns.records.edit(
            saved["git.example.com"]["record_id"], zone_id=zone.id,
            name="git.example.com", type="A", content="not-an-ip", ttl=300)),
        (cloudflare.PermissionDeniedError, lambda: dns.make_client(
            token="wrong", base_url=base, max_retries=0).zones.list()),
    ]
    for kind, call in errors:
        with pytest.raises(kind):
            call()
    for status in (429, 500, 503):
        cf_server.inject(Fault(status=status, retry_after=0))
        with pytest.raises(cloudflare.APIStatusError):
            client.zones.list()
    assert cf_problems(cf_server.exchanges) == []
    assert {200, 400, 403, 404, 429, 500, 503} <= {ex.status for ex in cf_server.exchanges}


def test_the_cloudflare_check_refuses_an_invented_field():
    record = {"id": "1" * 32, "name": "a.example.com", "type": "A", "content": "192.0.2.1",
              "ttl": 1, "proxied": False, "proxiable": True, "meta": {},
              "created_on": "2026-01-01T00:00:00Z", "modified_on": "2026-01-01T00:00:00Z"}
    assert model_problems(record_model(record), record, "r") == []
    assert model_problems(record_model(record), {**record, "locked": False}, "r") == [
        "r.locked: not a field of cloudflare.types.dns.record_response.ARecord"]
    assert "required" in model_problems(record_model(record),
                                        {k: v for k, v in record.items() if k != "meta"},
                                        "r")[0]
