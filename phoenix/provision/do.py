"""DigitalOcean through the official pydo client: the calls Phoenix makes, with clear errors.

The endpoint is configurable (the lab serves plain http, which pydo refuses unless each call
passes enforce_https=False). Tokens come from the caller, never from here, never printed.

Reads are retried by the SDK (azure-core: 429, 5xx, timeouts). Posts that make something
(a droplet, a key, an action) are not: azure-core repeats a POST after a 500/503/504, and
when that error came after DigitalOcean did the work, the repeat makes a second droplet or
is refused as "pending". They are sent once (again only after a 429, which did nothing), and
after any other failure Phoenix looks at what exists instead of asking twice.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pydo
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from phoenix.console import Console
from phoenix.context import Context, current
from phoenix.errors import NotConfigured, PhoenixError
from phoenix.poll import poll


class RateLimited(PhoenixError):
    """DigitalOcean answered 429: nothing was done; `retry_after` seconds to wait."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DO:
    def __init__(
        self,
        *,
        token: str,
        endpoint: str = "https://api.digitalocean.com",
        retries: int = 3,
        timeout: float = 20,
        say: Callable[[str], None] | None = None,
        slow: float = 3,
    ) -> None:
        self.endpoint = endpoint
        self.retries = retries
        self.timeout = timeout
        self.poll = 0.5  # seconds between looks at an action or a locked resource
        # A call still unanswered after `slow` seconds says so (to `say`) and for how long it
        # may go on: an API that hangs is not a silent minute.
        self.say, self.slow = say, slow
        self._kw: dict[str, Any] = {"enforce_https": endpoint.startswith("https://")}
        self.client = pydo.Client(
            token=token,
            endpoint=endpoint,
            retry_total=retries,
            retry_backoff_factor=0.5,
            connection_timeout=timeout,
            read_timeout=timeout,
        )

    def longest(self, retry_total: int | None = None) -> float:
        """The longest one call may wait for its answer: each attempt's timeout and, as
        azure-core backs off, 0, 1, 2, 4 … s between attempts."""
        tries = 1 + (self.retries if retry_total is None else retry_total)
        return tries * self.timeout + sum(0.5 * 2 ** (n - 1) for n in range(2, tries))

    def call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        timer = None
        if self.say:
            timer = threading.Timer(
                self.slow,
                self.say,
                [
                    f"waiting for DigitalOcean to answer ({what}), up to "
                    f"{self.longest(kwargs.get('retry_total')):.0f} s"
                ],
            )
            timer.daemon = True
            timer.start()
        try:
            return self._call(what, fn, **kwargs)
        finally:
            if timer:
                timer.cancel()

    def _call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs, **self._kw)
        except ClientAuthenticationError:
            raise PhoenixError(
                f"DigitalOcean rejected the API token while trying to {what} "
                "(check DIGITALOCEAN_TOKEN or DIGITALOCEAN_ACCESS_TOKEN)"
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise PhoenixError(
                f"cannot reach the DigitalOcean API at {self.endpoint} to {what}: {_cause(exc)}"
            ) from None
        except HttpResponseError as exc:
            status = exc.status_code
            message = _message(exc)
            if status == 401:
                raise PhoenixError(
                    f"DigitalOcean rejected the API token while trying to {what}"
                    " (check DIGITALOCEAN_TOKEN or DIGITALOCEAN_ACCESS_TOKEN)"
                ) from None
            if status == 422:
                raise PhoenixError(f"DigitalOcean refused to {what}: {message}") from None
            if status == 429:
                raise RateLimited(
                    f"DigitalOcean rate limit hit while trying to {what}, even "
                    "after retries; wait a minute and run again",
                    _retry_after(exc),
                ) from None
            raise PhoenixError(
                f"DigitalOcean API error {status} while trying to {what}: {message}"
            ) from None

    # ---- droplets -----------------------------------------------------------------------
    def droplets(self, *, tag: str | None = None, name: str | None = None) -> list[dict]:
        kwargs: dict[str, Any] = {"per_page": 200}
        if tag:
            kwargs["tag_name"] = tag
        if name:
            kwargs["name"] = name
        body = self.call("list droplets", self.client.droplets.list, **kwargs)
        return [d for d in body.get("droplets", []) if not name or d["name"] == name]

    def get(self, droplet_id: int) -> dict | None:
        body = self.call(
            f"get droplet {droplet_id}", self.client.droplets.get, droplet_id=droplet_id
        )
        return body.get("droplet")  # pydo returns the 404 body instead of raising

    def post_once(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """A POST sent once, and again only after a 429 (which did nothing), as the SDK
        would: after any other failure the caller must look at what exists first."""
        for attempt in range(self.retries + 1):
            try:
                return self.call(what, fn, retry_total=0, **kwargs)
            except RateLimited as exc:
                if attempt == self.retries:
                    raise
                time.sleep(min(exc.retry_after, 60))
        raise AssertionError("unreachable")

    def create(self, body: dict) -> dict:
        """Create a droplet; a failure may still have made it (the caller looks by tag)."""
        return self.post_once(
            f"create droplet {body.get('name')}", self.client.droplets.create, body=body
        )["droplet"]

    def destroy(self, droplet_id: int) -> None:
        """Destroy a droplet; one already gone (a repeat after a lost answer) is fine."""
        try:
            self.call(
                f"destroy droplet {droplet_id}", self.client.droplets.destroy, droplet_id=droplet_id
            )
        except PhoenixError:
            if self.get(droplet_id) is not None:
                raise

    def act_once(
        self,
        what: str,
        post: Callable[[], dict],
        *,
        state: Callable[[], dict],
        done: Callable[[dict], bool],
        timeout: float,
    ) -> None:
        """Post an action and follow it. After a failed or lost answer, wait while the
        resource is locked (an action of ours may be running) and post again only if it is
        not already done: one action, never two."""
        try:
            action = post()
        except PhoenixError:
            deadline = time.monotonic() + timeout
            current = state()
            while current.get("locked") and time.monotonic() < deadline:
                time.sleep(self.poll)
                current = state()
            if done(current):
                return
            action = post()  # nothing happened: once more; its error is the one to show
        self.wait_action(action, what=what, timeout=timeout)

    def action(self, droplet_id: int, kind: str, *, timeout: float = 120) -> None:
        """A droplet action (power_off, power_on) that ends in the state it names."""
        what = f"{kind} of droplet {droplet_id}"
        goal = {"power_off": "off", "shutdown": "off", "power_on": "active"}.get(kind)

        def post() -> dict:
            return self.post_once(
                f"{kind} droplet {droplet_id}",
                self.client.droplet_actions.post,
                droplet_id=droplet_id,
                body={"type": kind},
            )["action"]

        self.act_once(
            what,
            post,
            state=lambda: self.get(droplet_id) or {},
            done=lambda d: goal is not None and d.get("status") == goal,
            timeout=timeout,
        )

    def wait_action(self, action: dict, *, what: str, timeout: float = 120) -> dict:
        latest, rounds = [action], [0]

        def followed() -> dict | None:
            if rounds[0]:  # the action as posted first, then as DigitalOcean tells it
                latest[0] = self.call(
                    f"follow {what}", self.client.actions.get, action_id=action["id"]
                )["action"]
            rounds[0] += 1
            return latest[0] if latest[0]["status"] != "in-progress" else None

        action = poll(
            followed,
            timeout=timeout,
            what=what,
            interval=self.poll,
            error=lambda: f"{what} did not complete within {timeout:.0f} s",
        )
        if action["status"] != "completed":
            raise PhoenixError(f"{what} ended {action['status']}")
        return action

    def wait_active(
        self,
        droplet_id: int,
        *,
        timeout: float = 300,
        progress: Callable[[str], None] | None = None,
    ) -> dict:
        seen: dict = {}

        def active() -> dict | None:
            droplet = self.get(droplet_id)
            if droplet is None:
                raise PhoenixError(f"droplet {droplet_id} disappeared while waiting for it")
            if droplet["status"] == "active" and public_ip(droplet):
                return droplet
            seen.update(droplet)
            if progress:
                progress(droplet["status"])
            return None

        return poll(
            active,
            timeout=timeout,
            what=f"droplet {droplet_id} active",
            interval=1,
            error=lambda: (
                f"droplet {seen['name']} ({droplet_id}) is still "
                f"{seen['status']} after {timeout:.0f} s"
            ),
        )

    # ---- keys ---------------------------------------------------------------------------
    def ensure_key(self, name: str, public_key: str) -> str:
        """Register the operator's key unless it is there; returns its fingerprint."""

        def registered() -> str | None:
            keys = self.call("list SSH keys", self.client.ssh_keys.list, per_page=200)
            for key in keys.get("ssh_keys", []):
                if key["public_key"].split()[:2] == public_key.split()[:2]:
                    return key["fingerprint"]
            return None

        found = registered()
        if found:
            return found
        body = {"name": name, "public_key": public_key.strip()}
        try:
            return self.post_once("register the SSH key", self.client.ssh_keys.create, body=body)[
                "ssh_key"
            ]["fingerprint"]
        except PhoenixError:
            found = registered()  # the answer may have been lost after the key was made
            if found:
                return found
            # Not made: asking again is safe (DigitalOcean refuses a key it already has).
            return self.post_once("register the SSH key", self.client.ssh_keys.create, body=body)[
                "ssh_key"
            ]["fingerprint"]

    # ---- reserved IPs -------------------------------------------------------------------
    def reserved_ip(self, ip: str) -> dict:
        body = self.call(f"get reserved IP {ip}", self.client.reserved_ips.get, reserved_ip=ip)
        if "reserved_ip" not in body:
            raise PhoenixError(f"reserved IP {ip} does not exist in this account")
        return body["reserved_ip"]

    def assign_reserved_ip(self, ip: str, droplet_id: int | None) -> None:
        """Point `ip` at `droplet_id` (None: unassign it)."""
        body = {"type": "assign", "droplet_id": droplet_id} if droplet_id else {"type": "unassign"}
        what = (
            f"assign reserved IP {ip} to droplet {droplet_id}"
            if droplet_id
            else f"unassign reserved IP {ip}"
        )

        def post() -> dict:
            answer = self.post_once(
                what, self.client.reserved_ips_actions.post, reserved_ip=ip, body=body
            )
            if "action" not in answer:
                raise PhoenixError(f"DigitalOcean refused to {what}: {answer.get('message')}")
            return answer["action"]

        self.act_once(
            what,
            post,
            state=lambda: self.reserved_ip(ip),
            done=lambda r: (r.get("droplet") or {}).get("id") == droplet_id,
            timeout=120,
        )


def public_ip(droplet: dict) -> str | None:
    for net in droplet.get("networks", {}).get("v4", []):
        if net.get("type") == "public":
            return net["ip_address"]
    return None


def _retry_after(exc: HttpResponseError) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    try:
        return float(headers.get("Retry-After") or 1)
    except ValueError:
        return 1.0


def public_ipv6(droplet: dict) -> str | None:
    for net in droplet.get("networks", {}).get("v6", []) or []:
        if net.get("type") == "public":
            return net["ip_address"]
    return None


def _message(exc: HttpResponseError) -> str:
    try:
        body = exc.response.json() if exc.response is not None else {}  # type: ignore[attr-defined]  # azure's response protocol omits json()
        return body.get("message") or str(body)
    except (ValueError, AttributeError, TypeError):  # no JSON body, or not an object
        return (exc.message or str(exc)).splitlines()[0]


def _cause(exc: Exception) -> str:
    """Why a request got no answer, as the transport said it ("[Errno 111] Connection
    refused", "Failed to resolve …", "Read timed out"), without urllib3's connection repr."""
    said = str(exc).strip().splitlines()
    if not said:
        return type(exc).__name__
    return re.sub(r"^\w*HTTPS?Connection(?:Pool)?\([^)]*\): ", "", said[0])


def client(ctx: Context | None = None, *, say: Callable[[str], None] | None = None) -> DO:
    """The operator's DigitalOcean: Phoenix's names first, then the ones doctl and the
    Terraform provider read (DIGITALOCEAN_ACCESS_TOKEN, DIGITALOCEAN_API_URL). A slow answer
    is announced to `say` (default: a line on stderr)."""
    ctx = ctx or current()
    if not ctx.do_token:
        raise NotConfigured(
            "no DigitalOcean token: set DIGITALOCEAN_TOKEN (or DIGITALOCEAN_ACCESS_TOKEN)"
        )
    return DO(token=ctx.do_token, endpoint=ctx.do_endpoint, say=say or Console())
