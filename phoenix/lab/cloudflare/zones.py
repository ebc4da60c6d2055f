"""The lab's Cloudflare account: the zones and DNS records, and the rules Cloudflare applies
to them. The HTTP side is `api.py`.

`Zones` is the in-memory record store (thread-safe, optionally saved to a JSON file after
each change); the API server and the lab's DNS server (`dnsserver.py`) both read it, so a
change made through the API is what a DNS query answers next. Behaviour copied from
Cloudflare because clients depend on it: ttl 1 ("automatic") forced on proxied records, 404
code 81044 for a missing record.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "NS")
PROXIABLE = ("A", "AAAA", "CNAME")
# What public DNS answers for a proxied name: Cloudflare's anycast edge (addresses from its
# published 104.16.0.0/13), never the origin in the record's content. Only ever answered in
# DNS by the lab; nothing connects to them.
EDGE_V4 = ("104.16.132.229", "104.16.133.229")
EDGE_V6 = ("2606:4700::6810:84e5", "2606:4700::6810:85e5")  # from its 2606:4700::/32
FIELDS = ("name", "type", "content", "ttl", "proxied", "comment", "tags")


class CFError(Exception):
    """An answer Cloudflare would give instead of a result."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fqdn(name: str) -> str:
    return name.strip().rstrip(".").lower()


def in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


class Zones:
    """Zones and their records. Every method returns copies, so callers cannot bypass the lock.

    Shape of a zone: {"id", "name", "status", ...}; of a record: the Cloudflare record JSON
    (id, zone_id, zone_name, name, type, content, proxied, proxiable, ttl, comment, tags,
    created_on, modified_on). With a `path`, the store is written there after every change;
    `Zones(seed, path=p)` starts over from `seed`, `Zones.load(p)` carries on from the file.
    """

    def __init__(
        self, zones: dict[str, list[dict]] | None = None, *, path: Path | None = None
    ) -> None:
        self._lock = threading.RLock()
        self._zones: dict[str, dict] = {}  # zone id -> zone
        self._records: dict[str, dict[str, dict]] = {}  # zone id -> record id -> record
        self.path = None  # no saving while seeding
        for name, records in (zones or {}).items():
            zone = self.add_zone(name)
            for record in records:
                self.create(zone["id"], record)
        self.path = path
        if path is not None:
            self.save()

    # Persistence -------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> Zones:
        """The store saved at `path` (empty if there is none yet), saving back after changes."""
        store = cls()
        if path.exists():
            data = json.loads(path.read_text())
            for zone in data["zones"]:
                # The zone object is rebuilt in this version's shape (its id follows from its
                # name), so a file written by an older lab cannot serve fields the SDK lacks.
                fresh = store.add_zone(zone["name"])
                for stamp in ("created_on", "modified_on", "activated_on"):
                    if stamp in zone:
                        store._zones[fresh["id"]][stamp] = zone[stamp]
                store._records[fresh["id"]] = {r["id"]: r for r in zone["records"]}
        store.path = path
        return store

    def save(self, path: Path | None = None) -> None:
        target = path or self.path
        if target is None:
            raise ValueError("no path to save the zones to")
        with self._lock:
            data = {
                "zones": [
                    dict(zone, records=list(self._records[zid].values()))
                    for zid, zone in self._zones.items()
                ]
            }
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, target)  # a crash never leaves half a file

    def _changed(self) -> None:
        if self.path is not None:
            self.save()

    # Zones -------------------------------------------------------------------------------

    def add_zone(self, name: str) -> dict:
        name = fqdn(name)
        # The id is derived from the name, so a re-seeded lab keeps the same zone ids.
        zone_id = hashlib.md5(name.encode()).hexdigest()
        with self._lock:
            if zone_id not in self._zones:
                now = _now()
                self._zones[zone_id] = {
                    "id": zone_id,
                    "name": name,
                    "status": "active",
                    "paused": False,
                    "type": "full",
                    "development_mode": 0,
                    "name_servers": ["ns1.lab.phoenix.invalid", "ns2.lab.phoenix.invalid"],
                    "original_name_servers": None,
                    "account": {"id": "lab", "name": "lab"},
                    "owner": {"id": None, "type": "user", "name": None},
                    "plan": {"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website"},
                    "meta": {},
                    "permissions": ["#dns_records:edit", "#zone:read"],
                    "created_on": now,
                    "modified_on": now,
                    "activated_on": now,
                }
                self._records[zone_id] = {}
                self._changed()
            return dict(self._zones[zone_id])

    def zone_list(self) -> list[dict]:
        with self._lock:
            return [dict(z) for z in self._zones.values()]

    def zone(self, zone_id: str) -> dict:
        with self._lock:
            if zone_id not in self._zones:
                raise CFError(
                    404,
                    7003,
                    f"Could not route to /zones/{zone_id}, perhaps your "
                    "object identifier is invalid?",
                )
            return dict(self._zones[zone_id])

    def find_zone(self, name: str) -> dict | None:
        """The zone `name` belongs to: the longest zone name it ends with."""
        name = fqdn(name)
        with self._lock:
            matches = [z for z in self._zones.values() if in_zone(name, z["name"])]
            return dict(max(matches, key=lambda z: len(z["name"]))) if matches else None

    # Records -----------------------------------------------------------------------------

    def records(self, zone_id: str) -> list[dict]:
        with self._lock:
            self.zone(zone_id)
            return [_copy(r) for r in self._records[zone_id].values()]

    def record(self, zone_id: str, record_id: str) -> dict:
        with self._lock:
            self.zone(zone_id)
            record = self._records[zone_id].get(record_id)
            if record is None:
                raise CFError(404, 81044, "Record does not exist.")
            return _copy(record)

    def lookup(self, name: str) -> tuple[dict, list[dict]] | None:
        """(zone, records named `name`) for the DNS server; None when no zone holds the name."""
        name = fqdn(name)
        with self._lock:
            zone = self.find_zone(name)
            if zone is None:
                return None
            return zone, [_copy(r) for r in self._records[zone["id"]].values() if r["name"] == name]

    def create(self, zone_id: str, fields: Any) -> dict:
        with self._lock:
            zone = self.zone(zone_id)
            now = _now()
            record = {
                "id": uuid.uuid4().hex,
                "zone_id": zone_id,
                "zone_name": zone["name"],
                "ttl": 1,
                "proxied": False,
                "comment": None,
                "tags": [],
                "created_on": now,
                "modified_on": now,
            }
            self._write(zone, record, fields, required=("name", "type", "content"))
            return _copy(record)

    def update(self, zone_id: str, record_id: str, fields: Any, *, replace: bool) -> dict:
        """PATCH (`replace=False`: change the given fields) or PUT (overwrite the record)."""
        with self._lock:
            zone = self.zone(zone_id)
            record = _copy(self._records[zone_id].get(record_id) or {})
            if not record:
                raise CFError(404, 81044, "Record does not exist.")
            if replace:
                record.update(ttl=1, proxied=False, comment=None, tags=[])
            record["modified_on"] = _now()
            self._write(
                zone, record, fields, required=("name", "type", "content") if replace else ()
            )
            return _copy(record)

    def delete(self, zone_id: str, record_id: str) -> None:
        with self._lock:
            self.record(zone_id, record_id)
            del self._records[zone_id][record_id]
            self._changed()

    def _write(self, zone: dict, record: dict, fields: Any, *, required: tuple) -> None:
        """Validate `fields` over `record` as Cloudflare does, then store the result."""
        if not isinstance(fields, dict):
            raise CFError(400, 9207, "Request body is invalid.")
        missing = [key for key in required if fields.get(key) in (None, "")]
        if missing:
            raise CFError(400, 1004, f"DNS Validation Error: {', '.join(missing)} required")
        record.update({k: fields[k] for k in FIELDS if k in fields and fields[k] is not None})
        if not isinstance(record.get("name"), str) or not record["name"].strip():
            raise CFError(400, 1004, "DNS Validation Error: DNS name is invalid.")
        name = fqdn(record["name"])
        if name == "@":
            name = zone["name"]
        elif not in_zone(name, zone["name"]):
            name = f"{name}.{zone['name']}"  # Cloudflare reads a bare label as zone-relative
        rtype, content, ttl = record.get("type"), record.get("content"), record.get("ttl")
        if rtype not in TYPES:
            raise CFError(400, 1004, f"DNS Validation Error: type must be one of {TYPES}")
        if not isinstance(content, str) or not content:
            raise CFError(400, 1004, "DNS Validation Error: content is required")
        if rtype == "A" and not _is_ip(content, 4):
            raise CFError(400, 9005, "Content for A record must be a valid IPv4 address.")
        if rtype == "AAAA" and not _is_ip(content, 6):
            raise CFError(400, 9005, "Content for AAAA record must be a valid IPv6 address.")
        if type(ttl) is not int or not (ttl == 1 or 60 <= ttl <= 86400):
            raise CFError(
                400, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic."
            )
        if type(record["proxied"]) is not bool:
            raise CFError(400, 9003, "Invalid 'proxied' value, must be a boolean")
        if record["proxied"] and rtype not in PROXIABLE:
            raise CFError(400, 9004, "This record type cannot be proxied.")
        for other in self._records[zone["id"]].values():
            if other["id"] == record["id"] or other["name"] != name:
                continue
            if other["type"] == rtype and other["content"] == content:
                raise CFError(400, 81058, "An identical record already exists.")
            if "CNAME" in (rtype, other["type"]):
                raise CFError(
                    400, 81053, "A CNAME record cannot share its name with another record."
                )
        record.update(
            name=name, proxiable=rtype in PROXIABLE, ttl=1 if record["proxied"] else ttl
        )  # proxied records are always auto
        self._records[zone["id"]][record["id"]] = record
        self._changed()


def _copy(record: dict) -> dict:
    return dict(record, tags=list(record.get("tags") or []))


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False
