"""The lab's Cloudflare API v4: the DNS subset Phoenix uses, for the official `cloudflare` SDK.

This module is the HTTP side only: routes, bearer auth, the fault switch and Cloudflare's
envelope. What the account holds (zones and records) and the rules it applies live in
`zones.py`. Behaviour copied from Cloudflare because clients depend on it: the `{success,
errors, messages, result}` envelope, pages that run out (the SDK iterates until an empty
page), `name=` / `name.exact=` filters, 403 code 10000 for a token it does not know, and
for a write by a token without DNS:Edit (a read-only token: Zone:Read and DNS:Read).
"""

from __future__ import annotations

import hmac
import math
from collections import deque
from typing import Any

from phoenix.lab.cloudflare.zones import CFError, Zones, fqdn
from phoenix.lab.httpd import Fault, JSONServer, Request, Response

BASE = "/client/v4"


def _shown(record: dict) -> dict:
    """A record as the API shows it: Cloudflare dropped zone_id/zone_name from record
    answers (the SDK's models have neither) and always sends `meta`."""
    shown = {k: v for k, v in record.items() if k not in ("zone_id", "zone_name")}
    return {**shown, "meta": {}}


def _ok(result: Any, status: int = 200, **extra: Any) -> Response:
    return status, {"success": True, "errors": [], "messages": [], "result": result, **extra}


def _fail(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {
        "success": False,
        "errors": [{"code": code, "message": message}],
        "messages": [],
        "result": None,
    }
    return status, body, headers or {}


def _page(request: Request, items: list[dict], *, default: int, maximum: int) -> Response:
    """One page of `items`; a page past the end is empty, which is what stops the SDK."""
    try:
        page = max(1, int(float(request.arg("page", "1"))))
        per_page = min(maximum, max(5, int(float(request.arg("per_page", str(default))))))
    except ValueError:
        raise CFError(400, 1004, "page and per_page must be numbers") from None
    chunk = items[(page - 1) * per_page : page * per_page]
    info = {
        "page": page,
        "per_page": per_page,
        "count": len(chunk),
        "total_count": len(items),
        "total_pages": math.ceil(len(items) / per_page),
    }
    return _ok(chunk, result_info=info)


def _matches(value: str, op: str, wanted: str) -> bool:
    value, wanted = value.lower(), wanted.lower()
    return {
        "exact": value == wanted,
        "equal": value == wanted,
        "not_equal": value != wanted,
        "contains": wanted in value,
        "startswith": value.startswith(wanted),
        "starts_with": value.startswith(wanted),
        "endswith": value.endswith(wanted),
        "ends_with": value.endswith(wanted),
    }[op]


class CloudflareAPI:
    """Routes and test switches of one lab Cloudflare API."""

    def __init__(self, zones: Zones, token: str, read_token: str | None = None) -> None:
        self.zones = zones
        self._token = token.encode()
        self._read_token = read_token.encode() if read_token else None
        self.server: JSONServer | None = None  # set by CFServer: its fault switch
        self.requests: deque[tuple[str, str, dict[str, list[str]]]] = deque(maxlen=1000)

    def rate_limit_next(self, n: int, *, retry_after: float = 1.0) -> None:
        """Answer the next `n` requests with 429 and `Retry-After: retry_after` (seconds)."""
        assert self.server is not None
        self.server.fail_next(n, status=429, retry_after=retry_after)

    @staticmethod
    def fault_answer(status: int, fault: Fault) -> Response:
        """Cloudflare's envelope for an injected failure (429: its rate-limit code 971)."""
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        if status == 429:
            return _fail(
                429, 971, "Please wait and consider throttling your request speed", headers
            )
        return _fail(
            status,
            10000 + status if status >= 500 else 1000,
            "Injected failure (lab fault switch).",
            headers,
        )

    def routes(self) -> list[tuple[str, str, Any]]:
        z, r = r"(?P<zone_id>[^/]+)", r"(?P<record_id>[^/]+)"
        table = [
            ("GET", "/user/tokens/verify", self.verify),
            ("GET", "/zones", self.list_zones),
            ("GET", f"/zones/{z}", self.get_zone),
            ("GET", f"/zones/{z}/dns_records", self.list_records),
            ("POST", f"/zones/{z}/dns_records", self.create_record),
            ("GET", f"/zones/{z}/dns_records/{r}", self.get_record),
            ("PATCH", f"/zones/{z}/dns_records/{r}", self.edit_record),
            ("PUT", f"/zones/{z}/dns_records/{r}", self.update_record),
            ("DELETE", f"/zones/{z}/dns_records/{r}", self.delete_record),
        ]
        return [(method, BASE + path, self._errors(handler)) for method, path, handler in table]

    def before(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.path, request.query))
        if request.bearer is None:
            return _fail(401, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
        bearer = request.bearer.encode()
        if self._read_token and hmac.compare_digest(bearer, self._read_token):
            # what Cloudflare answers a token whose permissions do not cover the request
            return None if request.method == "GET" else _fail(403, 10000, "Authentication error")
        if not hmac.compare_digest(bearer, self._token):
            return _fail(403, 10000, "Authentication error")
        return None

    @staticmethod
    def _errors(handler: Any) -> Any:
        def wrapped(request: Request) -> Response:
            try:
                return handler(request)
            except CFError as exc:
                return _fail(exc.status, exc.code, exc.message)

        return wrapped

    def verify(self, request: Request) -> Response:
        return _ok({"id": "lab-token", "status": "active"})

    def list_zones(self, request: Request) -> Response:
        zones = self.zones.zone_list()
        wanted = request.arg("name")
        if wanted:
            op, _, value = wanted.partition(":") if ":" in wanted else ("equal", "", wanted)
            if op not in ("equal", "not_equal", "contains", "starts_with", "ends_with"):
                raise CFError(400, 1004, f"unknown name filter operator {op!r}")
            zones = [zone for zone in zones if _matches(zone["name"], op, value)]
        if request.arg("status"):
            zones = [zone for zone in zones if zone["status"] == request.arg("status")]
        return _page(request, sorted(zones, key=lambda zone: zone["name"]), default=20, maximum=50)

    def get_zone(self, request: Request) -> Response:
        return _ok(self.zones.zone(request.params["zone_id"]))

    def list_records(self, request: Request) -> Response:
        records = self.zones.records(request.params["zone_id"])
        if request.arg("match", "all") != "all":
            raise CFError(400, 1004, "the lab supports match=all only")
        for key, values in request.query.items():
            field, _, op = key.partition(".")
            if field in ("name", "content") and (op or "exact") in (
                "exact",
                "contains",
                "startswith",
                "endswith",
            ):
                wanted = fqdn(values[0]) if field == "name" else values[0]
                records = [r for r in records if _matches(r[field], op or "exact", wanted)]
            elif key == "type":
                records = [r for r in records if r["type"] == values[0].upper()]
            elif key == "proxied":
                records = [r for r in records if r["proxied"] == (values[0] == "true")]
        return _page(request, [_shown(r) for r in records], default=100, maximum=5_000_000)

    def create_record(self, request: Request) -> Response:
        return _ok(_shown(self.zones.create(request.params["zone_id"], request.body)))

    def get_record(self, request: Request) -> Response:
        return _ok(
            _shown(self.zones.record(request.params["zone_id"], request.params["record_id"]))
        )

    def edit_record(self, request: Request) -> Response:
        return _ok(
            _shown(
                self.zones.update(
                    request.params["zone_id"],
                    request.params["record_id"],
                    request.body,
                    replace=False,
                )
            )
        )

    def update_record(self, request: Request) -> Response:
        return _ok(
            _shown(
                self.zones.update(
                    request.params["zone_id"],
                    request.params["record_id"],
                    request.body,
                    replace=True,
                )
            )
        )

    def delete_record(self, request: Request) -> Response:
        self.zones.delete(request.params["zone_id"], request.params["record_id"])
        return _ok({"id": request.params["record_id"]})


class CFServer(JSONServer):
    """One lab Cloudflare API's server: `.zones` is its store and `.api` its `CloudflareAPI`
    (whose `rate_limit_next(n)` is the 429 switch)."""

    def __init__(self, api: CloudflareAPI, *, token: str, host: str, port: int) -> None:
        super().__init__(
            host,
            port,
            api.routes(),
            before=api.before,
            fault_answer=api.fault_answer,
            control_token=token,
        )
        self.api = api
        self.zones = api.zones
        api.server = self


def make_server(
    *,
    token: str,
    read_token: str | None = None,
    zones: Zones | dict[str, list[dict]] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> CFServer:
    """A Cloudflare API at http://host:port/client/v4, not started yet.

    `zones` maps zone names to records ({"name", "type", "content", "ttl", "proxied"}), or is
    a `Zones` store shared with the DNS server. `read_token` may read but not write.
    """
    store = zones if isinstance(zones, Zones) else Zones(zones)
    return CFServer(CloudflareAPI(store, token, read_token), token=token, host=host, port=port)
