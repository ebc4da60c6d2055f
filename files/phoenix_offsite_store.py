#!/usr/bin/python3
"""The offsite store's side of Phoenix's backups, run as root on the store host.

Reads a JSON spec on stdin and makes the host a restic store that a compromised forge cannot
erase (Debian 12: python3's standard library, openssh-server, apt; idempotent):

- the `user` (default restic) owns its home and the repository folder; its authorized keys
  are a root-owned file (AuthorizedKeysFile), so that nothing the user writes changes who may
  log in or what a key may run;
- every key is pinned to one forced command:
  - `append_keys` (the forge, a warm standby, a recovery host: one key, backup_ssh_key) may
    only run `rclone serve restic --stdio --append-only REPO`: read, add; never delete,
    never overwrite (rclone answers 403), whatever the client asks for;
  - `full_keys` (the operator) get `internal-sftp`: init, prune, repairs;
- the same script, run again with another `user` and no `password`, makes a plain SFTP
  account beside it: Litestream's replicas, whose key may delete its own files;
- retention runs here, as the user, from a systemd timer (`prune.schedule`, default daily):
  `restic forget --group-by tags --tag T --keep-… --prune` on the local folder (the forge's
  line, every droplet that was the forge), with the repository
  password from a root-only file (`password`) handed to the unit as a systemd credential,
  each restic run tried again while another run holds the lock (`lock_wait`: the text of
  files/phoenix_restic_lock_wait.py). Without `password` no timer is installed and retention
  is the operator's (`phoenix backup prune`);
- before it prunes, a guard compares each snapshot's own time (which the forge writes, and
  could forge) with when its file reached the store (the file's mtime: rclone sets it on
  arrival). A compromised forge could otherwise add snapshots dated later in each hour, day
  and week than the real ones, and the keep-* policy would keep those and forget every real
  snapshot. Beyond `prune.time_tolerance` seconds (default 7200) the guard refuses: no prune,
  the unit fails, and the operator looks (and prunes, if all is well, with `phoenix backup
  prune`);
- a lock guard: restic 0.14 never takes a lock dated in the future for stale, so a forge
  could stop every prune with one; a lock claiming a time later than its arrival by more than
  `prune.lock_tolerance` seconds (default 300), or unreadable that long after it arrived, is
  removed before the prune and named in its log (never `restic unlock --remove-all`, which
  would remove live locks too).
- `watch` (when the operator named an alert command; removed when it is emptied): a timer runs
  files/phoenix_backup_watch.py (its text comes in the spec, `watch_program`) as the user,
  and tells the operator when the forge's snapshots or replicas stop arriving here. It runs
  on the store because a compromised forge could report "backed up" while it sends nothing.

    scp files/phoenix_offsite_store.py root@STORE:
    ssh root@STORE ./phoenix_offsite_store.py <spec

(phoenix.store.setup_store, which `phoenix backup store-setup` and the lab use, sends it as
`python3 -c SCRIPT`, the spec on stdin, and adds `lock_wait` to the spec). Prints one JSON
line: what changed. Any failure: one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import subprocess
import sys

SSHD_DROPIN = "/etc/ssh/sshd_config.d/10-phoenix-offsite.conf"
STARTUPS_DROPIN = "/etc/ssh/sshd_config.d/05-phoenix-offsite-startups.conf"
KEYS_DIR = "/etc/ssh/phoenix-offsite"
CONFIG_DIR = "/etc/phoenix-offsite"
UNIT_DIR = "/etc/systemd/system"
PRUNE = "phoenix-offsite-prune"


def write(path: str, content: str, mode: int) -> bool:
    """Write `content` to `path` (root-owned, `mode`) unless it is already so; True if changed."""
    try:
        with open(path, encoding="utf-8") as handle:
            same = handle.read() == content
        if same and (os.stat(path).st_mode & 0o7777) == mode:
            return False
    except FileNotFoundError:
        pass
    tmp = path + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def sh(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise SystemExit(f"phoenix-offsite-store: {' '.join(argv[:3])} failed: {last}")


def packages() -> bool:
    missing = [
        p
        for p in ("rclone", "restic")
        if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True, check=False
        ).stdout
        != "install ok installed"
    ]
    if not missing:
        return False
    lock = "DPkg::Lock::Timeout=600"
    sh("apt-get", "-o", lock, "update", "-qq")
    sh(
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "-o",
        lock,
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        *missing,
    )
    return True


def key_line(options: str, key: str) -> str:
    parts = key.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise SystemExit(f"phoenix-offsite-store: not an SSH public key: {key[:40]!r}")
    return f"{options} {' '.join(parts[:3])}\n"


def authorized_keys(spec: dict) -> str:
    serve = (
        f"/usr/bin/rclone serve restic --stdio --append-only --config /dev/null -q "
        f"{shlex.quote(spec['repository'])}"
    )
    lines = ["# Phoenix offsite store (files/phoenix_offsite_store.py): each key, one command.\n"]
    lines += [key_line(f'restrict,command="{serve}"', k) for k in spec.get("append_keys", [])]
    lines += [key_line('restrict,command="internal-sftp"', k) for k in spec.get("full_keys", [])]
    return "".join(lines)


GUARD_PATH = "/usr/local/sbin/phoenix-offsite-prune-guard"
GUARD = """\
#!/usr/bin/python3
# Phoenix offsite store (files/phoenix_offsite_store.py): retention's guard. A snapshot whose own
# time is far from when it reached the store may be forged (to make keep-* forget the real
# ones): then nothing is pruned, and this says which.
import datetime, json, os, re, subprocess, sys

tolerance = float(sys.argv[1])
repo = os.environ["RESTIC_REPOSITORY"]
proc = subprocess.run(["restic", "snapshots", "--json", "--no-lock"], capture_output=True,
                      text=True, check=False)
if proc.returncode != 0:
    sys.exit("prune guard: restic snapshots failed: " + proc.stderr.strip()[-300:])
odd = []
for snap in json.loads(proc.stdout or "[]"):
    text = re.sub(r"(\\.\\d{6})\\d+", r"\\1", snap["time"]).replace("Z", "+00:00")
    claimed = datetime.datetime.fromisoformat(text).timestamp()
    arrived = os.stat(os.path.join(repo, "snapshots", snap["id"])).st_mtime
    if abs(claimed - arrived) > tolerance:
        when = datetime.datetime.fromtimestamp(arrived, datetime.timezone.utc)
        odd.append(f"{snap['id'][:8]} of {snap.get('hostname')} claims {snap['time'][:19]} "
                   f"but arrived {when:%Y-%m-%d %H:%M}")
if odd:
    sys.exit(f"prune guard: not pruning: {len(odd)} snapshot(s) dated more than "
             f"{tolerance:.0f} s from their arrival, which a forge could use to make retention "
             "forget the real ones: " + "; ".join(odd[:5])
             + ". Check them; `phoenix backup prune` from the operator's machine applies "
             "the policy anyway")
print(f"prune guard: every snapshot's time is within {tolerance:.0f} s of its arrival")
"""


LOCK_GUARD_PATH = "/usr/local/sbin/phoenix-offsite-lock-guard"
LOCK_GUARD = """\
#!/usr/bin/python3
# Phoenix offsite store (files/phoenix_offsite_store.py): retention's lock guard. restic 0.14
# never takes a lock dated in the future for stale, so one planted by a forge would stop every
# prune; restic writes a lock (and each refresh of it) with the time it is written, so a lock
# claiming a time later than it reached the store (its file's mtime: rclone sets it on arrival)
# by more than the tolerance, or unreadable that long after it arrived, is removed here and
# named. Only those: `restic unlock --remove-all` would remove live locks too.
import datetime, json, os, re, subprocess, sys, time

tolerance = float(sys.argv[1])
repo = os.environ["RESTIC_REPOSITORY"]


def restic(*args):
    return subprocess.run(["restic", "--no-lock", *args], capture_output=True, text=True,
                          check=False)


def utc(stamp):
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S")


listed = restic("list", "locks")
if listed.returncode != 0:
    sys.exit("lock guard: restic list locks failed: " + listed.stderr.strip()[-300:])
ids = listed.stdout.split()
removed = []
for lock_id in ids:
    path = os.path.join(repo, "locks", lock_id)
    try:
        arrived = os.stat(path).st_mtime
    except FileNotFoundError:
        continue  # released meanwhile
    shown = restic("cat", "lock", lock_id)
    if shown.returncode != 0:
        if not os.path.exists(path) or time.time() - arrived <= tolerance:
            continue  # released meanwhile, or maybe still arriving
        why = "unreadable (" + (shown.stderr.strip().splitlines() or ["?"])[-1][:120] + ")"
    else:
        lock = json.loads(shown.stdout)
        text = re.sub(r"(\\.\\d{6})\\d+", r"\\1", lock["time"]).replace("Z", "+00:00")
        claimed = datetime.datetime.fromisoformat(text).timestamp()
        if claimed - arrived <= tolerance:
            continue
        why = (f"of {lock.get('hostname')} (pid {lock.get('pid')}) claims "
               f"{utc(claimed)} UTC")
    os.remove(path)
    removed.append(f"{lock_id[:8]} {why}, arrived {utc(arrived)} UTC")
for line in removed:
    print("lock guard: removed lock " + line)
print(f"lock guard: {len(ids)} lock(s), {len(removed)} removed (dated more than "
      f"{tolerance:.0f} s after their arrival, or unreadable)")
"""

# Retention runs restic through it: tried again while another run (the forge's repository
# snapshots, every few minutes) holds the lock. Its text is files/phoenix_restic_lock_wait.py,
# which comes in the spec (`lock_wait`), as this script runs alone (`python3 -c`).
LOCK_WAIT_PATH = "/usr/local/sbin/phoenix-offsite-lock-wait"


def lock_wait(spec: dict) -> str:
    text = spec.get("lock_wait")
    if not text:
        raise SystemExit(
            "phoenix-offsite-store: the spec has no lock_wait (the text of "
            "files/phoenix_restic_lock_wait.py; phoenix.store.setup_store adds it)"
        )
    return text


def prune_units(spec: dict, prune: dict) -> tuple[str, str]:
    keep = [
        arg
        for name in ("hourly", "daily", "weekly", "monthly")
        if int(prune.get("keep", {}).get(name) or 0)
        for arg in (f"--keep-{name}", str(int(prune["keep"][name])))
    ]
    if not keep:
        raise SystemExit(
            "phoenix-offsite-store: prune.keep keeps nothing: refusing a policy "
            "that would forget every snapshot"
        )
    # The forge's line is its tag: each droplet that was the forge backs up as its own name
    # (restic --host), so the line is one group by its tags whatever the hosts, as `phoenix
    # backup prune` groups it; a --host here would match no droplet and forget nothing.
    line = ["--group-by", "tags"]
    command = shlex.join(
        [
            LOCK_WAIT_PATH,
            "/usr/bin/restic",
            "forget",
            *line,
            "--tag",
            prune["tag"],
            *keep,
            "--prune",
        ]
    )
    # The repository snapshots (every few minutes) are kept for a while only; forgotten
    # first, so that the --prune above reclaims their data too.
    repo_forget = (
        ""
        if not prune.get("repo_tag")
        else "ExecStart="
        + shlex.join(
            [
                LOCK_WAIT_PATH,
                "/usr/bin/restic",
                "forget",
                *line,
                "--tag",
                prune["repo_tag"],
                "--keep-within",
                str(prune.get("repo_keep_within") or "2d"),
            ]
        )
        + "\n"
    )
    service = f"""\
# Phoenix offsite store: retention, here and not on the forge (its key is append-only).
[Unit]
Description=Phoenix offsite store: restic retention of {spec["repository"]}

[Service]
Type=oneshot
User={spec["user"]}
LoadCredential=password:{CONFIG_DIR}/password
Environment=RESTIC_REPOSITORY={spec["repository"]}
Environment=RESTIC_PASSWORD_FILE=%d/password
Environment=RESTIC_CACHE_DIR=/var/cache/{PRUNE}
CacheDirectory={PRUNE}
Nice=10
IOSchedulingClass=idle
ExecStartPre={GUARD_PATH} {int(prune.get("time_tolerance") or 7200)}
ExecStartPre={LOCK_GUARD_PATH} {int(prune.get("lock_tolerance") or 300)}
{repo_forget}ExecStart={command}
"""
    timer = f"""\
[Unit]
Description=Phoenix offsite store: restic retention, {prune.get("schedule") or "daily"}

[Timer]
OnCalendar={prune.get("schedule") or "daily"}
RandomizedDelaySec={int(prune.get("randomized_delay", 1800))}
Persistent=true

[Install]
WantedBy=timers.target
"""
    return service, timer


def folders(entry: pwd.struct_passwd, home: str, repo: str) -> list[str]:
    """The account's home and repository, made for it where missing. A folder that existed is
    never taken over: the home is the repository's parent, which may be /srv (or / for a
    shallow path), and nothing the forge's key reaches may own that. An existing repository
    the account does not own is refused, in one line, touching nothing."""
    if os.path.isdir(repo) and os.stat(repo).st_uid != entry.pw_uid:
        raise SystemExit(
            f"phoenix-offsite-store: {repo} exists and is not {entry.pw_name}'s (uid "
            f"{os.stat(repo).st_uid}): give the store a folder of its own (backup_repository), "
            "or chown it yourself if it is the store's"
        )
    made = []
    for folder in (home, repo):
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            made.append(folder)
    return made


WATCH = "phoenix-backup-watch"
WATCH_PATH = f"/usr/local/sbin/{WATCH}"


def watch_units(spec: dict, watch: dict, password: bool) -> tuple[str, str]:
    """The watch's oneshot and its timer. Its config (the alert command, maybe a webhook's
    address) stays root's file, handed in as a credential; with the store's password it tells
    full and repository snapshots apart. It looks into the replica account's folder too
    (another user's, 0700): CAP_DAC_READ_SEARCH, and no other capability."""
    restic = (
        f"LoadCredential=password:{CONFIG_DIR}/password\n"
        f"Environment=RESTIC_REPOSITORY={spec['repository']}\n"
        "Environment=RESTIC_PASSWORD_FILE=%d/password\n"
        if password
        else ""
    )
    service = f"""\
# Phoenix offsite store: tell the operator when the forge's backups stop arriving here.
[Unit]
Description=Phoenix offsite store: are the forge's backups still arriving?

[Service]
Type=oneshot
User={spec["user"]}
AmbientCapabilities=CAP_DAC_READ_SEARCH
CapabilityBoundingSet=CAP_DAC_READ_SEARCH
LoadCredential=watch:{CONFIG_DIR}/watch.json
{restic}Environment=RESTIC_CACHE_DIR=/var/cache/{WATCH}
CacheDirectory={WATCH}
StateDirectory={WATCH}
ExecStart={WATCH_PATH} %d/watch /var/lib/{WATCH}/state.json
"""
    timer = f"""\
[Unit]
Description=Phoenix offsite store: backups' arrival, {watch.get("schedule") or "*:0/15"}

[Timer]
OnCalendar={watch.get("schedule") or "*:0/15"}
Persistent=true

[Install]
WantedBy=timers.target
"""
    return service, timer


def install_watch(spec: dict, watch: dict) -> bool:
    program = spec.get("watch_program")
    if not program:
        raise SystemExit(
            "phoenix-offsite-store: the spec has a watch but no watch_program (the text of "
            "files/phoenix_backup_watch.py; phoenix.store.setup_store adds it)"
        )
    os.makedirs(CONFIG_DIR, mode=0o700, exist_ok=True)
    config = {
        k: watch[k] for k in ("checks", "alert_command", "ok_command", "repeat") if k in watch
    }
    service, timer = watch_units(spec, watch, os.path.exists(f"{CONFIG_DIR}/password"))
    units = [
        write(WATCH_PATH, program, 0o755),
        write(f"{CONFIG_DIR}/watch.json", json.dumps(config, indent=2) + "\n", 0o600),
        write(f"{UNIT_DIR}/{WATCH}.service", service, 0o644),
        write(f"{UNIT_DIR}/{WATCH}.timer", timer, 0o644),
    ]
    if any(units):
        sh("systemctl", "daemon-reload")
    sh("systemctl", "enable", "--now", f"{WATCH}.timer")
    if units[3]:
        sh("systemctl", "restart", f"{WATCH}.timer")  # its new schedule
    return any(units)


def remove_watch() -> bool:
    """The watch's timer, unit, program and config gone (the operator emptied the alert
    command): nothing left to run an alert command no setting names. True if any was there."""
    paths = [
        f"{UNIT_DIR}/{WATCH}.timer",
        f"{UNIT_DIR}/{WATCH}.service",
        WATCH_PATH,
        f"{CONFIG_DIR}/watch.json",
    ]
    if not any(os.path.lexists(p) for p in paths):
        return False
    if os.path.lexists(paths[0]):
        sh("systemctl", "disable", "--now", f"{WATCH}.timer")
    for path in paths:
        if os.path.lexists(path):
            os.unlink(path)
    sh("systemctl", "daemon-reload")
    return True


def main() -> int:
    spec = json.load(sys.stdin)
    spec.setdefault("user", "restic")
    user, home, repo = spec["user"], spec["home"], spec["repository"]
    changed = []
    if packages():
        changed.append("packages")
    try:
        pwd.getpwnam(user)
    except KeyError:
        # A real shell: sshd runs a forced command with it. Every key has one (below).
        sh("useradd", "--system", "--home-dir", home, "--shell", "/bin/sh", user)
        changed.append("user")
    entry = pwd.getpwnam(user)
    if entry.pw_shell != "/bin/sh":
        sh("usermod", "--shell", "/bin/sh", user)
        changed.append("shell")
    changed += folders(entry, home, repo)
    os.makedirs(KEYS_DIR, mode=0o755, exist_ok=True)
    if write(f"{KEYS_DIR}/{user}.keys", authorized_keys(spec), 0o644):
        changed.append("keys")
    dropin = f"""\
# Phoenix offsite store (files/phoenix_offsite_store.py): {user}'s keys are root's file, each
# pinned to its command there; nothing but that command.
Match User {user}
    AuthorizedKeysFile {KEYS_DIR}/%u.keys
    DisableForwarding yes
    PermitTTY no
    PermitUserRC no
"""
    # Litestream opens one SSH connection per database at once (a dozen from one forge);
    # sshd's default MaxStartups 10:30:100 resets some of them. Outside any Match.
    if write(
        STARTUPS_DROPIN,
        "# Phoenix offsite store: many replicas connect at once.\nMaxStartups 64:30:256\n",
        0o644,
    ):
        sh("sshd", "-t")
        sh("systemctl", "reload", "ssh")
        changed.append("sshd startups")
    # One drop-in per account (restic's keeps its first name): a second account, such as
    # Litestream's replicas (SFTP with delete rights, no append-only), leaves the
    # first one's rules alone.
    path = SSHD_DROPIN if user == "restic" else SSHD_DROPIN.replace(".conf", f"-{user}.conf")
    if write(path, dropin, 0o644):
        sh("sshd", "-t")
        sh("systemctl", "reload", "ssh")
        changed.append("sshd")
    prune = spec.get("prune")
    if spec.get("password") and prune:
        os.makedirs(CONFIG_DIR, mode=0o700, exist_ok=True)
        if write(f"{CONFIG_DIR}/password", spec["password"].strip() + "\n", 0o600):
            changed.append("password")
        service, timer = prune_units(spec, prune)
        units = [
            write(GUARD_PATH, GUARD, 0o755)
            | write(LOCK_GUARD_PATH, LOCK_GUARD, 0o755)
            | write(LOCK_WAIT_PATH, lock_wait(spec), 0o755),
            write(f"{UNIT_DIR}/{PRUNE}.service", service, 0o644),
            write(f"{UNIT_DIR}/{PRUNE}.timer", timer, 0o644),
        ]
        if any(units):
            sh("systemctl", "daemon-reload")
            changed.append("prune timer")
        sh("systemctl", "enable", "--now", f"{PRUNE}.timer")
        if units[2]:
            sh("systemctl", "restart", f"{PRUNE}.timer")  # its new schedule
    if spec.get("watch"):
        if install_watch(spec, spec["watch"]):
            changed.append("watch timer")
    elif prune and remove_watch():  # the store's own account (a replica account has no prune)
        changed.append("watch timer removed")
    print(json.dumps({"changed": changed}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"phoenix-offsite-store: {type(exc).__name__}: {exc}")
