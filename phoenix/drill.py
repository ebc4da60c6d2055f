"""`phoenix drill`: a whole disaster and recovery in the lab, timed, with nothing lost.

lab up → a primary forge (provisioned through the lab's DigitalOcean API, converged by the
deploy, DNS pointed at it) → data written through Gitea's API and git → an offsite backup →
more data written after it → the primary destroyed (the disaster) → `phoenix recover` onto a
new droplet → what was there before the snapshot compared with what came back → lab down.
The report gives the RTO per step and in total, the RPO, and the data lost.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from phoenix import rpo
from phoenix.errors import PhoenixError
from phoenix.forge import Forge, TwoFactorUser, compare, served_certificate, snapshot, tally
from phoenix.lab import config as labconfig
from phoenix.lab.client import wait_https
from phoenix.recover import PROMOTE, Report, run_deploy
from phoenix.report import Step
from phoenix.rpo import Trickle, measure
from phoenix.settings import project
from phoenix.sshconf import Target
from phoenix.state import ROLES, State

Say = Callable[[str], None]
T = TypeVar("T")
OFFSITE = "offsite-drill"
TRICKLE_SECONDS = 20.0  # how long writes keep going before the disaster
  # its own store: a drill never touches another test's backups


def lab_environment(config: labconfig.LabConfig, state_dir: Path) -> dict[str, str]:
    """What `eval "$(phoenix lab env)"` gives a shell, for this process and its children."""
    return {
        "PHOENIX_ENV": "lab",
        "PHOENIX_LAB_DIR": str(config.state_dir),
        "PHOENIX_STATE_DIR": str(state_dir),
        "PHOENIX_SECRETS_DIR": str(config.state_dir / "secrets"),
        "PHOENIX_SSH_KEY": str(config.ssh_key),
        "DIGITALOCEAN_ENDPOINT": config.do_endpoint,
        "DIGITALOCEAN_TOKEN": config.do_token_file.read_text().strip(),
        "CLOUDFLARE_BASE_URL": config.cf_base_url,
        "CLOUDFLARE_API_TOKEN": config.cf_token_file.read_text().strip(),
    }


def host_env(state: State) -> dict[str, str]:
    """inventories/recovery.py aimed at another role's droplet (PHOENIX_HOST & co)."""
    return {"PHOENIX_HOST": state.address, "PHOENIX_KNOWN_HOSTS": str(state.known_hosts),
            "PHOENIX_SSH_KEY": state.data["ssh_key"]}


def recover_command(workdir: Path, *, say: Say) -> list[Step]:
    """`phoenix recover --json` as an operator runs it (no --restore-source: restic:latest),
    in this environment (the lab's); its progress goes to stderr as it runs, its steps back
    into the drill's report. A failed recovery is one PhoenixError with the command's words."""
    cmd = [sys.executable, "-m", "phoenix", "recover", "--json", "--report-dir", str(workdir)]
    say("$ phoenix recover --json")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, check=False,
                          cwd=project())
    saved = workdir / "recovery.report.json"
    data = json.loads(proc.stdout) if proc.returncode == 0 else (
        json.loads(saved.read_text()) if saved.is_file() else {"steps": []})
    steps = [Step(s["name"], seconds=s["seconds"], ok=s["ok"], detail=s["detail"],
                  start=s["start_seconds"]) for s in data["steps"]]
    if proc.returncode != 0:
        failed = next((s.name for s in steps if not s.ok), "its start")
        raise PhoenixError(f"`phoenix recover` failed at {failed} (exit {proc.returncode}); "
                           "its own error is above")
    return steps


def ssh(target: Target, command: str, *, timeout: float = 120) -> str:
    from phoenix.provision import remote

    return remote(target, command, timeout=timeout)


def push_commit(target: Target, settings: dict, repo: str, message: str) -> None:
    """A commit pushed into a bare repository on the forge, as its run user, through git."""
    bare = f"{settings['gitea_repo_root']}/{repo.lower()}.git"
    user = settings["gitea_user"]
    q = shlex.quote
    script = (f"set -e; w=$(mktemp -d); trap 'rm -rf \"$w\"' EXIT; cd \"$w\"; "
              f"git clone -q {q(bare)} w; cd w; "
              f"git -c user.name=drill -c user.email=drill@forge.lab.invalid commit -q "
              f"--allow-empty -m {q(message)}; git push -q origin HEAD")
    ssh(target, f"runuser -u {q(user)} -- bash -c {q(script)}")


def ssh_input(target: Target, command: str, data: str, *, timeout: float = 120) -> str:
    """`command` on the target with `data` on its stdin (never on a command line)."""
    import subprocess

    from phoenix.sshconf import ssh_command

    proc = subprocess.run(ssh_command(target, command), input=data, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise PhoenixError(f"on {target.host}: `{command}` failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def enroll_two_factor(target: Target, settings: dict, login: str) -> TwoFactorUser:
    """A fixture user enrolled in TOTP as Gitea 1.22 stores it: its secret encrypted with the
    forge's own SECRET_KEY (read from app.ini on the host), the row written by the run user.
    Gitea has no API for this; its web enroll handler writes the same row."""
    import base64
    import secrets

    from phoenix.lab import fixtures

    ini = shlex.quote(f"{settings['gitea_config_dir']}/app.ini")
    key = ssh(target, f"sed -n 's/^SECRET_KEY *= *//p' {ini} | tail -1").strip()
    if not key:
        raise PhoenixError(f"no [security] SECRET_KEY in {ini} on {target.host}")
    db = shlex.quote(settings["gitea_db_path"])
    uid = ssh(target, f"sqlite3 -readonly {db} "
                      f"\"SELECT id FROM user WHERE lower_name = '{login.lower()}'\"").strip()
    if not uid.isdigit():
        raise PhoenixError(f"no user {login} in the forge's database on {target.host}")
    otp_secret = base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")
    ssh_input(target, f"runuser -u {shlex.quote(settings['gitea_user'])} -- sqlite3 {db}",
              # a busy timeout, as Gitea's own (SQLITE_TIMEOUT): Litestream's checkpoints
              # hold the write lock for moments (issue 21)
              ".timeout 20000\n"
              + fixtures.enroll_totp_sql(secret_key=key, uid=int(uid), otp_secret=otp_secret))
    return TwoFactorUser(login, fixtures.password_of(login), otp_secret)


def avatar_png(label: str) -> bytes:
    """A 1x1 PNG whose grey level depends on the label: a distinct avatar per write."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    grey = bytes([0, sum(label.encode()) % 256])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(grey)) + chunk(b"IEND", b""))


def write_data(forge: Forge, target: Target, settings: dict, *, label: str,
               lfs: dict[str, dict[str, int]]) -> list[str]:
    """What users do on a forge: an issue with a body and a comment in every repository, an
    attachment, a new avatar, an LFS object (its oid added to `lfs`) and a commit in the
    first; what the agents keep: a note in the memories and a chat with the backend."""
    written = []
    repos = sorted(r["full_name"] for r in forge.repos())
    for name in repos:
        issue = forge.create_issue(name, f"{label}: filed on the primary",
                                   f"drill data ({label}), a body users would miss")
        comment = forge.create_comment(name, issue["number"], f"{label}: a comment")
        written += [f"{name}#{issue['number']}", f"{name}#{issue['number']} comment "
                                                 f"{comment['id']}"]
    first = repos[0]
    asset = forge.attach(first, issue_number(forge, first, label), f"{label}.log",
                         f"{label}: an attachment\n".encode() * 64)
    written.append(f"attachment {asset['name']} ({asset['uuid']})")
    forge.set_avatar(avatar_png(label))
    written.append(f"the avatar of {forge.me()['login']} ({label})")
    content = f"{label}: a large file kept in LFS\n".encode() * 4096
    lfs.setdefault(first, {})[forge.lfs_upload(first, content)] = len(content)
    written.append(f"an LFS object in {first} ({label})")
    push_commit(target, settings, first, f"{label}: a commit on the primary")
    written.append(f"{first}@{label}")
    note = f"{settings['layout_hermes_home']}/memories/drill-{label}.yaml"
    ssh(target, f"printf 'note: {label}\\n' > {shlex.quote(note)}")
    written.append(note)
    memory = f"{settings['hermes_root']}/{settings['wizard_names'][0]}/memories/drill-{label}.md"
    ssh(target, f"printf 'drill: {label}\\n' > {shlex.quote(memory)} && "
                f"chown {shlex.quote(settings['hermes_user'])}: {shlex.quote(memory)}")
    written.append(memory)
    chat(target, settings, f"drill {label}: remember this session")
    written.append(f"a chat through the backend ({label})")
    return written


def issue_number(forge: Forge, name: str, label: str) -> int:
    return max(i["number"] for i in forge.issues(name) if i["title"].startswith(label))


def chat(target: Target, settings: dict, text: str) -> str:
    """One chat through the backend's API server (Hermes stores it as a session); the key is
    read from the backend's .env on the host and reaches curl on stdin only."""
    env = shlex.quote(f"{settings['hermes_root']}/{settings['backend_house']}/.env")
    body = json.dumps({"model": "hermes-agent", "messages": [{"role": "user", "content": text}]})
    url = f"http://{settings['backend_host']}:{settings['backend_port']}/v1/chat/completions"
    return ssh(target, f"sed -n 's/^API_SERVER_KEY=//p' {env} | {{ read -r k; "
                       "printf 'header = \"Authorization: Bearer %s\"\\n' \"$k\"; } | "
                       f"curl -fsS -m 180 -K - -H 'Content-Type: application/json' "
                       f"-d {shlex.quote(body)} {shlex.quote(url)}", timeout=240)


def memories(target: Target, settings: dict) -> dict[str, str]:
    """What the forge keeps besides Gitea, by name: the sha256 of every file in the hermes
    memories (the runbook's ~/.hermes and each Hermes house's), and each house's sessions
    (its state.db, read as Hermes wrote it)."""
    root = settings["hermes_root"].rstrip("/")
    folders = f"{shlex.quote(settings['layout_hermes_home'] + '/memories')} {root}/*/memories"
    out = ssh(target, f"find {folders} -type f -print0 2>/dev/null | sort -z | "
                      "xargs -0r sha256sum")
    kept = {line.split(None, 1)[1]: line.split()[0] for line in out.splitlines()}
    for house in [settings["backend_house"], *settings["wizard_names"]]:
        db = shlex.quote(f"{root}/{house}/state.db")
        ids = ssh(target, f"[ ! -f {db} ] || sqlite3 -readonly {db} 'SELECT id FROM sessions'")
        kept.update({f"session {sid} of {house}": "kept" for sid in ids.split()})
    return kept


def compare_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [f"{name} {'is missing' if name not in after else 'differs'}"
            for name, digest in sorted(before.items()) if after.get(name) != digest]


def duties(target: Target, settings: dict) -> dict:
    """What one-primary governs on a host: its role marker, which wizard houses run, whether
    the cron file is there, and the backup and standby-refresh timers."""
    q = shlex.quote
    houses = " ".join(f"hermes-{w}.service" for w in settings["wizard_names"])
    out = ssh(target, f"cat /var/lib/phoenix/role 2>/dev/null || echo none; "
                      f"for u in {houses}; do systemctl is-active $u || true; done; "
                      f"test -e {q(settings['cron_file'])} && echo cron || echo no-cron; "
                      "systemctl is-active phoenix-backup.timer || true; "
                      "systemctl is-active phoenix-standby-refresh.timer || true").split()
    names = settings["wizard_names"]
    n = len(names)
    return {"role": out[0],
            "houses_active": [w for w, st in zip(names, out[1:1 + n], strict=True)
                              if st == "active"],
            "cron": out[1 + n] == "cron", "backup_timer": out[2 + n],
            "refresh_timer": out[3 + n]}


def recovered_keys(kind: str, recovered: dict, target: Target, settings: dict,
                   repo: str) -> set[str]:
    """What of a Trickle's kind of writes the recovered forge has (see phoenix.rpo)."""
    q = shlex.quote
    if kind == rpo.ISSUES:  # phoenix.forge.snapshot: {"issues": {"<repo>#<n>": …}}
        return {key.rsplit("#", 1)[1] for key in recovered.get("issues", {})
                if key.rsplit("#", 1)[0] == repo}
    if kind == rpo.SESSIONS:
        db = q(f"{settings['hermes_root']}/{settings['backend_house']}/state.db")
        return set(ssh(target, f"[ ! -f {db} ] || sqlite3 -readonly {db} "
                               "'SELECT id FROM sessions'").split())
    bare = q(f"{settings['gitea_repo_root']}/{repo.lower()}.git")
    return set(ssh(target, f"git -c safe.directory='*' --git-dir={bare} rev-list --all")
               .split())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def drill(*, standby: bool = False, say: Say = print, keep_lab: bool = False) -> Report:
    """The whole disaster, in the lab; returns the report (also written beside the state)."""
    from phoenix import backup as bk
    from phoenix import cutover as cut
    from phoenix import provision as prov
    from phoenix.do import DO
    from phoenix.lab import lab as lablib
    from phoenix.lab import offsite
    from phoenix.recover import recover
    from phoenix.secrets import read_secret
    from phoenix.settings import load

    config = labconfig.load()
    was_up = lablib.status(config)["up"]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = config.state_dir / "drills" / stamp
    report = Report(f"phoenix drill{' --standby' if standby else ''} ({stamp})", where="lab")
    setup: dict[str, float] = {}  # seconds
    one_primary: dict[str, dict] = {}
    made: list[tuple[str, int]] = []
    saved_env = dict(os.environ)

    def timed_setup(what: str, fn: Callable[[], T]) -> T:
        say(f"-- {what}")
        started = time.monotonic()
        result = fn()
        setup[what] = round(time.monotonic() - started, 1)
        return result

    try:
        timed_setup("lab up", lambda: lablib.up(config, log=say))
        os.environ.update(lab_environment(config, workdir))
        do = DO(token=os.environ["DIGITALOCEAN_TOKEN"], endpoint=config.do_endpoint)
        for role in ROLES:  # a drill cut off earlier may have left its droplets behind
            for droplet in do.droplets(tag=f"phoenix-{role}"):
                say(f"destroying {droplet['name']} ({droplet['id']}), left by an earlier drill")
                do.destroy(droplet["id"])
        os.environ["PHOENIX_LAB_OFFSITE"] = OFFSITE
        store_box = timed_setup("offsite store", lambda: offsite.ensure(config, do, name=OFFSITE))
        made.append(("offsite", store_box.droplet_id))
        settings = load("lab")
        bk.init(bk.store_from_settings(settings))
        key = prov.operator_key()
        token = read_secret("gitea_api_token", folder=settings["secrets_dir"])

        primary = State("primary")
        timed_setup("primary provision", lambda: prov.provision(
            role="primary", settings=settings, client=do, state=primary, key=key, progress=say))
        # The forge's name points at the primary before it is built, so that its Caddy gets
        # the first certificate from the ACME CA (which the backup then carries).
        cut.cutover(settings=settings, state=primary, do=None, reserved_ip=False, force=True,
                    say=say)
        timed_setup("primary converge", lambda: run_deploy(
            "inventories/recovery.py", env=host_env(primary), log=workdir / "primary.deploy.log",
            say=say))
        if standby:
            spare = State("standby")
            timed_setup("standby provision", lambda: prov.provision(
                role="standby", settings=settings, client=do, state=spare, key=key,
                progress=say))

        timed_setup("primary certificate (ACME)",
                    lambda: wait_https(settings, prov.target(primary).host))
        issued = served_certificate(prov.target(primary).host, settings["gitea_domain"])
        forge = Forge.of(settings, address=primary.address, token=token)
        ptarget = prov.target(primary)
        lfs: dict[str, dict[str, int]] = {}
        two_factor = [enroll_two_factor(ptarget, settings, "ezra")]

        def look(at: Forge) -> dict:
            return snapshot(at, lfs=lfs, two_factor=two_factor)

        written = write_data(forge, ptarget, settings, label="before-snapshot", lfs=lfs)
        written.append("the TOTP enrollment of ezra")
        before = look(forge)
        notes_before = memories(ptarget, settings)
        snap_id = timed_setup("backup (offsite snapshot)",
                              lambda: bk.now(ptarget, settings=settings))
        snapshot_at = time.time()
        if standby:
            # The standby is built from that snapshot; the forge lives on and is backed up
            # again, and the standby's schedule stages the newer snapshot ahead of time.
            timed_setup("standby converge (warm, restores the snapshot)", lambda: run_deploy(
                "inventories/standby.py", log=workdir / "standby.deploy.log",
                data={"restore_source": f"restic:{snap_id}"}, say=say))
            one_primary["standby before promotion"] = duties(prov.target(spare), settings)
            written += write_data(forge, ptarget, settings, label="between-snapshots", lfs=lfs)
            before = look(forge)
            notes_before = memories(ptarget, settings)
            snap_id = timed_setup("second backup", lambda: bk.now(ptarget, settings=settings))
            snapshot_at = time.time()
            timed_setup("standby refresh (its timer's job)", lambda: ssh(
                prov.target(spare), "systemctl start phoenix-standby-refresh.service"))
        write_data(forge, ptarget, settings, label="after-snapshot", lfs=lfs)
        after = look(forge)
        notes_after = memories(ptarget, settings)
        # Issue 21: writes keep going until the very moment of the disaster.
        trickle = None
        if not standby:
            trickle = Trickle(primary.address, token, ptarget, settings,
                              repo=sorted(r["full_name"] for r in forge.repos())[0])
            say(f"-- writes keep going ({TRICKLE_SECONDS:.0f} s: issues, chats, pushes)")
            trickle.start()
            time.sleep(TRICKLE_SECONDS)

        say("-- the disaster: the primary is destroyed")
        disaster_at = time.time()
        do.destroy(primary.droplet["id"])
        if trickle is not None:
            trickle.stop()
        role = "standby" if standby else "recovery"
        if standby:
            rec = recover(role=role, say=say, report_dir=workdir, provision_step=False,
                          deploy_data=PROMOTE)
            report.steps = rec.steps
        else:  # the operator's command itself, with what it restores by default
            report.steps = recover_command(workdir, say=say)
        rto = time.time() - disaster_at
        state = State(role)
        one_primary[f"{role} after cutover"] = duties(prov.target(state), settings)
        if standby:  # the README's converge again, after the promotion: it must stay primary
            timed_setup("standby converge after promotion", lambda: run_deploy(
                "inventories/standby.py", log=workdir / "standby.reconverge.log"))
            one_primary["standby after a later converge"] = duties(prov.target(state), settings)

        served = served_certificate(prov.target(state).host, settings["gitea_domain"])
        recovered = look(Forge.of(settings, address=state.address, token=token))
        notes_recovered = memories(prov.target(state), settings)
        if trickle is not None:
            rtarget = prov.target(state)
            report.extra["rpo_by_kind"] = measure(
                [w for w in trickle.writes if w.at <= disaster_at], disaster_at=disaster_at,
                snapshot_at=snapshot_at,
                recovered=lambda kind: recovered_keys(kind, recovered, rtarget, settings,
                                                      trickle.repo))
        compared = tally(before, recovered)
        compared["agents' memories and sessions"] = {
            "compared": len(notes_before),
            "same": len(notes_before) - len(compare_files(notes_before, notes_recovered)),
            "lost": compare_files(notes_before, notes_recovered)}
        lost = [item for kind in compared.values() for item in kind["lost"]]
        missing_late = compare(after, recovered) + compare_files(notes_after, notes_recovered)
        report.extra.update({
            "rto_seconds": round(rto, 1),
            "rpo_seconds": round(disaster_at - snapshot_at, 1),
            "snapshot": snap_id,
            "written_before_snapshot": len(written),
            "data_compared": compared,
            "logins_after_recovery": recovered["logins"],
            "data_lost_up_to_snapshot": lost or "none",
            "written_after_snapshot_and_lost": missing_late,
            "setup": setup,
            "one_primary": one_primary,
            # Caddy's home came back with the snapshot: the primary's certificate, not a new
            # one the CA could only issue once DNS pointed at the new host.
            "certificate": ("the primary's, restored" if served == issued else
                            "a new one: the primary's was not restored") + f" ({served[:16]})",
        })
        if lost:
            raise PhoenixError("data written before the snapshot is missing after the "
                               "recovery: " + "; ".join(lost))
        return report
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        report.save(workdir, "drill.report")
        if not keep_lab:
            for role in ROLES:  # whatever the drill provisioned, also when it failed midway
                droplet = State(role, workdir).droplet
                if droplet and droplet.get("id"):
                    made.append((role, droplet["id"]))
            _clean_up(config, made, was_up, say)


def _clean_up(config: labconfig.LabConfig, made: list[tuple[str, int]], was_up: bool,
              say: Say) -> None:
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
