"""Provision a real lab droplet with a pinned host key; cut DNS over to it and back (issue 5)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from phoenix.cutover import dns
from phoenix.cutover import traffic as cut
from phoenix.cutover.dnswire import query_a, resolve_a
from phoenix.cutover.primary import unconfirmed_fencing
from phoenix.errors import PhoenixError
from phoenix.lab.client import action_faults
from phoenix.lab.server import LAB_RECORD
from phoenix.provision.droplet import provision, wait_ssh
from phoenix.settings import load
from phoenix.sshconf import ssh_command
from phoenix.sshconf import state_target as target
from phoenix.state import State


@pytest.fixture(scope="module")
def provisioned(lab, tmp_path_factory):
    from phoenix.provision.do import DO

    do = DO(token=lab.do_token_file.read_text().strip(), endpoint=lab.do_endpoint)
    state = State("recovery", tmp_path_factory.mktemp("state"))
    settings = load("lab")
    try:
        droplet = provision(role="recovery", settings=settings, client=do, state=state,
                            key=lab.ssh_key)
        yield do, state, droplet, settings
    finally:
        if state.droplet and state.droplet.get("id"):
            do.destroy(state.droplet["id"])


def test_pinned_host_key_lets_strict_ssh_in(provisioned):
    _, state, droplet, _ = provisioned
    result = subprocess.run(ssh_command(target(state), "cat /etc/hostname"),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == droplet["name"]
    assert re.fullmatch(r"forge-recovery-\d{8}-\d{4}-[0-9a-f]{6}(-\d+)?", droplet["name"])


def test_the_host_key_in_user_data_no_longer_opens_a_session(provisioned, tmp_path):
    _, state, droplet, _ = provisioned
    handed_over = state.data["attempt"]["host_public"]
    assert handed_over.split()[1] not in state.known_hosts.read_text()
    assert not state.host_key.exists()  # the local copy of that private key is gone
    stale = tmp_path / "known_hosts"
    stale.write_text(f"{droplet['ip']} {' '.join(handed_over.split()[:2])}\n")
    from dataclasses import replace

    with pytest.raises(PhoenixError, match="other than the pinned"):
        wait_ssh(replace(target(state), known_hosts=stale), timeout=10, progress=lambda _: None)


def test_a_host_with_another_key_is_refused(provisioned, tmp_path):
    _, state, droplet, _ = provisioned
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{droplet['ip']} {' '.join((tmp_path / 'other.pub').read_text().split()[:2])}\n")
    t = target(state)
    from dataclasses import replace

    with pytest.raises(PhoenixError, match="other than the pinned"):
        wait_ssh(replace(t, known_hosts=forged), timeout=10, progress=lambda _: None)


def test_provision_again_reuses_the_droplet(provisioned, lab):
    do, state, droplet, settings = provisioned
    again = provision(role="recovery", settings=settings, client=do, state=state,
                      key=lab.ssh_key)
    assert again["id"] == droplet["id"]
    assert len([d for d in do.droplets(tag="phoenix-recovery")]) == 1


def test_recover_dry_shows_the_deploys_changes_and_makes_none(provisioned, monkeypatch):
    from phoenix.recover import dry_deploy

    _, state, droplet, _ = provisioned
    monkeypatch.setenv("PHOENIX_STATE_DIR", str(state.folder))
    monkeypatch.setenv("PHOENIX_ENV", "lab")
    lines: list[str] = []
    dry_deploy("recovery", say=lines.append)
    assert lines[0].startswith(f"what the deploy would change on {droplet['ip']}")
    assert "--> Detected changes:" in lines
    assert any("Ensure the base packages are installed" in line for line in lines)
    unchanged = subprocess.run(ssh_command(target(state), "test -e /etc/gitea/app.ini"),
                               capture_output=True, timeout=30)
    assert unchanged.returncode == 1  # nothing was deployed


def test_cutover_then_rollback_moves_dns_and_back(provisioned, lab, monkeypatch):
    do, state, droplet, settings = provisioned
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", lab.cf_token_file.read_text().strip())
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", lab.cf_base_url)
    server = (lab.bridge_ip, lab.dns_port)
    before = resolve_a(LAB_RECORD, *server)
    assert before != [droplet["ip"]]

    with pytest.raises(PhoenixError, match="validation"):
        cut.cutover(settings=settings, state=state, do=None, reserved_ip=False, force=False,
                    say=lambda _: None)
    cut.cutover(settings=settings, state=state, do=None, reserved_ip=False, force=True,
                say=lambda _: None)
    assert query_a(LAB_RECORD, *server).records == [(droplet["ip"], 300)]

    cut.rollback(state=state, do=do, say=lambda _: None)
    assert resolve_a(LAB_RECORD, *server) == before
    assert do.get(droplet["id"])["status"] == "off"
    do.action(droplet["id"], "power_on")  # for any test after this one
    wait_ssh(target(state), timeout=60, progress=lambda _: None)
    for key in ("rolled_back", "dns_saved", "cutover"):  # for the next test: not live yet
        state.data.pop(key, None)
    state.save()


@pytest.fixture
def cloudflare_env(lab, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", lab.cf_token_file.read_text().strip())
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", lab.cf_base_url)
    client = dns.client()
    zone = client.zones.list(name="lab.test").result[0]
    (record,) = client.dns.records.list(zone_id=zone.id, name={"exact": LAB_RECORD},
                                        type="A").result
    original = {"content": record.content, "ttl": int(record.ttl), "proxied": record.proxied}
    yield client, zone, record
    client.dns.records.edit(record.id, zone_id=zone.id, name=LAB_RECORD, type="A", **original)
    for six in client.dns.records.list(zone_id=zone.id, name={"exact": LAB_RECORD},
                                       type="AAAA").result:
        client.dns.records.delete(six.id, zone_id=zone.id)


def test_a_live_old_primary_refuses_cutover_and_is_fenced_with_fence(provisioned, lab,
                                                                     cloudflare_env,
                                                                     tmp_path_factory):
    do, state, droplet, settings = provisioned
    client, zone, record = cloudflare_env
    old = State("primary", state.folder)
    made = provision(role="primary", settings=settings, client=do, state=old,
                     key=lab.ssh_key)
    try:
        cut.cutover(settings=settings, state=old, do=do, reserved_ip=False, force=True,
                    say=lambda _: None)  # the forge of the day
        server = (lab.bridge_ip, lab.dns_port)
        with pytest.raises(PhoenixError, match="old primary still answers.*--fence"):
            cut.cutover(settings=settings, state=state, do=do, reserved_ip=False, force=True,
                        say=lambda _: None)
        assert resolve_a(LAB_RECORD, *server) == [made["ip"]]  # nothing moved
        cut.cutover(settings=settings, state=state, do=do, reserved_ip=False, force=True,
                    fence_old=True, say=lambda _: None)
        assert do.get(made["id"])["status"] == "off"
        assert resolve_a(LAB_RECORD, *server) == [droplet["ip"]]

        # A second recovery: a new droplet; the live one (production now) is not touched.
        second = State("recovery", tmp_path_factory.mktemp("second"))
        second.data = json.loads(json.dumps(state.data))
        second.save()
        again = provision(role="recovery", settings=settings, client=do, state=second,
                          key=lab.ssh_key, check_ssh=False)
        try:
            assert again["id"] != droplet["id"] and again["name"] != droplet["name"]
            assert do.get(droplet["id"])["status"] == "active"
        finally:
            do.destroy(again["id"])

        cut.rollback(state=state, do=do, say=lambda _: None)
        assert do.get(made["id"])["status"] == "active"  # the fenced one serves again
        assert resolve_a(LAB_RECORD, *server) == [made["ip"]]
        assert do.get(droplet["id"])["status"] == "off"

        # A provider outage, on the same pair: DigitalOcean accepts the power_off, the action
        # errors and the old primary stays active. Cutover refuses without the override, and
        # with it (as `phoenix cutover --fence-unconfirmed` runs it) while a probed port answers.
        do.action(droplet["id"], "power_on")
        wait_ssh(target(state), timeout=60, progress=lambda _: None)
        for key in ("rolled_back", "dns_saved", "cutover", "fenced"):
            state.data.pop(key, None)
        state.save()
        action_faults(lab, fail="power_off", count=10)
        with pytest.raises(PhoenixError, match=rf"fencing the old primary at {made['ip']} "
                           r"failed: .*ended errored.*--fence-unconfirmed"):
            cut.cutover(settings=settings, state=state, do=do, reserved_ip=False, force=True,
                        fence_old=True, say=lambda _: None)
        assert do.get(made["id"])["status"] == "active"
        assert resolve_a(LAB_RECORD, *server) == [made["ip"]]  # nothing moved
        ports = settings["fence_probe_ports"]
        with unconfirmed_fencing(ports), pytest.raises(
                PhoenixError, match=r"ended errored\) and it still answers on port 22"):
            cut.cutover(settings=settings, state=state, do=do, reserved_ip=False, force=True,
                        fence_old=True, say=lambda _: None)
        assert resolve_a(LAB_RECORD, *server) == [made["ip"]]
        assert "fenced_unconfirmed" not in state.data
        # Its sshd stopped (what a host cut off from us looks like from here): no fenced
        # port answers, and the override goes on, said on screen and kept in the state file.
        stop = subprocess.run(ssh_command(target(old), "systemctl stop ssh.socket ssh.service"),
                              capture_output=True, text=True, timeout=30)
        assert stop.returncode == 0, stop.stderr
        said: list[str] = []
        with unconfirmed_fencing(ports):
            cut.cutover(settings=settings, state=state, do=do, reserved_ip=False, force=True,
                        fence_old=True, say=said.append)
        assert resolve_a(LAB_RECORD, *server) == [droplet["ip"]]
        assert do.get(made["id"])["status"] == "active"  # DigitalOcean never fenced it
        (record,) = State("recovery", state.folder).data["fenced_unconfirmed"]
        assert (record["id"], record["ip"], record["silent_ports"]) == (made["id"], made["ip"],
                                                                        ports)
        assert "ended errored" in record["failure"]
        assert any(line.startswith(f"NOT fenced by DigitalOcean: the old primary at "
                                   f"{made['ip']}") for line in said), said
        assert "fenced" not in state.data  # rollback has nothing to power on
        assert [f["hits"] for f in action_faults(lab, clear=True)] == [3]
    finally:
        action_faults(lab, clear=True)
        do.destroy(made["id"])
        if do.get(droplet["id"])["status"] == "off":
            do.action(droplet["id"], "power_on")
        for key in ("rolled_back", "dns_saved", "cutover", "fenced", "fenced_unconfirmed"):
            state.data.pop(key, None)
        state.save()


CADDYFILE = """{{
\tacme_ca {ca}
\tacme_ca_root /etc/caddy/acme-ca-root.pem
\temail {email}
}}

{name} {{
\trespond /api/v1/version `{{"version": "origin"}}` 200
}}
"""


def test_a_proxied_record_and_an_aaaa_record_cut_over_and_roll_back(provisioned, lab,
                                                                    cloudflare_env):
    """The origin is Debian's Caddy with a certificate issued over DNS-01 before it first
    starts (phoenix/forge/caddycert.py), while DNS shows Cloudflare's edge: cutover probes
    it over https on 443 as production does, and step 9.1 proves the name through the API's
    record and the origin's HTTP/2 200."""
    from phoenix.cutover.after import check_after_cutover
    from phoenix.forge import caddycert
    from phoenix.forge.tls import served_certificate
    from phoenix.lab import pebble

    do, state, droplet, settings = provisioned
    client, zone, record = cloudflare_env
    t = target(state)
    wait_ssh(t, timeout=60, progress=lambda _: None)
    client.dns.records.edit(record.id, zone_id=zone.id, name=LAB_RECORD, type="A",
                            ttl=1, content=record.content, proxied=True)
    client.dns.records.create(zone_id=zone.id, name=LAB_RECORD, type="AAAA", ttl=300,
                              content="2001:db8::10", proxied=True)
    server = (lab.bridge_ip, lab.dns_port)
    edge = resolve_a(LAB_RECORD, *server)
    assert record.content not in edge  # public DNS shows Cloudflare's edge, not the origin

    def on(command: str, stdin: str | None = None) -> str:
        proc = subprocess.run(ssh_command(t, command), input=stdin, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    on("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq caddy "
       "&& systemctl stop caddy")
    on("cat > /etc/caddy/acme-ca-root.pem", pebble.listener_ca(lab).read_text())
    on("cat > /etc/caddy/Caddyfile", CADDYFILE.format(
        ca=settings["https_acme_ca"], email=settings["https_acme_email"], name=LAB_RECORD))
    said = []
    assert caddycert.ensure(settings, t, cf=client, say=said.append).startswith(
        "issued by DNS-01 in ")
    on("systemctl start caddy")
    stored = on(f"cat /var/lib/caddy/.local/share/caddy/certificates/"
                f"{caddycert.safe(caddycert.issuer_key(settings['https_acme_ca']))}/"
                f"{LAB_RECORD}/{LAB_RECORD}.crt")
    try:
        said = []
        cut.cutover(settings=settings, state=state, do=do, reserved_ip=False, force=True,
                    say=said.append, wait=True)
        assert any("proxied; Cloudflare holds" in line and "answers https" in line
                   for line in said), said
        # Caddy serves what was written, at once: no ACME of its own (Pebble could not
        # validate it over http-01 or tls-alpn-01 with DNS at Cloudflare's edge)
        import hashlib
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding
        der = x509.load_pem_x509_certificates(stored.encode())[0].public_bytes(Encoding.DER)
        assert served_certificate(droplet["ip"], LAB_RECORD) == hashlib.sha256(der).hexdigest()
        proved = check_after_cutover(settings, droplet["ip"], saved=state.data["dns_saved"],
                                     client=client, say=lambda _: None)
        assert proved == (f"https://{LAB_RECORD}/api/v1/version: HTTP/2 200 from "
                          f"{droplet['ip']} (proxied: Cloudflare's record holds it, public DNS "
                          "answers Cloudflare's edge)")
        (a,) = client.dns.records.list(zone_id=zone.id, name={"exact": LAB_RECORD},
                                       type="A").result
        assert a.content == droplet["ip"] and a.proxied
        # the droplet has no IPv6: the AAAA record would send IPv6 users to the old server
        assert client.dns.records.list(zone_id=zone.id, name={"exact": LAB_RECORD},
                                       type="AAAA").result == []
        assert resolve_a(LAB_RECORD, *server) == edge  # still the edge, as Cloudflare does

        cut.rollback(state=state, do=do, say=lambda _: None, power_off=False)
        (a,) = client.dns.records.list(zone_id=zone.id, name={"exact": LAB_RECORD},
                                       type="A").result
        assert (a.content, a.proxied) == (record.content, True)
        (six,) = client.dns.records.list(zone_id=zone.id, name={"exact": LAB_RECORD},
                                         type="AAAA").result
        assert (six.content, six.proxied) == ("2001:db8::10", True)
    finally:
        subprocess.run(ssh_command(t, "systemctl stop caddy"), timeout=30)


@pytest.mark.parametrize("fault", ["unreachable", "late"])
def test_a_ca_fault_stops_the_certificate_with_dns_unchanged_and_no_txt_left(lab, fault,
                                                                            cloudflare_env):
    """The certificate step alone, against the lab's Pebble and Cloudflare (no droplet):
    a CA nothing answers at, or one that has not issued within https_acme_timeout, is one
    line; the forge's record is as it was and no challenge record is left behind."""
    from phoenix.cutover.dnswire import parse_server, resolvers
    from phoenix.forge import dns01
    from phoenix.lab import pebble

    client, zone, record = cloudflare_env
    settings = load("lab")
    directory = settings["https_acme_ca"]
    if fault == "unreachable":  # nothing listens on the port after Pebble's management one
        directory = f"https://{lab.bridge_ip}:{pebble.MANAGEMENT_PORT + 1}/dir"
    before = resolve_a(LAB_RECORD, lab.bridge_ip, lab.dns_port)
    with pytest.raises(PhoenixError) as stopped:
        dns01.issue(name=LAB_RECORD, cf=client, directory=directory,
                    email=settings["https_acme_email"], ca_bundle=settings["https_acme_ca_root"],
                    authoritative=[parse_server(s) for s in settings["dns_authoritative"]],
                    resolvers=resolvers(settings), timeout=0 if fault == "late" else 10,
                    say=lambda _: None)
    line = str(stopped.value)
    assert "\n" not in line
    assert line == {
        "unreachable": f"the ACME CA at {directory} is unreachable (ConnectionError)",
        "late": f"the ACME CA at {directory} issued nothing for {LAB_RECORD} within 0 s; "
                "no TXT record left",
    }[fault]
    assert resolve_a(LAB_RECORD, lab.bridge_ip, lab.dns_port) == before
    assert client.dns.records.list(zone_id=zone.id, type="TXT").result == []
