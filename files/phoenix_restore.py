#!/usr/bin/python3
"""Phoenix's restore, on the host: every step that touches the host's data, in one program.

Debian 12's python3 standard library only; one file, shipped and configured by
tasks/restore.py (config.json beside the restore's staging folder). The offsite store is
reached through the backup job's one restic line: its program (`backup_job`) loaded as a
module, with its configuration (`backup_config`): the same password file, channel and
reading of restic's failures.

    phoenix-restore --config FILE stage ID DEST     restic snapshot ID's Gitea folder to DEST
                                                   (a warm standby's verified copy if it has one)
    phoenix-restore --config FILE apply UNPACKED   what is in the way is set aside, then the
                                                   backup's database, repositories/, custom/,
                                                   data/ entries and extra folders
                                                   (UNPACKED.files) take its place
    phoenix-restore --config FILE replay SPEC      each database brought from the snapshot's
                                                   copy to its Litestream replica's point
    phoenix-restore --config FILE repositories ID --report FILE [--before TIME]
                    [--databases FILE] [--full-only]
                                                   the repositories and other files from the
                                                   newest frequent snapshot after ID (up to
                                                   TIME), then Gitea's branch table made to
                                                   match the git data and the rows that name
                                                   files checked against them
    phoenix-restore --config FILE regenerate       `gitea admin regenerate hooks` and `keys`,
                                                   as Gitea's run user (Gitea must be running)
    phoenix-restore --config FILE host-keys UNPACKED DEST [--public-only]
                                                   the backup's SSH host keys (UNPACKED.files)
                                                   checked and staged in DEST (root's alone),
                                                   or only their public halves
    phoenix-restore --config FILE install-host-keys DEST
                                                   the staged host keys in place of the host's
                                                   (set aside), checked by `sshd -t`
    phoenix-restore --config FILE record PLAN OUT  what was restored, each kind from which
                                                   point: PLAN (the deploy's: the source, its
                                                   snapshot, the point) and the outcomes the
                                                   replay's and the repositories' reports give

Nothing is deleted: every step moves what it replaces with set_aside, into a folder of its
own below ASIDE (<UTC time>[-N]/, made when something is first set aside), never over anything.
A run cut off anywhere is finished by the next one: the deploy stages the backup afresh, and
what the cut-off run had already put in place is set aside again like anything else, so the
data found before the first run stays where that run put it.

A backup is hostile input (the old forge's users wrote it): nothing in it runs, and no link in
it is followed; git runs on a restored repository as Gitea's user with every program its
config could name turned off.

config.json: {"db_path", "repo_root", "custom_dir", "data_dir", "aside_dir", "user", "group",
"paths": [extra folders], "gitea_binary", "app_ini", "work_dir", "backup_job",
"backup_config", "cut_file", "host_keys": [sshd's private host key files]}. `cut_file` is a
fault switch for tests: when it holds the name of a step (set-aside, database, in-place,
regenerated), the run stops right after that step with exit 137, as if killed, and removes it.
"""

from __future__ import annotations

import argparse
import datetime
import grp
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import pwd
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from types import ModuleType

DATABASE = "gitea.db"
SIDE_FILES = ("-wal", "-shm", "-journal")
GITEA = "gitea"  # the Gitea folder at the top of a full or repository snapshot
UTC = datetime.UTC
# What each command needs from config.json
NEEDS = {
    "stage": ("backup_job", "backup_config"),
    "apply": ("db_path", "repo_root", "custom_dir", "data_dir", "aside_dir", "user", "group"),
    "replay": ("aside_dir",),
    "repositories": ("db_path", "repo_root", "aside_dir", "backup_job", "backup_config"),
    "regenerate": ("user", "gitea_binary", "app_ini", "work_dir"),
    "host-keys": ("host_keys",),
    "install-host-keys": ("host_keys", "aside_dir"),
    "record": (),
    "prune": ("aside_dir", "staging_dir"),
}
STAMP = re.compile(r"(\d{8}T\d{6}Z)(-\d+)?")  # an Aside folder's name
STAGE = re.compile(r"[0-9a-f]{8,64}")  # a staging folder: the snapshot id or archive's sha256


class RestoreError(Exception):
    """An expected failure; the message is the one line the deploy shows."""


def log(message: str) -> None:
    print(f"phoenix-restore: {message}", file=sys.stderr, flush=True)


def load_config(path: str, command: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise RestoreError(f"cannot read the configuration {path}: {exc}") from None
    for key in NEEDS[command]:
        if not config.get(key):
            raise RestoreError(f"{path} has no {key!r}: converge the host again (tasks/restore.py)")
    return config


def cut(config: dict, step: str) -> None:
    """The tests' fault switch (see the module's docstring)."""
    path = config.get("cut_file")
    if not path or not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as handle:
        wanted = handle.read().strip()
    if wanted == step:
        os.unlink(path)
        log(f"cut off after {step} ({path})")
        sys.exit(137)


def holds_something(path: str) -> bool:
    if os.path.islink(path) or os.path.isfile(path):
        return True
    return os.path.isdir(path) and bool(os.listdir(path))


class Aside:
    """Where one step sets aside what it replaces: ROOT/<UTC time>[-N]/, root's alone, made
    when something is first set aside (a step that replaces nothing leaves no folder)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._folder: str | None = None

    @property
    def folder(self) -> str:
        if self._folder is None:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            stamp = datetime.datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            folder, n = os.path.join(self.root, stamp), 1
            while os.path.lexists(folder):
                n += 1
                folder = os.path.join(self.root, f"{stamp}-{n}")
            os.makedirs(folder, mode=0o700)
            self._folder = folder
        return self._folder

    @property
    def used(self) -> bool:
        return self._folder is not None


def set_aside(path: str, aside: Aside, name: str | None = None) -> str | None:
    """The one way a restore replaces data: path (when it holds something) moved to
    <aside's folder>/<name> (default: its absolute path), never over anything there; returns
    where, None when path held nothing."""
    if not holds_something(path):
        return None
    target = os.path.join(aside.folder, name or os.path.abspath(path).lstrip("/"))
    if os.path.lexists(target):
        raise RestoreError(f"{target} exists: refusing to set {path} aside over it")
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    shutil.move(path, target)
    log(f"set aside: {path} -> {target}")
    return target


def not_plain(path: str) -> str | None:
    """Why path, or the first entry below it, is neither a regular file nor a folder (a
    symlink, a special file), naming it; None when all of it is plain. A backup is hostile
    input (Gitea's user wrote it): a restore run as root never follows a link in it."""
    entries = [path]
    if stat.S_ISDIR(os.lstat(path).st_mode):
        for dirpath, dirnames, filenames in os.walk(path):
            entries += [os.path.join(dirpath, name) for name in dirnames + filenames]
    for entry in entries:
        mode = os.lstat(entry).st_mode
        if stat.S_ISLNK(mode):
            return f"{entry} is a symlink (to {os.readlink(entry)})"
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            return f"{entry} is a special file"
    return None


def chown_tree(path: str, uid: int, gid: int) -> None:
    """path and everything below it owned by uid:gid; a symlink in it is refused, never
    followed (os.walk follows one at its top)."""
    why = not_plain(path)
    if why:
        raise RestoreError(f"{why}: refusing to chown through it")
    os.chown(path, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def move_in(src: str, dest: str) -> None:
    """src moved to dest, which set_aside has emptied: an empty folder there is replaced, and
    anything else (it came meanwhile) stops the restore rather than be mixed or overwritten."""
    if os.path.isdir(dest) and not os.path.islink(dest) and not os.listdir(dest):
        os.rmdir(dest)
    if os.path.lexists(dest):
        raise RestoreError(f"{dest} is not empty after it was set aside: refusing to mix")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.move(src, dest)


def put_in_place(src: str, dest: str, uid: int, gid: int, mode: int) -> None:
    """dest becomes src (without src, an empty folder), owned by Gitea's user."""
    if os.path.isdir(src):
        move_in(src, dest)
    elif not os.path.isdir(dest):
        os.makedirs(dest)
    chown_tree(dest, uid, gid)
    os.chmod(dest, mode)


def owner(config: dict) -> tuple[int, int]:
    try:
        return pwd.getpwnam(config["user"]).pw_uid, grp.getgrnam(config["group"]).gr_gid
    except KeyError as exc:
        raise RestoreError(
            f"no user or group {exc} on this host: converge Gitea's task first"
        ) from None


# --- the offsite store: the backup job's restic line --------------------------------------


class ResticLine:
    """The backup job's program (`backup_job`) loaded as a module with its configuration
    (`backup_config`): the one way this host reaches the store. Its failures are one line."""

    def __init__(self, config: dict) -> None:
        sys.dont_write_bytecode = True  # no __pycache__ left beside the installed programs
        loader = importlib.machinery.SourceFileLoader("phoenix_backup", config["backup_job"])
        spec = importlib.util.spec_from_loader(loader.name, loader)
        if spec is None:
            raise RestoreError(f"cannot load the backup job {config['backup_job']}")
        self.job: ModuleType = importlib.util.module_from_spec(spec)
        try:
            loader.exec_module(self.job)
        except OSError as exc:
            raise RestoreError(f"cannot load the backup job: {exc}") from None
        self.config = self._call(self.job.load_config, config["backup_config"])

    def _call(self, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except self.job.JobError as exc:
            raise RestoreError(str(exc)) from None

    def restic(self, *args: str, what: str) -> str:
        return self._call(self.job.restic, self.config, *args, what=what)

    def time(self, text: str) -> datetime.datetime:
        """restic's and an operator's times, read as the job reads them."""
        return self._call(self.job._parse_time, text)

    def believable(self, rows: list[dict]) -> list[dict]:
        return self._call(self.job.believable, self.config, rows)

    def stage(self, snapshot: str, dest: str) -> None:
        """DEST becomes the snapshot's Gitea folder, DEST.files its app.ini and extra folders
        (a warm standby's prestaged copy of the same snapshot is taken instead)."""
        self._call(self.job.restore, self.config, snapshot, dest)


def write_json(path: str, data: dict) -> None:
    """data written whole or not at all, root's alone."""
    tmp = path + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def apply(config: dict, unpacked: str) -> dict:
    """Set aside, then put in place (see the module's docstring); returns what it did."""
    db = config["db_path"]
    if not os.path.isfile(os.path.join(unpacked, DATABASE)):
        raise RestoreError(
            f"{unpacked} holds no {DATABASE}: stage and verify the backup "
            "first; nothing was set aside"
        )
    uid, gid = owner(config)
    data_dir = config["data_dir"]
    staged_data = os.path.join(unpacked, "data")
    extra = [
        p.rstrip("/")
        for p in config.get("paths", [])
        if os.path.lexists(unpacked + ".files" + p.rstrip("/"))
    ]
    # What is chowned to Gitea's user, whole, and the tops of the extra folders: a link in them
    # is refused before anything is set aside.
    for path in (
        os.path.join(unpacked, name) for name in (DATABASE, "repositories", "custom", "data")
    ):
        why = os.path.lexists(path) and not_plain(path)
        if why:
            raise RestoreError(f"{why} in the staged backup: refusing it; nothing was set aside")
    for path in extra:
        if os.path.islink(unpacked + ".files" + path):
            raise RestoreError(
                f"{unpacked}.files{path} is a symlink in the staged backup: "
                "refusing it; nothing was set aside"
            )
    staged_entries = sorted(os.listdir(staged_data)) if os.path.isdir(staged_data) else []
    # Litestream's own state (.gitea.db-litestream, in snapshots older than the job's
    # exclusion) belongs to the old host's replication: the new host's Litestream makes its own.
    data_entries = [n for n in staged_entries if not LITESTREAM_STATE.search(n + "/")]
    skipped = sorted(set(staged_entries) - set(data_entries))
    in_the_way = [
        db,
        *(db + s for s in SIDE_FILES),
        config["repo_root"],
        config["custom_dir"],
        *(os.path.join(data_dir, name) for name in data_entries),
        *extra,
    ]

    aside = Aside(config["aside_dir"])
    moved = {path: where for path in in_the_way if (where := set_aside(path, aside))}
    cut(config, "set-aside")

    os.makedirs(os.path.dirname(db), exist_ok=True)
    os.chown(os.path.dirname(db), uid, gid)
    move_in(os.path.join(unpacked, DATABASE), db)
    os.chown(db, uid, gid)
    os.chmod(db, 0o600)
    cut(config, "database")

    put_in_place(os.path.join(unpacked, "repositories"), config["repo_root"], uid, gid, 0o750)
    put_in_place(os.path.join(unpacked, "custom"), config["custom_dir"], uid, gid, 0o750)
    for name in data_entries:  # attachments, avatars, LFS, packages, jwt/…: beside gitea.db
        target = os.path.join(data_dir, name)
        move_in(os.path.join(staged_data, name), target)
        chown_tree(target, uid, gid)
    for path in extra:  # the snapshot's backup_paths (Hermes state), owned as they were
        move_in(unpacked + ".files" + path, path)
    cut(config, "in-place")
    if skipped:
        log(
            f"left out of the data folder: {', '.join(skipped)} "
            "(Litestream's state on the old host)"
        )
    return {
        "aside": aside.folder if aside.used else None,
        "set_aside": sorted(moved),
        "data": data_entries,
        "skipped": skipped,
        "paths": extra,
    }


# --- the forge's SSH host keys -------------------------------------------------------------

# The key type each of sshd's host key files must hold (its name says which)
HOST_KEY_TYPES = {
    "ed25519": ("ssh-ed25519",),
    "rsa": ("ssh-rsa",),
    "ecdsa": ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
}
HOST_KEY_MAX_BYTES = 16384
RSA_HOST_KEY_MIN_BITS = 3072  # what checks/ssh.py holds sshd's own keys to
KEYS_JSON = "keys.json"


def _read_plain(path: str, *, private: bool) -> bytes:
    """The bytes of a regular file of the backup, never through a link; a private key that
    others could read was not sshd's (sshd refuses such a key too)."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise RestoreError(f"{path} is not a regular file (a link or a special file)")
    if private and st.st_mode & 0o077:
        raise RestoreError(f"{path} has mode {st.st_mode & 0o777:04o}: a host key is root's alone")
    if st.st_size > HOST_KEY_MAX_BYTES:
        raise RestoreError(f"{path} is {st.st_size} bytes: no host key is that large")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(HOST_KEY_MAX_BYTES + 1)


def _keygen(*args: str) -> str:
    proc = subprocess.run(
        ["ssh-keygen", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise RestoreError((proc.stderr.strip() or "ssh-keygen failed").splitlines()[-1])
    return proc.stdout.strip()


def _check_host_key(path: str, source: str, work: str, *, public_only: bool) -> dict:
    """One host key of the backup (`source`: its private half there), copied into `work`
    and checked there: its type is the one its name says, the private half (unencrypted)
    gives the public half, an RSA key has at least RSA_HOST_KEY_MIN_BITS bits."""
    name = os.path.basename(path)
    match = re.fullmatch(r"ssh_host_([a-z0-9]+)_key", name)
    if not match or match.group(1) not in HOST_KEY_TYPES:
        raise RestoreError(f"{path}: not a host key file sshd names (ssh_host_<type>_key)")
    public_text = _read_plain(source + ".pub", private=False).decode("ascii", "replace")
    fields = public_text.strip().split()
    if len(public_text.strip().splitlines()) != 1 or len(fields) < 2:
        raise RestoreError(f"{source}.pub is not one public key line")
    if fields[0] not in HOST_KEY_TYPES[match.group(1)]:
        raise RestoreError(
            f"{source}.pub holds a {fields[0]} key, not the {match.group(1)} its name says"
        )
    public = f"{fields[0]} {fields[1]}"
    copy = os.path.join(work, name)
    with open(os.open(copy + ".pub", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "w") as out:
        out.write(public + "\n")
    try:
        line = _keygen("-l", "-E", "sha256", "-f", copy + ".pub").split()
    except RestoreError as exc:
        raise RestoreError(f"{source}.pub is not a public key ssh-keygen reads: {exc}") from None
    bits, fingerprint = int(line[0]), line[1]
    if fields[0] == "ssh-rsa" and bits < RSA_HOST_KEY_MIN_BITS:
        raise RestoreError(
            f"{source}.pub is a {bits}-bit RSA key: sshd's are {RSA_HOST_KEY_MIN_BITS} and more"
        )
    if not public_only:
        secret = _read_plain(source, private=True)
        with open(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(secret)
        try:
            derived = _keygen("-y", "-P", "", "-f", copy).split()
        except RestoreError as exc:
            raise RestoreError(
                f"{source} is not an unencrypted private key ssh-keygen reads: {exc}"
            ) from None
        if derived[:2] != fields[:2]:
            raise RestoreError(f"{source} and {source}.pub are not halves of one key")
    return {
        "path": path,
        "type": fields[0],
        "bits": bits,
        "fingerprint": fingerprint,
        "public": public,
        "staged": not public_only,
    }


def host_keys(config: dict, unpacked: str, dest: str, *, public_only: bool = False) -> dict:
    """DEST becomes the backup's host keys (each checked: _check_host_key) and keys.json
    saying which, or, with `public_only`, keys.json alone. A bad key refuses them all,
    before DEST is touched; a backup without host keys leaves a keys.json that says so."""
    found = []
    for path in config["host_keys"]:
        source = unpacked + ".files" + path
        here = [os.path.lexists(p) for p in (source, source + ".pub")]
        if not any(here):
            continue
        if not all(here) and not (public_only and here[1]):
            raise RestoreError(f"{source} is in the staged backup without its other half")
        found.append((path, source))
    parent = os.path.dirname(dest.rstrip("/")) or "/"
    os.makedirs(parent, mode=0o700, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".host-keys-", dir=parent)
    try:
        keys = [_check_host_key(p, s, work, public_only=public_only) for p, s in found]
        if public_only:
            for name in os.listdir(work):
                os.unlink(os.path.join(work, name))
        write_json(os.path.join(work, KEYS_JSON), {"keys": keys})
        if os.path.lexists(dest):
            shutil.rmtree(dest)  # an earlier restore's staging, never the host's keys
        os.replace(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {"host_keys": [{k: key[k] for k in ("path", "type", "fingerprint")} for key in keys]}


def install_host_keys(config: dict, dest: str) -> dict:
    """The host keys staged in DEST in place of the host's (set aside first), root's alone;
    when `sshd -t` does not take them, the host's are put back."""
    with open(os.path.join(dest, KEYS_JSON), encoding="utf-8") as handle:
        keys = [key for key in json.load(handle)["keys"] if key.get("staged")]
    wanted = set(config["host_keys"])
    if any(key["path"] not in wanted for key in keys):
        raise RestoreError(f"{dest}/{KEYS_JSON} names a host key sshd does not use")
    aside = Aside(config["aside_dir"])
    moved = []
    for key in keys:
        for suffix in ("", ".pub"):
            staged = os.path.join(dest, os.path.basename(key["path"])) + suffix
            if not stat.S_ISREG(os.lstat(staged).st_mode):
                raise RestoreError(f"{staged} is not a regular file")
    for key in keys:
        for suffix, mode in (("", 0o600), (".pub", 0o644)):
            target = key["path"] + suffix
            moved.append((target, set_aside(target, aside)))
            staged = os.path.join(dest, os.path.basename(key["path"])) + suffix
            with open(staged, "rb") as handle:
                content = handle.read()
            tmp = target + ".phoenix-tmp"  # beside it: /etc may be another filesystem
            if os.path.lexists(tmp):
                os.unlink(tmp)
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as out:
                out.write(content)
            os.chown(tmp, 0, 0, follow_symlinks=False)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
    checked = subprocess.run(["sshd", "-t"], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        for target, where in moved:
            os.unlink(target)
            if where:
                shutil.move(where, target)
        why = (checked.stderr.strip() or "no output").splitlines()[-1]
        raise RestoreError(f"sshd -t refuses the backup's host keys ({why}): the host's are back")
    shutil.rmtree(dest)
    return {
        "installed": [key["fingerprint"] for key in keys],
        "aside": aside.folder if aside.used else None,
    }


# --- the databases from their Litestream replicas -------------------------------------------


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def litestream_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return "no output"
    line = lines[-1]
    return line[len("Error: ") :] if line.startswith("Error: ") else line


def explain(message: str) -> str:
    """Litestream's error, said as what it means for this restore."""
    low = message.lower()
    if "no matching backup" in low or "no backup files" in low:
        return "the replica store holds no replica of it"
    if any(
        word in low
        for word in (
            "connection refused",
            "i/o timeout",
            "no route to host",
            "network is unreachable",
            "handshake failed",
            "unable to authenticate",
            "host key mismatch",
            "connect:",
            "dial tcp",
        )
    ):
        return f"the replica store is unreachable ({message})"
    if any(
        word in low
        for word in (
            "checksum",
            "corrupt",
            "invalid ltx",
            "malformed",
            "integrity check",
            "decode",
            "unexpected eof",
        )
    ):
        return f"the replica is corrupt ({message})"
    return message


def newest_point(
    litestream: str, config: str, path: str, env: dict, timeout: int
) -> datetime.datetime | None:
    """The time of the replica's newest LTX file, every level (`litestream ltx -json`)."""
    proc = subprocess.run(
        [litestream, "ltx", "-config", config, "-json", "-level", "all", path],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        return None
    try:
        rows = json.loads(proc.stdout or "[]")
    except ValueError:
        return None
    times = [t for row in rows or [] if (t := parse_time(row.get("timestamp"))) is not None]
    return max(times) if times else None


def integrity(path: str) -> str | None:
    """None when PRAGMA integrity_check says ok, else what it says."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return str(exc)
    return None if rows == ["ok"] else "; ".join(rows[:3])


def table_ends(path: str) -> dict[str, int]:
    """Each table's highest rowid (0 when empty; WITHOUT ROWID tables left out)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                "AND sql NOT LIKE '%WITHOUT ROWID%'"
            )
        ]
        ends = {}
        for name in names:
            quoted = '"' + name.replace('"', '""') + '"'
            ends[name] = int(
                conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {quoted}").fetchone()[0]
            )
        return ends
    finally:
        conn.close()


def lines_up(snapshot: str, restored: str) -> str | None:
    """None when the replica continues the snapshot's database, else why it does not."""
    try:
        old, new = table_ends(snapshot), table_ends(restored)
    except sqlite3.Error as exc:
        return f"cannot compare with the snapshot's copy: {exc}"
    for table, end in sorted(old.items()):
        if table not in new:
            return f"its LTX range does not line up with the snapshot's database (no table {table})"
        if new[table] < end:
            return (
                f"its LTX range does not line up with the snapshot's database (table "
                f"{table} ends at row {new[table]} in the replica, {end} in the snapshot)"
            )
    return None


def set_aside_database(path: str, aside: Aside, name: str) -> None:
    """The database at path, its side files and Litestream's state of it, set aside below
    litestream/<name>/ (the houses' databases share their file names)."""
    base = os.path.basename(path)
    for suffix in ("", *SIDE_FILES):
        set_aside(path + suffix, aside, os.path.join("litestream", name, base + suffix))
    meta = os.path.join(os.path.dirname(path), f".{base}-litestream")
    # Litestream's own state of the old life: not this one's
    set_aside(meta, aside, os.path.join("litestream", name, f".{base}-litestream"))


def restore_one(
    spec: dict, db: dict, snapshot_time: datetime.datetime | None, aside: Aside
) -> dict:
    path = db["path"]
    result = {
        "path": path,
        "name": db["name"],
        "used": "snapshot",
        "snapshot_time": snapshot_time.isoformat() if snapshot_time else None,
    }
    cost = (
        f"writes after the snapshot ({snapshot_time:%Y-%m-%d %H:%M:%S} UTC) are lost"
        if snapshot_time
        else "writes after the snapshot are lost"
    )
    if os.path.islink(path):  # restored from a backup its program's user wrote: not followed
        result["reason"] = f"{path} is a symlink: left alone"
        return result
    wanted = parse_time(spec.get("timestamp"))
    own = parse_time(spec.get("snapshot_time"))
    if wanted and own and wanted <= own:
        # The replica's LTX times trail its writes: restored to the snapshot's own time it
        # could be older than the snapshot's copy, which is the database at that point.
        result["reason"] = (
            f"the restore's point ({wanted:%Y-%m-%d %H:%M:%S} UTC) is not after the "
            "snapshot's own time: its copy is the database then"
        )
        result["cost"] = "nothing"
        if not os.path.exists(path):  # not in the snapshot: it did not exist then
            result["used"] = "none"
        return result
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o750, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".phoenix-litestream-", dir=folder)
    try:
        config = os.path.join(work, "litestream.yml")
        with open(config, "w", encoding="utf-8") as out:
            json.dump(db["config"], out)
        out_path = os.path.join(work, os.path.basename(path))
        argv = [
            spec["litestream"],
            "restore",
            "-config",
            config,
            "-o",
            out_path,
            "-integrity-check",
            "full",
            "-json",
        ]
        if spec.get("timestamp"):
            argv += ["-timestamp", spec["timestamp"]]
        env = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
        try:
            proc = subprocess.run(
                [*argv, path],
                capture_output=True,
                text=True,
                timeout=int(spec.get("timeout") or 600),
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            result["reason"] = f"the replica store did not answer within {spec.get('timeout')} s"
            return result
        if proc.returncode != 0:
            result["reason"] = explain(litestream_line(proc.stderr or proc.stdout))
            return result
        try:
            summary = json.loads(proc.stdout[proc.stdout.index("{") :])
        except ValueError:
            summary = {}
        result["txid"] = summary.get("txid")
        problem = integrity(out_path)
        if problem:
            result["reason"] = f"the replica is corrupt (integrity_check: {problem})"
            return result
        newest = newest_point(
            spec["litestream"], config, path, env, int(spec.get("timeout") or 600)
        )
        if wanted and newest:
            newest = min(newest, wanted)
        result["replica_time"] = newest.isoformat() if newest else None
        if os.path.exists(path):
            problem = lines_up(path, out_path)
            if problem:
                result["reason"] = problem
                return result
            if snapshot_time and newest and newest < snapshot_time and not wanted:
                result["reason"] = (
                    f"its newest point ({newest:%H:%M:%S}) is older than the "
                    f"snapshot ({snapshot_time:%H:%M:%S}): the snapshot's copy "
                    "is as new or newer"
                )
                result["cost"] = "nothing"
                return result
            st = os.stat(path)
            owner, mode = (st.st_uid, st.st_gid), st.st_mode & 0o7777
            set_aside_database(path, aside, db["name"])
        else:
            import pwd

            entry = pwd.getpwnam(db["user"])
            owner, mode = (entry.pw_uid, entry.pw_gid), 0o600
        os.chown(out_path, *owner)
        os.chmod(out_path, mode)
        os.replace(out_path, path)
        result["used"] = "replica"
        result.pop("reason", None)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if result["used"] == "snapshot" and "cost" not in result:
            result["cost"] = cost


def repositories_without_git(db: str, root: str) -> list[str]:
    """Gitea's repository rows whose bare repository is not on disk (made after the
    snapshot: the replica has the row, restic has no git data): listed, never dropped."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT owner_name, lower_name FROM repository").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []
    return [
        f"{owner}/{name}"
        for owner, name in rows
        if not os.path.isdir(os.path.join(root, (owner or "").lower(), f"{name}.git"))
    ]


def newest_avatar_of(uid: int, folder: str) -> str | None:
    """The name of the newest file in `folder` that is user `uid`'s avatar: Gitea 1.22 names
    one HashAvatar(uid, data), sha256 of "<uid>-" and the image (modules/avatar/hash.go); an
    image Gitea re-encoded does not prove itself so, and is not taken."""
    best: tuple[float, str] | None = None
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name)
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or len(name) != 64 or st.st_size > 1 << 20:
            continue
        with open(path, "rb") as handle:
            digest = hashlib.sha256(f"{uid}-".encode() + handle.read()).hexdigest()
        if digest == name and (best is None or st.st_mtime > best[0]):
            best = (st.st_mtime, name)
    return best[1] if best else None


def keep_avatars_with_files(db: str, snapshot_db: str, app_data: str) -> list[str]:
    """A user whose avatar was changed after the newest frequent snapshot has a row naming a
    file restic never saw: back to the newest avatar of theirs whose file is there, else the
    full snapshot's (the newer one is listed, the row never points at nothing). Gitea is not
    running yet; the file keeps its owner."""
    changed = []
    st = os.stat(db)
    try:
        conn = sqlite3.connect(db)
        conn.execute("ATTACH DATABASE ? AS snap", (f"file:{snapshot_db}?mode=ro",))
        rows = conn.execute(
            "SELECT u.id, u.lower_name, u.avatar, s.avatar, s.use_custom_avatar FROM user u "
            "JOIN snap.user s ON s.id = u.id WHERE u.use_custom_avatar = 1 "
            "AND coalesce(u.avatar, '') != coalesce(s.avatar, '')"
        ).fetchall()
        for uid, login, newer, older, older_custom in rows:
            if os.path.isfile(os.path.join(app_data, "avatars", newer or "-")):
                continue
            latest = newest_avatar_of(uid, os.path.join(app_data, "avatars"))
            if latest is not None and latest != older:
                conn.execute("UPDATE user SET avatar = ? WHERE id = ?", (latest, uid))
                changed.append(
                    f"{login}: the newest avatar whose file came back (the newer one's came "
                    "after the newest frequent snapshot)"
                )
            elif older and os.path.isfile(os.path.join(app_data, "avatars", older)):
                conn.execute(
                    "UPDATE user SET avatar = ?, use_custom_avatar = ? WHERE id = ?",
                    (older, older_custom, uid),
                )
                changed.append(
                    f"{login}: the avatar of the snapshot (the newer one's file came after it)"
                )
            else:
                changed.append(f"{login}: avatar {newer} has no file")
        conn.commit()
        conn.execute("DETACH DATABASE snap")
        conn.close()
    except sqlite3.Error as exc:
        return [f"avatars not checked: {exc}"]
    for suffix in ("-wal", "-shm", "-journal"):
        if os.path.exists(db + suffix):
            os.chown(db + suffix, st.st_uid, st.st_gid, follow_symlinks=False)
    return changed


def rows_without_files(db: str, app_data: str) -> list[dict]:
    """Attachments and LFS objects whose rows the replica has but whose files came after the
    snapshot: Gitea would answer 500 for them (routers/web/repo/attachment.go: the Open
    fails). Their rows are taken out and returned whole (the report keeps them): listed,
    never silently dropped."""
    found: list[dict] = []
    st = os.stat(db)
    try:
        conn = sqlite3.connect(db)
        conn.row_factory = sqlite3.Row
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        checks = []
        if "attachment" in tables:
            checks.append(
                (
                    "attachment",
                    "uuid",
                    lambda u: os.path.join(app_data, "attachments", u[0], u[1], u),
                )
            )
        if "lfs_meta_object" in tables:
            checks.append(
                (
                    "lfs_meta_object",
                    "oid",
                    lambda o: os.path.join(app_data, "lfs", o[0:2], o[2:4], o[4:]),
                )
            )
        for table, key, where in checks:
            for row in conn.execute(f"SELECT * FROM {table}").fetchall():  # noqa: S608
                if row[key] and not os.path.isfile(where(row[key])):
                    found.append({"table": table, **dict(row)})
                    conn.execute(f"DELETE FROM {table} WHERE id = ?", (row["id"],))  # noqa: S608
        conn.commit()
        conn.close()
    except sqlite3.Error as exc:
        return [{"error": f"attachments and LFS objects not checked: {exc}"}]
    for suffix in ("-wal", "-shm", "-journal"):
        if os.path.exists(db + suffix):
            os.chown(db + suffix, st.st_uid, st.st_gid, follow_symlinks=False)
    return found


def replay(config: dict, spec_path: str) -> dict:
    """Each database of SPEC (written by tasks/restore.py) brought from the snapshot's copy
    (in place) to its Litestream replica's point. SPEC: {"litestream": BINARY, "source": HOST,
    "repo_root", "app_data", "manifest": the snapshot's manifest.json, "timestamp": ISO|null
    (the restore's point; null: the replica's newest), "snapshot_time": ISO|null (the
    snapshot's own time, as the store has it), "timeout": S, "report": FILE, "dbs": [{"path",
    "name", "user", "config": Litestream's config for that one db}]}.

    A point not after the snapshot's own time (a snapshot restored by its id) is the
    snapshot's copy: Litestream is not asked, and nothing written after the snapshot comes
    back. Otherwise `litestream restore -integrity-check full` into a file beside the
    database (never over it); the replica is used only when it restored, passes PRAGMA
    integrity_check, lines up with the snapshot's copy (every table of the snapshot is
    there, and no table of the replica ends before the snapshot's: a replica of another
    database, or of an older life of this one, does not), and is at least as new as the
    snapshot; then the snapshot's copy is set aside and the replica's takes its place, same
    owner and mode. Else the snapshot's copy stays, and one line says which database, why,
    and what that costs. Never fails for a replica: the snapshot is the backstop."""
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    snapshot_time = None
    try:
        with open(spec["manifest"], encoding="utf-8") as handle:
            snapshot_time = parse_time(json.load(handle).get("created"))
    except (OSError, ValueError, KeyError):
        pass
    aside = Aside(config["aside_dir"])
    results = []
    for db in spec["dbs"]:
        had = os.path.exists(db["path"])
        # One folder per database: the houses' databases share their file names.
        result = restore_one(spec, db, snapshot_time, aside)
        if (
            not had
            and result["used"] == "snapshot"
            and "holds no replica" in result.get("reason", "")
        ):
            result["used"] = "none"  # in neither: a house that never made this database
        if result["used"] == "replica" and db["name"] == "gitea" and spec.get("repo_root"):
            result["repositories_without_git_data"] = repositories_without_git(
                db["path"], spec["repo_root"]
            )
        snapshot_copy = os.path.join(
            aside.folder if aside.used else "/nonexistent",
            "litestream",
            db["name"],
            os.path.basename(db["path"]),
        )
        if result["used"] == "replica" and db["name"] == "gitea" and os.path.isfile(snapshot_copy):
            # The rows that name files are checked once the newer files are in place
            # (`repositories`: rows_with_files), against this copy.
            result["snapshot_copy"] = snapshot_copy
        results.append(result)
        if result["used"] == "replica":
            print(
                f"{db['path']}: replica of {spec['source']} at "
                f"{result.get('replica_time') or '?'} (txid {result.get('txid')})"
            )
            missing = result.get("repositories_without_git_data")
            if missing:
                print(
                    f"{db['path']}: {len(missing)} repository row(s) newer than the "
                    f"snapshot have no git data on disk: {', '.join(missing[:10])}"
                )
        elif result["used"] == "snapshot":
            print(
                f"{db['path']}: replica not used: {result['reason']}; keeping the "
                f"snapshot's copy: {result['cost']}"
            )
    report = {
        "source": spec["source"],
        "timestamp": spec.get("timestamp"),
        "snapshot_time": snapshot_time.isoformat() if snapshot_time else None,
        "databases": results,
    }
    write_json(spec["report"], report)
    return report


# --- the repositories from the newest repository snapshot ------------------------------------


def job_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def keep_copy(db: str, aside: Aside, name: str) -> str:
    """A consistent copy of the database at db (SQLite's backup API) set aside below name/,
    before the database is changed in place."""
    fd, tmp = tempfile.mkstemp(prefix=".phoenix-copy-", dir=os.path.dirname(db))
    os.close(fd)
    try:
        source, target = sqlite3.connect(db, timeout=60), sqlite3.connect(tmp)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        os.chmod(tmp, 0o600)
        kept = set_aside(tmp, aside, os.path.join(name, os.path.basename(db)))
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    assert kept is not None  # a file always holds something
    return kept


def newer_repository_snapshot(
    line: ResticLine, snapshot: str, before: datetime.datetime | None = None
) -> dict | None:
    """The newest repository snapshot of `snapshot`'s host taken after it (and at or before
    `before`): {id, time}, or None."""
    rows = json.loads(
        line.restic("snapshots", "--json", snapshot, what=f"reading snapshot {snapshot[:8]}")
        or "[]"
    )
    if len(rows) != 1:
        raise RestoreError(f"no single snapshot {snapshot[:8]} in {line.job.location(line.config)}")
    full_time = line.time(rows[0]["time"])
    found = line.believable(
        json.loads(
            line.restic(
                "snapshots",
                "--json",
                "--host",
                rows[0]["hostname"],
                "--tag",
                line.config["repo_tag"],
                what="listing the repository snapshots",
            )
            or "[]"
        ),
    )
    newer = [dict(row, parsed=line.time(row["time"])) for row in found]
    newer = [
        row
        for row in newer
        if row["parsed"] > full_time and (before is None or row["parsed"] <= before)
    ]
    if not newer:
        return None
    best = max(newer, key=lambda row: row["parsed"])
    return {
        "id": best["id"],
        "time": best["parsed"].isoformat(),
        "full_time": full_time.isoformat(),
    }


def _repository_rows(db: str | None) -> set[str] | None:
    """owner/name (lower case) of gitea.db's repository rows; None without a readable db."""
    if not db or not os.path.isfile(db):
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute("SELECT owner_name, lower_name FROM repository").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return {f"{(owner or '').lower()}/{(name or '').lower()}" for owner, name in rows}


# A restored repository is hostile input (the old forge's user wrote it, config included): git
# runs as Gitea's user, not root, and runs no program its config or a promisor remote names.
GIT_OVERRIDES = (
    "core.fsmonitor=",
    "core.bare=true",
    "core.worktree=",
    "core.hooksPath=/dev/null",
    "core.sshCommand=false",
    "core.askPass=",
    "credential.helper=",
    "protocol.allow=never",
    "diff.external=",
    "core.pager=cat",
    "core.editor=false",
    "core.alternateRefsCommand=",
    "uploadpack.packObjectsHook=",
    "gpg.program=false",
)
GIT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/nonexistent",
    "LC_ALL": "C.UTF-8",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ALLOW_PROTOCOL": "",  # no transport at all, whatever protocol.*.allow says
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "GIT_NO_REPLACE_OBJECTS": "1",
    "GIT_OPTIONAL_LOCKS": "0",
}


def run_git(path: str, *args: str, owner: os.stat_result) -> subprocess.CompletedProcess:
    """git on the bare repository at path, hardened (see GIT_OVERRIDES), as `owner` (a stat
    of the repositories' root: Gitea's user) when this runs as root."""
    switch = []
    if os.geteuid() == 0 and owner.st_uid != 0:
        switch = [
            "setpriv",
            f"--reuid={owner.st_uid}",
            f"--regid={owner.st_gid}",
            "--clear-groups",
            "--",
        ]
    overrides = [arg for item in GIT_OVERRIDES for arg in ("-c", item)]
    return subprocess.run(
        [*switch, "git", "--no-pager", *overrides, f"--git-dir={path}", *args],
        env=GIT_ENV,
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )


def own_tree(path: str, uid: int, gid: int) -> None:
    """path and everything below it owned by uid:gid, never through a symlink: a restored tree
    holding a link or a special file is refused (RestoreError naming it) rather than followed."""
    entries = [path]
    for dirpath, dirnames, filenames in os.walk(path):
        entries += [os.path.join(dirpath, name) for name in dirnames + filenames]
    for entry in entries:
        st = os.lstat(entry)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "special file"
            raise RestoreError(
                f"{entry} is a {kind}: a restored repository holds only files and "
                "folders; refusing it"
            )
    for entry in entries:
        os.chown(entry, uid, gid, follow_symlinks=False)


def _git_sound(path: str, owner: os.stat_result) -> str | None:
    """None when every ref of the bare repository at path reaches its objects, else why not."""
    proc = run_git(
        path, "fsck", "--connectivity-only", "--no-dangling", "--no-progress", owner=owner
    )
    return None if proc.returncode == 0 else job_line(proc.stderr or proc.stdout)


def _git_branches(path: str, owner: os.stat_result) -> dict[str, tuple[str, str, int]] | None:
    """refs/heads of a bare repository: name -> (sha, subject, committer time); None when git
    cannot read them."""
    proc = run_git(
        path,
        "for-each-ref",
        "--format=%(refname:short)%00%(objectname)%00%(contents:subject)%00%(committerdate:unix)",
        "refs/heads",
        owner=owner,
    )
    if proc.returncode != 0:
        return None
    out = {}
    for line in proc.stdout.splitlines():
        name, sha, subject, when = (line.split("\0") + ["", "", "", "0"])[:4]
        out[name] = (sha, subject, int(when or 0))
    return out


def reconcile_branches(db: str | None, repo_root: str, aside: Aside) -> dict:
    """Gitea 1.22's branch table made to match the git data on disk, as Gitea's own
    SyncRepoBranchesWithRepo does (modules/repository/branch.go: a changed head is updated,
    a branch git does not have is marked deleted, one it lacks is added): after a restore the
    database may be newer than the repositories (its replica). Every change is listed with
    the row's old values, and the database is copied aside first. A database without the
    table (the lab's stand-in) has nothing to compare."""
    result: dict = {"compared": 0, "updated": [], "deleted": [], "added": [], "unread": []}
    if not db or not os.path.isfile(db):
        result["skipped"] = "no gitea.db"
        return result
    conn = sqlite3.connect(db, timeout=30)
    try:
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'branch'"
        ).fetchone():
            result["skipped"] = "gitea.db has no branch table"
            return result
        now = int(time.time())
        root_owner = os.stat(repo_root)
        changes: list[tuple[str, tuple]] = []
        for repo_id, owner, name in conn.execute(
            "SELECT id, owner_name, lower_name FROM repository"
        ).fetchall():
            path = os.path.join(repo_root, (owner or "").lower(), f"{name}.git")
            if not os.path.isdir(path):
                continue  # listed by the replica's restore (rows without git data)
            git = _git_branches(path, root_owner)
            if git is None:  # git could not read them: the rows stay, none is marked deleted
                result["unread"].append(f"{owner}/{name}")
                log(
                    f"branches: git cannot read the branches of {owner}/{name}; its rows are "
                    "left as they are"
                )
                continue
            rows = {
                r[1]: r
                for r in conn.execute(
                    "SELECT id, name, commit_id, is_deleted FROM branch WHERE repo_id = ?",
                    (repo_id,),
                ).fetchall()
            }
            full = f"{owner}/{name}"
            result["compared"] += len(rows)
            for branch, (sha, subject, when) in sorted(git.items()):
                row = rows.get(branch)
                if row is None:
                    changes.append(
                        (
                            "INSERT INTO branch (repo_id, name, commit_id, "
                            "commit_message, pusher_id, is_deleted, deleted_by_id, "
                            "deleted_unix, commit_time, created_unix, updated_unix) "
                            "VALUES (?, ?, ?, ?, 0, 0, 0, 0, ?, ?, ?)",
                            (repo_id, branch, sha, subject, when, now, now),
                        )
                    )
                    result["added"].append(f"{full} {branch} at {sha[:10]}")
                elif row[2] != sha:
                    changes.append(
                        (
                            "UPDATE branch SET commit_id = ?, commit_message = ?, "
                            "commit_time = ?, is_deleted = 0, updated_unix = ? "
                            "WHERE id = ?",
                            (sha, subject, when, now, row[0]),
                        )
                    )
                    result["updated"].append(
                        f"{full} {branch}: the database had "
                        f"{(row[2] or '')[:10]}, git has {sha[:10]}"
                    )
            for branch, row in sorted(rows.items()):
                if branch not in git and not row[3]:
                    changes.append(
                        (
                            "UPDATE branch SET is_deleted = 1, deleted_by_id = 0, "
                            "deleted_unix = ? WHERE id = ?",
                            (now, row[0]),
                        )
                    )
                    result["deleted"].append(
                        f"{full} {branch}: the database had "
                        f"{(row[2] or '')[:10]}, git has no such branch"
                    )
        if changes:
            result["database_before"] = keep_copy(db, aside, "branches")
            with conn:
                for sql, args in changes:
                    conn.execute(sql, args)
    finally:
        conn.close()
    for line in result["updated"] + result["deleted"] + result["added"]:
        log(f"branches: {line}")
    return result


DIFF_LINE = re.compile(r"^[-+MTU?]\s+/" + GITEA + r"/repositories/([^/]+/[^/]+\.git)(?:/|$)")
# restic diff names a folder gone from the newer snapshot on a line of its own: "-    /x/y/"
GONE_LINE = re.compile(r"^-\s+/" + GITEA + r"/repositories/([^/]+/[^/]+\.git)/$")


def snapshot_diff(line: ResticLine, full: str, newer: str) -> list[str] | None:
    """`restic diff` of the two snapshots (their trees only, nothing is downloaded); None when
    restic cannot say."""
    try:
        return line.restic("diff", full, newer, what="comparing the snapshots").splitlines()
    except RestoreError as exc:
        log(f"repositories: {exc}; restoring every repository and file")
        return None


def changed_repositories(lines: list[str] | None) -> tuple[list[str], list[str]] | None:
    """owner/name.git of each repository whose files differ between the two snapshots, and
    of each the newer one no longer has (deleted in between), from their diff's `lines`."""
    if lines is None:
        return None
    gone = sorted({m.group(1) for line in lines if (m := GONE_LINE.match(line))})
    return (
        sorted({m.group(1) for line in lines if (m := DIFF_LINE.match(line))} - set(gone)),
        gone,
    )


def _repositories_in(root: str) -> set[str]:
    """owner/name.git of the bare repositories below a repositories folder."""
    if not os.path.isdir(root):
        return set()
    return {
        f"{user}/{name}"
        for user in os.listdir(root)
        if os.path.isdir(os.path.join(root, user))
        for name in os.listdir(os.path.join(root, user))
        if name.endswith(".git") and os.path.isdir(os.path.join(root, user, name))
    }


def _has_row(rows: set[str] | None, rel: str) -> bool:
    """gitea.db (its owner/name rows, None: unreadable) has the row of repository rel (a
    wiki's is its repository's)."""
    user, _, name = rel.partition("/")
    base = name[: -len(".git")].removesuffix(".wiki")
    return rows is not None and f"{user.lower()}/{base.lower()}" in rows


def newer_repositories(
    line: ResticLine,
    snapshot: str,
    repo_root: str,
    *,
    db: str | None,
    aside: Aside,
    report: str,
    before: str | None = None,
    data_dir: str | None = None,
    paths: list[str] | None = None,
    databases: str | None = None,
    newer: bool = True,
) -> dict:
    """REPO_ROOT's repositories, and the other files (newer_files: Gitea's data folder, the
    extra `paths`), from the newest frequent snapshot after SNAPSHOT (see the module's
    docstring); then the rows that name files checked against them (rows_with_files, with the
    replay's report `databases`). The report says which snapshot, what moved, what was set
    aside."""
    limit = line.time(before) if before else None
    found = newer_repository_snapshot(line, snapshot, limit) if newer else None
    result: dict = {
        "full_snapshot": snapshot,
        "before": before,
        "snapshot": None,
        "replaced": [],
        "added": [],
        "kept_full": [],
        "set_aside": [],
        "without_row": [],
        "deleted_since_full": [],
    }
    if found is None:
        log(
            f"repositories: no repository snapshot after {snapshot[:8]}"
            + (f" and at or before {before}" if before else "")
            + ": the full snapshot's stay"
        )
        result["branches"] = reconcile_branches(db, repo_root, aside)
        result["rows"] = rows_with_files(db, data_dir, databases, aside)
        write_json(report, result)
        return result
    result.update(snapshot=found["id"], time=found["time"], full_time=found["full_time"])
    tmp = repo_root.rstrip("/") + ".newer-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, mode=0o700)
    try:
        lines = snapshot_diff(line, snapshot, found["id"])
        diff = changed_repositories(lines)
        changed, gone = diff if diff is not None else (None, None)
        result["changed"] = changed
        if changed == []:
            log(
                f"repositories: repository snapshot {found['id'][:8]} holds nothing the full "
                "snapshot does not"
            )
        else:  # only what changed (None: all of it) comes from the store a second time
            includes = [
                arg
                for rel in changed or []
                for arg in ("--include", f"/{GITEA}/repositories/{rel}")
            ]
            line.restic(
                "restore",
                found["id"],
                "--target",
                tmp,
                *includes,
                what=f"restoring repository snapshot {found['id'][:8]}",
            )
        src_root = os.path.join(tmp, GITEA, "repositories")
        os.makedirs(src_root, exist_ok=True)
        if gone is None:  # every repository came again: those it lacks were deleted since
            gone = sorted(_repositories_in(repo_root) - _repositories_in(src_root))
        rows = _repository_rows(db)
        owner = os.stat(repo_root)
        own_tree(tmp, owner.st_uid, owner.st_gid)  # git reads it as Gitea's user (run_git)
        for user in sorted(os.listdir(src_root)):
            for name in sorted(os.listdir(os.path.join(src_root, user))):
                rel = f"{user}/{name}"
                src, dest = os.path.join(src_root, user, name), os.path.join(repo_root, user, name)
                if not name.endswith(".git") or not os.path.isdir(src):
                    continue
                base = name[: -len(".git")].removesuffix(".wiki")
                if (
                    not os.path.isdir(dest)
                    and rows is not None
                    and f"{user.lower()}/{base.lower()}" not in rows
                ):
                    kept = set_aside(src, aside, f"repositories/without-row/{rel}")
                    result["without_row"].append(rel)
                    log(f"repositories: {rel} has no row in gitea.db; set aside in {kept}")
                    continue
                why = _git_sound(src, owner)
                if why is not None:
                    result["kept_full"].append(f"{rel}: {why}")
                    log(
                        f"repositories: {rel} from {found['id'][:8]} is not sound ({why}); "
                        "keeping the full snapshot's copy"
                    )
                    continue
                old = set_aside(dest, aside, f"repositories/full-snapshot/{rel}")
                if old is not None:
                    result["set_aside"].append(old)
                    result["replaced"].append(rel)
                else:
                    result["added"].append(rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.chown(os.path.dirname(dest), owner.st_uid, owner.st_gid)
                move_in(src, dest)  # an empty folder left there is replaced, never filled
                own_tree(dest, owner.st_uid, owner.st_gid)
        # Deleted between the full snapshot and the newer one: the full one's copy is set
        # aside, never deleted, unless gitea.db (its newest point) still has the row.
        for rel in gone:
            dest = os.path.join(repo_root, rel)
            if not os.path.isdir(dest):
                continue
            if _has_row(rows, rel):
                result["kept_full"].append(
                    f"{rel}: not in {found['id'][:8]}, but gitea.db still has its row"
                )
                log(
                    f"repositories: {rel} is gone from {found['id'][:8]} but gitea.db still "
                    "has its row; keeping the full snapshot's copy"
                )
                continue
            kept = set_aside(dest, aside, f"repositories/deleted-since-full/{rel}")
            result["deleted_since_full"].append(rel)
            log(
                f"repositories: {rel} was deleted before repository snapshot "
                f"{found['id'][:8]} and gitea.db has no row for it; set aside in {kept}"
            )
        result["files"] = newer_files(
            line, snapshot, found["id"], lines, data_dir=data_dir, paths=paths or [], aside=aside
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["branches"] = reconcile_branches(db, repo_root, aside)
    result["rows"] = rows_with_files(db, data_dir, databases, aside)
    write_json(report, result)
    log(
        f"repositories: {len(result['replaced'])} replaced and {len(result['added'])} added "
        f"from repository snapshot {found['id'][:8]} ({found['time']}); full snapshot's "
        f"copies set aside in {aside.folder if aside.used else '(none)'}"
        + (
            f"; {len(result['kept_full'])} kept from the full snapshot"
            if result["kept_full"]
            else ""
        )
        + (
            f"; {len(result['deleted_since_full'])} deleted since the full snapshot, set aside"
            if result["deleted_since_full"]
            else ""
        )
    )
    return result


# --- the other files of the newest frequent snapshot ----------------------------------------

WRITE_ONCE = ("attachments", "lfs", "packages")  # read in place by the job (IN_PLACE)
IN_PLACE = "in-place.json"
LITESTREAM_STATE = re.compile(r"(^|/)\.[^/]+-litestream/")
CHANGE_LINE = re.compile(r"^([-+MTU?])\s+(/.*[^/])$")  # a file's line, never a folder's


def _is_database(path: str) -> bool:
    """path is a SQLite database or one of its side files: Litestream's, never a file's."""
    base = path[: path.rindex("-")] if path.endswith(SIDE_FILES) else path
    try:
        with open(base, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _below(path: str, roots: list[str]) -> str | None:
    """The root of `roots` path lies below (normalized, no '..'), or None."""
    norm = os.path.normpath(path)
    if norm != path.rstrip("/") or "/../" in path + "/":
        return None
    return next((r for r in roots if norm.startswith(r.rstrip("/") + "/")), None)


def _make_parents(dest: str, root: str) -> None:
    """dest's missing folders below root made with root's owner and mode (Gitea's user keeps
    writing there); refused when an existing one is a symlink: nothing is followed."""
    rel = os.path.relpath(os.path.dirname(dest), root)
    at, st = root, os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        raise RestoreError(f"{root} is not a folder: refusing to restore into it")
    for part in [] if rel == "." else rel.split(os.sep):
        at = os.path.join(at, part)
        try:
            mode = os.lstat(at).st_mode
        except FileNotFoundError:
            os.mkdir(at, stat.S_IMODE(st.st_mode))
            os.chown(at, st.st_uid, st.st_gid)
            continue
        if not stat.S_ISDIR(mode):
            raise RestoreError(f"{at} is not a folder (a symlink?): refusing to restore through it")


def _in_place_folders(line: ResticLine, newer: str) -> dict[str, str]:
    """The write-once folders the job read in place for snapshot `newer` (name -> absolute
    path inside it); {} for a snapshot without the list. Hostile input: only known names and
    plain absolute paths."""
    try:
        text = line.restic("dump", newer, f"/{GITEA}/{IN_PLACE}", what="reading its file list")
        found = json.loads(text or "{}")
    except (RestoreError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {
        name: path
        for name, path in found.items()
        if name in WRITE_ONCE
        and isinstance(path, str)
        and path.startswith("/")
        and os.path.normpath(path) == path
    }


def newer_files(
    line: ResticLine,
    full: str,
    newer: str,
    lines: list[str] | None,
    *,
    data_dir: str | None,
    paths: list[str],
    aside: Aside,
) -> dict:
    """Gitea's data folder and the extra folders (`paths`) from frequent snapshot `newer`:
    every file that differs from the full snapshot (restic diff `lines`) and every write-once
    file (attachments, LFS, packages) the host lacks. What they replace, and files the newer
    snapshot no longer has, are set aside; databases (Litestream's) are never touched."""
    result: dict = {"replaced": [], "added": [], "deleted_since_full": [], "refused": []}
    wanted: dict[str, tuple[str, str]] = {}  # path in the snapshot -> (destination, its root)
    gone: dict[str, tuple[str, str]] = {}
    roots = {r.rstrip("/") for r in paths if r.startswith("/")}
    data_prefix = f"/{GITEA}/data/"
    has_data = lines is not None and f"-    {data_prefix}" not in lines
    has_files = lines is not None and "-    /files/" not in lines
    for entry in lines or []:
        m = CHANGE_LINE.match(entry)
        if not m:
            continue
        what, path = m.groups()
        if path.startswith(data_prefix) and data_dir and has_data:
            rel = path[len(data_prefix) :]
            if rel.split("/", 1)[0] in WRITE_ONCE or _below("/" + rel, ["/"]) is None:
                continue
            if LITESTREAM_STATE.search(rel):  # another host's: Litestream here makes its own
                continue
            dest, root = os.path.join(data_dir, rel), data_dir
        elif path.startswith("/files/") and has_files:
            dest = path[len("/files") :]
            below = _below(dest, sorted(roots))
            if below is None:
                continue
            root = below
        else:
            continue
        (gone if what == "-" else wanted)[path] = (dest, root)
    in_place = _in_place_folders(line, newer) if data_dir else {}
    for name, where in sorted(in_place.items()):
        assert data_dir is not None  # in_place is empty without it
        out = line.restic("ls", "--json", "--recursive", newer, where, what=f"listing its {name}")
        for raw in out.splitlines():
            try:
                node = json.loads(raw)
            except ValueError:
                continue
            path = node.get("path") or ""
            if node.get("type") != "file" or _below(path, [where]) is None:
                continue
            dest = os.path.join(data_dir, name, path[len(where) + 1 :])
            if not os.path.lexists(dest):  # written once: one the host has is the same file
                wanted[path] = (dest, data_dir)
    tmp = (data_dir or "/var/lib/phoenix").rstrip("/") + ".newer-files-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, mode=0o700)
    try:
        if wanted:
            includes = [arg for path in sorted(wanted) for arg in ("--include", path)]
            line.restic(
                "restore", newer, "--target", tmp, *includes, what=f"restoring {newer[:8]}'s files"
            )
        for path, (dest, root) in sorted(wanted.items()):
            src = tmp + path
            if not os.path.lexists(src) or not stat.S_ISREG(os.lstat(src).st_mode):
                result["refused"].append(f"{path}: not a regular file in {newer[:8]}")
                continue
            if os.path.lexists(dest) and _is_database(dest):
                continue
            _make_parents(dest, root)
            old = set_aside(dest, aside, os.path.join("newer-files", dest.lstrip("/")))
            result["replaced" if old else "added"].append(dest)
            parent = os.stat(os.path.dirname(dest))
            shutil.move(src, dest)
            os.chown(dest, parent.st_uid, parent.st_gid, follow_symlinks=False)
        for _path, (dest, _root) in sorted(gone.items()):
            if not os.path.isfile(dest) or os.path.islink(dest) or _is_database(dest):
                continue
            set_aside(dest, aside, os.path.join("newer-files", "deleted-since-full", dest[1:]))
            result["deleted_since_full"].append(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(
        f"files: {len(result['replaced'])} replaced and {len(result['added'])} added from "
        f"frequent snapshot {newer[:8]}; {len(result['deleted_since_full'])} deleted since the "
        "full snapshot, set aside"
    )
    return result


def rows_with_files(db: str | None, data_dir: str | None, databases: str | None, aside: Aside):
    """Once every file is back: a write-once file gitea.db has no row for is set aside and
    listed, and (when gitea.db came from its replica) a row whose file did not come back is
    taken out into the report, an avatar whose file did not goes back to the snapshot's."""
    out: dict = {"files_without_row": [], "rows_without_files": [], "avatars": []}
    if not db or not data_dir or not os.path.isfile(db):
        return out
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        uuids = (
            {r[0] for r in conn.execute("SELECT uuid FROM attachment")}
            if "attachment" in tables
            else None
        )
        oids = (
            {r[0] for r in conn.execute("SELECT oid FROM lfs_meta_object")}
            if "lfs_meta_object" in tables
            else None
        )
        conn.close()
    except sqlite3.Error as exc:
        out["error"] = f"files not checked against gitea.db: {exc}"
        return out
    for name, keys, key_of in (
        ("attachments", uuids, lambda rel: os.path.basename(rel)),
        ("lfs", oids, lambda rel: rel.replace("/", "")),
    ):
        top = os.path.join(data_dir, name)
        if keys is None or not os.path.isdir(top):
            continue
        for dirpath, _dirs, filenames in os.walk(top):
            for filename in filenames:
                path = os.path.join(dirpath, filename)
                if key_of(os.path.relpath(path, top)) in keys:
                    continue
                kept = set_aside(path, aside, os.path.join("without-row", path.lstrip("/")))
                out["files_without_row"].append(path)
                log(f"files: {path} has no row in gitea.db; set aside in {kept}")
    report = _report(databases) or {}
    gitea: dict = next((d for d in report.get("databases", []) if d.get("name") == "gitea"), {})
    if gitea.get("used") == "replica" and gitea.get("snapshot_copy"):
        out["avatars"] = keep_avatars_with_files(db, gitea["snapshot_copy"], data_dir)
        for said in out["avatars"]:
            log(f"{db}: {said}")
        out["rows_without_files"] = rows_without_files(db, data_dir)
        for row in out["rows_without_files"]:
            log(
                f"{db}: {row.get('table')} {row.get('uuid') or row.get('oid')} "
                f"({row.get('name') or row.get('size') or row.get('error')}): its file came "
                "after the newest frequent snapshot; the row is in the report, not in the forge"
            )
    return out


def regenerate(config: dict) -> dict:
    """Gitea's hooks and authorized_keys rewritten for this host, as its run user."""
    user = pwd.getpwnam(config["user"])
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "USER": user.pw_name,
        "HOME": user.pw_dir,
        "GITEA_WORK_DIR": config["work_dir"],
    }
    # Gitea refuses to run as another user than RUN_USER: root switches to it (util-linux)
    switch = [] if os.getuid() == user.pw_uid else ["runuser", "-u", user.pw_name, "--"]
    for what in ("hooks", "keys"):
        proc = subprocess.run(
            [
                *switch,
                config["gitea_binary"],
                "--config",
                config["app_ini"],
                "admin",
                "regenerate",
                what,
            ],
            cwd=config["work_dir"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            raise RestoreError(f"gitea admin regenerate {what} failed: {last}")
    cut(config, "regenerated")
    return {"regenerated": ["hooks", "keys"]}


def _report(path: str | None) -> dict | None:
    """A report this restore wrote (the deploy removes the last one's first), or None."""
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def record(plan_path: str, out: str) -> dict:
    """OUT: PLAN's source, label, origin and lacks, and `point`: the snapshot, how far the
    replay went (`until`, None: the newest), and where the databases and the repositories
    came from, as their reports say (a replica not used, or no repository snapshot: the
    backup's copy, and why)."""
    with open(plan_path, encoding="utf-8") as handle:
        plan = json.load(handle)
    reports = plan.get("reports") or {}
    # No report: no replica was replayed, every database is the backup's
    replayed = _report(reports.get("databases"))
    each = {}
    for db in (replayed or {}).get("databases", []):
        if db.get("used") == "replica":
            each[db["name"]] = {"from": "replica", "time": db.get("replica_time")}
        elif db.get("used") == "none":
            each[db["name"]] = {"from": "none"}
        else:
            each[db["name"]] = {"from": "backup", "why": db.get("reason")}
    databases = {
        "replayed": replayed is not None,
        "up_to": (replayed or {}).get("timestamp"),  # None: the replicas' newest
        "each": each,
    }
    repositories: dict = {"from": "backup"}
    taken = _report(reports.get("repositories"))
    if taken is not None and taken.get("snapshot"):
        repositories = {
            "from": "repository snapshot",
            "id": taken["snapshot"],
            "time": taken.get("time"),
        }
    elif taken is not None:
        before = taken.get("before")
        repositories["why"] = "no repository snapshot after it" + (
            f" and at or before {before}" if before else ""
        )
    # Gitea's data folder and the houses' files come from the same frequent snapshot
    moved = (taken or {}).get("files") or {}
    rows = (taken or {}).get("rows") or {}
    files = {
        **repositories,
        **{key: len(moved.get(key) or []) for key in ("replaced", "added", "deleted_since_full")},
        "rows_without_files": len(rows.get("rows_without_files") or []),
        "files_without_row": len(rows.get("files_without_row") or []),
    }
    done = {
        **{key: plan.get(key) for key in ("source", "label", "origin", "lacks")},
        "point": {
            "snapshot": plan.get("snapshot"),
            "until": plan.get("until"),
            "databases": databases,
            "repositories": repositories,
            "files": files,
        },
    }
    tmp = out + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(done, handle, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, out)
    said = {"replica": "its replica's point", "backup": "the backup's", "none": "none"}
    dbs = ", ".join(
        f"{name} {said[v['from']]}" + (f" {v['time']}" if v.get("time") else "")
        for name, v in sorted(each.items())
    )
    log(
        f"restored {plan.get('label')}"
        + (f" up to {plan['until']}" if plan.get("until") else "")
        + f"; databases: {dbs or said['backup']}; repositories and files: "
        + (
            f"repository snapshot {repositories['id'][:8]} of {repositories.get('time')}"
            if repositories["from"] == "repository snapshot"
            else said["backup"]
        )
    )
    return done


def prune(config: dict, keep_days: float, current: str | None, *, dry: bool = False) -> dict:
    """What restores set aside (aside_dir/<UTC time>/) and staged (staging_dir/<id>/) more than
    `keep_days` ago, removed (only named when `dry`); the staging folder of `current` kept
    whatever its age. Ages come from the folders' names and mtimes, which this tool wrote,
    never from what a backup holds."""
    limit = datetime.datetime.now(UTC) - datetime.timedelta(days=keep_days)
    removed: list[str] = []
    for root, pattern in ((config["aside_dir"], STAMP), (config["staging_dir"], STAGE)):
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for entry in entries:
            if not pattern.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
                continue
            if entry.name == current:
                continue
            if pattern is STAMP:
                when = datetime.datetime.strptime(entry.name[:16], "%Y%m%dT%H%M%SZ")
                when = when.replace(tzinfo=UTC)
            else:
                when = datetime.datetime.fromtimestamp(entry.stat().st_mtime, UTC)
            if when < limit:
                if not dry:
                    shutil.rmtree(entry.path)
                    log(f"removed {entry.path}: older than {keep_days:g} days (restore_keep_days)")
                removed.append(entry.path)
    return {"due" if dry else "removed": removed}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phoenix-restore", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    staged = sub.add_parser("stage", help="restic snapshot ID's Gitea folder to DEST")
    staged.add_argument("snapshot")
    staged.add_argument("dest")
    sub.add_parser(
        "apply", help="set aside what is there, put the staged backup in place"
    ).add_argument("unpacked")
    sub.add_parser("replay", help="the databases to their replicas' point").add_argument("spec")
    newer = sub.add_parser("repositories", help="the newest frequent snapshot's files")
    newer.add_argument("snapshot")
    newer.add_argument("--report", required=True)
    newer.add_argument("--before")
    newer.add_argument("--databases", help="the replay's report (gitea.db's point)")
    newer.add_argument("--full-only", action="store_true", help="no frequent snapshot: checks")
    sub.add_parser("regenerate", help="gitea admin regenerate hooks and keys")
    keys = sub.add_parser("host-keys", help="the backup's SSH host keys checked and staged")
    keys.add_argument("unpacked")
    keys.add_argument("dest")
    keys.add_argument("--public-only", action="store_true")
    sub.add_parser(
        "install-host-keys", help="the staged host keys in place of the host's"
    ).add_argument("dest")
    recorded = sub.add_parser("record", help="what was restored, each kind from which point")
    recorded.add_argument("plan")
    recorded.add_argument("out")
    pruned = sub.add_parser("prune", help="what restores set aside or staged, past its days")
    pruned.add_argument("--keep-days", type=float, required=True)
    pruned.add_argument("--current")
    pruned.add_argument("--dry-run", action="store_true", help="name what is due, remove nothing")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.command)
        if args.command == "stage":
            ResticLine(config).stage(args.snapshot, args.dest)
            done = {"staged": args.dest}
        elif args.command == "apply":
            done = apply(config, args.unpacked)
        elif args.command == "replay":
            done = replay(config, args.spec)
        elif args.command == "repositories":
            done = newer_repositories(
                ResticLine(config),
                args.snapshot,
                config["repo_root"],
                db=config["db_path"],
                aside=Aside(config["aside_dir"]),
                report=args.report,
                before=args.before,
                data_dir=config.get("data_dir"),
                paths=config.get("paths") or [],
                databases=args.databases,
                newer=not args.full_only,
            )
        elif args.command == "record":
            done = record(args.plan, args.out)
        elif args.command == "prune":
            done = prune(config, args.keep_days, args.current, dry=args.dry_run)
        elif args.command == "host-keys":
            done = host_keys(config, args.unpacked, args.dest, public_only=args.public_only)
        elif args.command == "install-host-keys":
            done = install_host_keys(config, args.dest)
        else:
            done = regenerate(config)
    except (RestoreError, OSError, ValueError) as exc:
        log(f"FAILED: {exc}")
        return 1
    if args.command != "replay":  # replay prints one line per database
        print(json.dumps(done, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
