"""Provision a real lab droplet with a pinned host key; cut DNS over to it and back (issue 5)."""

from __future__ import annotations

import subprocess

import pytest

from phoenix import cutover as cut
from phoenix.errors import PhoenixError
from phoenix.dnswire import query_a, resolve_a
from phoenix.lab.server import LAB_RECORD
from phoenix.provision import provision, target, wait_ssh
from phoenix.settings import load
from phoenix.sshconf import ssh_command
from phoenix.state import State


@pytest.fixture(scope="module")
def provisioned(lab, tmp_path_factory):
    from phoenix.do import DO

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
    assert result.stdout.strip() == "forge-recovery"


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
