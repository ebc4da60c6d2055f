"""Runbook step 2: the folders the wizards, timmy-config's deploy.sh, the logs and Phoenix
itself expect."""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "layout_hermes_dirs",
    "layout_hermes_home",
    "layout_hermes_mode",
    "layout_log_dir",
    "layout_log_mode",
    "layout_wizard_mode",
    "layout_wizard_root",
    "phoenix_state_dir",
    "wizard_names",
)


def _folders(data) -> list[tuple[str, str, str, str]]:
    """(what, path, group, mode) of each folder, in the order they are made."""
    wizards = [
        (
            f"the wizard folder of {name}",
            posixpath.join(data.layout_wizard_root, name),
            "root",
            data.layout_wizard_mode,
        )
        for name in data.wizard_names
    ]
    hermes = [
        (
            f"the hermes {sub}/ folder",
            posixpath.join(data.layout_hermes_home, sub),
            "root",
            data.layout_hermes_mode,
        )
        for sub in data.layout_hermes_dirs
    ]
    return [
        ("Phoenix's own state folder", data.phoenix_state_dir, "root", "0700"),
        *wizards,
        ("the hermes home", data.layout_hermes_home, "root", data.layout_hermes_mode),
        *hermes,
        ("the fleet log folder", data.layout_log_dir, "adm", data.layout_log_mode),
    ]


@deploy("Lay out the wizard and hermes folders")
def make_layout() -> None:
    for what, path, group, mode in _folders(host.data):
        files.directory(
            name=f"Ensure {what} exists", path=path, user="root", group=group, mode=mode
        )
