"""Where a restore comes from (issue 13): every source resolved once, on the operator's side,
into one of two sealed forms that the one restore path (tasks/restore.py) takes.

    restic:latest | restic:<id>   a Phoenix snapshot in the offsite store (backup_repository);
                                  `latest` is the newest snapshot tagged backup_tag (issue 18)
    PATH.tar.gz                   a Phoenix archive: a sealed Gitea folder (manifest.json)
    PATH.zip                      a `gitea dump` zip, laid out as Gitea 1.22's cmd/dump.go does
    PATH (folder or .db file)     the runbook's backups: gitea.db or gitea-YYYYMMDD.db, with
                                  custom/ (and repositories/, data/, app.ini) beside it
    forge:[PATH]                  the same found on the old forge while it still answers (the
                                  state file's primary): PATH, else the runbook's places

A snapshot is sealed already (the job wrote its manifest). Anything else is imported here into
a Gitea folder of the snapshot's layout, checked and sealed by the same verifier a restore runs
(files/phoenix-backup-verify), and written as a Phoenix archive named by its sha256 in the
state folder. An import restores what it has and says what it lacks (`Resolved.lacks`); it
never invents the rest. Bad input is one PhoenixError line, before anything is staged.

The seam: `resolve()` turns a restore_source into a `Resolved`; a new kind of source (a
database replica, issue 21) is one more importer that returns a sealed folder.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from phoenix.errors import PhoenixError

ARCHIVE_EPOCH = 1714000000   # the fixed time of every archive member: same folder, same bytes
RUNBOOK_PLACES = ("/backups/gitea", "/var/backups/gitea", "/root/backups")
DUMP_SQL = "gitea-db.sql"
# What a restore never needs from a Gitea data folder (Gitea rebuilds it); the job's default
# backup_gitea_exclude, and the log folder a dump carries.
REBUILT = ("sessions", "queues", "indexers", "tmp")
DATED_DB = re.compile(r"^gitea-(\d{8})\.db$")


@dataclass(frozen=True)
class Resolved:
    """One restore source, resolved: what the restore stages and checks, and what it lacks.

    kind "restic": `ref` is the snapshot id; kind "archive": `ref` is the sealed archive's
    local path. `stage_id` names the staging folder on the host, `manifest_sha` the backup."""
    requested: str
    kind: str
    ref: str
    stage_id: str
    manifest_sha: str
    label: str
    origin: str
    lacks: tuple[str, ...] = field(default=())

    def marker(self) -> str:
        """The host's `pending` marker: one JSON line, so a re-run restores the same backup."""
        return json.dumps({**asdict(self), "lacks": list(self.lacks)}, sort_keys=True)

    @classmethod
    def from_marker(cls, line: str | None) -> Resolved | None:
        """The resolution a `pending` marker holds; None for no marker or an older one (a bare
        manifest sha, before issue 13)."""
        if not line or not line.lstrip().startswith("{"):
            return None
        try:
            data = json.loads(line)
            return cls(**{**data, "lacks": tuple(data.get("lacks") or ())})
        except (ValueError, TypeError):
            return None


# --- the archive format ----------------------------------------------------------------------

def write_archive(folder: Path, archive: Path) -> str:
    """folder as a tar.gz whose members are relative to it, in sorted order, with fixed owners
    and times, so the same folder gives the same bytes; returns the archive's sha256 hex."""
    folder, archive = Path(folder), Path(archive)
    paths = sorted(p for p in folder.rglob("*") if p != archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with open(archive, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in paths:
            info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = ARCHIVE_EPOCH
            if info.isreg():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return sha256_file(archive)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def archive_manifest(archive: Path) -> bytes:
    """The manifest.json at the top of a Phoenix archive; one line of error otherwise."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            return member.read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise PhoenixError(f"{archive} is not a Phoenix backup archive (a .tar.gz with "
                           f"manifest.json at its top): {type(exc).__name__}: {exc}") from None


def archive_file(archive: Path, name: str) -> bytes | None:
    """A top-level file of a Phoenix archive (app.ini), None when it holds none."""
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.extractfile(name)
        except KeyError:
            return None
        return member.read() if member else None


# --- imports: a foreign backup becomes a sealed Gitea folder ---------------------------------

def _verifier() -> Any:
    from phoenix.backup import VERIFIER, _host_script

    return _host_script(VERIFIER)


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
        extra, missing = checked["folders_without_repository"], \
            checked["repositories_without_folder"]
        if extra or missing:
            on_disk = len([k for k in verifier.repo_dirs(str(folder)) if not k.endswith(".wiki")])
            named = (f"the database has no row for {extra[0]}" if extra
                     else f"{missing[0]} has no folder")
            raise PhoenixError(
                f"{what}: its database names {counts['repositories']} repositories and its "
                f"folder holds {on_disk} ({named}{' …' if len(extra) + len(missing) > 1 else ''}"
                "): not one backup; nothing was restored")
    elif counts["repositories"]:
        lacks.append(f"repositories: the database names {counts['repositories']}, their git "
                     "data is not in this backup")
    if not (folder / "custom").is_dir():
        lacks.append("custom/ (templates, public files)")
    if not (folder / "app.ini").is_file():
        lacks.append("app.ini (the forge's SECRET_KEY, INTERNAL_TOKEN, JWT secrets come from "
                     "the operator's secrets)")
    for key, name in (("attachments_without_file", "attachments"),
                      ("lfs_objects_without_file", "LFS objects")):
        if checked.get(key):
            lacks.append(f"{name}: the database names {len(checked[key])} whose files are not "
                         "in this backup")
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
            raise PhoenixError(f"{where}: member {info.filename!r} would land outside the "
                               "restore: not a Gitea dump; nothing was restored")
        members.append(info)
    return members


def import_dump(zip_path: Path, dest: Path, *, gitea_version: str) -> list[str]:
    """A `gitea dump` zip (Gitea 1.22 cmd/dump.go: gitea-db.sql, app.ini, repos/, custom/,
    data/ with lfs/, attachments/, packages/, log/) as a sealed Gitea folder in dest. The
    database is built from gitea-db.sql, the dump's consistent copy (Gitea's docs restore it
    with `sqlite3 $DATABASE_PATH <gitea-db.sql`); a data/gitea.db beside it was copied live."""
    what = f"the gitea dump {zip_path}"
    if not zipfile.is_zipfile(zip_path):
        raise PhoenixError(f"{zip_path} is not a zip file: not a gitea dump; nothing was "
                           "restored")
    with tempfile.TemporaryDirectory(prefix="phoenix-dump-") as tmp, \
            zipfile.ZipFile(zip_path) as zf:
        names = {info.filename.rstrip("/") for info in zf.infolist()}
        if DUMP_SQL not in names:
            raise PhoenixError(f"{zip_path} is a zip but not a gitea dump: it has no "
                               f"{DUMP_SQL} at its top (cmd/dump.go always writes one); "
                               "nothing was restored")
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
            raise PhoenixError(f"{what}: {DUMP_SQL} is not a sound SQL dump ({exc}); nothing "
                               "was restored") from None
        if (root / "repos").is_dir():
            _copytree(root / "repos", dest / "repositories")
        if (root / "custom").is_dir():
            _copytree(root / "custom", dest / "custom")
        if (root / "data").is_dir():
            _copytree(root / "data", dest / "data",
                      skip=(*REBUILT, "gitea.db", "gitea.db-wal", "gitea.db-shm",
                            "gitea.db-journal"))
        if (root / "app.ini").is_file():
            shutil.copy2(root / "app.ini", dest / "app.ini")
        created = _created(zip_path)
        lacks = seal(dest, what=what, gitea_version=gitea_version, created=created)
        if not (root / "repos").is_dir():
            lacks = [line + " (dumped with --skip-repository?)" if line.startswith(
                "repositories") else line for line in lacks]
        return lacks


def find_runbook_db(folder: Path) -> Path:
    """gitea.db in a runbook backup folder, else its newest gitea-YYYYMMDD.db."""
    if (folder / "gitea.db").is_file():
        return folder / "gitea.db"
    dated = sorted((p for p in folder.iterdir() if DATED_DB.match(p.name) and p.is_file()),
                   key=lambda p: DATED_DB.match(p.name)[1])  # type: ignore[index]
    if not dated:
        raise PhoenixError(f"{folder} holds no gitea.db and no gitea-YYYYMMDD.db: not one of "
                           "the runbook's Gitea backups; nothing was restored")
    return dated[-1]


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

    wanted = spec[len("forge:"):].strip()
    places = [wanted] if wanted else list(RUNBOOK_PLACES)
    script = ("for d in " + " ".join(shlex.quote(p) for p in places) + "; do "
              "if ls \"$d\"/gitea.db >/dev/null 2>&1 || "
              "ls \"$d\"/gitea-[0-9]*.db >/dev/null 2>&1; then "
              "echo \"$d\" >&2; exec tar -C \"$d\" -cf - .; fi; done; "
              "echo 'no gitea.db or gitea-YYYYMMDD.db in '\"$*\" >&2; exit 3")
    dest.mkdir(parents=True)
    proc = subprocess.run(ssh_command(target, "sh -c " + shlex.quote(script) + " - "
                                      + " ".join(shlex.quote(p) for p in places)),
                          capture_output=True, timeout=1800, check=False)
    if proc.returncode != 0:
        last = proc.stderr.decode(errors="replace").strip().splitlines()
        raise PhoenixError(f"cannot fetch the runbook backup from {target.host} "
                           f"({', '.join(places)}): {last[-1] if last else 'no output'}")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:") as tar:
        tar.extractall(dest, filter="data")
    return dest


# --- the resolver ----------------------------------------------------------------------------

def cache_dir() -> Path:
    from phoenix.state import state_dir

    folder = state_dir() / "sources"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _tree_digest(path: Path) -> str:
    """A digest of what an import reads: a file (and, for a runbook .db file, the folders
    beside it that the import takes), or every file below a folder (names and content)."""
    digest = hashlib.sha256()
    base = path if path.is_dir() else path.parent
    roots = [path]
    if path.is_file() and not zipfile.is_zipfile(path):
        roots += [base / n for n in ("repositories", "gitea-repositories", "repos", "custom",
                                     "data", "app.ini") if (base / n).exists()]
    files = sorted(f for root in roots
                   for f in ([root] if root.is_file() else root.rglob("*")) if f.is_file())
    for item in files:
        digest.update(item.relative_to(base).as_posix().encode() + b"\0"
                      + sha256_file(item).encode())
    return digest.hexdigest()


def _imported(origin: str, source: Path, requested: str, *, gitea_version: str,
              importer: Any) -> Resolved:
    """Import `source` once (cached by its content) into a sealed archive; resolve to it."""
    key = _tree_digest(source)
    cache = cache_dir()
    archive, notes = cache / f"{key}.tar.gz", cache / f"{key}.json"
    if not (archive.is_file() and notes.is_file()):
        with tempfile.TemporaryDirectory(prefix="phoenix-import-", dir=cache) as tmp:
            lacks = importer(source, Path(tmp) / "gitea", gitea_version=gitea_version)
            write_archive(Path(tmp) / "gitea", Path(tmp) / "sealed.tar.gz")
            os.replace(Path(tmp) / "sealed.tar.gz", archive)
        notes.write_text(json.dumps({"lacks": lacks, "origin": origin}) + "\n")
    lacks = json.loads(notes.read_text())["lacks"]
    sha = sha256_file(archive)
    manifest = archive_manifest(archive)
    return Resolved(requested=requested, kind="archive", ref=str(archive), stage_id=sha,
                    manifest_sha=hashlib.sha256(manifest).hexdigest(),
                    label=f"{origin} {source.name}", origin=origin, lacks=tuple(lacks))


def resolve(source: str, settings: Mapping[str, Any], *,
            pending: Resolved | None = None, forge_target: Any = None) -> Resolved:
    """restore_source as one sealed backup. `pending`: a restore of the same source cut off on
    the host, which is finished with the backup it started with (never a newer `latest`)."""
    requested = str(source)
    if pending is not None and pending.requested == requested:
        staged = Path(pending.ref)
        if pending.kind == "restic" or (staged.is_file()
                                        and sha256_file(staged) == pending.stage_id):
            return pending  # else the archive changed since: resolved anew, the task decides
    version = str(settings.get("gitea_version") or "unknown")
    if requested.startswith("restic:"):
        from phoenix import backup

        ref = backup.restore_ref(requested) or "latest"
        store = backup.store_from_settings(settings)
        snapshot_id = backup.resolve_snapshot(store, ref)
        manifest = backup.read_manifest(store, snapshot_id)
        return Resolved(requested=requested, kind="restic", ref=snapshot_id,
                        stage_id=snapshot_id,
                        manifest_sha=hashlib.sha256(manifest).hexdigest(),
                        label=f"restic snapshot {snapshot_id[:8]}", origin="phoenix snapshot")
    if requested.startswith("forge:"):
        if forge_target is None:
            from phoenix.sshconf import role_target

            forge_target = role_target("primary")
        with tempfile.TemporaryDirectory(prefix="phoenix-fetch-", dir=cache_dir()) as tmp:
            folder = fetch_from_forge(requested, Path(tmp) / "backup", target=forge_target)
            return _imported("runbook backup", folder, requested, gitea_version=version,
                             importer=import_runbook)
    path = Path(requested).expanduser()
    if not path.exists():
        raise PhoenixError(f"restore_source {path} does not exist: give restic:latest, a "
                           "snapshot id (restic:ID), a backup .tar.gz, a gitea dump .zip, or "
                           "the runbook's backup folder or .db file")
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        manifest = archive_manifest(path)
        return Resolved(requested=requested, kind="archive", ref=str(path),
                        stage_id=sha256_file(path),
                        manifest_sha=hashlib.sha256(manifest).hexdigest(),
                        label=f"phoenix archive {path.name}", origin="phoenix archive")
    if path.is_file() and (path.suffix == ".zip" or zipfile.is_zipfile(path)):
        return _imported("gitea dump", path, requested, gitea_version=version,
                         importer=import_dump)
    return _imported("runbook backup", path, requested, gitea_version=version,
                     importer=import_runbook)


def app_ini(resolved: Resolved, settings: Mapping[str, Any]) -> str | None:
    """The app.ini the resolved backup holds (the forge's identity), None when it has none."""
    if resolved.kind == "restic":
        from phoenix import backup

        raw = backup.read_file(backup.store_from_settings(settings), resolved.ref, "app.ini")
    else:
        raw = archive_file(Path(resolved.ref), "app.ini")
    return raw.decode() if raw is not None else None
