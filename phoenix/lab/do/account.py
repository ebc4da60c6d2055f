"""The lab's DigitalOcean account: what DigitalOcean keeps besides the droplets' machines.

Account keys, droplets (their machines live in a `Driver`: memory records for unit tests,
nspawn containers in the lab), reserved IPs and tags, with the rules DigitalOcean applies to
them (names, regions, sizes, key formats, one pending action per resource). Everything comes
back in DigitalOcean's JSON shapes; a broken rule raises `APIError` with the status DigitalOcean
answers. `api.py` serves this account over HTTP.
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
from collections.abc import Iterable
from typing import Any

from phoenix.lab.do.actions import Actions
from phoenix.lab.do.drivers import Driver, Droplet
from phoenix.lab.do.reserved import ReservedIPs
from phoenix.lab.do.shapes import (
    HOSTNAME,
    IMAGES,
    KEY_TYPES,
    REGIONS,
    SIZES,
    TAG,
    APIError,
    image_json,
    key_blob,
    md5_fingerprint,
    not_found,
    region_json,
    size_json,
)


class Account(ReservedIPs):
    """One DigitalOcean account over `driver`.

    `reserved_ips` is the pool reserved IPs are handed out from (addresses, or one CIDR string).
    `network` is the droplets' subnet, which gives their netmask and gateway; without it each
    address is taken to be in a /24 whose first host is the gateway. Every method returns
    copies, so callers cannot bypass the lock.
    """

    def __init__(
        self, driver: Driver, *, reserved_ips: Iterable[str] | str = (), network: str | None = None
    ) -> None:
        self.driver = driver
        if isinstance(reserved_ips, str):
            reserved_ips = [str(ip) for ip in ipaddress.IPv4Network(reserved_ips).hosts()]
        self._pool = list(reserved_ips)
        self._network = ipaddress.IPv4Network(network) if network else None
        self._lock = threading.RLock()
        self.actions = Actions(driver)
        self._key_ids = itertools.count(41_000_001)
        self._keys: dict[int, dict] = {}
        self._reserved: dict[str, dict] = {}  # ip -> {"region", "droplet_id"}
        self._tags: dict[str, None] = {}

    # -- account keys -----------------------------------------------------------------------

    def key(self, ident: str) -> dict:
        """The key whose id or fingerprint is `ident`."""
        with self._lock:
            for key in self._keys.values():
                if ident in (str(key["id"]), key["fingerprint"]):
                    return dict(key)
        raise not_found()

    def keys(self) -> list[dict]:
        with self._lock:
            return [dict(k) for k in self._keys.values()]

    def add_key(self, name: Any, public_key: str) -> dict:
        if not name:
            raise APIError(422, "Name is required.")
        fingerprint = md5_fingerprint(public_key)
        with self._lock:
            if any(k["fingerprint"] == fingerprint for k in self._keys.values()):
                raise APIError(422, "SSH Key is already in use on your account")
            key = {
                "id": next(self._key_ids),
                "fingerprint": fingerprint,
                "public_key": public_key,
                "name": name,
            }
            self._keys[key["id"]] = key
            return dict(key)

    def delete_key(self, ident: str) -> None:
        key = self.key(ident)
        with self._lock:
            self._keys.pop(key["id"], None)

    def public_keys(self, refs: Any) -> list[str]:
        """Account key ids, fingerprints or public keys -> the public key lines."""
        if not isinstance(refs, list):
            raise APIError(422, "ssh_keys must be a list of key ids or fingerprints.")
        lines: list[str] = []
        for ref in refs:
            text = str(ref).strip()
            if text.split(" ", 1)[0] in KEY_TYPES:
                key_blob(text)
                line = text
            else:
                try:
                    line = self.key(text)["public_key"]
                except APIError:
                    raise APIError(
                        422,
                        f"ssh_keys: no key {text!r} on this account; "
                        "register it with POST /v2/account/keys",
                    ) from None
            if line not in lines:
                lines.append(line)
        return lines

    # -- droplets ---------------------------------------------------------------------------

    def droplet(self, droplet_id: int | str) -> Droplet:
        droplet = self.driver.get(int(droplet_id))
        if droplet is None:
            raise not_found()
        return droplet

    def _v4(self, ip: str) -> dict:
        net = self._network
        if net is None or ipaddress.IPv4Address(ip) not in net:
            net = ipaddress.IPv4Network(f"{ip}/24", strict=False)
        return {
            "ip_address": ip,
            "netmask": str(net.netmask),
            "gateway": str(next(net.hosts())),
            "type": "public",
        }

    def droplet_json(self, d: Droplet) -> dict:
        addresses = ([d.ip] if d.ip else []) + [ip for ip in d.extra_ips if ip != d.ip]
        size = size_json(d.size)
        locked = self.actions.busy(("droplet", d.id))
        return {
            "id": d.id,
            "name": d.name,
            "status": d.status,
            "locked": locked,
            "memory": size["memory"],
            "vcpus": size["vcpus"],
            "disk": size["disk"],
            "created_at": d.created_at,
            "region": region_json(d.region),
            "image": image_json(d.image),
            "size": size,
            "size_slug": d.size,
            "tags": list(d.tags),
            "features": [],
            "backup_ids": [],
            "snapshot_ids": [],
            "volume_ids": [],
            "kernel": None,
            "next_backup_window": None,
            "networks": {"v4": [self._v4(ip) for ip in addresses], "v6": []},
        }

    def droplets(self, *, tag: str | None = None, name: str | None = None) -> list[dict]:
        found = sorted(self.driver.list(), key=lambda d: d.id)
        return [
            self.droplet_json(d)
            for d in found
            if (tag is None or tag in d.tags) and (name is None or d.name == name)
        ]

    def create_droplets(self, names: Any, spec: dict) -> list[tuple[dict, dict]]:
        """Droplets named `names` from a create request's `spec`: (droplet, action) each."""
        if not isinstance(names, list) or not 1 <= len(names) <= 10:
            raise APIError(422, "names must list 1 to 10 droplet names.")
        for name in names:
            if not isinstance(name, str) or not HOSTNAME.match(name):
                raise APIError(
                    422,
                    f"Droplet name {name!r}: only valid hostname characters "
                    "are allowed. (a-z, A-Z, 0-9, . and -)",
                )
        region, size, image = spec.get("region"), spec.get("size"), spec.get("image")
        if region not in REGIONS:
            raise APIError(
                422, f"Region {region!r} is not available; use one of {', '.join(REGIONS)}."
            )
        if size not in SIZES:
            raise APIError(
                422,
                f"Size {size!r} is not available in this region; use one of {', '.join(SIZES)}.",
            )
        if image not in IMAGES:
            raise APIError(
                422,
                f"You specified an invalid image {image!r} for Droplet "
                f"creation; use {', '.join(IMAGES)}.",
            )
        tags = spec.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) and TAG.match(t) for t in tags):
            raise APIError(422, "tags must be names of letters, digits, '_', '-' and ':'.")
        user_data = spec.get("user_data")
        if user_data is not None and len(str(user_data).encode()) > 64 * 1024:
            raise APIError(422, "user_data is limited to 64 KiB.")
        keys = self.public_keys(spec.get("ssh_keys") or [])
        with self._lock:
            self._tags.update(dict.fromkeys(tags))
        created = []
        for name in names:
            droplet = self.driver.create(
                name=name,
                region=region,
                size=size,
                image=image,
                tags=tags,
                ssh_keys=keys,
                user_data=user_data,
            )
            action = self.actions.start("create", droplet.id, "droplet", region)
            created.append((self.droplet_json(droplet), action))
        return created

    def destroy(self, droplet_id: int | str) -> None:
        droplet = self.droplet(droplet_id)
        self.driver.destroy(droplet.id)
        with self._lock:  # DigitalOcean unassigns a dead droplet's reserved IPs
            for record in self._reserved.values():
                if record["droplet_id"] == droplet.id:
                    record["droplet_id"] = None

    def destroy_tagged(self, tag: str | None) -> None:
        if not tag:
            raise APIError(422, "tag_name is required to delete droplets by tag.")
        for droplet in self.driver.list():
            if tag in droplet.tags:
                self.destroy(droplet.id)

    # -- droplet actions --------------------------------------------------------------------

    def droplet_action(self, droplet_id: int | str, kind: Any) -> dict:
        droplet = self.droplet(droplet_id)
        driver, did = self.driver, droplet.id
        steps = {
            "power_off": [driver.power_off],
            "shutdown": [driver.power_off],
            "power_on": [driver.power_on],
            "reboot": [driver.power_off, driver.power_on],
            "power_cycle": [driver.power_off, driver.power_on],
        }
        if kind not in steps:
            raise APIError(
                422,
                f"Droplet action type {kind!r} is not supported by the lab; "
                f"use one of {', '.join(steps)}.",
            )

        def work() -> None:
            for step in steps[kind]:
                step(did)

        return self.actions.start(kind, did, "droplet", droplet.region, work, busy=("droplet", did))

    # -- tags -------------------------------------------------------------------------------

    @staticmethod
    def _tag_json(name: str, droplets: list[Droplet]) -> dict:
        tagged = [d for d in droplets if name in d.tags]
        last = f"/v2/droplets/{tagged[-1].id}" if tagged else ""
        return {
            "name": name,
            "resources": {
                "count": len(tagged),
                "last_tagged_uri": last,
                "droplets": {"count": len(tagged), "last_tagged_uri": last},
            },
        }

    def tags(self) -> list[dict]:
        droplets = self.driver.list()
        with self._lock:
            names = list(self._tags)
        return [self._tag_json(n, droplets) for n in names]

    def add_tag(self, name: Any) -> dict:
        if not isinstance(name, str) or not TAG.match(name):
            raise APIError(400, f"Tag name {name!r}: use 1-255 letters, digits, '_', '-', ':'.")
        with self._lock:
            self._tags[name] = None
        return self._tag_json(name, self.driver.list())

    def tag(self, name: str) -> dict:
        with self._lock:
            known = name in self._tags
        if not known:
            raise not_found()
        return self._tag_json(name, self.driver.list())
