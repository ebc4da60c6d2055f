"""Backup figures (issue 6): backup and restore time of a 1 GiB synthetic forge, and what a
small change adds to the repository.

The forge: the lab's Gitea fixture (gitea.db, three git repositories, custom/) plus
repositories of random (incompressible) packs and loose objects up to --size-mib. The real
job (files/phoenix-backup) backs it up, first in full, then after a small change (one new
issue, one new loose object, one memory note); then the snapshot is restored as a restore
task would (`phoenix-backup restore`, then phoenix-backup-verify). Prints a table; it does
not pass or fail on time.

    python3 benchmarks/backup_bench.py [--size-mib 1024] [--store local|lab] [--offsite NAME]

--store lab sends to the lab's offsite SFTP store (root, the lab up; made if missing, as
offsite-bench, and destroyed at the end unless it existed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phoenix import backup
from phoenix.lab.fixtures import make_gitea_backup
from phoenix.settings import REPO
from phoenix.sshconf import Target, ssh_command

PASSWORD = "phoenix-bench-password"
PACK_MIB = 64          # one random pack per 64 MiB
LOOSE = 2000           # and this many 4 KiB loose objects in all


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
        conn.execute("INSERT INTO issue (repo_id, \"index\", poster_id, name, content, is_closed, "
                     "is_pull, created_unix, updated_unix) VALUES (1, 99, 1, 'bench', 'x', 0, 0, "
                     "0, 0)")
    conn.close()
    obj = root / "gitea" / "repositories" / "bench" / "big-0.git" / "objects" / "ff" / ("e" * 38)
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(os.urandom(10_000))
    (root / "memories" / "note.yaml").write_text("bench: a small change\n")


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def job(config: Path, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(backup.JOB), "--config", str(config), *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"backup_bench: the job failed: {proc.stderr.strip()}")
    return time.monotonic() - started, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--store", choices=["local", "lab"], default="local")
    parser.add_argument("--offsite", default="offsite-bench")
    parser.add_argument("--workdir", default=None, help="where the temp folders go")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="phoenix-backup-bench-", dir=args.workdir))
    cleanup = []
    try:
        started = time.monotonic()
        make_forge(tmp / "forge", args.size_mib)
        forge_bytes = du(tmp / "forge")
        print(f"synthetic forge: {forge_bytes / 2**20:.0f} MiB in "
              f"{time.monotonic() - started:.1f} s", file=sys.stderr)
        (tmp / "password").write_text(PASSWORD + "\n")
        (tmp / "password").chmod(0o600)
        config = {
            "password_file": str(tmp / "password"), "host": "forge", "tag": "phoenix",
            "keep": {},   # no forget: what a run adds stays measurable
            "gitea": {"db_path": str(tmp / "forge/gitea/gitea.db"),
                      "repo_root": str(tmp / "forge/gitea/repositories"),
                      "custom_dir": str(tmp / "forge/gitea/custom"),
                      "app_ini": str(tmp / "forge/etc/app.ini"), "version": "1.22.3"},
            "paths": [str(tmp / "forge/memories")], "staging_dir": str(tmp / "staging"),
            "status_file": str(tmp / "status.json"), "cache_dir": str(tmp / "cache"),
            "verifier": str(REPO / "files" / "phoenix-backup-verify"),
        }
        size_of = None
        if args.store == "local":
            config["repository"] = str(tmp / "repo")
            store = backup.Store(repository=config["repository"], password=PASSWORD)
            size_of = lambda: du(tmp / "repo")
        else:
            from phoenix.do import DO
            from phoenix.lab import config as labconfig
            from phoenix.lab import offsite

            lab = labconfig.load()
            do = DO(token=lab.do_token_file.read_text().strip(), endpoint=lab.do_endpoint)
            existed = offsite.load(lab, args.offsite) is not None
            made = offsite.ensure(lab, do, name=args.offsite)
            if not existed:
                cleanup.append(lambda: offsite.destroy(lab, do, made))
            path = f"/srv/restic/bench-{os.getpid()}"
            root = offsite.root_target(lab, made)
            cleanup.append(lambda: subprocess.run(ssh_command(root, f"rm -rf {path}"), check=False))
            (tmp / "known_hosts").write_text("".join(l + "\n" for l in made.known_hosts))
            target = Target(host=made.ip, user=made.user, key=lab.ssh_key,
                            known_hosts=tmp / "known_hosts")
            config["repository"] = f"sftp:{made.user}@{made.ip}:{path}"
            config["sftp_command"] = backup.sftp_command(target)
            store = backup.Store(repository=config["repository"], password=PASSWORD, ssh=target)

            def size_of() -> int:
                out = subprocess.run(ssh_command(root, f"du -sb {path}"), capture_output=True,
                                     text=True, check=False).stdout
                return int(out.split()[0])
        (tmp / "config.json").write_text(json.dumps(config))
        backup.init(store)

        rows = []
        before = size_of()
        seconds, _ = job(tmp / "config.json", "run")
        first = json.loads((tmp / "status.json").read_text())
        full = size_of() - before
        rows.append(("first backup (full)", seconds, first["stage_seconds"],
                     first["backup_seconds"], full))

        job(tmp / "config.json", "run")  # the first re-read after a write moves atimes
        base = size_of()
        seconds, _ = job(tmp / "config.json", "run")
        again = json.loads((tmp / "status.json").read_text())
        rows.append(("backup, nothing changed", seconds, again["stage_seconds"],
                     again["backup_seconds"], size_of() - base))

        small_change(tmp / "forge")
        base = size_of()
        seconds, _ = job(tmp / "config.json", "run")
        changed = json.loads((tmp / "status.json").read_text())
        rows.append(("backup after a small change", seconds, changed["stage_seconds"],
                     changed["backup_seconds"], size_of() - base))

        dest = tmp / "restore" / "gitea"
        dest.parent.mkdir()
        seconds, _ = job(tmp / "config.json", "restore", changed["snapshot_id"], str(dest))
        started = time.monotonic()
        verified = subprocess.run([str(REPO / "files" / "phoenix-backup-verify"), str(dest)],
                                  capture_output=True, text=True, check=False)
        verify_seconds = time.monotonic() - started
        if verified.returncode != 0:
            sys.exit(f"backup_bench: the restored copy failed verification: {verified.stderr}")

        print(f"\nforge {forge_bytes / 2**20:.0f} MiB, store: {args.store} "
              f"({config['repository']}), restic {restic_version()}")
        print(f"{'':30} {'total s':>8} {'stage s':>8} {'restic s':>9} {'repo +':>12}")
        for name, total, stage, restic_s, added in rows:
            print(f"{name:30} {total:8.1f} {stage:8.1f} {restic_s:9.1f} {human(added):>12}")
        print(f"{'restore (restic restore)':30} {seconds:8.1f}")
        print(f"{'verify the restored copy':30} {verify_seconds:8.1f}")
        print(f"restic's data_added: nothing changed {human(again['data_added'])}, small change "
              f"{human(changed['data_added'])}")
    finally:
        for step in reversed(cleanup):
            step()
        shutil.rmtree(tmp, ignore_errors=True)


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def restic_version() -> str:
    return subprocess.run(["restic", "version"], capture_output=True, text=True, check=False).stdout.split()[1]


if __name__ == "__main__":
    main()
