"""Synthetic data for the lab: the timmy-config repository and a Gitea backup.

Everything is deterministic (fixed names, content and git dates), so the same call gives the
same commit hashes and the same manifest, on any machine with the same git and SQLite.
Runs on the operator/lab machine: the standard library and the `git` command line.

The backup manifest and its check are not defined here: they live in the on-host verifier
`files/phoenix-backup-verify` (the deploy ships it to hosts), which this module loads and runs.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import importlib.machinery
import importlib.util
import io
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from types import ModuleType

from phoenix.errors import PhoenixError

STANDINS = Path(__file__).with_name("standins")
GITEA_VERSION = "1.22.3"
GITEA_DB_VERSION = 299
EPOCH = 1714000000  # 2024-04-24T23:06:40Z: every fixture date counts from here
AUTHOR = ("Phoenix Lab", "lab@phoenix.invalid")
ORG_NAME = "Timmy_Foundation"
USER_NAMES = ["timmy", "ezra", "allegro", "bezalel", "alexander"]
REPO_NAMES = ["timmy-config", "the-nexus", "hermes-agent", "timmy-home", "turboquant"]
ISSUE_TITLES = ["Fleet health reports a stale wizard", "Document the recovery drill",
                "Rotate the backup password", "Bezalel heartbeat stops after a deploy",
                "Pin the Gitea version in the recovery deploy", "Cron jobs run twice"]
# Where the dead forge had Gitea: the hooks in the backup point there until regenerated.
OLD_GITEA_BIN = "/home/git/gitea/gitea"
OLD_GITEA_CONFIG = "/home/git/gitea/custom/conf/app.ini"

Files = dict[str, tuple[str, int]]  # relative path -> (content, mode)


class BackupError(PhoenixError):
    """A backup folder failed verification; `path` is the file that failed."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


# --- the stand-ins as modules ----------------------------------------------------------------

@functools.cache
def _standin_module(name: str, folder: Path = STANDINS) -> ModuleType:
    """Load a stand-in script (no .py suffix) as a module, so its code runs here too."""
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(folder / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def verifier_path() -> Path:
    """Not a stand-in: Phoenix's own on-host verifier, shipped from the project's files/."""
    from phoenix.settings import project

    return project() / "files" / "phoenix-backup-verify"


def __getattr__(name: str) -> Path:  # VERIFIER, looked up when first asked for (PEP 562)
    if name == "VERIFIER":
        return verifier_path()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _verifier() -> ModuleType:
    path = verifier_path()
    return _standin_module(path.name, path.parent)


# --- git -------------------------------------------------------------------------------------

def _git(*args: str, cwd: Path | None = None, date: int = EPOCH) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC",
           "HOME": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": AUTHOR[0], "GIT_AUTHOR_EMAIL": AUTHOR[1],
           "GIT_COMMITTER_NAME": AUTHOR[0], "GIT_COMMITTER_EMAIL": AUTHOR[1],
           "GIT_AUTHOR_DATE": f"{date} +0000", "GIT_COMMITTER_DATE": f"{date} +0000"}
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise PhoenixError(f"git {' '.join(args[:2])} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout.strip()


def _write_files(root: Path, files: Files) -> None:
    for rel, (content, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)


def _require_empty(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not empty: give a new path")


def _build_bare(bare: Path, commits: list[tuple[str, Files]], *, date: int,
                tags: dict[str, int] | None = None, hooks: Files | None = None) -> dict[str, str]:
    """A bare repository whose main branch has these commits, one hour apart from `date`."""
    with tempfile.TemporaryDirectory(prefix="phoenix-fixture-") as tmp:
        work = Path(tmp)
        _git("init", "-q", "-b", "main", str(work))
        shas = []
        for n, (message, files) in enumerate(commits):
            _write_files(work, files)
            _git("add", "-A", cwd=work)
            _git("commit", "-q", "--no-verify", "-m", message, cwd=work, date=date + 3600 * n)
            shas.append(_git("rev-parse", "HEAD", cwd=work))
        for tag, index in (tags or {}).items():
            _git("tag", tag, shas[index], cwd=work)
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "-q", "--bare", "-b", "main", str(bare))
        for sample in (bare / "hooks").glob("*.sample"):
            sample.unlink()
        _write_files(bare, hooks or {})
        _git("push", "-q", str(bare), "refs/heads/main", "refs/tags/*", cwd=work)
    refs = _git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare)
    return dict(line.split() for line in refs.splitlines())


# --- timmy-config ----------------------------------------------------------------------------

TIMMY_README = """\
# timmy-config -- LAB STAND-IN for Timmy_Foundation/timmy-config

Synthetic repository made by `phoenix.lab.fixtures.make_timmy_config` for recovery drills;
not the real configuration. Same layout as the real one (runbook, "Version-Controlled
Configuration"):

- `config.yaml`  the hermes harness configuration (`backend.port` is the backend's port)
- `playbooks/`   agent playbooks
- `memories/`    persistent memory YAML
- `cron/`        the cron jobs, source of truth (format below)
- `bin/`         operational helper scripts
- `deploy.sh`    overlays this checkout onto `~/.hermes` (idempotent)

## Cron format

Each `cron/*.cron` is an `/etc/cron.d` fragment: `m h dom mon dow USER command`, with a user
field. It is installed as `/etc/cron.d/<name without .cron>` (Debian's cron ignores files
whose names contain a dot), owned by root, mode 0644. `deploy.sh` only copies it to
`~/.hermes/cron/`; installing it is the host deploy's job.
"""

DEPLOY_SH = r"""#!/usr/bin/env bash
# LAB STAND-IN for Timmy_Foundation/timmy-config deploy.sh (synthetic: phoenix.lab.fixtures).
# Overlays this checkout onto ~/.hermes: config.yaml, playbooks/, memories/, cron/, bin/.
# Idempotent: a file is rewritten only when its content or mode differs, so a second run
# changes nothing. Writes nothing outside $HOME/.hermes and deletes nothing.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${HOME:?HOME is not set}/.hermes"
changed=0

ensure_dir() {
  if [ ! -d "$1" ]; then
    install -d -m 0755 "$1"
    changed=$((changed + 1))
  fi
}

put() {  # put SOURCE TARGET MODE
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    if [ "$(stat -c %a "$2")" = "$3" ]; then
      return 0
    fi
    chmod "$3" "$2"
  else
    install -m "$3" "$1" "$2"
  fi
  changed=$((changed + 1))
  echo "deploy.sh: updated ${2#"$HOME"/}"
}

for dir in "$dest" "$dest"/{bin,skins,playbooks,memories,cron,logs}; do
  ensure_dir "$dir"
done
put "$src/config.yaml" "$dest/config.yaml" 644

for tree in playbooks memories cron bin; do
  [ -d "$src/$tree" ] || continue
  mode=644
  if [ "$tree" = bin ]; then mode=755; fi
  while IFS= read -r -d '' rel; do
    ensure_dir "$dest/$rel"
  done < <(cd "$src" && find "$tree" -mindepth 1 -type d -print0 | sort -z)
  while IFS= read -r -d '' rel; do
    put "$src/$rel" "$dest/$rel" "$mode"
  done < <(cd "$src" && find "$tree" -type f -print0 | sort -z)
done
echo "deploy.sh: ~/.hermes is up to date ($changed changes)"
"""

CONFIG_YAML = """\
# LAB STAND-IN for Timmy_Foundation/timmy-config config.yaml (synthetic).
hermes:
  home: ~/.hermes
  log_dir: ~/.hermes/logs
backend:
  host: 0.0.0.0
  port: 8645
  health: /health
wizards:
  - ezra
  - allegro
  - bezalel
fleet_health:
  houses: /var/lib/hermes
  interval: 30
  max_age: 120
gitea:
  url: https://forge.alexanderwhitestone.com
  owner: Timmy_Foundation
"""

HERMES_CRON = """\
# LAB STAND-IN for timmy-config cron/ (the cron source of truth), synthetic.
# /etc/cron.d format: m h dom mon dow USER command. Installed as /etc/cron.d/hermes.
SHELL=/bin/bash
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
*/15 * * * * root /root/.hermes/bin/fleet-health.sh >>/root/.hermes/logs/fleet-health.log 2>&1
17 4 * * * root /root/.hermes/bin/rotate-logs.sh
"""

FLEET_HEALTH_SH = """\
#!/usr/bin/env bash
# LAB STAND-IN for timmy-config bin/fleet-health.sh: the age of each Hermes house's heartbeat
# (HERMES_HOME/state/gateway.heartbeat, which the gateway's event loop rewrites every 30 s).
# Prints one line per house and appends the run as one JSON line to the runbook's report,
# ~/.local/timmy/fleet-health/<UTC date>.json (FLEET_HEALTH_DIR), which the runbook's step 9
# reads (`tail -30 ~/.local/timmy/fleet-health/*.json`).
# Exit 1 when a heartbeat is older than FLEET_HEALTH_MAX_AGE seconds (120) or none exists.
set -euo pipefail
houses="${HERMES_HOUSES:-/var/lib/hermes}"
max_age="${FLEET_HEALTH_MAX_AGE:-120}"
report_dir="${FLEET_HEALTH_DIR:-$HOME/.local/timmy/fleet-health}"
now=$(date +%s)
status=0
entries=""
shopt -s nullglob
beats=("$houses"/*/state/gateway.heartbeat)
for beat in "${beats[@]}"; do
  house=$(basename "$(dirname "$(dirname "$beat")")")
  age=$((now - $(stat -c %Y "$beat")))
  if [ "$age" -le "$max_age" ]; then
    echo "fleet-health: $house ok (${age}s)"
    ok=true
  else
    echo "fleet-health: $house STALE (${age}s)"
    ok=false
    status=1
  fi
  entry=$(printf '"%s": {"age": %s, "ok": %s}' "$house" "$age" "$ok")
  entries="${entries:+$entries, }$entry"
done
if [ "${#beats[@]}" -eq 0 ]; then
  echo "fleet-health: no heartbeats in $houses/*/state"
  status=1
fi
mkdir -p "$report_dir"
printf '{"time": "%s", "ok": %s, "max_age": %s, "houses": {%s}}\\n' \\
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$([ "$status" -eq 0 ] && echo true || echo false)" \\
  "$max_age" "$entries" >>"$report_dir/$(date -u +%F).json"
exit "$status"
"""

ROTATE_LOGS_SH = """\
#!/usr/bin/env bash
# LAB STAND-IN for timmy-config bin/rotate-logs.sh: keeps ~/.hermes/logs small.
set -euo pipefail
logs="$HOME/.hermes/logs"
[ -d "$logs" ] || exit 0
find "$logs" -type f -name '*.log' -size +10M -exec truncate -s 0 {} +
"""

GITEA_API_SH = r"""#!/usr/bin/env bash
# LAB STAND-IN for timmy-config bin/gitea-api.sh: the forge calls of the runbook, step 9.
#   gitea-api.sh version
#   gitea-api.sh issue create REPO TITLE [BODY]   prints "Issue #N created"
#   gitea-api.sh issue close REPO NUMBER          prints "Issue #N closed"
# GITEA_URL (https://forge.alexanderwhitestone.com), GITEA_OWNER (Timmy_Foundation),
# GITEA_TOKEN_FILE (~/.config/gitea/token). The token reaches curl on stdin, never argv.
set -euo pipefail
api="${GITEA_URL:-https://forge.alexanderwhitestone.com}"
api="${api%/}/api/v1"
owner="${GITEA_OWNER:-Timmy_Foundation}"
token_file="${GITEA_TOKEN_FILE:-$HOME/.config/gitea/token}"

die() { echo "gitea-api.sh: $*" >&2; exit 1; }

call() {  # call METHOD PATH [JSON]: the response body; fails on HTTP errors
  local args=(--silent --show-error --fail-with-body --config - -X "$1"
              -H "Content-Type: application/json")
  if [ $# -ge 3 ]; then args+=(--data-binary "$3"); fi
  if [ -r "$token_file" ]; then
    printf 'header = "Authorization: token %s"\n' "$(tr -d '[:space:]' <"$token_file")"
  fi | curl "${args[@]}" "$api$2"
}

field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

case "${1:-} ${2:-}" in
  "version "*)
    call GET /version | field version ;;
  "issue create")
    [ $# -ge 4 ] || die "usage: issue create REPO TITLE [BODY]"
    body=$(python3 -c 'import json, sys
print(json.dumps(dict(title=sys.argv[1], body=sys.argv[2])))' \
      "$4" "${5:-}")
    number=$(call POST "/repos/$owner/$3/issues" "$body" | field number)
    echo "Issue #$number created" ;;
  "issue close")
    [ $# -ge 4 ] || die "usage: issue close REPO NUMBER"
    number=$(call PATCH "/repos/$owner/$3/issues/$4" '{"state": "closed"}' | field number)
    echo "Issue #$number closed" ;;
  *)
    die "usage: version | issue create REPO TITLE [BODY] | issue close REPO NUMBER" ;;
esac
"""


PLAYBOOK_TRIAGE = """\
# LAB STAND-IN playbook (synthetic)
name: triage
steps:
  - read: new issues
  - label: by area
  - assign: ezra
"""

PLAYBOOK_FLEET_HEALTH = """\
# LAB STAND-IN playbook (synthetic)
name: fleet-health
steps:
  - check: heartbeats
  - alert_after: 120
"""

MEMORY_FLEET = """\
# LAB STAND-IN memory (synthetic)
wizards:
  ezra: triage
  allegro: dispatch
  bezalel: builds and backups
"""

MEMORY_RECOVERY = """\
# LAB STAND-IN memory (synthetic)
last_drill: never
runbook: docs/VPS_RECOVERY_RUNBOOK.md
"""


def _timmy_config_commits() -> list[tuple[str, Files]]:
    first: Files = {
        "README.md": (TIMMY_README, 0o644),
        "deploy.sh": (DEPLOY_SH, 0o755),
        "config.yaml": (CONFIG_YAML, 0o644),
        "playbooks/triage.yaml": (PLAYBOOK_TRIAGE, 0o644),
        "playbooks/fleet-health.yaml": (PLAYBOOK_FLEET_HEALTH, 0o644),
        "memories/fleet.yaml": (MEMORY_FLEET, 0o644),
        "memories/recovery.yaml": (MEMORY_RECOVERY, 0o644),
        "bin/fleet-health.sh": (FLEET_HEALTH_SH, 0o755),
        "bin/gitea-api.sh": (GITEA_API_SH, 0o755),
    }
    second: Files = {
        "cron/hermes.cron": (HERMES_CRON, 0o644),
        "bin/rotate-logs.sh": (ROTATE_LOGS_SH, 0o755),
    }
    return [("Hermes configuration, playbooks, memories and helpers", first),
            ("Cron jobs: the source of truth for /etc/cron.d/hermes", second)]


def make_timmy_config(dest: Path) -> str:
    """A bare timmy-config repository at dest, clonable over plain ("dumb") HTTP from a static
    file server; returns the commit sha of main (the same on every call)."""
    dest = Path(dest)
    _require_empty(dest)
    post_update: Files = {"hooks/post-update": ("#!/bin/sh\nexec git update-server-info\n", 0o755)}
    refs = _build_bare(dest, _timmy_config_commits(), date=EPOCH, hooks=post_update)
    _git("update-server-info", cwd=dest)
    return refs["refs/heads/main"]


# --- the Gitea backup ------------------------------------------------------------------------

# The tables and columns the lab touches, named and typed as Gitea 1.22's models declare them
# (xorm on SQLite): models/user/user.go, models/repo/repo.go, models/issues/issue.go and
# comment.go, models/auth/access_token.go and twofactor.go, models/repo/attachment.go,
# models/git/lfs.go, models/asymkey/ssh_key.go, models/organization/org_user.go.
GITEA_SCHEMA = """
CREATE TABLE `version` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `version` INTEGER NULL);
CREATE TABLE `user` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `lower_name` TEXT NOT NULL,
 `name` TEXT NOT NULL, `full_name` TEXT NULL, `email` TEXT NOT NULL,
 `keep_email_private` INTEGER NULL, `passwd` TEXT NOT NULL,
 `passwd_hash_algo` TEXT DEFAULT 'argon2' NOT NULL,
 `must_change_password` INTEGER DEFAULT 0 NOT NULL,
 `login_type` INTEGER NULL, `login_name` TEXT NULL, `type` INTEGER NULL, `location` TEXT NULL,
 `website` TEXT NULL, `rands` TEXT NULL, `salt` TEXT NULL, `language` TEXT NULL,
 `description` TEXT NULL, `created_unix` INTEGER NULL, `updated_unix` INTEGER NULL,
 `last_login_unix` INTEGER NULL, `is_active` INTEGER NULL, `is_admin` INTEGER NULL,
 `is_restricted` INTEGER DEFAULT 0 NOT NULL, `prohibit_login` INTEGER DEFAULT 0 NOT NULL,
 `avatar` TEXT DEFAULT '' NOT NULL, `avatar_email` TEXT DEFAULT '' NOT NULL,
 `use_custom_avatar` INTEGER NULL, `num_repos` INTEGER NULL, `num_members` INTEGER NULL,
 `visibility` INTEGER DEFAULT 0 NOT NULL);
CREATE UNIQUE INDEX `UQE_user_lower_name` ON `user` (`lower_name`);
CREATE UNIQUE INDEX `UQE_user_name` ON `user` (`name`);
CREATE INDEX `IDX_user_is_active` ON `user` (`is_active`);
CREATE TABLE `org_user` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `uid` INTEGER NULL,
 `org_id` INTEGER NULL, `is_public` INTEGER NULL);
CREATE UNIQUE INDEX `UQE_org_user_s` ON `org_user` (`uid`, `org_id`);
CREATE TABLE `repository` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
 `owner_id` INTEGER NULL, `owner_name` TEXT NULL, `lower_name` TEXT NOT NULL, `name` TEXT NOT NULL,
 `description` TEXT NULL, `website` TEXT NULL, `original_url` TEXT NULL,
 `default_branch` TEXT NULL, `num_watches` INTEGER NULL, `num_stars` INTEGER NULL,
 `num_forks` INTEGER NULL, `num_issues` INTEGER NULL, `num_closed_issues` INTEGER NULL,
 `num_pulls` INTEGER NULL, `num_closed_pulls` INTEGER NULL, `is_private` INTEGER NULL,
 `is_empty` INTEGER NULL, `is_archived` INTEGER NULL, `is_mirror` INTEGER NULL,
 `is_fork` INTEGER DEFAULT 0 NOT NULL, `fork_id` INTEGER NULL, `size` INTEGER DEFAULT 0 NOT NULL,
 `created_unix` INTEGER NULL, `updated_unix` INTEGER NULL);
CREATE UNIQUE INDEX `UQE_repository_s` ON `repository` (`owner_id`, `lower_name`);
CREATE INDEX `IDX_repository_lower_name` ON `repository` (`lower_name`);
CREATE TABLE `issue` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `repo_id` INTEGER NULL,
 `index` INTEGER NULL, `poster_id` INTEGER NULL, `original_author` TEXT NULL,
 `original_author_id` INTEGER NULL, `name` TEXT NULL, `content` TEXT NULL,
 `milestone_id` INTEGER NULL, `priority` INTEGER NULL, `is_closed` INTEGER NULL,
 `is_pull` INTEGER NULL, `num_comments` INTEGER NULL, `ref` TEXT NULL,
 `deadline_unix` INTEGER NULL, `created_unix` INTEGER NULL, `updated_unix` INTEGER NULL,
 `closed_unix` INTEGER NULL, `is_locked` INTEGER DEFAULT 0 NOT NULL);
CREATE UNIQUE INDEX `UQE_issue_repo_index` ON `issue` (`repo_id`, `index`);
CREATE INDEX `IDX_issue_poster_id` ON `issue` (`poster_id`);
CREATE TABLE `issue_index` (`group_id` INTEGER PRIMARY KEY NOT NULL, `max_index` INTEGER NULL);
CREATE TABLE `access_token` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `uid` INTEGER NULL,
 `name` TEXT NULL, `token_hash` TEXT NULL, `token_salt` TEXT NULL, `token_last_eight` TEXT NULL,
 `scope` TEXT NULL, `created_unix` INTEGER NULL, `updated_unix` INTEGER NULL);
CREATE UNIQUE INDEX `UQE_access_token_token_hash` ON `access_token` (`token_hash`);
CREATE INDEX `IDX_access_token_uid` ON `access_token` (`uid`);
CREATE INDEX `IDX_access_token_token_last_eight` ON `access_token` (`token_last_eight`);
CREATE TABLE `public_key` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
 `owner_id` INTEGER NOT NULL, `name` TEXT NOT NULL, `fingerprint` TEXT NOT NULL,
 `content` TEXT NOT NULL, `mode` INTEGER DEFAULT 2 NOT NULL, `type` INTEGER DEFAULT 1 NOT NULL,
 `login_source_id` INTEGER DEFAULT 0 NOT NULL, `created_unix` INTEGER NULL,
 `updated_unix` INTEGER NULL, `verified` INTEGER DEFAULT 0 NOT NULL);
CREATE TABLE `attachment` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `uuid` TEXT NULL,
 `repo_id` INTEGER NULL, `issue_id` INTEGER NULL, `release_id` INTEGER NULL,
 `uploader_id` INTEGER DEFAULT 0 NULL, `comment_id` INTEGER NULL, `name` TEXT NULL,
 `download_count` INTEGER DEFAULT 0 NULL, `size` INTEGER DEFAULT 0 NULL,
 `created_unix` INTEGER NULL);
CREATE UNIQUE INDEX `UQE_attachment_uuid` ON `attachment` (`uuid`);
CREATE TABLE `lfs_meta_object` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
 `oid` TEXT NOT NULL, `size` INTEGER NOT NULL, `repository_id` INTEGER NOT NULL,
 `created_unix` INTEGER NULL, `updated_unix` INTEGER NULL);
CREATE UNIQUE INDEX `UQE_lfs_meta_object_s` ON `lfs_meta_object` (`oid`, `repository_id`);
CREATE TABLE `comment` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `type` INTEGER NULL,
 `poster_id` INTEGER NULL, `original_author` TEXT NULL, `original_author_id` INTEGER NULL,
 `issue_id` INTEGER NULL, `content` TEXT NULL, `content_version` INTEGER DEFAULT 0 NOT NULL,
 `created_unix` INTEGER NULL, `updated_unix` INTEGER NULL);
CREATE INDEX `IDX_comment_issue_id` ON `comment` (`issue_id`);
CREATE INDEX `IDX_comment_type` ON `comment` (`type`);
CREATE TABLE `two_factor` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `uid` INTEGER NULL,
 `secret` TEXT NULL, `scratch_salt` TEXT NULL, `scratch_hash` TEXT NULL,
 `last_used_passcode` TEXT NULL, `created_unix` INTEGER NULL, `updated_unix` INTEGER NULL);
CREATE UNIQUE INDEX `UQE_two_factor_uid` ON `two_factor` (`uid`);
CREATE INDEX `IDX_public_key_owner_id` ON `public_key` (`owner_id`);
CREATE INDEX `IDX_public_key_fingerprint` ON `public_key` (`fingerprint`);
"""


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def _ssh_key(name: str) -> tuple[str, str]:
    """A well-formed (and useless) ed25519 public key and its fingerprint."""
    blob = (b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20"
            + hashlib.sha256(f"lab-key:{name}".encode()).digest())
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {name}@lab", fingerprint


def _repo_commits(owner: str, name: str) -> list[tuple[str, Files]]:
    readme = f"# {name}\n\nSynthetic repository {owner}/{name}, made by phoenix.lab.fixtures.\n"
    return [("Initial commit", {"README.md": (readme, 0o644)}),
            ("Add design notes", {"docs/notes.md": (f"Notes for {name}.\n", 0o644)}),
            ("Say how to run it", {"README.md": (readme + "\nRun: `make`.\n", 0o644),
                                   "Makefile": ("all:\n\t@echo ok\n", 0o644)})]


def _write_db(path: Path, users: list[dict], org: dict, repos: list[dict],
              issues: list[dict]) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(GITEA_SCHEMA)
        conn.execute("INSERT INTO version (id, version) VALUES (1, ?)", (GITEA_DB_VERSION,))
        for u in users + [org]:
            conn.execute(
                "INSERT INTO user (id, lower_name, name, full_name, email, keep_email_private, "
                "passwd, passwd_hash_algo, must_change_password, login_type, login_name, type, "
                "location, website, rands, salt, language, description, created_unix, "
                "updated_unix, last_login_unix, is_active, is_admin, is_restricted, "
                "prohibit_login, avatar, avatar_email, num_repos, num_members, visibility) "
                "VALUES (:id, :lower_name, :name, :full_name, :email, 0, :passwd, "
                "'pbkdf2$50000$50', 0, 0, '', :type, '', '', :rands, :salt, 'en-US', '', "
                ":created, :created, :created, 1, :is_admin, 0, 0, '', :email, :num_repos, "
                ":num_members, 0)", u)
        for u in users:
            conn.execute("INSERT INTO org_user (uid, org_id, is_public) VALUES (?, ?, 1)",
                         (u["id"], org["id"]))
            content, fingerprint = _ssh_key(u["name"])
            conn.execute("INSERT INTO public_key (owner_id, name, fingerprint, content, mode, "
                         "type, login_source_id, created_unix, updated_unix, verified) "
                         "VALUES (?, ?, ?, ?, 2, 1, 0, ?, ?, 0)",
                         (u["id"], f"{u['name']}@lab", fingerprint, content, u["created"],
                          u["created"]))
        for r in repos:
            conn.execute(
                "INSERT INTO repository (id, owner_id, owner_name, lower_name, name, description, "
                "website, original_url, default_branch, num_watches, num_stars, num_forks, "
                "num_issues, num_closed_issues, num_pulls, num_closed_pulls, is_private, "
                "is_empty, is_archived, is_mirror, is_fork, fork_id, size, created_unix, "
                "updated_unix) VALUES (:id, :owner_id, :owner_name, :lower_name, :name, "
                ":description, '', '', 'main', 1, 0, 0, :num_issues, :num_closed, 0, 0, 0, 0, 0, "
                "0, 0, 0, :size, :created, :created)", r)
            if r["num_issues"]:
                conn.execute("INSERT INTO issue_index (group_id, max_index) VALUES (?, ?)",
                             (r["id"], r["num_issues"]))
        for i in issues:
            conn.execute(
                'INSERT INTO issue (id, repo_id, "index", poster_id, original_author, '
                "original_author_id, name, content, milestone_id, priority, is_closed, is_pull, "
                "num_comments, ref, deadline_unix, created_unix, updated_unix, closed_unix, "
                "is_locked) VALUES (:id, :repo_id, :index, :poster_id, '', 0, :title, :content, "
                "0, 0, :is_closed, 0, 0, '', 0, :created, :updated, :closed, 0)", i)
        conn.commit()
        conn.execute("VACUUM")
    finally:
        conn.close()


CUSTOM_ROBOTS = """\
# lab fixture: the forge's custom robots.txt, from the backup
User-agent: *
Disallow: /
"""

CUSTOM_HOME = """\
{{template "base/head" .}}
<div class="home">Timmy Foundation forge (lab fixture, restored from backup)</div>
{{template "base/footer" .}}
"""


def make_gitea_backup(dest: Path, *, users: int = 3, repos: int = 3,
                      issues_per_repo: int = 4) -> dict:
    """A Gitea backup folder at dest (gitea.db, repositories/, custom/, manifest.json), as the
    dead forge's backup would hold it; returns the manifest (the same on every call)."""
    if users < 1 or repos < 0 or issues_per_repo < 0:
        raise ValueError("need users >= 1, repos >= 0, issues_per_repo >= 0")
    dest = Path(dest)
    _require_empty(dest)
    dest.mkdir(parents=True, exist_ok=True)
    names = [USER_NAMES[i] if i < len(USER_NAMES) else f"user{i + 1}" for i in range(users)]
    user_rows = [{"id": i + 1, "name": n, "lower_name": n, "full_name": n.capitalize(),
                  "email": f"{n}@forge.lab.invalid", "type": 0, "is_admin": int(i == 0),
                  "salt": _digest("salt", n)[:32], "rands": _digest("rands", n)[:32],
                  "passwd": hashlib.pbkdf2_hmac("sha256", password_of(n).encode(),
                                                _digest("salt", n)[:32].encode(), 50000,
                                                50).hex(),
                  "created": EPOCH - 86400 * (users - i), "num_repos": 0, "num_members": 0}
                 for i, n in enumerate(names)]
    org = {"id": users + 1, "name": ORG_NAME, "lower_name": ORG_NAME.lower(),
           "full_name": "Timmy Foundation", "email": "", "type": 1, "is_admin": 0, "salt": "",
           "rands": "", "passwd": "", "created": EPOCH - 86400 * (users + 1), "num_repos": 0,
           "num_members": users}
    owners = [org] + user_rows
    repo_rows: list[dict] = []
    issue_rows: list[dict] = []
    gitea = _standin_module("gitea")
    stale_hooks = {rel: (text, 0o755)
                   for rel, text in gitea.hook_files(OLD_GITEA_BIN, OLD_GITEA_CONFIG).items()}
    for j in range(repos):
        owner = owners[j % len(owners)]
        name = REPO_NAMES[j] if j < len(REPO_NAMES) else f"lab-repo-{j + 1}"
        bare = dest / "repositories" / owner["lower_name"] / f"{name.lower()}.git"
        commits = (_timmy_config_commits() if name == "timmy-config"
                   else _repo_commits(owner["name"], name))
        created = EPOCH + 86400 * j
        _build_bare(bare, commits, date=created, tags={"v0.1.0": max(0, len(commits) - 2)})
        _write_files(bare, stale_hooks)
        owner["num_repos"] += 1
        closed = 0
        for k in range(1, issues_per_repo + 1):
            is_closed = int(k % 3 == 0)
            closed += is_closed
            at = created + 7200 * k
            issue_rows.append({
                "id": len(issue_rows) + 1, "repo_id": j + 1, "index": k,
                "poster_id": user_rows[(j + k) % users]["id"],
                "title": ISSUE_TITLES[(j * issues_per_repo + k - 1) % len(ISSUE_TITLES)],
                "content": f"Synthetic issue {k} of {owner['name']}/{name} (lab fixture).",
                "is_closed": is_closed, "created": at, "updated": at + (1800 if is_closed else 0),
                "closed": at + 1800 if is_closed else 0})
        size = sum(p.stat().st_size for p in bare.rglob("*") if p.is_file())
        repo_rows.append({"id": j + 1, "owner_id": owner["id"], "owner_name": owner["name"],
                          "lower_name": name.lower(), "name": name,
                          "description": f"{name} (synthetic lab fixture)",
                          "num_issues": issues_per_repo, "num_closed": closed, "size": size,
                          "created": created})
    _write_db(dest / "gitea.db", user_rows, org, repo_rows, issue_rows)
    _write_files(dest / "custom", {"public/robots.txt": (CUSTOM_ROBOTS, 0o644),
                                   "templates/home.tmpl": (CUSTOM_HOME, 0o644)})
    return write_manifest(dest, created=_iso(EPOCH + 86400 * max(repos, 1)))


def _iso(unix: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(unix))


def write_manifest(folder: Path, *, created: str | None = None) -> dict:
    """(Re)write folder/manifest.json from the folder as it is now, e.g. after add_api_token
    on a backup's gitea.db; `created` defaults to now."""
    verifier = _verifier()
    try:
        return verifier.write_manifest(str(folder), gitea_version=GITEA_VERSION, created=created)
    except verifier.BackupError as exc:
        raise BackupError(f"cannot seal backup {folder}: {exc}", path=exc.path) from None


def verify_backup(folder: Path) -> dict:
    """The on-host verifier's check, run here: every checksum, the refs, and integrity_check and
    the counts on a copy of gitea.db. Returns the counts; raises BackupError naming the file."""
    verifier = _verifier()
    try:
        return verifier.verify(str(folder))["counts"]
    except verifier.BackupError as exc:
        raise BackupError(f"backup {folder} failed verification: {exc}", path=exc.path) from None


def add_attachment(data_dir: Path, db_path: Path, *, repo_id: int, issue_id: int, name: str,
                   content: bytes) -> str:
    """An issue attachment as Gitea 1.22 keeps it: a row in `attachment` and its file at
    data/attachments/<u[0]>/<u[1]>/<uuid>; returns the uuid (derived from the content)."""
    digest = hashlib.sha256(content).hexdigest()
    uuid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    path = Path(data_dir) / "attachments" / uuid[0] / uuid[1] / uuid
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("INSERT INTO attachment (uuid, repo_id, issue_id, release_id, uploader_id, "
                     "comment_id, name, download_count, size, created_unix) "
                     "VALUES (?, ?, ?, 0, 1, 0, ?, 0, ?, ?)",
                     (uuid, repo_id, issue_id, name, len(content), EPOCH))
    return uuid


def add_lfs_object(data_dir: Path, db_path: Path, *, repo_id: int, content: bytes) -> str:
    """An LFS object as Gitea 1.22 keeps it: a `lfs_meta_object` row and the content at
    data/lfs/<oid[0:2]>/<oid[2:4]>/<oid[4:]>; returns the oid (sha256 of the content)."""
    oid = hashlib.sha256(content).hexdigest()
    path = Path(data_dir) / "lfs" / oid[0:2] / oid[2:4] / oid[4:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("INSERT INTO lfs_meta_object (oid, size, repository_id, created_unix, "
                     "updated_unix) VALUES (?, ?, ?, ?, ?)",
                     (oid, len(content), repo_id, EPOCH, EPOCH))
    return oid


def password_of(user: str) -> str:
    """The password of a fixture user (lab only): what its pbkdf2 `passwd` row hashes."""
    return f"phoenix-lab:{user}"


def enroll_totp_sql(*, secret_key: str, uid: int, otp_secret: str) -> str:
    """The SQL that enrolls user `uid` in TOTP as Gitea 1.22's enroll handler leaves it
    (routers/web/user/setting/security/2fa.go EnrollTwoFactorPost: a two_factor row whose
    secret TwoFactor.SetSecret encrypted with SECRET_KEY, models/auth/twofactor.go). Every value
    is a number or base64, so the literal SQL is safe; it holds no secret in the clear."""
    stored = _standin_module("gitea").encrypt_totp_secret(secret_key, otp_secret)
    now = int(time.time())
    return ("INSERT OR REPLACE INTO two_factor (uid, secret, scratch_salt, scratch_hash, "
            f"last_used_passcode, created_unix, updated_unix) VALUES ({int(uid)}, '{stored}', "
            f"'', '', '', {now}, {now});\n")


def add_api_token(db_path: Path, user: str, token: str, *, name: str | None = None,
                  scope: str = "all") -> int:
    """Give `user` an API token in a Gitea database (sha256 hex, as the stand-in checks it);
    returns the row id. The caller owns the token: it is never printed or logged here."""
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    conn = sqlite3.connect(db_path)
    try:
        row = conn.execute("SELECT id FROM user WHERE lower_name = ?", (user.lower(),)).fetchone()
        if row is None:
            raise PhoenixError(f"no user {user!r} in {db_path}")
        now = int(time.time())
        with conn:
            cursor = conn.execute(
                "INSERT INTO access_token (uid, name, token_hash, token_salt, token_last_eight, "
                "scope, created_unix, updated_unix) VALUES (?, ?, ?, '', ?, ?, ?, ?)",
                (row[0], name or f"phoenix-{token_hash[:8]}", token_hash, token[-8:], scope,
                 now, now))
        return int(cursor.lastrowid)
    except sqlite3.IntegrityError:
        raise PhoenixError(f"that token is already in {db_path}") from None
    finally:
        conn.close()


def corrupt_database(db_path: Path) -> int:
    """Flip the header bytes of the middle page of an SQLite file, as a torn write or a bad
    disk would, so that PRAGMA integrity_check fails for sure; returns the offset changed."""
    path = Path(db_path)
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = len(data) // page_size if page_size else 0
    if pages < 3:
        raise ValueError(f"{path} is not an SQLite file of 3 pages or more")
    offset = (pages // 2) * page_size
    for i in range(offset, offset + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return offset


def make_backup_archive(folder: Path, archive: Path) -> str:
    """folder as a Phoenix backup archive (the format is production code's:
    phoenix.sources.write_archive); returns the archive's sha256 hex."""
    from phoenix.sources import write_archive

    return write_archive(folder, archive)


# --- the runbook's forge, set up by hand (issue 12: what `phoenix adopt` finds) ---------------

# Data in /var/lib/gitea (runbook step 4); app.ini where Gitea's own installer writes it
# (custom/conf), owned and writable by the run user; Gitea's recommended unit, its own.
RUNBOOK_APP_INI = "/var/lib/gitea/custom/conf/app.ini"
RUNBOOK_UNIT = """\
[Unit]
Description=Gitea (set up by hand, as the runbook's forge was)
After=network.target

[Service]
Type=notify
User=gitea
Group=gitea
WorkingDirectory=/var/lib/gitea
ExecStart=/usr/local/bin/gitea web -c /var/lib/gitea/custom/conf/app.ini
Restart=always
Environment=USER=gitea HOME=/home/gitea GITEA_WORK_DIR=/var/lib/gitea

[Install]
WantedBy=multi-user.target
"""


def make_runbook_forge(root: Path, *, identity: dict[str, str], token: str) -> dict[str, str]:
    """The files of a forge set up the runbook's way, not by Phoenix, below `root` (to unpack
    at / on a droplet): the Gitea stand-in, its own unit, app.ini with `identity` (SECRET_KEY,
    INTERNAL_TOKEN, JWT_SECRET, LFS_JWT_SECRET; LFS on), the lab backup's data with an
    attachment, an LFS object, an avatar, jwt/ and a session, and `token` for the API.
    Returns {path below the data folder: sha256} of the attachment and the LFS object."""
    root = Path(root)
    work = root / "var/lib/gitea"
    data, db = work / "data", work / "data" / "gitea.db"
    with tempfile.TemporaryDirectory(prefix="phoenix-fixture-") as tmp:
        made = Path(tmp) / "gitea"
        make_gitea_backup(made)
        data.mkdir(parents=True)
        os.replace(made / "gitea.db", db)
        shutil.move(made / "repositories", data / "gitea-repositories")
        shutil.move(made / "custom", work / "custom")
    add_api_token(db, USER_NAMES[0], token)
    attachment = add_attachment(data, db, repo_id=1, issue_id=1, name="drill.log",
                                content=b"the attachment of issue 1\n" * 50)
    oid = add_lfs_object(data, db, repo_id=1, content=hashlib.sha512(b"lfs").digest() * 4000)
    for rel, content in (("avatars/1", b"\x89PNG avatar"), ("jwt/private.pem", b"oauth2 key"),
                         ("sessions/9/a/9a1", b"a session")):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(content)
    ini = root / RUNBOOK_APP_INI.lstrip("/")
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text(
        "APP_NAME = Timmy Foundation forge\nRUN_USER = gitea\nRUN_MODE = prod\n"
        "WORK_PATH = /var/lib/gitea\n\n[server]\nDOMAIN = forge.lab.test\n"
        "HTTP_ADDR = 0.0.0.0\nHTTP_PORT = 3000\nROOT_URL = http://forge.lab.test:3000/\n"
        "APP_DATA_PATH = /var/lib/gitea/data\nLFS_START_SERVER = true\n"
        f"LFS_JWT_SECRET = {identity['LFS_JWT_SECRET']}\n\n"
        "[database]\nDB_TYPE = sqlite3\nPATH = /var/lib/gitea/data/gitea.db\n\n"
        "[repository]\nROOT = /var/lib/gitea/data/gitea-repositories\n\n"
        f"[security]\nINSTALL_LOCK = true\nSECRET_KEY = {identity['SECRET_KEY']}\n"
        f"INTERNAL_TOKEN = {identity['INTERNAL_TOKEN']}\n\n"
        f"[oauth2]\nJWT_SECRET = {identity['JWT_SECRET']}\n\n"
        "[mailer]\nENABLED = true\nSMTP_ADDR = smtp.forge.lab.test\n\n"
        "[webhook]\nALLOWED_HOST_LIST = ci.forge.lab.test\n")
    ini.chmod(0o640)
    binary = root / "usr/local/bin/gitea"
    binary.parent.mkdir(parents=True)
    shutil.copy(STANDINS / "gitea", binary)
    binary.chmod(0o755)
    unit = root / "etc/systemd/system/gitea.service"
    unit.parent.mkdir(parents=True)
    unit.write_text(RUNBOOK_UNIT)
    found = {f"attachments/{attachment[0]}/{attachment[1]}/{attachment}": None,
             f"lfs/{oid[0:2]}/{oid[2:4]}/{oid[4:]}": None}
    return {rel: hashlib.sha256((data / rel).read_bytes()).hexdigest() for rel in found}


# What a droplet runs to put make_runbook_forge's tar.gz (on stdin) in place and start Gitea.
RUNBOOK_SETUP = """\
set -eu
getent group gitea >/dev/null || groupadd --system gitea
id gitea >/dev/null 2>&1 || useradd --system --gid gitea --home-dir /home/gitea \\
    --create-home --shell /bin/bash gitea
tar -xzf - -C /
chown -R gitea:gitea /var/lib/gitea
systemctl daemon-reload
systemctl enable --now gitea.service   # Type=notify: back once Gitea listens
"""


def tar_gz(root: Path) -> bytes:
    """The folder's content as tar.gz bytes, paths relative to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(Path(root).iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()
