"""Dispatch (runbook step 9.4): Gitea's issue events reach each wizard house through Hermes
Agent's webhook platform (gateway/platforms/webhook.py), one system webhook per house.

Each house listens on a loopback address and port of its own, which only this host (Gitea)
reaches; app.ini's `[webhook] ALLOWED_HOST_LIST` admits those addresses and nothing else
(1.22's default, `external`, refuses loopback). Each route's secret is derived from the
operator's secret `hermes_webhook_secret`, one per house, so a house's secret opens no other.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Any

SECRET_NAME = "hermes_webhook_secret"


@dataclass(frozen=True)
class House:
    name: str
    address: str
    port: int
    route: str

    @property
    def url(self) -> str:
        """The URL Gitea's webhook row holds (Hermes serves /webhooks/<route>)."""
        return f"http://{self.address}:{self.port}/webhooks/{self.route}"


def houses(settings: Any) -> list[House]:
    """Every wizard house with its listener: house i at dispatch_address_first + i, port
    dispatch_port_first + i."""
    first = ipaddress.ip_address(settings.get("dispatch_address_first"))
    return [
        House(
            name=name,
            address=str(first + i),
            port=int(settings.get("dispatch_port_first")) + i,
            route=str(settings.get("dispatch_route")),
        )
        for i, name in enumerate(settings.get("wizard_names"))
    ]


def house_secret(secret: str, house: str) -> str:
    """The route secret of one house: HMAC-SHA256 of its name under the operator's secret."""
    return hmac.new(secret.encode(), f"dispatch:{house}".encode(), hashlib.sha256).hexdigest()


def allowed_host_list(settings: Any, forge_had: str | None = None) -> str:
    """app.ini's [webhook] ALLOWED_HOST_LIST: what the forge's own app.ini allowed, so its
    users' webhooks keep being delivered (`forge_had`: its value, "" when it set none, which is
    Gitea's default `external`; None for a forge without an app.ini of its own), then each
    house's address alone (a /32 or /128)."""
    kept = [] if forge_had is None else (forge_had.strip() or "external").split(",")
    own = [f"{h.address}/{32 if ':' not in h.address else 128}" for h in houses(settings)]
    return ",".join(dict.fromkeys(e.strip() for e in [*kept, *own] if e.strip()))
