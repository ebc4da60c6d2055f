"""`phoenix recover`: provision → deploy (restoring the backup) → certificate → validate →
cutover, timed.

Each step is idempotent, so a re-run after a failure picks up where it stopped: provision
finds its droplet, the deploy converges, validation and cutover repeat safely. The report
puts the measured time of each step beside the runbook's estimate for the same work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from phoenix import runbook
from phoenix.console import Console, Say, waiter
from phoenix.context import current
from phoenix.errors import PhoenixError
from phoenix.report import Report
from phoenix.settings import env_name, project

__all__ = ["DEFAULT_SOURCE", "PROMOTE", "Report", "plan", "recover", "recovery_data", "run_deploy"]

# What a recovery restores unless told otherwise (README): the store's newest snapshot of the
# forge (restic --tag backup_tag), resolved once by the deploy (phoenix/backup/sources.py).
DEFAULT_SOURCE = "restic:latest"
# A warm standby becomes the forge: the latest snapshot over its older copy (which is set
# aside), and from now on it takes the backups.
PROMOTE = {"restore_source": DEFAULT_SOURCE, "restore_force": "True", "phoenix_promote": "True"}


def recovery_data(*, standby: bool, source: str | None = None, new_host_keys: bool = False) -> dict:
    """The deploy's overrides for a recovery (or a promotion): always a restore source;
    `new_host_keys`: the droplet's own new SSH host keys, not the backup's."""
    data = dict(PROMOTE) if standby else {}
    data["restore_source"] = source or DEFAULT_SOURCE
    if new_host_keys:
        data["restore_host_keys"] = "False"
    return data


class DeployStream:
    """What the operator follows of a deploy, from pyinfra's callbacks (phoenix.deploy_events):
    the operation running now (a status line on a terminal) and one line per operation and host
    as it ends, with a tally. pyinfra's printed lines go to the log; to `say` only when asked
    (`raw`: a dry run's proposed changes and diffs; `phoenix -v`)."""

    MARK = {"changed": "changed  ", "unchanged": "ok       ", "failed": "FAILED   "}

    def __init__(self, say: Say, *, raw: bool = False) -> None:
        self.say, self.raw = say, raw
        self.wait = waiter(say)
        self.done = say.done if isinstance(say, Console) else say
        self.attached = False
        self.tally = {"changed": 0, "unchanged": 0, "failed": 0}

    def feed(self, line: str) -> None:
        """A line of pyinfra's output."""
        if self.raw:
            self.say(line.rstrip("\n"))

    def event(self, event: dict) -> None:
        """One of pyinfra's callbacks, as phoenix.deploy_events sends it."""
        kind = event.get("event")
        if kind == "attached":
            self.attached = True
            self.wait("   preparing operations (reading facts)")
        elif kind == "start":
            self.wait(f"   … {event['op']}")
        elif kind == "done" and event.get("result") in self.tally:
            self.tally[event["result"]] += 1
            self.done(f"   {self.MARK[event['result']]}{event['op']}")
        elif kind == "disconnect":
            self.wait("   disconnecting")

    def close(self) -> None:
        if isinstance(self.say, Console):
            self.say.clear()  # "disconnecting" is not worth a line

    def summary(self, deploy: str = "deploy.py") -> str:
        if not self.attached:  # said, never a silently empty view
            return f"operations not reported: {deploy} does not call phoenix.deploy_events.attach()"
        t = self.tally
        return (
            f"{sum(t.values())} operations: {t['changed']} changed, "
            f"{t['unchanged']} unchanged" + (f", {t['failed']} failed" if t["failed"] else "")
        )


def _read_events(fd: int, stream: DeployStream) -> None:
    with os.fdopen(fd, encoding="utf-8", errors="replace") as events:
        for line in events:
            try:
                stream.event(json.loads(line))
            except (ValueError, KeyError, TypeError):  # a torn line: the log has it all
                continue


def run_deploy(
    inventory: str,
    *,
    log: Path,
    data: dict | None = None,
    env: dict | None = None,
    say: Say | None = None,
    dry: bool = False,
    timeout: float = 3600,
    deploy: str = "deploy.py",
) -> str:
    """`pyinfra -y INVENTORY DEPLOY` (`dry`: `--dry --diff`, nothing changes): the whole
    output goes to `log`, each operation to `say` as pyinfra's callbacks report it, the log's
    tail into the error."""
    from phoenix.deploy_events import ENV  # pyinfra's API: loaded when a deploy runs

    verbosity = current().verbosity
    # -y would skip change detection, which is all a dry run is for
    cmd = [
        sys.executable,
        "-m",
        "pyinfra",
        *(["--dry", "--diff"] if dry else ["-y"]),
        *(["-v"] if verbosity >= 2 else []),
        inventory,
        deploy,
    ]
    for key, value in (data or {}).items():
        cmd += ["--data", f"{key}={value}"]
    log.parent.mkdir(parents=True, exist_ok=True)
    stream = DeployStream(say or (lambda _: None), raw=dry or verbosity >= 1)
    if say:  # from the start, so that it can be followed (tail -f) while the deploy runs
        say(f"   deploy log: {log}")
    read_fd, write_fd = os.pipe()
    with open(log, "w") as out:
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=project(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                # a dry run executes no operation: its view is pyinfra's own text
                env=current().child_env({**(env or {}), **({} if dry else {ENV: str(write_fd)})}),
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)  # the deploy holds the only writer: its exit ends the events
        reader = threading.Thread(
            target=_read_events, args=(read_fd, stream), name="deploy-events", daemon=True
        )
        reader.start()
        timer = threading.Timer(timeout, proc.kill)  # a hung deploy ends, and says so below
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                out.flush()
                stream.feed(line)
            returncode = proc.wait()
            reader.join(timeout=10)
        finally:
            timer.cancel()
            stream.close()
    if returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-12:]
        why = f"killed after {timeout:.0f} s" if returncode == -9 else f"pyinfra exit {returncode}"
        raise PhoenixError(f"the deploy failed ({why}); last lines of {log}:\n" + "\n".join(tail))
    return f"log {log}" if dry else f"{stream.summary(deploy)}; log {log.name}"


def plan(role: str, source: str = DEFAULT_SOURCE) -> list[str]:
    """What `phoenix recover` does, phase by phase, with the runbook steps each one does (the
    runbook's table, phoenix/runbook.py): the deploy's step by step, with its tasks/ modules."""
    what = {
        "provision": f"a new forge-{role}-YYYYMMDD droplet (pydo; a cut-off attempt's own is "
        "found by its tag), pin its host key, rotate it",
        "deploy": f"pyinfra inventories/{role}.py deploy.py, with the restore of {source}; "
        "then the backup's SSH host keys made the droplet's (both pinned meanwhile)",
        "certificate": "the backup's certificate if valid for more than https_min_days, "
        "else one over ACME DNS-01 from here (TXT record through cloudflare), into Caddy's "
        "storage; DNS untouched",
        "validate": "the testinfra suite of checks/, per runbook step",
        "cutover": "refuse while the old primary answers (--fence powers it off), DNS A/AAAA "
        "records (cloudflare) or reserved IP, old values saved; the droplet becomes "
        "the primary (marker, backups on)",
        "https": "the name through DNS answers HTTP/2 200 over TLS (a proxied one: "
        "Cloudflare's record holds the droplet, which answers for the name)",
        "protect": "the new primary's first full snapshot, once users are served (until it "
        "is saved a disaster would recover its predecessor's data)",
    }
    lines = []
    for phase in runbook.PHASES:
        line = f"{phase}: {what[phase]} [runbook {runbook.estimate(phase)[1]}]"
        if phase == "deploy":
            line += ":" + "".join(
                f"\n     {row.label:<9} {row.title}: "
                + ", ".join(runbook.task_path(module) for module in row.tasks)
                for row in runbook.of_phase(phase)
                if row.tasks
            )
        # the runbook's own steps: the rows it lacks are other commands' work (phoenix backup)
        rows = [
            row for row in runbook.of_phase(phase) if row.operator and row.key.startswith("step")
        ]
        if rows:
            line += "\n     from here: " + ", ".join(
                dict.fromkeys(
                    runbook.operator_path(module) for row in rows for module in row.operator
                )
            )
        lines.append(line)
    return lines


def dry_deploy(role: str, *, say: Say, data: dict | None = None) -> None:
    """What the deploy would change on the role's droplet, when there is one (pyinfra --dry
    --diff: facts are read over SSH, nothing is changed); otherwise say why there is no diff."""
    from phoenix.state import State

    state = State(role)
    if not state.address and not current().host:
        say(
            f"no {role} droplet yet ({state.path}): the deploy's changes can be listed once "
            "`phoenix provision` has made it"
        )
        return
    say(
        f"what the deploy would change on {state.address or current().host} (pyinfra --dry --diff):"
    )
    run_deploy(
        f"inventories/{role}.py", log=state.folder / f"{role}.dry.log", data=data, say=say, dry=True
    )


def recover(
    *,
    role: str = "recovery",
    reserved_ip: bool = False,
    skip_cutover: bool = False,
    say: Say = print,
    report_dir: Path | None = None,
    deploy_data: dict | None = None,
    provision_step: bool = True,
) -> Report:
    """The recovery; `deploy_data` overrides group_data for the deploy (by default the restore
    of restic:latest), `provision_step=False` uses the role's droplet as it is (a standby)."""
    from phoenix.state import recovering

    if deploy_data is None:
        deploy_data = recovery_data(standby=role == "standby")
    with recovering():  # the whole run: two would deploy to one droplet side by side
        return _recover(
            role=role,
            reserved_ip=reserved_ip,
            skip_cutover=skip_cutover,
            say=say,
            report_dir=report_dir,
            deploy_data=deploy_data,
            provision_step=provision_step,
        )


def _recover(
    *,
    role: str,
    reserved_ip: bool,
    skip_cutover: bool,
    say: Say,
    report_dir: Path | None,
    deploy_data: dict,
    provision_step: bool,
) -> Report:
    from phoenix.cutover import traffic as cut
    from phoenix.cutover.after import check_after_cutover
    from phoenix.cutover.primary import protect as first_snapshot
    from phoenix.provision import droplet as prov
    from phoenix.provision.do import client as do_client
    from phoenix.settings import load
    from phoenix.sshconf import role_target
    from phoenix.state import State
    from phoenix.state import now as state_now
    from phoenix.validate import run_validation

    settings = load(role=role)
    state = State(role)
    report = Report(f"phoenix recover ({role})")
    folder = report_dir or state.folder
    do = do_client(say=say)

    def provision() -> str:
        d = prov.provision(
            role=role,
            settings=settings,
            client=do,
            state=state,
            key=prov.operator_key(),
            progress=say,
        )
        return f"{d['name']} {d['ip']}"

    def deploy() -> str:
        done = run_deploy(
            f"inventories/{role}.py", data=deploy_data, log=folder / f"{role}.deploy.log", say=say
        )
        # Before validation and cutover, so before sshd serves anyone but us
        keys = prov.take_backup_host_keys(
            state,
            settings,
            new_keys=str(deploy_data.get("restore_host_keys")) == "False",
            progress=say,
        )
        if keys is None:
            return done
        report.extra["ssh_host_keys"] = keys["said"]
        return f"{done}; host keys: " + ("the backup's" if keys["kept"] == "backup" else "NEW")

    def certificate() -> str:  # before validation: DNS still points at the old forge
        from phoenix.forge.caddycert import ensure

        return ensure(settings, role_target(role), say=say)

    def validate() -> str:
        target = role_target(role)
        result = run_validation(
            target=target,
            settings_env=env_name(),
            role=role,
            junit=folder / f"{role}.validation.xml",
        )
        cut.record_verdict(
            state, target, passed=result.passed, junit=folder / f"{role}.validation.xml"
        )
        say(result.render())
        if not result.passed:
            raise PhoenixError("validation failed; the cutover did not happen")
        c = result.counts
        said = f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
        dispatch = result.measured("dispatch_seconds")
        return f"{said}; an issue reached every wizard in {dispatch} s" if dispatch else said

    def cutover() -> str:
        result = cut.cutover(
            settings=settings, state=state, do=do, reserved_ip=reserved_ip, force=False, say=say
        )
        return ", ".join(result)

    def protect() -> str:  # after the users are served: not on the RTO's path
        snapshot = first_snapshot(state, settings, say)
        return (
            f"first full snapshot {snapshot[:8]} saved"
            if snapshot
            else "it has a full snapshot of its own already"
        )

    def https() -> str:  # runbook 9.1, through DNS, once the cutover moved the name
        public = settings["cutover_reserved_ip"] if reserved_ip else state.address
        if not public:
            raise PhoenixError(
                f"no address recorded for the {role} droplet: nothing to check "
                "step 9.1 against (phoenix provision first)"
            )
        # a proxied name is proved as the cutover proved it (the API's record, the origin)
        saved = None if reserved_ip else state.data.get("dns_saved")
        return check_after_cutover(settings, public, saved=saved, say=say)

    try:
        if provision_step:
            report.timed("provision", provision, say)
        report.timed("deploy", deploy, say)
        if (deploy_data or {}).get("phoenix_promote"):
            with state.locked():  # the host's marker says so too (tasks/role.py)
                state.data["promoted"] = {"at": state_now(), "droplet_id": state.droplet["id"]}
                state.save()
        report.timed("certificate", certificate, say)
        report.timed("validate", validate, say)
        if not skip_cutover:
            report.timed("cutover", cutover, say)
            report.timed("https", https, say)
            report.timed("protect", protect, say)
    except PhoenixError as exc:
        exc.output = report.to_dict()  # --json prints the report with the error
        raise
    finally:
        report.save(folder, f"{role}.report")
    return report
