"""Faults on every DigitalOcean call Phoenix makes, against the lab API (memory driver).

One scenario (provision, a reserved-IP cutover, rollback with power-off, destroy) runs with
one fault on one call: a 429 with Retry-After, a 503 before serving, a 503 or a timeout or
a dropped connection after serving (the work done, the answer lost). Each ends recovered,
or with one clear line after which a re-run recovers; never a second droplet, never an IP
or a droplet left half moved. The same faults through the lab server process are in
tests/lab/test_faults.py.
"""

from __future__ import annotations

import subprocess

import pytest

from phoenix.cutover import traffic as cut
from phoenix.errors import PhoenixError
from phoenix.lab.do.api import make_server
from phoenix.lab.do.drivers import MemoryDriver
from phoenix.lab.httpd import Fault
from phoenix.provision.do import DO
from phoenix.provision.droplet import provision
from phoenix.settings import load
from phoenix.sshconf import state_target as target
from phoenix.state import State

TOKEN = "lab-faults"
IP = "10.9.0.200"
CALLS = {  # what Phoenix calls: (method, path regex)
    "list droplets": ("GET", r"^/v2/droplets$"),
    "list keys": ("GET", r"^/v2/account/keys$"),
    "register key": ("POST", r"^/v2/account/keys$"),
    "create droplet": ("POST", r"^/v2/droplets$"),
    "get droplet": ("GET", r"^/v2/droplets/\d+$"),
    "get reserved IP": ("GET", r"^/v2/reserved_ips/[\d.]+$"),
    "assign reserved IP": ("POST", r"^/v2/reserved_ips/[\d.]+/actions$"),
    "follow action": ("GET", r"^/v2/actions/\d+$"),
    "power off": ("POST", r"^/v2/droplets/\d+/actions$"),
    "destroy droplet": ("DELETE", r"^/v2/droplets/\d+$"),
}
KINDS = {
    "429": {"status": 429, "retry_after": 0.2},
    "503 before": {"status": 503},
    "503 after": {"status": 503, "when": "after"},
    "timeout after": {"status": 0, "when": "after", "delay": 0.8},
    "drop after": {"status": 0, "when": "after"},
}
# Where a failure is the right end: nothing was made, the line says so and a re-run works.
CLEAR_LINE = {("create droplet", "503 before")}


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "operator"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def scenario(do: DO, state: State, key, settings: dict, server) -> None:
    droplet = provision(role="recovery", settings=settings, client=do, state=state, key=key,
                        check_ssh=False)
    cut.record_verdict(state, target(state), passed=True)
    # activate_host=False: a memory-driver droplet has no sshd to make the primary
    cut.cutover(settings=settings, state=state, do=do, reserved_ip=True, force=False,
                say=lambda _: None, activate_host=False)
    assert server.account.reserved_ip(IP)["droplet"]["id"] == droplet["id"]
    cut.rollback(state=state, do=do, say=lambda _: None)


# A read is the same whether it failed before or after serving: three kinds are enough.
CASES = [(call, kind) for call, (method, _) in CALLS.items() for kind in KINDS
         if method != "GET" or kind in ("429", "503 before", "timeout after")]


@pytest.mark.parametrize("call,kind", CASES)
def test_a_fault_ends_recovered_or_in_one_clear_line(call, kind, key, tmp_path):
    server = make_server(MemoryDriver(), token=TOKEN, reserved_ips=[IP]).start()
    try:
        assert server.account.reserve(region="nyc1") == (IP, None)  # an address to move
        do = DO(token=TOKEN, endpoint=f"http://127.0.0.1:{server.port}", retries=3,
                timeout=0.5)
        do.client._config.retry_policy.backoff_factor = 0.05  # the lab answers at once
        do.poll = 0.05
        settings = {**load(None), "provision_timeout": 10, "cutover_reserved_ip": IP}
        state = State("recovery", tmp_path / "state")
        method, path = CALLS[call]
        fault = server.inject(Fault(method=method, path=path, **KINDS[kind]))
        try:
            scenario(do, state, key, settings, server)
            failed = None
        except PhoenixError as exc:
            failed = str(exc)
        if (call, kind) in CLEAR_LINE:
            assert failed and "\n" not in failed and "run `phoenix provision` again" in failed
            assert server.driver.list() == []
            scenario(do, state, key, settings, server)  # the re-run the line asks for
        else:
            assert failed is None
        droplets = server.driver.list()
        assert len(droplets) == 1 and droplets[0].status == "off"
        assert server.account.reserved_ip(IP)["droplet"] is None  # back where it was
        do.destroy(droplets[0].id)
        assert server.driver.list() == []
        assert fault.hits == 1, f"the {call} fault was never hit"
    finally:
        server.stop()


# -- Cloudflare ------------------------------------------------------------------------------

ZONE = {"example.com": [
    {"name": "git.example.com", "type": "A", "content": "192.0.2.10", "ttl": 3600},
    {"name": "forge.example.com", "type": "A", "content": "192.0.2.11", "ttl": 3600}]}
NAMES = ["git.example.com", "forge.example.com"]
CF_CALLS = {
    "find zone": ("GET", r"/zones$"),
    "find record": ("GET", r"/dns_records$"),
    "edit record": ("PATCH", r"/dns_records/\w+$"),
    "read record to roll back": ("GET", r"/dns_records/\w+$"),
}


def _contents(server) -> dict:
    zone = server.zones.find_zone("example.com")
    return {r["name"]: r["content"] for r in server.zones.records(zone["id"])}


CF_CASES = [(call, kind) for call, (method, _) in CF_CALLS.items() for kind in KINDS
            if method != "GET" or kind in ("429", "503 before", "timeout after")]


@pytest.fixture
def quick_cloudflare_retries(monkeypatch):
    """The SDK waits 0.5 s and more between tries; the lab answers at once."""
    import cloudflare._base_client

    monkeypatch.setattr(cloudflare._base_client, "INITIAL_RETRY_DELAY", 0.02)


@pytest.mark.parametrize("call,kind", CF_CASES)
def test_a_cloudflare_fault_is_retried_to_the_end(call, kind, quick_cloudflare_retries):
    from phoenix.cutover import dns
    from phoenix.lab.cloudflare import api as cfapi

    server = cfapi.make_server(token=TOKEN, zones=ZONE).start()
    try:
        client = dns.make_client(token=TOKEN, base_url=f"http://127.0.0.1:{server.port}"
                                 "/client/v4", timeout=0.5)
        method, path = CF_CALLS[call]
        fault = server.inject(Fault(method=method, path=path, **KINDS[kind]))
        saved: dict = {}
        dns.cutover(records=NAMES, new_ip="198.51.100.7", client=client, saved=saved)
        assert set(_contents(server).values()) == {"198.51.100.7"}
        dns.rollback(client=client, saved=saved)
        assert _contents(server) == {"git.example.com": "192.0.2.10",
                                     "forge.example.com": "192.0.2.11"}
        assert fault.hits == 1
    finally:
        server.stop()


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_cutover_whose_second_edit_fails_moves_nothing(when, quick_cloudflare_retries):
    from phoenix.cutover import dns
    from phoenix.lab.cloudflare import api as cfapi

    server = cfapi.make_server(token=TOKEN, zones=ZONE).start()
    try:
        client = dns.make_client(token=TOKEN, base_url=f"http://127.0.0.1:{server.port}"
                                 "/client/v4", max_retries=1)
        zone = server.zones.find_zone("example.com")
        second = next(r for r in server.zones.records(zone["id"])
                  if r["name"] == "forge.example.com")
        server.inject(Fault(method="PATCH", path=second["id"], when=when, status=500,
                            count=2))  # the first try and its retry
        saved: dict = {}
        with pytest.raises(PhoenixError) as caught:
            dns.cutover(records=NAMES, new_ip="198.51.100.7", client=client, saved=saved)
        message = str(caught.value)
        assert "\n" not in message and "pointing forge.example.com at 198.51.100.7" in message
        assert "Put back git.example.com (192.0.2.10), forge.example.com (192.0.2.11)" \
            in message
        old = {"git.example.com": "192.0.2.10", "forge.example.com": "192.0.2.11"}
        assert _contents(server) == old
        assert [r["changed"] for r in dns.rollback(client=client, saved=saved)] == [False] * 2
        assert _contents(server) == old
    finally:
        server.stop()


def test_an_unreachable_api_is_named_by_its_cause_not_a_class():
    do = DO(token=TOKEN, endpoint="http://127.0.0.1:9", retries=0, timeout=3)
    with pytest.raises(PhoenixError) as exc:
        do.droplets()
    said = str(exc.value)
    assert said.startswith("cannot reach the DigitalOcean API at http://127.0.0.1:9 to list "
                           "droplets: ")
    assert "Connection refused" in said and "ServiceRequestError" not in said
    assert "HTTPConnection(" not in said  # the endpoint is named once, readably


def test_a_slow_answer_says_what_it_waits_for_and_how_long():
    import time

    said: list[str] = []
    do = DO(token=TOKEN, endpoint="http://127.0.0.1:9", retries=3, timeout=20,
            say=said.append, slow=0.05)
    assert do.call("list droplets", lambda **_: time.sleep(0.3) or "answer") == "answer"
    # four attempts of 20 s, and azure-core's backoff of 0, 1 and 2 s between them
    assert said == ["waiting for DigitalOcean to answer (list droplets), up to 83 s"]
    assert do.call("list droplets", lambda **_: "fast") == "fast" and len(said) == 1
