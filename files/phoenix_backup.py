#!/usr/bin/python3
"""Phoenix's backup job, on the forge host: a consistent copy of the forge, sealed, offsite.

Debian 12's python3 standard library and restic only; one file, shipped by tasks/backups.py,
configured by /etc/phoenix-backup/config.json (written by the same task), run hourly by
phoenix-backup.timer.

    phoenix-backup [--config FILE] run                  the backup (what the timer runs)
    phoenix-backup [--config FILE] restic ARGS...       restic with this host's repository
    phoenix-backup [--config FILE] prestage             a warm standby's scheduled refresh
    phoenix-backup [--config FILE] repositories         the repositories alone (their timer)

A restore reaches the store through this file too: files/phoenix_restore.py loads it as a
module (`restic`, `restore`: a snapshot's folders staged), so there is one restic line.

`run`: (1) the staging folder becomes a copy of the forge: gitea.db through SQLite's online
backup API (never a copy of the live file); repositories/ (each repository's refs copied
before its objects, so every copied ref finds its objects: crash-consistent), custom/, and
data/ (Gitea's APP_DATA_PATH: attachments, avatars, LFS, packages, jwt/… without what Gitea
rebuilds, `exclude`: sessions, queues, indexers, tmp) mirrored (unchanged files are kept, so
restic skips them; what is never rewritten, git objects and the write-once folders
attachments, LFS, packages, is hard-linked: no disk, and a one-line count of the files copied
where the kernel refused a link); app.ini beside
them (it holds the forge's secrets: the restore carries them over); the folders of `paths`
below files/<their absolute path>; (2) the Gitea folder is
sealed with the manifest of phoenix-backup-verify (counts, checksums, refs: the format a
restore verifies); (3) `restic backup` of the staging folder; (4) the last success (time,
snapshot id) is written to the status file for monitoring; (5) only when the config has a
keep-* policy (a store without the append-only endpoint): `restic forget --prune`. Before
(3), `restic unlock` clears what a run cut off mid-backup left (locks stay deletable through
the append-only endpoint). Any failure: one line on stderr (the journal) and a non-zero exit.

`repositories` (from its own timer, every frequent_snapshot_interval less
frequent_snapshot_run_budget seconds; the status file records each run's length): every file
that changes between full snapshots, in a staging folder of its own, sent through the same
restic line tagged `repo_tag`: repositories/ (crash-consistent as above), Gitea's data folder
but for the database Litestream streams and what Gitea rebuilds, its write-once folders
(attachments, LFS, packages) read by restic in place, and the folders of `paths` without their
SQLite databases (the houses' memories, skills, cron output). Unchanged files are skipped, so
a run costs a walk of the trees and what is new; a restore takes them from there
(files/phoenix_restore.py `repositories`).

restic reads the password from a 0600 file. The store is reached with ssh, its host key
pinned: by default through its append-only endpoint (`rclone_program`: this host's key is
forced to `rclone serve restic --stdio --append-only` there, so nothing can be deleted or
overwritten from here; retention runs on the store), else over SFTP. S3 credentials come from
a 0600 env file. Nothing secret is on a command line.

`alert_url_file` (optional, a 0600 file holding the operator's alert URL, healthchecks-style):
each `run` and `repositories` ends with a ping there, POST URL with what was saved, or POST
URL/fail with the one line that says why it failed; a missed ping is how the operator learns
that the timer stopped. A ping that fails is logged (never the URL) and changes nothing.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence

DEFAULT_CONFIG = "/etc/phoenix-backup/config.json"
GITEA = "gitea"  # the manifest folder inside the staging folder (and the snapshot)
FILES = "files"  # app.ini and the extra folders, below their absolute paths
RCLONE_ARGS = "serve restic --stdio --append-only"  # what an append-only channel asks for

# restic >= 0.17 exits 10/11/12; Debian 12's 0.14 exits 1 for all and only its stderr tells.
RESTIC_FAILURES = [
    ("wrong-password", 12, re.compile(r"wrong password or no key found")),
    (
        "no-repository",
        10,
        re.compile(
            r"Is there a repository at the following location\?|"
            r"unable to open config file|repository does not exist"
        ),
    ),
    ("locked", 11, re.compile(r"repository is already locked")),
    (
        "host-key",
        None,
        re.compile(
            r"Host key verification failed|REMOTE HOST IDENTIFICATION "
            r"HAS CHANGED|No \S+ host key is known"
        ),
    ),
    (
        "unreachable",
        None,
        re.compile(
            r"Connection refused|Connection timed out|No route to host|Network is unreachable|"
            r"Could not resolve hostname|Permission denied \(publickey|Connection closed by|"
            r"unable to start the sftp session|subprocess ssh:|dial tcp|no such host|"
            r"Connection reset|connection lost|ssh command exited|server not responding"
        ),
    ),
]


class JobError(Exception):
    """An expected failure; the message is the one line the journal shows."""


def classify(returncode: int, stderr: str) -> str | None:
    """What a failed restic run means: one of the RESTIC_FAILURES kinds, or None (unknown).
    phoenix/restic.py (the operator's side) loads this file and uses this same function."""
    if returncode == 0:
        return None
    for kind, code, _pattern in RESTIC_FAILURES:
        if code is not None and returncode == code:
            return kind
    for kind, _code, pattern in RESTIC_FAILURES:
        if pattern.search(stderr):
            return kind
    return None


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def explain(kind: str | None, stderr: str, location: str) -> str:
    return {
        "wrong-password": f"wrong password for the restic repository {location}",
        "no-repository": f"no restic repository at {location}: run `phoenix backup init`",
        "locked": f"the restic repository {location} is locked by another run: "
        + next(
            (line.strip() for line in stderr.splitlines() if "locked" in line),
            "see `restic list locks`",
        ),
        "host-key": f"the store of {location} answered with a host key other than the pinned "
        "one (backup_known_hosts): refusing to connect",
        "unreachable": f"cannot reach the store of {location}: {last_line(stderr)}",
    }.get(kind or "", f"restic failed at {location}: {last_line(stderr)}")


def log(message: str) -> None:
    print(f"phoenix-backup: {message}", file=sys.stderr, flush=True)


# --- configuration and restic --------------------------------------------------------------


def load_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot read the configuration {path}: {exc}") from None
    for key in (
        "repository",
        "password_file",
        "staging_dir",
        "status_file",
        "host",
        "tag",
        "repo_tag",
    ):
        if not config.get(key):
            raise JobError(f"{path} has no {key!r}: converge the host again (tasks/backups.py)")
    return config


def restic_env(config: dict) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LC_ALL": "C.UTF-8",
        "RESTIC_REPOSITORY": config["repository"],
        "RESTIC_PASSWORD_FILE": config["password_file"],
        "RESTIC_CACHE_DIR": config.get("cache_dir") or "/var/cache/phoenix-backup",
    }
    credentials = config.get("credentials_file")
    if credentials:  # KEY=VALUE lines (S3), 0600; read here so they never reach an argv
        with open(credentials, encoding="utf-8") as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep and not key.startswith("#"):
                    env[key.strip()] = value.strip()
    return env


def restic_argv(config: dict, *args: str) -> list[str]:
    argv = ["restic"]
    if config.get("sftp_command"):
        argv += ["-o", f"sftp.command={config['sftp_command']}"]
    if config.get("rclone_program"):
        # The append-only endpoint: ssh to the store, where this host's key may only run
        # `rclone serve restic --stdio --append-only` on the repository (its forced command);
        # what restic asks for after the program is ignored there, so it cannot ask for more.
        argv += [
            "-o",
            f"rclone.program={config['rclone_program']}",
            "-o",
            f"rclone.args={RCLONE_ARGS}",
        ]
    return argv + list(args)


def location(config: dict) -> str:
    if config.get("location"):
        return config["location"]
    return re.sub(r"//[^/@]*@", "//", config["repository"])  # no credentials in a URL


def restic(config: dict, *args: str, what: str, cwd: str | None = None) -> str:
    os.makedirs(restic_env(config)["RESTIC_CACHE_DIR"], mode=0o700, exist_ok=True)
    proc = subprocess.run(
        restic_argv(config, *args),
        env=restic_env(config),
        text=True,
        capture_output=True,
        cwd=cwd,
        check=False,
    )
    if proc.returncode != 0:
        kind = classify(proc.returncode, proc.stderr)
        if kind is None and store_answers(config) is False:
            # restic's words for a store lost mid-run vary with the backend (over rclone:
            # "unable to create lock in backend"); a store that does not answer now says it.
            kind = "unreachable"
        raise JobError(f"{what} failed: {explain(kind, proc.stderr, location(config))}")
    return proc.stdout or ""


def store_answers(config: dict, timeout: float = 5.0) -> bool | None:
    """Whether the SSH store's sshd answers now (None: not an SSH store, or no host found)."""
    match = re.match(
        r"sftp:(?://)?(?:[^@/]+@)?(\[[^\]]+\]|[^:/]+)(?::(\d+)(?=/))?",
        config.get("location") or config.get("repository", ""),
    )
    if not match:
        return None
    host = match.group(1).strip("[]")
    port = match.group(2)
    if port is None:
        found = re.search(
            r"(?:^|\s)-p\s*(\d+)", config.get("rclone_program") or config.get("sftp_command") or ""
        )
        port = found.group(1) if found else "22"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4) == b"SSH-"
    except OSError:
        return False


# --- the consistent copy ---------------------------------------------------------------------


def _same(src: os.stat_result, dest: os.stat_result) -> bool:
    return (src.st_ino == dest.st_ino and src.st_dev == dest.st_dev) or (
        src.st_size == dest.st_size
        and src.st_mtime_ns == dest.st_mtime_ns
        and stat.S_IMODE(src.st_mode) == stat.S_IMODE(dest.st_mode)
    )


def _same_dir_stat(src: str, dest: str) -> None:
    """Owner, mode and mtime of a folder, set only when they differ: setting them changes its
    ctime, and restic would store a new tree for every folder at every run."""
    want, have = os.stat(src), os.stat(dest)
    if (want.st_uid, want.st_gid) != (have.st_uid, have.st_gid):
        os.chown(dest, want.st_uid, want.st_gid)
    if stat.S_IMODE(want.st_mode) != stat.S_IMODE(have.st_mode):
        os.chmod(dest, stat.S_IMODE(want.st_mode))
    if want.st_mtime_ns != have.st_mtime_ns:
        os.utime(dest, ns=(want.st_atime_ns, want.st_mtime_ns))


def _replace_with(src: str, dest: str, st: os.stat_result, *, link: bool) -> str | None:
    """dest becomes src (a hard link, or a copy); never written in place, as dest may be a
    hard link to a live file. With `link`, returns None when the link was made, else why the
    kernel refused it (the file was copied instead)."""
    tmp = f"{dest}.phoenix-tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    refused = None
    if link:
        try:  # link(2) itself: a symlink put in src's place since its lstat is not followed
            os.link(src, tmp, follow_symlinks=False)
            os.replace(tmp, dest)
            return None
        except OSError as exc:  # EXDEV: another filesystem, or another mount in a sandbox
            refused = _errno_name(exc)
    shutil.copy2(src, tmp, follow_symlinks=False)
    os.chown(tmp, st.st_uid, st.st_gid, follow_symlinks=False)
    os.replace(tmp, dest)
    return refused


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def _never_rewritten(rel: str, write_once: Sequence[str]) -> bool:
    """rel (below a mirrored folder) is written once and never in place: a git object or pack
    (git writes them so), or a file below one of the `write_once` folders."""
    parts = os.path.normpath(rel).split(os.sep)
    return "objects" in parts[:-1] or (len(parts) > 1 and parts[0] in write_once)


def _link_over(src: str, dest: str) -> str | None:
    """dest (a copy of src) becomes a hard link to it; None when done, else why not (dest is
    then left as it is)."""
    tmp = f"{dest}.phoenix-tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        os.link(src, tmp, follow_symlinks=False)
    except OSError as exc:
        return _errno_name(exc)
    os.replace(tmp, dest)
    return None


def links_work(src_file: str, dest_dir: str) -> bool:
    """Whether the kernel links src_file into dest_dir: same filesystem is not enough, as two
    mounts of one filesystem (a sandbox's ReadWritePaths) refuse link(2) with EXDEV."""
    probe = os.path.join(dest_dir, ".phoenix-link-probe")
    if os.path.lexists(probe):
        os.unlink(probe)
    try:
        os.link(src_file, probe, follow_symlinks=False)
    except OSError:
        return False
    os.unlink(probe)
    return True


SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _is_sqlite(path: str) -> bool:
    try:
        with open(path, "rb") as src:
            return src.read(16) == SQLITE_HEADER
    except OSError:
        return False


def _database_file(path: str) -> bool:
    """path is a SQLite database or one of its -wal/-shm/-journal files."""
    if path.endswith(SQLITE_SIDE_FILES):
        return _is_sqlite(path[: path.rindex("-")])
    return _is_sqlite(path)


def mirror(
    src: str,
    dest: str,
    exclude: frozenset[str] = frozenset(),
    *,
    skip: Sequence[str] = (),
    sqlite: bool = False,
    leave_databases: bool = False,
    refuse_links: bool = False,
    write_once: Sequence[str] = (),
    links: dict | None = None,
) -> int:
    """dest becomes an exact copy of the folder src but for the `exclude` paths (relative to
    src); returns the number of files written. Unchanged files stay untouched, so restic's
    change detection skips them. A folder's files come before its subfolders, and `objects`
    comes last: a git repository's HEAD, packed-refs and refs/ are copied before the objects
    they name, so objects written meanwhile are extra, never missing. Paths below src that
    match a regex of `skip` are left out too (folders as "name/"). With `sqlite`, a SQLite
    database goes through SQLite's online backup API (its -wal/-shm are left out): a live
    program's database is copied consistent, never as torn pages; with `leave_databases` it
    is left out with its -wal/-shm (Litestream streams it). With `refuse_links` (Gitea's
    folders, which its user writes and a restore chowns), a symlink below src fails the run
    (JobError naming it: a restore would follow it), and a socket or fifo is left out with a
    log line; otherwise links are copied as links and sockets and fifos left out.

    What is never written in place is hard-linked, not copied (no disk, the same content for
    restic): git objects, and the files below the `write_once` folders of src. Where the
    kernel refuses the link (another filesystem or mount) the file is copied, and `links`
    (when given) counts both: {"linked": n, "copied": n, "refused": {errno name: n}}."""
    written = 0
    if links is not None:
        for key, empty in (("linked", 0), ("copied", 0), ("refused", {})):
            links.setdefault(key, empty)
    skips = [re.compile(pattern) for pattern in skip]
    relink: str | None = None  # why a link was refused: the mount does not change mid-run

    def skipped(rel: str) -> bool:
        return any(pattern.search(rel) for pattern in skips)

    os.makedirs(dest, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        rel = "" if rel == "." else rel
        dirnames[:] = sorted(
            (
                n
                for n in dirnames
                if os.path.normpath(os.path.join(rel, n)) not in exclude
                and not skipped(os.path.join(rel, n) + "/")
            ),
            key=lambda n: (n == "objects", n),
        )
        filenames[:] = [
            n for n in filenames if os.path.normpath(os.path.join(rel, n)) not in exclude
        ]
        target_dir = os.path.normpath(os.path.join(dest, rel))
        os.makedirs(target_dir, exist_ok=True)
        _same_dir_stat(dirpath, target_dir)
        for name in dirnames + filenames:
            path, target = os.path.join(dirpath, name), os.path.join(target_dir, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) or skipped(os.path.join(rel, name)):
                continue
            if (sqlite or leave_databases) and _database_file(path):
                if not (sqlite and _is_sqlite(path)):
                    continue
            try:
                current = os.lstat(target)
            except FileNotFoundError:
                current = None
            if current is not None and stat.S_ISDIR(current.st_mode):
                shutil.rmtree(target)
                current = None
            if stat.S_ISLNK(st.st_mode) and refuse_links:
                raise JobError(
                    f"{path} is a symlink (to {os.readlink(path)}): a backup of the "
                    "forge holds only files and folders; nothing was sent"
                )
            if stat.S_ISLNK(st.st_mode):
                if (
                    current is not None
                    and stat.S_ISLNK(current.st_mode)
                    and os.readlink(target) == os.readlink(path)
                ):
                    continue
                if current is not None:
                    os.unlink(target)
                os.symlink(os.readlink(path), target)
                written += 1
                continue
            if not stat.S_ISREG(st.st_mode):
                if refuse_links:
                    log(f"warning: {path} is not a regular file (a socket or fifo): left out")
                continue  # sockets, fifos: not data
            if sqlite and _is_sqlite(path):  # its WAL may have changed while it did not
                copy_database(path, target, owner=st)
                written += 1
                continue
            link = _never_rewritten(os.path.join(rel, name), write_once)
            if current is not None and stat.S_ISREG(current.st_mode) and _same(st, current):
                if not link or (current.st_ino, current.st_dev) == (st.st_ino, st.st_dev):
                    if link and links is not None:
                        links["linked"] += 1
                    continue
                # a copy an earlier run made: now a link, unless this run was refused one
                refused = _link_over(path, target) if relink is None else relink
                relink = relink or refused
                written += refused is None
            else:
                refused = _replace_with(path, target, st, link=link)
                written += 1
            if link and links is not None:
                links["linked" if refused is None else "copied"] += 1
                if refused is not None:
                    links["refused"][refused] = links["refused"].get(refused, 0) + 1
    for dirpath, dirnames, filenames in os.walk(dest, topdown=False):
        rel = os.path.relpath(dirpath, dest)
        rel = "" if rel == "." else rel
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            sub = os.path.join(rel, name)
            is_dir = os.path.isdir(path) and not os.path.islink(path)
            if (
                os.path.lexists(os.path.join(src, sub))
                and os.path.normpath(sub) not in exclude
                and not skipped(sub + "/" if is_dir else sub)
                and not (
                    (sqlite or leave_databases)
                    and _database_file(os.path.join(src, sub))
                    and not (sqlite and _is_sqlite(os.path.join(src, sub)))
                )
            ):
                continue
            if is_dir:
                shutil.rmtree(path)
            else:
                os.unlink(path)
    return written


def copy_database(db_path: str, dest: str, *, owner: os.stat_result | None = None) -> None:
    """SQLite's online backup API: a consistent copy while its program writes, never the live
    file; mode 0600, owned as `owner` (a stat of the source) when given."""
    if not os.path.isfile(db_path):
        raise JobError(f"no database at {db_path}: nothing to back up")
    tmp = dest + ".phoenix-tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    try:
        source = sqlite3.connect(db_path, timeout=60)
        try:
            target = sqlite3.connect(tmp)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise JobError(f"the online copy of {db_path} failed: {exc}") from None
    os.chmod(tmp, 0o600)
    if owner is not None:
        os.chown(tmp, owner.st_uid, owner.st_gid)
    os.replace(tmp, dest)


def copy_file(src: str, dest: str) -> None:
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    st = os.stat(src)
    try:
        if _same(st, os.stat(dest)):
            return
    except FileNotFoundError:
        pass
    _replace_with(src, dest, st, link=False)


def _to_write(
    src: str,
    dest: str,
    exclude: frozenset[str] = frozenset(),
    *,
    write_once: Sequence[str] = (),
    link_probe: str | None = None,
) -> int:
    """Bytes mirror(src, dest) would write: files missing or changed in dest, what mirror
    hard-links only when the kernel refuses a link into `link_probe` (a folder on dest's
    mount; None: counted as copies). Over, never under."""
    if not os.path.isdir(src):
        return 0
    total = 0
    linkable: bool | None = None if link_probe else False
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        rel = "" if rel == "." else rel
        dirnames[:] = [n for n in dirnames if os.path.normpath(os.path.join(rel, n)) not in exclude]
        for name in filenames:
            if os.path.normpath(os.path.join(rel, name)) in exclude:
                continue
            st = os.lstat(os.path.join(dirpath, name))
            if not stat.S_ISREG(st.st_mode):
                continue
            try:
                have = os.lstat(os.path.join(dest, rel, name))
                if have.st_size == st.st_size and int(have.st_mtime) == int(st.st_mtime):
                    continue
            except OSError:
                pass
            if _never_rewritten(os.path.join(rel, name), write_once):
                # probed with a file not staged yet: a link made and dropped changes its
                # ctime, and restic would read a staged one again
                if linkable is None:
                    linkable = links_work(os.path.join(dirpath, name), link_probe or "")
                if linkable:
                    continue
            total += st.st_size
    return total


def check_free_space(config: dict) -> None:
    """Refuse, before anything is staged, a run whose copy would fill the staging folder's
    filesystem: it is the forge's own disk, where Gitea and SQLite fail when it is full."""
    gitea, root = config["gitea"], config["staging_dir"]
    folder = os.path.join(root, GITEA)
    needed = sum(
        os.path.getsize(path)
        for path in [gitea["db_path"], gitea["db_path"] + "-wal"]
        if os.path.isfile(path)
    )
    for name, src, exclude, write_once in (
        ("repositories", gitea["repo_root"], frozenset(), ()),
        ("custom", gitea["custom_dir"], frozenset(), ()),
        ("data", gitea.get("data_dir"), data_exclusions(gitea), WRITE_ONCE),
    ):
        if src:
            needed += _to_write(
                src,
                os.path.join(folder, name),
                exclude,
                write_once=write_once,
                link_probe=root,
            )
    for path in config.get("paths", []):
        target = os.path.join(root, FILES, os.path.normpath(path).lstrip("/"))
        if os.path.isfile(path):
            needed += os.path.getsize(path)
        else:
            needed += _to_write(path, target)
    refuse_short_of_space(config, needed, root, "the staging copy", "nothing was staged or sent")


def refuse_short_of_space(config: dict, needed: int, folder: str, what: str, kept: str) -> None:
    """A one-line refusal when writing `needed` bytes into `folder` would leave less than the
    reserve (staging_reserve_mib, backup_disk_reserve_mib) free on its filesystem."""
    existing = folder
    while not os.path.isdir(existing) and existing not in ("", "/"):
        existing = os.path.dirname(existing)  # made by the run: its filesystem is the parent's
    fs = os.statvfs(existing or "/")
    free = fs.f_bavail * fs.f_frsize
    reserve = int(config.get("staging_reserve_mib", 256)) * 2**20  # left for Gitea and SQLite
    if needed + reserve > free:
        mib = 2**20
        raise JobError(
            f"{what} needs {needed / mib:.0f} MiB more in {folder} and only "
            f"{free / mib:.0f} MiB are free (keeping {reserve / mib:.0f} MiB for the forge): "
            f"{kept}; free space there, or move it"
        )


def stage(config: dict) -> dict:
    """The staging folder as a sealed, consistent copy of the forge; returns the manifest's
    summary from phoenix-backup-verify."""
    gitea = config["gitea"]
    root = config["staging_dir"]
    os.makedirs(root, mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    check_free_space(config)
    folder = os.path.join(root, GITEA)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    copy_database(gitea["db_path"], os.path.join(folder, "gitea.db"))
    data_dir = gitea.get("data_dir")
    links: dict = {}
    for name, src, exclude, write_once in (
        ("repositories", gitea["repo_root"], frozenset(), ()),
        ("custom", gitea["custom_dir"], frozenset(), ()),
        ("data", data_dir, data_exclusions(gitea), WRITE_ONCE),
    ):
        if src and os.path.isdir(src):
            mirror(
                src,
                os.path.join(folder, name),
                exclude,
                refuse_links=True,
                write_once=write_once,
                links=links,
            )
        elif os.path.lexists(os.path.join(folder, name)):
            shutil.rmtree(os.path.join(folder, name))
    if gitea.get("app_ini") and os.path.isfile(gitea["app_ini"]):
        copy_file(gitea["app_ini"], os.path.join(folder, "app.ini"))
    else:
        raise JobError(
            f"no app.ini at {gitea.get('app_ini')}: the forge's secrets (SECRET_KEY, "
            "JWT_SECRET…) would be lost; converge the host again"
        )
    wanted = {}
    for path in config.get("paths", []):
        wanted[os.path.normpath(path)] = "file" if os.path.isfile(path) else "folder"
    files_root = os.path.join(root, FILES)
    missing = []
    for path, kind in sorted(wanted.items()):
        target = os.path.join(files_root, path.lstrip("/"))
        if kind == "file" and os.path.isfile(path):
            copy_file(path, target)
        elif kind == "folder" and os.path.isdir(path):
            mirror(path, target, skip=config.get("skip", []), sqlite=True)
        else:
            missing.append(path)
            log(f"warning: {path} is missing on this host; it is not in this backup")
    _prune_files(files_root, wanted)
    proc = subprocess.run(
        [
            config["verifier"],
            "--write-manifest",
            "--gitea-version",
            str(gitea.get("version") or "unknown"),
            folder,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise JobError(f"sealing the copy failed, nothing was sent: {last_line(proc.stderr)}")
    summary = json.loads(proc.stdout)
    summary["missing"] = missing
    summary["links"] = {key: links.get(key, 0) for key in ("linked", "copied")}
    if links.get("copied"):
        refused = ", ".join(f"{name} {count}" for name, count in sorted(links["refused"].items()))
        log(
            f"staging: {links['copied']} write-once files copied where a hard link was refused "
            f"({refused}), {links['linked']} hard-linked: the copies use the forge's disk"
        )
    return summary


def data_exclusions(gitea: dict) -> frozenset[str]:
    """What data/ leaves out, relative to the data folder: what Gitea rebuilds (`exclude`), and
    the database (with Litestream's state beside it) and repositories when they live there
    (they have their own copies)."""
    data_dir = os.path.normpath(gitea.get("data_dir") or "/nonexistent")
    skip = set(gitea.get("exclude", ["sessions", "queues", "indexers", "tmp"]))
    folder, name = os.path.split(gitea["db_path"])
    for path in (
        gitea["db_path"],
        *[gitea["db_path"] + s for s in ("-wal", "-shm", "-journal")],
        os.path.join(folder, f".{name}-litestream"),  # Litestream's own state beside it
        gitea["repo_root"],
    ):
        rel = os.path.relpath(os.path.normpath(path), data_dir)
        if not rel.startswith(".."):
            skip.add(rel)
    return frozenset(os.path.normpath(p) for p in skip)


def _prune_files(files_root: str, wanted: dict[str, str]) -> None:
    """Drop what a former configuration put below files/ and this one no longer lists."""
    if not os.path.isdir(files_root):
        return
    keep = {path.lstrip("/") for path in wanted}
    for dirpath, dirnames, filenames in os.walk(files_root, topdown=True):
        rel = os.path.relpath(dirpath, files_root)
        rel = "" if rel == "." else rel
        for name in list(dirnames) + filenames:
            sub = os.path.join(rel, name) if rel else name
            if sub in keep:
                if name in dirnames:
                    dirnames.remove(name)  # a kept folder: mirror() owns what is below
                continue
            if any(k.startswith(sub + "/") for k in keep):
                continue  # on the way to a kept path
            path = os.path.join(dirpath, name)
            if name in dirnames:
                dirnames.remove(name)
                shutil.rmtree(path)
            else:
                os.unlink(path)


# --- the commands ----------------------------------------------------------------------------


def write_status(path: str, status: dict) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(status, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def run(config: dict) -> int:
    """One backup at a time: a second run (say, by hand while the timer's runs) stops at once,
    as both would write the same staging folder."""
    os.makedirs(config["staging_dir"], mode=0o700, exist_ok=True)
    with open(config["staging_dir"] + ".lock", "w") as lock:  # beside it: not in the snapshot
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobError("another backup run is using the staging folder") from None
        return _run(config)


def _run(config: dict) -> int:
    started = time.monotonic()
    summary = stage(config)
    staged = time.monotonic()
    # A run cut off mid-backup (the store lost) leaves its lock in the store, and the next
    # forget --prune would stop on it ("already locked"). `unlock` removes stale locks only:
    # this host's dead runs (the flock above rules out a live one), or locks over 30 min old.
    restic(config, "unlock", what="removing stale restic locks")
    out = restic(
        config,
        "backup",
        "--json",
        "--host",
        config["host"],
        "--tag",
        config["tag"],
        ".",
        what="restic backup",
        cwd=config["staging_dir"],
    )
    # `restic backup` runs in the staging folder: the snapshot holds gitea/ and files/ at its
    # top, whatever the staging folder is called on this host.
    result = next(
        (
            json.loads(line)
            for line in reversed(out.splitlines())
            if line.startswith("{") and '"summary"' in line
        ),
        None,
    )
    if result is None or not result.get("snapshot_id"):
        raise JobError("restic backup printed no snapshot id")
    listed = json.loads(
        restic(
            config, "snapshots", "--json", result["snapshot_id"], what="reading the new snapshot"
        )
    )
    snapshot = listed[0]["id"] if listed else result["snapshot_id"]
    status = {
        "time": datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat(),
        "snapshot_id": snapshot,
        "repository": location(config),
        "host": config["host"],
        "counts": summary.get("counts"),
        "files": summary.get("files"),
        "missing": summary.get("missing", []),
        "staged_links": summary.get("links"),
        "data_added": result.get("data_added"),
        "stage_seconds": round(staged - started, 2),
        "backup_seconds": round(time.monotonic() - staged, 2),
    }
    write_status(config["status_file"], status)
    log(
        f"snapshot {snapshot[:8]} saved to {location(config)} "
        f"({result.get('data_added', 0)} bytes added, {status['backup_seconds']} s)"
    )
    keep = config.get("keep", {})
    policy = [
        arg
        for key in ("hourly", "daily", "weekly", "monthly")
        if keep.get(key)
        for arg in (f"--keep-{key}", str(int(keep[key])))
    ]
    if policy:
        try:
            restic(
                config,
                "forget",
                "--host",
                config["host"],
                "--tag",
                config["tag"],
                *policy,
                "--prune",
                what="restic forget --prune",
            )
        except JobError as exc:
            raise JobError(f"snapshot {snapshot[:8]} is saved, but {exc}") from None
    print(json.dumps(status, sort_keys=True), flush=True)
    return 0


def prestage(config: dict) -> int:
    """A warm standby's schedule: the latest snapshot restored and verified ahead of time in
    `prestage_dir`/<id> (older ones dropped), so that a promotion's restore of that snapshot
    only moves folders. Nothing of the live forge is touched."""
    root = config.get("prestage_dir")
    if not root:
        raise JobError("no prestage_dir in the config: this host is not a warm standby")
    # The primary line's newest (any droplet's: only the forge of the day backs up), by the
    # time each claims but never one past now (restic's --latest would take a forged 2099).
    found = believable(
        config,
        json.loads(
            restic(config, "snapshots", "--json", "--tag", config["tag"], what="listing snapshots")
            or "[]"
        ),
    )
    if not found:
        raise JobError("the repository holds no snapshot of this forge yet")
    snapshot = max(found, key=lambda s: _parse_time(s["time"]))["id"]
    os.makedirs(root, mode=0o700, exist_ok=True)
    dest = os.path.join(root, snapshot)
    if not os.path.exists(dest + ".verified"):
        restore(config, snapshot, dest, use_prestaged=False)
        proc = subprocess.run(
            [config["verifier"], dest], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            raise JobError(
                f"snapshot {snapshot[:8]} failed verification, not kept: {last_line(proc.stderr)}"
            )
        with open(dest + ".verified", "w") as out:
            out.write(proc.stdout)
    for name in os.listdir(root):  # only the newest is worth keeping warm
        if not name.startswith(snapshot):
            path = os.path.join(root, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    log(f"snapshot {snapshot[:8]} is staged and verified in {dest}")
    return 0


def restore(config: dict, snapshot: str, dest: str, *, use_prestaged: bool = True) -> int:
    """DEST becomes the snapshot's Gitea folder (complete, or left as it was), and DEST.files
    its app.ini and extra folders. Verifying it is the caller's next step
    (phoenix-backup-verify DEST), as for any backup. A copy a warm standby prestaged is used
    instead of the store when it is of the same snapshot."""
    warm = os.path.join(config.get("prestage_dir") or "/nonexistent", snapshot)
    if use_prestaged and os.path.exists(warm + ".verified"):
        for src, target in ((warm + ".files", dest + ".files"), (warm, dest)):
            if os.path.lexists(target):
                shutil.rmtree(target)
            if os.path.isdir(src):
                os.replace(src, target)
        os.unlink(warm + ".verified")
        log(f"snapshot {snapshot[:8]} taken from the warm copy into {dest}")
        return 0
    tmp = dest + ".restic-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    size = json.loads(
        restic(
            config,
            "stats",
            "--json",
            "--mode",
            "restore-size",
            snapshot,
            what=f"sizing snapshot {snapshot}",
        )
    )["total_size"]
    refuse_short_of_space(
        config,
        int(size),
        os.path.dirname(os.path.abspath(dest)),
        f"restoring snapshot {snapshot[:8]}",
        "nothing was restored",
    )
    os.makedirs(tmp, mode=0o700)
    restic(config, "restore", snapshot, "--target", tmp, what=f"restoring snapshot {snapshot}")
    if not os.path.isdir(os.path.join(tmp, GITEA)):
        raise JobError(f"snapshot {snapshot} holds no {GITEA}/ folder: not a Phoenix backup")
    for src, target in (
        (os.path.join(tmp, FILES), dest + ".files"),
        (os.path.join(tmp, GITEA), dest),
    ):
        if os.path.lexists(target):
            shutil.rmtree(target)
        if os.path.isdir(src):
            os.replace(src, target)
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"snapshot {snapshot[:8]} staged in {dest}")
    return 0


# --- repositories every few minutes --------------------------------------------------------------


def _snapshot_id(out: str) -> str:
    result = next(
        (
            json.loads(line)
            for line in reversed(out.splitlines())
            if line.startswith("{") and '"summary"' in line
        ),
        None,
    )
    if result is None or not result.get("snapshot_id"):
        raise JobError("restic backup printed no snapshot id")
    return result["snapshot_id"]


def seconds_since_start() -> float:
    """How long this process has run: from its start (/proc/self/stat's starttime, in clock
    ticks since boot, against CLOCK_BOOTTIME), so Python's own start counts too. Its unit
    started a few milliseconds earlier (systemd's fork and sandbox), which the timer's
    accuracy in the budget covers."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            fields = handle.read().rpartition(")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of proc(5)
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError):
        return time.process_time()  # no /proc: at least this process's CPU time


def run_repositories(config: dict) -> int:
    """Every file written since the full snapshot (the module's docstring), through the same
    restic line. The status file records how long the run took: a run longer than
    frequent_snapshot_run_budget (less the timer's accuracy) breaks the promise that a disaster
    loses at most frequent_snapshot_interval of writes (replication.repo_snapshot_period)."""
    root = config.get("repo_staging_dir") or config["staging_dir"].rstrip("/") + "-repositories"
    os.makedirs(root, mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    with open(root + ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobError("another repository snapshot is running") from None
        started = time.monotonic()
        folder = os.path.join(root, GITEA)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        written = mirror(
            config["gitea"]["repo_root"], os.path.join(folder, "repositories"), refuse_links=True
        )
        written_files, in_place = stage_files(config, root)
        written += written_files
        staged = time.monotonic()
        out = restic(
            config,
            "backup",
            "--json",
            "--host",
            config["host"],
            "--tag",
            config["repo_tag"],
            ".",
            *in_place.values(),
            what="restic backup (every file since the full snapshot)",
            cwd=root,
        )
        summary: dict = next(
            (
                json.loads(line)
                for line in reversed(out.splitlines())
                if line.startswith("{") and '"summary"' in line
            ),
            {},
        )
        snapshot = _snapshot_id(out)
    took = seconds_since_start()
    status = {
        "time": datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat(),
        "snapshot_id": snapshot,
        "tag": config["repo_tag"],
        "host": config["host"],
        "files_written": written,
        "in_place": sorted(in_place),
        "data_added": summary.get("data_added"),
        "stage_seconds": round(staged - started, 2),
        "backup_seconds": round(time.monotonic() - staged, 2),
        "duration_seconds": round(took, 2),
    }
    budget = config.get("repo_run_budget")
    if budget is not None:
        allowed = float(budget) - float(config.get("repo_timer_accuracy") or 0)
        status["budget_seconds"] = allowed
        if took > allowed:
            log(
                f"repositories: this run took {took:.1f} s, over its budget of {allowed:g} s "
                "(frequent_snapshot_run_budget less the timer's accuracy): writes older than "
                "frequent_snapshot_interval may be lost in a disaster"
            )
    if config.get("repo_status_file"):
        write_status(config["repo_status_file"], status)
    log(
        f"repositories: snapshot {snapshot[:8]} saved ({status['data_added']} bytes added, "
        f"{status['stage_seconds']} + {status['backup_seconds']} s, "
        f"{status['duration_seconds']} s in all)"
    )
    print(json.dumps(status, sort_keys=True), flush=True)
    return 0


# Below Gitea's data folder, what Gitea writes once under a name of its own and never in place
# (attachments, LFS objects, package blobs): the full backup hard-links them into its staging
# folder, a frequent snapshot has restic read them where they are. Gitea 1.22 writes them to a
# temporary file renamed into place (modules/storage/local.go Save), so a file seen there is
# whole, and a link to it stays what restic should store.
WRITE_ONCE = ("attachments", "lfs", "packages")
IN_PLACE = "in-place.json"  # the frequent snapshot's list of the folders restic read in place


def stage_files(config: dict, root: str) -> tuple[int, dict[str, str]]:
    """What a frequent snapshot holds besides the repositories: Gitea's data folder but for
    what Gitea rebuilds, the database (Litestream streams it) and the write-once folders
    (returned, name -> absolute path, for restic to read in place; listed in gitea/IN_PLACE),
    and the folders of `paths` (the houses' memories, skills, cron output) without their
    SQLite databases, which Litestream streams. Returns (files written, write-once folders)."""
    gitea = config["gitea"]
    folder = os.path.join(root, GITEA)
    data_dir = gitea.get("data_dir")
    written, in_place = 0, {}
    if data_dir and os.path.isdir(data_dir):
        exclude = data_exclusions(gitea) | frozenset(WRITE_ONCE)
        written += mirror(data_dir, os.path.join(folder, "data"), exclude, refuse_links=True)
        for name in WRITE_ONCE:
            path = os.path.join(os.path.normpath(data_dir), name)
            if os.path.isdir(path) and not os.path.islink(path):
                in_place[name] = path
    with open(os.path.join(folder, IN_PLACE) + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(in_place, handle, sort_keys=True)
    os.replace(os.path.join(folder, IN_PLACE) + ".tmp", os.path.join(folder, IN_PLACE))
    files_root = os.path.join(root, FILES)
    wanted = {}
    for path in config.get("paths", []):
        path = os.path.normpath(path)
        target = os.path.join(files_root, path.lstrip("/"))
        if os.path.isdir(path):
            wanted[path] = "folder"
            written += mirror(path, target, skip=config.get("skip", []), leave_databases=True)
        elif os.path.isfile(path) and not _is_sqlite(path):
            wanted[path] = "file"
            copy_file(path, target)
    _prune_files(files_root, wanted)
    return written, in_place


def _parse_time(text: str) -> datetime.datetime:
    """restic's and an operator's times: ISO 8601, nanoseconds allowed; naive means UTC."""
    text = text.strip().replace("Z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise JobError(f"{text!r} is not an ISO 8601 time (2026-11-28T15:04:05Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def believable(config: dict, rows: list[dict]) -> list[dict]:
    """restic's snapshot `rows` but those that claim a time later than now + future_tolerance
    seconds, each named in one line. The forge writes a snapshot's time (restic --time, or a
    forged snapshot file through its append-only key): one dated 2099 must never be the
    newest, or it would stay the newest for ever."""
    tolerance = float(config.get("future_tolerance") or 30)
    limit = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=tolerance)
    kept = []
    for row in rows:
        claimed = _parse_time(row["time"])
        if claimed > limit:
            log(
                f"snapshot {row['id'][:8]} claims "
                f"{claimed.astimezone(datetime.UTC):%Y-%m-%dT%H:%M:%SZ}, later than now + "
                f"{tolerance:g} s: not taken as the newest"
            )
        else:
            kept.append(row)
    return kept


def ping(config: dict, message: str, *, failed: bool) -> None:
    """Tell the operator's alert URL how a run ended (see the module's docstring)."""
    path = config.get("alert_url_file")
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as handle:
            url = handle.read().strip()
        request = urllib.request.Request(
            url.rstrip("/") + ("/fail" if failed else ""),
            data=message.encode()[:10000],
            method="POST",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
    except (OSError, ValueError) as exc:  # the URL stays out of the journal
        log(f"the alert URL did not take the ping: {type(exc).__name__}")


def saved(status_file: str | None, what: str) -> str:
    try:
        with open(status_file or "", encoding="utf-8") as handle:
            return f"{what} {json.load(handle)['snapshot_id'][:8]} saved"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{what} saved"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phoenix-backup", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="back the forge up now (what the timer runs)")
    sub.add_parser("prestage", help="restore and verify the latest snapshot ahead of time")
    sub.add_parser("repositories", help="snapshot every file changed since the full one (timer)")
    raw = sub.add_parser("restic", help="restic with this host's repository and password")
    raw.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command == "prestage":
            return prestage(config)
        if args.command == "restic":
            os.makedirs(restic_env(config)["RESTIC_CACHE_DIR"], mode=0o700, exist_ok=True)
            return subprocess.run(
                restic_argv(config, *args.args), env=restic_env(config), check=False
            ).returncode
    except (JobError, OSError) as exc:
        log(f"FAILED: {exc}")
        return 1
    what = "repositories" if args.command == "repositories" else "full backup"
    try:
        if args.command == "repositories":
            code = run_repositories(config)
            ping(
                config,
                saved(config.get("repo_status_file"), "repositories: snapshot"),
                failed=False,
            )
        else:
            code = run(config)
            ping(config, saved(config.get("status_file"), "full backup: snapshot"), failed=False)
        return code
    except (JobError, OSError) as exc:
        log(f"FAILED: {exc}")
        ping(config, f"{what} FAILED: {exc}", failed=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
