"""The lab seen from a client: its endpoints and tokens, and SSH targets for its droplets."""

from __future__ import annotations

import shlex

from phoenix.errors import PhoenixError
from phoenix.lab.config import LabConfig
from phoenix.lab.objects import Ledger
from phoenix.sshconf import Target, known_hosts_line


def env_exports(config: LabConfig) -> str:
    """Exports for a shell; tokens are read from their files at eval time, never printed."""
    q = shlex.quote
    lines = {
        **{k: q(v) for k, v in config.to_env().items()},
        "DIGITALOCEAN_ENDPOINT": q(config.do_endpoint),
        "DIGITALOCEAN_TOKEN": f'"$(cat {q(str(config.do_token_file))})"',
        "CLOUDFLARE_BASE_URL": q(config.cf_base_url),
        "CLOUDFLARE_API_TOKEN": f'"$(cat {q(str(config.cf_token_file))})"',
        "PHOENIX_SSH_KEY": q(str(config.ssh_key)),
        "PHOENIX_DNS_RESOLVER": q(f"{config.bridge_ip}:{config.dns_port}"),
        "PHOENIX_ARTIFACTS": q(config.artifact_url),
        "PHOENIX_SECRETS_DIR": q(str(config.state_dir / "secrets")),
    }
    return "\n".join(f"export {k}={v}" for k, v in lines.items())


def droplet_record(config: LabConfig, name_or_id: str) -> dict:
    droplets = Ledger(config.objects_file).read()["droplets"].values() \
        if config.objects_file.exists() else []
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
