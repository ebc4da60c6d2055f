"""The lab's DigitalOcean: the subset of API v2 that pydo calls, served over real HTTP.

Droplets live in a `Driver` (memory records for unit tests, nspawn containers in the lab);
everything DigitalOcean keeps besides droplets (account keys, reserved IPs, actions, tags) lives
here. Shapes, status codes and error bodies follow DigitalOcean's, so the code under test
cannot tell the difference; `contracts/digitalocean/openapi.json` (DigitalOcean's OpenAPI
description, tightened) holds them to it in the tests. The fault switch (`inject`, or
`fail_next` for the next answers) answers with DigitalOcean's error shape and headers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import itertools
import logging
import re
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlencode

from phoenix.lab.drivers import Driver, DriverError, Droplet
from phoenix.lab.httpd import Fault, Handler, JSONServer, Request, Response

log = logging.getLogger(__name__)

REGIONS = {"nyc1": "New York 1", "nyc3": "New York 3", "sfo3": "San Francisco 3",
           "ams3": "Amsterdam 3", "fra1": "Frankfurt 1", "lon1": "London 1"}
SIZES = {  # slug: (memory MiB, vcpus, disk GB, transfer TB, USD a month)
    "s-1vcpu-1gb": (1024, 1, 25, 1.0, 6),
    "s-1vcpu-2gb": (2048, 1, 50, 2.0, 12),
    "s-2vcpu-2gb": (2048, 2, 60, 3.0, 18),
    "s-2vcpu-4gb": (4096, 2, 80, 4.0, 24),
    "s-4vcpu-8gb": (8192, 4, 160, 5.0, 48),
}
IMAGES = {"debian-12-x64": {"id": 152227015, "name": "12 x64", "distribution": "Debian"}}
KEY_TYPES = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
             "sk-ecdsa-sha2-nistp256@openssh.com"}
PROJECT_ID = "4e1bfbc3-dc3e-41f2-a18f-1b4d7ba71679"  # the account's default project
RATE_LIMIT = 5000  # requests an hour, as DigitalOcean allows
HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")
TAG = re.compile(r"^[A-Za-z0-9_:-]{1,255}$")
FINGERPRINT = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){15}$")
NOT_FOUND = "The resource you were accessing could not be found."
ERROR_IDS = {400: "bad_request", 401: "Unauthorized", 404: "not_found",
             422: "unprocessable_entity", 429: "too_many_requests", 500: "server_error",
             502: "bad_gateway", 503: "service_unavailable", 504: "gateway_timeout"}
ERROR_MESSAGES = {429: "API Rate limit exceeded.",
                  500: "Server was unable to give you a response."}


class APIError(Exception):
    """Ends a request with DigitalOcean's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def md5_fingerprint(public_key: str) -> str:
    """DigitalOcean's key fingerprint: colon-separated MD5 of the key blob."""
    digest = hashlib.md5(_key_blob(public_key)).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _key_blob(public_key: str) -> bytes:
    words = public_key.split()
    invalid = APIError(422, "Key invalid, key should be of the format `type key [comment]`")
    if len(words) < 2 or words[0] not in KEY_TYPES:
        raise invalid
    try:
        blob = base64.b64decode(words[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
    except (binascii.Error, struct.error):
        raise invalid from None
    if blob[4:4 + length] != words[0].encode():
        raise invalid
    return blob


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, message: str) -> Response:
    body = {"id": ERROR_IDS.get(status, "error"), "message": message,
            "request_id": str(uuid.uuid4())}
    return status, body


def _not_found() -> APIError:
    return APIError(404, NOT_FOUND)


def _region_json(slug: str) -> dict:
    return {"slug": slug, "name": REGIONS.get(slug, slug), "available": True,
            "features": ["backups", "ipv6", "metadata", "install_agent", "storage"],
            "sizes": list(SIZES)}


def _size_json(slug: str) -> dict:
    memory, vcpus, disk, transfer, monthly = SIZES.get(slug, (0, 0, 0, 0.0, 0))
    return {"slug": slug, "memory": memory, "vcpus": vcpus, "disk": disk, "transfer": transfer,
            "price_monthly": monthly, "price_hourly": round(monthly / 672, 5),
            "regions": list(REGIONS), "available": True, "description": "Basic"}


def _image_json(slug: str) -> dict:
    known = IMAGES.get(slug, {"id": 0, "name": slug, "distribution": "Unknown"})
    return {**known, "slug": slug, "public": True, "regions": list(REGIONS), "type": "base",
            "min_disk_size": 15, "size_gigabytes": 2.36, "description": known["name"],
            "tags": [], "status": "available", "created_at": "2023-06-12T00:00:00Z"}


class DOServer(JSONServer):
    """DigitalOcean API v2 for pydo, backed by `driver`.

    `reserved_ips` is the pool that POST /v2/reserved_ips hands out from (addresses, or one
    CIDR string). `network` is the droplets' subnet, which gives their netmask and gateway;
    without it each address is taken to be in a /24 whose first host is the gateway.
    """

    def __init__(self, driver: Driver, *, token: str, host: str = "127.0.0.1", port: int = 0,
                 reserved_ips: Iterable[str] | str = (), network: str | None = None) -> None:
        self.driver = driver
        self._token = token
        if isinstance(reserved_ips, str):
            reserved_ips = [str(ip) for ip in ipaddress.IPv4Network(reserved_ips).hosts()]
        self._pool = list(reserved_ips)
        self._network = ipaddress.IPv4Network(network) if network else None
        self._lock = threading.RLock()
        self._key_ids = itertools.count(41_000_001)
        self._action_ids = itertools.count(2_000_000_001)
        self._keys: dict[int, dict] = {}
        self._reserved: dict[str, dict] = {}  # ip -> {"region", "droplet_id"}
        self._actions: dict[int, dict] = {}
        self._busy: set[tuple[str, Any]] = set()  # resources with an action in progress
        self._tags: dict[str, None] = {}
        self._window = (time.time(), 0)  # rate-limit window start, requests in it
        d, ip, act = r"(?P<droplet_id>\d+)", r"(?P<ip>[0-9.]+)", r"(?P<action_id>\d+)"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/v2/account/keys", self._keys_list),
            ("POST", "/v2/account/keys", self._keys_create),
            ("GET", "/v2/account/keys/(?P<key>[^/]+)", self._keys_get),
            ("DELETE", "/v2/account/keys/(?P<key>[^/]+)", self._keys_delete),
            ("GET", "/v2/droplets", self._droplets_list),
            ("POST", "/v2/droplets", self._droplets_create),
            ("DELETE", "/v2/droplets", self._droplets_destroy_by_tag),
            ("GET", f"/v2/droplets/{d}", self._droplets_get),
            ("DELETE", f"/v2/droplets/{d}", self._droplets_destroy),
            ("GET", f"/v2/droplets/{d}/actions", self._droplet_actions_list),
            ("POST", f"/v2/droplets/{d}/actions", self._droplet_actions_post),
            ("GET", f"/v2/droplets/{d}/actions/{act}", self._actions_get),
            ("GET", "/v2/actions", self._actions_list),
            ("GET", f"/v2/actions/{act}", self._actions_get),
            ("GET", "/v2/reserved_ips", self._reserved_list),
            ("POST", "/v2/reserved_ips", self._reserved_create),
            ("GET", f"/v2/reserved_ips/{ip}", self._reserved_get),
            ("DELETE", f"/v2/reserved_ips/{ip}", self._reserved_delete),
            ("POST", f"/v2/reserved_ips/{ip}/actions", self._reserved_actions_post),
            ("GET", f"/v2/reserved_ips/{ip}/actions/{act}", self._actions_get),
            ("GET", "/v2/tags", self._tags_list),
            ("POST", "/v2/tags", self._tags_create),
            ("GET", "/v2/tags/(?P<tag>[^/]+)", self._tags_get),
        ]
        super().__init__(host, port, [(m, p, self._guarded(h)) for m, p, h in routes],
                         fault_answer=self._fault_answer, control_token=token)

    # -- test switch, auth, rate-limit headers --------------------------------------------

    def fail_next(self, n: int = 1, *, status: int = 429, retry_after: int | None = 1) -> None:
        """Answer the next `n` requests with `status` (429, 500, 503...) instead of serving them.

        `retry_after` becomes a Retry-After header (None: no header). Note that azure-core,
        under pydo, retries any method on any 4xx/5xx that carries Retry-After.
        """
        self.clear_faults()
        if n:
            self.inject(Fault(status=status, retry_after=retry_after, count=n))

    def _fault_answer(self, status: int, fault: Fault) -> Response:
        with self._lock:
            headers = self._count_request()
        if status == 429:
            headers["ratelimit-remaining"] = "0"
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        message = ERROR_MESSAGES.get(status, "Injected failure (lab fault switch).")
        return (*_error(status, message), headers)

    def _guarded(self, handler: Handler) -> Handler:
        def answer(request: Request) -> Response:
            with self._lock:
                headers = self._count_request()
            if not hmac.compare_digest((request.bearer or "").encode(), self._token.encode()):
                return (*_error(401, "Unable to authenticate you"), headers)
            try:
                status, body, *extra = handler(request)
            except APIError as exc:
                status, body, extra = *_error(exc.status, str(exc)), []
            except DriverError as exc:
                status, body, extra = *_error(422, str(exc)), []
            if status == 204:  # DigitalOcean labels its empty answers JSON all the same
                headers["content-type"] = "application/json; charset=utf-8"
            return status, body, {**headers, **(extra[0] if extra else {})}
        return answer

    def _count_request(self) -> dict[str, str]:
        start, used = self._window
        if time.time() >= start + 3600:
            start, used = time.time(), 0
        self._window = (start, used + 1)
        return {"ratelimit-limit": str(RATE_LIMIT),
                "ratelimit-remaining": str(max(0, RATE_LIMIT - used - 1)),
                "ratelimit-reset": str(int(start + 3600))}

    # -- shared pieces ----------------------------------------------------------------------

    @staticmethod
    def _body(request: Request) -> dict:
        if not isinstance(request.body, dict):
            raise APIError(422, "The request body must be a JSON object.")
        return request.body

    @staticmethod
    def _href(request: Request, path: str) -> str:
        return f"http://{request.headers.get('Host', 'localhost')}{path}"

    def _page(self, request: Request, key: str, items: list) -> Response:
        try:
            page = max(1, int(request.arg("page") or 1))
            per_page = min(200, max(1, int(request.arg("per_page") or 20)))
        except ValueError:
            raise APIError(400, "page and per_page must be whole numbers.") from None
        last = max(1, -(-len(items) // per_page))
        query = {k: v[0] for k, v in request.query.items()}

        def url(number: int) -> str:
            q = urlencode({**query, "page": number, "per_page": per_page})
            return self._href(request, f"{request.path}?{q}")

        pages = {}
        if page > 1:
            pages.update(first=url(1), prev=url(min(page - 1, last)))
        if page < last:
            pages.update(next=url(page + 1), last=url(last))
        chunk = items[(page - 1) * per_page:page * per_page]
        return 200, {key: chunk, "links": {"pages": pages}, "meta": {"total": len(items)}}

    def _droplet(self, droplet_id: int | str) -> Droplet:
        droplet = self.driver.get(int(droplet_id))
        if droplet is None:
            raise _not_found()
        return droplet

    def _v4(self, ip: str) -> dict:
        net = self._network
        if net is None or ipaddress.IPv4Address(ip) not in net:
            net = ipaddress.IPv4Network(f"{ip}/24", strict=False)
        return {"ip_address": ip, "netmask": str(net.netmask),
                "gateway": str(next(net.hosts())), "type": "public"}

    def _droplet_json(self, d: Droplet) -> dict:
        addresses = ([d.ip] if d.ip else []) + [ip for ip in d.extra_ips if ip != d.ip]
        size = _size_json(d.size)
        with self._lock:
            locked = ("droplet", d.id) in self._busy
        return {"id": d.id, "name": d.name, "status": d.status, "locked": locked,
                "memory": size["memory"], "vcpus": size["vcpus"], "disk": size["disk"],
                "created_at": d.created_at, "region": _region_json(d.region),
                "image": _image_json(d.image), "size": size, "size_slug": d.size,
                "tags": list(d.tags), "features": [], "backup_ids": [], "snapshot_ids": [],
                "volume_ids": [], "kernel": None, "next_backup_window": None,
                "networks": {"v4": [self._v4(ip) for ip in addresses], "v6": []}}

    # -- account keys -----------------------------------------------------------------------

    def _key(self, ident: str) -> dict:
        with self._lock:
            for key in self._keys.values():
                if ident in (str(key["id"]), key["fingerprint"]):
                    return key
        raise _not_found()

    def _keys_list(self, request: Request) -> Response:
        with self._lock:
            keys = [dict(k) for k in self._keys.values()]
        return self._page(request, "ssh_keys", keys)

    def _keys_create(self, request: Request) -> Response:
        body = self._body(request)
        name, public_key = body.get("name"), str(body.get("public_key") or "").strip()
        if not name:
            raise APIError(422, "Name is required.")
        fingerprint = md5_fingerprint(public_key)
        with self._lock:
            if any(k["fingerprint"] == fingerprint for k in self._keys.values()):
                raise APIError(422, "SSH Key is already in use on your account")
            key = {"id": next(self._key_ids), "fingerprint": fingerprint,
                   "public_key": public_key, "name": name}
            self._keys[key["id"]] = key
            return 201, {"ssh_key": dict(key)}

    def _keys_get(self, request: Request) -> Response:  # pydo sends "0f%3Aa2..."
        return 200, {"ssh_key": dict(self._key(unquote(request.params["key"])))}

    def _keys_delete(self, request: Request) -> Response:
        key = self._key(unquote(request.params["key"]))
        with self._lock:
            self._keys.pop(key["id"], None)
        return 204, None

    def _public_keys(self, refs: Any) -> list[str]:
        """Account key ids, fingerprints or public keys -> the public key lines."""
        if not isinstance(refs, list):
            raise APIError(422, "ssh_keys must be a list of key ids or fingerprints.")
        lines: list[str] = []
        for ref in refs:
            text = str(ref).strip()
            if text.split(" ", 1)[0] in KEY_TYPES:
                _key_blob(text)
                line = text
            else:
                try:
                    line = self._key(text)["public_key"]
                except APIError:
                    raise APIError(422, f"ssh_keys: no key {text!r} on this account; "
                                        "register it with POST /v2/account/keys") from None
            if line not in lines:
                lines.append(line)
        return lines

    # -- droplets ---------------------------------------------------------------------------

    def _droplets_list(self, request: Request) -> Response:
        droplets = sorted(self.driver.list(), key=lambda d: d.id)
        tag, name = request.arg("tag_name"), request.arg("name")
        droplets = [d for d in droplets
                    if (tag is None or tag in d.tags) and (name is None or d.name == name)]
        return self._page(request, "droplets", [self._droplet_json(d) for d in droplets])

    def _droplets_create(self, request: Request) -> Response:
        body = self._body(request)
        names = body.get("names") if "names" in body else [body.get("name")]
        if not isinstance(names, list) or not 1 <= len(names) <= 10:
            raise APIError(422, "names must list 1 to 10 droplet names.")
        for name in names:
            if not isinstance(name, str) or not HOSTNAME.match(name):
                raise APIError(422, f"Droplet name {name!r}: only valid hostname characters "
                                    "are allowed. (a-z, A-Z, 0-9, . and -)")
        region, size, image = body.get("region"), body.get("size"), body.get("image")
        if region not in REGIONS:
            raise APIError(422, f"Region {region!r} is not available; use one of "
                                f"{', '.join(REGIONS)}.")
        if size not in SIZES:
            raise APIError(422, f"Size {size!r} is not available in this region; use one of "
                                f"{', '.join(SIZES)}.")
        if image not in IMAGES:
            raise APIError(422, f"You specified an invalid image {image!r} for Droplet "
                                f"creation; use {', '.join(IMAGES)}.")
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) and TAG.match(t)
                                                 for t in tags):
            raise APIError(422, "tags must be names of letters, digits, '_', '-' and ':'.")
        user_data = body.get("user_data")
        if user_data is not None and len(str(user_data).encode()) > 64 * 1024:
            raise APIError(422, "user_data is limited to 64 KiB.")
        keys = self._public_keys(body.get("ssh_keys") or [])
        with self._lock:
            self._tags.update(dict.fromkeys(tags))
        created, actions = [], []
        for name in names:
            droplet = self.driver.create(name=name, region=region, size=size, image=image,
                                         tags=tags, ssh_keys=keys, user_data=user_data)
            action = self._start_action("create", droplet.id, "droplet", region)
            created.append(self._droplet_json(droplet))
            actions.append({"id": action["id"], "rel": "create",
                            "href": self._href(request, f"/v2/actions/{action['id']}")})
        if "names" in body:
            return 202, {"droplets": created, "links": {"actions": actions}}
        return 202, {"droplet": created[0], "links": {"actions": actions}}

    def _droplets_get(self, request: Request) -> Response:
        return 200, {"droplet": self._droplet_json(self._droplet(request.params["droplet_id"]))}

    def _destroy(self, droplet_id: int) -> None:
        self.driver.destroy(droplet_id)
        with self._lock:  # DigitalOcean unassigns a dead droplet's reserved IPs
            for record in self._reserved.values():
                if record["droplet_id"] == droplet_id:
                    record["droplet_id"] = None

    def _droplets_destroy(self, request: Request) -> Response:
        self._destroy(self._droplet(request.params["droplet_id"]).id)
        return 204, None

    def _droplets_destroy_by_tag(self, request: Request) -> Response:
        tag = request.arg("tag_name")
        if not tag:
            raise APIError(422, "tag_name is required to delete droplets by tag.")
        for droplet in self.driver.list():
            if tag in droplet.tags:
                self._destroy(droplet.id)
        return 204, None

    # -- actions ----------------------------------------------------------------------------

    def _start_action(self, kind: str, resource_id: int, resource_type: str, region: str,
                      work: Callable[[], None] | None = None,
                      busy: tuple[str, Any] | None = None) -> dict:
        """Record an action and run `work` (slow driver calls) in the background.

        Without `work` the action follows its resource (a "create" completes when the
        droplet is no longer new). Returns the action as it stood when it was started.
        """
        with self._lock:
            if busy is not None:
                if busy in self._busy:
                    raise APIError(422, f"The {busy[0].replace('_', ' ')} already has a "
                                        "pending event; wait for it to complete.")
                self._busy.add(busy)
            action = {"id": next(self._action_ids), "status": "in-progress", "type": kind,
                      "started_at": _now(), "completed_at": None, "resource_id": resource_id,
                      "resource_type": resource_type, "region": _region_json(region),
                      "region_slug": region}
            self._actions[action["id"]] = action
            started = dict(action)
        if work is not None:
            threading.Thread(target=self._run_action, args=(action, work, busy),
                             name=f"do-action-{action['id']}", daemon=True).start()
        return started

    def _run_action(self, action: dict, work: Callable[[], None],
                    busy: tuple[str, Any] | None) -> None:
        try:
            work()
            status = "completed"
        except Exception as exc:  # the action errors, as on DigitalOcean; the server goes on
            log.warning("action %s (%s) on %s %s failed: %s", action["id"], action["type"],
                        action["resource_type"], action["resource_id"], exc)
            status = "errored"
        with self._lock:
            action.update(status=status, completed_at=_now())
            self._busy.discard(busy)

    def _action_json(self, action: dict) -> dict:
        if action["type"] == "create" and action["status"] == "in-progress":
            droplet = self.driver.get(action["resource_id"])
            if droplet is None or droplet.status != "new":
                with self._lock:
                    action.update(status="errored" if droplet is None else "completed",
                                  completed_at=_now())
        with self._lock:
            return dict(action)

    def _actions_list(self, request: Request) -> Response:
        with self._lock:
            actions = list(self._actions.values())
        return self._page(request, "actions", [self._action_json(a) for a in actions])

    def _actions_get(self, request: Request) -> Response:
        with self._lock:
            action = self._actions.get(int(request.params["action_id"]))
        if action is None:
            raise _not_found()
        return 200, {"action": self._action_json(action)}

    def _droplet_actions_list(self, request: Request) -> Response:
        droplet = self._droplet(request.params["droplet_id"])
        with self._lock:
            actions = [a for a in self._actions.values()
                       if a["resource_type"] == "droplet" and a["resource_id"] == droplet.id]
        return self._page(request, "actions", [self._action_json(a) for a in actions])

    def _droplet_actions_post(self, request: Request) -> Response:
        droplet = self._droplet(request.params["droplet_id"])
        kind = self._body(request).get("type")
        driver, did = self.driver, droplet.id
        steps = {"power_off": [driver.power_off], "shutdown": [driver.power_off],
                 "power_on": [driver.power_on], "reboot": [driver.power_off, driver.power_on],
                 "power_cycle": [driver.power_off, driver.power_on]}
        if kind not in steps:
            raise APIError(422, f"Droplet action type {kind!r} is not supported by the lab; "
                                f"use one of {', '.join(steps)}.")

        def work() -> None:
            for step in steps[kind]:
                step(did)

        action = self._start_action(kind, did, "droplet", droplet.region, work,
                                    busy=("droplet", did))
        return 201, {"action": action}

    # -- reserved IPs -----------------------------------------------------------------------

    def _reserved_record(self, ip: str) -> dict:
        with self._lock:
            record = self._reserved.get(ip)
        if record is None:
            raise _not_found()
        return record

    def _reserved_json(self, ip: str) -> dict:
        record = self._reserved_record(ip)
        droplet = None
        if record["droplet_id"] is not None:
            found = self.driver.get(record["droplet_id"])
            droplet = self._droplet_json(found) if found else None
        with self._lock:
            locked = ("reserved_ip", ip) in self._busy
        return {"ip": ip, "droplet": droplet, "region": _region_json(record["region"]),
                "locked": locked, "project_id": PROJECT_ID}

    def _reserved_list(self, request: Request) -> Response:
        with self._lock:
            ips = list(self._reserved)
        return self._page(request, "reserved_ips", [self._reserved_json(ip) for ip in ips])

    def _reserved_create(self, request: Request) -> Response:
        body = self._body(request)
        droplet = None
        if body.get("droplet_id") is not None:
            droplet = self._assignable(body["droplet_id"])
            region = droplet.region
        else:
            region = body.get("region")
            if region not in REGIONS:
                raise APIError(422, f"Region {region!r} is not available; give a region "
                                    f"({', '.join(REGIONS)}) or a droplet_id.")
        with self._lock:
            if not self._pool:
                raise APIError(422, "No reserved IP is left in the lab's pool; delete one "
                                    "or start the lab with a larger pool.")
            ip = self._pool.pop(0)
            self._reserved[ip] = {"region": region, "droplet_id": None}
        links: dict[str, list] = {"droplets": [], "actions": []}
        if droplet is not None:
            action = self._assign(ip, droplet)
            links["droplets"].append({"id": droplet.id, "rel": "droplet",
                                      "href": self._href(request, f"/v2/droplets/{droplet.id}")})
            links["actions"].append({"id": action["id"], "rel": "assign_ip",
                                     "href": self._href(request, f"/v2/actions/{action['id']}")})
        return 202, {"reserved_ip": self._reserved_json(ip), "links": links}

    def _reserved_get(self, request: Request) -> Response:
        return 200, {"reserved_ip": self._reserved_json(request.params["ip"])}

    def _reserved_delete(self, request: Request) -> Response:
        ip = request.params["ip"]
        record = self._reserved_record(ip)
        with self._lock:
            if ("reserved_ip", ip) in self._busy:
                raise APIError(422, "The reserved IP has a pending event; wait for it.")
        if record["droplet_id"] is not None:
            self.driver.remove_address(record["droplet_id"], ip)
        with self._lock:
            del self._reserved[ip]
            self._pool.append(ip)
        return 204, None

    def _assignable(self, droplet_id: Any) -> Droplet:
        try:
            droplet = self.driver.get(int(droplet_id))
        except (TypeError, ValueError):
            droplet = None
        if droplet is None:
            raise APIError(422, f"droplet_id {droplet_id!r}: no such droplet.")
        return droplet

    def _assign(self, ip: str, droplet: Droplet) -> dict:
        record = self._reserved_record(ip)
        if droplet.region != record["region"]:
            raise APIError(422, f"Reserved IP {ip} is in {record['region']} and droplet "
                                f"{droplet.id} in {droplet.region}: they must share a region.")

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

        return self._start_action("assign_ip", int(ipaddress.IPv4Address(ip)), "reserved_ip",
                                  record["region"], work, busy=("reserved_ip", ip))

    def _reserved_actions_post(self, request: Request) -> Response:
        ip = request.params["ip"]
        record = self._reserved_record(ip)
        body = self._body(request)
        if body.get("type") == "assign":
            return 201, {"action": self._assign(ip, self._assignable(body.get("droplet_id")))}
        if body.get("type") != "unassign":
            raise APIError(422, f"Reserved IP action type {body.get('type')!r} is unknown; "
                                "use assign or unassign.")
        if record["droplet_id"] is None:
            raise APIError(422, f"Reserved IP {ip} is not assigned to a droplet.")

        def work() -> None:
            if record["droplet_id"] is not None:
                self.driver.remove_address(record["droplet_id"], ip)
            with self._lock:
                record["droplet_id"] = None

        action = self._start_action("unassign_ip", int(ipaddress.IPv4Address(ip)),
                                    "reserved_ip", record["region"], work,
                                    busy=("reserved_ip", ip))
        return 201, {"action": action}

    # -- tags -------------------------------------------------------------------------------

    @staticmethod
    def _tag_json(name: str, droplets: list[Droplet]) -> dict:
        tagged = [d for d in droplets if name in d.tags]
        last = f"/v2/droplets/{tagged[-1].id}" if tagged else ""
        return {"name": name, "resources": {
            "count": len(tagged), "last_tagged_uri": last,
            "droplets": {"count": len(tagged), "last_tagged_uri": last}}}

    def _tags_list(self, request: Request) -> Response:
        droplets = self.driver.list()
        with self._lock:
            names = list(self._tags)
        return self._page(request, "tags", [self._tag_json(n, droplets) for n in names])

    def _tags_create(self, request: Request) -> Response:
        name = self._body(request).get("name")
        if not isinstance(name, str) or not TAG.match(name):
            raise APIError(400, f"Tag name {name!r}: use 1-255 letters, digits, '_', '-', ':'.")
        with self._lock:
            self._tags[name] = None
        return 201, {"tag": self._tag_json(name, self.driver.list())}

    def _tags_get(self, request: Request) -> Response:
        name = unquote(request.params["tag"])
        with self._lock:
            known = name in self._tags
        if not known:
            raise _not_found()
        return 200, {"tag": self._tag_json(name, self.driver.list())}


def make_server(driver: Driver, *, token: str, host: str = "127.0.0.1", port: int = 0,
                reserved_ips: Iterable[str] | str = (), network: str | None = None) -> DOServer:
    """A DigitalOcean API server (not yet started: call `.start()`)."""
    return DOServer(driver, token=token, host=host, port=port, reserved_ips=reserved_ips,
                    network=network)
