"""`phoenix backup now`: a last snapshot taken by the forge itself while it still answers
(runbook step 4, "if accessible"), through the job Phoenix installed there (tasks/backups.py),
over pinned SSH. The snapshot's id comes back from the job's status file.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from phoenix import sshconf
from phoenix.errors import PhoenixError
from phoenix.sshconf import Target


def now(target: Target, *, settings: Mapping[str, Any], timeout: float = 3600) -> str:
    """Run the backup job on a forge that still answers (runbook step 4, "if accessible") and
    return the id of the snapshot it made. The forge must run Phoenix's job (tasks/backups.py)."""
    unit = "phoenix-backup.service"
    status_file = settings.get("backup_status_file") or "/var/lib/phoenix/backup/last-success.json"
    remote = (
        f"systemctl cat {unit} >/dev/null 2>&1 || {{ echo 'no {unit} on this host' >&2; "
        f"exit 3; }}; systemctl start {unit} || {{ journalctl -u {unit} -n 40 -o cat "
        f"--no-pager >&2; exit 4; }}; cat {shlex.quote(status_file)}"
    )
    proc = sshconf.run(
        target, remote, timeout=timeout, late=f"the backup on {target.host} did not finish"
    )
    if proc.returncode == 3:
        raise PhoenixError(
            f"{target.host} has no Phoenix backup job ({unit}): converge it with "
            "the deploy (tasks/backups.py) first"
        )
    if proc.returncode == 4:
        # The job's own FAILED line; systemd may add its own lines after it (seen in nspawn:
        # "Failed to kill control group"), hence 40 lines and the FAILED ones first.
        said = [
            line.split("phoenix-backup: ", 1)[1]
            for line in proc.stderr.splitlines()
            if "phoenix-backup: " in line
        ]
        lines = [line.removeprefix("FAILED: ") for line in said if line.startswith("FAILED: ")]
        raise PhoenixError(
            f"the backup job failed on {target.host}: "
            + (lines[-1] if lines else proc.stderr.strip()[-300:])
            + f" (journalctl -u {unit} there)"
        )
    if proc.returncode != 0:
        raise PhoenixError(
            f"cannot run the backup on {target.host} over ssh: {sshconf.last_line(proc.stderr)}"
        )
    try:
        return json.loads(proc.stdout)["snapshot_id"]
    except (ValueError, KeyError):
        raise PhoenixError(
            f"the backup on {target.host} wrote no snapshot id to {status_file}"
        ) from None
