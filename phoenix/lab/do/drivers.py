"""What backs the lab's DigitalOcean API: a droplet driver.

Two drivers share this interface: `MemoryDriver` (no root, for unit tests: droplets are
records that become active after a few polls) and `phoenix.lab.nspawn.NspawnDriver` (real
Debian 12 hosts booted with systemd-nspawn). The API server only ever talks to a driver.
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Droplet:
    id: int
    name: str
    region: str
    size: str
    image: str
    tags: list[str]
    status: str  # "new" | "active" | "off"
    ip: str | None = None
    extra_ips: list[str] = field(default_factory=list)  # reserved IPs assigned to it
    created_at: str = "1970-01-01T00:00:00Z"


class DriverError(Exception):
    """The driver could not do what was asked; the API answers 422 with this message."""


class Driver(Protocol):
    def create(
        self,
        *,
        name: str,
        region: str,
        size: str,
        image: str,
        tags: list[str],
        ssh_keys: list[str],
        user_data: str | None,
    ) -> Droplet:
        """Start creating a droplet; `ssh_keys` are public keys (OpenSSH lines)."""

    def get(self, droplet_id: int) -> Droplet | None: ...

    def list(self) -> list[Droplet]: ...

    def destroy(self, droplet_id: int) -> None: ...

    def power_off(self, droplet_id: int) -> None: ...

    def power_on(self, droplet_id: int) -> None: ...

    def add_address(self, droplet_id: int, ip: str) -> None:
        """Make `ip` (a reserved IP) answer on the droplet."""

    def remove_address(self, droplet_id: int, ip: str) -> None: ...


class MemoryDriver:
    """Droplets as records only. A new droplet turns active after `polls_to_active` gets."""

    def __init__(self, *, subnet: str = "10.213.78.0/24", polls_to_active: int = 1) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1001)
        self._hosts = ipaddress.IPv4Network(subnet).hosts()
        next(self._hosts)  # .1 is the gateway
        self._droplets: dict[int, Droplet] = {}
        self._polls: dict[int, int] = {}
        self.polls_to_active = polls_to_active

    def create(self, *, name, region, size, image, tags, ssh_keys, user_data) -> Droplet:
        with self._lock:
            droplet = Droplet(
                id=next(self._ids),
                name=name,
                region=region,
                size=size,
                image=image,
                tags=list(tags),
                status="new",
            )
            self._droplets[droplet.id] = droplet
            self._polls[droplet.id] = 0
            return droplet

    def get(self, droplet_id: int) -> Droplet | None:
        with self._lock:
            droplet = self._droplets.get(droplet_id)
            if droplet is not None and droplet.status == "new":
                self._polls[droplet_id] += 1
                if self._polls[droplet_id] >= self.polls_to_active:
                    droplet.status = "active"
                    droplet.ip = str(next(self._hosts))
            return droplet

    def list(self) -> list[Droplet]:
        with self._lock:
            return list(self._droplets.values())

    def destroy(self, droplet_id: int) -> None:
        with self._lock:
            if self._droplets.pop(droplet_id, None) is None:
                raise DriverError(f"droplet {droplet_id} does not exist")

    def _set(self, droplet_id: int, status: str) -> None:
        with self._lock:
            droplet = self._droplets.get(droplet_id)
            if droplet is None:
                raise DriverError(f"droplet {droplet_id} does not exist")
            droplet.status = status

    def power_off(self, droplet_id: int) -> None:
        self._set(droplet_id, "off")

    def power_on(self, droplet_id: int) -> None:
        self._set(droplet_id, "active")

    def add_address(self, droplet_id: int, ip: str) -> None:
        with self._lock:
            self._droplets[droplet_id].extra_ips.append(ip)

    def remove_address(self, droplet_id: int, ip: str) -> None:
        with self._lock:
            droplet = self._droplets.get(droplet_id)
            if droplet is not None and ip in droplet.extra_ips:
                droplet.extra_ips.remove(ip)
