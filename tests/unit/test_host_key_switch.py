"""A host key switch (the rotation after provision, the backup's keys after a restore) cut off
midway: the next run pins both keys, settles on the one sshd answers with, and goes on."""

from __future__ import annotations

import pytest

from phoenix.errors import PhoenixError
from phoenix.provision import droplet as prov
from tests.unit.test_provision import client, key, server  # noqa: F401


class Cut(BaseException):
    """The operator's process killed (not an error anything catches)."""


class Host:
    """sshd as the operator's ssh meets it: it answers only when its key is pinned, and the
    rotation's commands change the key it serves."""

    def __init__(self, monkeypatch, *, cut_after_switch: bool = False,
                 cut_before_switch: bool = False) -> None:
        self.serves = ""  # the handed-over key, once provision knows it
        self.made = 0
        self.cut_after_switch, self.cut_before_switch = cut_after_switch, cut_before_switch
        monkeypatch.setattr(prov, "remote", self.remote)
        monkeypatch.setattr(prov, "wait_ssh", self.wait_ssh)

    def answers(self, t) -> None:
        if not self.serves:
            self.serves = t.known_hosts.read_text().split(None, 1)[1].strip()
        if self.serves not in t.known_hosts.read_text():
            raise PhoenixError(f"{t.host} answered with a host key other than the pinned one")

    def wait_ssh(self, t, *, timeout, progress) -> None:
        self.answers(t)

    def remote(self, t, command: str, **_) -> str:
        self.answers(t)
        if "ssh-keygen -q" in command:
            self.made += 1
            self.pending = f"ssh-ed25519 AAAAnew{self.made}"
            return self.pending + "\n"
        if "mv -f" in command:
            if self.cut_before_switch:
                self.cut_before_switch = False
                raise Cut
            self.serves = self.pending
            if self.cut_after_switch:
                self.cut_after_switch = False
                raise Cut
        return ""


def provision(server, tmp_path, key):  # noqa: F811
    from phoenix.settings import load
    from phoenix.state import State

    state = State("recovery", tmp_path / "state")
    settings = {**load(None), "provision_timeout": 10}
    prov.provision(role="recovery", settings=settings, client=client(server), state=state,
                   key=key, check_ssh=True)
    return State("recovery", tmp_path / "state")


def test_a_rotation_cut_off_after_sshd_switched_settles_on_the_new_key(
        server, tmp_path, key, monkeypatch):  # noqa: F811
    host = Host(monkeypatch, cut_after_switch=True)
    with pytest.raises(Cut):
        provision(server, tmp_path, key)
    state = provision(server, tmp_path, key)  # the operator runs it again
    assert host.made == 1  # settled, not rotated a second time
    assert state.data["host_key"]["public"] == host.serves == "ssh-ed25519 AAAAnew1"
    assert "host_key_next" not in state.data
    assert state.known_hosts.read_text().split()[1:] == host.serves.split()
    assert not state.host_key.exists()  # the handed-over key is dead: gone here too


def test_a_rotation_cut_off_before_sshd_switched_keeps_the_old_key_then_rotates(
        server, tmp_path, key, monkeypatch):  # noqa: F811
    host = Host(monkeypatch, cut_before_switch=True)
    with pytest.raises(Cut):
        provision(server, tmp_path, key)
    handed_over = host.serves
    state = provision(server, tmp_path, key)
    assert host.made == 2 and host.serves == "ssh-ed25519 AAAAnew2" != handed_over
    assert state.data["host_key"]["public"] == host.serves
    assert state.known_hosts.read_text().split()[1:] == host.serves.split()


def test_a_host_answering_with_neither_key_is_refused(server, tmp_path, key, monkeypatch):  # noqa: F811
    host = Host(monkeypatch, cut_after_switch=True)
    with pytest.raises(Cut):
        provision(server, tmp_path, key)
    host.serves = "ssh-ed25519 AAAAsomeoneelse"
    with pytest.raises(PhoenixError, match="a host key other than the pinned one"):
        provision(server, tmp_path, key)
    state = prov.State("recovery", tmp_path / "state")
    assert state.data["host_key_next"] == "ssh-ed25519 AAAAnew1"  # nothing settled
    assert len(state.known_hosts.read_text().splitlines()) == 2
    with pytest.raises(PhoenixError, match="answers with neither the host key it had nor"):
        prov.settle_host_key(state)
