"""Adopt the forge that runs today: find its Gitea as the host runs it and install
only the backup job and its timer. Gitea's binary, app.ini, unit, data and repositories are
read, never written: nothing of the forge is restarted or replaced.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.facts.files import FileContents

from facts.gitea import GiteaUnit, GiteaVersion
from phoenix.errors import PhoenixError
from phoenix.forge.discover import GiteaInstall, config_path, describe
from tasks.backups import configure_backups
from tasks.base import wait_for_boot

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = ("adopt_gitea_unit", "backup_repository")


def discover() -> GiteaInstall:
    """The forge's Gitea, from its unit's ExecStart and the app.ini it names (facts)."""
    name = host.data.adopt_gitea_unit
    unit = host.get_fact(GiteaUnit, unit=name)
    try:
        config = config_path(unit) if unit else None
        lines = host.get_fact(FileContents, path=config) if config else None
        version = host.get_fact(GiteaVersion, binary=unit["argv"][0]) if unit else None
        return describe(
            unit, "\n".join(lines) if lines is not None else None, version=version, unit_name=name
        )
    except PhoenixError as exc:
        raise DeployError(f"{host.name}: {exc}") from None


@deploy("Adopt the running forge: its backup job, nothing else")
def adopt_forge() -> None:
    if not host.data.backup_repository:
        raise DeployError(
            "backup_repository is not set: adopting a forge means backing it up; "
            "say where the offsite restic repository is (group_data)"
        )
    wait_for_boot()  # a fact: it waits for cloud-init and the dpkg lock, and changes nothing
    forge = discover()
    if forge.outside_data:
        host.noop(
            "storage outside the data folder is saved below files/ of each snapshot: "
            + ", ".join(forge.outside_data)
        )
    # app.ini's *_URI files hold the forge's secrets: saved below files/ as the folders are
    configure_backups(gitea=forge.job_paths(), extra_paths=forge.outside_data + forge.secret_files)
