"""Runbook step 9.4's path: Gitea's system webhooks, one per wizard house, point at each
house's webhook route with its secret (phoenix/dispatch.py). A recovery brings the rows back
with gitea.db; this puts back one that is missing or differs (a new house, a new secret)."""

from __future__ import annotations

import json
import posixpath
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy
from pyinfra.operations import files, server

from facts.dispatch import DispatchHooks
from phoenix import dispatch
from tasks._ops import secret_file
from tasks.hermes import _secret
from tasks.role import role

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "dispatch_address_first",
    "dispatch_events",
    "dispatch_port_first",
    "dispatch_route",
    "gitea_db_path",
    "gitea_user",
    "phoenix_state_dir",
    "wizard_names",
)

SCRIPT = Path(__file__).resolve().parent.parent / "files" / "phoenix_dispatch_hooks.py"


@deploy("Dispatch the forge's issues to the wizard houses")
def dispatch_issues() -> None:
    data = host.data
    if role() == "standby":  # its gitea.db is replaced at promotion, rows and all
        host.noop("an unpromoted standby dispatches nothing")
        return
    secret = _secret(dispatch.SECRET_NAME)
    wanted = [
        {
            "url": house.url,
            "secret": dispatch.house_secret(secret, house.name),
            "events": list(data.dispatch_events),
        }
        for house in dispatch.houses(data)
    ]
    folder = posixpath.join(data.phoenix_state_dir, "dispatch")
    files.directory(
        name=f"Ensure {folder} exists, root's alone",
        path=folder,
        user="root",
        group="root",
        mode="0700",
    )
    script = posixpath.join(folder, "phoenix_dispatch_hooks.py")
    files.put(
        name="Ensure the program that writes Gitea's system webhooks is current",
        src=str(SCRIPT),
        dest=script,
        user="root",
        group="root",
        mode="0644",
    )
    spec = posixpath.join(folder, "hooks.json")
    secret_file(
        name="Ensure the houses' webhooks and their secrets are listed for Gitea (0600)",
        content=json.dumps(wanted, indent=1) + "\n",
        dest=spec,
        user="root",
        group="root",
        mode="0600",
    )
    q = QuoteString
    args = {"script": script, "wanted": spec, "db": data.gitea_db_path, "user": data.gitea_user}
    # Imperative (Gitea has no command for webhooks); gated on the rows as they are. Root
    # reads the program and the list (root's alone); Gitea's user writes its own database.
    server.shell(
        name="Ensure Gitea holds a system webhook per wizard house, with its secret",
        commands=[
            StringCommand(
                "runuser",
                "-u",
                q(data.gitea_user),
                "--",
                "python3",
                "-c",
                f'"$(cat {shlex.quote(script)})"',
                q(data.gitea_db_path),
                "<",
                q(spec),
            )  # fmt: skip
        ],
        _if=lambda: host.get_fact(DispatchHooks, **args) != "ok",
    )
