"""`phoenix provision`: a replacement droplet through pydo, its SSH host key pinned (step 1).

Idempotent: a re-run finds the droplet by its role tag and name instead of making another.
The create is sent once (no SDK retry: azure-core repeats a POST after a 5xx), and after a
failed or lost answer provision looks for the droplet by tag before it says anything: the
droplet may exist although the answer never came. The host key pair is made here and handed
over in user_data (cloud-config `ssh_keys`), so the first SSH connection is already checked
against a known key.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from phoenix.console import waiter
from phoenix.do import DO, public_ip
from phoenix.errors import PhoenixError
from phoenix.sshconf import Target, known_hosts_line, public_half, ssh_command
from phoenix.state import State

Progress = Callable[[str], None]


def operator_key() -> Path:
    path = Path(os.environ.get("PHOENIX_SSH_KEY") or "~/.ssh/id_ed25519").expanduser()
    if not path.exists() or not public_half(path).exists():
        raise PhoenixError(f"the operator SSH key {path} (and {path}.pub) is missing; "
                           "set PHOENIX_SSH_KEY")
    return path


def do_client() -> DO:
    """Phoenix's names first, then the ones doctl and the Terraform provider read."""
    token = os.environ.get("DIGITALOCEAN_TOKEN") or os.environ.get("DIGITALOCEAN_ACCESS_TOKEN")
    if not token:
        raise PhoenixError("no DigitalOcean token: set DIGITALOCEAN_TOKEN (or "
                           "DIGITALOCEAN_ACCESS_TOKEN)")
    endpoint = (os.environ.get("DIGITALOCEAN_ENDPOINT") or os.environ.get("DIGITALOCEAN_API_URL")
                or "https://api.digitalocean.com")
    return DO(token=token, endpoint=endpoint)


def ensure_host_key(state: State) -> tuple[str, str]:
    if not state.host_key.exists():
        state.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"phoenix-{state.role}-host", "-f", str(state.host_key)], check=True)
    return state.host_key.read_text(), public_half(state.host_key).read_text()


def user_data(private: str, public: str) -> str:
    """cloud-config in its JSON form (YAML is a superset), read by cloud-init on the droplet."""
    return "#cloud-config\n" + json.dumps({
        "ssh_deletekeys": True,
        "ssh_keys": {"ed25519_private": private, "ed25519_public": public.strip()},
    })


def provision(*, role: str, settings: dict, client: DO, state: State, key: Path,
              progress: Progress = lambda _: None, check_ssh: bool = True) -> dict:
    name = f"forge-{role}"
    role_tag = f"phoenix-{role}"
    private, public = ensure_host_key(state)
    droplet = _find(client, name=name, tag=role_tag, state=state)
    if droplet is None:
        fingerprint = client.ensure_key(settings["provision_ssh_key_name"],
                                        public_half(key).read_text())
        progress(f"creating droplet {name} in {settings['provision_region']}")
        try:
            droplet = client.create({
                "name": name, "region": settings["provision_region"],
                "size": settings["provision_size"], "image": settings["provision_image"],
                "ssh_keys": [fingerprint], "tags": [*settings["provision_tags"], role_tag],
                "user_data": user_data(private, public), "monitoring": True,
            })
        except PhoenixError as exc:
            droplet = _find(client, name=name, tag=role_tag, state=state)
            if droplet is None:
                raise PhoenixError(f"{exc} (no droplet {name} was made; run "
                                   "`phoenix provision` again)") from None
            progress(f"the answer to the create was lost, but droplet {name} "
                     f"({droplet['id']}) exists: using it")
        state.data["droplet"] = {"id": droplet["id"], "name": name, "ip": None}
        state.save()  # a crash from here on finds this droplet again
    else:
        progress(f"droplet {name} ({droplet['id']}) exists already; reusing it")
    wait = waiter(progress)
    droplet = client.wait_active(droplet["id"], timeout=settings["provision_timeout"],
                                 progress=lambda s: wait(f"droplet {name} is {s}"))
    ip = public_ip(droplet)
    assert ip, "wait_active returns only a droplet with a public address"
    state.known_hosts.write_text(known_hosts_line(ip, public))
    state.data["droplet"] = {"id": droplet["id"], "name": name, "ip": ip,
                             "region": settings["provision_region"]}
    state.data["ssh_key"] = str(key)
    state.save()
    if check_ssh:
        wait_ssh(target(state), timeout=settings["provision_timeout"], progress=wait)
    return state.data["droplet"]


def _find(client: DO, *, name: str, tag: str, state: State) -> dict | None:
    found = [d for d in client.droplets(tag=tag) if d["name"] == name]
    if len(found) > 1:
        ids = ", ".join(str(d["id"]) for d in found)
        raise PhoenixError(f"more than one droplet is named {name} with tag {tag} ({ids}); "
                           "destroy the extra ones first")
    return found[0] if found else None


def target(state: State) -> Target:
    if not state.address:
        raise PhoenixError(f"no {state.role} droplet in {state.path}; run `phoenix provision`")
    return Target(host=state.address, key=Path(state.data["ssh_key"]),
                  known_hosts=state.known_hosts)


def wait_ssh(t: Target, *, timeout: float, progress: Progress) -> None:
    """Until sshd answers with the pinned key: strict checking, so a wrong host is refused."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(ssh_command(t, "true"), capture_output=True, text=True,
                              timeout=30)
        if proc.returncode == 0:
            return
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else last
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr or \
                "Host key verification failed" in proc.stderr:
            raise PhoenixError(f"{t.host} answered with a host key other than the pinned one "
                               f"({t.known_hosts}); refusing to connect")
        progress(f"waiting for sshd on {t.host}")
        time.sleep(1)
    raise PhoenixError(f"sshd on {t.host} did not answer within {timeout:.0f} s ({last})")
