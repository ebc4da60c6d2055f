"""The full backup's staging hard-links what Gitea never rewrites (git objects, attachments,
LFS, packages): it costs the forge's disk nothing, and restic stores the same content. Where
the kernel refuses a link (two mounts of one filesystem, as a systemd sandbox's ReadWritePaths
makes them) the files are copied, counted in one line, and the free-space check counts them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from phoenix.backup import snapshots as backup
from phoenix.backup.restic import JOB
from phoenix.backup.store import Store
from phoenix.lab.fixtures import add_attachment, add_lfs_object
from tests.unit.test_backup import PASSWORD, forge, job_config, run_job  # noqa: F401

pytestmark = [
    pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (make test runs as root)"),
]

MIB = 1 << 20


def mount(*argv: str) -> None:
    subprocess.run(["mount", *argv], check=True)


@pytest.fixture
def small(tmp_path):
    """A 64 MiB tmpfs: a forge with 40 MiB of write-once files fits once, not twice."""
    folder = tmp_path / "small"
    folder.mkdir()
    mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder))
    try:
        yield folder
    finally:  # a test's bind mount, then the tmpfs
        subprocess.run(["umount", str(folder / "backup")], check=False, capture_output=True)
        subprocess.run(["umount", str(folder)], check=False)


def big_forge(forge: Path, root: Path) -> tuple[Path, Path, Path]:  # noqa: F811
    """A copy of the shared forge in `root`, with a 24 MiB attachment and a 16 MiB LFS object
    (Gitea's rows and paths); returns the forge, the attachment and the LFS object."""
    mine = root / "forge"
    shutil.copytree(forge, mine, symlinks=True)
    data, db = mine / "gitea" / "data", mine / "gitea" / "gitea.db"
    uuid = add_attachment(data, db, repo_id=1, issue_id=1, name="dump.bin",
                          content=os.urandom(MIB) * 24)
    oid = add_lfs_object(data, db, repo_id=1, content=os.urandom(MIB) * 16)
    return (mine, data / "attachments" / uuid[0] / uuid[1] / uuid,
            data / "lfs" / oid[0:2] / oid[2:4] / oid[4:])


def config_in(tmp_path: Path, mine: Path, staging: Path, reserve_mib: int = 4) -> Path:
    backup.init(Store(repository=str(tmp_path / "repo"), password=PASSWORD))
    config = job_config(tmp_path, mine, tmp_path / "repo")
    data = json.loads(config.read_text())
    data.update(staging_dir=str(staging), staging_reserve_mib=reserve_mib)
    config.write_text(json.dumps(data))
    return config


def used(folder: Path) -> int:
    fs = os.statvfs(folder)
    return (fs.f_blocks - fs.f_bfree) * fs.f_frsize


def test_attachments_and_lfs_are_hard_linked_into_the_staging_and_sent_as_they_are(
        forge, tmp_path, small):  # noqa: F811
    mine, attachment, lfs = big_forge(forge, small)
    staging = small / "backup" / "staging"
    config = config_in(tmp_path, mine, staging)
    before = used(small)
    proc = run_job(config)
    assert proc.returncode == 0, proc.stderr   # a copy of 40 MiB would not fit in what is left
    assert used(small) - before < 2 * MIB, (used(small) - before) / MIB
    rel = os.path.relpath(attachment, mine)
    for live, staged in ((attachment, staging / os.path.relpath(attachment, mine)),
                         (lfs, staging / os.path.relpath(lfs, mine))):
        assert staged.stat().st_ino == live.stat().st_ino and live.stat().st_nlink == 2
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["staged_links"]["copied"] == 0 and status["staged_links"]["linked"] >= 2
    assert "copied where a hard link was refused" not in proc.stderr
    # what restic stored is the live file's content
    dumped = subprocess.run([str(JOB), "--config", str(config), "restic", "dump",
                             status["snapshot_id"], "/" + rel], capture_output=True,
                            timeout=120, check=True).stdout
    assert dumped == attachment.read_bytes()
    # a second run keeps the links (restic skips them) and adds no disk
    again = run_job(config)
    assert again.returncode == 0, again.stderr
    assert (staging / rel).stat().st_ino == attachment.stat().st_ino
    assert attachment.stat().st_nlink == 2


def test_where_the_kernel_refuses_the_links_the_files_are_copied_counted_and_sized(
        forge, tmp_path, small):  # noqa: F811
    """The staging folder a mount of its own on the forge's filesystem (what ReadWritePaths
    makes in a sandbox): link(2) fails with EXDEV although st_dev is the same."""
    mine, attachment, _ = big_forge(forge, small)
    (small / "backup").mkdir()
    mount("--bind", str(small / "backup"), str(small / "backup"))
    staging = small / "backup" / "staging"
    assert os.stat(small / "backup").st_dev == os.stat(mine).st_dev
    config = config_in(tmp_path, mine, staging)
    proc = run_job(config)
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert "the staging copy needs" in line and "nothing was staged or sent" in line, line
    assert not (staging / "gitea").exists()
    # with room for the copies, they are made, and said so in one line
    mount("-o", "remount,size=160m", str(small))
    proc = run_job(config)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "hard link was refused" in line]
    assert len(said) == 1 and "EXDEV" in said[0], proc.stderr
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["staged_links"]["copied"] >= 1, status
    staged = staging / os.path.relpath(attachment, mine)
    assert staged.stat().st_ino != attachment.stat().st_ino
    assert staged.read_bytes() == attachment.read_bytes()
    # the mounts made one again, the next run turns those copies into links: their disk is freed
    subprocess.run(["umount", str(small / "backup")], check=True)
    before = used(small)
    proc = run_job(config)
    assert proc.returncode == 0, proc.stderr
    assert staged.stat().st_ino == attachment.stat().st_ino
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["staged_links"]["copied"] == 0, status
    assert "hard link was refused" not in proc.stderr
    assert before - used(small) >= 24 * MIB - MIB, (before - used(small)) / MIB
