"""DigitalOcean through the official pydo client: the calls Phoenix makes, with clear errors.

The endpoint is configurable (the lab serves plain http, which pydo refuses unless each call
passes enforce_https=False). Tokens come from the caller, never from here, never printed.
"""

from __future__ import annotations

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

from phoenix.errors import PhoenixError


class DO:
    def __init__(self, *, token: str, endpoint: str = "https://api.digitalocean.com",
                 retries: int = 3, timeout: float = 20) -> None:
        self.endpoint = endpoint
        self._kw: dict[str, Any] = {"enforce_https": endpoint.startswith("https://")}
        self.client = pydo.Client(token=token, endpoint=endpoint, retry_total=retries,
                                  retry_backoff_factor=0.5, connection_timeout=timeout,
                                  read_timeout=timeout)

    def call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs, **self._kw)
        except ClientAuthenticationError:
            raise PhoenixError(f"DigitalOcean rejected the API token while trying to {what} "
                               "(check DIGITALOCEAN_TOKEN or DIGITALOCEAN_ACCESS_TOKEN)") from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise PhoenixError(f"cannot reach the DigitalOcean API at {self.endpoint} to "
                               f"{what}: {type(exc).__name__}") from None
        except HttpResponseError as exc:
            status = exc.status_code
            message = _message(exc)
            if status == 401:
                raise PhoenixError(f"DigitalOcean rejected the API token while trying to {what}"
                                   " (check DIGITALOCEAN_TOKEN or DIGITALOCEAN_ACCESS_TOKEN)"
                                   ) from None
            if status == 422:
                raise PhoenixError(f"DigitalOcean refused to {what}: {message}") from None
            if status == 429:
                raise PhoenixError(f"DigitalOcean rate limit hit while trying to {what}, even "
                                   "after retries; wait a minute and run again") from None
            raise PhoenixError(f"DigitalOcean API error {status} while trying to {what}: "
                               f"{message}") from None

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
        body = self.call(f"get droplet {droplet_id}", self.client.droplets.get,
                         droplet_id=droplet_id)
        return body.get("droplet")  # pydo returns the 404 body instead of raising

    def create(self, body: dict) -> dict:
        return self.call(f"create droplet {body.get('name')}", self.client.droplets.create,
                         body=body)["droplet"]

    def destroy(self, droplet_id: int) -> None:
        self.call(f"destroy droplet {droplet_id}", self.client.droplets.destroy,
                  droplet_id=droplet_id)

    def action(self, droplet_id: int, kind: str, *, timeout: float = 120) -> dict:
        action = self.call(f"{kind} droplet {droplet_id}", self.client.droplet_actions.post,
                           droplet_id=droplet_id, body={"type": kind})["action"]
        return self.wait_action(action, what=f"{kind} of droplet {droplet_id}", timeout=timeout)

    def wait_action(self, action: dict, *, what: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while action["status"] == "in-progress":
            if time.monotonic() > deadline:
                raise PhoenixError(f"{what} did not complete within {timeout:.0f} s")
            time.sleep(0.5)
            action = self.call(f"follow {what}", self.client.actions.get,
                               action_id=action["id"])["action"]
        if action["status"] != "completed":
            raise PhoenixError(f"{what} ended {action['status']}")
        return action

    def wait_active(self, droplet_id: int, *, timeout: float = 300,
                    progress: Callable[[str], None] | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            droplet = self.get(droplet_id)
            if droplet is None:
                raise PhoenixError(f"droplet {droplet_id} disappeared while waiting for it")
            if droplet["status"] == "active" and public_ip(droplet):
                return droplet
            if time.monotonic() > deadline:
                raise PhoenixError(f"droplet {droplet['name']} ({droplet_id}) is still "
                                   f"{droplet['status']} after {timeout:.0f} s")
            if progress:
                progress(droplet["status"])
            time.sleep(1)

    # ---- keys ---------------------------------------------------------------------------
    def ensure_key(self, name: str, public_key: str) -> str:
        """Register the operator's key unless it is there; returns its fingerprint."""
        keys = self.call("list SSH keys", self.client.ssh_keys.list, per_page=200)
        for key in keys.get("ssh_keys", []):
            if key["public_key"].split()[:2] == public_key.split()[:2]:
                return key["fingerprint"]
        body = {"name": name, "public_key": public_key.strip()}
        return self.call("register the SSH key", self.client.ssh_keys.create,
                         body=body)["ssh_key"]["fingerprint"]


    # ---- reserved IPs -------------------------------------------------------------------
    def reserved_ip(self, ip: str) -> dict:
        body = self.call(f"get reserved IP {ip}", self.client.reserved_ips.get, reserved_ip=ip)
        if "reserved_ip" not in body:
            raise PhoenixError(f"reserved IP {ip} does not exist in this account")
        return body["reserved_ip"]

    def assign_reserved_ip(self, ip: str, droplet_id: int | None) -> None:
        """Point `ip` at `droplet_id` (None: unassign it)."""
        body = {"type": "assign", "droplet_id": droplet_id} if droplet_id else \
            {"type": "unassign"}
        what = f"assign reserved IP {ip} to droplet {droplet_id}" if droplet_id else \
            f"unassign reserved IP {ip}"
        action = self.call(what, self.client.reserved_ips_actions.post, reserved_ip=ip,
                           body=body)
        if "action" not in action:
            raise PhoenixError(f"DigitalOcean refused to {what}: {action.get('message')}")
        self.wait_action(action["action"], what=what)


def public_ip(droplet: dict) -> str | None:
    for net in droplet.get("networks", {}).get("v4", []):
        if net.get("type") == "public":
            return net["ip_address"]
    return None


def _message(exc: HttpResponseError) -> str:
    try:
        body = exc.response.json() if exc.response is not None else {}  # type: ignore[attr-defined]  # azure's response protocol omits json()
        return body.get("message") or str(body)
    except (ValueError, AttributeError, TypeError):  # no JSON body, or not an object
        return (exc.message or str(exc)).splitlines()[0]
