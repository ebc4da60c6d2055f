#!/usr/bin/python3
"""NOT a stand-in: Phoenix's own on-host backup verifier, shipped to the host.

The deploy ships it from the repo's files/ (the lab fixtures load it from there too), so it
keeps the stand-ins' constraint: Debian 12's python3 standard library only, one file.

A Gitea backup folder holds gitea.db, repositories/<owner>/<name>.git (lower case, as Gitea
lays them out on disk; wikis are <name>.wiki.git), custom/, data/ (Gitea's APP_DATA_PATH but
for what Gitea rebuilds), app.ini, and manifest.json:

    {"format": 1, "kind": "gitea", "gitea_version": "1.22.3", "created": ISO-8601,
     "counts": {"users", "organizations", "repositories", "issues", "wikis", "attachments",
                "avatars", "repo_avatars", "lfs_objects"},
     "files": {relative posix path: sha256 hex, ...every file but manifest.json},
     "refs": {"owner/name" or "owner/name.wiki": {"refs/heads/main": sha, ...}},
     "cross_check": {what the database names and the folder lacks, or the reverse}}

`phoenix-backup-verify FOLDER` checks every checksum, that no file is missing or unlisted,
that the refs on disk are the manifest's, and runs PRAGMA integrity_check and the counts on a
COPY of gitea.db (so the backup itself is never opened for writing). It cross-checks the
database with the folder: every repository row has its folder and every folder its row, every
wiki belongs to a repository, every attachment and LFS object row has its file. What the live
forge itself lacked is recorded when the backup is sealed (a backup is never refused for it);
verification fails when the folder lacks more than that. Exit 0 and a JSON report
on stdout, or exit 2 and one line naming the bad file on stderr.
`phoenix-backup-verify --write-manifest FOLDER` writes manifest.json for a folder (the backup
job's last step); the manifest's shape is defined here and nowhere else.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import sys
import tempfile

FORMAT = 1
KIND = "gitea"
MANIFEST = "manifest.json"
DATABASE = "gitea.db"
REPOSITORIES = "repositories"
COUNT_QUERIES = {
    "users": "SELECT COUNT(*) FROM user WHERE COALESCE(type, 0) = 0",
    "organizations": "SELECT COUNT(*) FROM user WHERE type = 1",
    "repositories": "SELECT COUNT(*) FROM repository",
    "issues": "SELECT COUNT(*) FROM issue WHERE COALESCE(is_pull, 0) = 0",
}


class BackupError(Exception):
    """The backup is not sound; `path` is the file (relative to the folder) that says so."""

    def __init__(self, path: str, message: str, problems: list[tuple[str, str]] | None = None):
        self.path = path
        self.problems = problems or [(path, message)]
        more = len(self.problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        super().__init__(f"{path}: {message}{suffix}")


def sha256_file(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def walk_files(folder: str) -> list[str]:
    """Every file below folder as a relative posix path, sorted; manifest.json left out. A
    symlink or special file is refused (BackupError naming it): a restore would follow it."""
    found = []
    for dirpath, dirnames, files in os.walk(folder):
        dirnames.sort()
        for name in dirnames + files:
            rel = os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/")
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            if stat.S_ISLNK(mode):
                raise BackupError(rel, "a symlink: a backup holds only files and folders")
            if stat.S_ISREG(mode):
                if rel != MANIFEST:
                    found.append(rel)
            elif not stat.S_ISDIR(mode):
                raise BackupError(rel, "not a regular file: a backup holds only files and folders")
    return sorted(found)


DATA = "data"
# Files below data/ that the manifest counts (Gitea 1.22's default storage paths)
DATA_COUNTS = {
    "attachments": "attachments",
    "avatars": "avatars",
    "repo_avatars": "repo-avatars",
    "lfs_objects": "lfs",
}
# A database row whose file must be in data/: (table, column, path of the file), the paths of
# Gitea 1.22's Attachment.RelativePath (models/repo/attachment.go) and Pointer.RelativePath
# (modules/lfs/pointer.go)
DB_FILES = {
    "attachments": ("attachment", "uuid", lambda u: f"attachments/{u[0]}/{u[1]}/{u}"),
    "lfs_objects": ("lfs_meta_object", "oid", lambda o: f"lfs/{o[0:2]}/{o[2:4]}/{o[4:]}"),
}


def count_files(folder: str) -> int:
    return sum(len(files) for _d, _s, files in os.walk(folder))


def content_counts(folder: str) -> dict[str, int]:
    """Wikis, attachments, avatars and LFS objects as the folder holds them."""
    counts = {"wikis": sum(1 for key in repo_dirs(folder) if key.endswith(".wiki"))}
    for key, sub in DATA_COUNTS.items():
        counts[key] = count_files(os.path.join(folder, DATA, sub))
    return counts


def cross_check(folder: str, rows: dict[str, list[str]]) -> dict[str, list[str]]:
    """What the database names and the folder lacks, and the reverse (sorted lists)."""
    on_disk = repo_dirs(folder)
    repos = {key for key in on_disk if not key.endswith(".wiki")}
    wikis = {key[:-5] for key in on_disk if key.endswith(".wiki")}
    known = set(rows["repositories"])
    result = {
        "repositories_without_folder": sorted(known - repos),
        "folders_without_repository": sorted(repos - known),
        "wikis_without_repository": sorted(wikis - known),
    }
    for key, (_table, _column, path) in DB_FILES.items():
        result[f"{key}_without_file"] = sorted(
            value
            for value in rows.get(key, [])
            if len(value) > 4 and not os.path.isfile(os.path.join(folder, DATA, path(value)))
        )
    return result


def repo_dirs(folder: str) -> dict[str, str]:
    """{"owner/name": path} for each repositories/<owner>/<name>.git."""
    root = os.path.join(folder, REPOSITORIES)
    repos: dict[str, str] = {}
    if not os.path.isdir(root):
        return repos
    for owner in sorted(os.listdir(root)):
        owner_dir = os.path.join(root, owner)
        if not os.path.isdir(owner_dir):
            continue
        for name in sorted(os.listdir(owner_dir)):
            path = os.path.join(owner_dir, name)
            if name.endswith(".git") and os.path.isdir(path):
                repos[f"{owner}/{name[:-4]}"] = path
    return repos


def read_refs(repo: str) -> dict[str, str]:
    """Loose refs override packed-refs, as in git itself; no git binary needed."""
    refs: dict[str, str] = {}
    packed = os.path.join(repo, "packed-refs")
    if os.path.isfile(packed):
        with open(packed, encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 2 and not line.startswith(("#", "^")):
                    refs[parts[1]] = parts[0]
    for dirpath, _dirs, files in os.walk(os.path.join(repo, "refs")):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, encoding="utf-8", errors="replace") as handle:
                value = handle.read().strip()
            if re.fullmatch(r"[0-9a-f]{40,64}", value):
                refs[os.path.relpath(full, repo).replace(os.sep, "/")] = value
    return dict(sorted(refs.items()))


def db_counts(db_path: str) -> dict[str, int]:
    return db_read(db_path)[0]


def db_read(db_path: str) -> tuple[dict[str, int], dict[str, list[str]]]:
    """integrity_check, the counts and the rows the cross-check needs ("owner/name" of every
    repository, attachment uuids, LFS oids), on a copy in a temp dir (sqlite may write beside
    a db)."""
    with tempfile.TemporaryDirectory(prefix="phoenix-verify-") as tmp:
        copy = os.path.join(tmp, DATABASE)
        shutil.copyfile(db_path, copy)
        if os.path.isfile(db_path + "-wal"):
            shutil.copyfile(db_path + "-wal", copy + "-wal")
        try:
            conn = sqlite3.connect(copy)
            try:
                said = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
                if said != ["ok"]:
                    raise BackupError(
                        DATABASE,
                        "PRAGMA integrity_check failed: " + "; ".join(str(r) for r in said[:3]),
                    )
                counts = {
                    key: int(conn.execute(sql).fetchone()[0]) for key, sql in COUNT_QUERIES.items()
                }
                tables = {
                    r[0]
                    for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                }
                rows = {
                    "repositories": sorted(
                        f"{(owner or '').lower()}/{name}"
                        for owner, name in conn.execute(
                            "SELECT owner_name, lower_name FROM repository"
                        )
                    )
                }
                for key, (table, column, _path) in DB_FILES.items():
                    if table in tables:
                        rows[key] = sorted(
                            str(r[0])
                            for r in conn.execute(f"SELECT DISTINCT {column} FROM {table}")
                            if r[0]
                        )
                return counts, rows
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise BackupError(DATABASE, f"not a sound SQLite database ({exc})") from None


def build_manifest(folder: str, *, gitea_version: str, created: str | None = None) -> dict:
    """The manifest of a backup folder as it is now."""
    db_path = os.path.join(folder, DATABASE)
    if not os.path.isfile(db_path):
        raise BackupError(DATABASE, "missing")
    if created is None:
        created = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    files = walk_files(folder)  # first: a symlink is refused before anything reads through it
    counts, rows = db_read(db_path)
    return {
        "format": FORMAT,
        "kind": KIND,
        "gitea_version": gitea_version,
        "created": created,
        "counts": {**counts, **content_counts(folder)},
        "files": {rel: sha256_file(os.path.join(folder, rel)) for rel in files},
        "refs": {key: read_refs(path) for key, path in repo_dirs(folder).items()},
        "cross_check": cross_check(folder, rows),
    }


def write_manifest(folder: str, *, gitea_version: str, created: str | None = None) -> dict:
    manifest = build_manifest(folder, gitea_version=gitea_version, created=created)
    tmp = os.path.join(folder, f".{MANIFEST}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, os.path.join(folder, MANIFEST))
    return manifest


def load_manifest(folder: str) -> dict:
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise BackupError(MANIFEST, "missing: not a Phoenix backup folder") from None
    except (OSError, ValueError) as exc:
        raise BackupError(MANIFEST, f"unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(MANIFEST, f"format is not {FORMAT}")
    if manifest.get("kind") != KIND:
        raise BackupError(MANIFEST, f"kind is {manifest.get('kind')!r}, expected {KIND!r}")
    if not isinstance(manifest.get("files"), dict) or DATABASE not in manifest["files"]:
        raise BackupError(MANIFEST, f"lists no {DATABASE}")
    return manifest


def verify(folder: str) -> dict:
    """Check a backup folder against its manifest; raise BackupError naming the first bad file."""
    if not os.path.isdir(folder):
        raise BackupError(".", f"{folder} is not a directory")
    on_disk_files = walk_files(folder)  # first: a symlink is refused before anything reads it
    manifest = load_manifest(folder)
    problems: list[tuple[str, str]] = []
    listed: dict[str, str] = manifest["files"]
    for rel in sorted(listed):
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts or "" in parts:
            problems.append((rel, "unsafe path in manifest"))
            continue
        path = os.path.join(folder, *parts)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            problems.append((rel, "missing"))
            continue
        if not stat.S_ISREG(mode):
            problems.append((rel, "not a regular file"))
        elif sha256_file(path) != listed[rel]:
            message = (
                f"checksum mismatch (manifest {listed[rel][:12]}…, file {sha256_file(path)[:12]}…)"
            )
            problems.append((rel, message))
    for rel in on_disk_files:
        if rel not in listed:
            problems.append((rel, "not listed in the manifest"))
    counts: dict[str, int] = {}
    checked: dict[str, list[str]] = {}
    if os.path.isfile(os.path.join(folder, DATABASE)):
        try:
            counts, rows = db_read(os.path.join(folder, DATABASE))
            counts.update(content_counts(folder))
            checked = cross_check(folder, rows)
        except BackupError as exc:
            problems.extend(exc.problems)
    recorded = manifest.get("cross_check")
    if recorded is not None and checked:
        for key, names in sorted(checked.items()):
            for name in sorted(set(names) - set(recorded.get(key, []))):
                where = (
                    DATABASE
                    if "without_file" in key or "without_folder" in key
                    else f"{REPOSITORIES}/{name}"
                )
                message = (
                    f"{key.replace('_', ' ')}: {name} (the forge had it when the backup was sealed)"
                )
                problems.append((where, message))
    for key, expected in (manifest.get("counts") or {}).items():
        if counts and key in counts and counts[key] != expected:
            problems.append((DATABASE, f"has {counts[key]} {key}, manifest says {expected}"))
    on_disk = repo_dirs(folder)
    for key, refs in sorted((manifest.get("refs") or {}).items()):
        rel = f"{REPOSITORIES}/{key}.git"
        if key not in on_disk:
            problems.append((rel, "repository missing"))
            continue
        actual = read_refs(on_disk[key])
        for ref, sha in sorted(refs.items()):
            if actual.get(ref) != sha:
                message = f"is {actual.get(ref) or 'missing'}, manifest says {sha}"
                problems.append((f"{rel}/{ref}", message))
    for key in sorted(set(on_disk) - set(manifest.get("refs") or {})):
        problems.append((f"{REPOSITORIES}/{key}.git", "repository not listed in the manifest"))
    if problems:
        path, message = problems[0]
        raise BackupError(path, message, problems)
    return {
        "ok": True,
        "folder": os.path.abspath(folder),
        "files": len(listed),
        "gitea_version": manifest.get("gitea_version"),
        "created": manifest.get("created"),
        "counts": counts,
        "repositories": sorted(k for k in on_disk if not k.endswith(".wiki")),
        "wikis": sorted(k[:-5] for k in on_disk if k.endswith(".wiki")),
        "cross_check": {k: v for k, v in checked.items() if v},
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="phoenix-backup-verify", description="Verify (or seal) a Phoenix Gitea backup folder."
    )
    parser.add_argument("folder")
    parser.add_argument(
        "--write-manifest",
        action="store_true",
        help="write manifest.json for the folder instead of verifying it",
    )
    parser.add_argument(
        "--gitea-version", default="unknown", help="recorded in the manifest by --write-manifest"
    )
    args = parser.parse_args(argv)
    try:
        if args.write_manifest:
            manifest = write_manifest(args.folder, gitea_version=args.gitea_version)
            print(
                json.dumps(
                    {"ok": True, "counts": manifest["counts"], "files": len(manifest["files"])},
                    sort_keys=True,
                )
            )
        else:
            print(json.dumps(verify(args.folder), sort_keys=True))
    except BackupError as exc:
        print(f"phoenix-backup-verify: {args.folder}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"phoenix-backup-verify: {args.folder}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
