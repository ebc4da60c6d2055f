"""Offsite backups (tasks/backups.py): the job installed with its secrets closed to others,
pointed at group_data's store and tag; an sftp store's host key pinned as group_data pins it,
never trusted on first use; the timer on the forge alone (a recovery host starts it at its
cutover, a standby at its promotion); the newest snapshot younger than backup_max_age."""

from __future__ import annotations

import datetime
import json
import shlex

import pytest

from phoenix.backup.store import known_hosts_lines
from phoenix.state import CUTOVER_FILE

from .helpers import mode, out

TIMER = "phoenix-backup.timer"


@pytest.fixture(scope="module")
def job(host, settings) -> dict:
    """The job's config.json on the host; skips where group_data sets no backup_repository."""
    if not settings.get("backup_repository"):
        pytest.skip("backup_repository is not set: this host has no backup job")
    path = f"{settings['backup_config_dir']}/config.json"
    f = host.file(path)
    assert f.is_file, f"{path} is missing: the backup job is not installed (tasks/backups.py)"
    return json.loads(f.content_string)


def _future(status: dict, settings) -> str:
    """The line naming the status file's snapshot when its time is later than now +
    backup_future_tolerance (a negative age passes any max age), else empty."""
    from phoenix.backup import pitr

    found = pitr.future(
        [{"id": str(status.get("snapshot_id") or "?"), "time": status["time"]}],
        float(settings.get("backup_future_tolerance") or 30),
    )
    return "; ".join(found.values())


def test_backups_job_installed_for_the_forges_store(host, settings, job):
    problems = []
    program = host.file(settings["backup_job_path"])
    if not program.is_file or not program.mode & 0o100 or program.user != "root":
        problems.append(f"{settings['backup_job_path']} is missing or not root's executable")
    folder = settings["backup_config_dir"]
    for name in ("config.json", "password"):
        f = host.file(f"{folder}/{name}")
        if not f.is_file or f.user != "root" or f.mode != 0o600:
            problems.append(
                f"{folder}/{name} is "
                + (f"{f.user} {mode(f)}, expected root 0600" if f.is_file else "missing")
            )
    repository = settings["backup_repository"]
    named = {job.get("repository"), str(job.get("location", "")).split(" ")[0]}
    if repository not in named:
        problems.append(
            f"the job backs up to {job.get('location') or job.get('repository')}, "
            f"not backup_repository {repository}"
        )
    if job.get("tag") != settings["backup_tag"]:
        problems.append(
            f"the job tags its snapshots {job.get('tag')!r}, not backup_tag "
            f"{settings['backup_tag']!r}: they would not be the forge's line"
        )
    assert not problems, "; ".join(problems)


def test_backups_store_host_key_pinned(host, settings, job):
    if not settings["backup_repository"].startswith("sftp:"):
        pytest.skip("the store is not reached over ssh: it has no host key to pin")
    path = f"{settings['backup_config_dir']}/known_hosts"
    f = host.file(path)
    assert f.is_file, f"{path} is missing: the job has no pinned host key for the store"
    pinned = sorted(known_hosts_lines(f.content_string))
    wanted = sorted(known_hosts_lines(settings["backup_known_hosts"]))
    assert pinned == wanted, (
        f"{path} pins {len(pinned)} key line(s) that are not "
        "backup_known_hosts': the job would trust another store"
    )
    ssh = job.get("rclone_program") or job.get("sftp_command") or ""
    words = shlex.split(ssh)
    for option in ("StrictHostKeyChecking=yes", f"UserKnownHostsFile={path}"):
        assert option in words, (
            f"the job's ssh to the store lacks -o {option}: its host key "
            "would not be checked against the pinned one"
        )


def test_backups_timer_runs_on_the_forge_alone(host, settings, role, job):
    timer = host.service(TIMER)
    if role == "primary":
        if settings["backup_timer_enabled"]:
            assert timer.is_running and timer.is_enabled, (
                f"{TIMER} is not running and enabled on the forge: no backup is taken"
            )
        return
    assert not timer.is_running, (
        f"{TIMER} runs on a {role} host: its snapshots would join "
        "the forge's line (only the primary backs up)"
    )


def test_step4_newest_snapshot_is_recent(host, settings, role, streaming):
    if role != "primary" or not settings.get("backup_repository"):
        pytest.skip("only the forge backs up")
    text = out(host, f"cat {shlex.quote(settings['backup_status_file'])} 2>/dev/null || true")
    # A primary takes its first full snapshot as it becomes one (its converge, or right after
    # its cutover): without it a disaster recovers the previous primary's data.
    if not text and not host.file(CUTOVER_FILE).exists:
        pytest.skip(
            "not yet protected: a promoted standby takes its first full snapshot "
            "right after its cutover (phoenix recover's protect step)"
        )
    assert text, (
        "not yet protected: this primary has taken no full snapshot of its own "
        f"({settings['backup_status_file']} is missing; phoenix backup now)"
    )
    status = json.loads(text)
    assert not (future := _future(status, settings)), future
    when = datetime.datetime.fromisoformat(status["time"])
    age = (datetime.datetime.now(datetime.UTC) - when).total_seconds()
    assert age <= float(settings["backup_max_age"]), (
        f"the newest snapshot is {age:.0f} s old (backup_max_age {settings['backup_max_age']})"
    )


def test_step4_newest_repository_snapshot_is_recent(host, settings, role, streaming):
    """Every file but the databases (repositories, Gitea's data folder, the houses' files)
    every frequent_snapshot_interval seconds; the newest run may be three intervals old (a run
    in flight, a slow store) before this fails, and it took Gitea's data folder."""
    from phoenix.backup import replication

    interval = int(settings.get("frequent_snapshot_interval") or 0)
    if role != "primary" or not settings.get("backup_repository") or interval <= 0:
        pytest.skip(
            "only the forge snapshots its repositories, when frequent_snapshot_interval > 0"
        )
    timer = out(host, "systemctl is-active phoenix-backup-repositories.timer || true").strip()
    assert timer == "active", f"the repository snapshot timer is {timer or 'missing'}"
    text = out(host, f"cat {shlex.quote(settings['backup_repo_status_file'])} 2>/dev/null || true")
    if not text:  # a forge that has just become the primary: its first run is on its way
        return
    status = json.loads(text)
    assert not (future := _future(status, settings)), future
    when = datetime.datetime.fromisoformat(status["time"])
    age = (datetime.datetime.now(datetime.UTC) - when).total_seconds()
    assert age <= replication.repo_snapshot_max_age(settings), (
        f"the newest frequent snapshot ({', '.join(replication.FREQUENT_KINDS)}) is {age:.0f} s "
        f"old (frequent_snapshot_interval {interval})"
    )
    assert "in_place" in status, (
        "the last frequent snapshot took the repositories alone: converge again so that it "
        "takes Gitea's data folder and the houses' files too"
    )


def test_step4_repository_snapshot_runs_keep_their_budget(host, settings, role, streaming):
    """A disaster loses at most frequent_snapshot_interval of pushes only while each run
    keeps to frequent_snapshot_run_budget (the runs start every interval - budget); the last
    run's length is in its status file."""
    from phoenix.backup import replication

    period = replication.repo_snapshot_period(settings)
    if role != "primary" or not settings.get("backup_repository") or period is None:
        pytest.skip(
            "only the forge snapshots its repositories, when frequent_snapshot_interval > 0"
        )
    text = out(host, f"cat {shlex.quote(settings['backup_repo_status_file'])} 2>/dev/null || true")
    if not text:  # a forge that has just become the primary: its first run is on its way
        return
    problem = replication.repo_run_problem(json.loads(text), settings)
    assert problem is None, problem
