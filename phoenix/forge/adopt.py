"""`phoenix adopt`: back up the forge that runs today, as it is, and prove nothing changed.

The forge (the state file's primary, or PHOENIX_HOST) is read over SSH with the adopt deploy's
own facts (facts/gitea.py, phoenix/forge/discover.py); its binary, app.ini, unit, database (without
-wal/-shm) and data and repository folders are fingerprinted by sha256; `adopt.py` installs the
backup job and its timer and nothing else; the job takes the first snapshot; that snapshot is
restored into a temporary folder and verified (phoenix.backup.snapshots.verify); the
fingerprints are taken again and must match. Timed, step by step.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from phoenix.console import Say
from phoenix.errors import PhoenixError
from phoenix.forge.discover import GiteaInstall, config_path, describe
from phoenix.recover import run_deploy
from phoenix.report import Report
from phoenix.sshconf import Target, ssh_command

# Written by a running Gitea (or rebuilt by it): not part of "left as it was".
LIVE = ("sessions", "queues", "indexers", "tmp")
# Gitea never writes these: one changed means the adoption touched the forge.
FIXED = ("binary", "app.ini", "unit")


def _remote(target: Target, command: str, *, timeout: float = 600) -> str:
    proc = subprocess.run(
        ssh_command(target, command), capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise PhoenixError(f"on {target.host}: {proc.stderr.strip()[-300:] or 'ssh failed'}")
    return proc.stdout


def discover(target: Target, unit_name: str = "gitea.service") -> GiteaInstall:
    """The same facts the adopt deploy reads, over SSH."""
    from pyinfra.facts.files import FileContents

    from facts.gitea import GiteaUnit, GiteaVersion

    def fact(cls, **kwargs):
        fact_ = cls()
        raw = fact_.command(**kwargs)
        raw = raw.get_raw_value() if hasattr(raw, "get_raw_value") else raw
        return fact_.process(_remote(target, raw).splitlines())

    unit = fact(GiteaUnit, unit=unit_name)
    lines = fact(FileContents, path=config_path(unit)) if unit else None
    version = fact(GiteaVersion, binary=unit["argv"][0]) if unit else None
    return describe(
        unit, "\n".join(lines) if lines is not None else None, version=version, unit_name=unit_name
    )


def fingerprint(target: Target, forge: GiteaInstall) -> dict[str, str]:
    """sha256 of each of the forge's files, and of each folder's sorted file list with sums."""
    q = shlex.quote
    files = {
        "binary": forge.binary,
        "app.ini": forge.config,
        "unit": forge.unit_file,
        "database": forge.db_path,
    }
    trees = {"data": forge.data_dir, "repositories": forge.repo_root, "custom": forge.custom_dir}
    inside = (
        Path(forge.repo_root).relative_to(forge.data_dir).as_posix()
        if Path(forge.repo_root).is_relative_to(forge.data_dir)
        else None
    )
    skip = " ".join(f"-not -path ./{q(name)}/'*'" for name in (*LIVE, inside) if name)
    db = Path(forge.db_path).name
    script = ["set -e"]
    for key, path in files.items():
        script.append(f"printf '%s ' {q(key)}; sha256sum < {q(path)} | cut -d' ' -f1")
    for key, path in trees.items():
        script.append(
            f"printf '%s ' {q(key)}; if [ -d {q(path)} ]; then cd {q(path)}; "
            f"find . -type f {skip} -not -name {q(db + '-wal')} -not -name {q(db + '-shm')} "
            f"-not -name {q(db + '-journal')} -print0 | sort -z | xargs -0r sha256sum "
            f"| sha256sum | cut -d' ' -f1; else echo absent; fi"
        )
    out = _remote(target, "bash -c " + q("\n".join(script)), timeout=3600)
    return dict(line.split(" ", 1) for line in out.strip().splitlines())


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(key for key in before if after.get(key) != before[key])


def adopt(*, say: Say = print, report_dir: Path) -> Report:
    """Adopt the forge; the report says what was found, the snapshot, and what is unchanged."""
    from phoenix.backup import snapshots as backup
    from phoenix.backup.now import now
    from phoenix.backup.store import store_from_settings
    from phoenix.settings import load
    from phoenix.sshconf import role_target

    settings = load()
    target = role_target("primary")
    report = Report(f"phoenix adopt ({target.host})")
    found: dict = {}

    def find() -> str:
        found["forge"] = forge = discover(
            target, settings.get("adopt_gitea_unit") or "gitea.service"
        )
        found["before"] = fingerprint(target, forge)
        return (
            f"Gitea {forge.version} {forge.binary}, app.ini {forge.config}, data "
            f"{forge.data_dir}, run by {forge.run_user}"
        )

    def deploy() -> str:
        return run_deploy(
            "inventories/forge.py", deploy="adopt.py", log=report_dir / "adopt.deploy.log"
        )

    def snapshot() -> str:
        found["snapshot"] = now(target, settings=settings)
        return f"snapshot {found['snapshot'][:8]}"

    def verify() -> str:
        result = backup.verify(
            store_from_settings(settings),
            snapshot=found["snapshot"],
            read_data_subset=settings.get("backup_verify_subset", "5%"),
        )
        found["counts"] = result.counts
        return result.summary()

    def unchanged() -> str:
        after = fingerprint(target, found["forge"])
        differ = changed(found["before"], after)
        report.extra["unchanged"] = sorted(set(found["before"]) - set(differ))
        if set(differ) & set(FIXED):
            raise PhoenixError(
                f"the adoption changed the forge's {', '.join(differ)}: look "
                f"at {report_dir / 'adopt.deploy.log'}"
            )
        if differ:
            report.extra["changed_while_adopting"] = (
                f"{', '.join(differ)} (Gitea writes them while it runs: users were active)"
            )
        return (
            "binary, app.ini, unit, database, data and repositories as they were"
            if not differ
            else f"changed while adopting: {', '.join(differ)}"
        )

    try:
        for name, step in (
            ("discover", find),
            ("deploy (backup job)", deploy),
            ("first snapshot", snapshot),
            ("test restore", verify),
            ("forge unchanged", unchanged),
        ):
            report.timed(name, step, say)
        report.extra.update(
            {
                "snapshot": found["snapshot"],
                "counts": found["counts"],
                "forge": found["forge"].to_dict(),
            }
        )
    except PhoenixError as exc:
        exc.output = report.to_dict()  # --json prints the report with the error
        raise
    finally:
        report.save(report_dir, "adopt.report")
    return report
