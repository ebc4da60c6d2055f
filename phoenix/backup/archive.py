"""The Phoenix archive: a sealed Gitea folder as a tar.gz (manifest.json at its top) whose
bytes depend only on the folder, so an import of the same backup is the same archive.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from pathlib import Path

from phoenix.errors import PhoenixError

ARCHIVE_EPOCH = 1714000000  # the fixed time of every archive member: same folder, same bytes


def write_archive(folder: Path, archive: Path) -> str:
    """folder as a tar.gz whose members are relative to it, in sorted order, with fixed owners
    and times, so the same folder gives the same bytes; returns the archive's sha256 hex."""
    folder, archive = Path(folder), Path(archive)
    paths = sorted(p for p in folder.rglob("*") if p != archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(archive, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
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
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def archive_manifest(archive: Path) -> bytes:
    """The manifest.json at the top of a Phoenix archive; one line of error otherwise."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            return member.read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise PhoenixError(
            f"{archive} is not a Phoenix backup archive (a .tar.gz with "
            f"manifest.json at its top): {type(exc).__name__}: {exc}"
        ) from None


def archive_file(archive: Path, name: str) -> bytes | None:
    """A top-level file of a Phoenix archive (app.ini), None when it holds none."""
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.extractfile(name)
        except KeyError:
            return None
        return member.read() if member else None
