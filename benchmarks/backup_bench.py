"""Backup figures: backup and restore time of a 1 GiB synthetic forge, and what a
small change adds to the repository.

The forge: the lab's Gitea fixture (gitea.db, three git repositories, custom/) plus
repositories of random (incompressible) packs and loose objects up to --size-mib. The real
job (files/phoenix_backup.py) backs it up, first in full, then after a small change (one new
issue, one new loose object, one memory note); then the snapshot is restored as a restore
task would (`phoenix-backup restore`, then phoenix-backup-verify). Prints a table; it does
not pass or fail on time.

    python3 benchmarks/backup_bench.py [--size-mib 1024] [--store local|lab] [--offsite NAME]

Each transport is measured on the same forge, side by side. --store lab (the default as
root): today's SFTP beside the append-only endpoint (the forge's key forced to
`rclone serve restic --stdio --append-only` on the store), to a lab store made for it
(offsite-bench, destroyed at the end unless it existed) in the lab of the PHOENIX_LAB_*
environment (brought up, and down again, if it was down). --store local: a local folder
beside a local `rclone serve restic --append-only` (rclone's own cost, without ssh).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phoenix.backup import snapshots as backup
from phoenix.backup.restic import JOB
from phoenix.backup.store import channel_config
from phoenix.lab.fixtures import make_gitea_backup
from phoenix.settings import REPO
from phoenix.sshconf import Target, ssh_command

PASSWORD = "phoenix-bench-password"
PACK_MIB = 64  # one random pack per 64 MiB
LOOSE = 2000  # and this many 4 KiB loose objects in all


def make_forge(root: Path, size_mib: int) -> None:
    make_gitea_backup(root / "gitea")
    (root / "gitea" / "manifest.json").unlink()
    repos = root / "gitea" / "repositories" / "bench"
    packs = max(1, size_mib // PACK_MIB)
    for n in range(packs):
        pack_dir = repos / f"big-{n % 8}.git" / "objects" / "pack"
        pack_dir.mkdir(parents=True, exist_ok=True)
        with open(pack_dir / f"pack-{n:040x}.pack", "wb") as out:
            out.writelines(os.urandom(1 << 20) for _ in range(PACK_MIB))
    for n in range(LOOSE):
        digest = hashlib.sha1(f"loose-{n}".encode()).hexdigest()
        obj = repos / f"big-{n % 8}.git" / "objects" / digest[:2] / digest[2:]
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(os.urandom(4096))
    (root / "etc").mkdir()
    (root / "etc" / "app.ini").write_text("[server]\nDOMAIN = bench.lab.test\n")
    (root / "memories").mkdir()
    (root / "memories" / "fleet.yaml").write_text("wizards: [ezra, allegro, bezalel]\n")


def small_change(root: Path) -> None:
    conn = sqlite3.connect(root / "gitea" / "gitea.db")
    with conn:
        conn.execute(
            'INSERT INTO issue (repo_id, "index", poster_id, name, content, is_closed, '
            "is_pull, created_unix, updated_unix) VALUES (1, 99, 1, 'bench', 'x', 0, 0, "
            "0, 0)"
        )
    conn.close()
    obj = root / "gitea" / "repositories" / "bench" / "big-0.git" / "objects" / "ff" / ("e" * 38)
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(os.urandom(10_000))
    (root / "memories" / "note.yaml").write_text("bench: a small change\n")


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def job(config: Path, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(JOB), "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"backup_bench: the job failed: {proc.stderr.strip()}")
    return time.monotonic() - started, proc.stdout


def run_sequence(tmp: Path, name: str, config: dict, store: backup.Store, size_of) -> list:
    """The job's figures on one transport: full, unchanged, small change, restore, verify."""
    work = tmp / name
    work.mkdir()
    config = {
        **config,
        "staging_dir": str(work / "staging"),
        "status_file": str(work / "status.json"),
        "cache_dir": str(work / "cache"),
    }
    (work / "config.json").write_text(json.dumps(config))
    backup.init(store)
    forge = tmp / "forge"
    rows = []
    before = size_of()
    seconds, _ = job(work / "config.json", "run")
    first = json.loads((work / "status.json").read_text())
    rows.append(
        (
            "first backup (full)",
            seconds,
            first["stage_seconds"],
            first["backup_seconds"],
            size_of() - before,
        )
    )

    job(work / "config.json", "run")  # the first re-read after a write moves atimes
    base = size_of()
    seconds, _ = job(work / "config.json", "run")
    again = json.loads((work / "status.json").read_text())
    rows.append(
        (
            "backup, nothing changed",
            seconds,
            again["stage_seconds"],
            again["backup_seconds"],
            size_of() - base,
        )
    )

    small_change(forge)
    base = size_of()
    seconds, _ = job(work / "config.json", "run")
    changed = json.loads((work / "status.json").read_text())
    rows.append(
        (
            "backup after a small change",
            seconds,
            changed["stage_seconds"],
            changed["backup_seconds"],
            size_of() - base,
        )
    )
    undo_small_change(forge)

    dest = work / "restore" / "gitea"
    dest.parent.mkdir()
    seconds, _ = job(work / "config.json", "restore", changed["snapshot_id"], str(dest))
    rows.append(("restore (restic restore)", seconds, None, None, None))
    started = time.monotonic()
    verified = subprocess.run(
        [str(REPO / "files" / "phoenix_backup_verify.py"), str(dest)],
        capture_output=True,
        text=True,
        check=False,
    )
    if verified.returncode != 0:
        sys.exit(f"backup_bench: the restored copy failed verification: {verified.stderr}")
    rows.append(("verify the restored copy", time.monotonic() - started, None, None, None))
    shutil.rmtree(work / "restore")
    return rows


def undo_small_change(root: Path) -> None:
    """The forge as it was, so that the next transport measures the same thing."""
    conn = sqlite3.connect(root / "gitea" / "gitea.db")
    with conn:
        conn.execute("DELETE FROM issue WHERE \"index\" = 99 AND name = 'bench'")
    conn.close()
    (
        root / "gitea" / "repositories" / "bench" / "big-0.git" / "objects" / "ff" / ("e" * 38)
    ).unlink()
    (root / "memories" / "note.yaml").unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument(
        "--store", choices=["local", "lab"], default="lab" if os.geteuid() == 0 else "local"
    )
    parser.add_argument("--offsite", default="offsite-bench")
    parser.add_argument("--workdir", default=None, help="where the temp folders go")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="phoenix-backup-bench-", dir=args.workdir))
    cleanup = []
    try:
        started = time.monotonic()
        make_forge(tmp / "forge", args.size_mib)
        forge_bytes = du(tmp / "forge")
        print(
            f"synthetic forge: {forge_bytes / 2**20:.0f} MiB in {time.monotonic() - started:.1f} s",
            file=sys.stderr,
        )
        (tmp / "password").write_text(PASSWORD + "\n")
        (tmp / "password").chmod(0o600)
        base = {
            "password_file": str(tmp / "password"),
            "host": "forge",
            "tag": "phoenix",
            "repo_tag": backup.repo_tag("phoenix"),
            "keep": {},  # no forget: what a run adds stays measurable
            "gitea": {
                "db_path": str(tmp / "forge/gitea/gitea.db"),
                "repo_root": str(tmp / "forge/gitea/repositories"),
                "custom_dir": str(tmp / "forge/gitea/custom"),
                "app_ini": str(tmp / "forge/etc/app.ini"),
                "version": "1.22.3",
            },
            "paths": [str(tmp / "forge/memories")],
            "verifier": str(REPO / "files" / "phoenix_backup_verify.py"),
        }
        transports = []  # (name, job config, operator's Store, size of the repository)
        if args.store == "local":
            for name, append in (("local folder", False), ("append-only, local rclone", True)):
                repo = tmp / f"repo-{len(transports)}"
                config = {**base, "repository": str(repo)}
                if append:  # the store's forced command, run here (no ssh)
                    config.update(
                        repository="rclone:bench",
                        rclone_program=shlex.join(
                            [
                                "sh",
                                "-c",
                                (
                                    "exec rclone serve restic --stdio --append-only "
                                    f"--config /dev/null -q {shlex.quote(str(repo))}"
                                ),
                                "forced",
                            ]
                        ),
                    )
                transports.append(
                    (
                        name,
                        config,
                        backup.Store(repository=str(repo), password=PASSWORD),
                        lambda repo=repo: du(repo),
                    )
                )
        else:
            transports = lab_transports(tmp, base, args.offsite, cleanup)

        results = [
            (name, run_sequence(tmp, f"t{n}", config, store, size_of))
            for n, (name, config, store, size_of) in enumerate(transports)
        ]
        print(
            f"\nforge {forge_bytes / 2**20:.0f} MiB, store: {args.store}, restic {restic_version()}"
        )
        print(
            f"{'':30} {'transport':30} {'total s':>8} {'stage s':>8} {'restic s':>9} {'repo +':>12}"
        )
        for n in range(len(results[0][1])):
            for name, rows in results:
                what, total, stage, restic_s, added = rows[n]
                extra = "" if stage is None else f" {stage:8.1f} {restic_s:9.1f} {human(added):>12}"
                print(f"{what:30} {name:30} {total:8.1f}{extra}")
    finally:
        for step in reversed(cleanup):
            step()
        shutil.rmtree(tmp, ignore_errors=True)


def lab_transports(tmp: Path, base: dict, name: str, cleanup: list) -> list:
    """Today's transport (SFTP, a read-write key) and the append-only endpoint (the forge's
    key forced to `rclone serve restic --stdio --append-only`), to one lab store each."""
    from phoenix.lab import config as labconfig
    from phoenix.lab import lab as lablib
    from phoenix.lab import offsite
    from phoenix.provision.do import DO

    lab = labconfig.load()
    if not lablib.status(lab)["up"]:
        lablib.up(lab, log=lambda m: None)
        cleanup.append(lambda: lablib.down(lab))
    do = DO(token=lab.do_token_file.read_text().strip(), endpoint=lab.do_endpoint)
    existed = offsite.load(lab, name) is not None
    made = offsite.ensure(lab, do, name=name, path="/srv/restic/bench-append-only")
    if not existed:
        cleanup.append(lambda: offsite.destroy(lab, do, made))
    root = offsite.root_target(lab, made)
    sftp_path = "/srv/restic/bench-sftp"
    cleanup.append(
        lambda: subprocess.run(ssh_command(root, f"rm -rf {sftp_path} {made.path}"), check=False)
    )
    (tmp / "known_hosts").write_text("".join(line + "\n" for line in made.known_hosts))
    # The operator's key has SFTP on the store: today's transport, byte for byte.
    sftp = Target(host=made.ip, user=made.user, key=lab.ssh_key, known_hosts=tmp / "known_hosts")
    forge_key = Target(
        host=made.ip, user=made.user, key=offsite.backup_key(lab), known_hosts=tmp / "known_hosts"
    )

    def size_of(path: str):
        def measure() -> int:
            out = subprocess.run(
                ssh_command(root, f"du -sb {path}"), capture_output=True, text=True, check=False
            ).stdout
            return int(out.split()[0])

        return measure

    transports = []
    for label, path, append in (
        ("sftp (today's)", sftp_path, False),
        ("append-only (rclone over ssh)", made.path, True),
    ):
        repository = f"sftp:{made.user}@{made.ip}:{path}"
        config = {
            **base,
            "repository": repository,
            **channel_config(repository, forge_key if append else sftp, append_only=append),
        }
        transports.append(
            (
                label,
                config,
                backup.Store(repository=repository, password=PASSWORD, ssh=sftp),
                size_of(path),
            )
        )
    return transports


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def restic_version() -> str:
    return subprocess.run(
        ["restic", "version"], capture_output=True, text=True, check=False
    ).stdout.split()[1]


if __name__ == "__main__":
    main()
