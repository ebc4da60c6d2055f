"""The lab's apt proxy: an apt-cacher-ng instance of its own (config, port, cache folder).

Its Debian backend is the mirror in this machine's apt sources: the package's default
backend does not resolve here. A second install of a package is served from the cache.
"""

from __future__ import annotations

import socket
from pathlib import Path

from phoenix.errors import PhoenixError
from phoenix.lab import procs
from phoenix.lab.config import LabConfig
from phoenix.lab.objects import Ledger
from phoenix.lab.sh import run
from phoenix.poll import poll

NAME = "apt-cacher-ng"


def _conf(config: LabConfig) -> str:
    base = config.state_dir / "apt-cacher-ng"
    mirror = config.mirror.rstrip("/")
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    return "\n".join(
        [
            "# Written by phoenix lab: the lab's own apt proxy.",
            f"CacheDir: {base / 'cache'}",
            f"LogDir: {base / 'log'}",
            "SupportDir: /usr/lib/apt-cacher-ng",
            f"Port: {config.apt_port}",
            # Its own control socket: the packaged default is shared by every instance.
            f"SocketPath: {base / 'socket'}",
            f"BindAddress: {config.bridge_ip}",
            f"Remap-debrep: file:deb_mirror*.gz /debian ; {mirror}/",
            f"Remap-secdeb: security.debian.org deb.debian.org/debian-security ; {security}/",
            "ReportPage: acng-report.html",
            "ExThreshold: 4",
            "PassThroughPattern: ^$",
            "",
        ]
    )


def start(config: LabConfig, ledger: Ledger) -> None:
    record = ledger.read()["processes"].get(NAME)
    if record and procs.alive(record):
        return
    base = config.state_dir / "apt-cacher-ng"
    for sub in ("conf", "cache", "log"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    _share_cache(config, ledger, base / "cache")
    (base / "conf" / "acng.conf").write_text(_conf(config))
    ensure_port_free(config.bridge_ip, config.apt_port, "the apt proxy")
    procs.spawn(
        ledger,
        NAME,
        ["apt-cacher-ng", "-c", str(base / "conf"), "ForeGround=1"],
        log=base / "log" / "stdout.log",
    )
    wait_port(config.bridge_ip, config.apt_port, what="apt-cacher-ng", log=base / "log")


def _share_cache(config: LabConfig, ledger: Ledger, cache: Path) -> None:
    """A second lab reads the first lab's package cache through an overlay: what it fetches
    itself lands in its own upper layer, the shared cache is never written."""
    if config.share_from is None or cache.is_mount():
        return
    shared = config.share_from / "apt-cacher-ng" / "cache"
    if not shared.is_dir():
        return
    upper, work = cache.with_name("cache-upper"), cache.with_name("cache-work")
    upper.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    ledger.add("mounts", str(cache))
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={shared},upperdir={upper},workdir={work}",
            str(cache),
        ]
    )


def ensure_port_free(host: str, port: int, what: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PhoenixError(
                f"port {host}:{port} for {what} is already taken ({exc.strerror});"
                " free it or choose another with PHOENIX_LAB_*_PORT"
            ) from None


def wait_port(host: str, port: int, *, what: str, timeout: float = 15, log=None) -> None:
    def listening() -> bool | None:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return None

    poll(
        listening,
        timeout=timeout,
        what=f"{what} on {host}:{port}",
        interval=0.1,
        error=lambda: (
            f"{what} did not answer on {host}:{port} within {timeout:.0f} s"
            + (f"; see {log}" if log else "")
        ),
    )
