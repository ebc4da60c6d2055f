"""Where the lab lives and which addresses and ports it uses.

Every value can be overridden from the environment (PHOENIX_LAB_*), so two labs or a lab on a
machine whose networks differ can be configured without touching the code. This is the one
module of the lab that reads the process environment (the stand-in Gitea program aside, which
reads its own as Gitea does): the rest of the lab gets a LabConfig, or the environment of a
process it starts from `child_environment()`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabConfig:
    state_dir: Path
    subnet: ipaddress.IPv4Network
    bridge: str
    do_port: int
    cf_port: int
    artifact_port: int
    apt_port: int
    dns_port: int
    mirror: str
    tag: str  # prefix of the lab's namespaces and veths: two labs can run side by side
    # Another lab's state folder whose image and apt cache this lab reads (never writes).
    share_from: Path | None = None
    # The offsite store the lab's group_data points the forge at (phoenix.lab.offsite).
    offsite: str = "offsite-1"  # DEFAULT_OFFSITE

    @property
    def bridge_ip(self) -> str:
        return str(next(self.subnet.hosts()))

    def url(self, port: int, path: str = "") -> str:
        """The address of one of the lab's services: each listens on the bridge."""
        return f"http://{self.bridge_ip}:{port}{path}"

    @property
    def do_endpoint(self) -> str:
        return self.url(self.do_port)

    @property
    def cf_base_url(self) -> str:
        return self.url(self.cf_port, "/client/v4")

    @property
    def artifact_url(self) -> str:
        return self.url(self.artifact_port)

    @property
    def apt_proxy(self) -> str:
        return self.url(self.apt_port)

    def to_env(self) -> dict[str, str]:
        """The PHOENIX_LAB_* variables that make `load()` give this same lab again (for the
        lab's own server process, and `phoenix lab env`)."""
        return {
            "PHOENIX_LAB_TAG": self.tag,
            "PHOENIX_LAB_DIR": str(self.state_dir),
            "PHOENIX_LAB_SUBNET": str(self.subnet),
            "PHOENIX_LAB_BRIDGE": self.bridge,
            "PHOENIX_LAB_DO_PORT": str(self.do_port),
            "PHOENIX_LAB_CF_PORT": str(self.cf_port),
            "PHOENIX_LAB_ARTIFACT_PORT": str(self.artifact_port),
            "PHOENIX_LAB_APT_PORT": str(self.apt_port),
            "PHOENIX_LAB_DNS_PORT": str(self.dns_port),
            "PHOENIX_LAB_MIRROR": self.mirror,
            "PHOENIX_LAB_SHARE_FROM": str(self.share_from or "none"),
            "PHOENIX_LAB_OFFSITE": self.offsite,
        }

    # Files inside the state folder: one place names them all.
    @property
    def objects_file(self) -> Path:
        return self.state_dir / "objects.json"

    @property
    def do_token_file(self) -> Path:
        return self.state_dir / "secrets" / "do-token"

    @property
    def cf_token_file(self) -> Path:
        return self.state_dir / "secrets" / "cf-token"

    @property
    def ssh_key(self) -> Path:
        return self.state_dir / "secrets" / "id_ed25519"

    @property
    def image_dir(self) -> Path:
        return self.state_dir / "image"

    @property
    def droplets_dir(self) -> Path:
        return self.state_dir / "droplets"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"


def host_mirror() -> str:
    """The Debian mirror in this machine's own apt sources (the one that resolves here)."""
    candidates = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            for word in words:
                if word.startswith("http") and "/debian" in word and "security" not in word:
                    return word.rstrip("/")
    return "http://deb.debian.org/debian"


DEFAULT_TAG = "phx"
DEFAULT_OFFSITE = "offsite-1"


def load(environ: Mapping[str, str] | None = None) -> LabConfig:
    """The lab's settings. The tag names the lab: its bridge, namespaces, veths and (for any
    tag but the default) its state folder all derive from it, so `PHOENIX_LAB_TAG` plus a
    subnet and ports of its own are enough for a second lab that never touches the first."""
    env = os.environ if environ is None else environ
    tag = env.get("PHOENIX_LAB_TAG", DEFAULT_TAG)
    if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", tag):
        raise ValueError(
            f"PHOENIX_LAB_TAG {tag!r}: 1-8 lowercase letters and digits, "
            "starting with a letter (it prefixes interface names)"
        )
    default_dir = "/var/lib/phoenix-lab" + ("" if tag == DEFAULT_TAG else f"-{tag}")
    return LabConfig(
        state_dir=Path(env.get("PHOENIX_LAB_DIR", default_dir)),
        subnet=ipaddress.IPv4Network(env.get("PHOENIX_LAB_SUBNET", "10.213.77.0/24")),
        bridge=env.get("PHOENIX_LAB_BRIDGE", f"{tag}-br0"),
        do_port=int(env.get("PHOENIX_LAB_DO_PORT", "8780")),
        cf_port=int(env.get("PHOENIX_LAB_CF_PORT", "8781")),
        artifact_port=int(env.get("PHOENIX_LAB_ARTIFACT_PORT", "8782")),
        apt_port=int(env.get("PHOENIX_LAB_APT_PORT", "3142")),
        dns_port=int(env.get("PHOENIX_LAB_DNS_PORT", "53")),
        mirror=env.get("PHOENIX_LAB_MIRROR") or host_mirror(),
        tag=tag,
        share_from=_share_from(env, tag, default_dir),
        offsite=env.get("PHOENIX_LAB_OFFSITE") or DEFAULT_OFFSITE,
    )


def _share_from(env, tag: str, own_dir: str) -> Path | None:
    """A second lab reads the default lab's caches (image, packages) unless told otherwise
    (PHOENIX_LAB_SHARE_FROM=none, or another lab's folder)."""
    value = env.get("PHOENIX_LAB_SHARE_FROM")
    if value is None:
        value = "" if tag == DEFAULT_TAG else "/var/lib/phoenix-lab"
    if value.lower() in ("", "none") or Path(value) == Path(env.get("PHOENIX_LAB_DIR", own_dir)):
        return None
    return Path(value)


def wheelhouse_cache() -> Path:
    """The wheel cache shared by every lab on this machine (phoenix.lab.wheelhouse)."""
    return Path(os.environ.get("PHOENIX_LAB_WHEELHOUSE_CACHE", "/var/cache/phoenix-lab/wheelhouse"))


def inventory_droplets() -> list[str]:
    """The droplets `inventories/lab.py` lists: PHOENIX_LAB_DROPLETS, names or ids, commas."""
    return [n.strip() for n in os.environ.get("PHOENIX_LAB_DROPLETS", "").split(",") if n.strip()]


def child_environment(
    extra: Mapping[str, str] | None = None, *, drop_prefix: str | None = None
) -> dict[str, str]:
    """The environment of a process the lab starts: this process's own, less the variables
    that start with `drop_prefix`, plus `extra`."""
    env = {
        k: v for k, v in os.environ.items() if drop_prefix is None or not k.startswith(drop_prefix)
    }
    return {**env, **(extra or {})}
