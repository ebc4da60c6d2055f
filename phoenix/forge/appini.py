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

Gitea reads each of these secrets either verbatim or from the file a `*_URI` names (`file:`
only) and dies when both are set ("Cannot specify both", modules/setting/security.go
loadSecret): the new app.ini holds the value verbatim and drops the `*_URI`. The file is data
of the backup (an adopted forge saves it below files/), read through `read_file`.
"""

from __future__ import annotations

import base64
import posixpath
import re
from collections.abc import Callable, Mapping
from urllib.parse import unquote, urlsplit

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
# modules/setting/security.go loadSecurityFrom: an empty SECRET_KEY (and SECRET_KEY_URI) means
# this built-in key, under which such a forge's 2FA secrets are encrypted (go-gitea#16832).
DEFAULT_SECRET_KEY = "!#@FDEWREWR&*("
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


# What users hold from the old forge, whatever Phoenix renders: the clone URLs in their
# remotes name this SSH host and port, which may not be the web name (a proxy does not carry
# SSH).
FORGE_KEEPS = {("server", "SSH_DOMAIN"), ("server", "SSH_PORT")}


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
    """Phoenix's settings over the old forge's (but FORGE_KEEPS); the old host's paths
    dropped."""
    merged: Ini = {}
    for section, keys in phoenix.items():
        merged[section] = {
            key: old[section][key]
            if (section, key) in FORGE_KEEPS and old.get(section, {}).get(key)
            else val
            for key, val in keys.items()
        }
    for section, keys in old.items():
        # the secrets are written verbatim: their old `*_URI` forms go (one form only)
        drop = HOST_PATHS.get(section, set()) | {
            key + "_URI" for (sec, key) in SECRETS if sec == section
        }
        if section.startswith(("storage.", "queue.")):
            drop = drop | {"PATH", "DATADIR", "CONN_STR"}
        target = merged.setdefault(section, {})
        for key, val in keys.items():
            if key not in drop and key not in target:
                target[key] = val
    return merged


def secret_file(uri: str, setting: str) -> str:
    """The absolute path a `*_URI` names: loadSecret takes `file:` URIs only."""
    parts = urlsplit(uri)
    path = unquote(parts.path)
    if parts.scheme != "file" or parts.netloc or not posixpath.isabs(path):
        raise PhoenixError(
            f"{setting} = {uri!r} is not a file: URI of an absolute path, which Gitea 1.22 "
            "refuses to start with (modules/setting/security.go loadSecret)"
        )
    return posixpath.normpath(path)


def secret_files(ini: Ini) -> dict[str, str]:
    """{"[section] KEY_URI": path} of the secrets an app.ini reads from files: the backup
    must hold these files."""
    found = {}
    for section, key in SECRETS:
        uri = value(ini, section, key + "_URI")
        if uri:
            found[f"[{section}] {key}_URI"] = secret_file(uri, f"[{section}] {key}_URI")
    return found


def identity(
    ini: Ini, read_file: Callable[[str], str | None] = lambda _path: None
) -> dict[str, str]:
    """The secrets an app.ini holds, by operator secret name: verbatim, or read from the file
    its `*_URI` names (`read_file`: that file's text in the backup, None when it lacks it,
    which gives "" here). Both forms of one key: refused, as Gitea dies on it. The app.ini of
    an installed forge with no SECRET_KEY ran under Gitea's built-in one (its installer writes
    a key of its own: without INSTALL_LOCK the app.ini does not tell)."""
    found = {}
    for (section, key), name in SECRETS.items():
        verbatim, uri = value(ini, section, key), value(ini, section, key + "_URI")
        if verbatim and uri:
            raise PhoenixError(
                f"[{section}] sets both {key} and {key}_URI: Gitea 1.22 refuses to start "
                '("Cannot specify both", modules/setting/security.go)'
            )
        if uri:
            found[name] = (read_file(secret_file(uri, f"[{section}] {key}_URI")) or "").strip()
        elif verbatim:
            found[name] = verbatim
        elif key == "SECRET_KEY" and installed(ini):
            found[name] = DEFAULT_SECRET_KEY
    return found


def installed(ini: Ini) -> bool:
    """[security] INSTALL_LOCK: the app.ini of a forge that ran, not a partial one."""
    return value(ini, "security", "INSTALL_LOCK").lower() in ("1", "true", "t", "yes", "on")


def written_secret_key(secret_key: str) -> str:
    """SECRET_KEY as app.ini gets it: Gitea's built-in key stays the empty setting it was
    (written out, its `#` would need the quoting Gitea's config cheat sheet asks for)."""
    return "" if secret_key == DEFAULT_SECRET_KEY else secret_key


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
            if name in backup:
                source = f"neither the file {where}'s app.ini names in {key}_URI (not in it) nor"
            raise PhoenixError(
                f"[{section}] {key} comes from {source} the operator secret "
                f"{name}: write it (mode 0600) or set PHOENIX_{name.upper()}"
            )
    return chosen
