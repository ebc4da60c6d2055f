"""`phoenix drill`: a whole disaster and recovery in the lab, timed, with nothing lost.

lab up → a primary forge (provisioned through the lab's DigitalOcean API, converged by the
deploy, DNS pointed at it) → data written through Gitea's API and git → an offsite backup →
more data written after it → the primary destroyed (the disaster) → `phoenix recover` onto a
new droplet → what was there before the snapshot compared with what came back → lab down.
The report gives the RTO per step and in total, the RPO, and the data lost.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from phoenix.errors import PhoenixError
from phoenix.forge import Forge, compare, snapshot
from phoenix.lab import config as labconfig
from phoenix.recover import Report, run_deploy
from phoenix.sshconf import Target, ssh_command
from phoenix.state import State

Say = Callable[[str], None]


def lab_environment(config: labconfig.LabConfig, state_dir: Path) -> dict[str, str]:
    """What `eval "$(phoenix lab env)"` gives a shell, for this process and its children."""
    return {
        "PHOENIX_ENV": "lab",
        "PHOENIX_LAB_DIR": str(config.state_dir),
        "PHOENIX_STATE_DIR": str(state_dir),
        "PHOENIX_SECRETS_DIR": str(config.state_dir / "secrets"),
        "PHOENIX_SSH_KEY": str(config.ssh_key),
        "DIGITALOCEAN_ENDPOINT": config.do_endpoint,
        "DIGITALOCEAN_TOKEN": config.do_token_file.read_text().strip(),
        "CLOUDFLARE_BASE_URL": config.cf_base_url,
        "CLOUDFLARE_API_TOKEN": config.cf_token_file.read_text().strip(),
    }


def host_env(state: State) -> dict[str, str]:
    """inventories/recovery.py aimed at another role's droplet (PHOENIX_HOST & co)."""
    return {"PHOENIX_HOST": state.address, "PHOENIX_KNOWN_HOSTS": str(state.known_hosts),
            "PHOENIX_SSH_KEY": state.data["ssh_key"]}


def ssh(target: Target, command: str, *, timeout: float = 120) -> str:
    proc = subprocess.run(ssh_command(target, command), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise PhoenixError(f"on {target.host}: `{command}` failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def push_commit(target: Target, settings: dict, repo: str, message: str) -> None:
    """A commit pushed into a bare repository on the forge, as its run user, through git."""
    bare = f"{settings['gitea_repo_root']}/{repo.lower()}.git"
    user = settings["gitea_user"]
    script = (f"set -e; w=$(mktemp -d); git clone -q {bare} $w/w; cd $w/w; "
              f"git -c user.name=drill -c user.email=drill@forge.lab.invalid commit -q "
              f"--allow-empty -m '{message}'; git push -q origin HEAD; rm -rf $w")
    ssh(target, f"runuser -u {user} -- bash -c \"{script}\"")


def write_data(forge: Forge, target: Target, settings: dict, *, label: str) -> list[str]:
    """Issues in every repository and a commit in the first: what users do on a forge."""
    written = []
    repos = sorted(r["full_name"] for r in forge.repos())
    for name in repos:
        issue = forge.create_issue(name, f"{label}: filed on the primary", "drill data")
        written.append(f"{name}#{issue['number']}")
    push_commit(target, settings, repos[0], f"{label}: a commit on the primary")
    written.append(f"{repos[0]}@{label}")
    return written


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
