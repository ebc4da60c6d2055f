"""The lab's DigitalOcean actions: the record of every asynchronous change to a droplet or a
reserved IP, with DigitalOcean's rule that a resource has at most one pending action.

An action's work (slow driver calls: power, addresses) runs in a thread of its own and the
action completes or errors with it, as DigitalOcean reports; a droplet's "create" action
follows the droplet and completes once the droplet is no longer new.

The action fault switch (`fail`) makes the next actions of a type error without doing their
work, as in a provider outage: DigitalOcean accepts the action (201, "in-progress") and
later reports it "errored" (its status enum: "in-progress", "completed", "errored", in
shared/contracts/digitalocean-openapi/specification/resources/actions/models/action.yml),
the resource unchanged.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from phoenix.lab.do.drivers import Driver
from phoenix.lab.do.shapes import APIError, not_found, now, region_json

log = logging.getLogger(__name__)

Resource = tuple[str, Any]  # ("droplet", id) or ("reserved_ip", address)


class Actions:
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self._lock = threading.RLock()
        self._ids = itertools.count(2_000_000_001)
        self._actions: dict[int, dict] = {}
        self._busy: set[Resource] = set()  # resources with an action in progress
        self._failing: list[dict] = []  # {"type", "count", "hits"}: the fault switch

    def fail(self, kind: str | None, count: int = 1) -> list[dict]:
        """The next `count` actions of type `kind` error, their work undone; `kind` None
        clears the switch. Returns the switch's entries (those cleared, with their hits)."""
        with self._lock:
            if kind is None:
                gone, self._failing = self._failing, []
                return gone
            if not isinstance(kind, str) or not isinstance(count, int) or count < 1:
                raise ValueError("an action fault takes a type (str) and a count (int >= 1)")
            self._failing.append({"type": kind, "count": count, "hits": 0})
            return [dict(f) for f in self._failing]

    def _fails(self, kind: str) -> bool:
        with self._lock:
            for fault in self._failing:
                if fault["type"] == kind and fault["hits"] < fault["count"]:
                    fault["hits"] += 1
                    return True
        return False

    def busy(self, resource: Resource) -> bool:
        with self._lock:
            return resource in self._busy

    def start(
        self,
        kind: str,
        resource_id: int,
        resource_type: str,
        region: str,
        work: Callable[[], None] | None = None,
        busy: Resource | None = None,
    ) -> dict:
        """Record an action and run `work` in the background; `busy` names the resource
        it locks. Returns the action as it stood when it was started."""
        with self._lock:
            if busy is not None:
                if busy in self._busy:
                    raise APIError(
                        422,
                        f"The {busy[0].replace('_', ' ')} already has a "
                        "pending event; wait for it to complete.",
                    )
                self._busy.add(busy)
            action: dict[str, Any] = {
                "id": next(self._ids),
                "status": "in-progress",
                "type": kind,
                "started_at": now(),
                "completed_at": None,
                "resource_id": resource_id,
                "resource_type": resource_type,
                "region": region_json(region),
                "region_slug": region,
            }
            self._actions[action["id"]] = action
            started = dict(action)
        if work is not None and self._fails(kind):

            def work() -> None:
                raise RuntimeError(f"{kind} errored (the lab's action fault switch)")

        if work is not None:
            threading.Thread(
                target=self._run,
                args=(action, work, busy),
                name=f"do-action-{action['id']}",
                daemon=True,
            ).start()
        return started

    def _run(self, action: dict, work: Callable[[], None], busy: Resource | None) -> None:
        try:
            work()
            status = "completed"
        except Exception as exc:  # the action errors, as on DigitalOcean; the server goes on
            log.warning(
                "action %s (%s) on %s %s failed: %s",
                action["id"],
                action["type"],
                action["resource_type"],
                action["resource_id"],
                exc,
            )
            status = "errored"
        with self._lock:
            action.update(status=status, completed_at=now())
            self._busy.discard(busy)

    def _json(self, action: dict) -> dict:
        if action["type"] == "create" and action["status"] == "in-progress":
            droplet = self.driver.get(action["resource_id"])
            if droplet is None or droplet.status != "new":
                with self._lock:
                    action.update(
                        status="errored" if droplet is None else "completed", completed_at=now()
                    )
        with self._lock:
            return dict(action)

    def list(self, *, droplet_id: int | None = None) -> list[dict]:
        """All actions, or those of one droplet."""
        with self._lock:
            found = [
                a
                for a in self._actions.values()
                if droplet_id is None
                or (a["resource_type"] == "droplet" and a["resource_id"] == droplet_id)
            ]
        return [self._json(a) for a in found]

    def get(self, action_id: int | str) -> dict:
        with self._lock:
            action = self._actions.get(int(action_id))
        if action is None:
            raise not_found()
        return self._json(action)
