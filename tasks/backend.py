"""Runbook step 5: the hermes backend as a hardened unit, answering /health on its port."""

from __future__ import annotations

import posixpath
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from tasks.hermes import release_dir

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@deploy("Run the hermes backend")
def run_backend() -> None:
    data = host.data
    unit = files.template(
        name="Ensure the hermes-backend unit is current",
        src=str(TEMPLATES / "hermes-backend.service.j2"),
        dest="/etc/systemd/system/hermes-backend.service",
        user="root", group="root", mode="0644",
        hermes_bin=posixpath.join(release_dir(), "bin"), hermes_user=data.hermes_user,
        hermes_home=data.hermes_home, backend_port=data.backend_port,
        hermes_hardening=data.hermes_hardening,
    )
    systemd.daemon_reload(name="Reload systemd for the changed backend unit",
                          _if=unit.did_change)
    systemd.service(name="Ensure hermes-backend is running and enabled",
                    service="hermes-backend.service", running=True, enabled=True)
    systemd.service(name="Restart hermes-backend for its new unit or programs",
                    service="hermes-backend.service", restarted=True, _if=unit.did_change)
