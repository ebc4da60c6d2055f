"""Import figures: how long a `gitea dump` of --rows rows (xorm's dialect, as Gitea 1.22
writes gitea-db.sql) takes to become a sealed Gitea folder, and what the sandbox costs.

The forge: the lab's Gitea fixture plus --rows comments of a few hundred bytes, each with a
line break and a quote (so xorm writes them as '..' || X'0a' || '..'). The Gitea stand-in's
xorm_dump writes the SQL; the zip holds it alone (--skip-repository). Timed: the import as
`phoenix recover` runs it (phoenix/backup/importers.py import_dump: the SQL loaded statement
by statement under the authorizer and the deadline, then checked and sealed), the SQL load
alone, and the same SQL through a bare executescript in one transaction (what the sandbox
costs). --autocommit also times a bare executescript without one: xorm's dump has no BEGIN, so
that is what `sqlite3 gitea.db <gitea-db.sql` costs (a commit per row; minutes). No root, no
lab. Prints a table; it does not pass or fail on time.
    python3 benchmarks/import_bench.py [--rows 100000] [--autocommit]
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.lab_bench import print_table  # noqa: E402  (path set above)
from phoenix.backup import dumpsql, importers  # noqa: E402
from phoenix.lab.fixtures import GITEA_VERSION, make_gitea_backup, standin_module  # noqa: E402


def make_forge_db(folder: Path, rows: int) -> Path:
    make_gitea_backup(folder)
    db = folder / "gitea.db"
    body = "Wizard {n} reports in.\nIt's healthy; last beat at {n} s. " + "x" * 200
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO comment (type, poster_id, issue_id, content, created_unix, "
            "updated_unix) VALUES (0, 1, 1, ?, ?, ?)",
            ((body.format(n=n), 1764300000 + n, 1764300000 + n) for n in range(rows)),
        )
    return db


def bare_executescript(db: Path, sql: str) -> float:
    started = time.monotonic()
    conn = sqlite3.connect(db)
    try:
        conn.executescript(sql)
    finally:
        conn.close()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--autocommit", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phoenix-import-bench-") as tmp:
        root = Path(tmp)
        db = make_forge_db(root / "forge", args.rows)
        with sqlite3.connect(db) as conn:
            total = sum(
                conn.execute(f"SELECT count(*) FROM `{name}`").fetchone()[0]
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name != 'sqlite_sequence'"
                ).fetchall()
            )
            started = time.monotonic()
            sql = "".join(standin_module("gitea").xorm_dump(conn))
            dumped = time.monotonic() - started
        dump = root / "gitea-dump.zip"
        with zipfile.ZipFile(dump, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(importers.DUMP_SQL, sql)

        started = time.monotonic()
        importers.import_dump(dump, root / "imported", gitea_version=GITEA_VERSION)
        imported = time.monotonic() - started
        started = time.monotonic()
        dumpsql.load(
            io.StringIO(sql, newline=""),
            root / "loaded.db",
            statement_bytes=importers.LIMITS.statement_bytes,
            max_bytes=len(sql) * importers.LIMITS.db_growth + (64 << 20),
            seconds=importers.LIMITS.sql_seconds,
        )
        loaded = time.monotonic() - started
        bare = bare_executescript(root / "bare.db", "BEGIN;\n" + sql + "COMMIT;\n")
        rows = [
            ("rows in the dump", f"{total}"),
            ("gitea-db.sql", f"{len(sql.encode()) / 2**20:.1f} MiB"),
            ("gitea dump zip", f"{dump.stat().st_size / 2**20:.1f} MiB"),
            (
                "imported gitea.db",
                f"{(root / 'imported' / 'gitea.db').stat().st_size / 2**20:.1f} MiB",
            ),
            ("xorm_dump (stand-in)", f"{dumped:.2f} s"),
            ("import_dump: load, check, seal", f"{imported:.2f} s"),
            ("  SQL load alone (sandboxed)", f"{loaded:.2f} s ({total / loaded:,.0f} rows/s)"),
            ("  bare executescript, one transaction", f"{bare:.2f} s"),
        ]
        if args.autocommit:
            committed = bare_executescript(root / "autocommit.db", sql)
            rows.append(("  bare executescript, a commit per row", f"{committed:.2f} s"))
        print_table(rows)


if __name__ == "__main__":
    main()
