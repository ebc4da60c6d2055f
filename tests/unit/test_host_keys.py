"""The backup's SSH host keys, read as hostile input by the restore (files/phoenix_restore.py
`host-keys`): only regular, root-only files whose type matches their name and whose halves
match are staged; any bad one refuses them all, in one line, before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from phoenix.scripts import load
from tests.unit.test_backup import RESTORE

restore = load(RESTORE)
KEYS = ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"]
CONFIG = {"host_keys": KEYS}


def keygen(path: Path, *kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", *kind, "-N", "", "-C", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def forge_keys(tmp_path_factory) -> Path:
    """The forge's two host keys, made once (a 3072-bit RSA key takes seconds)."""
    ssh = tmp_path_factory.mktemp("forge") / "etc/ssh"
    keygen(ssh / "ssh_host_ed25519_key", "-t", "ed25519")
    keygen(ssh / "ssh_host_rsa_key", "-t", "rsa", "-b", "3072")
    return ssh


@pytest.fixture
def backup(tmp_path: Path, forge_keys: Path) -> Path:
    """A staged backup's folder whose .files hold the forge's two host keys."""
    unpacked = tmp_path / "unpacked"
    shutil.copytree(forge_keys, Path(f"{unpacked}.files/etc/ssh"))
    return unpacked


def files(unpacked: Path) -> Path:
    return Path(f"{unpacked}.files/etc/ssh")


def fingerprint(path: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def test_sound_keys_are_staged_root_only(backup, tmp_path):
    dest = tmp_path / "staged"
    restore.host_keys(CONFIG, str(backup), str(dest))
    keys = json.loads((dest / "keys.json").read_text())["keys"]
    assert [(k["path"], k["type"], k["staged"]) for k in keys] == [
        (KEYS[0], "ssh-ed25519", True), (KEYS[1], "ssh-rsa", True)]
    assert keys[0]["fingerprint"] == fingerprint(files(backup) / "ssh_host_ed25519_key.pub")
    for name in ("ssh_host_ed25519_key", "ssh_host_rsa_key"):
        assert (dest / name).read_bytes() == (files(backup) / name).read_bytes()
        assert (dest / name).stat().st_mode & 0o777 == 0o600


def test_public_only_stages_no_private_half(backup, tmp_path):
    dest = tmp_path / "staged"
    restore.host_keys(CONFIG, str(backup), str(dest), public_only=True)
    assert sorted(os.listdir(dest)) == ["keys.json"]
    keys = json.loads((dest / "keys.json").read_text())["keys"]
    assert [k["staged"] for k in keys] == [False, False]
    assert keys[1]["fingerprint"] == fingerprint(files(backup) / "ssh_host_rsa_key.pub")


def test_a_backup_without_host_keys_says_so(tmp_path):
    dest = tmp_path / "staged"
    restore.host_keys(CONFIG, str(tmp_path / "unpacked"), str(dest))
    assert json.loads((dest / "keys.json").read_text()) == {"keys": []}


def _link(ssh: Path) -> str:
    target = ssh.parent / "elsewhere"
    (ssh / "ssh_host_ed25519_key").rename(target)
    (ssh / "ssh_host_ed25519_key").symlink_to(target)
    return "not a regular file"


def _open_mode(ssh: Path) -> str:
    (ssh / "ssh_host_ed25519_key").chmod(0o644)
    return "has mode 0644"


def _other_halves(ssh: Path) -> str:
    keygen(ssh.parent / "other", "-t", "ed25519")
    (ssh.parent / "other.pub").replace(ssh / "ssh_host_ed25519_key.pub")
    return "are not halves of one key"


def _wrong_type(ssh: Path) -> str:
    for suffix in ("", ".pub"):
        (ssh / f"ssh_host_ed25519_key{suffix}").unlink()
        (ssh / f"ssh_host_rsa_key{suffix}").rename(ssh / f"ssh_host_ed25519_key{suffix}")
    return "holds a ssh-rsa key, not the ed25519 its name says"


def _weak_rsa(ssh: Path) -> str:
    for suffix in ("", ".pub"):
        (ssh / f"ssh_host_rsa_key{suffix}").unlink()
    keygen(ssh / "ssh_host_rsa_key", "-t", "rsa", "-b", "2048")
    return "2048-bit RSA key"


def _encrypted(ssh: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", "a passphrase", "-f",
                    str(ssh / "ssh_host_ed25519_key")], check=True)
    return "not an unencrypted private key"


def _half_missing(ssh: Path) -> str:
    (ssh / "ssh_host_rsa_key.pub").unlink()
    return "without its other half"


def _not_a_key(ssh: Path) -> str:
    (ssh / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAAnotakey\n")
    return "not a public key ssh-keygen reads"


@pytest.mark.parametrize("spoil", [_link, _open_mode, _other_halves, _wrong_type, _weak_rsa,
                                   _encrypted, _half_missing, _not_a_key])
def test_a_bad_key_refuses_them_all_touching_nothing(backup, tmp_path, spoil):
    said = spoil(files(backup))
    dest = tmp_path / "staged"
    config = tmp_path / "restore.json"
    config.write_text(json.dumps(CONFIG))
    proc = subprocess.run([str(RESTORE), "--config", str(config), "host-keys", str(backup),
                           str(dest)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert said in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".host-keys-")] == []


def test_a_refusal_leaves_an_earlier_staging_as_it_was(backup, tmp_path):
    dest = tmp_path / "staged"
    restore.host_keys(CONFIG, str(backup), str(dest))
    before = (dest / "keys.json").read_text()
    _link(files(backup))
    with pytest.raises(restore.RestoreError, match="not a regular file"):
        restore.host_keys(CONFIG, str(backup), str(dest))
    assert (dest / "keys.json").read_text() == before
