#!/usr/bin/python3
"""Phoenix, on the host being restored, as root: each database brought from the
restic snapshot's copy (already in place) to its Litestream replica's newest consistent point.

    phoenix-litestream-restore SPEC.json

SPEC (written by tasks/litestream.py): {"litestream": BINARY, "source": HOST, "repo_root":
Gitea's repositories, "manifest": the snapshot's manifest.json, "timestamp": ISO|null (the
restore's point; null: the replica's newest), "snapshot_time": ISO|null (the snapshot's own
time, as the store has it), "timeout": S, "aside_dir": DIR, "report": FILE, "dbs": [{"path",
"name", "user", "config": Litestream's config for that one db}]}.

A point not after the snapshot's own time (a snapshot restored by its id) is the snapshot's
copy: Litestream is not asked, and nothing written after the snapshot comes back.

For each database: `litestream restore -integrity-check full` into a file beside it (never
over it); the replica is used only when it restored, passes PRAGMA integrity_check, lines up
with the snapshot's copy (every table of the snapshot is there, and no table of the replica
ends before the snapshot's: a replica of another database, or of an older life of this one,
does not), and is at least as new as the snapshot. Then the snapshot's copy (and its -wal,
-shm) goes to ASIDE_DIR/<UTC time>/litestream/<name>/ and the replica's takes its place, same
owner and mode.
Otherwise the snapshot's copy stays, and one line says which database, why, and what that
costs: the writes after the snapshot's time. A database that is in neither is left alone.
When gitea.db comes from its replica, repository rows without git data on disk (created after
the snapshot) are listed, never dropped.

Never exits non-zero for a replica: the snapshot is the backstop. Prints one line per
database; the report (JSON) holds the same, for the drill and `phoenix backup status`.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

UTC = datetime.UTC


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def last_line(text: str) -> str:
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


def set_aside(path: str, aside: str) -> None:
    os.makedirs(aside, mode=0o700, exist_ok=True)
    base = os.path.basename(path)
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.lexists(path + suffix):
            shutil.move(path + suffix, os.path.join(aside, base + suffix))
    meta = os.path.join(os.path.dirname(path), f".{base}-litestream")
    if os.path.lexists(meta):  # Litestream's own state of the old life: not this one's
        shutil.move(meta, os.path.join(aside, f".{base}-litestream"))


def restore_one(spec: dict, db: dict, snapshot_time: datetime.datetime | None, aside: str) -> dict:
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
            result["reason"] = explain(last_line(proc.stderr or proc.stdout))
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
            set_aside(path, aside)
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


def keep_avatars_with_files(db: str, snapshot_db: str, app_data: str) -> list[str]:
    """A user whose avatar was changed after the snapshot has a row naming a file restic never
    saw: back to the snapshot's avatar when its file is there (the newer one is listed, the
    row never points at nothing). Gitea is not running yet; the file keeps its owner."""
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
            if older and os.path.isfile(os.path.join(app_data, "avatars", older)):
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


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit("usage: phoenix-litestream-restore SPEC.json")
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    snapshot_time = None
    try:
        with open(spec["manifest"], encoding="utf-8") as handle:
            snapshot_time = parse_time(json.load(handle).get("created"))
    except (OSError, ValueError, KeyError):
        pass
    stamp = datetime.datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = os.path.join(spec["aside_dir"], stamp, "litestream")
    results = []
    for db in spec["dbs"]:
        had = os.path.exists(db["path"])
        # One folder per database: the houses' databases share their file names.
        result = restore_one(spec, db, snapshot_time, os.path.join(aside, db["name"]))
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
        snapshot_copy = os.path.join(aside, db["name"], os.path.basename(db["path"]))
        if (
            result["used"] == "replica"
            and db["name"] == "gitea"
            and spec.get("app_data")
            and os.path.isfile(snapshot_copy)
        ):
            result["avatars"] = keep_avatars_with_files(db["path"], snapshot_copy, spec["app_data"])
            for line in result["avatars"]:
                print(f"{db['path']}: {line}")
            result["rows_without_files"] = rows_without_files(db["path"], spec["app_data"])
            for row in result["rows_without_files"]:
                print(
                    f"{db['path']}: {row.get('table')} {row.get('uuid') or row.get('oid')} "
                    f"({row.get('name') or row.get('size') or row.get('error')}): its file "
                    "came after the snapshot; the row is in the report, not in the forge"
                )
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
    tmp = spec["report"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=1, sort_keys=True)
    os.replace(tmp, spec["report"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
