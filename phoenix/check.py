"""`phoenix check`: every problem a command would meet, found at once and before anything is
created or changed (a droplet billed, a record moved, a store written).

Each check reads: a file, a setting, a token through a read-only API call, the store through
`restic snapshots`. A command runs the checks it needs (`NEEDS`) as its first phase and stops
with every problem, one line each saying what to do, and exit code 3 (not configured).
What cannot be proven without a write is said, not pretended: DigitalOcean has no call that
shows a token's scopes, so a token that reads the account's keys and droplets passes, and its
write scope shows at the first create.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phoenix.context import current
from phoenix.errors import NotConfigured, PhoenixError

PLACEHOLDER = "CHANGE-ME"


@dataclass
class Inputs:
    """What the command was asked to do: its role, its restore source, how it cuts over."""

    command: str
    role: str = "recovery"
    source: str | None = None
    reserved_ip: bool = False
    cutover: bool = True
    settings: dict[str, Any] = field(default_factory=dict)


Check = Callable[[Inputs], list[str]]


# ---- settings ---------------------------------------------------------------------------------


def check_settings(inputs: Inputs) -> list[str]:
    """Override files name only settings all.py defines, with its types; no placeholder left."""
    from phoenix import settings as st

    base = st._group_file("all")
    found = []
    for group in st.groups(role=inputs.role)[1:]:
        if not (st.project() / "group_data" / f"{group}.py").exists():
            continue
        for key, value in st._group_file(group).items():
            if key not in base:
                found.append(
                    f"group_data/{group}.py sets {key!r}, which group_data/all.py "
                    "does not define: a typo? (every setting has its default there)"
                )
            elif not _same_type(base[key], value):
                found.append(
                    f"group_data/{group}.py sets {key} to {value!r} "
                    f"({type(value).__name__}), where all.py's default is "
                    f"{base[key]!r} ({type(base[key]).__name__})"
                )
    for key, value in sorted(inputs.settings.items()):
        if isinstance(value, str) and PLACEHOLDER in value:
            found.append(
                f"setting {key} is still {value!r}: set it in group_data "
                "(all.py, or the file of your PHOENIX_ENV)"
            )
    return found


def _same_type(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) == isinstance(value, bool)
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return True
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return True
    return isinstance(value, type(default))


# ---- secrets and keys -------------------------------------------------------------------------


def _secret(name: str, settings: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(value, None) or (None, what is wrong)."""
    from phoenix.secrets import read_secret

    try:
        return read_secret(name, folder=settings.get("secrets_dir")), None
    except PhoenixError as exc:
        return None, str(exc)


def needed_secrets(inputs: Inputs) -> list[str]:
    s = inputs.settings
    names = []
    repository = str(s.get("backup_repository") or "")
    if repository or _source(inputs).startswith("restic:"):
        names.append("restic_password")
    if repository.startswith("sftp:"):
        names.append("backup_ssh_key")
    elif repository.startswith("s3:"):
        names += ["backup_s3_access_key_id", "backup_s3_secret_access_key"]
    if s.get("litestream_replica_url"):
        names.append("litestream_ssh_key")
    if inputs.command == "recover":
        # the houses' model, API and webhook keys (the deploy), runbook step 9's API token
        names += [
            "hermes_model_api_key",
            "hermes_api_server_key",
            "hermes_webhook_secret",
            "gitea_api_token",
        ]
    return names


def check_secrets(inputs: Inputs) -> list[str]:
    found = []
    for name in needed_secrets(inputs):
        value, wrong = _secret(name, inputs.settings)
        if wrong:
            found.append(wrong)
        elif name.endswith("_ssh_key") and not _private_key(value or ""):
            found.append(
                f"secret {name} is not an OpenSSH private key (-----BEGIN OPENSSH "
                "PRIVATE KEY-----): give the key file's content, not its .pub"
            )
        elif name == "hermes_api_server_key" and len(value or "") < 16:
            found.append(
                "secret hermes_api_server_key is shorter than 16 characters: Hermes "
                "Agent's API server does not listen with it"
            )
        elif name == "gitea_api_token" and (len((value or "").split()) != 1):
            found.append(
                "secret gitea_api_token holds spaces or several words: give the token alone"
            )
    from phoenix.secrets import optional_secret

    for name in ("alert_url", "alert_replicas_url"):  # optional: the forge's pings
        try:
            value = optional_secret(name, folder=inputs.settings.get("secrets_dir"))
        except PhoenixError as exc:
            found.append(str(exc))
            continue
        if value and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            found.append(
                f"secret {name} is not an http(s) URL: give the ping URL alone "
                "(e.g. https://hc-ping.com/<uuid>)"
            )
    return found


def _private_key(text: str) -> bool:
    text = text.strip()
    return text.startswith("-----BEGIN ") and "PRIVATE KEY-----" in text.splitlines()[0]


def check_operator_key(inputs: Inputs) -> list[str]:
    path = current().ssh_key
    found = []
    if not path.is_file():
        return [
            f"the operator SSH key {path} is missing: set PHOENIX_SSH_KEY or make one "
            "(ssh-keygen -t ed25519)"
        ]
    if not Path(f"{path}.pub").is_file():
        found.append(
            f"{path}.pub is missing beside the operator's key: ssh-keygen -y -f {path} > {path}.pub"
        )
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        found.append(f"the operator SSH key {path} is readable by others: chmod 600 it")
    return found


def check_pinned_host(inputs: Inputs) -> list[str]:
    """A host named without a state file must come with its pinned key; a command that
    reaches today's forge (adopt, backup now) needs one of the two."""
    ctx = current()
    if not ctx.host:
        if inputs.command not in ("adopt", "backup now"):  # the two that reach the forge
            return []
        from phoenix.sshconf import role_target

        try:
            role_target(inputs.role)
        except PhoenixError as exc:
            return [str(exc)]
        return []
    known = ctx.known_hosts
    how = (
        f"ssh-keyscan -t ed25519 {ctx.host} > FILE, check its fingerprint out of band, "
        "then PHOENIX_KNOWN_HOSTS=FILE"
    )
    if known is None:
        return [f"PHOENIX_HOST={ctx.host} needs PHOENIX_KNOWN_HOSTS, its pinned host key: {how}"]
    if not known.is_file():
        return [f"PHOENIX_KNOWN_HOSTS {known} does not exist: {how}"]
    hosts = {
        word
        for line in known.read_text().splitlines()
        if line.strip() and not line.startswith("#")
        for word in line.split()[0].split(",")
    }
    if not ({ctx.host, f"[{ctx.host}]:22"} & hosts):
        return [f"PHOENIX_KNOWN_HOSTS {known} pins no key for {ctx.host}: {how}"]
    return []


def check_droplet(inputs: Inputs) -> list[str]:
    """A cutover moves traffic to the role's droplet: there must be one."""
    from phoenix.state import State

    state = State(inputs.role)
    if state.address or current().host:
        return []
    return [
        f"no {inputs.role} droplet in {state.path}: run `phoenix provision` (or `phoenix "
        "recover`, which makes it) first"
    ]


# ---- providers -------------------------------------------------------------------------------


def check_digitalocean(inputs: Inputs) -> list[str]:
    ctx = current()
    if not ctx.do_token:
        return [
            "no DigitalOcean token: set DIGITALOCEAN_TOKEN (or DIGITALOCEAN_ACCESS_TOKEN), "
            "a token with droplet, ssh_key, tag and reserved_ip read and write"
        ]
    from phoenix.provision.do import DO

    client = DO(token=ctx.do_token, endpoint=ctx.do_endpoint, retries=0)
    try:  # reads only: the keys provision registers, the droplets it looks among
        client.call("read the account's SSH keys", client.client.ssh_keys.list, per_page=1)
        client.droplets(tag="phoenix-check-read")
    except PhoenixError as exc:
        return [f"the DigitalOcean token does not work: {exc}"]
    return []


def check_cloudflare(inputs: Inputs) -> list[str]:
    # a recovery's certificate step may need DNS-01 through Cloudflare, whatever its cutover
    records = inputs.cutover and not inputs.reserved_ip
    if not records and inputs.command != "recover":
        return []
    ctx = current()
    if not ctx.cf_token.strip():
        return [
            "no Cloudflare token: set CLOUDFLARE_API_TOKEN (Zone:Read and DNS:Edit on "
            "the forge's zone)"
        ]
    from phoenix.cutover import dns

    client = dns.make_client(token=ctx.cf_token, base_url=ctx.cf_base_url, max_retries=0)
    try:
        status = dns.token_status(client)
    except PhoenixError as exc:
        return [str(exc)]
    if status != "active":
        return [f"the Cloudflare token is {status}, not active: make a new one"]
    found = []
    for name in inputs.settings.get("dns_records") or []:
        try:
            dns.find_a_record(client, name) if records else dns.zone_of(client, name)
        except PhoenixError as exc:
            found.append(f"DNS record {name}: {exc}")
    return found


# ---- the store and what to restore ------------------------------------------------------------


def check_store(inputs: Inputs) -> list[str]:
    s = inputs.settings
    if not s.get("backup_repository"):
        return [
            "backup_repository is not set (group_data): say where the offsite restic "
            "repository is, e.g. sftp:restic@store.example:/srv/restic/forge"
        ]
    found = []
    if str(s["backup_repository"]).startswith("sftp:"):
        from phoenix.backup.store import known_hosts_lines

        if not known_hosts_lines(s.get("backup_known_hosts")):
            found.append(
                "backup_known_hosts is empty: pin the store's host key (ssh-keyscan "
                "it once, check its fingerprint)"
            )
    if s.get("litestream_replica_url") and not s.get("litestream_known_hosts"):
        found.append("litestream_known_hosts is empty: pin the replica store's host key")
    return found


def check_timmy_config(inputs: Inputs) -> list[str]:
    """deploy.sh runs as root: from a pinned commit, or a tip signed by an allowed key."""
    from phoenix.configrepo import verification

    try:
        verification(inputs.settings)
    except NotConfigured as exc:
        return [str(exc)]
    return []


def _source(inputs: Inputs) -> str:
    return str(inputs.source or inputs.settings.get("restore_source") or "restic:latest")


def check_restore_source(inputs: Inputs) -> list[str]:
    source = _source(inputs)
    if source.startswith("restic:"):
        if check_store(inputs) or _secret("restic_password", inputs.settings)[1]:
            return []  # said by the store's and the secrets' checks
        from phoenix.backup import snapshots as backup
        from phoenix.backup.store import store_from_settings

        try:
            store = store_from_settings(inputs.settings)
            backup.resolve_snapshot(store, backup.restore_ref(source) or "latest")
        except PhoenixError as exc:
            return [f"restore source {source}: {exc}"]
        return []
    if source.startswith("forge:"):
        return (
            []
            if current().host
            else [
                f"restore source {source} reads the old forge: set PHOENIX_HOST (and "
                "PHOENIX_KNOWN_HOSTS) to it"
            ]
        )
    path = Path(source).expanduser()
    if not path.exists():
        return [
            f"restore source {path} does not exist: give restic:latest, restic:ID, a "
            "backup .tar.gz, a gitea dump .zip, or the runbook's backup folder or .db"
        ]
    if not os.access(path, os.R_OK):
        return [f"restore source {path} is not readable by this user"]
    return []


# ---- which command needs what -----------------------------------------------------------------

CHECKS: dict[str, Check] = {
    "settings": check_settings,
    "secrets": check_secrets,
    "operator SSH key": check_operator_key,
    "pinned host key": check_pinned_host,
    "droplet": check_droplet,
    "DigitalOcean": check_digitalocean,
    "Cloudflare": check_cloudflare,
    "store": check_store,
    "restore source": check_restore_source,
    "timmy-config": check_timmy_config,
}

NEEDS: dict[str, tuple[str, ...]] = {
    "recover": tuple(name for name in CHECKS if name != "droplet"),  # it makes the droplet
    "cutover": ("settings", "droplet", "pinned host key", "Cloudflare"),
    "adopt": ("settings", "secrets", "operator SSH key", "pinned host key", "store"),
    "provision": ("settings", "operator SSH key", "DigitalOcean"),
    "backup init": ("settings", "secrets", "store"),
    "backup store-setup": ("settings", "secrets", "operator SSH key", "store"),
    "backup prune": ("settings", "secrets", "store"),
    "backup now": ("settings", "secrets", "pinned host key", "store"),
}


def needs(inputs: Inputs) -> list[str]:
    names = list(NEEDS.get(inputs.command, tuple(CHECKS)))
    if inputs.command == "recover" and inputs.role == "standby":
        names.remove("DigitalOcean")  # a promotion provisions nothing
    if inputs.command == "cutover" and inputs.reserved_ip:
        names.append("DigitalOcean")
    return names


def problems(inputs: Inputs) -> list[str]:
    """Every problem the command would meet, one line each (empty: go)."""
    from phoenix.settings import load

    if not inputs.settings:
        try:
            inputs.settings = load(role=inputs.role)
        except NotConfigured as exc:
            return exc.problems  # one line each (a setting of the wrong type: each named)
        except PhoenixError as exc:
            return [str(exc)]
    found = []
    for name in needs(inputs):
        found += CHECKS[name](inputs)
    return found


def require(inputs: Inputs) -> None:
    """The command's first phase: NotConfigured with every problem, before anything is
    created or changed."""
    found = problems(inputs)
    if found:
        raise NotConfigured(
            f"{len(found)} problem(s) before `phoenix {inputs.command}` "
            "changes anything:\n  " + "\n  ".join(found),
            found,
        )
