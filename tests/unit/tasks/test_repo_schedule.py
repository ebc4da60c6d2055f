"""Issue 21: the repository snapshots keep frequent_snapshot_interval as a promise: runs start
every interval - frequent_snapshot_run_budget (tasks/backups.py's timer line), a budget that
leaves no period is refused in one line, and a run longer than its budget is one problem
line for `phoenix backup status` and validation (phoenix/backup/replication.py)."""

from __future__ import annotations

import runpy

import jinja2
import pytest
from pyinfra.api import DeployError

from phoenix.backup import replication
from phoenix.errors import PhoenixError
from phoenix.settings import REPO
from tasks import backups


def timer(interval: int, budget: float) -> str:
    """The repository job's timer unit as the deploy writes it."""
    job = backups.repo_snapshot_job({"frequent_snapshot_interval": interval,
                                     "frequent_snapshot_run_budget": budget})
    assert job is not None
    unit, _command, description, when, schedule = job
    template = jinja2.Template((REPO / "templates" / "phoenix-backup.timer.j2").read_text())
    return template.render(unit=unit, description=description, when=when, schedule=schedule,
                           accuracy=replication.REPO_TIMER_ACCURACY)


def test_repository_runs_start_every_interval_less_the_budget():
    lab = timer(15, 7)
    assert "\nOnUnitActiveSec=8s\n" in lab and "\nAccuracySec=1s\n" in lab, lab
    assert "every 8 s (at most 15 s of writes lost)" in lab
    assert "\nOnUnitActiveSec=240s\n" in timer(300, 60)
    assert "\nOnUnitActiveSec=7s\n" in timer(15, 7.5)   # rounded down: never later
    assert backups.repo_snapshot_job({"frequent_snapshot_interval": 0}) is None
    # the shipped settings keep to the rule
    defaults = runpy.run_path(str(REPO / "group_data" / "all.py"))
    assert replication.repo_snapshot_period(defaults) == 240


def test_a_budget_that_leaves_no_period_is_refused_in_one_line():
    for budget in (15, 20, 1, 0, None, "7", True):
        with pytest.raises(PhoenixError) as caught:
            replication.repo_snapshot_period({"frequent_snapshot_interval": 15,
                                              "frequent_snapshot_run_budget": budget})
        assert "\n" not in str(caught.value)
        assert str(caught.value).startswith(f"frequent_snapshot_run_budget {budget!r} must be")
    with pytest.raises(DeployError, match=r"below frequent_snapshot_interval \(15 s\)"):
        backups.repo_snapshot_job({"frequent_snapshot_interval": 15,
                                   "frequent_snapshot_run_budget": 15})


def test_a_run_over_its_budget_is_one_problem_line():
    settings = {"frequent_snapshot_interval": 15, "frequent_snapshot_run_budget": 7,
                "backup_max_age": 3600}
    run = {"time": "2026-11-28T18:00:00+00:00", "duration_seconds": 6.0}
    assert replication.repo_run_problem(run, settings) is None     # 7 s less the timer's 1
    assert replication.repo_run_problem(None, settings) is None    # no run yet
    slow = {**run, "duration_seconds": 6.4}
    line = replication.repo_run_problem(slow, settings)
    assert line == ("the last repository snapshot run (2026-11-28T18:00:00+00:00) took 6.4 s, "
                    "over the 6 s frequent_snapshot_run_budget allows (its 7 s less the timer's "
                    "1 s): pushes older than frequent_snapshot_interval (15 s) may be lost in a "
                    "disaster")
    assert replication.problems(10.0, [], settings, 5.0, check_repo=True,
                                repo_status=slow) == [line]
    assert replication.problems(10.0, [], settings, 5.0, check_repo=True,
                                repo_status=run) == []
    assert "recorded no duration" in replication.repo_run_problem({"time": "x"}, settings)
    assert replication.repo_run_problem(slow, {"frequent_snapshot_interval": 0}) is None


def test_backup_status_prints_the_last_run_and_fails_in_one_line_past_its_budget(monkeypatch):
    """`phoenix backup status` with the store and the forge stood in for by their answers."""
    import datetime
    from types import SimpleNamespace

    from click.testing import CliRunner

    from phoenix import settings, sshconf
    from phoenix.backup import cli as cli_backup
    from phoenix.backup import snapshots as backup

    now = datetime.datetime.now(datetime.UTC).isoformat()
    snaps = [{"id": "a" * 64, "time": now, "tags": ["phoenix"]},
             {"id": "b" * 64, "time": now, "tags": ["phoenix-repositories"]}]
    lab = {"frequent_snapshot_interval": 15, "frequent_snapshot_run_budget": 7, "backup_max_age": 3600,
           "backup_repo_status_file": "/var/lib/phoenix/backup/last-repositories.json",
           "backup_status_file": "/var/lib/phoenix/backup/last-success.json"}
    run = {"time": "2026-11-28T18:00:00+00:00", "duration_seconds": 2.5}
    own: dict = {"full": {"time": now, "snapshot_id": "ab" * 32}}
    monkeypatch.setattr(settings, "load", lambda *a, **k: lab)
    monkeypatch.setattr(cli_backup, "_store", lambda: SimpleNamespace(tag="phoenix"))
    monkeypatch.setattr(backup, "list_snapshots", lambda store, all_hosts=False: snaps)
    monkeypatch.setattr(sshconf, "role_target", lambda role: SimpleNamespace(host="forge"))
    monkeypatch.setattr(replication, "repo_run_status", lambda target, s: run)
    monkeypatch.setattr(replication, "full_run_status", lambda target, s: own["full"])
    ok = CliRunner().invoke(cli_backup.backup, ["status"])
    assert ok.exit_code == 0, ok.output
    assert "its last run took 2.5 s (frequent_snapshot_run_budget 7 s" in ok.stdout
    run["duration_seconds"] = 6.4
    slow = CliRunner().invoke(cli_backup.backup, ["status"])
    assert slow.exit_code == 1 and slow.exception.exit_code == 4  # Unhealthy, by main()
    assert slow.stderr.splitlines() == [
        "problem: " + replication.repo_run_problem(run, lab)], slow.stderr
    # A primary that has saved no full snapshot of its own (just cut over or promoted): the
    # newest snapshot is its predecessor's, fresh as it may be, and it is not yet protected.
    run["duration_seconds"] = 2.5
    own["full"] = None
    bare = CliRunner().invoke(cli_backup.backup, ["status"])
    assert bare.exit_code == 1 and bare.exception.exit_code == 4
    assert bare.stderr.splitlines() == [
        "problem: not yet protected: forge has saved no full snapshot of its own "
        "(/var/lib/phoenix/backup/last-success.json is missing; phoenix backup now)"], bare.stderr
