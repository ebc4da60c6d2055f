"""What the drill does on a forge and reads back from it: the data users and agents write
(issues, comments, an attachment, an avatar, LFS, commits, memories, chats, a TOTP
enrollment), and what it compares after the recovery (memories, sessions, one-primary
duties). The trickle of writes until the disaster, and what of it came back, is rpo.py's."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from phoenix.errors import PhoenixError
from phoenix.forge.api import Forge, TwoFactorUser
from phoenix.sshconf import Target


def bare_git(bare: str) -> str:
    """git on a forge's bare repository (`bare` quoted) as the user who owns it: as root, git
    would need safe.directory, which turns off its check that a repository is the user's own."""
    return f'runuser -u "$(stat -c %U {bare})" -- git --git-dir={bare}'


def ssh(target: Target, command: str, *, timeout: float = 120) -> str:
    from phoenix.sshconf import remote

    return remote(target, command, timeout=timeout)


# GIT_ASKPASS for push_commit: the user, then the token, each from the environment git passes on
# to it; the token stays in a 0600 file of a 0700 folder removed at the end.
ASKPASS = (
    '#!/bin/sh\ncase "$1" in Username*) printf \'%s\\n\' "$PHOENIX_PUSH_USER" ;; '
    '*) cat "$PHOENIX_PUSH_TOKEN_FILE" ;; esac\n'
)


def push_commit(
    target: Target, settings: dict, repo: str, message: str, *, user: str, token: str
) -> None:
    """A commit pushed to `repo` ("owner/name") as a forge user does: over git's smart HTTP to
    the forge's Gitea (from the droplet itself, on gitea_http_addr:gitea_http_port), as `user`
    with its API token. Gitea's hooks refuse a push made straight into the repository on disk
    (1.22's cmd/hook.go), so this is the one way in. The token reaches the droplet on ssh's
    stdin and git through GIT_ASKPASS reading a 0600 file, never a command line or a log."""
    q = shlex.quote
    url = f"http://{settings['gitea_http_addr']}:{settings['gitea_http_port']}/{repo}.git"
    script = (
        "set -e; umask 077; w=$(mktemp -d); trap 'rm -rf \"$w\"' EXIT; "
        'IFS= read -r t; printf \'%s\\n\' "$t" > "$w/token"; unset t; '
        f'printf %s {q(ASKPASS)} > "$w/askpass"; chmod 700 "$w/askpass"; '
        "unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY; "
        'export GIT_ASKPASS="$w/askpass" PHOENIX_PUSH_TOKEN_FILE="$w/token" '
        f"PHOENIX_PUSH_USER={q(user)} GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1 "
        'GIT_CONFIG_GLOBAL=/dev/null; cd "$w"; '
        f"git clone -q {q(url)} w; cd w; "
        f"git -c user.name=drill -c user.email=drill@forge.lab.invalid commit -q "
        f"--allow-empty -m {q(message)}; git push -q origin HEAD"
    )
    ssh_input(target, f"bash -c {q(script)}", token + "\n")


def ssh_input(target: Target, command: str, data: str, *, timeout: float = 120) -> str:
    """`command` on the target with `data` on its stdin (never on a command line)."""
    import subprocess

    from phoenix.sshconf import ssh_command

    proc = subprocess.run(
        ssh_command(target, command),
        input=data,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
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
    from phoenix.forge.appini import DEFAULT_SECRET_KEY

    # an empty or absent SECRET_KEY is Gitea's built-in one (modules/setting/security.go)
    key = ssh(target, f"sed -n 's/^SECRET_KEY *= *//p' {ini} | tail -1").strip()
    key = key or DEFAULT_SECRET_KEY
    db = shlex.quote(settings["gitea_db_path"])
    uid = ssh(
        target,
        f"sqlite3 -readonly {db} \"SELECT id FROM user WHERE lower_name = '{login.lower()}'\"",
    ).strip()
    if not uid.isdigit():
        raise PhoenixError(f"no user {login} in the forge's database on {target.host}")
    otp_secret = base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")
    ssh_input(
        target,
        f"runuser -u {shlex.quote(settings['gitea_user'])} -- sqlite3 {db}",
        # a busy timeout, as Gitea's own (SQLITE_TIMEOUT): Litestream's checkpoints
        # hold the write lock for moments
        ".timeout 20000\n"
        + fixtures.enroll_totp_sql(secret_key=key, uid=int(uid), otp_secret=otp_secret),
    )
    return TwoFactorUser(login, fixtures.password_of(login), otp_secret)


def avatar_png(label: str) -> bytes:
    """A 1x1 PNG whose grey level depends on the label: a distinct avatar per write."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    grey = bytes([0, sum(label.encode()) % 256])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(grey))
        + chunk(b"IEND", b"")
    )


def write_data(
    forge: Forge, target: Target, settings: dict, *, label: str, lfs: dict[str, dict[str, int]]
) -> list[str]:
    """What users do on a forge: an issue with a body and a comment in every repository, an
    attachment, a new avatar, an LFS object (its oid added to `lfs`) and a commit in the
    first; what the agents keep: a note in the memories and a chat with the backend."""
    written = []
    repos = sorted(r["full_name"] for r in forge.repos())
    for name in repos:
        issue = forge.create_issue(
            name, f"{label}: filed on the primary", f"drill data ({label}), a body users would miss"
        )
        comment = forge.create_comment(name, issue["number"], f"{label}: a comment")
        written += [
            f"{name}#{issue['number']}",
            f"{name}#{issue['number']} comment {comment['id']}",
        ]
    first = repos[0]
    asset = forge.attach(
        first,
        issue_number(forge, first, label),
        f"{label}.log",
        f"{label}: an attachment\n".encode() * 64,
    )
    written.append(f"attachment {asset['name']} ({asset['uuid']})")
    forge.set_avatar(avatar_png(label))
    written.append(f"the avatar of {forge.me()['login']} ({label})")
    content = f"{label}: a large file kept in LFS\n".encode() * 4096
    lfs.setdefault(first, {})[forge.lfs_upload(first, content)] = len(content)
    written.append(f"an LFS object in {first} ({label})")
    push_commit(
        target,
        settings,
        first,
        f"{label}: a commit on the primary",
        user=forge.me()["login"],
        token=forge.token or "",
    )
    written.append(f"{first}@{label}")
    note = f"{settings['layout_hermes_home']}/memories/drill-{label}.yaml"
    ssh(target, f"printf 'note: {label}\\n' > {shlex.quote(note)}")
    written.append(note)
    memory = f"{settings['hermes_root']}/{settings['wizard_names'][0]}/memories/drill-{label}.md"
    ssh(
        target,
        f"printf 'drill: {label}\\n' > {shlex.quote(memory)} && "
        f"chown {shlex.quote(settings['hermes_user'])}: {shlex.quote(memory)}",
    )
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
    return ssh(
        target,
        f"sed -n 's/^API_SERVER_KEY=//p' {env} | {{ read -r k; "
        'printf \'header = "Authorization: Bearer %s"\\n\' "$k"; } | '
        f"curl -fsS -m 180 -K - -H 'Content-Type: application/json' "
        f"-d {shlex.quote(body)} {shlex.quote(url)}",
        timeout=240,
    )


def memories(target: Target, settings: dict) -> dict[str, str]:
    """What the forge keeps besides Gitea, by name: the sha256 of every file in the hermes
    memories (the runbook's ~/.hermes and each Hermes house's), and each house's sessions
    (its state.db, read as Hermes wrote it)."""
    root = settings["hermes_root"].rstrip("/")
    folders = f"{shlex.quote(settings['layout_hermes_home'] + '/memories')} {root}/*/memories"
    out = ssh(target, f"find {folders} -type f -print0 2>/dev/null | sort -z | xargs -0r sha256sum")
    kept = {line.split(None, 1)[1]: line.split()[0] for line in out.splitlines()}
    for house in [settings["backend_house"], *settings["wizard_names"]]:
        db = shlex.quote(f"{root}/{house}/state.db")
        ids = ssh(target, f"[ ! -f {db} ] || sqlite3 -readonly {db} 'SELECT id FROM sessions'")
        kept.update({f"session {sid} of {house}": "kept" for sid in ids.split()})
    return kept


def compare_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [
        f"{name} {'is missing' if name not in after else 'differs'}"
        for name, digest in sorted(before.items())
        if after.get(name) != digest
    ]


def duties(target: Target, settings: dict) -> dict:
    """What one-primary governs on a host: its role marker, which wizard houses run, whether
    the cron file is there, and the backup and standby-refresh timers."""
    q = shlex.quote
    houses = " ".join(f"hermes-{w}.service" for w in settings["wizard_names"])
    out = ssh(
        target,
        f"cat /var/lib/phoenix/role 2>/dev/null || echo none; "
        f"for u in {houses}; do systemctl is-active $u || true; done; "
        f"test -e {q(settings['cron_file'])} && echo cron || echo no-cron; "
        "systemctl is-active phoenix-backup.timer || true; "
        "systemctl is-active phoenix-standby-refresh.timer || true",
    ).split()
    names = settings["wizard_names"]
    n = len(names)
    return {
        "role": out[0],
        "houses_active": [w for w, st in zip(names, out[1 : 1 + n], strict=True) if st == "active"],
        "cron": out[1 + n] == "cron",
        "backup_timer": out[2 + n],
        "refresh_timer": out[3 + n],
    }


# --- git over SSH, as the forge's users reach it ------------------------------------------

# Who pushes over SSH, with which key (Gitea 1.22 takes RSA from 2047 bits), the fixture's key
# row each one replaces, and a repository each may write to.
SSH_USERS = (
    ("ezra", 2, ("-t", "ed25519"), "ezra/hermes-agent"),
    ("allegro", 3, ("-t", "rsa", "-b", "2048"), "timmy_foundation/timmy-config"),
)


@dataclass
class SshUser:
    """A forge user on their own machine: a key, and a known_hosts of their own."""

    login: str
    key: Path
    known_hosts: Path
    repo: str


def ssh_users(target: Target, folder: Path) -> list[SshUser]:
    """ezra (ed25519) and allegro (RSA-2048) with keys made in `folder`, stored in Gitea as a
    key a user adds is (the fixture's row replaced), authorized_keys rewritten by Gitea."""
    folder.mkdir(parents=True, exist_ok=True)
    users, sql = [], ".timeout 20000\n"
    for login, key_id, kind, repo in SSH_USERS:
        key = folder / f"id_{login}"
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", *kind, "-N", "", "-C", f"{login}@lab", "-f", str(key)],
                check=True,
            )
        public = key.with_name(key.name + ".pub").read_text().strip()
        sql += f"UPDATE public_key SET content = '{public}' WHERE id = {key_id};\n"
        users.append(SshUser(login, key, folder / f"{login}.known_hosts", repo))
    ssh_input(target, "runuser -u gitea -- sqlite3 /var/lib/gitea/data/gitea.db", sql)
    ssh(
        target,
        "runuser -u gitea -- /usr/local/bin/gitea admin regenerate keys "
        "--config /etc/gitea/app.ini",
    )
    return users


def git_as(
    user: SshUser, name: str, address: str, *args: str, cwd: Path | None = None, first: bool = False
) -> subprocess.CompletedProcess:
    """git as `user`, reaching the forge by its name `name` (at `address`, what DNS gives):
    host keys checked against the user's own known_hosts, under that name; `first`: the
    user's first connection, which records the key (accept-new), as users did."""
    command = [
        "ssh",
        "-i",
        str(user.key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        f"StrictHostKeyChecking={'accept-new' if first else 'yes'}",
        "-o",
        f"UserKnownHostsFile={user.known_hosts}",
        "-o",
        f"HostKeyAlias={name}",
        "-o",
        "ConnectTimeout=20",
    ]
    env = {
        **os.environ,
        "GIT_SSH_COMMAND": shlex.join(command),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": user.login,
        "GIT_AUTHOR_EMAIL": f"{user.login}@lab.invalid",
        "GIT_COMMITTER_NAME": user.login,
        "GIT_COMMITTER_EMAIL": f"{user.login}@lab.invalid",
    }
    args = tuple(a.replace("FORGE:", f"gitea@{address}:") for a in args)
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env, check=False
    )


def first_contact(user: SshUser, name: str, address: str) -> str:
    """The user's first `git ls-remote` over SSH: the forge's host key goes into their
    known_hosts; returns the key recorded."""
    done = git_as(user, name, address, "ls-remote", f"FORGE:{user.repo}.git", first=True)
    if done.returncode != 0:
        raise PhoenixError(f"{user.login}: git ls-remote over SSH failed: {done.stderr.strip()}")
    return user.known_hosts.read_text().strip()


def clone_and_push(
    user: SshUser,
    name: str,
    address: str,
    folder: Path,
    target: Target,
    repo_root: str,
    *,
    branch: str = "after-recovery",
) -> str:
    """`git clone` and `git push` over SSH as `user`, checking the host key against the
    known_hosts the user already has (StrictHostKeyChecking=yes); the pushed branch is read
    back on the forge (`branch`-LOGIN). One line: the user, their key's type, what was pushed."""
    work = folder / f"{user.login}-clone"
    steps = (
        ("clone", ("clone", "-q", f"FORGE:{user.repo}.git", str(work)), None),
        (
            "commit",
            ("commit", "-q", "--allow-empty", "-m", f"{branch} by {user.login}"),
            work,
        ),
        ("push", ("push", "-q", "origin", f"HEAD:refs/heads/{branch}-{user.login}"), work),
    )
    for what, args, cwd in steps:
        done = git_as(user, name, address, *args, cwd=cwd)
        if done.returncode != 0:
            raise PhoenixError(
                f"{user.login}: git {what} over SSH failed: {done.stderr.strip()[-400:]}"
            )
    head = git_as(user, name, address, "rev-parse", "HEAD", cwd=work).stdout.strip()
    bare = shlex.quote(f"{repo_root}/{user.repo.lower()}.git")
    on_forge = ssh(
        target,
        f"{bare_git(bare)} rev-parse --verify -q refs/heads/{branch}-{user.login} || true",
    ).strip()
    if on_forge != head:
        raise PhoenixError(f"{user.login}: the pushed {head[:12]} is not on the forge ({on_forge})")
    kind = user.key.with_name(user.key.name + ".pub").read_text().split()[0]
    return f"{user.login} ({kind}): clone and push {head[:12]} to {user.repo}"
