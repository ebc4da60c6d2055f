"""Runbook step 2: the folders the wizards, timmy-config's deploy.sh, the logs and Phoenix
itself expect."""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = ("layout_hermes_dirs", "layout_hermes_home", "layout_hermes_mode", "layout_log_dir",
         "layout_log_mode", "layout_wizard_mode", "layout_wizard_root", "phoenix_state_dir",
         "wizard_names")


@deploy("Lay out the wizard and hermes folders")
def make_layout() -> None:
    data = host.data
    files.directory(
        name="Ensure Phoenix's own state folder exists",
        path=data.phoenix_state_dir,
        user="root", group="root", mode="0700",
    )
    for name in data.wizard_names:
        files.directory(
            name=f"Ensure the wizard folder of {name} exists",
            path=posixpath.join(data.layout_wizard_root, name),
            user="root", group="root", mode=data.layout_wizard_mode,
        )
    files.directory(
        name="Ensure the hermes home exists",
        path=data.layout_hermes_home,
        user="root", group="root", mode=data.layout_hermes_mode,
    )
    for sub in data.layout_hermes_dirs:
        files.directory(
            name=f"Ensure the hermes {sub}/ folder exists",
            path=posixpath.join(data.layout_hermes_home, sub),
            user="root", group="root", mode=data.layout_hermes_mode,
        )
    files.directory(
        name="Ensure the fleet log folder exists",
        path=data.layout_log_dir,
        user="root", group="adm", mode=data.layout_log_mode,
    )
