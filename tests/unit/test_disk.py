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


def test_what_restores_set_aside_goes_only_past_the_days_the_operator_set(tmp_path):
    from tests.unit.test_backup import RESTORE

    aside, staging = tmp_path / "aside", tmp_path / "restore"
    for folder in ("20260101T000000Z", "20260101T000000Z-2", "29990101T000000Z", "not-a-stamp"):
        (aside / folder).mkdir(parents=True)
        (aside / folder / "gitea.db").write_text("set aside")
    (aside / "20250101T000000Z").symlink_to(tmp_path / "elsewhere")   # never followed
    (tmp_path / "elsewhere").mkdir()
    old = 1_700_000_000
    for stage in ("a" * 64, "b" * 64, "c" * 64):
        (staging / stage).mkdir(parents=True)
        (staging / stage / "backup.tar.gz").write_text("archive")
    for stage in ("a" * 64, "b" * 64):
        os.utime(staging / stage, (old, old))
    (staging / "config.json").write_text("{}")
    config = tmp_path / "tool.json"
    config.write_text(json.dumps({"aside_dir": str(aside), "staging_dir": str(staging)}))

    def prune(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(RESTORE), "--config", str(config), "prune", *args],
                              capture_output=True, text=True, timeout=60, check=False)

    proc = prune("--keep-days", "30", "--current", "b" * 64)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in aside.iterdir()) == [
        "20250101T000000Z", "29990101T000000Z", "not-a-stamp"]
    assert (tmp_path / "elsewhere").is_dir()
    assert sorted(p.name for p in staging.iterdir()) == ["b" * 64, "c" * 64, "config.json"]
    assert json.loads(proc.stdout)["removed"] == [
        str(aside / "20260101T000000Z"), str(aside / "20260101T000000Z-2"),
        str(staging / ("a" * 64))]
    again = prune("--keep-days", "30", "--current", "b" * 64)
    assert again.returncode == 0 and json.loads(again.stdout)["removed"] == []


def test_the_deploy_prunes_only_what_is_past_restore_keep_days_and_then_changes_nothing(
        tmp_path):
    """The converge removes what restores set aside past restore_keep_days (none kept when it
    is unset), and reports a change only when something was due: a second converge is quiet."""
    from tests.unit.tasks.dry import run_task

    aside, staging = tmp_path / "aside", tmp_path / "restore"
    old = aside / "20000101T000000Z"
    (old / "gitea").mkdir(parents=True)
    data = {"restore_staging_dir": str(staging), "restore_aside_dir": str(aside),
            "restore_tool_path": str(tmp_path / "phoenix-restore"),
            "restore_verifier_path": str(tmp_path / "phoenix-backup-verify"),
            "gitea_start_requires_database": "False"}
    kept = run_task(tmp_path, "restore", "verify_backup", dry=False, data=data)
    assert not [name for name in kept if name.startswith("Remove what restores set aside")]
    assert old.is_dir()
    name = "Remove what restores set aside or staged over 30 days ago"
    first = run_task(tmp_path, "restore", "verify_backup", dry=False,
                     data={**data, "restore_keep_days": 30})
    assert first[name] is True and not old.exists()
    again = run_task(tmp_path, "restore", "verify_backup", dry=False,
                     data={**data, "restore_keep_days": 30})
    assert again[name] is False and not any(again.values()), again
