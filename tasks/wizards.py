"""Runbook step 6: one Hermes Agent gateway per wizard house (hermes-ezra, …), each with its
own HERMES_HOME; the runbook's /root/wizards/<name> links to it."""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from phoenix import dispatch
from tasks._units import start_together
from tasks.hermes import house_home, run_house
from tasks.role import role

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "dispatch_address_first",
    "dispatch_port_first",
    "dispatch_route",
    "layout_wizard_root",
    "wizard_names",
)


@deploy("Run the hermes wizards")
def run_wizards() -> None:
    data = host.data
    for house in dispatch.houses(data):
        wizard = house.name
        # One primary: a standby's houses are installed but wait for its promotion.
        run_house(
            wizard,
            webhook=house,
            unit=f"hermes-{wizard}",
            api_server=False,
            description=f"the wizard house {wizard}",
            running=role() != "standby",
        )
        files.link(
            name=f"Ensure {data.layout_wizard_root}/{wizard}/hermes-home points at its HERMES_HOME",
            path=posixpath.join(data.layout_wizard_root, wizard, "hermes-home"),
            target=house_home(wizard),
            user="root",
            group="root",
        )
    # The backend's house (run_backend, just before) and the wizards' come up side by side.
    start_together("the Hermes houses")
