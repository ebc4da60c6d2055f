"""A restore unpacks a snapshot on the host's own disk: when it would not fit (less the reserve,
backup_disk_reserve_mib), it is refused before anything is written, naming the numbers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from phoenix.backup import snapshots as backup
from phoenix.backup.store import Store
from tests.unit.test_backup import PASSWORD, forge, job_config, run_job, run_restore  # noqa: F401

pytestmark = [
    pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (make test runs as root)"),
]


def test_a_restore_too_big_for_the_disk_is_refused_before_it_writes(forge, tmp_path):  # noqa: F811
    shutil.copytree(forge, tmp_path / "forge", symlinks=True)
    mine = tmp_path / "forge"   # a copy of its own: the fixture is shared
    (mine / "gitea" / "data" / "attachments").mkdir(parents=True, exist_ok=True)
    (mine / "gitea" / "data" / "attachments" / "big").write_bytes(os.urandom(1 << 20) * 64)
    store = Store(repository=str(tmp_path / "repo"), password=PASSWORD)
    backup.init(store)
    config = job_config(tmp_path, mine, tmp_path / "repo")
    assert run_job(config).returncode == 0
    snapshot = json.loads((tmp_path / "status.json").read_text())["snapshot_id"]
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(small)], check=True)
    try:
        proc = run_restore(config, "stage", snapshot, str(small / "stage" / "unpacked"))
        assert proc.returncode != 0
        line = proc.stderr.strip().splitlines()[-1]
        assert f"restoring snapshot {snapshot[:8]} needs 64 MiB more in" in line, proc.stderr
        assert "(keeping 256 MiB for the forge): nothing was restored" in line, line
        assert list(small.iterdir()) == []
        # with the reserve the operator set lower, the same restore fits
        data = json.loads(config.read_text())
        data["staging_reserve_mib"] = 64
        config.write_text(json.dumps(data))
        proc = run_restore(config, "stage", snapshot, str(small / "stage" / "unpacked"))
        assert proc.returncode == 0, proc.stderr
        assert (small / "stage" / "unpacked" / "data" / "attachments" / "big").stat().st_size \
            == 64 << 20
    finally:
        subprocess.run(["umount", str(small)], check=False)
