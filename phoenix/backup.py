"""Backups offsite with restic, the operator's side: init, verify, now, list, prune (issues 6
and 17).

The forge's hourly job (files/phoenix-backup) writes snapshots to `backup_repository`; from
here the operator creates that repository, proves a snapshot restores, takes a last snapshot
from a forge that still answers (runbook step 4, "if accessible"), lists what there is, and
prunes. An sftp store is append-only for the forge (backup_append_only): the forge's key
reaches only `rclone serve restic --stdio --append-only` there, which `verify` proves by
trying, with that key, what a compromised forge would (delete a pack, remove a key, forget a
snapshot, overwrite a file) and requiring rclone's refusal. Pruning is the store's timer or
the operator's, through the operator's own key.

restic reads the password from a 0600 file that lives only while it runs (never argv or the
environment); an SFTP store is reached with the operator's key and its host key pinned
(phoenix.sshconf). Failures become one PhoenixError line: the on-host job's `classify` reads
both restic >= 0.17's exit codes (10 no repository, 11 locked, 12 wrong password) and the
stderr of Debian 12's restic 0.14, which exits 1 for all of them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import importlib.util
import json
import os
import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from phoenix import sshconf
from phoenix.context import current
from phoenix.errors import PhoenixError
from phoenix.secrets import read_secret
from phoenix.settings import REPO
from phoenix.sshconf import Target, ssh_command

JOB = REPO / "files" / "phoenix-backup"
GITEA = "gitea"   # the Gitea folder at the top of every snapshot (the job's layout)


VERIFIER = REPO / "files" / "phoenix-backup-verify"


@functools.cache
def _host_script(path: Path) -> ModuleType:
    """A script shipped to hosts, loaded as a module so that its code runs here too."""
    loader = importlib.machinery.SourceFileLoader(path.name.replace("-", "_"), str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def job_module() -> ModuleType:
    """The on-host job: its restic failure kinds are the operator's too."""
    return _host_script(JOB)


class BackupCheckError(PhoenixError):
    """The repository or a snapshot failed its check; `packs` names the damaged pack files."""

    def __init__(self, message: str, *, packs: list[str] | None = None,
                 path: str | None = None) -> None:
        super().__init__(message)
        self.packs = packs or []
        self.path = path


@dataclass(frozen=True)
class Store:
    """A restic repository and what opens it. Secrets stay out of repr()."""
    repository: str
    password: str = field(repr=False)
    ssh: Target | None = None           # sftp: the store, the operator's key, its host key
    env: Mapping[str, str] = field(default_factory=dict, repr=False)   # s3 credentials
    host: str | None = None             # restic --host: None, the whole primary line
    tag: str = "phoenix"                # the line's --tag (backup_tag)

    @property
    def location(self) -> str:
        return re.sub(r"//[^/@]*@", "//", self.repository)


@dataclass
class VerifyResult:
    """What `verify` proved: the check's read subset, the restored snapshot's contents, and
    which forbidden operations the store refused the forge's key (append-only)."""
    snapshot_id: str
    snapshot_time: str
    read_data_subset: str
    counts: dict[str, int]
    files: int
    check_seconds: float
    restore_seconds: float
    refused: list[str] = field(default_factory=list)
    keys: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def summary(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        line = (f"snapshot {self.snapshot_id[:8]} ({self.snapshot_time[:19]}) restores and "
                f"verifies: {self.files} files, {counts}; check read {self.read_data_subset} "
                f"of the packs in {self.check_seconds:.1f} s, restore test "
                f"{self.restore_seconds:.1f} s")
        if self.refused:
            line += ("; append-only: the store refused the forge's key to "
                     + ", ".join(self.refused) + f"; {self.keys} key(s) in the repository")
        return line


# --- the store from settings -------------------------------------------------------------------

def known_hosts_lines(value: Any) -> list[str]:
    """backup_known_hosts as lines: a string (one or more lines) or a list of lines."""
    if not value:
        return []
    lines = value.splitlines() if isinstance(value, str) else list(value)
    return [line.strip() for line in lines if line.strip()]


def store_from_settings(settings: Mapping[str, Any], *, key: Path | None = None,
                        known_hosts: Path | None = None) -> Store:
    """The Store that `settings` (group_data, or pyinfra's host.data) describe.

    sftp: `key` is the operator's SSH key (default: settings' ssh_key, then PHOENIX_SSH_KEY or
    ~/.ssh/id_ed25519); the store's pinned host key (backup_known_hosts) is written to
    `known_hosts` (default: <PHOENIX_STATE_DIR>/backup.known_hosts).
    """
    repository = settings.get("backup_repository")
    if not repository:
        raise PhoenixError("backup_repository is not set (group_data): say where the offsite "
                           "restic repository is, e.g. sftp:restic@store.example:/srv/restic/forge")
    folder = settings.get("secrets_dir")
    password = read_secret("restic_password", folder=folder)
    env: dict[str, str] = {}
    ssh = None
    if repository.startswith("sftp:"):
        sshconf.sftp_parts(repository)  # an address that is not one: say so first
        lines = known_hosts_lines(settings.get("backup_known_hosts"))
        if not lines:
            raise PhoenixError("backup_known_hosts is empty: pin the store's host key "
                               "(`ssh-keyscan` it once, check its fingerprint); Phoenix never "
                               "trusts a host key on first use")
        if known_hosts is None:
            from phoenix.state import state_dir
            known_hosts = state_dir() / "backup.known_hosts"
        known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        known_hosts.write_text("".join(line + "\n" for line in lines))
        if key is None:
            key = Path(settings.get("ssh_key")).expanduser() if settings.get("ssh_key") else None
        if key is None:
            from phoenix.provision import operator_key
            key = operator_key()
        ssh = sshconf.sftp_target(
            repository, key=Path(key), known_hosts=known_hosts,
            connect_timeout=int(settings.get("backup_connect_timeout") or 10))
    elif repository.startswith("s3:"):
        env = {"AWS_ACCESS_KEY_ID": read_secret("backup_s3_access_key_id", folder=folder),
               "AWS_SECRET_ACCESS_KEY": read_secret("backup_s3_secret_access_key",
                                                    folder=folder)}
    return Store(repository=repository, password=password, ssh=ssh, env=env,
                 host=settings.get("backup_host") or None,
                 tag=settings.get("backup_tag") or "phoenix")


def sftp_command(target: Target) -> str:
    """restic's sftp.command: the one SSH settings builder's ssh, strict host key checking."""
    return shlex.join(ssh_command(target, "-s", "sftp"))


def append_only(settings: Mapping[str, Any]) -> bool:
    """Whether hosts reach the store through its append-only endpoint (sftp stores only)."""
    return bool(settings.get("backup_append_only")) and \
        str(settings.get("backup_repository") or "").startswith("sftp:")


def channel_config(repository: str, target: Target, *, append_only: bool) -> dict[str, str]:
    """How the job on a host (forge, standby, recovery) reaches the sftp store `repository`
    with `target` (the host's key, the pinned host key): keys of its config.json.

    Append-only: restic's rclone backend, whose program is ssh to the store; the store runs
    the key's forced command (`rclone serve restic --stdio --append-only REPO`) whatever
    restic asks for, so the path here only names the store in messages."""
    path = sshconf.sftp_parts(repository)["path"]
    if not append_only:
        return {"sftp_command": sftp_command(target)}
    return {"repository": f"rclone:{path}",
            "rclone_program": shlex.join(ssh_command(target)),
            "location": f"{repository} (append-only)"}


STORE_SCRIPT = REPO / "files" / "phoenix-offsite-store"


def store_spec(settings: Mapping[str, Any], *, forge_key: str, operator_key: str,
               password: str) -> dict:
    """What files/phoenix-offsite-store makes of the store of `backup_repository`: the forge's
    public key append-only, the operator's SFTP, the retention timer with the keep-* policy.
    Holds the repository password: never print it."""
    repository = str(settings.get("backup_repository") or "")
    parts = sshconf.sftp_parts(repository,
                               why=": only an sftp store can be made append-only here")
    path = parts["path"] if parts["path"].startswith("/") else "/" + parts["path"]
    keep = {k: int(settings.get(f"backup_keep_{k}") or 0) for k in ("hourly", "daily", "weekly")}
    return {
        "user": parts["user"] or "restic", "home": os.path.dirname(path.rstrip("/")),
        "repository": path, "append_keys": [forge_key.strip()],
        "full_keys": [operator_key.strip()], "password": password,
        "prune": {"host": settings.get("backup_host") or "forge",
                  "tag": settings.get("backup_tag") or "phoenix", "keep": keep,
                  "schedule": settings.get("backup_prune_schedule") or "daily",
                  "time_tolerance": int(settings.get("backup_prune_time_tolerance") or 7200)},
    }


def setup_store(root: Target, spec: Mapping[str, Any], *, timeout: float = 900) -> list[str]:
    """Run files/phoenix-offsite-store as root on the store (the spec on stdin, never argv);
    returns what it changed."""
    script = STORE_SCRIPT.read_text()
    proc = sshconf.run(root, f"python3 -c {shlex.quote(script)}", input=json.dumps(dict(spec)),
                       timeout=timeout, late=f"setting up the store {root.host} did not finish")
    if proc.returncode != 0:
        raise PhoenixError(f"setting up the store {root.host} failed: "
                           f"{sshconf.last_line(proc.stderr)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["changed"]


@contextlib.contextmanager
def forge_channel(settings: Mapping[str, Any]) -> Iterator[Target]:
    """The forge's own way into the store, on the operator's machine: the backup_ssh_key
    secret (which the deploy puts on the forge) in a 0600 file that lives only meanwhile,
    and the store's pinned host key."""
    repository = str(settings.get("backup_repository") or "")
    sshconf.sftp_parts(repository)  # an address that is not one: say so before the secret
    key = read_secret("backup_ssh_key", folder=settings.get("secrets_dir"))
    with tempfile.TemporaryDirectory(prefix="phoenix-forge-key-") as tmp:  # 0700
        path = os.path.join(tmp, "id_backup")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key.strip() + "\n")
        known = Path(tmp) / "known_hosts"
        known.write_text("".join(line + "\n" for line in
                                 known_hosts_lines(settings.get("backup_known_hosts"))))
        yield sshconf.sftp_target(
            repository, key=Path(path), known_hosts=known,
            connect_timeout=int(settings.get("backup_connect_timeout") or 10))


# --- running restic ----------------------------------------------------------------------------

@contextlib.contextmanager
def _password_file(password: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="phoenix-restic-") as tmp:  # 0700
        path = os.path.join(tmp, "password")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        yield path


def failure(store: Store, what: str, returncode: int, stderr: str) -> PhoenixError:
    """The one-line error for a failed restic run, e.g. 'cannot list snapshots: wrong password
    for the restic repository …: check the restic_password secret'."""
    job = job_module()
    kind = job.classify(returncode, stderr)
    message = f"cannot {what}: {job.explain(kind, stderr, store.location)}"
    if kind == "wrong-password":
        message += " (check the restic_password secret: PHOENIX_RESTIC_PASSWORD or its file)"
    elif kind == "locked":
        message += "; if no restic runs anywhere, `restic unlock` removes a stale lock"
    return PhoenixError(message)


def operator_restic_env() -> dict[str, str]:
    """The operator's RESTIC_* settings (cache dir, compression, limits, pack size…), kept;
    the store and the password are Phoenix's to say (context.RESTIC_OWN)."""
    return current().restic_env()


def run_restic(store: Store, *args: str, what: str, timeout: float | None = None
               ) -> subprocess.CompletedProcess:
    """Run restic on `store` and return what it did, failed or not."""
    argv = ["restic"]
    if store.ssh is not None:
        argv += ["-o", f"sftp.command={sftp_command(store.ssh)}"]
    argv += list(args)
    ctx = current()
    with _password_file(store.password) as password_file:
        env = {**ctx.base_env(), "RESTIC_CACHE_DIR": str(ctx.cache_dir / "restic"),
               **ctx.restic_env(),
               "RESTIC_REPOSITORY": store.repository, "RESTIC_PASSWORD_FILE": password_file,
               **store.env}
        try:
            return subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except FileNotFoundError:
            raise PhoenixError("restic is not installed here: apt-get install restic") from None
        except subprocess.TimeoutExpired:
            raise PhoenixError(f"cannot {what}: restic did not finish within {timeout:.0f} s "
                               f"({store.location})") from None


def restic(store: Store, *args: str, what: str, timeout: float | None = None
           ) -> subprocess.CompletedProcess:
    """Run restic on `store`; a failure raises the PhoenixError that says what it means."""
    proc = run_restic(store, *args, what=what, timeout=timeout)
    if proc.returncode != 0:
        raise failure(store, what, proc.returncode, proc.stderr)
    return proc


def _json(proc: subprocess.CompletedProcess) -> Any:
    text = proc.stdout.strip()
    return json.loads(text.splitlines()[-1]) if text else None


# --- the commands ------------------------------------------------------------------------------

def init(store: Store) -> bool:
    """Create the repository unless it exists; True when it was created. An existing one that
    the password does not open is an error, never a second repository."""
    what = "open the restic repository"
    proc = run_restic(store, "cat", "config", what=what, timeout=120)
    if proc.returncode == 0:
        return False
    if job_module().classify(proc.returncode, proc.stderr) != "no-repository":
        raise failure(store, what, proc.returncode, proc.stderr)
    restic(store, "init", what="create the restic repository", timeout=300)
    return True


def list_snapshots(store: Store, *, all_hosts: bool = False) -> list[dict]:
    """The forge's snapshots, oldest first: {id, short_id, time, host, paths, tags}."""
    args = ["snapshots", "--json"]
    if not all_hosts:  # the primary line: every droplet that was the forge, one at a time
        args += [*(["--host", store.host] if store.host else []), "--tag", store.tag]
    rows = _json(restic(store, *args, what="list snapshots", timeout=300)) or []
    return parse_snapshots(rows)


def parse_snapshots(rows: list[dict]) -> list[dict]:
    snapshots = [{"id": r["id"], "short_id": r.get("short_id") or r["id"][:8],
                  "time": r["time"], "host": r.get("hostname"), "paths": r.get("paths", []),
                  "tags": r.get("tags") or []} for r in rows]
    return sorted(snapshots, key=lambda s: s["time"])


def latest_snapshot_id(store: Store) -> str:
    """The id of the forge's newest snapshot; an error when there is none."""
    snapshots = list_snapshots(store)
    if not snapshots:
        raise PhoenixError(f"the repository {store.location} has no snapshot tagged "
                           f"{store.tag!r}{f' of host {store.host!r}' if store.host else ''} "
                           "yet: run the backup job (`phoenix backup now`)")
    return snapshots[-1]["id"]


def resolve_snapshot(store: Store, ref: str) -> str:
    """A concrete snapshot id for `latest` or an id (or its prefix)."""
    if ref in ("", "latest"):
        return latest_snapshot_id(store)
    if not re.fullmatch(r"[0-9a-f]{4,64}", ref):
        raise PhoenixError(f"{ref!r} is not a snapshot id (hex) or 'latest'")
    rows = _json(restic(store, "snapshots", "--json", ref, what=f"find snapshot {ref}",
                        timeout=300)) or []
    if len(rows) != 1:
        raise PhoenixError(f"no single snapshot {ref} in {store.location}")
    return rows[0]["id"]


def read_manifest(store: Store, snapshot_id: str) -> bytes:
    """The manifest.json of a snapshot's Gitea folder, read without restoring it."""
    proc = restic(store, "dump", snapshot_id, f"/{GITEA}/manifest.json",
                  what=f"read the manifest of snapshot {snapshot_id[:8]}", timeout=300)
    return proc.stdout.encode()


def read_file(store: Store, snapshot_id: str, path: str) -> bytes | None:
    """A file of a snapshot's Gitea folder (e.g. app.ini), read without restoring it; None when
    the snapshot has no such file (snapshots older than the file's place in the layout)."""
    what = f"read {path} of snapshot {snapshot_id[:8]}"
    proc = run_restic(store, "dump", snapshot_id, f"/{GITEA}/{path}", what=what, timeout=300)
    if proc.returncode != 0:
        if re.search(r"not found|no such file", proc.stderr, re.IGNORECASE):
            return None
        raise failure(store, what, proc.returncode, proc.stderr)
    return proc.stdout.encode()


def damaged_packs(output: str) -> list[str]:
    """Pack ids that `restic check` reports as damaged, in the order it names them."""
    found = re.findall(r"(?:[Pp]ack ID does not match, want |pack )([0-9a-f]{64})", output)
    return list(dict.fromkeys(found))


def check(store: Store, *, read_data_subset: str = "5%") -> float:
    """`restic check --read-data-subset=…`, which reads that part of the packs as a restore
    would; returns the seconds it took. A damaged pack raises BackupCheckError naming it."""
    started = time.monotonic()
    what = "check the repository"
    proc = run_restic(store, "check", f"--read-data-subset={read_data_subset}", what=what)
    if proc.returncode != 0:
        packs = damaged_packs(proc.stdout + "\n" + proc.stderr)
        if packs:
            raise BackupCheckError(
                f"the repository {store.location} is damaged: pack {packs[0]} does not match "
                f"its id{f' (and {len(packs) - 1} more)' if len(packs) > 1 else ''}; repair it "
                "from an intact copy, or forget the snapshots that use it", packs=packs)
        raise failure(store, what, proc.returncode, proc.stderr)
    return time.monotonic() - started


def list_keys(store: Store) -> list[dict]:
    """The repository's keys: {current, id (short), userName, hostName, created}."""
    return _json(restic(store, "key", "list", "--json", what="list the repository's keys",
                        timeout=300)) or []


def check_keys(store: Store, *, expected: int) -> int:
    """The number of keys; more than `expected` is an error that names the others. The forge
    may add a key (append-only allows adding): that gives nothing its password does not (the
    same master key), and it can remove none; but an unknown key is a sign, and restic tries
    only the first 20 keys, so a flood of them could hide the operator's."""
    keys = list_keys(store)
    if len(keys) > expected:
        others = ", ".join(f"{k['id']} ({k.get('userName')}@{k.get('hostName')}, "
                           f"{k.get('created')})" for k in keys if not k.get("current"))
        raise BackupCheckError(
            f"the repository {store.location} has {len(keys)} keys, {expected} expected "
            f"(backup_keys_expected): {others}. A key you did not add may come from a "
            f"compromised forge: remove it with your own key (`restic -r {store.location} "
            "key remove ID`; the forge cannot remove keys)")
    return len(keys)


def keep_args(keep: Mapping[str, Any]) -> list[str]:
    """restic forget's --keep-* arguments from {hourly: 24, daily: 7, …} (zeros left out)."""
    return [arg for name in ("hourly", "daily", "weekly", "monthly")
            if int(keep.get(name) or 0) for arg in (f"--keep-{name}", str(int(keep[name])))]


def prune(store: Store, *, keep: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """The retention policy applied with the operator's own key (the forge cannot delete):
    `restic forget --keep-… --prune` on the forge's snapshot line; returns (kept, removed)."""
    policy = keep_args(keep)
    if not policy:
        raise PhoenixError("the keep-* policy keeps nothing (backup_keep_*): refusing to forget "
                           "every snapshot")
    before = list_snapshots(store)
    # The forge's line spans droplets (restic --host is each droplet's name): without a
    # backup_host, the policy applies to the whole line, grouped by its tags.
    line = ["--host", store.host] if store.host else ["--group-by", "tags"]
    restic(store, "forget", *line, "--tag", store.tag, *policy, "--prune",
           what="prune the repository")
    kept = list_snapshots(store)
    left = {s["id"] for s in kept}
    return kept, [s for s in before if s["id"] not in left]


def verify(store: Store, *, read_data_subset: str = "5%", snapshot: str = "latest",
           workdir: Path | None = None, forge: Target | None = None,
           keys_expected: int | None = None) -> VerifyResult:
    """Prove the backups restore: `restic check` with a read-data subset, then the snapshot
    (default the newest) restored into a temporary folder and checked by the same verifier a
    restore runs (every checksum, the refs, PRAGMA integrity_check, the counts). With `forge`
    (the forge's own key into the store), prove too that the store refuses it every deletion
    and overwrite (phoenix.appendonly); with `keys_expected`, that no key was added."""
    verifier = _host_script(VERIFIER)
    check_seconds = check(store, read_data_subset=read_data_subset)
    snapshot_id = resolve_snapshot(store, snapshot)
    info = next((s for s in list_snapshots(store, all_hosts=True) if s["id"] == snapshot_id),
                {"time": ""})
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="phoenix-verify-", dir=workdir) as tmp:
        what = f"restore snapshot {snapshot_id[:8]} for its test"
        proc = run_restic(store, "restore", snapshot_id, "--target", tmp, what=what)
        if proc.returncode != 0:
            # restic goes on past a file it cannot read: "ignoring error for /gitea/x: …"
            bad = re.findall(r"error for (\S+?): (.+)", proc.stderr)
            if bad:
                raise BackupCheckError(f"snapshot {snapshot_id[:8]} does not restore: "
                                       f"{bad[0][0]}: {bad[0][1]}", path=bad[0][0])
            raise failure(store, what, proc.returncode, proc.stderr)
        folder = Path(tmp) / GITEA
        try:
            report = verifier.verify(str(folder))
        except verifier.BackupError as exc:
            raise BackupCheckError(f"snapshot {snapshot_id[:8]} restores, but fails its "
                                   f"verification: {exc}", path=exc.path) from None
    restore_seconds = time.monotonic() - started
    refused: list[str] = []
    if forge is not None:
        from phoenix import appendonly
        refused = appendonly.prove(forge)
    keys = check_keys(store, expected=keys_expected) if keys_expected else 0
    return VerifyResult(snapshot_id=snapshot_id, snapshot_time=info["time"],
                        read_data_subset=read_data_subset, counts=report["counts"],
                        files=report["files"], check_seconds=check_seconds,
                        restore_seconds=restore_seconds, refused=refused, keys=keys)


def now(target: Target, *, settings: Mapping[str, Any], timeout: float = 3600) -> str:
    """Run the backup job on a forge that still answers (runbook step 4, "if accessible") and
    return the id of the snapshot it made. The forge must run Phoenix's job (tasks/backups.py)."""
    unit = "phoenix-backup.service"
    status_file = settings.get("backup_status_file") or "/var/lib/phoenix/backup/last-success.json"
    remote = (f"systemctl cat {unit} >/dev/null 2>&1 || {{ echo 'no {unit} on this host' >&2; "
              f"exit 3; }}; systemctl start {unit} || {{ journalctl -u {unit} -n 40 -o cat "
              f"--no-pager >&2; exit 4; }}; cat {shlex.quote(status_file)}")
    proc = sshconf.run(target, remote, timeout=timeout,
                       late=f"the backup on {target.host} did not finish")
    if proc.returncode == 3:
        raise PhoenixError(f"{target.host} has no Phoenix backup job ({unit}): converge it with "
                           "the deploy (tasks/backups.py) first")
    if proc.returncode == 4:
        # The job's own FAILED line; systemd may add its own lines after it (seen in nspawn:
        # "Failed to kill control group"), hence 40 lines and the FAILED ones first.
        said = [line.split("phoenix-backup: ", 1)[1] for line in proc.stderr.splitlines()
                if "phoenix-backup: " in line]
        lines = [line.removeprefix("FAILED: ") for line in said if line.startswith("FAILED: ")]
        raise PhoenixError(f"the backup job failed on {target.host}: "
                           + (lines[-1] if lines else proc.stderr.strip()[-300:])
                           + f" (journalctl -u {unit} there)")
    if proc.returncode != 0:
        raise PhoenixError(f"cannot run the backup on {target.host} over ssh: "
                           f"{sshconf.last_line(proc.stderr)}")
    try:
        return json.loads(proc.stdout)["snapshot_id"]
    except (ValueError, KeyError):
        raise PhoenixError(f"the backup on {target.host} wrote no snapshot id to "
                           f"{status_file}") from None


def restore_ref(source: str | None) -> str | None:
    """For restore_source "restic:latest" or "restic:<id>": the snapshot reference; else None."""
    if source and str(source).startswith("restic:"):
        return str(source)[len("restic:"):] or "latest"
    return None
