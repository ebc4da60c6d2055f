"""The reserved IPs of the lab's DigitalOcean account: a pool of addresses, each reserved in a
region, assigned to a droplet (an action: it moves off its old droplet first) or not, and
released back to the pool, with the rules DigitalOcean applies (same region, one pending action
per address). Part of `account.Account`, which holds the state this reads.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Any

from phoenix.lab.do.actions import Actions
from phoenix.lab.do.drivers import Driver, Droplet
from phoenix.lab.do.shapes import PROJECT_ID, REGIONS, APIError, not_found, region_json


class ReservedIPs:
    """The reserved-IP half of an `Account` (which sets these attributes)."""

    driver: Driver
    actions: Actions
    _lock: threading.RLock
    _pool: list[str]
    _reserved: dict[str, dict]  # ip -> {"region", "droplet_id"}

    def droplet_json(self, d: Droplet) -> dict:
        raise NotImplementedError  # the Account's

    def _reserved_record(self, ip: str) -> dict:
        with self._lock:
            record = self._reserved.get(ip)
        if record is None:
            raise not_found()
        return record

    def reserved_ip(self, ip: str) -> dict:
        record = self._reserved_record(ip)
        droplet = None
        if record["droplet_id"] is not None:
            found = self.driver.get(record["droplet_id"])
            droplet = self.droplet_json(found) if found else None
        return {
            "ip": ip,
            "droplet": droplet,
            "region": region_json(record["region"]),
            "locked": self.actions.busy(("reserved_ip", ip)),
            "project_id": PROJECT_ID,
        }

    def reserved_ips(self) -> list[dict]:
        with self._lock:
            ips = list(self._reserved)
        return [self.reserved_ip(ip) for ip in ips]

    def reserve(self, *, droplet_id: Any = None, region: Any = None) -> tuple[str, dict | None]:
        """A reserved IP from the pool, in `region` or assigned to `droplet_id`: the address
        and the assign action, if any."""
        droplet = None
        if droplet_id is not None:
            droplet = self.assignable(droplet_id)
            region = droplet.region
        elif region not in REGIONS:
            raise APIError(
                422,
                f"Region {region!r} is not available; give a region "
                f"({', '.join(REGIONS)}) or a droplet_id.",
            )
        with self._lock:
            if not self._pool:
                raise APIError(
                    422,
                    "No reserved IP is left in the lab's pool; delete one "
                    "or start the lab with a larger pool.",
                )
            ip = self._pool.pop(0)
            self._reserved[ip] = {"region": region, "droplet_id": None}
        return ip, (self.assign(ip, droplet) if droplet is not None else None)

    def release(self, ip: str) -> None:
        record = self._reserved_record(ip)
        if self.actions.busy(("reserved_ip", ip)):
            raise APIError(422, "The reserved IP has a pending event; wait for it.")
        if record["droplet_id"] is not None:
            self.driver.remove_address(record["droplet_id"], ip)
        with self._lock:
            del self._reserved[ip]
            self._pool.append(ip)

    def assignable(self, droplet_id: Any) -> Droplet:
        try:
            droplet = self.driver.get(int(droplet_id))
        except (TypeError, ValueError):
            droplet = None
        if droplet is None:
            raise APIError(422, f"droplet_id {droplet_id!r}: no such droplet.")
        return droplet

    def assign(self, ip: str, droplet: Droplet) -> dict:
        record = self._reserved_record(ip)
        if droplet.region != record["region"]:
            raise APIError(
                422,
                f"Reserved IP {ip} is in {record['region']} and droplet "
                f"{droplet.id} in {droplet.region}: they must share a region.",
            )

        def work() -> None:  # moving an IP takes it off its current droplet first
            old = record["droplet_id"]
            if old == droplet.id:
                return
            if old is not None:
                self.driver.remove_address(old, ip)
                with self._lock:
                    record["droplet_id"] = None
            self.driver.add_address(droplet.id, ip)
            with self._lock:
                record["droplet_id"] = droplet.id

        return self.actions.start(
            "assign_ip",
            int(ipaddress.IPv4Address(ip)),
            "reserved_ip",
            record["region"],
            work,
            busy=("reserved_ip", ip),
        )

    def unassign(self, ip: str) -> dict:
        record = self._reserved_record(ip)
        if record["droplet_id"] is None:
            raise APIError(422, f"Reserved IP {ip} is not assigned to a droplet.")

        def work() -> None:
            if record["droplet_id"] is not None:
                self.driver.remove_address(record["droplet_id"], ip)
            with self._lock:
                record["droplet_id"] = None

        return self.actions.start(
            "unassign_ip",
            int(ipaddress.IPv4Address(ip)),
            "reserved_ip",
            record["region"],
            work,
            busy=("reserved_ip", ip),
        )
