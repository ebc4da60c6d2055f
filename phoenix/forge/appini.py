"""The forge's identity in app.ini, carried from the backup to the rebuilt host.

Gitea keeps secrets in app.ini that the data depends on: SECRET_KEY encrypts 2FA secrets and
stored credentials, INTERNAL_TOKEN lets hooks call Gitea, [oauth2] JWT_SECRET signs OAuth2
and other tokens, [server] LFS_JWT_SECRET signs LFS links. A rebuilt host must keep them:
Gitea 1.22 generates a missing JWT_SECRET and dies when it cannot save it
(modules/setting/oauth2.go), and a new SECRET_KEY silently breaks every user's 2FA.

Phoenix's app.ini (templates/app.ini.j2) is merged over the backup's: Phoenix wins for what it
renders (paths, addresses, RUN_USER), the old settings it does not render (mailer, webhooks,
ALLOWED_HOST_LIST…) are kept, the old host's own storage paths are dropped (the data comes back
below Phoenix's APP_DATA_PATH), and the secrets are the backup's. An operator secret that
differs from the backup's is an error that names the key, never its value.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping

from phoenix.errors import PhoenixError

ROOT = ""  # the keys before the first [section]
Ini = dict[str, dict[str, str]]

# (section, key) -> the operator secret of the same value (phoenix/secrets.py)
SECRETS = {
    ("security", "SECRET_KEY"): "gitea_secret_key",
    ("security", "INTERNAL_TOKEN"): "gitea_internal_token",
    ("oauth2", "JWT_SECRET"): "gitea_jwt_secret",
    ("server", "LFS_JWT_SECRET"): "gitea_lfs_jwt_secret",
}
# Where the old host kept files: below Phoenix's own paths on the new one, so not carried.
HOST_PATHS = {
    ROOT: {"WORK_PATH"},
    "server": {
        "APP_DATA_PATH",
        "LFS_CONTENT_PATH",
        "CERT_FILE",
        "KEY_FILE",
        "SSH_ROOT_PATH",
        "STATIC_ROOT_PATH",
        "PID_FILE",
    },
    "database": {"PATH"},
    "repository": {"ROOT"},
    "log": {"ROOT_PATH"},
    "git": {"HOME_PATH"},
    "lfs": {"PATH"},
    "attachment": {"PATH"},
    "repo-archive": {"PATH"},
    "packages": {"PATH", "CHUNKED_UPLOAD_PATH"},
    "storage": {"PATH"},
    "picture": {"AVATAR_UPLOAD_PATH", "REPOSITORY_AVATAR_UPLOAD_PATH"},
    "repository.upload": {"TEMP_PATH"},
    "repository.local": {"LOCAL_COPY_PATH"},
    "indexer": {"ISSUE_INDEXER_PATH", "REPO_INDEXER_PATH"},
    "queue": {"DATADIR", "CONN_STR"},
    "session": {"PROVIDER_CONFIG"},
    "oauth2": {"JWT_SIGNING_PRIVATE_KEY_FILE"},
}


def parse(text: str) -> Ini:
    """app.ini as {section: {KEY: value}}; "" holds the keys before the first section.
    Values are kept verbatim (Gitea's quotes included); a repeated key: the last wins."""
    ini: Ini = {ROOT: {}}
    section = ROOT
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            ini.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        if sep:
            ini[section][key.strip().strip('`"')] = value.strip()
    return ini


def value(ini: Ini, section: str, key: str) -> str:
    """A setting without Gitea's optional quotes ("…" or `…`)."""
    raw = ini.get(section, {}).get(key, "")
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in '"`':
        return raw[1:-1]
    return raw


def render(ini: Ini, header: str = "") -> str:
    lines = [header.rstrip("\n")] if header else []
    for section, keys in ini.items():
        if section != ROOT:
            if not keys:
                continue
            lines += ["", f"[{section}]"]
        lines += [f"{key} = {val}" for key, val in keys.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def header_of(text: str) -> str:
    """The comment lines at the top of a rendered template."""
    out = []
    for line in text.splitlines():
        if not line.startswith(";"):
            break
        out.append(line)
    return "\n".join(out)


def merge(phoenix: Ini, old: Ini) -> Ini:
    """Phoenix's settings over the old forge's; the old host's paths dropped."""
    merged: Ini = {}
    for section, keys in phoenix.items():
        merged[section] = dict(keys)
    for section, keys in old.items():
        drop = HOST_PATHS.get(section, set())
        if section.startswith(("storage.", "queue.")):
            drop = drop | {"PATH", "DATADIR", "CONN_STR"}
        target = merged.setdefault(section, {})
        for key, val in keys.items():
            if key not in drop and key not in target:
                target[key] = val
    return merged


def identity(ini: Ini) -> dict[str, str]:
    """The secrets an app.ini holds, by operator secret name (only those set)."""
    return {
        name: value(ini, section, key)
        for (section, key), name in SECRETS.items()
        if value(ini, section, key)
    }


def jwt_secret_ok(text: str) -> bool:
    """Gitea's generate.DecodeJwtSecretBase64: raw base64url decoding to exactly 32 bytes."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        return False
    try:
        return len(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))) == 32
    except ValueError:
        return False


def lfs_on(ini: Ini) -> bool:
    return value(ini, "server", "LFS_START_SERVER").lower() in ("1", "true", "t", "yes", "on")


def resolve_identity(
    *, backup: Mapping[str, str], operator: Callable[[str], str | None], lfs: bool, where: str
) -> dict[str, str]:
    """The secrets the new app.ini gets: the backup's, or the operator's where the backup has
    none. An operator secret that differs from the backup's raises, naming the key."""
    chosen: dict[str, str] = {}
    for (section, key), name in SECRETS.items():
        mine = operator(name)
        theirs = backup.get(name)
        if mine and theirs and mine != theirs:
            raise PhoenixError(
                f"the operator secret {name} differs from [{section}] {key} in the app.ini of "
                f"{where}: the forge's data depends on the backup's value. Remove {name} (and "
                f"PHOENIX_{name.upper()}) to carry the backup's over, or restore another backup;"
                " nothing was changed"
            )
        value = theirs or mine
        if value:
            chosen[name] = value
            if key.endswith("JWT_SECRET") and not jwt_secret_ok(chosen[name]):
                raise PhoenixError(
                    f"[{section}] {key} from {'the backup' if theirs else name} is not 32 bytes "
                    "of unpadded base64url, so Gitea would replace it and die saving app.ini: "
                    "make one with `openssl rand -base64 32 | tr '+/' '-_' | tr -d '='`"
                )
        elif name != "gitea_lfs_jwt_secret" or lfs:
            source = f"neither {where}'s app.ini nor" if backup else "no backup app.ini and not"
            raise PhoenixError(
                f"[{section}] {key} comes from {source} the operator secret "
                f"{name}: write it (mode 0600) or set PHOENIX_{name.upper()}"
            )
    return chosen
