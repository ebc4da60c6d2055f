"""Runbook steps 6 and 7 (tasks/cron.py): the cron jobs of timmy-config's cron/ (the source
of truth) are installed where cron reads them, and its fleet-health job reports every house."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from .helpers import mode, out

CRON_D = "/etc/cron.d"
# Debian's cron reads only /etc/cron.d files whose names are made of these (no dots).
CRON_D_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _jobs(text: str) -> list[str]:
    """The job lines of a cron file, blanks squeezed; comments and VAR=value lines left out."""
    jobs = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):
            continue
        jobs.append(" ".join(line.split()))
    return jobs


def _source_jobs(host, settings) -> dict[str, str]:
    """job line -> the timmy-config file it comes from."""
    folder = f"{settings['timmy_config_dest']}/{settings['cron_source_dir']}"
    assert host.file(folder).is_directory, (
        f"timmy-config has no {settings['cron_source_dir']}/ "
        f"folder at {folder}: no cron source of truth"
    )
    jobs = {}
    for name in out(host, f"find {shlex.quote(folder)} -maxdepth 1 -type f -name '*.cron'").split():
        for job in _jobs(host.file(name).content_string):
            jobs[job] = name
    return jobs


def _installed(host, settings) -> dict[str, str]:
    """job line -> the file cron reads it from (cron_file, any /etc/cron.d file, root's
    crontab); files cron would ignore are left out, so their lines count as missing."""
    found: dict[str, str] = {}
    names = set(out(host, f"find {CRON_D} -maxdepth 1 -type f").split())
    if host.file(settings["cron_file"]).is_file:
        names.add(settings["cron_file"])
    for name in sorted(names):
        f = host.file(name)
        if name.startswith(f"{CRON_D}/") and not CRON_D_NAME.match(name.rsplit("/", 1)[1]):
            continue
        if f.user != "root" or f.mode & 0o022:
            continue
        for job in _jobs(f.content_string):
            found.setdefault(job, name)
    crontab = host.run("crontab -l -u root")
    for job in _jobs(crontab.stdout if crontab.rc == 0 else ""):
        fields = job.split(None, 5)
        if len(fields) == 6:  # a user crontab has no user field: compare as cron.d lines
            found.setdefault(" ".join([*fields[:5], "root", fields[5]]), "crontab of root")
    return found


def test_step6_cron_daemon_active(host):
    cron = host.service("cron")
    assert cron.is_running, "the cron service is not running: no job will run"
    assert cron.is_enabled, "the cron service is not enabled: it will not start at boot"


def test_step6_cron_entries_installed(host, settings, role):
    if role == "standby":  # one primary: the jobs run on the forge alone
        assert not host.file(settings["cron_file"]).exists, (
            f"{settings['cron_file']} is on an unpromoted standby: its jobs would run twice"
        )
        return
    wanted = _source_jobs(host, settings)
    installed = _installed(host, settings)
    missing = [f"`{job}` (from {source})" for job, source in wanted.items() if job not in installed]
    assert not missing, (
        f"{len(missing)} cron job(s) of timmy-config are not installed: "
        + "; ".join(missing[:3])
        + f" (expected in {settings['cron_file']} "
        "or /etc/cron.d)"
    )


def test_step6_cron_files_safe_for_cron(host, settings):
    """cron skips a file that is group/world-writable, not root's, or has a dot in its name."""
    problems = []
    names = out(host, f"find {CRON_D} -maxdepth 1 -type f").split()
    for name in names:
        f = host.file(name)
        base = name.rsplit("/", 1)[1]
        if not CRON_D_NAME.match(base) and base != ".placeholder":
            problems.append(f"{name} has a dot or odd character in its name: cron ignores it")
        elif f.user != "root" or f.mode & 0o022:
            problems.append(
                f"{name} is {f.user} {mode(f)}: cron ignores it unless it is "
                "root's and not writable by others"
            )
    assert not problems, "; ".join(problems)


FLEET_HEALTH_REPORTS = ".local/timmy/fleet-health"  # below the job user's home (runbook step 9)


def test_step7_fleet_health_report_at_runbook_path(host, settings, role):
    """The runbook's heartbeat check reads ~/.local/timmy/fleet-health/*.json, which
    timmy-config's fleet-health job writes from the houses' own heartbeats: run the job as
    its cron line does, then read its newest report there; every wizard must be in it, ok."""
    if role == "standby":
        pytest.skip("an unpromoted standby runs no house and no cron, so nothing reports")
    cron = host.file(settings["cron_file"])
    jobs = [
        line.split(None, 6)
        for line in (cron.content_string if cron.is_file else "").splitlines()
        if "fleet-health" in line and not line.lstrip().startswith("#")
    ]
    jobs = [fields for fields in jobs if len(fields) == 7]
    assert jobs, (
        f"no fleet-health job in {settings['cron_file']}: the runbook's heartbeat "
        f"check (~/{FLEET_HEALTH_REPORTS}/*.json) would read nothing (runbook step 9)"
    )
    user, command = jobs[0][5], jobs[0][6]
    home = out(host, f"getent passwd {shlex.quote(user)} | cut -d: -f6").strip()
    host.run(
        f"cd / && env -i HOME={shlex.quote(home)} LOGNAME={shlex.quote(user)} "
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SHELL=/bin/bash "
        f"runuser -u {shlex.quote(user)} -- bash -c {shlex.quote(command)}"
    )
    folder = f"{home}/{FLEET_HEALTH_REPORTS}"
    newest = host.run(f"ls -1t {shlex.quote(folder)}/*.json 2>/dev/null | head -1").stdout.strip()
    assert newest, f"the fleet-health job ({command}) wrote no report in {folder}"
    try:
        report = json.loads(out(host, f"tail -n 1 {shlex.quote(newest)}"))
        houses = report["houses"]
    except (ValueError, KeyError, TypeError):
        pytest.fail(f"the last line of {newest} is not a fleet-health report")
    missing = [w for w in settings["wizard_names"] if w not in houses]
    stale = [
        f"{w} ({houses[w].get('age')} s)"
        for w in settings["wizard_names"]
        if w in houses and not houses[w].get("ok")
    ]
    assert not missing and not stale, (
        f"the fleet-health report {newest} ({report.get('time')}) says: "
        + "; ".join(
            ([f"no heartbeat from {', '.join(missing)}"] if missing else [])
            + ([f"STALE: {', '.join(stale)}"] if stale else [])
        )
    )
