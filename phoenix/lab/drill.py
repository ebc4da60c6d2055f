"""`phoenix drill`: a whole disaster and recovery in the lab, timed, with nothing lost.

lab up → a primary forge (provisioned through the lab's DigitalOcean API, converged by the
deploy, DNS pointed at it) → data written through Gitea's API and git → an offsite backup →
more data written after it → the primary destroyed (the disaster) → `phoenix recover` onto a
new droplet → what was there before the snapshot compared with what came back → lab down.
The report gives the RTO per step and in total, the RPO, and the data lost.

The drill's settings come from the lab's config and are handed down: the DigitalOcean client
gets the lab's token, the offsite store's name rides in the config, the product's code gets
the lab's operator context (`phoenix.context.use`) and what the drill runs its environment
(`phoenix.lab.client.client_environment`).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from phoenix.console import Say
from phoenix.context import current, use
from phoenix.errors import PhoenixError
from phoenix.forge.api import Forge, compare, snapshot, tally
from phoenix.forge.tls import served_certificate
from phoenix.lab import config as labconfig
from phoenix.lab.client import client_environment, wait_https
from phoenix.lab.forgework import (
    avatar_png,
    bare_git,
    clone_and_push,
    compare_files,
    duties,
    enroll_two_factor,
    first_contact,
    memories,
    ssh,
    ssh_users,
    write_data,
)
from phoenix.lab.rpo import AVATARS, FILES, Trickle, measure, recovered_keys
from phoenix.recover import PROMOTE, run_deploy
from phoenix.report import Report, Step
from phoenix.settings import project
from phoenix.sshconf import Target
from phoenix.state import ROLES, State

if TYPE_CHECKING:
    from phoenix.provision.do import DO

T = TypeVar("T")
OFFSITE = "offsite-drill"  # its own store: a drill never touches another test's backups
TRICKLE_SECONDS = 20.0  # how long writes keep going before the disaster
AGAIN_TRICKLE_SECONDS = 10.0  # writes on the recovered forge before the second disaster
AGAIN_SETTLE_SECONDS = 5.0  # beyond frequent_snapshot_interval: the replicas' seconds


def operator_environment(config: labconfig.LabConfig, state_dir: Path) -> dict[str, str]:
    """What `eval "$(phoenix lab env)"` gives a shell (tokens read), in the lab's group_data,
    with the drill's own state folder: the environment of what the drill runs."""
    return {**client_environment(config), "PHOENIX_ENV": "lab", "PHOENIX_STATE_DIR": str(state_dir)}


def host_env(state: State) -> dict[str, str]:
    """inventories/recovery.py aimed at another role's droplet (PHOENIX_HOST & co)."""
    return {
        "PHOENIX_HOST": state.address,
        "PHOENIX_KNOWN_HOSTS": str(state.known_hosts),
        "PHOENIX_SSH_KEY": state.data["ssh_key"],
    }


def recover_command(workdir: Path, *, env: dict[str, str], say: Say) -> list[Step]:
    """`phoenix recover --json` as an operator runs it (no --restore-source: restic:latest),
    in `env` (the lab's); its progress goes to stderr as it runs, its steps back into the
    drill's report. A failed recovery is one PhoenixError with the command's words."""
    cmd = [sys.executable, "-m", "phoenix", "recover", "--json", "--report-dir", str(workdir)]
    say("$ phoenix recover --json")
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=None, text=True, check=False, cwd=project(), env=env
    )
    saved = workdir / "recovery.report.json"
    data = (
        json.loads(proc.stdout)
        if proc.returncode == 0
        else (json.loads(saved.read_text()) if saved.is_file() else {"steps": []})
    )
    steps = [
        Step(
            s["name"],
            seconds=s["seconds"],
            ok=s["ok"],
            detail=s["detail"],
            start=s["start_seconds"],
        )
        for s in data["steps"]
    ]
    if proc.returncode != 0:
        failed = next((s.name for s in steps if not s.ok), "its start")
        raise PhoenixError(
            f"`phoenix recover` failed at {failed} (exit {proc.returncode}); its own error is above"
        )
    return steps


@dataclass
class Run:
    """What one drill carries from step to step."""

    config: labconfig.LabConfig
    workdir: Path
    report: Report
    say: Say
    standby: bool
    again: bool = False
    no_certificate: bool = False  # the primary's backups leave Caddy's home out
    env: dict[str, str] = field(default_factory=dict)
    setup: dict[str, float] = field(default_factory=dict)  # seconds
    one_primary: dict[str, dict] = field(default_factory=dict)
    made: list[tuple[str, int]] = field(default_factory=list)

    def timed(self, what: str, fn: Callable[[], T]) -> T:
        self.say(f"-- {what}")
        started = time.monotonic()
        result = fn()
        self.setup[what] = round(time.monotonic() - started, 1)
        return result


def served_after(steps: list[Step]) -> float:
    """Seconds from the recovery's start until users were served again: the end of its
    https step (the new primary's first snapshot, after it, is not on the RTO's path)."""
    https = next(s for s in steps if s.name == "https")
    return https.start + https.seconds


def certificate_step(steps: list[Step]) -> str:
    """What the recovery's certificate step says: restored, or issued by DNS-01 in N s."""
    step = next((s for s in steps if s.name == "certificate"), None)
    return step.detail if step else "no certificate step"


def by_name(settings: dict) -> str:
    """Where the forge's name leads, as users' machines ask DNS (the lab's name server)."""
    from phoenix.cutover.dnswire import resolve_a, resolvers

    server, port = resolvers(settings)[0]
    found = resolve_a(settings["gitea_domain"], server, port)
    if not found:
        raise PhoenixError(f"{settings['gitea_domain']} has no A record at {server}:{port}")
    return found[0]


def primary_repo_run(target: Target, settings: dict) -> dict | None:
    """The primary's last repository snapshot run: its length against
    frequent_snapshot_run_budget, as `phoenix backup status` reads it."""
    from phoenix.backup import replication

    try:
        status = replication.repo_run_status(target, settings, timeout=20)
    except PhoenixError as exc:
        return {"error": str(exc)}
    if status is not None:
        status["over_budget"] = replication.repo_run_problem(status, settings)
    return status


def drill(
    *,
    standby: bool = False,
    say: Say = print,
    keep_lab: bool = False,
    again: bool = False,
    no_certificate: bool = False,
) -> Report:
    """The whole disaster, in the lab; returns the report (also written beside the state).
    `again`: then a second disaster, minutes after the recovered forge's cutover (_again).
    `no_certificate`: the first disaster's backup, with no certificate in it (the forge of
    today has no Caddy): the recovery gets one over DNS-01 before its cutover."""
    from phoenix.lab import lab as lablib

    config = replace(labconfig.load(), offsite=OFFSITE)
    was_up = lablib.status(config)["up"]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = config.state_dir / "drills" / stamp
    flags = " --standby" * standby + " --no-certificate-in-backup" * no_certificate
    report = Report(f"phoenix drill{flags} ({stamp})", where="lab")
    run = Run(config, workdir, report, say, standby, again, no_certificate)
    try:
        run.timed("lab up", lambda: lablib.up(config, log=say))
        run.env = labconfig.child_environment(operator_environment(config, workdir))
        # The product's code in this process reads the operator's context: the lab's, for
        # this drill (phoenix.context); what it starts gets run.env.
        with use(current().with_env(**run.env)):
            _disaster(run)
        return report
    finally:
        report.save(workdir, "drill.report")
        if not keep_lab:
            for role in ROLES:  # whatever the drill provisioned, also when it failed midway
                droplet = State(role, workdir).droplet
                if droplet and droplet.get("id"):
                    run.made.append((role, droplet["id"]))
            _clean_up(config, run.made, was_up, say)


def _disaster(run: Run) -> None:
    """The primary built, written to and backed up, destroyed, recovered, and compared."""
    from phoenix.backup import snapshots as bk
    from phoenix.backup.now import now as backup_now
    from phoenix.backup.store import store_from_settings
    from phoenix.cutover import traffic as cut
    from phoenix.lab import offsite
    from phoenix.provision import droplet as prov
    from phoenix.provision.do import DO
    from phoenix.recover import recover
    from phoenix.secrets import read_secret
    from phoenix.settings import load
    from phoenix.sshconf import state_target

    config, workdir, report, say, standby = (
        run.config,
        run.workdir,
        run.report,
        run.say,
        run.standby,
    )
    do = DO(token=config.do_token_file.read_text().strip(), endpoint=config.do_endpoint)
    for role in ROLES:  # a drill cut off earlier may have left its droplets behind
        for droplet in do.droplets(tag=f"phoenix-{role}"):
            say(f"destroying {droplet['name']} ({droplet['id']}), left by an earlier drill")
            do.destroy(droplet["id"])
    store_box = run.timed("offsite store", lambda: offsite.ensure(config, do, name=config.offsite))
    run.made.append(("offsite", store_box.droplet_id))
    settings = load("lab")
    bk.init(store_from_settings(settings))
    key = config.ssh_key
    token = read_secret("gitea_api_token", folder=settings["secrets_dir"])

    primary = State("primary", workdir)
    run.timed(
        "primary provision",
        lambda: prov.provision(
            role="primary", settings=settings, client=do, state=primary, key=key, progress=say
        ),
    )
    # The forge's name points at the primary before it is built, so that its Caddy gets
    # the first certificate from the ACME CA (which the backup then carries).
    cut.cutover(settings=settings, state=primary, do=None, reserved_ip=False, force=True, say=say)
    run.timed(
        "primary converge",
        lambda: run_deploy(
            "inventories/recovery.py",
            env=host_env(primary),
            log=workdir / "primary.deploy.log",
            say=say,
            # its backups without Caddy's home (tasks/backups.saved_paths): no certificate
            data={"https_state_dir": "null"} if run.no_certificate else None,
        ),
    )
    if standby:
        spare = State("standby", workdir)
        run.timed(
            "standby provision",
            lambda: prov.provision(
                role="standby", settings=settings, client=do, state=spare, key=key, progress=say
            ),
        )

    run.timed(
        "primary certificate (ACME)", lambda: wait_https(settings, state_target(primary).host)
    )
    issued = served_certificate(state_target(primary).host, settings["gitea_domain"])
    forge = Forge.of(settings, address=primary.address, token=token)
    ptarget = state_target(primary)
    lfs: dict[str, dict[str, int]] = {}
    two_factor = [enroll_two_factor(ptarget, settings, "ezra")]

    def look(at: Forge) -> dict:
        return snapshot(at, lfs=lfs, two_factor=two_factor)

    written = write_data(forge, ptarget, settings, label="before-snapshot", lfs=lfs)
    written.append("the TOTP enrollment of ezra")
    # Users of git over SSH: each one's first connection records the forge's host key, by
    # its name, in their own known_hosts, as on their machines.
    users = ssh_users(ptarget, workdir / "users")
    for user in users:
        first_contact(user, settings["gitea_domain"], by_name(settings))
    before = look(forge)
    notes_before = memories(ptarget, settings)
    snap_id = run.timed("backup (offsite snapshot)", lambda: backup_now(ptarget, settings=settings))
    snapshot_at = time.time()
    if standby:
        # The standby is built from that snapshot; the forge lives on and is backed up
        # again, and the standby's schedule stages the newer snapshot ahead of time.
        run.timed(
            "standby converge (warm, restores the snapshot)",
            lambda: run_deploy(
                "inventories/standby.py",
                log=workdir / "standby.deploy.log",
                data={"restore_source": f"restic:{snap_id}"},
                say=say,
            ),
        )
        run.one_primary["standby before promotion"] = duties(state_target(spare), settings)
        written += write_data(forge, ptarget, settings, label="between-snapshots", lfs=lfs)
        before = look(forge)
        notes_before = memories(ptarget, settings)
        snap_id = run.timed("second backup", lambda: backup_now(ptarget, settings=settings))
        snapshot_at = time.time()
        run.timed(
            "standby refresh (its timer's job)",
            lambda: ssh(state_target(spare), "systemctl start phoenix-standby-refresh.service"),
        )
    write_data(forge, ptarget, settings, label="after-snapshot", lfs=lfs)
    after = look(forge)
    notes_after = memories(ptarget, settings)
    # Writes keep going until the very moment of the disaster, so that the RPO is measured on
    # what was still being written (a standby's promotion replays the replicas as a recovery
    # does).
    trickle = Trickle(
        primary.address,
        token,
        ptarget,
        settings,
        repo=sorted(r["full_name"] for r in forge.repos())[0],
        lfs=lfs,
    )
    say(
        f"-- writes keep going ({TRICKLE_SECONDS:.0f} s: issues, comments, chats, pushes, "
        "attachments, avatars, LFS objects, memories)"
    )
    trickle.start()
    time.sleep(TRICKLE_SECONDS)

    # The primary's last repository snapshot run, as it stood (its length vs its budget)
    last_repo_run = primary_repo_run(ptarget, settings)
    say("-- the disaster: the primary is destroyed")
    disaster_at = time.time()
    do.destroy(primary.droplet["id"])
    trickle.stop()
    role = "standby" if standby else "recovery"
    started = time.time()
    if standby:
        rec = recover(
            role=role, say=say, report_dir=workdir, provision_step=False, deploy_data=PROMOTE
        )
        report.steps = rec.steps
    else:  # the operator's command itself, with what it restores by default
        report.steps = recover_command(workdir, env=run.env, say=say)
    rto = started - disaster_at + served_after(report.steps)
    state = State(role, workdir)
    said = json.loads((workdir / f"{role}.report.json").read_text()).get("ssh_host_keys")
    report.extra["ssh_host_keys"] = said or "the droplet's own (nothing said of the backup's)"
    run.one_primary[f"{role} after cutover"] = duties(state_target(state), settings)
    if standby:  # the README's converge again, after the promotion: it must stay primary
        run.timed(
            "standby converge after promotion",
            lambda: run_deploy("inventories/standby.py", log=workdir / "standby.reconverge.log"),
        )
        run.one_primary["standby after a later converge"] = duties(state_target(state), settings)

    served = served_certificate(state_target(state).host, settings["gitea_domain"])
    recovered = look(Forge.of(settings, address=state.address, token=token))
    # The same users, the same known_hosts, strict: the recovered forge has the key they trust
    git_over_ssh = [
        clone_and_push(
            user,
            settings["gitea_domain"],
            by_name(settings),
            workdir / "users",
            state_target(state),
            settings["gitea_repo_root"],
        )
        for user in users
    ]
    notes_recovered = memories(state_target(state), settings)
    rtarget = state_target(state)
    interval = settings.get("frequent_snapshot_interval")
    report.extra["frequent_snapshot_interval"] = interval
    report.extra["frequent_snapshot_run_budget"] = settings.get("frequent_snapshot_run_budget")
    report.extra["repo_snapshot_last_run"] = last_repo_run
    report.extra["rpo_by_kind"] = measure(
        [w for w in trickle.writes if w.at <= disaster_at],
        disaster_at=disaster_at,
        snapshot_at=snapshot_at,
        recovered=lambda kind: recovered_keys(kind, recovered, rtarget, settings, trickle.repo),
        # the promise of frequent_snapshot_interval: every file older than it came back
        promises=dict.fromkeys(FILES, float(interval)) if interval else None,
    )
    # An avatar the drill replaced later (the trickle's) is no loss of the earlier one
    later = {w.key for w in trickle.writes if w.kind == AVATARS}
    labels = ("between-snapshots", "after-snapshot")
    replaced_by = later | {hashlib.sha256(avatar_png(label)).hexdigest() for label in labels}

    def descends(branch: str, old: str, new: str) -> bool:
        """The recovered branch holds the old head (git on the recovered forge)."""
        repo, _, _name = branch.partition(" ")
        bare = shlex.quote(f"{settings['gitea_repo_root']}/{repo.lower()}.git")
        return (
            ssh(
                rtarget,
                f"{bare_git(bare)} merge-base "
                f"--is-ancestor {shlex.quote(old)} {shlex.quote(new)} "
                "&& echo yes || echo no",
            ).strip()
            == "yes"
        )

    compared = tally(before, superseded(recovered, before, replaced_by), descends=descends)
    compared["agents' memories and sessions"] = {
        "compared": len(notes_before),
        "same": len(notes_before) - len(compare_files(notes_before, notes_recovered)),
        "lost": compare_files(notes_before, notes_recovered),
    }
    lost = [item for kind in compared.values() for item in kind["lost"]]
    missing_late = compare(
        after, superseded(recovered, after, later), descends=descends
    ) + compare_files(notes_after, notes_recovered)
    report.extra.update(
        {
            "rto_seconds": round(rto, 1),
            "rpo_seconds": round(disaster_at - snapshot_at, 1),
            "snapshot": snap_id,
            "written_before_snapshot": len(written),
            "data_compared": compared,
            "logins_after_recovery": recovered["logins"],
            "git_over_ssh_after_recovery": git_over_ssh,
            "data_lost_up_to_snapshot": lost or "none",
            "written_after_snapshot_and_lost": missing_late,
            "setup": run.setup,
            "one_primary": run.one_primary,
            # Where the recovered forge's certificate came from (its certificate step): the
            # primary's, restored with Caddy's home, or a new one over DNS-01 before cutover.
            "certificate": f"{certificate_step(report.steps)}; "
            + ("the primary's" if served == issued else "not the primary's")
            + f" ({served[:16]})",
        }
    )
    if lost:
        raise PhoenixError(
            "data written before the snapshot is missing after the recovery: " + "; ".join(lost)
        )
    if run.again and not standby:
        report.extra["second_disaster"] = _again(run, do, settings, token, trickle.repo)


def superseded(recovered: dict, earlier: dict, later: set[str]) -> dict:
    """`recovered` with each avatar that is one the drill wrote after `earlier` (a sha256 of
    `later`) read as `earlier`'s: a user has one avatar, and its newer one is no loss."""
    avatars = {
        login: earlier["avatars"].get(login, sha) if sha in later else sha
        for login, sha in recovered.get("avatars", {}).items()
    }
    return {**recovered, "avatars": avatars}


def _again(run: Run, do: DO, settings: dict, token: str, repo: str) -> dict:
    """A disaster strikes again minutes after the cutover: the recovered forge, written to
    (issues, chats, pushes), is destroyed once every write is older than its promise, and
    `phoenix recover` runs again as the operator would (no --force). Everything written on
    it comes back: from its own first snapshot (taken at its cutover), its replicas and its
    repository snapshots, never its predecessor's."""
    from phoenix.sshconf import state_target

    say = run.say
    state = State("recovery", run.workdir)
    first = dict(state.droplet or {})
    cut_at = time.time()
    target = state_target(state)
    trickle = Trickle(state.address, token, target, settings, repo=repo, lfs={})
    say(
        f"-- a second disaster: writes on the recovered forge {first.get('name')} "
        f"({AGAIN_TRICKLE_SECONDS:.0f} s)"
    )
    trickle.start()
    time.sleep(AGAIN_TRICKLE_SECONDS)
    trickle.stop()
    # Every write older than its promise: the repositories' interval, a few seconds for the
    # databases' replicas; then the disaster.
    time.sleep(float(settings.get("frequent_snapshot_interval") or 0) + AGAIN_SETTLE_SECONDS)
    disaster_at = time.time()
    say(
        f"-- the recovered forge {first.get('name')} is destroyed, "
        f"{disaster_at - cut_at:.0f} s after the first recovery ended"
    )
    do.destroy(first["id"])
    steps = recover_command(run.workdir, env=run.env, say=say)
    state = State("recovery", run.workdir)
    second = state.droplet or {}
    rtarget = state_target(state)
    recovered = snapshot(Forge.of(settings, address=state.address, token=token), lfs=trickle.lfs)
    measured = measure(
        [w for w in trickle.writes if w.at <= disaster_at],
        disaster_at=disaster_at,
        snapshot_at=cut_at,
        recovered=lambda kind: recovered_keys(kind, recovered, rtarget, settings, repo),
    )
    result = {
        "first_droplet": first.get("name"),
        "second_droplet": second.get("name"),
        "destroyed_s_after_first_recovery": round(disaster_at - cut_at, 1),
        "steps": [{"name": st.name, "ok": st.ok, "seconds": round(st.seconds, 1)} for st in steps],
        "rpo_by_kind": measured,
        "trickle_errors": trickle.errors,
    }
    lost = [f"{kind}: {m['lost']} of {m['written']}" for kind, m in measured.items() if m["lost"]]
    if lost or len(measured) < len(trickle.every):
        raise PhoenixError(
            "the second recovery lost what the first recovered forge had "
            f"written before its promise: {'; '.join(lost) or measured}"
        )
    return result


def _clean_up(
    config: labconfig.LabConfig, made: list[tuple[str, int]], was_up: bool, say: Say
) -> None:
    from phoenix.lab import lab as lablib
    from phoenix.lab import offsite
    from phoenix.lab.lab import ledger_for
    from phoenix.lab.nspawn import destroy_droplet

    store = offsite.load(config, OFFSITE)
    if store is not None:
        offsite.forget(config, store)
    if not was_up:
        lablib.down(config)
        say("lab down")
        return
    ledger = ledger_for(config)
    for what, droplet_id in made:  # the lab was up before: leave it, minus what we made
        if str(droplet_id) in ledger.read()["droplets"]:
            destroy_droplet(config, ledger, droplet_id)
            say(f"destroyed the drill's {what} droplet {droplet_id}")
