"""The deploy's operations as pyinfra tells its callback handlers (pyinfra.api.State's
add_callback_handler, BaseStateCallback), not as its CLI prints them: a change of wording in
pyinfra's output cannot blank the operator's view of the deploy.

Two sides of one pipe. Inside `pyinfra … deploy.py`, `attach()` (called by the deploy file)
writes one JSON line per event to the file descriptor PHOENIX_DEPLOY_EVENTS names; nothing
when it is unset (a deploy run by hand). `phoenix recover` (phoenix/recover.py, run_deploy)
reads them and draws the live view:

    {"event": "attached"}                               the deploy file was read
    {"event": "start", "op": NAME}                      an operation starts on its hosts
    {"event": "done", "op": NAME, "host": H, "result": "changed" | "unchanged" | "failed"}
    {"event": "disconnect", "host": H}
"""

from __future__ import annotations

import json
import os
from typing import IO, Any

from pyinfra import state as current_state
from pyinfra.api import BaseStateCallback

from phoenix.context import current

ENV = "PHOENIX_DEPLOY_EVENTS"


def _name(state: Any, op_hash: str) -> str:
    return ", ".join(sorted(state.get_op_meta(op_hash).names)) or "Operation"


class Reporter(BaseStateCallback):
    """pyinfra's callbacks, one JSON line each."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.failed: set[tuple[str, str]] = set()  # (op_hash, host) said at once

    def send(self, **event: Any) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()

    def operation_start(self, state, op_hash):  # type: ignore[override]
        self.send(event="start", op=_name(state, op_hash))

    def operation_host_error(  # type: ignore[override]
        self, state, host, op_hash, retry_count=0, max_retries=0
    ):
        # Said now: when the last host fails, pyinfra stops before operation_end.
        self.failed.add((op_hash, host.name))
        self.send(event="done", op=_name(state, op_hash), host=host.name, result="failed")

    def operation_end(self, state, op_hash):  # type: ignore[override]
        # Whether a host changed is known once its result is complete, which pyinfra records
        # after operation_host_success: at the operation's end every host's is.
        for host in state.inventory:
            try:
                meta = state.get_op_data_for_host(host, op_hash).operation_meta
            except KeyError:  # not this host's operation
                continue
            if not meta.is_complete() or (op_hash, host.name) in self.failed:
                continue
            result = (
                "failed" if meta.did_error() else "changed" if meta.did_change() else "unchanged"
            )
            self.send(event="done", op=_name(state, op_hash), host=host.name, result=result)

    def host_disconnect(self, state, host):  # type: ignore[override]
        self.send(event="disconnect", host=host.name)


def attach() -> None:
    """Report this deploy's operations to the phoenix command that runs it (once, although
    pyinfra reads the deploy file once per host)."""
    fd = current().flag(ENV)
    if not fd or any(isinstance(h, Reporter) for h in current_state.callback_handlers):
        return
    os.set_inheritable(int(fd), False)  # the commands pyinfra runs get none of it
    reporter = Reporter(os.fdopen(int(fd), "w", buffering=1))
    current_state.add_callback_handler(reporter)
    reporter.send(event="attached")
