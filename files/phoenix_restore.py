#!/usr/bin/python3
"""Phoenix's restore, on the host: set aside what is there, put the backup in place, regenerate.

Debian 12's python3 standard library only; one file, shipped and configured by
tasks/restore.py (config.json beside the restore's staging folder). The staged backup has
been verified (phoenix-backup-verify) and Gitea stopped before `apply` runs.

    phoenix-restore --config FILE apply UNPACKED   what is in the way goes to ASIDE/<UTC time>/
                                                   <its path>, then the backup's database,
                                                   repositories/, custom/, data/ entries and
                                                   extra folders (UNPACKED.files) take its place
    phoenix-restore --config FILE regenerate       `gitea admin regenerate hooks` and `keys`,
                                                   as Gitea's run user (Gitea must be running)
    phoenix-restore --config FILE record PLAN OUT  what was restored, each kind from which
                                                   point: PLAN (the deploy's: the source, its
                                                   snapshot, the point) and the outcomes the
                                                   replicas' and repository snapshots'
                                                   reports give, written to OUT

Nothing is deleted: whatever a path held (a file, or a folder with something in it) is moved
aside first, and only then is the backup moved in. A run cut off anywhere is finished by the
next one: the deploy stages the backup afresh, and what the cut-off run had already put in
place is set aside again like anything else (into a folder of its own), so the data found
before the first run stays where that run put it.

config.json: {"db_path", "repo_root", "custom_dir", "data_dir", "aside_dir", "user", "group",
"paths": [extra folders], "gitea_binary", "app_ini", "work_dir", "cut_file"}. `cut_file` is a
fault switch for tests: when it holds the name of a step (set-aside, database, in-place,
regenerated), the run stops right after that step with exit 137, as if killed, and removes it.
"""

from __future__ import annotations

import argparse
import datetime
import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys

DATABASE = "gitea.db"
SIDE_FILES = ("-wal", "-shm", "-journal")


class RestoreError(Exception):
    """An expected failure; the message is the one line the deploy shows."""


def log(message: str) -> None:
    print(f"phoenix-restore: {message}", file=sys.stderr, flush=True)


def load_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise RestoreError(f"cannot read the configuration {path}: {exc}") from None
    for key in ("db_path", "repo_root", "custom_dir", "data_dir", "aside_dir", "user", "group"):
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


def aside_folder(root: str) -> str:
    """A new ASIDE/<UTC time>[-N] folder, root's alone."""
    os.makedirs(root, mode=0o700, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder, n = os.path.join(root, stamp), 1
    while os.path.lexists(folder):
        n += 1
        folder = os.path.join(root, f"{stamp}-{n}")
    os.makedirs(folder, mode=0o700)
    return folder


def set_aside(path: str, folder: str) -> str | None:
    """Move path (when it holds something) to folder/<its absolute path>; returns where."""
    if not holds_something(path):
        return None
    target = os.path.join(folder, os.path.abspath(path).lstrip("/"))
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
    data_entries = sorted(os.listdir(staged_data)) if os.path.isdir(staged_data) else []
    in_the_way = [
        db,
        *(db + s for s in SIDE_FILES),
        config["repo_root"],
        config["custom_dir"],
        *(os.path.join(data_dir, name) for name in data_entries),
        *extra,
    ]

    folder = aside_folder(config["aside_dir"])
    moved = {path: where for path in in_the_way if (where := set_aside(path, folder))}
    if not moved:
        os.rmdir(folder)
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
    return {
        "aside": folder if moved else None,
        "set_aside": sorted(moved),
        "data": data_entries,
        "paths": extra,
    }


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
    done = {
        **{key: plan.get(key) for key in ("source", "label", "origin", "lacks")},
        "point": {
            "snapshot": plan.get("snapshot"),
            "until": plan.get("until"),
            "databases": databases,
            "repositories": repositories,
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
        + f"; databases: {dbs or said['backup']}; repositories: "
        + (
            f"repository snapshot {repositories['id'][:8]} of {repositories.get('time')}"
            if repositories["from"] == "repository snapshot"
            else said["backup"]
        )
    )
    return done


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phoenix-restore", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "apply", help="set aside what is there, put the staged backup in place"
    ).add_argument("unpacked")
    sub.add_parser("regenerate", help="gitea admin regenerate hooks and keys")
    recorded = sub.add_parser("record", help="what was restored, each kind from which point")
    recorded.add_argument("plan")
    recorded.add_argument("out")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command == "apply":
            done = apply(config, args.unpacked)
        elif args.command == "record":
            done = record(args.plan, args.out)
        else:
            done = regenerate(config)
    except (RestoreError, OSError, ValueError) as exc:
        log(f"FAILED: {exc}")
        return 1
    print(json.dumps(done, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
