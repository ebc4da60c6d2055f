"""The lab's DigitalOcean API, driven by the real pydo client over loopback HTTP."""

from __future__ import annotations

import threading
import time

import pydo
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from phoenix.lab.do.api import DOServer, make_server
from phoenix.lab.do.drivers import DriverError, MemoryDriver

TOKEN = "lab-token-for-tests"
PLAIN = {"enforce_https": False}  # the lab speaks plain http; pydo refuses it otherwise
# An ed25519 public key built from fixed bytes; its fingerprint is what `ssh-keygen -l -E md5`
# prints for it.
PUBKEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f "
          "operator@phoenix")
PUBKEY_MD5 = "0f:a2:0a:d7:38:3e:65:45:08:6b:63:84:1c:ff:dc:ba"
RESERVED = ["10.213.78.10", "10.213.78.11"]


class RecordingDriver(MemoryDriver):
    """Keeps what each create was given, so tests can see the keys a droplet would get."""

    def __init__(self) -> None:
        super().__init__()
        self.created: dict[str, dict] = {}

    def create(self, **kwargs):
        self.created[kwargs["name"]] = kwargs
        return super().create(**kwargs)


class BrokenDriver(MemoryDriver):
    def create(self, **kwargs):
        if kwargs["name"] == "no-room":
            raise DriverError("no space left for another droplet")
        return super().create(**kwargs)

    def power_off(self, droplet_id: int) -> None:
        raise DriverError("machinectl poweroff failed")


@pytest.fixture
def driver() -> RecordingDriver:
    return RecordingDriver()


def serve(driver) -> DOServer:
    """Start a server whose stop() returns at once (it waits for one poll of the loop)."""
    srv = make_server(driver, token=TOKEN, reserved_ips=RESERVED)
    threading.Thread(target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.01},
                     daemon=True).start()
    return srv


@pytest.fixture
def server(driver):
    srv = serve(driver)
    yield srv
    srv.stop()


@pytest.fixture
def client(server) -> pydo.Client:
    return pydo.Client(token=TOKEN, endpoint=f"http://127.0.0.1:{server.port}")


def spec(name: str, **extra) -> dict:
    return {"name": name, "region": "fra1", "size": "s-1vcpu-1gb", "image": "debian-12-x64",
            **extra}


def wait_for(fetch, done, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def active(client, droplet_id: int) -> dict:
    return wait_for(lambda: client.droplets.get(droplet_id, **PLAIN)["droplet"],
                    lambda d: d["status"] == "active")


def finish(client, action: dict) -> dict:
    return wait_for(lambda: client.actions.get(action["action"]["id"], **PLAIN)["action"],
                    lambda a: a["status"] != "in-progress")


def public_ips(client, droplet_id: int) -> list[str]:
    v4 = client.droplets.get(droplet_id, **PLAIN)["droplet"]["networks"]["v4"]
    return [n["ip_address"] for n in v4 if n["type"] == "public"]


def test_create_answers_new_droplet_then_lists_by_tag_and_by_name(client):
    made = client.droplets.create(body=spec("forge-1", tags=["phoenix", "forge"]), **PLAIN)
    client.droplets.create(body=spec("other", tags=["scratch"]), **PLAIN)

    droplet = made["droplet"]
    assert (droplet["status"], droplet["networks"]["v4"]) == ("new", [])
    assert droplet["size_slug"] == "s-1vcpu-1gb" and droplet["region"]["slug"] == "fra1"
    assert made["links"]["actions"][0]["rel"] == "create"
    by_tag = client.droplets.list(tag_name="phoenix", **PLAIN)
    assert [d["name"] for d in by_tag["droplets"]] == ["forge-1"]
    by_name = client.droplets.list(name="other", **PLAIN)
    assert [d["tags"] for d in by_name["droplets"]] == [["scratch"]]
    assert {t["name"] for t in client.tags.list(**PLAIN)["tags"]} >= {"phoenix", "scratch"}


def test_droplet_becomes_active_with_a_public_ipv4(client):
    made = client.droplets.create(body=spec("forge-1"), **PLAIN)

    droplet = active(client, made["droplet"]["id"])

    v4 = droplet["networks"]["v4"]
    assert [n["type"] for n in v4] == ["public"]
    assert v4[0]["ip_address"].startswith("10.213.78.") and v4[0]["gateway"] == "10.213.78.1"
    assert (droplet["memory"], droplet["vcpus"], droplet["disk"]) == (1024, 1, 25)
    assert finish(client, {"action": made["links"]["actions"][0]})["status"] == "completed"


def test_destroyed_droplet_answers_404_in_digitalocean_shape(client):
    droplet_id = client.droplets.create(body=spec("doomed"), **PLAIN)["droplet"]["id"]

    assert client.droplets.destroy(droplet_id, **PLAIN) is None  # 204
    gone = client.droplets.get(droplet_id, **PLAIN)

    assert gone == {"id": "not_found",
                    "message": "The resource you were accessing could not be found.",
                    "request_id": gone["request_id"]}
    assert client.droplets.list(**PLAIN)["droplets"] == []


def test_listing_pages_end_with_the_total(client):
    for n in range(3):
        client.droplets.create(body=spec(f"web-{n}"), **PLAIN)

    first = client.droplets.list(per_page=2, page=1, **PLAIN)
    second = client.droplets.list(per_page=2, page=2, **PLAIN)

    assert first["meta"]["total"] == 3 and len(first["droplets"]) == 2
    assert "page=2" in first["links"]["pages"]["next"]
    assert [d["name"] for d in second["droplets"]] == ["web-2"]
    assert "next" not in second["links"]["pages"] and "page=1" in second["links"]["pages"]["first"]


def test_registered_key_reaches_the_droplet_by_fingerprint_and_by_id(client, driver):
    key = client.ssh_keys.create(body={"name": "operator", "public_key": PUBKEY},
                                 **PLAIN)["ssh_key"]
    assert key["fingerprint"] == PUBKEY_MD5
    assert client.ssh_keys.get(PUBKEY_MD5, **PLAIN)["ssh_key"]["id"] == key["id"]

    client.droplets.create(body=spec("by-fp", ssh_keys=[PUBKEY_MD5]), **PLAIN)
    client.droplets.create(body=spec("by-id", ssh_keys=[key["id"]]), **PLAIN)

    assert driver.created["by-fp"]["ssh_keys"] == [PUBKEY]
    assert driver.created["by-id"]["ssh_keys"] == [PUBKEY]


def test_unknown_key_is_refused_with_a_422_that_names_it(client, driver):
    unknown = "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"
    with pytest.raises(HttpResponseError) as err:
        client.droplets.create(body=spec("forge-1", ssh_keys=[unknown]), **PLAIN)

    assert err.value.status_code == 422
    assert unknown in str(err.value) and "/v2/account/keys" in str(err.value)
    assert driver.list() == []


@pytest.mark.parametrize("field, value, words", [
    ("region", "mars1", "Region 'mars1' is not available"),
    ("size", "s-64vcpu-512gb", "Size 's-64vcpu-512gb' is not available"),
    ("image", "ubuntu-24-04-x64", "invalid image"),
    ("name", "forge_1!", "hostname characters"),
])
def test_bad_request_fields_answer_422(client, field, value, words):
    with pytest.raises(HttpResponseError) as err:
        client.droplets.create(body={**spec("forge-1"), field: value}, **PLAIN)

    assert err.value.status_code == 422
    assert err.value.response.json()["id"] == "unprocessable_entity"
    assert words in str(err.value)


def test_driver_failures_answer_422_and_errored_actions():
    srv = serve(BrokenDriver())
    try:
        client = pydo.Client(token=TOKEN, endpoint=f"http://127.0.0.1:{srv.port}")
        with pytest.raises(HttpResponseError) as err:
            client.droplets.create(body=spec("no-room"), **PLAIN)
        assert err.value.status_code == 422 and "no space left" in str(err.value)

        droplet_id = client.droplets.create(body=spec("ok"), **PLAIN)["droplet"]["id"]
        action = client.droplet_actions.post(droplet_id, body={"type": "power_off"}, **PLAIN)
        assert finish(client, action)["status"] == "errored"
    finally:
        srv.stop()


def test_wrong_token_is_refused_with_401(server):
    intruder = pydo.Client(token="not-the-token", endpoint=f"http://127.0.0.1:{server.port}")

    with pytest.raises(ClientAuthenticationError) as err:
        intruder.droplets.list(**PLAIN)

    assert err.value.status_code == 401
    assert err.value.response.json() == {"id": "Unauthorized",
                                         "message": "Unable to authenticate you",
                                         "request_id": err.value.response.json()["request_id"]}


def test_client_retries_a_429_by_itself_then_succeeds(client, server):
    def headers(_pipeline_response, _body, response_headers):
        return response_headers

    before = client.droplets.list(cls=headers, **PLAIN)
    server.fail_next(1, status=429, retry_after=0)

    after = client.droplets.list(cls=headers, **PLAIN)

    assert before["ratelimit-limit"] == 5000
    assert after["ratelimit-remaining"] == before["ratelimit-remaining"] - 2  # 429, then 200
    server.fail_next(1, status=429, retry_after=0)  # a POST with Retry-After is retried too
    assert client.droplets.create(body=spec("after-429"), **PLAIN)["droplet"]["name"] == "after-429"


def test_429_and_500_reach_the_caller_when_retries_are_off(client, server):
    server.fail_next(1, status=429)
    with pytest.raises(HttpResponseError) as err:
        client.droplets.list(retry_total=0, **PLAIN)
    assert err.value.status_code == 429 and err.value.response.headers["Retry-After"] == "1"

    server.fail_next(1, status=500, retry_after=None)
    with pytest.raises(HttpResponseError) as err:
        client.droplets.list(retry_total=0, **PLAIN)
    assert err.value.status_code == 500

    server.fail_next(1, status=500, retry_after=None)
    assert client.droplets.list(**PLAIN)["droplets"] == []  # first retry has no backoff


def test_power_off_and_on_complete_and_change_status(client):
    droplet_id = client.droplets.create(body=spec("forge-1"), **PLAIN)["droplet"]["id"]
    active(client, droplet_id)

    off = client.droplet_actions.post(droplet_id, body={"type": "power_off"}, **PLAIN)
    assert off["action"]["status"] == "in-progress" and off["action"]["type"] == "power_off"
    assert finish(client, off)["status"] == "completed"
    assert client.droplets.get(droplet_id, **PLAIN)["droplet"]["status"] == "off"

    on = client.droplet_actions.post(droplet_id, body={"type": "power_on"}, **PLAIN)
    assert finish(client, on)["status"] == "completed"
    assert client.droplets.get(droplet_id, **PLAIN)["droplet"]["status"] == "active"


def test_the_action_fault_switch_errors_a_power_off_and_leaves_the_droplet_active(server,
                                                                                  client):
    import requests

    url = f"http://127.0.0.1:{server.port}/_lab/action-faults"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.post(url, json={"type": "power_off"}, timeout=5).status_code == 401
    bad = requests.post(url, json={"type": "power_off", "count": 0}, headers=auth, timeout=5)
    assert bad.status_code == 400
    added = requests.post(url, json={"type": "power_off", "count": 1}, headers=auth, timeout=5)
    assert added.json()["faults"] == [{"type": "power_off", "count": 1, "hits": 0}]
    droplet_id = client.droplets.create(body=spec("forge-1"), **PLAIN)["droplet"]["id"]
    active(client, droplet_id)

    off = client.droplet_actions.post(droplet_id, body={"type": "power_off"}, **PLAIN)
    assert off["action"]["status"] == "in-progress"  # accepted, as DigitalOcean does
    assert finish(client, off)["status"] == "errored"
    assert client.droplets.get(droplet_id, **PLAIN)["droplet"]["status"] == "active"
    again = client.droplet_actions.post(droplet_id, body={"type": "power_off"}, **PLAIN)
    assert finish(client, again)["status"] == "completed"  # the switch was for one action
    cleared = requests.delete(url, headers=auth, timeout=5).json()["faults"]
    assert cleared == [{"type": "power_off", "count": 1, "hits": 1}]


def test_reserved_ip_shows_in_networks_and_moves_between_droplets(client):
    first = client.droplets.create(body=spec("old-forge"), **PLAIN)["droplet"]["id"]
    second = client.droplets.create(body=spec("new-forge"), **PLAIN)["droplet"]["id"]
    active(client, first)
    active(client, second)
    ip = client.reserved_ips.create(body={"region": "fra1"}, **PLAIN)["reserved_ip"]["ip"]
    assert ip == RESERVED[0]

    assign = {"type": "assign", "droplet_id": first}
    assert finish(client, client.reserved_ips_actions.post(ip, body=assign, **PLAIN))[
        "status"] == "completed"
    assert public_ips(client, first)[1:] == [ip]

    assign = {"type": "assign", "droplet_id": second}
    finish(client, client.reserved_ips_actions.post(ip, body=assign, **PLAIN))

    assert ip not in public_ips(client, first) and public_ips(client, second)[1:] == [ip]
    assert client.reserved_ips.get(ip, **PLAIN)["reserved_ip"]["droplet"]["id"] == second

    finish(client, client.reserved_ips_actions.post(ip, body={"type": "unassign"}, **PLAIN))
    assert len(public_ips(client, second)) == 1 and ip not in public_ips(client, second)
    assert client.reserved_ips.get(ip, **PLAIN)["reserved_ip"]["droplet"] is None


def test_reserved_ip_pool_runs_out_with_a_clear_422(client):
    droplet_id = client.droplets.create(body=spec("forge-1"), **PLAIN)["droplet"]["id"]
    active(client, droplet_id)
    made = client.reserved_ips.create(body={"droplet_id": droplet_id}, **PLAIN)
    client.reserved_ips.create(body={"region": "fra1"}, **PLAIN)

    with pytest.raises(HttpResponseError) as err:
        client.reserved_ips.create(body={"region": "fra1"}, **PLAIN)

    assert err.value.status_code == 422 and "pool" in str(err.value)
    finish(client, {"action": made["links"]["actions"][0]})
    assert public_ips(client, droplet_id)[1:] == [made["reserved_ip"]["ip"]]
    client.reserved_ips.delete(made["reserved_ip"]["ip"], **PLAIN)
    assert public_ips(client, droplet_id)[1:] == []
    assert client.reserved_ips.create(body={"region": "fra1"}, **PLAIN)["reserved_ip"]["ip"]
