"""Imports: a foreign backup becomes a sealed Gitea folder of the snapshot's layout.

A `gitea dump` zip (Gitea 1.22's cmd/dump.go layout, the database from its gitea-db.sql), or
the runbook's backup (a folder with gitea.db or the newest gitea-YYYYMMDD.db, and custom/),
maybe fetched from the old forge first (phoenix/backup/fetch.py). Each is checked and sealed
by the verifier a restore runs (files/phoenix_backup_verify.py); each returns what it lacks
and never invents the rest. phoenix/backup/sources.py resolves a restore_source to one of
these.
"""

from __future__ import annotations

import datetime
import io
import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phoenix.backup import dumpsql
from phoenix.errors import PhoenixError

DUMP_SQL = "gitea-db.sql"
# What a restore never needs from a Gitea data folder (Gitea rebuilds it); the job's default
# backup_gitea_exclude, and the log folder a dump carries.
REBUILT = ("sessions", "queues", "indexers", "tmp")
DATED_DB = re.compile(r"^gitea-(\d{8})\.db$")
DB_FILES = ("gitea.db", "gitea.db-wal", "gitea.db-shm", "gitea.db-journal")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What importing a foreign backup may cost here. Whoever took the forge may have written
    it: a zip that unpacks a thousandfold, SQL that runs forever, a stream that never ends."""

    # One file of a dump: above any git pack or LFS object a small forge keeps (Gitea's
    # LFS_MAX_FILE_SIZE is unlimited by default, so the bound is ours).
    member_bytes: int = 16 << 30
    # The files a dump unpacks to disk, over their packed size: git packs, LFS objects and
    # avatars do not shrink, templates ~5x, a deflate bomb ~1000x. (gitea-db.sql is not
    # unpacked: it streams into the database, whose statements, size and time are bounded.)
    expansion: int = 100
    # One SQL statement, that is one row: Gitea keeps files outside its database.
    statement_bytes: int = 64 << 20
    # The database built over its SQL's size: indexes add, X'..' blobs and xorm's column
    # names on every row take away.
    db_growth: int = 4
    # Loading the SQL: 11k-21k rows a second on a loaded machine (benchmarks/import_bench.py),
    # so 15 minutes is 10M rows or more, well past a small forge's database.
    sql_seconds: float = 900
    # A runbook backup fetched from the forge (its databases, custom/, maybe the
    # repositories), and the hour its copy may take.
    fetch_bytes: int = 64 << 30
    fetch_seconds: float = 3600


LIMITS = Limits()


def _verifier() -> Any:
    from phoenix.backup.snapshots import VERIFIER
    from phoenix.scripts import load

    return load(VERIFIER)


def _copytree(src: Path, dest: Path, *, skip: tuple[str, ...] = ()) -> None:
    """src's regular files and folders below dest (symlinks and sockets are not data here)."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        dirnames[:] = sorted(n for n in dirnames if (rel / n).as_posix() not in skip)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            path = Path(dirpath) / name
            if (rel / name).as_posix() in skip or not path.is_file() or path.is_symlink():
                continue
            shutil.copy2(path, dest / rel / name)


def _created(path: Path) -> str:
    """The backup's own time (its database's mtime): the same input seals the same manifest."""
    stamp = datetime.datetime.fromtimestamp(int(path.stat().st_mtime), datetime.UTC)
    return stamp.isoformat()


def seal(folder: Path, *, what: str, gitea_version: str, created: str) -> list[str]:
    """Check an imported Gitea folder and write its manifest; returns what it lacks. Refuses
    (PhoenixError) a database that is not sound, or repositories that disagree with it."""
    verifier = _verifier()
    db = folder / "gitea.db"
    try:
        counts, rows = verifier.db_read(str(db))
    except verifier.BackupError as exc:
        raise PhoenixError(f"{what}: {exc}: nothing was restored") from None
    checked = verifier.cross_check(str(folder), rows)
    lacks: list[str] = []
    if (folder / "repositories").is_dir():
        extra, missing = (
            checked["folders_without_repository"],
            checked["repositories_without_folder"],
        )
        if extra or missing:
            on_disk = len([k for k in verifier.repo_dirs(str(folder)) if not k.endswith(".wiki")])
            named = (
                f"the database has no row for {extra[0]}"
                if extra
                else f"{missing[0]} has no folder"
            )
            raise PhoenixError(
                f"{what}: its database names {counts['repositories']} repositories and its "
                f"folder holds {on_disk} ({named}{' …' if len(extra) + len(missing) > 1 else ''}"
                "): not one backup; nothing was restored"
            )
    elif counts["repositories"]:
        lacks.append(
            f"repositories: the database names {counts['repositories']}, their git "
            "data is not in this backup"
        )
    if not (folder / "custom").is_dir():
        lacks.append("custom/ (templates, public files)")
    if not (folder / "app.ini").is_file():
        lacks.append(
            "app.ini (the forge's SECRET_KEY, INTERNAL_TOKEN, JWT secrets come from "
            "the operator's secrets)"
        )
    for key, name in (
        ("attachments_without_file", "attachments"),
        ("lfs_objects_without_file", "LFS objects"),
    ):
        if checked.get(key):
            lacks.append(
                f"{name}: the database names {len(checked[key])} whose files are not in this backup"
            )
    try:
        verifier.write_manifest(str(folder), gitea_version=gitea_version, created=created)
    except verifier.BackupError as exc:
        raise PhoenixError(f"{what}: cannot seal it: {exc}") from None
    return lacks


def _free_bytes(path: Path) -> int:
    """Free space where `path` is or would be."""
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return 0


def _dump_place(name: str) -> str | None:
    """Where a dump member goes in the Gitea folder; None for what a restore does not take
    (log/, what Gitea rebuilds, the data/gitea.db the dump copied live)."""
    top, _, rest = name.partition("/")
    if name == "app.ini":
        return name
    if top == "repos" and rest:
        return f"repositories/{rest}"
    if top == "custom" and rest:
        return name
    if top == "data" and rest and rest.split("/")[0] not in REBUILT and rest not in DB_FILES:
        return name
    return None


def _dump_plan(
    zf: zipfile.ZipFile, where: Path, limits: Limits
) -> tuple[zipfile.ZipInfo, list[tuple[zipfile.ZipInfo, str]]]:
    """gitea-db.sql, and the members to unpack and where, after what a dump's names and sizes
    may be."""
    sql = zf.getinfo(DUMP_SQL)
    plan = []
    for info in zf.infolist():
        parts = info.filename.split("/")
        if info.filename.startswith("/") or ".." in parts:
            raise PhoenixError(
                f"{where}: member {info.filename!r} would land outside the "
                "restore: not a Gitea dump; nothing was restored"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise PhoenixError(
                f"{where}: member {info.filename!r} is a symlink, which gitea dump never "
                "writes (it stores what a link points at): nothing was restored"
            )
        place = _dump_place(info.filename.rstrip("/"))
        if info is not sql and place is None:
            continue
        if info.file_size > limits.member_bytes:
            raise PhoenixError(
                f"{where}: member {info.filename!r} unpacks to {info.file_size >> 20} MiB, over "
                f"the {limits.member_bytes >> 20} MiB a dump's file may be: refused, nothing "
                "was restored"
            )
        if info is not sql and place is not None:
            plan.append((info, place))
    packed = sum(info.compress_size for info, _ in plan)
    unpacked = sum(info.file_size for info, _ in plan)
    if unpacked > limits.expansion * max(packed, 1):
        raise PhoenixError(
            f"{where} unpacks its files to {unpacked // max(packed, 1)} times their size "
            f"({unpacked >> 20} MiB), over the {limits.expansion}x a dump's may: a zip bomb? "
            "refused, nothing was restored"
        )
    return sql, plan


def _unpack(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, where: Path) -> None:
    """One member to `target`, counted: it may not give more than it declares."""
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as src, open(target, "xb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise PhoenixError(
                    f"{where}: member {info.filename!r} unpacks to more than the "
                    f"{info.file_size} bytes it declares: refused, nothing was restored"
                )
            out.write(chunk)


def import_dump(
    zip_path: Path, dest: Path, *, gitea_version: str, limits: Limits | None = None
) -> list[str]:
    """A `gitea dump` zip (Gitea 1.22 cmd/dump.go: gitea-db.sql, app.ini, repos/, custom/,
    data/ with lfs/, attachments/, packages/, log/) as a sealed Gitea folder in dest (a new
    folder, removed again if the dump is refused). The database is built from gitea-db.sql,
    the dump's own copy (Gitea's docs restore it with `sqlite3 $DATABASE_PATH <gitea-db.sql`),
    loaded as data (phoenix/backup/dumpsql.py); a data/gitea.db beside it was copied live."""
    limits = limits or LIMITS
    what = f"the gitea dump {zip_path}"
    if not zipfile.is_zipfile(zip_path):
        raise PhoenixError(f"{zip_path} is not a zip file: not a gitea dump; nothing was restored")
    with zipfile.ZipFile(zip_path) as zf:
        if DUMP_SQL not in zf.namelist():
            raise PhoenixError(
                f"{zip_path} is a zip but not a gitea dump: it has no "
                f"{DUMP_SQL} at its top (cmd/dump.go always writes one); "
                "nothing was restored"
            )
        sql, plan = _dump_plan(zf, zip_path, limits)
        files = sum(info.file_size for info, _ in plan)
        free = _free_bytes(dest)
        if files + sql.file_size > free:
            raise PhoenixError(
                f"{what} needs {(files + sql.file_size) >> 20} MiB unpacked and {dest.parent} "
                f"has {free >> 20} MiB free: nothing was restored"
            )
        dest.mkdir(parents=True)
        try:
            with zf.open(sql) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
                dumpsql.load(
                    text,
                    dest / "gitea.db",
                    statement_bytes=limits.statement_bytes,
                    max_bytes=min(sql.file_size * limits.db_growth + (64 << 20), free - files),
                    seconds=limits.sql_seconds,
                )
            for info, place in plan:
                _unpack(zf, info, dest / place, zip_path)
            lacks = seal(dest, what=what, gitea_version=gitea_version, created=_created(zip_path))
        except dumpsql.DumpRefused as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise PhoenixError(f"{what}: {DUMP_SQL} {exc}; nothing was restored") from None
        except UnicodeDecodeError as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise PhoenixError(
                f"{what}: {DUMP_SQL} is not a sound SQL dump (not UTF-8: {exc}); nothing was "
                "restored"
            ) from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            shutil.rmtree(dest, ignore_errors=True)
            said = " ".join(str(exc).split())
            raise PhoenixError(f"{what} does not unpack: {said}; nothing was restored") from None
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    if not any(place.startswith("repositories/") for _, place in plan):
        lacks = [
            line + " (dumped with --skip-repository?)" if line.startswith("repositories") else line
            for line in lacks
        ]
    return lacks


def find_runbook_db(folder: Path) -> Path:
    """gitea.db in a runbook backup folder, else its newest gitea-YYYYMMDD.db."""
    if (folder / "gitea.db").is_file():
        return folder / "gitea.db"
    dated = sorted(
        (match[1], p) for p in folder.iterdir() if (match := DATED_DB.match(p.name)) and p.is_file()
    )
    if not dated:
        raise PhoenixError(
            f"{folder} holds no gitea.db and no gitea-YYYYMMDD.db: not one of "
            "the runbook's Gitea backups; nothing was restored"
        )
    return dated[-1][1]


def import_runbook(path: Path, dest: Path, *, gitea_version: str) -> list[str]:
    """The runbook's backup (a folder with gitea.db or gitea-YYYYMMDD.db, custom/, maybe
    repositories/ or gitea-repositories/, data/, app.ini; or the .db file itself, its folder
    read for the rest) as a sealed Gitea folder in dest."""
    folder = path if path.is_dir() else path.parent
    db = find_runbook_db(folder) if path.is_dir() else path
    what = f"the backup {db}"
    with open(db, "rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            raise PhoenixError(f"{what} is not an SQLite database; nothing was restored")
    dest.mkdir(parents=True)
    shutil.copy2(db, dest / "gitea.db")
    for name in ("repositories", "gitea-repositories", "repos"):
        if (folder / name).is_dir():
            _copytree(folder / name, dest / "repositories")
            break
    if (folder / "custom").is_dir():
        _copytree(folder / "custom", dest / "custom")
    if (folder / "data").is_dir():
        _copytree(folder / "data", dest / "data", skip=REBUILT)
    if (folder / "app.ini").is_file():
        shutil.copy2(folder / "app.ini", dest / "app.ini")
    return seal(dest, what=what, gitea_version=gitea_version, created=_created(db))
