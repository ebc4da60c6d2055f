"""Restore and repository-snapshot figures, on a --size-mib synthetic forge (the
one backup_bench.py makes) with a local restic repository and the pinned Litestream:

1. what frequent snapshots every `frequent_snapshot_interval` cost the forge and the store:
   `phoenix-backup repositories` run after each of --pushes small pushes (a 10 KB object and
   a ref), and once with nothing changed: wall and CPU seconds (the job and restic, from
   getrusage of the children), bytes the store gains; per day at --interval seconds;
   then, side by side on the same forge with a data folder and a house's files added (the
   attachments and LFS objects a twentieth of --size-mib), repositories-only and all-files
   frequent snapshots after the same push, upload and memory rewrite: CPU seconds and store
   bytes per day, and the restore time of the newest one (`phoenix-restore repositories`);
2. the forge's restore time with replicas beside snapshot-only, in one run: snapshot-only is
   what a restore does without replicas (`phoenix-restore stage` of the full snapshot, then
   phoenix-backup-verify); with replicas it is that, plus gitea.db from its Litestream file
   replica (`phoenix-restore replay`: restore, integrity check, lines up), plus the
   repositories from the newest repository snapshot (`phoenix-restore repositories`:
   restic restore, git fsck --connectivity-only per repository, swap, branch table).

    python3 benchmarks/rpo_bench.py [--size-mib 1024] [--db-mib 64] [--pushes 3]
                                    [--interval 300]

A local store: the lab's SFTP transfer comes on top (backup_bench.py measures restic over it).
Prints a table; it does not pass or fail on time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.backup_bench import PASSWORD, du, make_forge
from benchmarks.litestream_bench import binary as litestream_binary
from phoenix.backup import snapshots as backup
from phoenix.backup.restic import JOB
from phoenix.settings import REPO

RESTORE = REPO / "files" / "phoenix_restore.py"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def job(config: Path, *args: str, program: Path = JOB) -> tuple[float, float, str]:
    """(wall s, CPU s, stderr) of one run of the job (or of the restore's program)."""
    cpu, started = children_cpu(), time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(program), "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"rpo_bench: {program.name} {args[0]} failed: {proc.stderr.strip()}")
    return time.monotonic() - started, children_cpu() - cpu, proc.stderr


def restore_config(work: Path, job_config: Path, dest: Path) -> Path:
    """phoenix-restore's configuration for a restore into `dest` through the job's line."""
    path = work / "restore-config.json"
    path.write_text(
        json.dumps(
            {
                "db_path": str(dest / "gitea.db"),
                "repo_root": str(dest / "repositories"),
                "aside_dir": str(work / "aside"),
                "backup_job": str(JOB),
                "backup_config": str(job_config),
            }
        )
    )
    return path


def push(repo: Path, n: int) -> None:
    """A small push as the store sees it: a commit of one new 10 KB file, its branch moved."""

    def git(*args: str, data: bytes | None = None) -> str:
        return (
            subprocess.run(
                ["git", "--git-dir", str(repo), *args], input=data, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )

    blob = git("hash-object", "-w", "--stdin", data=os.urandom(10_000))
    tree = git("mktree", data=f"100644 blob {blob}\tbench-{n}.bin\n".encode())
    head = git("rev-parse", "HEAD")
    commit = git(
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@lab.test",
        "commit-tree",
        tree,
        "-p",
        head,
        "-m",
        f"bench push {n}",
    )
    git("update-ref", "HEAD", commit)


def add_files(forge: Path, *, attachments_mib: int) -> Path:
    """What a forge holds besides its repositories, at a realistic share: Gitea's data folder
    (attachments and LFS objects of 256 KiB, 30 avatars, a session folder Gitea rebuilds) and
    a house's files (memories, skills, a state.db Litestream streams). Returns the house."""
    data = forge / "gitea" / "data"
    for n in range(attachments_mib * 4):
        name = f"{n:08x}-bench"
        kind = ("attachments", name[0], name[1], name) if n % 2 else ("lfs", "ab", "cd", name)
        path = data.joinpath(*kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(256 << 10))
    (data / "avatars").mkdir(parents=True, exist_ok=True)
    for n in range(30):
        (data / "avatars" / f"{n:064x}").write_bytes(os.urandom(4096))
    (data / "sessions").mkdir(exist_ok=True)
    house = forge / "hermes" / "ezra"
    for folder in ("memories", "skills", "cron/output"):
        (house / folder).mkdir(parents=True, exist_ok=True)
        for n in range(20):
            (house / folder / f"note-{n}.md").write_text(f"{folder} {n}\n" * 50)
    conn = sqlite3.connect(house / "state.db")
    with conn:
        conn.execute("CREATE TABLE sessions (id TEXT, body TEXT)")
    conn.close()
    return house


def upload(forge: Path, house: Path, n: int) -> None:
    """Between two runs, besides a push: an attachment uploaded, a memory rewritten, a chat."""
    path = forge / "gitea" / "data" / "attachments" / "f" / "f" / f"ff-upload-{n}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(256 << 10))
    (house / "memories" / "MEMORY.md").write_text(f"remembered {n}\n" * 40)
    conn = sqlite3.connect(house / "state.db")
    with conn:
        conn.execute("INSERT INTO sessions VALUES (?, ?)", (f"s{n}", "x" * 4000))
    conn.close()


def grow_database(db: Path, mib: int) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS bench_filler(id INTEGER PRIMARY KEY, body TEXT)")
    body = os.urandom(3000).hex()
    conn.executemany(
        "INSERT INTO bench_filler(body) VALUES (?)", ((body,) for _ in range(mib * 2**20 // 6100))
    )
    conn.commit()
    conn.close()


def replicate(litestream: str, db: Path, replica: Path, work: Path, writes) -> Path:
    """`litestream replicate` of db to a file replica while `writes()` runs, until caught up;
    returns the config a restore reads."""
    cfg = work / "litestream.yml"
    cfg.write_text(
        json.dumps(
            {
                "dbs": [
                    {
                        "path": str(db),
                        "replica": {"type": "file", "path": str(replica), "sync-interval": "1s"},
                    }
                ]
            }
        )
    )
    proc = subprocess.Popen(
        [litestream, "replicate", "-config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and du(replica) < db.stat().st_size // 3:
            time.sleep(1)
        writes()
        time.sleep(4)  # the last sync
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--db-mib", type=int, default=64)
    parser.add_argument("--pushes", type=int, default=3)
    parser.add_argument("--interval", type=int, default=300)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="phoenix-rpo-bench-", dir=args.workdir))
    try:
        forge = tmp / "forge"
        make_forge(forge, args.size_mib)
        db = forge / "gitea" / "gitea.db"
        grow_database(db, args.db_mib)
        (tmp / "password").write_text(PASSWORD + "\n")
        (tmp / "password").chmod(0o600)
        repo = tmp / "repo"
        config = {
            "repository": str(repo),
            "password_file": str(tmp / "password"),
            "host": "forge",
            "tag": "phoenix",
            "repo_tag": backup.repo_tag("phoenix"),
            "keep": {},
            "gitea": {
                "db_path": str(db),
                "repo_root": str(forge / "gitea" / "repositories"),
                "custom_dir": str(forge / "gitea" / "custom"),
                "app_ini": str(forge / "etc" / "app.ini"),
                "version": "1.22.3",
            },
            "paths": [],
            "staging_dir": str(tmp / "staging"),
            "status_file": str(tmp / "status.json"),
            "cache_dir": str(tmp / "cache"),
            "repo_status_file": str(tmp / "repositories.json"),
            "verifier": str(REPO / "files" / "phoenix_backup_verify.py"),
        }
        cfg = tmp / "config.json"
        cfg.write_text(json.dumps(config))
        backup.init(backup.Store(repository=str(repo), password=PASSWORD))
        litestream = litestream_binary(tmp)

        job(cfg, "run")
        full = json.loads((tmp / "status.json").read_text())["snapshot_id"]
        forge_mib = du(forge) / 2**20
        # 1. repository snapshots: the first (all new to this tag, but the data is in the
        # repository already), then after small pushes, then with nothing changed.
        bare = sorted(
            p
            for p in (forge / "gitea" / "repositories").glob("*/*.git")
            if p.parent.name != "bench"
        )[0]  # a real git repository of the fixture
        rows = []
        before = du(repo)
        rows.append(("first repository snapshot", *job(cfg, "repositories")[:2], du(repo) - before))
        pushed = []
        for n in range(args.pushes):
            push(bare, n + 1)
            before = du(repo)
            wall, cpu, _ = job(cfg, "repositories")
            pushed.append((wall, cpu, du(repo) - before))
        rows.append(
            (
                f"after a small push (mean of {args.pushes})",
                sum(p[0] for p in pushed) / len(pushed),
                sum(p[1] for p in pushed) / len(pushed),
                sum(p[2] for p in pushed) // len(pushed),
            )
        )
        before = du(repo)
        rows.append(("nothing changed", *job(cfg, "repositories")[:2], du(repo) - before))

        # 1b. the same forge, its data folder and a house's files added: repositories-only
        # frequent snapshots beside all-files ones, each into a copy of the same store, after
        # the same changes (a push, an upload, a memory rewritten).
        house = add_files(forge, attachments_mib=max(4, args.size_mib // 20))
        config["gitea"]["data_dir"] = str(forge / "gitea" / "data")
        cfg.write_text(json.dumps(config))
        job(cfg, "run")
        full_all = json.loads((tmp / "status.json").read_text())["snapshot_id"]
        variants = {}
        for name, data_dir, paths in (
            ("repositories only", None, []),
            ("every file", str(forge / "gitea" / "data"), [str(forge / "hermes")]),
        ):
            store_dir = tmp / f"repo-{len(variants)}"
            shutil.copytree(repo, store_dir, symlinks=True)
            settings = dict(config, repository=str(store_dir), paths=paths)
            settings["gitea"] = dict(config["gitea"], data_dir=data_dir)
            settings["repo_staging_dir"] = str(tmp / f"frequent-staging-{len(variants)}")
            # a cache of its own: the copy has the same repository id, and a shared cache would
            # make restic take blobs of the other store for its own
            settings["cache_dir"] = str(tmp / f"cache-{len(variants)}")
            vcfg = tmp / f"config-{len(variants)}.json"
            vcfg.write_text(json.dumps(settings))
            job(vcfg, "repositories")  # the first run after the full snapshot
            variants[name] = {"config": vcfg, "store": store_dir, "runs": []}
        for n in range(args.pushes):
            push(bare, 100 + n)
            upload(forge, house, n)
            order = list(variants.values())
            for variant in order if n % 2 == 0 else order[::-1]:  # neither always first
                before = du(variant["store"])
                wall, cpu, _ = job(variant["config"], "repositories")
                variant["runs"].append((wall, cpu, du(variant["store"]) - before))
        for name, variant in variants.items():  # the restore of the newest one, each
            dest = tmp / f"restore-{name.split()[0]}" / "gitea"
            dest.parent.mkdir()
            tool = restore_config(tmp, variant["config"], dest)
            job(tool, "stage", full_all, str(dest), program=RESTORE)
            extra = json.loads(tool.read_text())
            if name == "every file":
                extra.update(data_dir=str(dest / "data"), paths=[str(forge / "hermes")])
            tool.write_text(json.dumps(extra))
            variant["restore_s"] = job(
                tool, "repositories", full_all, "--report", str(tmp / "v.json"), program=RESTORE
            )[0]
            shutil.rmtree(dest.parent)

        # 2. the restore, snapshot-only and with replicas, of the same disaster: writes to
        # gitea.db after the full snapshot streamed to the replica.
        def late_writes() -> None:
            conn = sqlite3.connect(db)
            for i in range(50):
                conn.execute("INSERT INTO bench_filler(body) VALUES (?)", (f"late {i}",))
                conn.commit()
            conn.close()

        litestream_cfg = replicate(litestream, db, tmp / "replica", tmp, late_writes)

        dest = tmp / "restore-a" / "gitea"
        dest.parent.mkdir()
        tool = restore_config(tmp, cfg, dest)
        restic_s = job(tool, "stage", full, str(dest), program=RESTORE)[0]
        started = time.monotonic()
        subprocess.run(
            [str(REPO / "files" / "phoenix_backup_verify.py"), str(dest)],
            check=True,
            capture_output=True,
        )
        verify_s = time.monotonic() - started
        snapshot_only = restic_s + verify_s
        shutil.rmtree(tmp / "restore-a")

        dest = tmp / "restore-b" / "gitea"
        dest.parent.mkdir()
        tool = restore_config(tmp, cfg, dest)
        started = time.monotonic()
        job(tool, "stage", full, str(dest), program=RESTORE)
        subprocess.run(
            [str(REPO / "files" / "phoenix_backup_verify.py"), str(dest)],
            check=True,
            capture_output=True,
        )
        base_s = time.monotonic() - started
        spec = tmp / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "litestream": litestream,
                    "source": "forge",
                    "manifest": str(dest / "manifest.json"),
                    "timestamp": None,
                    "timeout": 600,
                    "repo_root": str(dest / "repositories"),
                    "report": str(tmp / "litestream.json"),
                    "dbs": [
                        {
                            "path": str(dest / "gitea.db"),
                            "name": "gitea",
                            "user": "root",
                            "config": {
                                "dbs": [
                                    {
                                        "path": str(dest / "gitea.db"),
                                        "replica": json.loads(litestream_cfg.read_text())["dbs"][0][
                                            "replica"
                                        ],
                                    }
                                ]
                            },
                        }
                    ],
                }
            )
        )
        replica_s = job(tool, "replay", str(spec), program=RESTORE)[0]
        used = json.loads((tmp / "litestream.json").read_text())["databases"][0]["used"]
        newer_s = job(
            tool, "repositories", full, "--report", str(tmp / "newer.json"), program=RESTORE
        )[0]
        newer = json.loads((tmp / "newer.json").read_text())
        with_replicas = base_s + replica_s + newer_s

        per_day = 86400 / args.interval
        restic = subprocess.run(["restic", "version"], capture_output=True, text=True)
        print(
            f"\nforge {forge_mib:.0f} MiB (gitea.db {db.stat().st_size / 2**20:.0f} MiB), "
            f"local restic repository, restic {restic.stdout.split()[1]}"
        )
        print(f"repository snapshots ({args.interval} s apart: {per_day:.0f} a day)")
        print(
            f"{'':36} {'wall s':>7} {'CPU s':>7} {'store +':>10} "
            f"{'CPU s/day':>10} {'store/day':>10}"
        )
        for what, wall, cpu, added in rows:
            print(
                f"{what:36} {wall:7.2f} {cpu:7.2f} {added / 2**10:8.0f} KiB "
                f"{cpu * per_day:10.0f} {added * per_day / 2**20:6.0f} MiB"
            )
        print(
            "  (per day: if every run were like this row; a forge pushes between some "
            "runs, not all)"
        )
        runs = {name: v["runs"] for name, v in variants.items()}
        print(
            f"frequent snapshots, side by side on the same forge (its data folder and a "
            f"house's files added), after a push, an upload and a memory rewritten "
            f"(mean of {args.pushes}), {per_day:.0f} a day"
        )
        print(f"{'':20} {'wall s':>7} {'CPU s/day':>10} {'store/day':>10} {'restore s':>10}")
        for name, rows_ in runs.items():
            mean = [sum(r[i] for r in rows_) / len(rows_) for i in range(3)]
            print(
                f"{name:20} {mean[0]:7.2f} {mean[1] * per_day:10.0f} "
                f"{mean[2] * per_day / 2**20:6.0f} MiB {variants[name]['restore_s']:10.1f}"
            )
        print(
            "  (restore s: `phoenix-restore repositories` of the newest one after the full "
            "snapshot's restore; CPU of the job and restic)"
        )
        print("restore of the forge, side by side")
        print(f"  snapshot-only (restic restore + verify)             {snapshot_only:7.1f} s")
        print(f"  with replicas: restic restore + verify              {base_s:7.1f} s")
        print(f"                 + gitea.db from its replica ({used})   {replica_s:7.1f} s")
        print(
            f"                 + newest repository snapshot          {newer_s:7.1f} s "
            f"({len(newer['replaced'])} repositories replaced, "
            f"{len(newer['kept_full'])} kept)"
        )
        print(
            f"                 = total                               {with_replicas:7.1f} s "
            f"(+{with_replicas - snapshot_only:.1f} s; the lab's SFTP transfer on top)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
