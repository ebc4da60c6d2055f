"""One idiom shared by the tasks (this module is not a task): a unit's files → daemon-reload →
(re)start. Each task writes its unit files with pyinfra's own operations, then calls `run_unit`.

- daemon-reload only when systemd holds an older copy of a unit than its files (its
  NeedDaemonReload): a new unit file is read by its first start, so a first converge reloads
  only for a drop-in beside a unit a package already started (Caddy's), and a converge that
  changed no unit file reloads nothing. Enabling does not reload either (`enable
  --no-reload`, see units_running): a first converge used to reload systemd ~13 times.
- restarted when a file it reads changed, but not right after its first start (it started
  with them).
- units that may come up side by side (the Hermes houses: each start waits seconds for the
  gateway's READY=1) are started by one `systemctl start` after the last of them was written
  (`together=True`, then `start_together`): systemd starts them in parallel and the command
  still fails when one of them does not come up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
from pyinfra.operations import systemd

from facts.units import NeedDaemonReload

# Per host: the units run_unit(together=True) left to start_together, each with its restart
# (whether one of its files changed, the operation's name); then those start_together started.
_TOGETHER: dict[str, list[tuple[str, Callable[[], bool], str]]] = {}
_STARTED: dict[tuple[str, tuple[str, ...]], set[str]] = {}


def _changed(ops: Sequence[OperationMeta]):
    return lambda: any(op.did_change() for op in ops)


def reload_units(what: str, units: Sequence[str], unit_files: Sequence[OperationMeta]) -> None:
    """daemon-reload when one of `unit_files` changed and systemd runs an older copy of one of
    `units` (full names, e.g. gitea.service)."""
    changed = _changed(unit_files)
    systemd.daemon_reload(
        name=f"Reload systemd for the changed {what}",
        _if=lambda: changed() and host.get_fact(NeedDaemonReload, units=tuple(units)),
    )


def run_unit(
    unit: str,
    *,
    files: Sequence[OperationMeta],
    also: Sequence[str] = (),
    restart_for: Sequence[OperationMeta] = (),
    running: bool = True,
    what: str | None = None,
    running_name: str | None = None,
    restart_name: str | None = None,
    together: bool = False,
) -> OperationMeta | None:
    """`unit` (full name) after its `files` (its unit file and drop-ins, and those of the units
    in `also`, e.g. a timer's service) were written: systemd reloaded if it runs an older copy,
    `unit` running and enabled (`running=False`: stopped and disabled), and, when running,
    restarted if one of `restart_for` changed, unless it was started just now. Returns the
    running/enabled operation; `together=True` (and running): none, start_together starts it
    with the others."""
    reload_units(what or f"{unit} unit", [unit, *also], files)
    restart_name = restart_name or f"Restart {unit} for its new files"
    if together and running:
        _TOGETHER.setdefault(host.name, []).append((unit, _changed(restart_for), restart_name))
        return None
    if not running:
        return systemd.service(
            name=running_name or f"Ensure {unit} is stopped and disabled",
            service=unit,
            running=False,
            enabled=False,
        )
    started = units_running(
        name=running_name or f"Ensure {unit} is running and enabled", units=[unit]
    )
    if restart_for:
        systemd.service(
            name=restart_name,
            service=unit,
            restarted=True,
            _if=_restart_due(unit, [unit], _changed(restart_for)),
        )
    return started


@operation()
def units_running(units: list[str]):
    """Every one of `units` (full names) running and enabled: the stopped ones started by one
    `systemctl start` (systemd starts them side by side; it fails if one of them fails), the
    others enabled by one `systemctl enable --no-reload` (enable's own daemon-reload only
    makes systemd read the new [Install] links, which matter at the next boot, which reads
    them anyway: the unit is started here)."""
    status = host.get_fact(SystemdStatus, services=units)
    enabled = host.get_fact(SystemdEnabled, services=units)
    down = [unit for unit in units if not status.get(unit)]
    off = [unit for unit in units if not enabled.get(unit)]
    _STARTED[host.name, tuple(units)] = set(down)
    if down:
        yield StringCommand("systemctl", "start", *(QuoteString(unit) for unit in down))
    if off:
        yield StringCommand(
            "systemctl", "enable", "--no-reload", *(QuoteString(unit) for unit in off)
        )
    if not down and not off:
        host.noop(f"{', '.join(units)}: running and enabled")


def start_together(what: str) -> None:
    """Start the units run_unit(together=True) left on this host (`what` names them), then
    restart each whose files changed and which was running already. Call it inside a @deploy."""
    pending = _TOGETHER.pop(host.name, [])
    if not pending:
        return
    units = [unit for unit, _, _ in pending]
    units_running(name=f"Ensure {what} are running and enabled (started together)", units=units)
    for unit, changed, restart_name in pending:
        systemd.service(
            name=restart_name, service=unit, restarted=True, _if=_restart_due(unit, units, changed)
        )


def _restart_due(unit: str, units: list[str], changed: Callable[[], bool]) -> Callable[[], bool]:
    """Whether `unit` is due a restart: one of its files changed and units_running(`units`)
    did not start it just now (it started with them)."""
    return lambda: changed() and unit not in _STARTED.get((host.name, tuple(units)), set())
