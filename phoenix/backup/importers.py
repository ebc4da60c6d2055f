"""Imports: a foreign backup becomes a sealed Gitea folder of the snapshot's layout.

A `gitea dump` zip (Gitea 1.22's cmd/dump.go layout, the database from its gitea-db.sql), the
runbook's backup (a folder with gitea.db or the newest gitea-YYYYMMDD.db, and custom/), or
that backup fetched from the old forge. Each is checked and sealed by the verifier a restore
runs (files/phoenix_backup_verify.py); each returns what it lacks and never invents the rest.
phoenix/backup/sources.py resolves a restore_source to one of these.
"""

from __future__ import annotations

import datetime
import io
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from phoenix.errors import PhoenixError

RUNBOOK_PLACES = ("/backups/gitea", "/var/backups/gitea", "/root/backups")
DUMP_SQL = "gitea-db.sql"
# What a restore never needs from a Gitea data folder (Gitea rebuilds it); the job's default
# backup_gitea_exclude, and the log folder a dump carries.
REBUILT = ("sessions", "queues", "indexers", "tmp")
DATED_DB = re.compile(r"^gitea-(\d{8})\.db$")


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


def _safe_members(zf: zipfile.ZipFile, where: Path) -> list[zipfile.ZipInfo]:
    members = []
    for info in zf.infolist():
        parts = info.filename.split("/")
        if info.filename.startswith("/") or ".." in parts:
            raise PhoenixError(
                f"{where}: member {info.filename!r} would land outside the "
                "restore: not a Gitea dump; nothing was restored"
            )
        members.append(info)
    return members


def import_dump(zip_path: Path, dest: Path, *, gitea_version: str) -> list[str]:
    """A `gitea dump` zip (Gitea 1.22 cmd/dump.go: gitea-db.sql, app.ini, repos/, custom/,
    data/ with lfs/, attachments/, packages/, log/) as a sealed Gitea folder in dest. The
    database is built from gitea-db.sql, the dump's consistent copy (Gitea's docs restore it
    with `sqlite3 $DATABASE_PATH <gitea-db.sql`); a data/gitea.db beside it was copied live."""
    what = f"the gitea dump {zip_path}"
    if not zipfile.is_zipfile(zip_path):
        raise PhoenixError(f"{zip_path} is not a zip file: not a gitea dump; nothing was restored")
    with (
        tempfile.TemporaryDirectory(prefix="phoenix-dump-") as tmp,
        zipfile.ZipFile(zip_path) as zf,
    ):
        names = {info.filename.rstrip("/") for info in zf.infolist()}
        if DUMP_SQL not in names:
            raise PhoenixError(
                f"{zip_path} is a zip but not a gitea dump: it has no "
                f"{DUMP_SQL} at its top (cmd/dump.go always writes one); "
                "nothing was restored"
            )
        try:
            zf.extractall(tmp, members=_safe_members(zf, zip_path))
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise PhoenixError(f"{what} does not unpack: {exc}; nothing was restored") from None
        root = Path(tmp)
        dest.mkdir(parents=True)
        db = dest / "gitea.db"
        try:
            conn = sqlite3.connect(db)
            try:
                conn.executescript((root / DUMP_SQL).read_text(encoding="utf-8"))
                conn.commit()
            finally:
                conn.close()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise PhoenixError(
                f"{what}: {DUMP_SQL} is not a sound SQL dump ({exc}); nothing was restored"
            ) from None
        if (root / "repos").is_dir():
            _copytree(root / "repos", dest / "repositories")
        if (root / "custom").is_dir():
            _copytree(root / "custom", dest / "custom")
        if (root / "data").is_dir():
            _copytree(
                root / "data",
                dest / "data",
                skip=(*REBUILT, "gitea.db", "gitea.db-wal", "gitea.db-shm", "gitea.db-journal"),
            )
        if (root / "app.ini").is_file():
            shutil.copy2(root / "app.ini", dest / "app.ini")
        created = _created(zip_path)
        lacks = seal(dest, what=what, gitea_version=gitea_version, created=created)
        if not (root / "repos").is_dir():
            lacks = [
                line + " (dumped with --skip-repository?)"
                if line.startswith("repositories")
                else line
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


def fetch_from_forge(spec: str, dest: Path, *, target: Any) -> Path:
    """`forge:[PATH]`: the runbook backup folder on the old forge (PATH, else the first of the
    runbook's places that holds a database), copied here over ssh with its pinned host key."""
    from phoenix.sshconf import ssh_command

    wanted = spec[len("forge:") :].strip()
    places = [wanted] if wanted else list(RUNBOOK_PLACES)
    script = (
        "for d in " + " ".join(shlex.quote(p) for p in places) + "; do "
        'if ls "$d"/gitea.db >/dev/null 2>&1 || '
        'ls "$d"/gitea-[0-9]*.db >/dev/null 2>&1; then '
        'echo "$d" >&2; exec tar -C "$d" -cf - .; fi; done; '
        "echo 'no gitea.db or gitea-YYYYMMDD.db in '\"$*\" >&2; exit 3"
    )
    dest.mkdir(parents=True)
    proc = subprocess.run(
        ssh_command(
            target,
            "sh -c " + shlex.quote(script) + " - " + " ".join(shlex.quote(p) for p in places),
        ),
        capture_output=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        last = proc.stderr.decode(errors="replace").strip().splitlines()
        raise PhoenixError(
            f"cannot fetch the runbook backup from {target.host} "
            f"({', '.join(places)}): {last[-1] if last else 'no output'}"
        )
    with tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:") as tar:
        tar.extractall(dest, filter="data")
    return dest
