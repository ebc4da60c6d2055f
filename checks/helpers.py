"""Small readers of host state shared by the validation modules (testinfra `host` in, plain
values out), so each test reads as the runbook check it makes."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from phoenix.scripts import load

REPO = Path(__file__).resolve().parents[1]
# Phoenix's backup verifier, which the deploy ships to hosts: its COUNT_QUERIES define the counts.
VERIFIER = REPO / "files" / "phoenix_backup_verify.py"
# The title marks the issues step 9 creates, so the restored counts can leave them out.
VALIDATION_ISSUE_TITLE = "Phoenix post-recovery validation (runbook step 9)"
# Step 9.4's issue: this prefix, a nonce (phoenix-nonce-<hex>) and this suffix.
DISPATCH_ISSUE_TITLE = ("Phoenix dispatch check ", " (runbook step 9.4)")
ROOT = "__root__"  # app.ini's keys before the first [section], such as RUN_USER


def mode(f) -> str:
    return f"{f.mode:04o}"


def out(host, command: str) -> str:
    """stdout of a command that must succeed; its stderr in the failure otherwise."""
    result = host.run(command)
    assert result.rc == 0, (
        f"`{command}` failed on the host (exit {result.rc}): "
        f"{(result.stderr or result.stdout).strip()[:300]}"
    )
    return result.stdout


def unit_property(host, unit: str, prop: str) -> str:
    return host.run(f"systemctl show -p {prop} --value {shlex.quote(unit)}").stdout.strip()


def unit_loaded(host, unit: str) -> bool:
    return unit_property(host, unit, "LoadState") == "loaded"


def main_process_user(host, unit: str) -> str | None:
    """The user the unit's main process runs as now, or None when it is not running."""
    pid = unit_property(host, unit, "MainPID")
    if not pid or pid == "0":
        return None
    return host.run(f"ps -o user= -p {pid}").stdout.strip() or None


def host_now(host) -> float:
    return float(out(host, "date +%s.%N").strip())


def read_ini(text: str) -> configparser.ConfigParser:
    """app.ini as Gitea reads it: keys before the first [section] go to section ROOT."""
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="__none__")
    parser.read_string(f"[{ROOT}]\n" + text)
    return parser


def ini_get(ini: configparser.ConfigParser, section: str, key: str) -> str:
    if not ini.has_section(section):
        return ""
    return ini.get(section, key, fallback="").strip().strip('"').strip("`")


def verifier():
    """Phoenix's on-host backup verifier as a module: its COUNT_QUERIES define the counts."""
    return load(VERIFIER)


def not_root(host, unit: str, expected: str) -> list[str]:
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


BACKEND = "hermes-backend"


def house_unit(settings, house: str) -> str:
    return BACKEND if house == settings["backend_house"] else f"hermes-{house}"


def house_home(settings, house: str) -> str:
    return f"{settings['hermes_root'].rstrip('/')}/{house}"


def journal(host, unit: str, lines: int = 20) -> str:
    tail = host.run(f"journalctl -u {shlex.quote(unit)} -n {lines} --no-pager -o cat")
    return "\n".join("    " + line for line in tail.stdout.strip().splitlines()[-lines:])


def active_and_enabled(host, unit: str, why: str) -> None:
    service = host.service(unit)
    assert service.is_running, (
        f"{unit} is not running ({why}); its journal ends:\n{journal(host, unit)}"
    )
    assert service.is_enabled, f"{unit} is not enabled: it will not start at boot"
