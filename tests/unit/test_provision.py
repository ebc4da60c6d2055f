"""`phoenix provision` with the real pydo client against the lab's API (memory driver)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from phoenix.errors import PhoenixError
from phoenix.lab.do.api import make_server
from phoenix.lab.do.drivers import MemoryDriver
from phoenix.lab.httpd import Fault
from phoenix.provision.do import DO
from phoenix.provision.droplet import provision
from phoenix.settings import load
from phoenix.sshconf import public_half
from phoenix.state import State

TOKEN = "lab-provision-token"


@pytest.fixture
def server():
    srv = make_server(MemoryDriver(), token=TOKEN).start()
    yield srv
    srv.stop()


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "operator"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def client(server, token=TOKEN, retries=3) -> DO:
    return DO(token=token, endpoint=f"http://127.0.0.1:{server.port}", retries=retries)


def run(server, tmp_path, key, *, token=TOKEN, **overrides):
    settings = {**load(None), "provision_timeout": 10, **overrides}
    state = State("recovery", tmp_path / "state")
    droplet = provision(role="recovery", settings=settings, client=client(server, token),
                        state=state, key=key, check_ssh=False)
    return droplet, state


def test_provision_twice_makes_one_droplet(server, tmp_path, key):
    first, state = run(server, tmp_path, key)
    second, _ = run(server, tmp_path, key)
    assert first["id"] == second["id"]
    (only,) = server.driver.list()
    assert re.fullmatch(r"forge-recovery-\d{8}-\d{4}-[0-9a-f]{6}", only.name) and first["ip"]


def test_provision_pins_the_host_key_it_handed_over(server, tmp_path, key):
    droplet, state = run(server, tmp_path, key)
    public = public_half(state.host_key).read_text().split()[:2]
    line = state.known_hosts.read_text().split()
    assert line == [droplet["ip"], *public]
    assert oct(state.path.stat().st_mode & 0o777) == "0o600"
    assert oct(state.host_key.stat().st_mode & 0o777) == "0o600"


def test_droplet_is_tagged_by_role(server, tmp_path, key):
    run(server, tmp_path, key)
    (droplet,) = server.driver.list()
    assert "phoenix-recovery" in droplet.tags and "phoenix" in droplet.tags


def test_wrong_token_is_a_clear_error_without_the_token(server, tmp_path, key):
    with pytest.raises(PhoenixError) as err:
        run(server, tmp_path, key, token="not-the-token-xyz")
    assert "DIGITALOCEAN_TOKEN" in str(err.value)
    assert "not-the-token-xyz" not in str(err.value)
    assert server.driver.list() == []


def test_bad_region_is_refused_with_the_reason(server, tmp_path, key):
    with pytest.raises(PhoenixError, match="refused.*(?i:region)"):
        run(server, tmp_path, key, provision_region="mars1")
    assert server.driver.list() == []


def test_rate_limit_is_retried_then_succeeds(server, tmp_path, key):
    server.fail_next(1, status=429, retry_after=1)
    droplet, _ = run(server, tmp_path, key)
    assert droplet["ip"] and len(server.driver.list()) == 1


def test_rate_limit_that_persists_says_so(server, tmp_path, key):
    server.fail_next(50, status=429, retry_after=0)
    with pytest.raises(PhoenixError, match="rate limit"):
        settings = {**load(None), "provision_timeout": 10}
        provision(role="recovery", settings=settings, client=client(server, retries=0),
                  state=State("recovery", tmp_path / "s"), key=key, check_ssh=False)


def test_unreachable_api_fails_fast_and_clearly(tmp_path, key):
    import socket

    with socket.socket() as sock:  # a port on loopback that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(PhoenixError, match="cannot reach"):
        provision(role="recovery", settings={**load(None), "provision_timeout": 5},
                  client=DO(token=TOKEN, endpoint=f"http://127.0.0.1:{port}", retries=0),
                  state=State("recovery", tmp_path / "s"), key=key, check_ssh=False)
    assert time.monotonic() - started < 10


def test_a_lost_answer_to_create_leaves_one_droplet(server, tmp_path, key):
    server.inject(Fault(method="POST", path=r"^/v2/droplets$", status=504, when="after"))
    droplet, state = run(server, tmp_path, key)
    (only,) = server.driver.list()  # the SDK did not send the POST again
    assert droplet["id"] == only.id and state.data["attempt"]["tag"] in only.tags


def test_a_create_that_made_nothing_fails_and_the_rerun_makes_one(server, tmp_path, key):
    for i, (m, pattern, handler) in enumerate(server.routes):
        if m == "POST" and pattern.match("/v2/droplets"):
            server.routes[i] = (m, pattern, lambda r: (503, {"id": "service_unavailable",
                                                             "message": "try later"}))
            original = (i, (m, pattern, handler))
    with pytest.raises(PhoenixError, match="503"):
        run(server, tmp_path, key)
    assert server.driver.list() == []
    tag = State("recovery", tmp_path / "state").data["attempt"]["tag"]
    server.routes[original[0]] = original[1]
    droplet, state = run(server, tmp_path, key)
    (only,) = server.driver.list()
    assert state.data["attempt"]["tag"] == tag and tag in only.tags  # the same attempt


def test_a_second_recovery_after_cutover_makes_a_new_droplet(server, tmp_path, key):
    first, state = run(server, tmp_path, key)
    state.data["cutover"] = {"at": "2026-11-28T00:00:00Z"}  # the first one went live
    state.data["dns_saved"] = {"forge.example": {"content": "192.0.2.1"}}
    state.data["validation"] = {"passed": True, "droplet_id": first["id"]}
    state.save()
    second, state = run(server, tmp_path, key)
    assert second["id"] != first["id"]
    assert second["name"] != first["name"]  # the name is its restic host: never shared
    assert "dns_saved" not in state.data and "validation" not in state.data
    assert state.data["history"][-1]["droplet"]["id"] == first["id"]
    assert server.driver.get(first["id"]).status == "active"  # production untouched


def test_a_droplet_name_is_never_given_again_after_its_droplet_is_gone(server, tmp_path, key):
    """Two disasters in a row: the recovered primary is destroyed minutes after its cutover
    and the next recovery's droplet must not take its name (its restic host, its replica
    folder), though no droplet has that name any more."""
    names = []
    for _ in range(3):
        droplet, state = run(server, tmp_path, key)
        names.append(droplet["name"])
        state.data["cutover"] = {"at": "2026-11-28T00:00:00Z"}
        state.save()
        server.driver.destroy(droplet["id"])
    assert len(set(names)) == 3, names
    assert all(n.startswith("forge-recovery-") for n in names)


def test_a_corrupt_state_file_is_a_one_line_error(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "recovery.json").write_text('{"droplet": ')
    with pytest.raises(PhoenixError, match="not valid JSON.*move it aside"):
        State("recovery", folder)


def test_the_state_is_locked_against_a_second_command(tmp_path):
    folder = tmp_path / "state"
    code = ("import sys; from phoenix.state import State\n"
            "from phoenix.errors import PhoenixError\n"
            f"try:\n  State('recovery', __import__('pathlib').Path({str(folder)!r})).locked()"
            ".__enter__()\nexcept PhoenixError as e:\n  print(e); sys.exit(3)\n")
    with State("recovery", folder).locked():
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3 and "another phoenix command" in proc.stdout
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
