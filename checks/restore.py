"""Runbook step 4, the restore (tasks/restore.py): the backup's database in place, the run
user's and 0600, sound, and holding what the backup holds."""

from __future__ import annotations

import datetime
import json
import re
import shlex

import pytest

from .helpers import DISPATCH_ISSUE_TITLE, VALIDATION_ISSUE_TITLE, mode, out, verifier


def test_step4_gitea_db_owned_by_run_user_0600(host, settings, gitea_paths):
    db = host.file(gitea_paths["db"])
    assert db.is_file, f"{gitea_paths['db']} is missing: the Gitea database was not restored"
    assert db.user == settings["gitea_user"], (
        f"gitea.db is owned by {db.user}, expected {settings['gitea_user']} "
        f"(chown {settings['gitea_user']}: {gitea_paths['db']})"
    )
    assert db.mode == 0o600, (
        f"gitea.db is mode {mode(db)}, expected 0600 (chmod 600 {gitea_paths['db']})"
    )


def _query_copy(host, db: str, sql: str) -> list[str]:
    """Run sqlite3 on a copy of the live database: never a lock on it, never a root-owned
    -wal/-shm beside it."""
    script = (
        "set -e; t=$(mktemp -d); trap 'rm -rf \"$t\"' EXIT; "
        f'cp {shlex.quote(db)} "$t/db"; '
        f'for s in -wal; do [ -f {shlex.quote(db)}$s ] && cp {shlex.quote(db)}$s "$t/db$s"; '
        "done; "
        f'sqlite3 -readonly "$t/db" {shlex.quote(sql)}'
    )
    return out(host, f"bash -c {shlex.quote(script)}").splitlines()


def test_step4_gitea_db_integrity_ok(host, gitea_paths):
    rows = _query_copy(host, gitea_paths["db"], "PRAGMA integrity_check;")
    assert rows == ["ok"], (
        f"gitea.db failed PRAGMA integrity_check: {'; '.join(rows[:3])} "
        "(restore it again from the backup)"
    )


def _replica_used(host, settings, name: str) -> bool:
    """Whether the restore brought database `name` to its Litestream replica's newer point
    (`phoenix-restore replay`'s report on the host)."""
    path = f"{settings['restore_staging_dir'].rstrip('/')}/litestream.json"
    text = host.run(f"cat {shlex.quote(path)} 2>/dev/null || true").stdout
    if not text.strip():
        return False
    return any(
        db.get("name") == name and db.get("used") == "replica"
        for db in json.loads(text).get("databases", [])
    )


def _backup_epoch(manifest: dict) -> int:
    """When the backup was sealed (its manifest's `created`), in Unix seconds."""
    created = str(manifest.get("created") or "")
    try:
        when = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        pytest.fail(
            f"the backup's manifest has no valid 'created' time ({created!r}): "
            "restore it again from a sealed backup"
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp())


def test_step4_restored_data_matches_backup_manifest(host, settings, gitea_paths, manifest):
    queries = verifier().COUNT_QUERIES
    # Only the issues steps 9 and 9.4 made on this host since the backup are not restored
    # data: one an earlier validation left on the old forge was backed up, and the manifest
    # counts it.
    dispatch = "%".join(part.replace("'", "''") for part in DISPATCH_ISSUE_TITLE)
    own = (
        "SELECT COUNT(*) FROM issue WHERE COALESCE(is_pull, 0) = 0 AND (name = '"
        + VALIDATION_ISSUE_TITLE.replace("'", "''")
        + f"' OR name LIKE '{dispatch}') AND created_unix > "
        + str(_backup_epoch(manifest))
    )
    rows = _query_copy(host, gitea_paths["db"], "; ".join([*queries.values(), own]) + ";")
    *counts, own_issues = (int(r) for r in rows)
    found = dict(zip(queries, counts, strict=True))
    found["issues"] -= own_issues
    wanted = manifest["counts"]
    # A database brought past the snapshot by its Litestream replica holds at least
    # what the snapshot held (more: what was written after it), and every repository row
    # must still have its git data on disk.
    newer = _replica_used(host, settings, "gitea")
    wrong = [
        f"{found[k]} {k}, the backup has {wanted[k]}"
        for k in ("repositories", "users", "issues", "organizations")
        if k in wanted and (found.get(k, 0) < wanted[k] if newer else found.get(k) != wanted[k])
    ]
    # A wiki is <name>.wiki.git beside its repository, not a repository of its own
    # (models/repo/wiki.go WikiPath): it is not counted.
    on_disk = out(
        host,
        f"find {shlex.quote(gitea_paths['repos'])} -mindepth 2 -maxdepth 2 "
        "-type d -name '*.git' ! -name '*.wiki.git' 2>/dev/null | wc -l",
    ).strip()
    rows_expected = found["repositories"] if newer else wanted.get("repositories")
    if rows_expected is not None and int(on_disk or 0) != rows_expected:
        wrong.append(
            f"{on_disk} repositories on disk in {gitea_paths['repos']}, "
            f"the {'database' if newer else 'backup'} has {rows_expected}"
        )
    assert not wrong, (
        f"the restored Gitea does not hold the backup's data: {'; '.join(wrong)}"
        f" (backup of {manifest.get('created', 'unknown date')})"
    )


def test_step4_git_over_ssh_takes_every_key_in_the_database(host, gitea_paths, app_ini_path):
    """Git over SSH is `gitea serv key-N`, run by sshd from the run user's authorized_keys
    (`gitea admin regenerate keys` after a restore): every user and deploy key in the database
    has its line, naming a Gitea binary that is there and this app.ini."""
    db, user = gitea_paths["db"], gitea_paths["run_user"]
    has_keys = _query_copy(
        host, db, "SELECT count(*) FROM sqlite_master WHERE name = 'public_key';"
    )
    keys = (
        _query_copy(host, db, "SELECT id FROM public_key WHERE type IN (1, 2) ORDER BY id;")
        if has_keys == ["1"]
        else []
    )
    if not keys:
        return  # no key to serve: nothing to prove, nothing wrong
    path = f"{host.user(user).home}/.ssh/authorized_keys"
    text = out(host, f"cat {shlex.quote(path)} 2>/dev/null || true")
    lines = re.findall(r'command="(\S+) --config=(\S+) serv key-(\d+)"', text)
    missing = sorted(set(keys) - {key for _binary, _config, key in lines}, key=int)
    assert not missing, (
        f"{path} has no `serv` line for key id {', '.join(missing)}: those users cannot "
        f"use git over SSH (runuser -u {user} -- gitea admin regenerate keys)"
    )
    wrong = sorted(
        {f"{binary} --config={config}" for binary, config, _key in lines}
        - {
            f"{binary} --config={app_ini_path}"
            for binary, _config, _key in lines
            if host.file(binary).is_file
        }
    )
    assert not wrong, (
        f"{path} runs `{wrong[0]}`, not a Gitea binary here with {app_ini_path}: "
        f"regenerate the keys (runuser -u {user} -- gitea admin regenerate keys)"
    )
