"""Runbook step 6: one hardened unit per wizard (hermes-ezra, …), from one template, each
writing its heartbeat where the fleet-health check reads it."""

from __future__ import annotations

import posixpath
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from tasks.hermes import release_dir

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _heartbeat_dirs() -> list[str]:
    """The heartbeat folder and its parents below the hermes home, so that all are hermes's."""
    home, beat = host.data.hermes_home.rstrip("/"), host.data.wizard_heartbeat_dir.rstrip("/")
    if not beat.startswith(home + "/"):
        return [beat]
    parts = beat[len(home) + 1:].split("/")
    return [posixpath.join(home, *parts[:n]) for n in range(1, len(parts) + 1)]


@deploy("Run the hermes wizards")
def run_wizards() -> None:
    data = host.data
    for path in _heartbeat_dirs():
        files.directory(name=f"Ensure {path} exists for the heartbeats", path=path,
                        user=data.hermes_user, group=data.hermes_user, mode="0755")
    units = {}
    for wizard in data.wizard_names:
        units[wizard] = files.template(
            name=f"Ensure the hermes-{wizard} unit is current",
            src=str(TEMPLATES / "hermes-wizard.service.j2"),
            dest=f"/etc/systemd/system/hermes-{wizard}.service",
            user="root", group="root", mode="0644",
            wizard=wizard, hermes_bin=posixpath.join(release_dir(), "bin"),
            hermes_user=data.hermes_user, hermes_home=data.hermes_home,
            wizard_heartbeat_dir=data.wizard_heartbeat_dir,
            wizard_heartbeat_interval=data.wizard_heartbeat_interval,
            hermes_hardening=data.hermes_hardening,
        )
    systemd.daemon_reload(name="Reload systemd for the changed wizard units",
                          _if=any_changed(*units.values()))
    for wizard, unit in units.items():
        systemd.service(name=f"Ensure hermes-{wizard} is running and enabled",
                        service=f"hermes-{wizard}.service", running=True, enabled=True)
        systemd.service(name=f"Restart hermes-{wizard} for its new unit or programs",
                        service=f"hermes-{wizard}.service", restarted=True, _if=unit.did_change)
