"""A warm standby keeps the latest offsite snapshot restored and verified, on a schedule.

The refresh is the backup job's `prestage` (files/phoenix_backup.py): the snapshot goes to
standby_prestage_dir/<id>, is verified there, and a promotion's restore of that snapshot
takes it from there instead of the store. Off unless `standby_warm` (group_data/standby.py).
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, systemd

from phoenix.state import STANDBY_TIMER
from tasks._units import run_unit
from tasks.backups import config_path
from tasks.role import role

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "backup_cache_dir",
    "backup_job_path",
    "backup_repository",
    "backup_timeout",
    "standby_prestage_dir",
    "standby_refresh_schedule",
    "standby_warm",
    "unit_hardening",
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
UNIT = STANDBY_TIMER


@deploy("Keep a warm standby's copy of the latest backup")
def keep_warm() -> None:
    data = host.data
    if role() != "standby":
        if host.get_fact(File, path=f"/etc/systemd/system/{UNIT}.timer"):
            systemd.service(
                name="Ensure the standby refresh is off (promoted: the forge now)",
                service=f"{UNIT}.timer",
                running=False,
                enabled=False,
            )
        else:
            host.noop("not a standby")
        return
    if not data.standby_warm:
        host.noop("not a warm standby")
        return
    if not data.backup_repository:
        host.noop("a warm standby needs backup_repository to read snapshots from")
        return
    settings = {
        key: data.get(key)
        for key in (
            "standby_prestage_dir",
            "backup_job_path",
            "backup_timeout",
            "standby_refresh_schedule",
        )
    }
    writes = sorted({data.standby_prestage_dir, data.backup_cache_dir})
    for path in writes:
        files.directory(
            name=f"Ensure {path} exists for the standby refresh, root's alone",
            path=path,
            user="root",
            group="root",
            mode="0700",
        )
    service = files.template(
        name="Ensure the standby refresh unit is current",
        src=str(TEMPLATES / f"{UNIT}.service.j2"),
        dest=f"/etc/systemd/system/{UNIT}.service",
        user="root",
        group="root",
        mode="0644",
        config_path=config_path(),
        standby_write_paths=writes,
        unit_hardening=data.unit_hardening,
        **settings,
    )
    timer = files.template(
        name="Ensure the standby refresh timer is current",
        src=str(TEMPLATES / f"{UNIT}.timer.j2"),
        dest=f"/etc/systemd/system/{UNIT}.timer",
        user="root",
        group="root",
        mode="0644",
        **settings,
    )
    run_unit(
        f"{UNIT}.timer",
        files=[service, timer],
        also=[f"{UNIT}.service"],
        restart_for=[timer],
        what="standby units",
        running_name=f"Ensure the standby refreshes {data.standby_refresh_schedule}",
        restart_name="Restart the standby timer for its new schedule",
    )
