"""Which Gitea a backup's database comes from, and what starting this release on it takes.

Gitea keeps its schema's version in the `version` table and migrates an older database
inside `gitea web`'s start-up, one migration after another; it refuses a database newer than
its release, or older than 1.5.3's (models/migrations/migrations.go). Under systemd's
Type=notify that start-up is bounded by TimeoutStartSec (90 s by default), and Restart=always
would enter a killed migration again: an older backup gets a start timeout sized for its gap,
a newer one is refused in one line before anything on the host is touched.
"""

from __future__ import annotations

import re
import shlex
from urllib.parse import quote

from pyinfra.api import QuoteString, StringCommand

from phoenix.errors import PhoenixError

MIN_DB_VERSION = 70  # migrations.go minDBVersion: Gitea 1.5.3
# The database version each Gitea release ends at (migrations.go's "Gitea X ends at" notes).
RELEASE_DB_VERSIONS = {
    "1.6": 73,
    "1.7": 76,
    "1.8": 82,
    "1.9": 88,
    "1.10": 102,
    "1.11": 117,
    "1.12": 140,
    "1.13": 155,
    "1.14": 178,
    "1.15": 189,
    "1.16": 211,
    "1.17": 224,
    "1.18": 231,
    "1.19": 244,
    "1.20": 260,
    "1.21": 280,
    "1.22": 299,
    "1.23": 312,
}
# Where the restore puts the start timeout it sizes: /run, so it lasts until the next boot
# and never differs from what the deploy renders in /etc.
TIMEOUT_DROPIN = "/run/systemd/system/gitea.service.d/50-phoenix-migration.conf"


def db_version_for(release: str) -> int:
    """The database version Gitea `release` (x.y.z) expects."""
    minor = ".".join(release.lstrip("v").split(".")[:2])
    if minor not in RELEASE_DB_VERSIONS:
        raise PhoenixError(
            f"Phoenix does not know the database version of Gitea {release} (it knows "
            f"{min(RELEASE_DB_VERSIONS, key=_key)} to {max(RELEASE_DB_VERSIONS, key=_key)})"
        )
    return RELEASE_DB_VERSIONS[minor]


def _key(minor: str) -> tuple[int, ...]:
    return tuple(int(part) for part in minor.split("."))


def release_for(db_version: int) -> str:
    """The Gitea release a database version comes from, in words."""
    for minor, end in sorted(RELEASE_DB_VERSIONS.items(), key=lambda item: item[1]):
        if db_version == end:
            return f"Gitea {minor}"
        if db_version < end:
            return f"a Gitea before {minor}"
    return f"a Gitea after {max(RELEASE_DB_VERSIONS, key=_key)}"


def start_timeout(
    *, backup_db_version: int, gitea_version: str, base: int, per_migration: int
) -> int:
    """Seconds Gitea `gitea_version` may take to start on the backup's database: `base`, and
    `per_migration` for each migration it is behind. A database Gitea would refuse raises
    the one line that says why."""
    expected = db_version_for(gitea_version)
    if backup_db_version > expected:
        raise PhoenixError(
            f"the backup's database is at migration version {backup_db_version}, from "
            f"{release_for(backup_db_version)}, newer than Gitea {gitea_version} ({expected}), "
            "which refuses it: set gitea_version to the backup's release or restore an older "
            "backup; nothing was touched"
        )
    if backup_db_version < MIN_DB_VERSION:
        raise PhoenixError(
            f"the backup's database is at migration version {backup_db_version}, older than "
            f"Gitea 1.5.3's ({MIN_DB_VERSION}), which Gitea {gitea_version} no longer migrates: "
            "upgrade it through Gitea 1.6.4 first; nothing was touched"
        )
    return base + per_migration * (expected - backup_db_version)


def guard_command(
    db_path: str,
    *,
    gitea_version: str,
    base: int,
    per_migration: int,
    where: str,
    dropin: str = TIMEOUT_DROPIN,
    reload: str = "systemctl daemon-reload",
) -> StringCommand:
    """The host's side of start_timeout, run on the staged backup before Gitea is stopped: the
    version row read read-only (the backup is hostile input: anything but a plain number
    is refused), a refusal as one line on stderr (exit 2), else Gitea's unit given the start
    timeout its migrations need (TIMEOUT_DROPIN; none when it has nothing to migrate)."""
    expected = db_version_for(gitea_version)
    where = re.sub(r"[^\w .:/@+-]", "?", where)  # inside the shell's double quotes
    dropin = shlex.quote(dropin)
    uri = shlex.quote(f"file:{quote(db_path)}?immutable=1")
    refuse = (
        f"echo \"{where}: the backup's database is at migration version $v; Gitea "
        f"{gitea_version} expects {expected} and"
    )
    script = (
        f"v=$(sqlite3 -readonly {uri} 'SELECT version FROM version WHERE id = 1') || v=; "
        'case "$v" in ""|*[!0-9]*|0*|??????????*) '
        f"echo \"{where}: the backup's database has no Gitea version row; nothing was "
        'touched" >&2; exit 2;; esac; '
        f'if [ "$v" -gt {expected} ]; then {refuse} refuses a newer one: set gitea_version '
        f"to the backup's release or restore an older backup; nothing was touched\" >&2; "
        "exit 2; fi; "
        f'if [ "$v" -lt {MIN_DB_VERSION} ]; then {refuse} no longer migrates one older than '
        f"{MIN_DB_VERSION} (1.5.3): upgrade it through Gitea 1.6.4 first; nothing was "
        'touched" >&2; exit 2; fi; '
        f'if [ "$v" -eq {expected} ]; then rm -f {dropin}; else '
        f"mkdir -p $(dirname {dropin}) && "
        f"printf '[Service]\\nTimeoutStartSec=%d\\n' "
        f"$(({base} + {per_migration} * ({expected} - v))) > {dropin}; fi; "
        f"{reload}"
    )
    return StringCommand("sh", "-c", QuoteString(script))
