"""One idiom shared by the tasks (this module is not a task): a unit's files → daemon-reload →
(re)start. Each task writes its unit files with pyinfra's own operations, then calls `run_unit`.

- daemon-reload only when systemd holds an older copy of a unit than its files (its
  NeedDaemonReload): a new unit file is read by its first start, so a first converge reloads
  only for a drop-in beside a unit a package already started (Caddy's), and a converge that
  changed no unit file reloads nothing.
- restarted when a file it reads changed, but not right after its first start (it started
  with them).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import systemd

from facts.units import NeedDaemonReload


def _changed(ops: Sequence[OperationMeta]):
    return lambda: any(op.did_change() for op in ops)


def reload_units(what: str, units: Sequence[str], unit_files: Sequence[OperationMeta]) -> None:
    """daemon-reload when one of `unit_files` changed and systemd runs an older copy of one of
    `units` (full names, e.g. gitea.service)."""
    changed = _changed(unit_files)
    systemd.daemon_reload(
        name=f"Reload systemd for the changed {what}",
        _if=lambda: changed() and host.get_fact(NeedDaemonReload, units=tuple(units)))


def run_unit(unit: str, *, files: Sequence[OperationMeta], also: Sequence[str] = (),
             restart_for: Sequence[OperationMeta] = (), running: bool = True,
             what: str | None = None, running_name: str | None = None,
             restart_name: str | None = None) -> OperationMeta:
    """`unit` (full name) after its `files` (its unit file and drop-ins, and those of the units
    in `also`, e.g. a timer's service) were written: systemd reloaded if it runs an older copy,
    `unit` running and enabled (`running=False`: stopped and disabled), and, when running,
    restarted if one of `restart_for` changed, unless it was started just now. Returns the
    running/enabled operation."""
    reload_units(what or f"{unit} unit", [unit, *also], files)
    state = "running and enabled" if running else "stopped and disabled"
    started = systemd.service(name=running_name or f"Ensure {unit} is {state}", service=unit,
                              running=running, enabled=running)
    if running and restart_for:
        changed = _changed(restart_for)
        systemd.service(name=restart_name or f"Restart {unit} for its new files",
                        service=unit, restarted=True,
                        _if=lambda: changed() and not started.did_change())
    return started
