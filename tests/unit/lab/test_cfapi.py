"""The lab Cloudflare API, driven by the real `cloudflare` SDK over loopback."""

from __future__ import annotations

import json
import threading
import time

import cloudflare
import pytest

from phoenix.cutover.dns import make_client
from phoenix.lab.cloudflare.api import make_server
from phoenix.lab.cloudflare.zones import Zones

TOKEN = "lab-token-0123456789abcdef"


def seed() -> dict[str, list[dict]]:
    hosts = [{"name": f"host{i:03}.example.com", "type": "A", "ttl": 120,
              "content": f"10.0.{i // 250}.{i % 250 + 1}"} for i in range(120)]
    return {
        "example.com": [
            {"name": "git.example.com", "type": "A", "content": "10.213.78.10", "ttl": 3600},
            {"name": "www", "type": "CNAME", "content": "git.example.com", "proxied": True},
            *hosts,
        ],
        "example.org": [],
    }


@pytest.fixture(scope="module")
def running():
    # One server per module: stopping one costs up to half a second (serve_forever's poll).
    srv = make_server(token=TOKEN).start()
    yield srv
    srv.stop()


@pytest.fixture
def server(running):
    """The module's server with fresh zones, an empty request log and no 429s armed."""
    running.zones = running.api.zones = Zones(seed())
    running.api.requests.clear()
    running.api.rate_limit_next(0)
    return running


@pytest.fixture
def client(server):
    return make_client(token=TOKEN, base_url=f"http://127.0.0.1:{server.port}/client/v4",
                       max_retries=2, timeout=5)


@pytest.fixture
def zone_id(client):
    return client.zones.list(name="example.com").result[0].id


def record_calls(server) -> list:
    return [q for method, path, q in server.api.requests if path.endswith("/dns_records")]


def test_zone_list_filters_by_name(client):
    assert [z.name for z in client.zones.list(name="example.com").result] == ["example.com"]
    assert [z.name for z in client.zones.list(name="ends_with:.org").result] == ["example.org"]
    assert client.zones.list(name="example.net").result == []
    assert sorted(z.name for z in client.zones.list()) == ["example.com", "example.org"]


def test_record_iteration_pages_until_the_end(client, server, zone_id):
    records = list(client.dns.records.list(zone_id=zone_id, type="A", per_page=50))
    assert len(records) == 121  # 120 hosts + git
    assert len({r.id for r in records}) == 121
    # pages 1..3 hold the records; page 4 comes back empty and ends the iteration
    assert [q["page"][0] if "page" in q else "1" for q in record_calls(server)] == \
        ["1", "2", "3", "4"]


def test_result_info_describes_the_page(client, zone_id):
    page = client.dns.records.list(zone_id=zone_id, type="A", per_page=50, page=3)
    assert len(page.result) == 21
    info = page.model_extra.get("result_info") or page.result_info.model_dump()
    assert (info["page"], info["per_page"], info["count"]) == (3, 50, 21)
    assert (info["total_count"], info["total_pages"]) == (121, 3)
    assert client.dns.records.list(zone_id=zone_id, per_page=50, page=9).result == []


def test_name_exact_filter_returns_only_that_name(client, server, zone_id):
    found = client.dns.records.list(zone_id=zone_id, name={"exact": "GIT.example.com"},
                                    type="A").result
    assert [(r.name, r.content, r.ttl) for r in found] == [("git.example.com", "10.213.78.10", 3600)]
    assert record_calls(server)[-1]["name.exact"] == ["GIT.example.com"]
    plain = client.dns.records.list(zone_id=zone_id, extra_query={"name": "git.example.com"})
    assert [r.name for r in plain.result] == ["git.example.com"]
    assert client.dns.records.list(zone_id=zone_id, name={"exact": "git.example.com"},
                                   type="CNAME").result == []


def test_edit_needs_name_type_and_ttl(client, zone_id):
    record = client.dns.records.list(zone_id=zone_id, name={"exact": "git.example.com"}).result[0]
    with pytest.raises(TypeError):
        client.dns.records.edit(record.id, zone_id=zone_id, content="10.213.78.99")
    edited = client.dns.records.edit(record.id, zone_id=zone_id, name="git.example.com",
                                     type="A", ttl=300, content="10.213.78.99")
    assert (edited.content, edited.ttl, edited.proxied) == ("10.213.78.99", 300, False)


@pytest.mark.parametrize("change, code", [
    ({"content": "not-an-ip"}, 9005),
    ({"content": "2001:db8::1"}, 9005),
    ({"ttl": 30}, 9021),
    ({"ttl": 90000}, 9021),
])
def test_invalid_records_are_refused(client, zone_id, change, code):
    record = client.dns.records.list(zone_id=zone_id, name={"exact": "git.example.com"}).result[0]
    fields = {"name": "git.example.com", "type": "A", "ttl": 300, "content": "10.213.78.1"}
    with pytest.raises(cloudflare.BadRequestError) as caught:
        client.dns.records.edit(record.id, zone_id=zone_id, **{**fields, **change})
    assert caught.value.body["errors"][0]["code"] == code
    after = client.dns.records.get(record.id, zone_id=zone_id)
    assert (after.content, after.ttl) == ("10.213.78.10", 3600)  # nothing half-applied


def test_create_update_delete(client, zone_id):
    made = client.dns.records.create(zone_id=zone_id, name="new", type="A",
                                     content="10.213.78.50", ttl=600)
    assert (made.name, made.ttl) == ("new.example.com", 600)
    with pytest.raises(cloudflare.BadRequestError):  # identical record
        client.dns.records.create(zone_id=zone_id, name="new.example.com", type="A",
                                  content="10.213.78.50", ttl=600)
    put = client.dns.records.update(made.id, zone_id=zone_id, name="new.example.com",
                                    type="A", content="10.213.78.51", ttl=600, proxied=True)
    assert (put.content, put.ttl, put.proxied) == ("10.213.78.51", 1, True)  # proxied: auto TTL
    client.dns.records.delete(made.id, zone_id=zone_id)
    with pytest.raises(cloudflare.NotFoundError) as caught:
        client.dns.records.get(made.id, zone_id=zone_id)
    assert caught.value.body["errors"][0]["code"] == 81044


def test_unknown_zone_is_404(client):
    with pytest.raises(cloudflare.NotFoundError):
        client.dns.records.list(zone_id="0" * 32).result


def test_wrong_token_is_403_authentication_error(server):
    bad = make_client(token="wrong-token", base_url=f"http://127.0.0.1:{server.port}/client/v4",
                      max_retries=0)
    with pytest.raises(cloudflare.PermissionDeniedError) as caught:
        bad.zones.list()
    assert caught.value.body["errors"] == [{"code": 10000, "message": "Authentication error"}]


def test_429_then_the_sdk_retries(client, server):
    server.api.rate_limit_next(1, retry_after=0.05)
    start = time.monotonic()
    assert client.zones.list(name="example.com").result[0].name == "example.com"
    assert time.monotonic() - start < 1
    assert len(server.api.requests) == 1 and server.faults[0].hits == 1  # refused, then served
    server.api.rate_limit_next(5, retry_after=0.01)
    with pytest.raises(cloudflare.RateLimitError):
        client.zones.list()


def test_store_is_saved_and_loaded(tmp_path, client, server, zone_id):
    path = tmp_path / "zones.json"
    server.zones.path = path
    made = client.dns.records.create(zone_id=zone_id, name="saved", type="A",
                                     content="10.213.78.77", ttl=60)
    loaded = Zones.load(path)
    assert loaded.record(zone_id, made.id) == server.zones.record(zone_id, made.id)
    assert loaded.lookup("saved.example.com")[1][0]["content"] == "10.213.78.77"


def test_concurrent_creates_all_land(client, server, zone_id):
    def create(worker: int) -> None:
        for i in range(10):
            client.dns.records.create(zone_id=zone_id, name=f"w{worker}-{i}", type="A",
                                      content="10.213.78.1", ttl=60)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = {r["name"] for r in server.zones.records(zone_id)}
    assert {f"w{w}-{i}.example.com" for w in range(4) for i in range(10)} <= names


def test_a_zones_file_from_an_older_lab_is_served_in_this_versions_shape(tmp_path):
    """A lab state folder outlives upgrades: a zone saved with a field the SDK's `Owner` lacks
    (an older lab wrote `owner.email`) must not be served back; its records are kept."""
    path = tmp_path / "zones.json"
    old = Zones({"example.com": [{"name": "kept", "type": "A", "content": "10.213.78.9",
                                  "ttl": 60}]}, path=path)
    zone = old.zone_list()[0]
    data = json.loads(path.read_text())
    data["zones"][0]["owner"] = {"id": None, "type": "user", "email": "lab@example.invalid"}
    path.write_text(json.dumps(data))
    loaded = Zones.load(path)
    assert "email" not in loaded.zone(zone["id"])["owner"]
    assert set(loaded.zone(zone["id"])["owner"]) <= set(
        cloudflare.types.zones.zone.Owner.model_fields)
    assert loaded.lookup("kept.example.com")[1][0]["content"] == "10.213.78.9"
