"""Where a restore comes from: every source resolved once, on the operator's side,
into one of two sealed forms that the one restore path (tasks/restore.py) takes.

    restic:latest | restic:<id>   a Phoenix snapshot in the offsite store (backup_repository);
                                  `latest` is the newest snapshot tagged backup_tag
    PATH.tar.gz                   a Phoenix archive: a sealed Gitea folder (manifest.json)
    PATH.zip                      a `gitea dump` zip, laid out as Gitea 1.22's cmd/dump.go does
    PATH (folder or .db file)     the runbook's backups: gitea.db or gitea-YYYYMMDD.db, with
                                  custom/ (and repositories/, data/, app.ini) beside it
    forge:[PATH]                  the same found on the old forge while it still answers (the
                                  state file's primary): PATH, else the runbook's places

A snapshot is sealed already (the job wrote its manifest). Anything else is imported
(phoenix/backup/importers.py) into a Gitea folder of the snapshot's layout, checked and sealed
by the same verifier a restore runs (files/phoenix_backup_verify.py), and written as a Phoenix
archive (phoenix/backup/archive.py) named by its sha256 in the state folder. An import restores
what it has and says what it lacks (`Resolved.lacks`); it never invents the rest. Bad input is one
PhoenixError line, before anything is staged.

The seam: `resolve()` turns a restore_source into a `Resolved`; a new kind of source is one
more importer that returns a sealed folder. Litestream's replicas are no source: the restore
brings the snapshot's databases forward with them (tasks/restore.py, `phoenix-restore
replay`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from phoenix.backup.archive import archive_file, archive_manifest, sha256_file, write_archive
from phoenix.backup.fetch import fetch_from_forge
from phoenix.backup.importers import import_dump, import_runbook
from phoenix.errors import PhoenixError
from phoenix.settings import Readable


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
        """The resolution a `pending` marker holds; None for no marker or a line that is not
        one (a bare manifest sha, say)."""
        if not line or not line.lstrip().startswith("{"):
            return None
        try:
            data = json.loads(line)
            return cls(**{**data, "lacks": tuple(data.get("lacks") or ())})
        except (ValueError, TypeError):
            return None


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
        roots += [
            base / n
            for n in ("repositories", "gitea-repositories", "repos", "custom", "data", "app.ini")
            if (base / n).exists()
        ]
    files = sorted(
        f for root in roots for f in ([root] if root.is_file() else root.rglob("*")) if f.is_file()
    )
    for item in files:
        digest.update(
            item.relative_to(base).as_posix().encode() + b"\0" + sha256_file(item).encode()
        )
    return digest.hexdigest()


def _imported(
    origin: str, source: Path, requested: str, *, gitea_version: str, importer: Any
) -> Resolved:
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
    return Resolved(
        requested=requested,
        kind="archive",
        ref=str(archive),
        stage_id=sha,
        manifest_sha=hashlib.sha256(manifest).hexdigest(),
        label=f"{origin} {source.name}",
        origin=origin,
        lacks=tuple(lacks),
    )


def resolve(
    source: str, settings: Readable, *, pending: Resolved | None = None, forge_target: Any = None
) -> Resolved:
    """restore_source as one sealed backup. `pending`: a restore of the same source cut off on
    the host, which is finished with the backup it started with (never a newer `latest`)."""
    requested = str(source)
    if pending is not None and pending.requested == requested:
        staged = Path(pending.ref)
        if pending.kind == "restic" or (
            staged.is_file() and sha256_file(staged) == pending.stage_id
        ):
            return pending  # else the archive changed since: resolved anew, the task decides
    version = str(settings.get("gitea_version") or "unknown")
    if requested.startswith("restic:"):
        from phoenix.backup import snapshots as backup
        from phoenix.backup.store import store_from_settings

        ref = backup.restore_ref(requested) or "latest"
        store = store_from_settings(settings)
        snapshot_id = backup.resolve_snapshot(store, ref)
        manifest = backup.read_manifest(store, snapshot_id)
        return Resolved(
            requested=requested,
            kind="restic",
            ref=snapshot_id,
            stage_id=snapshot_id,
            manifest_sha=hashlib.sha256(manifest).hexdigest(),
            label=f"restic snapshot {snapshot_id[:8]}",
            origin="phoenix snapshot",
        )
    if requested.startswith("forge:"):
        if forge_target is None:
            from phoenix.sshconf import role_target

            forge_target = role_target("primary")
        with tempfile.TemporaryDirectory(prefix="phoenix-fetch-", dir=cache_dir()) as tmp:
            folder = fetch_from_forge(requested, Path(tmp) / "backup", target=forge_target)
            return _imported(
                "runbook backup", folder, requested, gitea_version=version, importer=import_runbook
            )
    path = Path(requested).expanduser()
    if not path.exists():
        raise PhoenixError(
            f"restore_source {path} does not exist: give restic:latest, a "
            "snapshot id (restic:ID), a backup .tar.gz, a gitea dump .zip, or "
            "the runbook's backup folder or .db file"
        )
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        manifest = archive_manifest(path)
        return Resolved(
            requested=requested,
            kind="archive",
            ref=str(path),
            stage_id=sha256_file(path),
            manifest_sha=hashlib.sha256(manifest).hexdigest(),
            label=f"phoenix archive {path.name}",
            origin="phoenix archive",
        )
    if path.is_file() and (path.suffix == ".zip" or zipfile.is_zipfile(path)):
        return _imported("gitea dump", path, requested, gitea_version=version, importer=import_dump)
    return _imported(
        "runbook backup", path, requested, gitea_version=version, importer=import_runbook
    )


def app_ini(resolved: Resolved, settings: Readable) -> str | None:
    """The app.ini the resolved backup holds (the forge's identity), None when it has none."""
    if resolved.kind == "restic":
        from phoenix.backup import snapshots as backup
        from phoenix.backup.store import store_from_settings

        raw = backup.read_file(store_from_settings(settings), resolved.ref, "app.ini")
    else:
        raw = archive_file(Path(resolved.ref), "app.ini")
    return raw.decode() if raw is not None else None


def saved_file(resolved: Resolved, settings: Readable, path: str) -> str | None:
    """A file the backup job saved by its absolute path (below the snapshot's files/): the
    secret files an app.ini's `*_URI` names. None when the backup holds none (imports never do)."""
    if resolved.kind != "restic":
        return None
    from phoenix.backup import snapshots as backup
    from phoenix.backup.store import store_from_settings

    raw = backup.read_file(
        store_from_settings(settings), resolved.ref, path.lstrip("/"), folder="files"
    )
    return raw.decode() if raw is not None else None
