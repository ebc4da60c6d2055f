"""The lab seen from a client: its endpoints and tokens, and SSH targets for its droplets."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import requests

from phoenix.errors import PhoenixError
from phoenix.lab.config import LabConfig
from phoenix.lab.httpd import FAULTS_PATH
from phoenix.lab.objects import Ledger
from phoenix.poll import poll
from phoenix.sshconf import Target, known_hosts_line


def client_environment(
    config: LabConfig, *, token: Callable[[Path], str] | None = None
) -> dict[str, str]:
    """What a client of the lab needs in its environment: the lab's own variables, the two
    APIs and their tokens (`token` gives each from its file; by default the token itself),
    the operator's SSH key and secrets folder."""
    read = token or (lambda path: path.read_text().strip())
    return {
        **config.to_env(),
        "DIGITALOCEAN_ENDPOINT": config.do_endpoint,
        "DIGITALOCEAN_TOKEN": read(config.do_token_file),
        "CLOUDFLARE_BASE_URL": config.cf_base_url,
        "CLOUDFLARE_API_TOKEN": read(config.cf_token_file),
        "PHOENIX_SSH_KEY": str(config.ssh_key),
        "PHOENIX_SECRETS_DIR": str(config.state_dir / "secrets"),
    }


def env_exports(config: LabConfig) -> str:
    """Exports for a shell; tokens are read from their files at eval time, never printed."""
    q = shlex.quote
    tokens = ("DIGITALOCEAN_TOKEN", "CLOUDFLARE_API_TOKEN")  # shell words, already quoted
    values = client_environment(config, token=lambda path: f'"$(cat {q(str(path))})"')
    return "\n".join(f"export {k}={v if k in tokens else q(v)}" for k, v in values.items())


def droplet_record(config: LabConfig, name_or_id: str) -> dict:
    droplets = (
        Ledger(config.objects_file).read()["droplets"].values()
        if config.objects_file.exists()
        else []
    )
    for record in droplets:
        if record["name"] == name_or_id or str(record["id"]) == name_or_id:
            return record
    raise PhoenixError(f"no lab droplet named {name_or_id}; see `phoenix lab status`")


def droplet_target(config: LabConfig, name_or_id: str) -> Target:
    """A Target pinned to the host key on the droplet's own disk (read from outside it)."""
    record = droplet_record(config, name_or_id)
    root = config.droplets_dir / str(record["id"]) / "root"
    keys = sorted((root / "etc/ssh").glob("ssh_host_*_key.pub"))
    if not keys:
        raise PhoenixError(f"droplet {record['name']} has no SSH host key yet")
    known = config.droplets_dir / str(record["id"]) / "known_hosts"
    known.write_text("".join(known_hosts_line(record["ip"], k.read_text()) for k in keys))
    return Target(host=record["ip"], key=config.ssh_key, known_hosts=known)


def faults(
    config: LabConfig, api: str, *, add: dict | None = None, clear: bool = False
) -> list[dict]:
    """The fault switch of the lab server's `api` ("do" or "cf"): add a fault (the fields
    of `phoenix.lab.httpd.Fault`) or clear them all; returns the faults and their hits."""
    port, token_file = {
        "do": (config.do_port, config.do_token_file),
        "cf": (config.cf_port, config.cf_token_file),
    }[api]
    url = config.url(port, FAULTS_PATH)
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    method = "DELETE" if clear else "POST" if add is not None else "GET"
    answer = requests.request(method, url, json=add, headers=headers, timeout=10)
    if answer.status_code != 200:
        raise PhoenixError(
            f"the lab's {api} fault switch answered {answer.status_code}: {answer.text.strip()}"
        )
    return answer.json()["faults"]


def action_faults(
    config: LabConfig, *, fail: str | None = None, count: int = 1, clear: bool = False
) -> list[dict]:
    """The lab DigitalOcean's action fault switch: the next `count` droplet actions of type
    `fail` (e.g. power_off) are accepted and then error, the droplet unchanged; or clear
    them all. Returns the switch's entries and their hits."""
    from phoenix.lab.do.api import ACTION_FAULTS_PATH

    url = config.url(config.do_port, ACTION_FAULTS_PATH)
    headers = {"Authorization": f"Bearer {config.do_token_file.read_text().strip()}"}
    body = None if clear else {"type": fail, "count": count}
    answer = requests.request(
        "DELETE" if clear else "POST", url, json=body, headers=headers, timeout=10
    )
    if answer.status_code != 200:
        raise PhoenixError(
            f"the lab's do action fault switch answered {answer.status_code}: {answer.text.strip()}"
        )
    return answer.json()["faults"]


def certificate(config: LabConfig, target: Target) -> str:
    """The certificate step of `phoenix recover` for a lab droplet converged by hand: the
    backup's if it has one, else DNS-01 through the lab's Cloudflare, DNS left as it is."""
    from phoenix.cutover import dns
    from phoenix.forge.caddycert import ensure
    from phoenix.settings import load

    cf = dns.make_client(
        token=config.cf_token_file.read_text().strip(), base_url=config.cf_base_url
    )
    return ensure(load("lab"), target, cf=cf, say=lambda _: None)


def wait_https(settings: dict, ip: str, *, timeout: float = 90) -> str:
    """Until the forge at `ip` answers /api/v1/version over TLS for its name, with a
    certificate from the trusted CA (Caddy's first certificate takes a few seconds)."""
    from phoenix.forge.api import Forge

    forge = Forge.of(settings, address=ip)
    last: list[str] = []

    def answer() -> str | None:
        try:
            return forge.version()
        except PhoenixError as exc:
            last[:] = [str(exc)]
            return None

    return poll(
        answer,
        timeout=timeout,
        what=f"valid HTTPS at {ip}",
        error=lambda: f"no valid HTTPS at {ip} after {timeout:.0f} s: {last[0]}",
    )
