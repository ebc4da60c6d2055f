"""The security baseline the runbook leaves out: key-only SSH, secrets closed to others,
services not running as root where they need not."""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess

import pytest

from .helpers import main_process_user, mode, out, unit_loaded, unit_property

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
    on = [key for key in ("passwordauthentication", "kbdinteractiveauthentication")
          if sshd.get(key, "yes") != "no"]
    assert not on, f"sshd accepts password logins ({', '.join(f'{k} yes' for k in on)} in " \
                   "`sshd -T`): look for a drop-in in /etc/ssh/sshd_config.d that turns it on"


def test_security_sshd_root_login_key_only(sshd):
    value = sshd.get("permitrootlogin", "yes")
    assert value in ROOT_KEY_ONLY, f"sshd has permitrootlogin {value}: root may log in with " \
                                   "a password; expected prohibit-password"


def _secret_files(host, settings) -> list[str]:
    """The host's secret files: app.ini (SECRET_KEY, INTERNAL_TOKEN), each Hermes house's .env
    (the model's and the API server's keys), and when there is a backup job, its folder's
    files (restic password, store key, credentials) but the store's public known_hosts."""
    paths = [f"{settings['gitea_config_dir']}/app.ini"]
    paths += [f"{settings['hermes_root'].rstrip('/')}/{house}/.env"
              for house in [settings["backend_house"], *settings["wizard_names"]]]
    folder = settings.get("backup_config_dir")
    if folder and host.file(folder).is_directory:
        paths += sorted(out(host, f"find {shlex.quote(folder)} -type f "
                                  "! -name known_hosts").split())
    return [p for p in paths if host.file(p).exists]


def test_security_no_secret_readable_by_others(host, settings):
    files = _secret_files(host, settings)
    assert files, f"{settings['gitea_config_dir']}/app.ini is missing: nothing to check"
    problems = []
    for path in files:
        f = host.file(path)
        if f.mode & 0o007:
            problems.append(f"{path} is mode {mode(f)}: readable by every user on the host "
                            f"(chmod o-rwx {path})")
    assert not problems, "; ".join(problems)


def _not_root(host, unit: str, expected: str) -> list[str]:
    if not unit_loaded(host, unit):
        return [f"{unit} has no unit, so its user cannot be checked"]
    problems = []
    configured = unit_property(host, unit, "User") or "root"
    if configured != expected:
        problems.append(f"{unit} is configured to run as {configured}, expected {expected}")
    running = main_process_user(host, unit)
    if running and running != expected:
        problems.append(f"{unit} is running as {running}, expected {expected}")
    return problems


def test_security_gitea_not_running_as_root(host, settings):
    problems = _not_root(host, "gitea", settings["gitea_user"])
    assert not problems, "; ".join(problems)


def test_security_hermes_not_running_as_root(host, settings):
    problems = _not_root(host, "hermes-backend", settings["hermes_user"])
    for wizard in settings["wizard_names"]:
        if unit_loaded(host, f"hermes-{wizard}"):  # a missing one fails in step 6
            problems += _not_root(host, f"hermes-{wizard}", settings["hermes_user"])
    assert not problems, "; ".join(problems)


def test_security_hermes_units_sandboxed(host, settings):
    """`systemd-analyze security`: each Hermes unit's exposure at most hermes_max_exposure."""
    limit, problems = settings["hermes_max_exposure"], []
    for house in [settings["backend_house"], *settings["wizard_names"]]:
        unit = "hermes-backend" if house == settings["backend_house"] else f"hermes-{house}"
        if not unit_loaded(host, unit):
            continue  # a missing one fails in step 5/6
        last = out(host, f"systemd-analyze security {unit} --no-pager").strip().splitlines()[-1]
        words = [w for w in last.split() if w.replace(".", "", 1).isdigit()]
        exposure = float(words[-1]) if words else 10.0
        if exposure > limit:
            problems.append(f"{unit} has exposure {exposure} (`systemd-analyze security "
                            f"{unit}`), expected at most {limit}: its sandboxing was loosened")
    assert not problems, "; ".join(problems)


# ---- issue 16: TLS front, firewall, hardening ------------------------------------------------

def _connects(address: str, port: int, timeout: float = 3) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def test_security_internal_ports_closed_from_outside(address, settings):
    """Gitea and the backend serve this host only: Caddy is the one way in."""
    ports = {"gitea_http_port": settings["gitea_http_port"],
             "backend_port": settings["backend_port"]}
    reached = [f"{port} ({what})" for what, port in ports.items() if _connects(address, port)]
    assert not reached, f"{address} accepts connections from here on port " \
                        f"{', '.join(reached)}: bind it to 127.0.0.1 and check the firewall"


def test_security_firewall_drops_input_by_default(host, settings):
    rules = out(host, "nft list chain inet filter input 2>&1 || true")
    assert "policy drop" in rules, "the nftables input chain (inet filter input) is missing " \
                                   "or accepts by default: systemctl status nftables"
    for port in settings["firewall_tcp_ports"]:
        assert re.search(rf"\b{port}\b", rules), f"the firewall does not open TCP {port}"


def test_security_service_users_cannot_reach_metadata(host, settings):
    """Each service user's connection to the metadata address is refused at once (root's is
    not: cloud-init needs it)."""
    address = settings["firewall_metadata_address"]
    reached = []
    for user in settings["firewall_metadata_denied_users"]:
        if host.run(f"id -u {shlex.quote(user)}").rc != 0:
            continue  # a user this host does not have (another test names a missing service)
        result = host.run(f"runuser -u {shlex.quote(user)} -- curl -sS -m 3 -o /dev/null "
                          f"http://{address}/")
        if result.rc != 7 or "Couldn't connect" not in result.stderr:
            reached.append(f"{user} (curl exit {result.rc}: {result.stderr.strip()[:80]})")
    assert not reached, f"service users not refused by the firewall on {address}: " \
                        + "; ".join(reached) + " (nft list chain inet filter output)"


def test_security_sshd_no_x11_forwarding(sshd):
    assert sshd.get("x11forwarding") == "no", "sshd allows X11 forwarding (x11forwarding yes)"


def test_security_ssh_audit_reports_no_failure(address):
    if shutil.which("ssh-audit") is None:
        pytest.skip("ssh-audit is not installed on this machine (apt-get install ssh-audit)")
    proc = subprocess.run(["ssh-audit", "-n", "-l", "fail", address], capture_output=True,
                          text=True, timeout=60, check=False)
    failures = [line.strip() for line in proc.stdout.splitlines() if "[fail]" in line]
    assert not failures, f"ssh-audit fails sshd on {address}: " + "; ".join(failures[:5])
    # ssh-audit 2.5 (Debian 12) exits 0 good, 2 warnings, 3 failures, 1 connection error.
    assert proc.returncode in (0, 2), f"ssh-audit could not audit {address} (exit " \
        f"{proc.returncode}): {(proc.stdout + proc.stderr).strip()[-300:]}"


def test_security_units_sandboxed(host, settings):
    """systemd-analyze's exposure of Phoenix's own units (hermes is issue 15's)."""
    limit = settings["unit_exposure_max"]
    worse = []
    for unit in ("gitea.service", "caddy.service", "phoenix-backup.service",
                 "phoenix-standby-refresh.service"):
        if not unit_loaded(host, unit):
            continue
        line = out(host, f"systemd-analyze security --no-pager {unit} | tail -n1")
        found = re.search(r"exposure level for \S+: (\d+\.\d+)", line)
        if found is None or float(found.group(1)) > limit:
            worse.append(f"{unit} {found.group(1) if found else line.strip()}")
    assert not worse, f"units more exposed than {limit} (systemd-analyze security): " \
                      + ", ".join(worse)
