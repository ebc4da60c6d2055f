"""Which snapshot is the newest is decided by the store, not by the time the forge wrote into
it: the operator reads arrivals (phoenix/backup/arrival.py) over real SFTP, and a host choosing
alone refuses a snapshot dated even a minute ahead of its clock."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from phoenix.backup import arrival
from phoenix.backup import snapshots as backup
from phoenix.errors import PhoenixError
from tests.unit.test_backup import PASSWORD, forge, future_snapshot, job_config, run_job  # noqa: F401
from tests.unit.test_repo_snapshots import line, restore_module  # noqa: F401
from phoenix.backup.store import Store
from phoenix.settings import REPO

SFTP_SERVER = "/usr/lib/openssh/sftp-server"   # openssh-sftp-server: what internal-sftp runs
JOB = REPO / "files" / "phoenix_backup.py"

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")


def a_minute_ahead() -> str:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=60)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def test_sftp_gives_each_files_arrival_as_the_store_keeps_it(tmp_path):
    folder = tmp_path / "snapshots"
    folder.mkdir()
    for name, mtime in (("a" * 64, 1_700_000_000), ("b" * 64, 1_800_000_123)):
        (folder / name).write_text("{}")
        os.utime(folder / name, (mtime, mtime))
    got = arrival.sftp_mtimes([SFTP_SERVER, "-e"], str(folder), timeout=10, where="the store")
    assert got == {"a" * 64: 1_700_000_000.0, "b" * 64: 1_800_000_123.0}


def test_an_sftp_listing_that_fails_is_one_line(tmp_path):
    with pytest.raises(PhoenixError, match=r"^cannot read when snapshots arrived on the store "
                                           r"\(.*/nothere/snapshots\): .*No such file"):
        arrival.sftp_mtimes([SFTP_SERVER, "-e"], str(tmp_path / "nothere" / "snapshots"),
                            timeout=10, where="the store")


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(repository=str(tmp_path / "repo"), password=PASSWORD)


def test_latest_is_the_snapshot_that_arrived_last_whatever_time_it_claims(
        store, forge, tmp_path):  # noqa: F811
    backup.init(store)
    config = job_config(tmp_path, forge, Path(store.repository))
    assert run_job(config).returncode == 0
    real = json.loads((tmp_path / "status.json").read_text())["snapshot_id"]
    # the forge plants one dated a minute ahead: within no tolerance, and, a while later,
    # no longer in the future at all, so only its arrival tells it apart
    planted = future_snapshot(store, forge / "memories", when=a_minute_ahead())
    assert backup.resolve_snapshot(store, "latest") == real
    files = Path(store.repository) / "snapshots"
    (planted_file,) = [p for p in files.iterdir() if p.name.startswith(planted)]
    back = time.time() - 3600   # it came an hour before the real one: older by arrival
    os.utime(planted_file, (back, back))
    store_later = Store(repository=store.repository, password=PASSWORD, future_tolerance=3600)
    assert backup.resolve_snapshot(store_later, "latest") == real
    arrived = arrival.arrivals(store)
    assert arrived is not None and arrived[real] > arrived[planted_file.name]


def test_a_standby_never_prestages_a_snapshot_dated_a_minute_ahead(store, forge, tmp_path):  # noqa: F811
    backup.init(store)
    config = job_config(tmp_path, forge, Path(store.repository))
    assert run_job(config).returncode == 0
    real = json.loads((tmp_path / "status.json").read_text())["snapshot_id"]
    later = future_snapshot(store, forge / "memories", host="forge-recovery-20261202",
                            when=a_minute_ahead())
    data = json.loads(config.read_text())
    data["prestage_dir"] = str(tmp_path / "warm")
    config.write_text(json.dumps(data))
    proc = run_job(config, "prestage")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "warm" / f"{real}.verified").exists()
    assert f"snapshot {later} claims " in proc.stderr and "later than now + 30 s" in proc.stderr


def test_a_restore_never_replays_a_repository_snapshot_dated_a_minute_ahead(line, tmp_path,  # noqa: F811
                                                                           capsys):
    forge, config, store = line
    assert run_job(config).returncode == 0
    full = json.loads((tmp_path / "job" / "status.json").read_text())["snapshot_id"]
    time.sleep(1.1)
    assert run_job(config, "repositories").returncode == 0
    real = json.loads((tmp_path / "job" / "repositories.json").read_text())["snapshot_id"]
    later = future_snapshot(store, forge / "etc", tag="phoenix-repositories",
                            when=a_minute_ahead())
    restore = restore_module()
    found = restore.newer_repository_snapshot(
        restore.ResticLine({"backup_job": str(JOB), "backup_config": str(config)}), full)
    assert found is not None and found["id"].startswith(real[:8])
    assert f"snapshot {later} claims " in capsys.readouterr().err
