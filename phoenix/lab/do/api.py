"""The lab's DigitalOcean: the subset of API v2 that pydo calls, served over real HTTP.

This module is the HTTP side only: routes, bearer auth, rate-limit headers, paging, links and
DigitalOcean's error bodies. What the account holds (keys, droplets, actions, reserved IPs,
tags) and the rules it applies live in `account.py`. Shapes, status codes and error bodies
follow DigitalOcean's, so the code under test cannot tell the difference;
`contracts/digitalocean/openapi.json` (DigitalOcean's OpenAPI description, tightened) holds them
to it in the tests. The fault switch (`inject`, or `fail_next` for the next answers) answers
with DigitalOcean's error shape and headers; /_lab/action-faults makes the next actions of
a type error after they were accepted (POST {"type", "count"}, DELETE: clear).
"""

from __future__ import annotations

import hmac
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlencode

from phoenix.lab.do.account import Account
from phoenix.lab.do.drivers import Driver, DriverError
from phoenix.lab.do.shapes import APIError
from phoenix.lab.httpd import Fault, Handler, JSONServer, Request, Response

ACTION_FAULTS_PATH = "/_lab/action-faults"
RATE_LIMIT = 5000  # requests an hour, as DigitalOcean allows
ERROR_IDS = {
    400: "bad_request",
    401: "Unauthorized",
    404: "not_found",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
ERROR_MESSAGES = {429: "API Rate limit exceeded.", 500: "Server was unable to give you a response."}


def _error(status: int, message: str) -> tuple[int, dict]:
    body = {
        "id": ERROR_IDS.get(status, "error"),
        "message": message,
        "request_id": str(uuid.uuid4()),
    }
    return status, body


class DOServer(JSONServer):
    """DigitalOcean API v2 for pydo, serving one `Account` over `driver` (see `Account` for
    `reserved_ips` and `network`)."""

    def __init__(
        self,
        driver: Driver,
        *,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        reserved_ips: Iterable[str] | str = (),
        network: str | None = None,
    ) -> None:
        self.account = Account(driver, reserved_ips=reserved_ips, network=network)
        self.driver = driver
        self._token = token
        self._lock = threading.Lock()
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
        super().__init__(
            host,
            port,
            [(m, p, self._guarded(h)) for m, p, h in routes],
            fault_answer=self._fault_answer,
            control_token=token,
            controls={ACTION_FAULTS_PATH: self._action_faults},
        )

    # -- test switch, auth, rate-limit headers --------------------------------------------

    # `fail_next` is the JSONServer's. Note that azure-core, under pydo, retries any method on
    # any 4xx/5xx that carries Retry-After.

    def _action_faults(self, method: str, body: Any) -> dict:
        if method == "POST":
            if not isinstance(body, dict) or set(body) - {"type", "count"}:
                raise ValueError("an action fault takes type and count")
            return {"faults": self.account.actions.fail(body.get("type"), body.get("count", 1))}
        if method == "DELETE":
            return {"faults": self.account.actions.fail(None)}
        raise ValueError(f"{method}: POST adds an action fault, DELETE clears them")

    def _fault_answer(self, status: int, fault: Fault) -> Response:
        headers = self._count_request()
        if status == 429:
            headers["ratelimit-remaining"] = "0"
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        message = ERROR_MESSAGES.get(status, "Injected failure (lab fault switch).")
        return (*_error(status, message), headers)

    def _guarded(self, handler: Handler) -> Handler:
        def answer(request: Request) -> Response:
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
        with self._lock:
            start, used = self._window
            if time.time() >= start + 3600:
                start, used = time.time(), 0
            self._window = (start, used + 1)
        return {
            "ratelimit-limit": str(RATE_LIMIT),
            "ratelimit-remaining": str(max(0, RATE_LIMIT - used - 1)),
            "ratelimit-reset": str(int(start + 3600)),
        }

    # -- shared pieces ----------------------------------------------------------------------

    @staticmethod
    def _body(request: Request) -> dict:
        if not isinstance(request.body, dict):
            raise APIError(422, "The request body must be a JSON object.")
        return request.body

    @staticmethod
    def _href(request: Request, path: str) -> str:
        return f"http://{request.headers.get('Host', 'localhost')}{path}"

    def _link(self, request: Request, ident: int, rel: str, kind: str) -> dict:
        return {"id": ident, "rel": rel, "href": self._href(request, f"/v2/{kind}/{ident}")}

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

        pages: dict[str, str] = {}
        if page > 1:
            pages.update(first=url(1), prev=url(min(page - 1, last)))
        if page < last:
            pages.update(next=url(page + 1), last=url(last))
        chunk = items[(page - 1) * per_page : page * per_page]
        return 200, {key: chunk, "links": {"pages": pages}, "meta": {"total": len(items)}}

    # -- account keys -----------------------------------------------------------------------

    def _keys_list(self, request: Request) -> Response:
        return self._page(request, "ssh_keys", self.account.keys())

    def _keys_create(self, request: Request) -> Response:
        body = self._body(request)
        key = self.account.add_key(body.get("name"), str(body.get("public_key") or "").strip())
        return 201, {"ssh_key": key}

    def _keys_get(self, request: Request) -> Response:  # pydo sends "0f%3Aa2..."
        return 200, {"ssh_key": self.account.key(unquote(request.params["key"]))}

    def _keys_delete(self, request: Request) -> Response:
        self.account.delete_key(unquote(request.params["key"]))
        return 204, None

    # -- droplets ---------------------------------------------------------------------------

    def _droplets_list(self, request: Request) -> Response:
        droplets = self.account.droplets(tag=request.arg("tag_name"), name=request.arg("name"))
        return self._page(request, "droplets", droplets)

    def _droplets_create(self, request: Request) -> Response:
        body = self._body(request)
        names = body.get("names") if "names" in body else [body.get("name")]
        created = self.account.create_droplets(names, body)
        links = {"actions": [self._link(request, a["id"], "create", "actions") for _, a in created]}
        if "names" in body:
            return 202, {"droplets": [d for d, _ in created], "links": links}
        return 202, {"droplet": created[0][0], "links": links}

    def _droplets_get(self, request: Request) -> Response:
        droplet = self.account.droplet(request.params["droplet_id"])
        return 200, {"droplet": self.account.droplet_json(droplet)}

    def _droplets_destroy(self, request: Request) -> Response:
        self.account.destroy(request.params["droplet_id"])
        return 204, None

    def _droplets_destroy_by_tag(self, request: Request) -> Response:
        self.account.destroy_tagged(request.arg("tag_name"))
        return 204, None

    # -- actions ----------------------------------------------------------------------------

    def _actions_list(self, request: Request) -> Response:
        return self._page(request, "actions", self.account.actions.list())

    def _actions_get(self, request: Request) -> Response:
        return 200, {"action": self.account.actions.get(request.params["action_id"])}

    def _droplet_actions_list(self, request: Request) -> Response:
        droplet = self.account.droplet(request.params["droplet_id"])
        return self._page(request, "actions", self.account.actions.list(droplet_id=droplet.id))

    def _droplet_actions_post(self, request: Request) -> Response:
        kind = self._body(request).get("type")
        return 201, {"action": self.account.droplet_action(request.params["droplet_id"], kind)}

    # -- reserved IPs -----------------------------------------------------------------------

    def _reserved_list(self, request: Request) -> Response:
        return self._page(request, "reserved_ips", self.account.reserved_ips())

    def _reserved_create(self, request: Request) -> Response:
        body = self._body(request)
        ip, action = self.account.reserve(
            droplet_id=body.get("droplet_id"), region=body.get("region")
        )
        links: dict[str, list] = {"droplets": [], "actions": []}
        if action is not None:
            droplet_id = int(body["droplet_id"])  # `reserve` assigned it: a droplet's id
            links["droplets"].append(self._link(request, droplet_id, "droplet", "droplets"))
            links["actions"].append(self._link(request, action["id"], "assign_ip", "actions"))
        return 202, {"reserved_ip": self.account.reserved_ip(ip), "links": links}

    def _reserved_get(self, request: Request) -> Response:
        return 200, {"reserved_ip": self.account.reserved_ip(request.params["ip"])}

    def _reserved_delete(self, request: Request) -> Response:
        self.account.release(request.params["ip"])
        return 204, None

    def _reserved_actions_post(self, request: Request) -> Response:
        ip = request.params["ip"]
        self.account.reserved_ip(ip)  # 404 before the body is read, as DigitalOcean answers
        body = self._body(request)
        if body.get("type") == "assign":
            droplet = self.account.assignable(body.get("droplet_id"))
            return 201, {"action": self.account.assign(ip, droplet)}
        if body.get("type") != "unassign":
            raise APIError(
                422,
                f"Reserved IP action type {body.get('type')!r} is unknown; use assign or unassign.",
            )
        return 201, {"action": self.account.unassign(ip)}

    # -- tags -------------------------------------------------------------------------------

    def _tags_list(self, request: Request) -> Response:
        return self._page(request, "tags", self.account.tags())

    def _tags_create(self, request: Request) -> Response:
        return 201, {"tag": self.account.add_tag(self._body(request).get("name"))}

    def _tags_get(self, request: Request) -> Response:
        return 200, {"tag": self.account.tag(unquote(request.params["tag"]))}


def make_server(
    driver: Driver,
    *,
    token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    reserved_ips: Iterable[str] | str = (),
    network: str | None = None,
) -> DOServer:
    """A DigitalOcean API server (not yet started: call `.start()`)."""
    return DOServer(
        driver, token=token, host=host, port=port, reserved_ips=reserved_ips, network=network
    )
