"""sshd (tasks/ssh.py, the security baseline the runbook leaves out): key-only, root by key
alone, no X11 forwarding, nothing ssh-audit fails."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .helpers import out

# PermitRootLogin values that refuse a root password ("without-password" is the old name).
ROOT_KEY_ONLY = {"prohibit-password", "without-password", "forced-commands-only", "no"}


@pytest.fixture(scope="module")
def sshd(host) -> dict[str, str]:
    """sshd's effective settings (`sshd -T`): what it enforces, drop-ins included."""
    lines = out(host, "sshd -T 2>/dev/null || /usr/sbin/sshd -T").splitlines()
    return dict(line.split(" ", 1) for line in lines if " " in line)


def test_security_sshd_no_password_login(sshd, settings):
    if settings["ssh_password_authentication"]:
        pytest.skip("ssh_password_authentication is True in group_data: passwords allowed")
    on = [
        key
        for key in ("passwordauthentication", "kbdinteractiveauthentication")
        if sshd.get(key, "yes") != "no"
    ]
    assert not on, (
        f"sshd accepts password logins ({', '.join(f'{k} yes' for k in on)} in "
        "`sshd -T`): look for a drop-in in /etc/ssh/sshd_config.d that turns it on"
    )


def test_security_sshd_root_login_key_only(sshd):
    value = sshd.get("permitrootlogin", "yes")
    assert value in ROOT_KEY_ONLY, (
        f"sshd has permitrootlogin {value}: root may log in with "
        "a password; expected prohibit-password"
    )


def test_security_sshd_no_x11_forwarding(sshd):
    assert sshd.get("x11forwarding") == "no", "sshd allows X11 forwarding (x11forwarding yes)"


def test_security_ssh_audit_reports_no_failure(address):
    if shutil.which("ssh-audit") is None:
        pytest.skip("ssh-audit is not installed on this machine (apt-get install ssh-audit)")
    proc = subprocess.run(
        ["ssh-audit", "-n", "-l", "fail", address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    failures = [line.strip() for line in proc.stdout.splitlines() if "[fail]" in line]
    assert not failures, f"ssh-audit fails sshd on {address}: " + "; ".join(failures[:5])
    # ssh-audit 2.5 (Debian 12) exits 0 good, 2 warnings, 3 failures, 1 connection error.
    assert proc.returncode in (0, 2), (
        f"ssh-audit could not audit {address} (exit "
        f"{proc.returncode}): {(proc.stdout + proc.stderr).strip()[-300:]}"
    )


def test_security_sshd_host_keys_are_strong(host):
    """sshd takes users' RSA keys down to Gitea's minimum (ssh_required_rsa_size); its own host
    keys stay ed25519 or RSA of 3072 bits and more."""
    weak = []
    keys = out(
        host, "{ sshd -T 2>/dev/null || /usr/sbin/sshd -T; } | awk '$1 == \"hostkey\" {print $2}'"
    )
    assert keys.split(), "`sshd -T` names no host key"
    for key in keys.split():
        line = out(host, f"ssh-keygen -l -f {key}.pub 2>/dev/null || true").split()
        if line and line[-1] == "(RSA)" and int(line[0]) < 3072:
            weak.append(f"{key} is RSA-{line[0]}")
        elif line and line[-1] not in ("(RSA)", "(ED25519)"):
            weak.append(f"{key} is {line[-1].strip('()')}")
    assert not weak, "weak sshd host keys: " + "; ".join(weak) + " (make 3072-bit RSA or ed25519)"
