#!/usr/bin/python3
"""LAB STAND-IN for the Gitea binary (https://gitea.io), version 1.22.3 -- not real Gitea.

Installed as /usr/local/bin/gitea on lab droplets, because the real binary cannot be fetched
here. It behaves like Gitea as far as the plumbing goes: it reads the restored app.ini (root
section without a header, [server], [database], [repository], [security]), refuses to run as
root or as any user but RUN_USER, refuses a missing or corrupt SQLite database, serves the
API subset the recovery checks and the drill use (/api/v1/version, repos, users, issues,
comments, issue attachments, avatars; LFS batch, upload and download; token and basic auth with
X-Gitea-OTP against 1.22's two_factor rows, decrypted with SECRET_KEY or its built-in
default), git's smart HTTP (clone, fetch and push through Debian's git, with the hooks'
environment) and the private API `gitea serv` asks, answers `gitea admin regenerate
hooks|keys`, `gitea serv key-N` (git over SSH from authorized_keys, cmd/serv.go), `gitea hook`
(which refuses pushes made without Gitea, as 1.22's does) and `gitea dump` (the zip of Gitea
1.22's cmd/dump.go), and tells systemd READY=1 (Type=notify).
Runs with Debian 12's python3 standard library only: it is copied onto target hosts.
"""

from __future__ import annotations

import base64
import configparser
import datetime
import fnmatch
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import pwd
import re
import secrets
import signal
import socket
import sqlite3
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

GITEA_VERSION = "1.22.3"
BUILD_LINE = (
    f"Gitea version {GITEA_VERSION} built with GNU Make 4.3, go1.22.8 : "
    "bindata, sqlite, sqlite_unlock_notify"
)
DB_VERSION = 299  # the migration number this release expects in the `version` table
# models/migrations/migrations.go (1.22): the oldest database it migrates (Gitea 1.5.3), and
# what each migration costs the stand-in: real ones rewrite tables, so an older database
# takes Gitea's start-up longer in proportion to the number of migrations it is behind.
MIN_DB_VERSION = 70
MIGRATION_SECONDS = 0.5
REQUIRED_TABLES = ("version", "user", "repository", "issue", "access_token")
HOOK_NAMES = ("pre-receive", "update", "post-receive")
USER_TYPE_INDIVIDUAL, USER_TYPE_ORGANIZATION = 0, 1
KEY_TYPE_USER, KEY_TYPE_DEPLOY = 1, 2  # models/asymkey KeyType
ACCESS_READ, ACCESS_WRITE = 1, 2  # models/perm AccessMode


class Fatal(Exception):
    """A refusal to run: printed as Gitea's `[F]` log line, exit status 1."""


def log(level: str, message: str) -> None:
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    stream = sys.stderr if level in ("F", "E", "W") else sys.stdout
    print(f"{stamp} [{level}] {message}", file=stream, flush=True)


# --- command line ----------------------------------------------------------------------------

VALUE_FLAGS = {
    "-c": "config",
    "--config": "config",
    "-w": "work_path",
    "--work-path": "work_path",
    "-C": "custom_path",
    "--custom-path": "custom_path",
    "-p": "port",
    "--port": "port",
    "-P": "pid",
    "--pid": "pid",
    "-f": "file",
    "--file": "file",
    "-t": "tempdir",
    "--tempdir": "tempdir",
    "--type": "type",
}
BOOL_FLAGS = {
    "-v": "version",
    "--version": "version",
    "-h": "help",
    "--help": "help",
    "-q": "quiet",
    "--quiet": "quiet",
    "--verbose": "verbose",
    "--debug": "verbose",
    "--all": "all",
    "-A": "all",
    "--fix": "fix",
    "-R": "skip_repository",
    "--skip-repository": "skip_repository",
    "-L": "skip_log",
    "--skip-log": "skip_log",
    "--skip-custom-dir": "skip_custom_dir",
    "--skip-lfs-data": "skip_lfs_data",
    "--skip-attachment-data": "skip_attachment_data",
    "--skip-package-data": "skip_package_data",
    "--skip-index": "skip_index",
}


def parse_args(argv: list[str]) -> tuple[list[str], dict[str, str | bool]]:
    """Gitea takes its flags before or after the subcommand words: accept either."""
    words: list[str] = []
    opts: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in VALUE_FLAGS:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise Fatal(f"flag needs an argument: {arg}")
                value = argv[i]
            opts[VALUE_FLAGS[name]] = value
        elif arg in BOOL_FLAGS:
            opts[BOOL_FLAGS[arg]] = True
        elif arg.startswith("-") and words[:1] != ["hook"]:
            raise Fatal(f"flag provided but not defined: {arg}")
        else:
            words.append(arg)
        i += 1
    return words, opts


# --- settings --------------------------------------------------------------------------------

ROOT = "__root__"
JOURNAL_MODES = ("DELETE", "TRUNCATE", "PERSIST", "MEMORY", "WAL", "OFF")


class Settings:
    """What Gitea reads from app.ini, with Gitea's defaults and path rules."""

    def __init__(self, opts: dict[str, str | bool]) -> None:
        env_work = os.environ.get("GITEA_WORK_DIR")
        self.custom_path = str(opts.get("custom_path") or os.environ.get("GITEA_CUSTOM") or "")
        config = str(opts.get("config") or "")
        work_guess = str(opts.get("work_path") or env_work or "/var/lib/gitea")
        custom_guess = self.custom_path or os.path.join(work_guess, "custom")
        if not config:
            config = os.path.join(custom_guess, "conf", "app.ini")
        elif not os.path.isabs(config):
            config = os.path.join(custom_guess, config)
        self.config = os.path.abspath(config)
        self.ini = read_ini(self.config)
        self.work_path = str(
            opts.get("work_path") or env_work or self.get(ROOT, "WORK_PATH") or "/var/lib/gitea"
        )
        if not self.custom_path:
            self.custom_path = os.path.join(self.work_path, "custom")
        self.run_user = self.get(ROOT, "RUN_USER") or current_username()
        self.allow_root = truthy(self.get(ROOT, "I_AM_BEING_UNSAFE_RUNNING_AS_ROOT")) or truthy(
            os.environ.get("GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT")
        )
        self.install_lock = truthy(self.get("security", "INSTALL_LOCK"))
        self.app_data = self.path(self.get("server", "APP_DATA_PATH") or "data")
        self.protocol = (self.get("server", "PROTOCOL") or "http").lower()
        self.http_addr = self.get("server", "HTTP_ADDR") or "0.0.0.0"
        self.http_port = int(opts.get("port") or self.get("server", "HTTP_PORT") or 3000)
        domain = self.get("server", "DOMAIN") or "localhost"
        self.root_url = (
            self.get("server", "ROOT_URL") or f"{self.protocol}://{domain}:{self.http_port}/"
        )
        if not self.root_url.endswith("/"):
            self.root_url += "/"
        self.ssh_domain = self.get("server", "SSH_DOMAIN") or domain
        self.ssh_root = self.get("server", "SSH_ROOT_PATH")
        self.db_type = (self.get("database", "DB_TYPE") or "sqlite3").lower()
        self.db_path = self.path(
            self.get("database", "PATH") or os.path.join(self.app_data, "gitea.db")
        )
        # modules/setting/database.go: SQLITE_JOURNAL_MODE, default "" (SQLite's own, DELETE);
        # set, Gitea adds `_journal_mode=` to the driver's DSN, which mattn/go-sqlite3 applies
        # as PRAGMA journal_mode on every connection and refuses when it is not one it knows.
        self.journal_mode = self.get("database", "SQLITE_JOURNAL_MODE")
        if self.journal_mode and self.journal_mode.upper() not in JOURNAL_MODES:
            raise Fatal(
                f"Invalid _journal_mode: {self.journal_mode}, expecting value of "
                f"'{' '.join(JOURNAL_MODES)}'"
            )
        self.repo_root = self.path(
            self.get("repository", "ROOT") or os.path.join(self.app_data, "gitea-repositories")
        )

    def get(self, section: str, key: str) -> str:
        if not self.ini.has_section(section):
            return ""
        return self.ini.get(section, key, fallback="").strip().strip('"').strip("`")

    def path(self, value: str) -> str:
        return os.path.normpath(
            value if os.path.isabs(value) else os.path.join(self.work_path, value)
        )


def read_ini(path: str) -> configparser.ConfigParser:
    """Gitea's app.ini has keys before the first [section]: give them a section of their own."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise Fatal(
            f"Unable to load config file {path}: no such file (restore app.ini first)"
        ) from None
    except OSError as exc:
        raise Fatal(f"Unable to load config file {path}: {exc.strerror}") from None
    parser = configparser.ConfigParser(
        interpolation=None,
        strict=False,
        default_section="__no_default__",
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=None,
    )
    try:
        parser.read_string(f"[{ROOT}]\n" + text, source=path)
    except configparser.Error as exc:
        raise Fatal(f"Unable to parse config file {path}: {exc}") from None
    return parser


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "t", "yes", "on")


def current_username() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER") or os.environ.get("USERNAME") or str(os.getuid())


def check_run_user(settings: Settings) -> None:
    """The same two refusals as Gitea's setting package, in the same order."""
    if os.getuid() == 0 and not settings.allow_root:
        raise Fatal(
            "Gitea is not supposed to be run as root. Sorry. If you need to use privileged "
            "TCP ports please instead use setcap and the `cap_net_bind_service` permission"
        )
    current = current_username()
    if settings.run_user != current:
        raise Fatal(f"Expect user '{settings.run_user}' but current user is: {current}")


# --- secrets Gitea generates and saves into app.ini -------------------------------------------


def load_secret(settings: Settings, section: str, uri_key: str, key: str) -> str:
    """modules/setting/security.go loadSecret: KEY or KEY_URI (file: only), never both."""
    uri, verbatim = settings.get(section, uri_key), settings.get(section, key)
    if uri and verbatim:
        raise Fatal(f"Cannot specify both {uri_key} and {key}")
    if not uri:
        return verbatim
    parsed = urlsplit(uri)
    if parsed.scheme != "file":
        raise Fatal(f'Unsupported URI-Scheme "{parsed.scheme}" ("{uri_key}" = "{uri}")')
    try:
        with open(unquote(parsed.path), encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as exc:
        raise Fatal(f"Failed to read {uri_key} ({parsed.path}): {exc}") from None
    if not value:
        raise Fatal(f"Failed to read {uri_key} ({parsed.path}): the file is empty")
    return value


# modules/setting/security.go loadSecurityFrom: an empty SECRET_KEY is this built-in key, kept
# "until it supports rotating an existing secret key" (go-gitea#16832).
DEFAULT_SECRET_KEY = "!#@FDEWREWR&*("


def secret_key(settings: Settings) -> str:
    """setting.SecretKey as loadSecurityFrom sets it: SECRET_KEY(_URI), else the built-in key."""
    return load_secret(settings, "security", "SECRET_KEY_URI", "SECRET_KEY") or DEFAULT_SECRET_KEY


def jwt_secret_ok(value: str) -> bool:
    """modules/generate/generate.go DecodeJwtSecretBase64: raw (unpadded) base64url that decodes
    to exactly 32 bytes."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", value) or len(value) % 4 == 1:
        return False
    try:
        return len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))) == 32
    except ValueError:
        return False


def save_key(settings: Settings, section: str, key: str, value: str) -> None:
    """Gitea's ini SaveTo: app.ini rewritten in place with the key set; OSError when it cannot
    (root:gitea 0640, or /etc read-only under ProtectSystem=full)."""
    with open(settings.config, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    header = "[]" if section == ROOT else f"[{section}]"
    start = (
        0
        if section == ROOT
        else next((i + 1 for i, line in enumerate(lines) if line.strip() == header), None)
    )
    if start is None:
        lines += ["", header, f"{key} = {value}"]
    else:
        end = next(
            (i for i in range(start, len(lines)) if lines[i].strip().startswith("[")), len(lines)
        )
        found = next(
            (i for i in range(start, end) if lines[i].split("=", 1)[0].strip() == key), None
        )
        if found is None:
            lines.insert(end, f"{key} = {value}")
        else:
            lines[found] = f"{key} = {value}"
    with open(settings.config, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    settings.ini = read_ini(settings.config)


def load_generated_secrets(settings: Settings) -> None:
    """What Gitea 1.22's loadCommonSettingsFrom does after the run-user check, in its order
    (modules/setting/setting.go): loadOAuth2From, loadSecurityFrom, loadLFSFrom. On an
    installed instance each secret that is missing or invalid is generated and saved to
    app.ini; when app.ini cannot be written, Gitea dies with these very messages."""
    if not settings.install_lock:
        return
    where = settings.config
    # modules/setting/oauth2.go: [oauth2] ENABLE (default true), JWT_SECRET(_URI)
    oauth2_on = settings.get("oauth2", "ENABLE").lower() not in ("false", "0", "f")
    if oauth2_on:
        jwt = load_secret(settings, "oauth2", "JWT_SECRET_URI", "JWT_SECRET")
        if not jwt_secret_ok(jwt):
            try:
                save_key(
                    settings,
                    "oauth2",
                    "JWT_SECRET",
                    base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),
                )
            except OSError as exc:
                raise Fatal(
                    f'save oauth2.JWT_SECRET failed: failed to save "{where}": {exc}'
                ) from None
    # modules/setting/security.go: SECRET_KEY(_URI) first, INTERNAL_TOKEN(_URI) and
    # generateSaveInternalToken next
    secret_key(settings)
    if not load_secret(settings, "security", "INTERNAL_TOKEN_URI", "INTERNAL_TOKEN"):
        try:
            save_key(settings, "security", "INTERNAL_TOKEN", new_internal_token())
        except OSError as exc:
            raise Fatal(f'Error saving internal token: failed to save "{where}": {exc}') from None
    # modules/setting/lfs.go: only with [server] LFS_START_SERVER = true, read through loadSecret
    # (LFS_JWT_SECRET_URI beside it); saved through CreateOrAppendToCustomConf
    # (modules/setting/setting.go), whose failure is fatal too
    lfs_secret = (
        load_secret(settings, "server", "LFS_JWT_SECRET_URI", "LFS_JWT_SECRET")
        if truthy(settings.get("server", "LFS_START_SERVER"))
        else ""
    )
    if truthy(settings.get("server", "LFS_START_SERVER")) and not jwt_secret_ok(lfs_secret):
        try:
            save_key(
                settings,
                "server",
                "LFS_JWT_SECRET",
                base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),
            )
        except OSError as exc:
            raise Fatal(f"error saving to custom config: open {where}: {exc.strerror}") from None


def new_internal_token() -> str:
    """generate.NewInternalToken: an HS256 JWT with an nbf claim, signed by a random key."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    body = (
        b64(b'{"alg":"HS256","typ":"JWT"}')
        + "."
        + b64(json.dumps({"nbf": int(time.time())}, separators=(",", ":")).encode())
    )
    key = b64(secrets.token_bytes(32)).encode()
    return body + "." + b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


# --- 2FA secrets, passwords and TOTP as Gitea 1.22 keeps and checks them ---------------------


def _aes_tables() -> tuple[list[int], list[int]]:
    """AES's S-box and round constants, computed (FIPS-197 5.1.1): no crypto module here."""
    sbox = [0] * 256
    p = q = 1
    while True:  # p walks GF(2^8) by 3, q by its inverse
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)
        for shift in (1, 2, 4):
            q ^= (q << shift) & 0xFF
        if q & 0x80:
            q ^= 0x09
        x = (
            q
            ^ ((q << 1 | q >> 7) & 0xFF)
            ^ ((q << 2 | q >> 6) & 0xFF)
            ^ ((q << 3 | q >> 5) & 0xFF)
            ^ ((q << 4 | q >> 4) & 0xFF)
        )
        sbox[p] = x ^ 0x63
        if p == 1:
            break
    sbox[0] = 0x63
    rcon, r = [], 1
    for _ in range(14):
        rcon.append(r)
        r = ((r << 1) ^ (0x1B if r & 0x80 else 0)) & 0xFF
    return sbox, rcon


SBOX, RCON = _aes_tables()


def _xtime(b: int) -> int:
    return ((b << 1) ^ (0x1B if b & 0x80 else 0)) & 0xFF


def aes_encrypt_block(key: bytes, block: bytes) -> bytes:
    """One AES block (key of 16, 24 or 32 bytes), FIPS-197; CFB needs only this direction."""
    nk = len(key) // 4
    rounds = nk + 6
    words = [list(key[4 * i : 4 * i + 4]) for i in range(nk)]
    for i in range(nk, 4 * (rounds + 1)):
        t = list(words[i - 1])
        if i % nk == 0:
            t = [SBOX[b] for b in t[1:] + t[:1]]
            t[0] ^= RCON[i // nk - 1]
        elif nk > 6 and i % nk == 4:
            t = [SBOX[b] for b in t]
        words.append([a ^ b for a, b in zip(words[i - nk], t, strict=True)])
    state = [b ^ k for b, k in zip(block, sum(words[0:4], []), strict=True)]
    for rnd in range(1, rounds + 1):
        state = [SBOX[b] for b in state]
        state = [state[(i + 4 * (i % 4)) % 16] for i in range(16)]  # ShiftRows, column-major
        if rnd != rounds:
            mixed = []
            for c in range(4):
                a = state[4 * c : 4 * c + 4]
                total = a[0] ^ a[1] ^ a[2] ^ a[3]
                mixed += [a[i] ^ total ^ _xtime(a[i] ^ a[(i + 1) % 4]) for i in range(4)]
            state = mixed
        state = [b ^ k for b, k in zip(state, sum(words[4 * rnd : 4 * rnd + 4], []), strict=True)]
    return bytes(state)


def aes_cfb(key: bytes, iv: bytes, data: bytes, *, decrypt: bool) -> bytes:
    """Go's cipher.NewCFBEncrypter/NewCFBDecrypter (full-block CFB, as CFB-128)."""
    out = bytearray()
    register = iv
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        stream = aes_encrypt_block(key, register)
        piece = bytes(a ^ b for a, b in zip(chunk, stream, strict=False))  # a last, short chunk
        out += piece
        register = (chunk if decrypt else piece) + register[len(chunk) :]
    return bytes(out)


def totp_key(secret_key: str) -> bytes:
    """models/auth/twofactor.go (1.22) getEncryptionKey: md5 of [security] SECRET_KEY."""
    return hashlib.md5(secret_key.encode()).digest()


def encrypt_totp_secret(secret_key: str, otp_secret: str, iv: bytes | None = None) -> str:
    """What 1.22's TwoFactor.SetSecret stores in two_factor.secret: base64 of IV + the
    AES-CFB of base64(secret) (modules/secret/secret.go AesEncrypt), keyed by totp_key."""
    iv = iv or os.urandom(16)
    inner = base64.b64encode(otp_secret.encode())
    return base64.b64encode(iv + aes_cfb(totp_key(secret_key), iv, inner, decrypt=False)).decode()


def decrypt_totp_secret(secret_key: str, stored: str) -> str:
    """TwoFactor.ValidateTOTP's first half (models/auth/twofactor.go, modules/secret/secret.go
    AesDecrypt): ValueError when the stored value or the key is wrong, as Gitea errs."""
    raw = base64.b64decode(stored, validate=True)
    if len(raw) < 16:
        raise ValueError("AesDecrypt ciphertext too short")
    plain = aes_cfb(totp_key(secret_key), raw[:16], raw[16:], decrypt=True)
    try:
        return base64.b64decode(plain, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("AesDecrypt invalid decrypted base64 string") from None


def totp_valid(otp_secret: str, passcode: str, now: float | None = None) -> bool:
    """github.com/pquerna/otp totp.Validate as 1.22 calls it: RFC 6238, SHA1, 6 digits,
    a 30 s period, one period of skew either way."""
    if not re.fullmatch(r"\d{6}", passcode or ""):
        return False
    try:
        key = base64.b32decode(otp_secret.upper() + "=" * (-len(otp_secret) % 8))
    except ValueError:
        return False
    counter = int((time.time() if now is None else now) // 30)
    for step in (counter - 1, counter, counter + 1):
        digest = hmac.new(key, step.to_bytes(8, "big"), hashlib.sha1).digest()
        offset = digest[-1] & 0x0F
        code = (int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF) % 1_000_000
        if hmac.compare_digest(f"{code:06d}", passcode):
            return True
    return False


def check_password(user, password: str) -> bool:
    """modules/auth/password/hash (1.22): passwd_hash_algo names the hasher and its
    parameters, passwd is the hex digest. pbkdf2 and scrypt here (hashlib has them); argon2
    and bcrypt need libraries this stand-in does not have: such a user cannot log in."""
    algo = (user["passwd_hash_algo"] or "").split("$")
    aliases = {
        "pbkdf2": ["pbkdf2", "50000", "50"],
        "pbkdf2_v2": ["pbkdf2", "50000", "50"],
        "pbkdf2_v1": ["pbkdf2", "10000", "50"],
        "pbkdf2_hi": ["pbkdf2", "320000", "50"],
        "scrypt": ["scrypt", "65536", "16", "2", "50"],
    }
    algo = aliases.get(algo[0], algo) if len(algo) == 1 else algo
    salt = (user["salt"] or "").encode()
    try:
        if algo[0] == "pbkdf2":
            digest = hashlib.pbkdf2_hmac(
                "sha256", password.encode(), salt, int(algo[1]), int(algo[2])
            )
        elif algo[0] == "scrypt":
            digest = hashlib.scrypt(
                password.encode(),
                salt=salt,
                n=int(algo[1]),
                r=int(algo[2]),
                p=int(algo[3]),
                dklen=int(algo[4]),
                maxmem=2**27,
            )
        else:
            log("W", f"password hash {algo[0]} is not supported by the stand-in")
            return False
    except (IndexError, ValueError):
        return False
    return hmac.compare_digest(digest.hex(), user["passwd"] or "")


# --- database --------------------------------------------------------------------------------


def open_checked_db(settings: Settings) -> None:
    """Refuse a database that is not there, not SQLite, corrupt, or not a Gitea schema."""
    if settings.db_type not in ("sqlite3", "sqlite"):
        raise Fatal(f"[database] DB_TYPE = {settings.db_type!r}: this stand-in only runs sqlite3")
    path = settings.db_path
    if not os.path.isfile(path):
        raise Fatal(
            f"database file {path} does not exist: restore gitea.db before starting "
            "(a fresh empty database would hide a failed restore)"
        )
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise Fatal(f"cannot open database {path}: {exc}") from None
    try:
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            raise Fatal(f"database {path} failed PRAGMA integrity_check: {exc}") from None
        if rows != ["ok"]:
            raise Fatal(f"database {path} failed PRAGMA integrity_check: {'; '.join(rows[:3])}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = [t for t in REQUIRED_TABLES if t not in tables]
        if missing:
            raise Fatal(f"database {path} has no table {missing[0]!r}: not a Gitea database")
    finally:
        conn.close()


def db_version(settings: Settings) -> int:
    """migrations.GetCurrentDBVersion: the `version` row with id 1 (-1: none)."""
    conn = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT version FROM version WHERE id = 1").fetchone()
    finally:
        conn.close()
    return int(row[0]) if row and row[0] is not None else -1


def migrate(settings: Settings) -> None:
    """models/migrations/migrations.go Migrate (1.22), inside `gitea web`'s start-up (before
    READY=1, so under systemd's start timeout): a database older than 1.5.3's or newer than
    this release's is fatal and left as it is; an older one is brought forward one migration
    at a time, the version row written after each, so a start cut off resumes where it
    stopped."""
    current = db_version(settings)
    if current < 0:
        raise Fatal("database has not been initialized")  # a fresh install: not a restore
    if current < MIN_DB_VERSION:
        raise Fatal(
            "Gitea no longer supports auto-migration from your previously installed version.\n"
            "Please try upgrading to a lower version first (suggested v1.6.4), then upgrade "
            "to this version."
        )
    if current > DB_VERSION:
        raise Fatal(
            f"Migration Error: Your database (migration version: {current}) is for a newer "
            f"Gitea, you can not use the newer database for this old Gitea release "
            f"({DB_VERSION}).\nGitea will exit to keep your database safe and unchanged. "
            "Please use the correct Gitea release, do not change the migration version "
            "manually (incorrect manual operation may lose data)."
        )
    for number in range(current, DB_VERSION):
        log("I", f"Migration[{number}]: (lab stand-in: {MIGRATION_SECONDS:g} s)")
        time.sleep(MIGRATION_SECONDS)
        conn = sqlite3.connect(settings.db_path, timeout=10)
        try:
            with conn:
                conn.execute("UPDATE version SET version = ? WHERE id = 1", (number + 1,))
        finally:
            conn.close()


def ensure_up_to_date(settings: Settings) -> None:
    """migrations.EnsureUpToDate: what Gitea's other commands require of the database."""
    current = db_version(settings)
    if current != DB_VERSION:
        raise Fatal(
            f"current database version {current} is not equal to the expected version "
            f'{DB_VERSION}. Please run "gitea [--config /path/to/app.ini] migrate" to update '
            "the database version"
        )


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the database has the table `name` (older schemas lack some of them)."""
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)
        ).fetchone()
        is not None
    )


def connect(settings: Settings) -> sqlite3.Connection:
    """A connection as Gitea's: its journal mode applied when app.ini sets one."""
    conn = sqlite3.connect(settings.db_path, timeout=10)
    conn.row_factory = sqlite3.Row
    if settings.journal_mode:
        conn.execute(f"PRAGMA journal_mode={settings.journal_mode.upper()}")
    return conn


def iso(unix: int | None) -> str | None:
    if not unix:
        return None
    return datetime.datetime.fromtimestamp(int(unix), datetime.UTC).isoformat()


# --- webhooks: tables, hook tasks, delivery (Gitea 1.22) --------------------------------------

# The tables as 1.22's models declare them (xorm on SQLite): models/webhook/webhook.go Webhook
# and models/webhook/hooktask.go HookTask (payload_version came with migration v290,
# models/migrations/v1_22/v290.go). `gitea web` creates a table that is missing after its
# migrations, as 1.22's db.SyncAllTables does, so an older database gains them at start.
SYNC_TABLES = {
    "webhook": (
        "CREATE TABLE `webhook` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "
        "`repo_id` INTEGER NULL, `owner_id` INTEGER NULL, `is_system_webhook` INTEGER NULL, "
        "`url` TEXT NULL, `http_method` TEXT NULL, `content_type` INTEGER NULL, "
        "`secret` TEXT NULL, `events` TEXT NULL, `is_active` INTEGER NULL, `type` TEXT NULL, "
        "`meta` TEXT NULL, `last_status` INTEGER NULL, "
        "`header_authorization_encrypted` TEXT NULL, `created_unix` INTEGER NULL, "
        "`updated_unix` INTEGER NULL);\n"
        "CREATE INDEX `IDX_webhook_repo_id` ON `webhook` (`repo_id`);\n"
        "CREATE INDEX `IDX_webhook_owner_id` ON `webhook` (`owner_id`);\n"
        "CREATE INDEX `IDX_webhook_is_active` ON `webhook` (`is_active`);\n"
        "CREATE INDEX `IDX_webhook_created_unix` ON `webhook` (`created_unix`);\n"
        "CREATE INDEX `IDX_webhook_updated_unix` ON `webhook` (`updated_unix`);\n"
    ),
    "hook_task": (
        "CREATE TABLE `hook_task` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "
        "`hook_id` INTEGER NULL, `uuid` TEXT NULL, `payload_content` TEXT NULL, "
        "`payload_version` INTEGER DEFAULT 1 NULL, `event_type` TEXT NULL, "
        "`is_delivered` INTEGER NULL, `delivered` INTEGER NULL, `is_succeed` INTEGER NULL, "
        "`request_content` TEXT NULL, `response_content` TEXT NULL);\n"
        "CREATE INDEX `IDX_hook_task_hook_id` ON `hook_task` (`hook_id`);\n"
        "CREATE UNIQUE INDEX `UQE_hook_task_uuid` ON `hook_task` (`uuid`);\n"
    ),
}
CONTENT_TYPES = {"json": 1, "form": 2}  # models/webhook/webhook.go HookContentType
HOOK_STATUS_SUCCEED, HOOK_STATUS_FAIL = 1, 2  # modules/webhook/type.go HookStatus
# modules/webhook/type.go HookEvents (1.22): the event names a hook can choose.
HOOK_EVENTS = (
    "create delete fork issues issue_assign issue_label issue_milestone issue_comment push "
    "pull_request pull_request_assign pull_request_label pull_request_milestone "
    "pull_request_comment pull_request_review pull_request_sync pull_request_review_request "
    "wiki repository release package"
).split()
HOOK_TYPES = (
    "gitea gogs slack discord dingtalk telegram msteams feishu matrix wechatwork packagist"
).split()


def sync_tables(settings: Settings) -> None:
    """db.SyncAllTables after the migrations: create what this release keeps and the database
    lacks (xorm's Sync adds tables; it never drops)."""
    conn = sqlite3.connect(settings.db_path, timeout=10)
    try:
        with conn:
            for table, ddl in SYNC_TABLES.items():
                if not has_table(conn, table):
                    log("I", f"[db] Syncing table {table}")
                    conn.executescript(ddl)
    finally:
        conn.close()


def encrypt_secret(secret_key_value: str, text: str, iv: bytes | None = None) -> str:
    """modules/secret/secret.go EncryptSecret (1.22): hex of IV + AES-CFB of base64(text),
    keyed by the sha256 of SECRET_KEY (webhook.header_authorization_encrypted)."""
    iv = iv or os.urandom(16)
    key = hashlib.sha256(secret_key_value.encode()).digest()
    inner = base64.b64encode(text.encode())
    return (iv + aes_cfb(key, iv, inner, decrypt=False)).hex()


def decrypt_secret(secret_key_value: str, stored: str) -> str:
    """DecryptSecret (1.22); ValueError with Gitea's words when the key is not the one used."""
    try:
        raw = bytes.fromhex(stored)
    except ValueError:
        raise ValueError("failed to decrypt by secret, invalid hex string") from None
    if len(raw) < 16:
        raise ValueError("AesDecrypt ciphertext too short")
    key = hashlib.sha256(secret_key_value.encode()).digest()
    plain = aes_cfb(key, raw[:16], raw[16:], decrypt=True)
    try:
        return base64.b64decode(plain, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError(
            "failed to decrypt by secret, the key (maybe SECRET_KEY?) might be incorrect: "
            "AesDecrypt invalid decrypted base64 string"
        ) from None


def go_json(value: object) -> str:
    """What 1.22's payloads' JSONPayload writes: json.MarshalIndent(p, "", "  "), with Go's
    escaping of <, > and & (they only occur inside strings)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def go_is_global_unicast(ip) -> bool:
    """Go's net.IP.IsGlobalUnicast: not unspecified, loopback, multicast, link-local or the
    IPv4 broadcast address."""
    return not (
        ip.is_unspecified
        or ip.is_loopback
        or ip.is_multicast
        or ip.is_link_local
        or str(ip) == "255.255.255.255"
    )


def go_is_private(ip) -> bool:
    """Go's net.IP.IsPrivate: RFC 1918 and RFC 4193 only."""
    nets = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
    return any(ip.version == n.version and ip in n for n in map(ipaddress.ip_network, nets))


class HostMatchList:
    """modules/hostmatcher/hostmatcher.go (1.22) ParseHostMatchList and MatchHostOrIP: builtins
    `external` (global unicast, not private), `private`, `loopback`; CIDRs; else host name
    patterns (path.Match, `*` also matching any address)."""

    def __init__(self, hint: str, value: str) -> None:
        self.hint = hint
        self.builtins: list[str] = []
        self.patterns: list[str] = []
        self.nets: list = []
        for item in value.split(","):
            item = item.strip().lower()
            if not item:
                continue
            try:  # net.ParseCIDR: only an address with a prefix length
                net = ipaddress.ip_network(item, strict=False) if "/" in item else None
            except ValueError:
                net = None
            if net is not None:
                self.nets.append(net)
            elif item in ("external", "private", "loopback"):
                self.builtins.append(item)
            else:
                self.patterns.append(item)

    def match(self, host: str, ip) -> bool:
        if any(fnmatch.fnmatchcase(host.lower(), p) for p in self.patterns):
            return True
        if any(fnmatch.fnmatchcase(str(ip), p) for p in self.patterns) or "*" in self.patterns:
            return True
        for builtin in self.builtins:
            if builtin == "external" and go_is_global_unicast(ip) and not go_is_private(ip):
                return True
            if builtin == "private" and go_is_private(ip):
                return True
            if builtin == "loopback" and ip.is_loopback:
                return True
        return any(ip.version == n.version and ip in n for n in self.nets)


class Webhooks:
    """services/webhook (1.22): PrepareWebhooks makes one hook_task per active hook of the
    repository, its owner and the system that has the event, and queues its id; one worker
    delivers each task once (deliver.go Deliver): no retry, a failure stays in the task's
    response. At start, undelivered tasks are queued again (populateWebhookSendingQueue)."""

    def __init__(self, settings: Settings, write_lock: threading.Lock) -> None:
        self.s = settings
        self.lock = write_lock
        self.queue: list[int] = []
        self.wakeup = threading.Condition()
        allowed = settings.get("webhook", "ALLOWED_HOST_LIST") or "external"
        self.allowed = HostMatchList("webhook.ALLOWED_HOST_LIST", allowed)
        self.timeout = int(settings.get("webhook", "DELIVER_TIMEOUT") or 5)
        self.disabled = truthy(settings.get("security", "DISABLE_WEBHOOKS"))

    def start(self) -> None:
        conn = connect(self.s)
        try:
            pending = [
                r[0]
                for r in conn.execute("SELECT id FROM hook_task WHERE is_delivered = 0 ORDER BY id")
            ]
        finally:
            conn.close()
        for task_id in pending:
            self.enqueue(task_id)
        threading.Thread(target=self._worker, name="webhook_sender", daemon=True).start()

    def enqueue(self, task_id: int) -> None:
        with self.wakeup:
            self.queue.append(task_id)
            self.wakeup.notify()

    def prepare(self, conn: sqlite3.Connection, repo: sqlite3.Row, event: str, payload: dict):
        """services/webhook/webhook.go PrepareWebhooks + PrepareWebhook, in the caller's
        transaction; the ids to enqueue once it commits."""
        if self.disabled or not has_table(conn, "webhook"):
            return []
        hooks = conn.execute(
            "SELECT * FROM webhook WHERE is_active = 1 AND (repo_id = ? OR "
            "(owner_id = ? AND COALESCE(repo_id, 0) = 0) OR "
            "(is_system_webhook = 1 AND COALESCE(repo_id, 0) = 0 AND COALESCE(owner_id, 0) = 0)) "
            "ORDER BY repo_id DESC, owner_id DESC, id",
            (repo["id"], repo["owner_id"]),
        ).fetchall()
        content = go_json(payload)
        ids = []
        for hook in hooks:
            if not hook_has_event(hook["events"], event):
                continue
            cursor = conn.execute(
                "INSERT INTO hook_task (hook_id, uuid, payload_content, payload_version, "
                "event_type, is_delivered, delivered, is_succeed, request_content, "
                "response_content) VALUES (?, ?, ?, 2, ?, 0, 0, 0, '', '')",
                (hook["id"], str(uuidlib.uuid4()), content, event),
            )
            ids.append(cursor.lastrowid)
        return ids

    def _worker(self) -> None:
        while True:
            with self.wakeup:
                while not self.queue:
                    self.wakeup.wait()
                task_id = self.queue.pop(0)
            try:
                self.deliver(task_id)
            except Exception as exc:  # noqa: BLE001 -- deliver.go recovers a panic and goes on
                log("E", f"Unable to deliver webhook task[{task_id}]: {exc}")

    def _refused(self, url: str) -> str | None:
        """hostmatcher.NewDialContext's Control: every address the name resolves to must be
        allowed, else the dial fails with this message."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            return f"dial tcp: lookup {host}: {exc.strerror or exc}"
        for info in infos:
            address = str(info[4][0])
            if not self.allowed.match(host, ipaddress.ip_address(address)):
                shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
                return (
                    f"dial tcp {shown}: webhook can only call allowed HTTP servers (check your "
                    f"{self.allowed.hint} setting), deny '{host}({shown})'"
                )
        return None

    def deliver(self, task_id: int) -> None:
        conn = connect(self.s)
        try:
            task = conn.execute("SELECT * FROM hook_task WHERE id = ?", (task_id,)).fetchone()
            if task is None:
                return
            if task["is_delivered"]:
                log("W", f"Found already delivered HookTask[{task_id}]")
                return
            hook = conn.execute("SELECT * FROM webhook WHERE id = ?", (task["hook_id"],)).fetchone()
            if hook is None:
                log(
                    "E",
                    f"Unable to deliver webhook task[{task_id}]: webhook does not exist "
                    f"[id: {task['hook_id']}]",
                )
                return
            request, response, succeed = self._send(hook, task)
            with self.lock, conn:
                conn.execute(
                    "UPDATE hook_task SET is_delivered = 1, delivered = ?, is_succeed = ?, "
                    "request_content = ?, response_content = ? WHERE id = ?",
                    (
                        time.time_ns(),
                        int(succeed),
                        json.dumps(request),
                        json.dumps(response),
                        task_id,
                    ),
                )
                conn.execute(
                    "UPDATE webhook SET last_status = ? WHERE id = ?",
                    (HOOK_STATUS_SUCCEED if succeed else HOOK_STATUS_FAIL, hook["id"]),
                )
        finally:
            conn.close()

    def _send(self, hook: sqlite3.Row, task: sqlite3.Row) -> tuple[dict, dict, bool]:
        """deliver.go newDefaultRequest + addDefaultHeaders: the payload as it was stored, its
        HMAC-SHA256 (and SHA1) with the hook's secret, Gitea's, Gogs's and GitHub's headers."""
        body = (task["payload_content"] or "").encode()
        method = (hook["http_method"] or "POST").upper()
        url = hook["url"] or ""
        if method != "POST":
            raise ValueError(f"invalid http method for webhook: [{task['id']}] {method}")
        content_type = "application/json"
        if hook["content_type"] == CONTENT_TYPES["form"]:
            body = ("payload=" + quote(task["payload_content"] or "", safe="")).encode()
            content_type = "application/x-www-form-urlencoded"
        secret = (hook["secret"] or "").encode()
        signed = (task["payload_content"] or "").encode()
        sha1 = hmac.new(secret, signed, hashlib.sha1).hexdigest() if secret else ""
        sha256 = hmac.new(secret, signed, hashlib.sha256).hexdigest() if secret else ""
        event_type = task["event_type"] or ""
        event = hook_event_name(event_type)
        headers = {
            "Content-Type": content_type,
            "User-Agent": "Go-http-client/1.1",
            "X-Gitea-Delivery": task["uuid"],
            "X-Gitea-Event": event,
            "X-Gitea-Event-Type": event_type,
            "X-Gitea-Signature": sha256,
            "X-Gogs-Delivery": task["uuid"],
            "X-Gogs-Event": event,
            "X-Gogs-Event-Type": event_type,
            "X-Gogs-Signature": sha256,
            "X-Hub-Signature": "sha1=" + sha1,
            "X-Hub-Signature-256": "sha256=" + sha256,
            "X-GitHub-Delivery": task["uuid"],
            "X-GitHub-Event": event,
            "X-GitHub-Event-Type": event_type,
        }
        if hook["header_authorization_encrypted"]:
            headers["Authorization"] = decrypt_secret(
                secret_key(self.s), hook["header_authorization_encrypted"]
            )
        shown = {k: v for k, v in headers.items() if k != "Authorization"}
        request = {"url": url, "http_method": method, "headers": shown}
        response: dict = {"status": 0, "headers": {}, "body": ""}
        if not hook["is_active"]:
            return request, response, False
        refused = self._refused(url)
        if refused:
            response["body"] = f'Delivery: Post "{url}": {refused}'
            log("E", f"Unable to deliver webhook task[{task['id']}]: {response['body'][10:]}")
            return request, response, False
        parts = urlsplit(url)
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:  # http.client keeps the headers' case, as Go sends X-GitHub-* (deliver.go)
            connection = kind(parts.hostname or "", parts.port, timeout=self.timeout)
            try:
                connection.request(method, target, body=body, headers=headers)
                answer = connection.getresponse()
                status, got, text = answer.status, dict(answer.getheaders()), answer.read()
            finally:
                connection.close()
        except (OSError, http.client.HTTPException) as exc:
            response["body"] = f'Delivery: Post "{url}": {exc}'
            log("E", f"Unable to deliver webhook task[{task['id']}]: {response['body'][10:]}")
            return request, response, False
        response.update(status=status, headers=got, body=text.decode(errors="replace"))
        return request, response, status // 100 == 2


def hook_has_event(events_json: str | None, event: str) -> bool:
    """Webhook.HasEvent (models/webhook/webhook.go) over the stored HookEvent JSON."""
    try:
        events = json.loads(events_json or "{}")
    except ValueError:
        return False
    if events.get("send_everything"):
        return True
    if events.get("push_only"):
        return event == "push"
    return bool((events.get("events") or {}).get(event))


def hook_event_name(event_type: str) -> str:
    """HookEventType.Event (modules/webhook/type.go): what X-Gitea-Event says."""
    if event_type in ("issues", "issue_assign", "issue_label", "issue_milestone"):
        return "issues"
    if event_type in ("issue_comment", "pull_request_comment"):
        return "issue_comment"
    if event_type.startswith("pull_request"):
        return "pull_request"
    return event_type


# --- systemd ---------------------------------------------------------------------------------


def sd_notify(state: str) -> bool:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET ('@' = abstract)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log("W", f"cannot notify systemd at {os.environ.get('NOTIFY_SOCKET')}: {exc}")
        return False


# --- git repositories on disk ----------------------------------------------------------------


def bare_repos(root: str) -> list[str]:
    """<root>/<owner>/<name>.git directories, as Gitea lays them out (lower case)."""
    found: list[str] = []
    if not os.path.isdir(root):
        return found
    for owner in sorted(os.listdir(root)):
        owner_dir = os.path.join(root, owner)
        if not os.path.isdir(owner_dir):
            continue
        for name in sorted(os.listdir(owner_dir)):
            path = os.path.join(owner_dir, name)
            if name.endswith(".git") and os.path.isfile(os.path.join(path, "HEAD")):
                found.append(path)
    return found


def read_refs(repo: str) -> dict[str, str]:
    """Loose refs override packed-refs, as in git itself; no git binary needed."""
    refs: dict[str, str] = {}
    packed = os.path.join(repo, "packed-refs")
    if os.path.isfile(packed):
        with open(packed, encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 2 and not line.startswith(("#", "^")):
                    refs[parts[1]] = parts[0]
    refs_dir = os.path.join(repo, "refs")
    for dirpath, _dirs, files in os.walk(refs_dir):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, encoding="utf-8") as handle:
                value = handle.read().strip()
            if re.fullmatch(r"[0-9a-f]{40,64}", value):
                refs[os.path.relpath(full, repo).replace(os.sep, "/")] = value
    return dict(sorted(refs.items()))


def hook_files(gitea_bin: str, config: str) -> dict[str, str]:
    """The hook scripts Gitea writes into every repository (relative path -> content)."""
    files = {}
    for hook in HOOK_NAMES:
        files[f"hooks/{hook}"] = (
            "#!/usr/bin/env bash\n# AUTO GENERATED BY GITEA, DO NOT MODIFY\n"
            'data=$(cat)\nexitcodes=""\nhookname=$(basename $0)\n'
            "GIT_DIR=${GIT_DIR:-$(dirname $0)/..}\n\n"
            "for hook in ${GIT_DIR}/hooks/${hookname}.d/*; do\n"
            '  test -x "${hook}" && test -f "${hook}" || continue\n'
            '  echo "${data}" | "${hook}"\n  exitcodes="${exitcodes} $?"\ndone\n\n'
            "for i in ${exitcodes}; do\n  [ ${i} -eq 0 ] || exit ${i}\ndone\n"
        )
        args = " $1 $2 $3" if hook == "update" else ""
        files[f"hooks/{hook}.d/gitea"] = (
            "#!/usr/bin/env bash\n# AUTO GENERATED BY GITEA, DO NOT MODIFY\n"
            f"\"{gitea_bin}\" hook --config='{config}' {hook}{args}\n"
        )
    return files


def write_if_changed(path: str, content: str, mode: int) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            same = handle.read() == content
    except OSError:
        same = False
    if same:
        if os.stat(path).st_mode & 0o7777 != mode:
            os.chmod(path, mode)
        return False
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def init_bare_repo(path: str, default_branch: str) -> None:
    """What `git init --bare` leaves, written by hand so the stand-in needs no git binary."""
    for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags", "hooks", "info"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    with open(os.path.join(path, "HEAD"), "w", encoding="utf-8") as handle:
        handle.write(f"ref: refs/heads/{default_branch}\n")
    with open(os.path.join(path, "config"), "w", encoding="utf-8") as handle:
        handle.write("[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n")
    with open(os.path.join(path, "description"), "w", encoding="utf-8") as handle:
        handle.write("Unnamed repository; edit this file 'description' to name the repository.\n")


# --- the HTTP API ----------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LfsAuthRequired(ApiError):
    """services/lfs/server.go requireAuth: 401 with LFS-Authenticate."""

    def __init__(self) -> None:
        super().__init__(401, "Unauthorized")


def multipart_file(content_type: str, body: bytes, field: str) -> tuple[str, bytes]:
    """(filename, bytes) of one file field of a multipart/form-data body; 400 without it."""
    import email.parser
    import email.policy

    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(400, "expected multipart/form-data")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == field:
            payload = part.get_payload(decode=True)  # bytes, or None when it has none
            return part.get_filename() or "file", payload if isinstance(payload, bytes) else b""
    raise ApiError(400, f"no file in the form field {field!r}")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG or GIF from its header ((0, 0) otherwise): enough for 1.22's
    avatar limits (modules/avatar/avatar.go) without an image library."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    return 0, 0


NOT_FOUND = "The target couldn't be found."


class Forge:
    """The API handlers; every request opens its own connection, writes are serialized."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.write_lock = threading.Lock()
        repo = r"/api/v1/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
        issue = repo + r"/issues/(?P<index>\d+)"
        lfs = r"/(?P<owner>[^/]+)/(?P<repo>[^/]+?)(?:\.git)?/info/lfs/objects"
        # routers/api/v1/api.go (the /api/v1 tree) and routers/web/web.go (attachments,
        # avatars, LFS); "raw" routes take the request's bytes, the others a JSON object.
        routes = [
            ("GET", r"/api/v1/version", self.version, "json"),
            ("GET", r"/api/healthz", self.healthz, "json"),
            ("GET", r"/api/v1/user", self.me, "json"),
            ("POST", r"/api/v1/user/avatar", self.update_avatar, "json"),
            ("GET", r"/api/v1/users/search", self.search_users, "json"),
            ("GET", r"/api/v1/users/(?P<name>[^/]+)", self.get_user, "json"),
            ("GET", r"/api/v1/repos/search", self.search_repos, "json"),
            ("GET", repo, self.get_repo, "json"),
            ("GET", repo + "/branches", self.branches, "json"),
            ("GET", repo + "/issues", self.list_issues, "json"),
            ("POST", repo + "/issues", self.create_issue, "json"),
            ("GET", issue, self.get_issue, "json"),
            ("PATCH", issue, self.edit_issue, "json"),
            ("GET", issue + "/comments", self.list_comments, "json"),
            ("POST", issue + "/comments", self.create_comment, "json"),
            ("GET", issue + "/assets", self.list_issue_assets, "json"),
            ("POST", issue + "/assets", self.create_issue_asset, "raw"),
            ("POST", r"/api/v1/admin/users", self.create_user, "json"),
            ("GET", r"/api/v1/admin/hooks", self.list_system_hooks, "json"),
            ("POST", r"/api/v1/admin/hooks", self.create_system_hook, "json"),
            ("GET", r"/api/v1/admin/hooks/(?P<id>\d+)", self.get_system_hook, "json"),
            ("DELETE", r"/api/v1/admin/hooks/(?P<id>\d+)", self.delete_system_hook, "json"),
            ("POST", r"/api/v1/user/repos", self.create_repo, "json"),
            ("GET", r"/attachments/(?P<uuid>[0-9a-f-]{36})", self.serve_attachment, "raw"),
            ("GET", r"/avatars/(?P<hash>[0-9a-f]{32,64})", self.serve_avatar, "raw"),
            ("POST", lfs + "/batch", self.lfs_batch, "raw"),
            ("PUT", lfs + r"/(?P<oid>[0-9a-f]{64})/(?P<size>\d+)", self.lfs_upload, "raw"),
            ("GET", lfs + r"/(?P<oid>[0-9a-f]{64})", self.lfs_download, "raw"),
        ]
        self.routes = [(m, re.compile(p + "/?$"), h, k) for m, p, h, k in routes]
        self.webhooks = Webhooks(settings, self.write_lock)
        self.request = threading.local()  # the headers of the request being handled

    # -- plumbing --

    def url(self, path: str) -> str:
        return self.s.root_url + path.lstrip("/")

    def authenticate(self, conn: sqlite3.Connection, headers) -> sqlite3.Row | None:
        """services/auth: a token in `Authorization: token|bearer` (oauth2.go parseToken), or
        Basic with a token as user or password, else user and password, then the user's
        TOTP from X-Gitea-OTP when enrolled (basic.go Verify, validateTOTP). Any failure
        answers 401 (routers/api/v1/api.go apiAuth: ctx.Error(http.StatusUnauthorized))."""
        value = headers.get("Authorization", "")
        scheme, _, credential = value.partition(" ")
        if not value:
            return None
        scheme, credential = scheme.lower(), credential.strip()
        if scheme in ("token", "bearer") and credential:
            user = self.user_by_token(conn, credential)
            if user is None:
                raise ApiError(401, "invalid username, password or token")
            return self.may_log_in(user)
        if scheme != "basic" or not credential:
            raise ApiError(401, "auth required")
        try:
            name, _, password = base64.b64decode(credential).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(401, "invalid basic authentication") from None
        as_token = name if (not password or password == "x-oauth-basic") else password
        user = self.user_by_token(conn, as_token)
        if user is not None:
            return self.may_log_in(user)
        if self.s.get("service", "ENABLE_BASIC_AUTHENTICATION").lower() in ("false", "0"):
            raise ApiError(401, "basic authentication is disabled")
        user = conn.execute(
            "SELECT * FROM user WHERE (lower_name = ? OR lower(email) = ?) AND type = 0",
            (name.lower(), name.lower()),
        ).fetchone()
        if user is None or not check_password(user, password):
            raise ApiError(
                401, f"user's password is invalid [uid: {user['id'] if user else 0}, name: {name}]"
            )
        self.may_log_in(user)
        twofa = conn.execute("SELECT * FROM two_factor WHERE uid = ?", (user["id"],)).fetchone()
        if twofa is not None:
            try:
                otp_secret = decrypt_totp_secret(secret_key(self.s), twofa["secret"] or "")
            except ValueError as exc:  # a SECRET_KEY other than the one that enrolled it
                log("E", f"validateTOTP for uid {user['id']}: {exc}")
                raise ApiError(401, str(exc)) from None
            if not totp_valid(otp_secret, headers.get("X-Gitea-OTP", "")):
                raise ApiError(401, "invalid provided OTP")
        return user

    @staticmethod
    def user_by_token(conn: sqlite3.Connection, token: str) -> sqlite3.Row | None:
        """models/auth/access_token.go GetAccessTokenBySHA: by the last eight characters,
        then the salted hash."""
        rows = conn.execute(
            "SELECT uid, token_hash, token_salt FROM access_token "
            "WHERE token_last_eight = ? OR token_last_eight IS NULL "
            "OR token_last_eight = ''",
            (token[-8:],),
        ).fetchall()
        for row in rows:
            if hmac.compare_digest(
                hash_token(token, row["token_salt"] or ""), row["token_hash"] or ""
            ):
                return conn.execute("SELECT * FROM user WHERE id = ?", (row["uid"],)).fetchone()
        return None

    @staticmethod
    def may_log_in(user: sqlite3.Row | None) -> sqlite3.Row:
        if user is None or user["prohibit_login"] or not user["is_active"]:
            raise ApiError(401, "user is not allowed to log in")
        return user

    @staticmethod
    def require(user: sqlite3.Row | None) -> sqlite3.Row:
        if user is None:
            raise ApiError(401, "token is required")
        return user

    def user_json(self, u: sqlite3.Row, *, me: sqlite3.Row | None = None) -> dict:
        show_private = me is not None and (me["is_admin"] or me["id"] == u["id"])
        return {
            "id": u["id"],
            "login": u["name"],
            "login_name": u["login_name"] or "",
            "source_id": 0,
            "full_name": u["full_name"] or "",
            "email": u["email"] if show_private or not u["keep_email_private"] else "",
            "avatar_url": self.avatar_url(u),
            "html_url": self.url(u["name"]),
            "language": u["language"] or "",
            "is_admin": bool(u["is_admin"]) if show_private else False,
            "last_login": iso(u["last_login_unix"]) or "1970-01-01T00:00:00+00:00",
            "created": iso(u["created_unix"]),
            "restricted": bool(u["is_restricted"]),
            "active": bool(u["is_active"]),
            "prohibit_login": bool(u["prohibit_login"]),
            "location": u["location"] or "",
            "website": u["website"] or "",
            "description": u["description"] or "",
            "visibility": ["public", "limited", "private"][u["visibility"] or 0],
            "username": u["name"],
        }

    def repo_json(self, conn: sqlite3.Connection, r: sqlite3.Row, me: sqlite3.Row | None) -> dict:
        owner = conn.execute("SELECT * FROM user WHERE id = ?", (r["owner_id"],)).fetchone()
        full = f"{r['owner_name']}/{r['name']}"
        host = urlsplit(self.s.root_url).hostname or "localhost"
        return {
            "id": r["id"],
            "owner": self.user_json(owner, me=me) if owner else None,
            "name": r["name"],
            "full_name": full,
            "description": r["description"] or "",
            "empty": bool(r["is_empty"]),
            "private": bool(r["is_private"]),
            "fork": bool(r["is_fork"]),
            "template": False,
            "mirror": bool(r["is_mirror"]),
            "size": r["size"] or 0,
            "html_url": self.url(full),
            "ssh_url": f"{run_user_for_ssh(self.s)}@{self.s.ssh_domain or host}:{full}.git",
            "clone_url": self.url(f"{full}.git"),
            "website": r["website"] or "",
            "stars_count": r["num_stars"] or 0,
            "forks_count": r["num_forks"] or 0,
            "watchers_count": r["num_watches"] or 0,
            "open_issues_count": (r["num_issues"] or 0) - (r["num_closed_issues"] or 0),
            "open_pr_counter": (r["num_pulls"] or 0) - (r["num_closed_pulls"] or 0),
            "default_branch": r["default_branch"] or "main",
            "archived": bool(r["is_archived"]),
            "created_at": iso(r["created_unix"]),
            "updated_at": iso(r["updated_unix"]),
            "has_issues": True,
            "permissions": {
                "admin": self.can_write(conn, r, me),
                "push": self.can_write(conn, r, me),
                "pull": True,
            },
        }

    def issue_json(
        self, conn: sqlite3.Connection, repo: sqlite3.Row, i: sqlite3.Row, me: sqlite3.Row | None
    ) -> dict:
        poster = conn.execute("SELECT * FROM user WHERE id = ?", (i["poster_id"],)).fetchone()
        full = f"{repo['owner_name']}/{repo['name']}"
        return {
            "id": i["id"],
            "url": self.url(f"api/v1/repos/{full}/issues/{i['index']}"),
            "html_url": self.url(f"{full}/issues/{i['index']}"),
            "number": i["index"],
            "user": self.user_json(poster, me=me) if poster else None,
            "original_author": i["original_author"] or "",
            "original_author_id": i["original_author_id"] or 0,
            "title": i["name"] or "",
            "body": i["content"] or "",
            "ref": i["ref"] or "",
            "labels": [],
            "milestone": None,
            "assignee": None,
            "assignees": None,
            "state": "closed" if i["is_closed"] else "open",
            "is_locked": bool(i["is_locked"]),
            "comments": i["num_comments"] or 0,
            "created_at": iso(i["created_unix"]),
            "updated_at": iso(i["updated_unix"]),
            "closed_at": iso(i["closed_unix"]),
            "due_date": iso(i["deadline_unix"]),
            "pull_request": None,
            "assets": [
                self.attachment_json(a)
                for a in conn.execute(
                    "SELECT * FROM attachment WHERE issue_id = ? AND COALESCE(comment_id, 0) = 0 "
                    "ORDER BY id",
                    (i["id"],),
                )
            ],
            "repository": {
                "id": repo["id"],
                "name": repo["name"],
                "owner": repo["owner_name"],
                "full_name": full,
            },
        }

    def visible(self, conn: sqlite3.Connection, repo: sqlite3.Row, me: sqlite3.Row | None) -> bool:
        return not repo["is_private"] or self.can_write(conn, repo, me)

    @staticmethod
    def can_write(conn: sqlite3.Connection, repo: sqlite3.Row, me: sqlite3.Row | None) -> bool:
        if me is None:
            return False
        if me["is_admin"] or me["id"] == repo["owner_id"]:
            return True
        member = (
            has_table(conn, "org_user")
            and conn.execute(
                "SELECT 1 FROM org_user WHERE uid = ? AND org_id = ?", (me["id"], repo["owner_id"])
            ).fetchone()
        )
        return bool(member)

    def find_repo(
        self, conn: sqlite3.Connection, owner: str, name: str, me: sqlite3.Row | None
    ) -> sqlite3.Row:
        repo = conn.execute(
            "SELECT r.* FROM repository r JOIN user u ON u.id = r.owner_id "
            "WHERE u.lower_name = ? AND r.lower_name = ?",
            (owner.lower(), name.lower()),
        ).fetchone()
        if repo is None or not self.visible(conn, repo, me):
            raise ApiError(404, NOT_FOUND)
        return repo

    def find_issue(self, conn: sqlite3.Connection, repo: sqlite3.Row, index: str) -> sqlite3.Row:
        issue = conn.execute(
            'SELECT * FROM issue WHERE repo_id = ? AND "index" = ? AND COALESCE(is_pull, 0) = 0',
            (repo["id"], int(index)),
        ).fetchone()
        if issue is None:
            raise ApiError(404, NOT_FOUND)
        return issue

    @staticmethod
    def paging(query: dict) -> tuple[int, int]:
        try:
            page = max(1, int(query.get("page", ["1"])[0]))
            limit = int(query.get("limit", query.get("page_size", ["30"]))[0])
        except ValueError:
            raise ApiError(422, "page and limit must be numbers") from None
        return page, min(max(1, limit), 50)

    # -- handlers: each takes (conn, me, params, query, body) and returns (status, payload) --

    def version(self, conn, me, params, query, body):
        return 200, {"version": GITEA_VERSION}

    def healthz(self, conn, me, params, query, body):
        now = datetime.datetime.now(datetime.UTC).isoformat()
        try:
            conn.execute("SELECT 1").fetchone()
            db = "pass"
        except sqlite3.Error:
            db = "fail"
        payload = {
            "status": db,
            "description": "Gitea: Git with a cup of tea",
            "checks": {
                "cache:ping": [{"status": "pass", "time": now}],
                "database:ping": [{"status": db, "time": now}],
            },
        }
        return (200 if db == "pass" else 500), payload, {"Content-Type": "application/health+json"}

    def me(self, conn, me, params, query, body):
        return 200, self.user_json(self.require(me), me=me)

    def get_user(self, conn, me, params, query, body):
        user = conn.execute(
            "SELECT * FROM user WHERE lower_name = ?", (params["name"].lower(),)
        ).fetchone()
        if user is None:
            raise ApiError(404, f"user redirect does not exist [name: {params['name']}]")
        return 200, self.user_json(user, me=me)

    def search_users(self, conn, me, params, query, body):
        """routers/api/v1/user/user.go Search: individual users matching q, paged, as
        {"ok": true, "data": [User]} (models/user/search.go: type 0, visible ones)."""
        page, limit = self.paging(query)
        words = query.get("q", [""])[0].lower()
        rows = [
            u
            for u in conn.execute("SELECT * FROM user WHERE type = 0 ORDER BY id")
            if words in u["lower_name"]
            and (
                (u["visibility"] or 0) == 0
                or (me is not None and (me["is_admin"] or me["id"] == u["id"]))
            )
        ]
        chunk = rows[(page - 1) * limit : page * limit]
        return (
            200,
            {"ok": True, "data": [self.user_json(u, me=me) for u in chunk]},
            {"X-Total-Count": str(len(rows))},
        )

    def search_repos(self, conn, me, params, query, body):
        page, limit = self.paging(query)
        words = query.get("q", [""])[0].lower()
        rows = [
            r
            for r in conn.execute("SELECT * FROM repository ORDER BY id")
            if self.visible(conn, r, me) and words in r["lower_name"]
        ]
        chunk = rows[(page - 1) * limit : page * limit]
        return (
            200,
            {"ok": True, "data": [self.repo_json(conn, r, me) for r in chunk]},
            {"X-Total-Count": str(len(rows))},
        )

    def get_repo(self, conn, me, params, query, body):
        return 200, self.repo_json(
            conn, self.find_repo(conn, params["owner"], params["repo"], me), me
        )

    def branches(self, conn, me, params, query, body):
        repo = self.find_repo(conn, params["owner"], params["repo"], me)
        path = os.path.join(
            self.s.repo_root, repo["owner_name"].lower(), repo["lower_name"] + ".git"
        )
        out = [
            {"name": ref[len("refs/heads/") :], "commit": {"id": sha}}
            for ref, sha in read_refs(path).items()
            if ref.startswith("refs/heads/")
        ]
        return 200, out, {"X-Total-Count": str(len(out))}

    def list_issues(self, conn, me, params, query, body):
        repo = self.find_repo(conn, params["owner"], params["repo"], me)
        state = query.get("state", ["open"])[0]
        if query.get("type", ["issues"])[0] == "pulls":
            return 200, [], {"X-Total-Count": "0"}
        page, limit = self.paging(query)
        where = {"open": " AND is_closed = 0", "closed": " AND is_closed = 1"}.get(state, "")
        rows = conn.execute(
            "SELECT * FROM issue WHERE repo_id = ? AND COALESCE(is_pull, 0) = 0"
            + where
            + ' ORDER BY created_unix DESC, "index" DESC',
            (repo["id"],),
        ).fetchall()
        chunk = rows[(page - 1) * limit : page * limit]
        return (
            200,
            [self.issue_json(conn, repo, i, me) for i in chunk],
            {"X-Total-Count": str(len(rows))},
        )

    def get_issue(self, conn, me, params, query, body):
        repo = self.find_repo(conn, params["owner"], params["repo"], me)
        return 200, self.issue_json(conn, repo, self.find_issue(conn, repo, params["index"]), me)

    def create_issue(self, conn, me, params, query, body):
        me = self.require(me)
        repo = self.find_repo(conn, params["owner"], params["repo"], me)
        title = str((body or {}).get("title") or "").strip()
        if not title:
            raise ApiError(422, "[Title]: Required")
        if repo["is_archived"]:
            raise ApiError(403, "repo is archived")
        now = int(time.time())
        closed = bool((body or {}).get("closed"))
        with self.write_lock, conn:
            index = next_issue_index(conn, repo["id"])
            conn.execute(
                'INSERT INTO issue (repo_id, "index", poster_id, original_author, '
                "original_author_id, name, content, milestone_id, priority, is_closed, is_pull, "
                "num_comments, ref, deadline_unix, created_unix, updated_unix, closed_unix, "
                "is_locked) VALUES (?, ?, ?, '', 0, ?, ?, 0, 0, ?, 0, 0, ?, 0, ?, ?, ?, 0)",
                (
                    repo["id"],
                    index,
                    me["id"],
                    title,
                    str(body.get("body") or ""),
                    int(closed),
                    str(body.get("ref") or ""),
                    now,
                    now,
                    now if closed else 0,
                ),
            )
            conn.execute(
                "UPDATE repository SET num_issues = COALESCE(num_issues, 0) + 1, "
                "num_closed_issues = COALESCE(num_closed_issues, 0) + ?, "
                "updated_unix = ? WHERE id = ?",
                (int(closed), now, repo["id"]),
            )
            issue = self.find_issue(conn, repo, str(index))
            tasks = self.issue_event(conn, repo, issue, me, "opened")
        self.enqueue(tasks)
        return 201, self.issue_json(conn, repo, issue, me)

    def edit_issue(self, conn, me, params, query, body):
        me = self.require(me)
        repo = self.find_repo(conn, params["owner"], params["repo"], me)
        issue = self.find_issue(conn, repo, params["index"])
        if not (self.can_write(conn, repo, me) or issue["poster_id"] == me["id"]):
            raise ApiError(403, "user is not allowed to edit this issue")
        body = body or {}
        now = int(time.time())
        title = str(body.get("title", issue["name"]) or "").strip() or issue["name"]
        content = str(body.get("body", issue["content"]) or "")
        state = body.get("state")
        if state not in (None, "open", "closed"):
            raise ApiError(422, "state must be open or closed")
        was_closed = bool(issue["is_closed"])
        closed = was_closed if state is None else state == "closed"
        with self.write_lock, conn:
            conn.execute(
                "UPDATE issue SET name = ?, content = ?, is_closed = ?, closed_unix = ?, "
                "updated_unix = ? WHERE id = ?",
                (
                    title,
                    content,
                    int(closed),
                    (now if closed and not was_closed else issue["closed_unix"] or 0)
                    if closed
                    else 0,
                    now,
                    issue["id"],
                ),
            )
            if closed != was_closed:
                conn.execute(
                    "UPDATE repository SET num_closed_issues = "
                    "COALESCE(num_closed_issues, 0) + ?, updated_unix = ? WHERE id = ?",
                    (1 if closed else -1, now, repo["id"]),
                )
            # services/issue: an edit notifies "edited" (with what changed), a state change
            # "closed" or "reopened" (services/webhook/notifier.go).
            tasks = []
            edited = {}
            if title != issue["name"]:
                edited["title"] = {"from": issue["name"] or ""}
            if content != (issue["content"] or ""):
                edited["body"] = {"from": issue["content"] or ""}
            fresh = self.find_issue(conn, repo, params["index"])
            if edited:
                tasks += self.issue_event(conn, repo, fresh, me, "edited", edited)
            if closed != was_closed:
                tasks += self.issue_event(conn, repo, fresh, me, "closed" if closed else "reopened")
        self.enqueue(tasks)
        return 201, self.issue_json(conn, repo, self.find_issue(conn, repo, params["index"]), me)

    # -- webhooks --

    def issue_event(self, conn, repo, issue, me, action: str, changes: dict | None = None):
        """An issues event's hook tasks (modules/structs/hook.go IssuePayload), in the
        caller's transaction."""
        payload = {
            "action": action,
            "number": issue["index"],
            **({"changes": changes} if changes else {}),
            "issue": self.issue_json(conn, repo, issue, me),
            "repository": self.repo_json(conn, repo, me),
            "sender": self.user_json(me, me=me),
            "commit_id": "",
        }
        return self.webhooks.prepare(conn, repo, "issues", payload)

    def enqueue(self, task_ids: list[int]) -> None:
        for task_id in task_ids:
            self.webhooks.enqueue(task_id)

    def hook_json(self, w: sqlite3.Row) -> dict:
        """services/convert ToHook: the secret is never shown."""
        try:
            stored = json.loads(w["events"] or "{}")
        except ValueError:
            stored = {}
        if stored.get("send_everything"):
            events = list(HOOK_EVENTS)
        elif stored.get("push_only"):
            events = ["push"]
        else:
            events = [e for e, on in (stored.get("events") or {}).items() if on]
        content_type = {v: k for k, v in CONTENT_TYPES.items()}.get(w["content_type"], "")
        return {
            "id": w["id"],
            "type": w["type"] or "",
            "branch_filter": stored.get("branch_filter", ""),
            "config": {"url": w["url"] or "", "content_type": content_type},
            "events": events,
            "authorization_header": "",
            "active": bool(w["is_active"]),
            "updated_at": iso(w["updated_unix"]),
            "created_at": iso(w["created_unix"]),
        }

    @staticmethod
    def require_admin(me):
        if me is None:
            raise ApiError(401, "token is required")
        if not me["is_admin"]:
            raise ApiError(403, "reqSiteAdmin")
        return me

    def list_system_hooks(self, conn, me, params, query, body):
        """routers/api/v1/admin/hooks.go ListHooks: the system hooks."""
        self.require_admin(me)
        rows = conn.execute(
            "SELECT * FROM webhook WHERE is_system_webhook = 1 AND COALESCE(repo_id, 0) = 0 "
            "AND COALESCE(owner_id, 0) = 0 ORDER BY id"
        ).fetchall()
        return 200, [self.hook_json(w) for w in rows]

    def get_system_hook(self, conn, me, params, query, body):
        self.require_admin(me)
        row = conn.execute(
            "SELECT * FROM webhook WHERE id = ? AND is_system_webhook = 1", (int(params["id"]),)
        ).fetchone()
        if row is None:
            raise ApiError(404, NOT_FOUND)
        return 200, self.hook_json(row)

    def delete_system_hook(self, conn, me, params, query, body):
        """DeleteHook: the row and its hook tasks (models/webhook DeleteWebhookByID)."""
        self.require_admin(me)
        hook_id = int(params["id"])
        with self.write_lock, conn:
            gone = conn.execute(
                "DELETE FROM webhook WHERE id = ? AND is_system_webhook = 1", (hook_id,)
            ).rowcount
            if gone:
                conn.execute("DELETE FROM hook_task WHERE hook_id = ?", (hook_id,))
        if not gone:
            raise ApiError(404, NOT_FOUND)
        return 204, b""

    def create_system_hook(self, conn, me, params, query, body):
        """routers/api/v1/admin/hooks.go CreateHook → utils.AddSystemHook (utils/hook.go
        checkCreateHookOption, addHook): 422 for an unknown type, a missing url or
        content_type, or a content type that is not json/form."""
        self.require_admin(me)
        body = body or {}
        kind = str(body.get("type") or "")
        if kind not in HOOK_TYPES:
            raise ApiError(422, "Invalid hook type")
        config = body.get("config") or {}
        if not isinstance(config, dict):
            raise ApiError(422, "config must be an object")
        for name in ("url", "content_type"):
            if name not in config:
                raise ApiError(422, f"Missing config option: {name}")
        if config["content_type"] not in CONTENT_TYPES:
            raise ApiError(422, "Invalid content type")
        chosen = [str(e) for e in (body.get("events") or ["push"])]
        events = {name: name in chosen for name in HOOK_EVENTS}
        if "issues_only" in chosen:
            events["issues"] = True
        stored = {
            "push_only": False,
            "send_everything": False,
            "choose_events": True,
            "branch_filter": str(body.get("branch_filter") or ""),
            "events": events,
        }
        authorization = str(body.get("authorization_header") or "")
        now = int(time.time())
        with self.write_lock, conn:
            cursor = conn.execute(
                "INSERT INTO webhook (repo_id, owner_id, is_system_webhook, url, http_method, "
                "content_type, secret, events, is_active, type, meta, last_status, "
                "header_authorization_encrypted, created_unix, updated_unix) "
                "VALUES (0, 0, 1, ?, ?, ?, ?, ?, ?, ?, '', 0, ?, ?, ?)",
                (
                    str(config["url"]),
                    str(config.get("http_method") or "POST").upper(),
                    CONTENT_TYPES[config["content_type"]],
                    str(config.get("secret") or ""),  # 1.22 keeps it as given
                    json.dumps(stored, separators=(",", ":")),
                    int(bool(body.get("active", False))),
                    kind,
                    encrypt_secret(secret_key(self.s), authorization) if authorization else "",
                    now,
                    now,
                ),
            )
        row = conn.execute("SELECT * FROM webhook WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return 201, self.hook_json(row)

    # -- comments, attachments, avatars, LFS --

    def avatar_url(self, u: sqlite3.Row) -> str:
        """models/user/avatar.go AvatarLinkWithSize: a custom avatar is served at
        /avatars/<user.avatar>; the stand-in's stand-in for the generated one otherwise."""
        if "use_custom_avatar" in u.keys() and u["use_custom_avatar"] and u["avatar"]:
            return self.url(f"avatars/{u['avatar']}")
        return self.url(f"avatars/{hashlib.md5((u['email'] or '').encode()).hexdigest()}")

    def data_path(self, *parts: str) -> str:
        return os.path.join(self.s.app_data, *parts)

    def lfs_root(self) -> str:
        """modules/setting/lfs.go: [lfs] PATH, else [server] LFS_CONTENT_PATH, else
        APP_DATA_PATH/lfs."""
        return self.s.path(
            self.s.get("lfs", "PATH")
            or self.s.get("server", "LFS_CONTENT_PATH")
            or os.path.join(self.s.app_data, "lfs")
        )

    def attachment_json(self, a: sqlite3.Row) -> dict:
        """swagger Attachment (modules/structs/attachment.go); the download link is the web
        route /attachments/{uuid} (models/repo/attachment.go DownloadURL)."""
        return {
            "id": a["id"],
            "name": a["name"] or "",
            "size": a["size"] or 0,
            "download_count": a["download_count"] or 0,
            "created_at": iso(a["created_unix"]),
            "uuid": a["uuid"],
            "browser_download_url": self.url(f"attachments/{a['uuid']}"),
        }

    def comment_json(self, conn, repo: sqlite3.Row, issue: sqlite3.Row, c: sqlite3.Row, me) -> dict:
        """swagger Comment (modules/structs/issue_comment.go, services/convert/issue_comment.go)."""
        poster = conn.execute("SELECT * FROM user WHERE id = ?", (c["poster_id"],)).fetchone()
        full = f"{repo['owner_name']}/{repo['name']}"
        return {
            "id": c["id"],
            "html_url": self.url(f"{full}/issues/{issue['index']}#issuecomment-{c['id']}"),
            "pull_request_url": "",
            "issue_url": self.url(f"{full}/issues/{issue['index']}"),
            "user": self.user_json(poster, me=me) if poster else None,
            "original_author": c["original_author"] or "",
            "original_author_id": c["original_author_id"] or 0,
            "body": c["content"] or "",
            "assets": [
                self.attachment_json(a)
                for a in conn.execute(
                    "SELECT * FROM attachment WHERE comment_id = ? ORDER BY id", (c["id"],)
                )
            ],
            "created_at": iso(c["created_unix"]),
            "updated_at": iso(c["updated_unix"]),
        }

    def list_comments(self, conn, me, params, query, body):
        """routers/api/v1/repo/issue_comment.go ListIssueComments: type 0 (plain comments)."""
        repo = self.find_repo(conn, params["owner"], params["repo"], me)
        issue = self.find_issue(conn, repo, params["index"])
        rows = conn.execute(
            "SELECT * FROM comment WHERE issue_id = ? AND type = 0 ORDER BY created_unix, id",
            (issue["id"],),
        ).fetchall()
        return (
            200,
            [self.comment_json(conn, repo, issue, c, me) for c in rows],
            {"X-Total-Count": str(len(rows))},
        )

    def create_comment(self, conn, me, params, query, body):
        """routers/api/v1/repo/issue_comment.go CreateIssueComment: 201 Comment; a locked
        issue refuses others than writers (403); the issue's num_comments counts it."""
        me = self.require(me)
        repo = self.find_repo(conn, params["owner"], params["repo"], me)
        issue = self.find_issue(conn, repo, params["index"])
        text = str((body or {}).get("body") or "")
        if not text.strip():
            raise ApiError(422, "[Body]: Required")
        if issue["is_locked"] and not self.can_write(conn, repo, me):
            raise ApiError(403, "user is not allowed to comment on a locked issue")
        now = int(time.time())
        with self.write_lock, conn:
            cursor = conn.execute(
                "INSERT INTO comment (type, poster_id, original_author, original_author_id, "
                "issue_id, content, content_version, created_unix, updated_unix) "
                "VALUES (0, ?, '', 0, ?, ?, 0, ?, ?)",
                (me["id"], issue["id"], text, now, now),
            )
            conn.execute(
                "UPDATE issue SET num_comments = COALESCE(num_comments, 0) + 1, "
                "updated_unix = ? WHERE id = ?",
                (now, issue["id"]),
            )
        row = conn.execute("SELECT * FROM comment WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return 201, self.comment_json(conn, repo, issue, row, me)

    def list_issue_assets(self, conn, me, params, query, body):
        """routers/api/v1/repo/issue_attachment.go ListIssueAttachments."""
        repo = self.find_repo(conn, params["owner"], params["repo"], me)
        issue = self.find_issue(conn, repo, params["index"])
        rows = conn.execute(
            "SELECT * FROM attachment WHERE issue_id = ? AND "
            "COALESCE(comment_id, 0) = 0 ORDER BY id",
            (issue["id"],),
        ).fetchall()
        return 200, [self.attachment_json(a) for a in rows]

    # modules/setting/attachment.go: [attachment] ALLOWED_TYPES' default
    ALLOWED_TYPES = (
        ".cpio .css .csv .diff .doc .docx .gif .gz .jpeg .jpg .json .jsonc .log .md "
        ".mov .mp4 .odf .odg .odp .ods .odt .patch .pdf .png .pptx .svg .tgz .txt "
        ".webm .xls .xlsx .zip"
    ).split()

    def create_issue_asset(self, conn, me, params, query, body):
        """routers/api/v1/repo/issue_attachment.go CreateIssueAttachment: multipart field
        `attachment`, `?name=` renames it; the file at attachments/<u0>/<u1>/<uuid>
        (models/repo/attachment.go RelativePath), a row in `attachment`; 201 Attachment."""
        me = self.require(me)
        repo = self.find_repo(conn, params["owner"], params["repo"], me)
        issue = self.find_issue(conn, repo, params["index"])
        if not (self.can_write(conn, repo, me) or issue["poster_id"] == me["id"]):
            raise ApiError(403, "user is not allowed to edit this issue")
        filename, content = multipart_file(
            self.request.headers.get("Content-Type", ""), body, "attachment"
        )
        name = query.get("name", [filename])[0] or filename
        if os.path.splitext(name)[1].lower() not in self.ALLOWED_TYPES:
            raise ApiError(422, f"This file extension or type is not allowed: {name}")
        uuid = str(uuidlib.uuid4())
        path = self.data_path("attachments", uuid[0], uuid[1], uuid)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
        now = int(time.time())
        with self.write_lock, conn:
            cursor = conn.execute(
                "INSERT INTO attachment (uuid, repo_id, issue_id, release_id, uploader_id, "
                "comment_id, name, download_count, size, created_unix) "
                "VALUES (?, ?, ?, 0, ?, 0, ?, 0, ?, ?)",
                (uuid, repo["id"], issue["id"], me["id"], name, len(content), now),
            )
        row = conn.execute("SELECT * FROM attachment WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return 201, self.attachment_json(row)

    def serve_attachment(self, conn, me, params, query, body):
        """routers/web/repo/attachment.go ServeAttachment: the file of a visible repository,
        counted as a download."""
        row = conn.execute("SELECT * FROM attachment WHERE uuid = ?", (params["uuid"],)).fetchone()
        if row is None:
            raise ApiError(404, NOT_FOUND)
        repo = conn.execute("SELECT * FROM repository WHERE id = ?", (row["repo_id"],)).fetchone()
        if repo is not None and not self.visible(conn, repo, me):
            raise ApiError(404, NOT_FOUND)
        path = self.data_path("attachments", row["uuid"][0], row["uuid"][1], row["uuid"])
        try:
            with open(path, "rb") as handle:
                content = handle.read()
        except FileNotFoundError:
            log("E", f"attachment {row['uuid']}: {path} is missing")
            raise ApiError(500, "attachment content is missing") from None
        with self.write_lock, conn:
            conn.execute(
                "UPDATE attachment SET download_count = download_count + 1 WHERE id = ?",
                (row["id"],),
            )
        return (
            200,
            content,
            {
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{row["name"]}"',
            },
        )

    def update_avatar(self, conn, me, params, query, body):
        """routers/api/v1/user/avatar.go UpdateAvatar -> services/user/avatar.go UploadAvatar:
        base64 `image`; kept as sent when under [avatar] MAX_ORIGIN_SIZE (256 KiB, as 1.22's
        modules/avatar ProcessAvatarImage keeps a small image: the stand-in cannot re-encode a
        larger one); user.avatar = modules/avatar HashAvatar(id, data), use_custom_avatar on,
        the file at avatars/<avatar>; 204."""
        me = self.require(me)
        try:
            data = base64.b64decode(str((body or {}).get("image") or ""), validate=True)
        except ValueError:
            raise ApiError(400, "image is not base64") from None
        width, height = image_size(data)
        if not width:
            raise ApiError(400, "unsupported image format (the stand-in reads png and gif)")
        if width > 4096 or height > 4096 or len(data) > 262144:
            raise ApiError(400, "image is too large for the stand-in (4096x4096, 256 KiB)")
        avatar = hashlib.sha256(f"{me['id']}-".encode() + data).hexdigest()
        path = self.data_path("avatars", avatar)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        with self.write_lock, conn:
            conn.execute(
                "UPDATE user SET avatar = ?, use_custom_avatar = 1, updated_unix = ? WHERE id = ?",
                (avatar, int(time.time()), me["id"]),
            )
        return 204, b"", {}

    def serve_avatar(self, conn, me, params, query, body):
        """routers/web/web.go /avatars/*: storage.Avatars, the file by its name."""
        path = self.data_path("avatars", params["hash"])
        if not os.path.isfile(path):
            raise ApiError(404, NOT_FOUND)
        with open(path, "rb") as handle:
            data = handle.read()
        kind = {b"\x89PNG": "image/png", b"GIF8": "image/gif"}.get(data[:4], "image/jpeg")
        return 200, data, {"Content-Type": kind}

    def lfs_repo(self, conn, me, params, *, write: bool) -> sqlite3.Row:
        """services/lfs/server.go getAuthenticatedRepository: 404 for no LFS server or no such
        repository; 401 with LFS-Authenticate when the doer may not (requireAuth)."""
        if not truthy(self.s.get("server", "LFS_START_SERVER")):
            raise ApiError(404, NOT_FOUND)
        row = conn.execute(
            "SELECT r.* FROM repository r JOIN user u ON u.id = r.owner_id "
            "WHERE u.lower_name = ? AND r.lower_name = ?",
            (params["owner"].lower(), params["repo"].lower()),
        ).fetchone()
        if row is None:
            raise ApiError(404, "Repository not found")
        if not (self.can_write(conn, row, me) if write else self.visible(conn, row, me)):
            raise LfsAuthRequired()
        return row

    def lfs_object_path(self, oid: str) -> str:
        """modules/lfs/pointer.go RelativePath: oid[0:2]/oid[2:4]/oid[4:]."""
        return os.path.join(self.lfs_root(), oid[0:2], oid[2:4], oid[4:])

    def lfs_batch(self, conn, me, params, query, body):
        """services/lfs/server.go BatchHandler (Accept: application/vnd.git-lfs+json, else
        415); each object: a download or upload action, or an error with its code."""
        headers = self.request.headers
        if "application/vnd.git-lfs+json" not in headers.get("Accept", ""):
            raise ApiError(415, "Unsupported Media Type")
        try:
            request = json.loads(body or b"{}")
            operation = request["operation"]
            objects = list(request["objects"])
        except (ValueError, KeyError, TypeError):
            raise ApiError(422, "Unprocessable Entity") from None
        if operation not in ("download", "upload"):
            raise ApiError(422, "Unprocessable Entity")
        repo = self.lfs_repo(conn, me, params, write=operation == "upload")
        base = self.url(f"{repo['owner_name']}/{repo['name']}.git/info/lfs")
        auth = {"Authorization": headers["Authorization"]} if headers.get("Authorization") else {}
        answers = []
        for obj in objects:
            oid, size = str(obj.get("oid", "")), obj.get("size")
            out: dict = {"oid": oid, "size": size}
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
                out["error"] = {"code": 422, "message": "Oid or size are invalid"}
                answers.append(out)
                continue
            meta = conn.execute(
                "SELECT * FROM lfs_meta_object WHERE oid = ? AND repository_id = ?",
                (oid, repo["id"]),
            ).fetchone()
            exists = os.path.isfile(self.lfs_object_path(oid))
            if operation == "download":
                if meta is None or not exists:
                    out["error"] = {"code": 404, "message": "Object does not exist"}
                else:
                    out["actions"] = {"download": {"href": f"{base}/objects/{oid}", "header": auth}}
            elif not (meta is not None and exists):
                out["actions"] = {
                    "upload": {"href": f"{base}/objects/{oid}/{size}", "header": auth},
                    "verify": {"href": f"{base}/verify", "header": auth},
                }
            answers.append(out)
        return 200, {"objects": answers}, {"Content-Type": "application/vnd.git-lfs+json"}

    def lfs_upload(self, conn, me, params, query, body):
        """services/lfs/server.go UploadHandler: the content must hash to the oid and be
        `size` long (422 otherwise); stored, then the lfs_meta_object row."""
        repo = self.lfs_repo(conn, me, params, write=True)
        oid, size = params["oid"], int(params["size"])
        if len(body) != size or hashlib.sha256(body).hexdigest() != oid:
            raise ApiError(422, "content does not match the oid and size")
        path = self.lfs_object_path(oid)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "wb") as handle:
            handle.write(body)
        os.replace(path + ".tmp", path)
        now = int(time.time())
        with self.write_lock, conn:
            conn.execute(
                "INSERT OR IGNORE INTO lfs_meta_object (oid, size, repository_id, "
                "created_unix, updated_unix) VALUES (?, ?, ?, ?, ?)",
                (oid, size, repo["id"], now, now),
            )
        return 200, b"", {}

    def lfs_download(self, conn, me, params, query, body):
        """services/lfs/server.go DownloadHandler: the object's content, 404 if unknown."""
        repo = self.lfs_repo(conn, me, params, write=False)
        meta = conn.execute(
            "SELECT 1 FROM lfs_meta_object WHERE oid = ? AND repository_id = ?",
            (params["oid"], repo["id"]),
        ).fetchone()
        path = self.lfs_object_path(params["oid"])
        if meta is None or not os.path.isfile(path):
            raise ApiError(404, NOT_FOUND)
        with open(path, "rb") as handle:
            return 200, handle.read(), {"Content-Type": "application/octet-stream"}

    def create_user(self, conn, me, params, query, body):
        me = self.require(me)
        if not me["is_admin"]:
            raise ApiError(403, "reqSiteAdmin")
        body = body or {}
        name = str(body.get("username") or "")
        email = str(body.get("email") or "")
        password = str(body.get("password") or "")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or "@" not in email:
            raise ApiError(422, "[Username Email]: invalid username or email")
        if len(password) < 8:
            raise ApiError(400, "password is too short")
        if conn.execute("SELECT 1 FROM user WHERE lower_name = ?", (name.lower(),)).fetchone():
            raise ApiError(422, f"user already exists [name: {name}]")
        salt = os.urandom(16).hex()
        passwd = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 50000, 50).hex()
        now = int(time.time())
        with self.write_lock, conn:
            conn.execute(
                "INSERT INTO user (lower_name, name, full_name, email, keep_email_private, passwd, "
                "passwd_hash_algo, must_change_password, login_type, login_name, type, location, "
                "website, rands, salt, language, description, created_unix, updated_unix, "
                "last_login_unix, is_active, is_admin, is_restricted, prohibit_login, avatar, "
                "avatar_email, num_repos, num_members, visibility) VALUES (?, ?, ?, ?, 0, ?, "
                "'pbkdf2$50000$50', ?, 0, '', 0, '', '', ?, ?, '', '', ?, ?, 0, 1, 0, 0, 0, '', ?, "
                "0, 0, 0)",
                (
                    name.lower(),
                    name,
                    str(body.get("full_name") or ""),
                    email,
                    passwd,
                    int(bool(body.get("must_change_password", True))),
                    os.urandom(16).hex(),
                    salt,
                    now,
                    now,
                    email,
                ),
            )
        user = conn.execute("SELECT * FROM user WHERE lower_name = ?", (name.lower(),)).fetchone()
        return 201, self.user_json(user, me=me)

    def create_repo(self, conn, me, params, query, body):
        me = self.require(me)
        body = body or {}
        name = str(body.get("name") or "")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
            raise ApiError(422, "[Name]: invalid repository name")
        if conn.execute(
            "SELECT 1 FROM repository WHERE owner_id = ? AND lower_name = ?",
            (me["id"], name.lower()),
        ).fetchone():
            raise ApiError(409, "The repository with the same name already exists.")
        branch = str(body.get("default_branch") or "main")
        path = os.path.join(self.s.repo_root, me["lower_name"], name.lower() + ".git")
        init_bare_repo(path, branch)
        for rel, content in hook_files(gitea_executable(), self.s.config).items():
            os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
            write_if_changed(os.path.join(path, rel), content, 0o755)
        now = int(time.time())
        with self.write_lock, conn:
            conn.execute(
                "INSERT INTO repository (owner_id, owner_name, lower_name, name, description, "
                "website, original_url, default_branch, num_watches, num_stars, num_forks, "
                "num_issues, num_closed_issues, num_pulls, num_closed_pulls, is_private, is_empty, "
                "is_archived, is_mirror, is_fork, fork_id, size, created_unix, updated_unix) "
                "VALUES (?, ?, ?, ?, ?, '', '', ?, 1, 0, 0, 0, 0, 0, 0, ?, 1, 0, 0, 0, 0, 0, ?, ?)",
                (
                    me["id"],
                    me["name"],
                    name.lower(),
                    name,
                    str(body.get("description") or ""),
                    branch,
                    int(bool(body.get("private"))),
                    now,
                    now,
                ),
            )
            conn.execute(
                "UPDATE user SET num_repos = COALESCE(num_repos, 0) + 1 WHERE id = ?", (me["id"],)
            )
        return 201, self.repo_json(conn, self.find_repo(conn, me["name"], name, me), me)

    # -- the private API `gitea serv` calls (routers/private/, 1.22) --

    INTERNAL_ROUTES = (
        ("GET", re.compile(r"/api/internal/serv/none/(?P<keyid>-?\d+)$"), "serv_none"),
        (
            "GET",
            re.compile(
                r"/api/internal/serv/command/(?P<keyid>-?\d+)/(?P<owner>[^/]+)/(?P<repo>[^/]+)$"
            ),
            "serv_command",
        ),
        (
            "POST",
            re.compile(r"/api/internal/ssh/(?P<keyid>-?\d+)/update/(?P<repoid>\d+)$"),
            "key_used",
        ),
    )

    def internal(self, method: str, path: str, query: dict, headers) -> tuple:
        """routers/private/internal.go CheckInternalToken: `Authorization: Bearer
        INTERNAL_TOKEN` or 403; then the route's JSON (private.Response's err/user_msg)."""
        token = load_secret(self.s, "security", "INTERNAL_TOKEN_URI", "INTERNAL_TOKEN")
        scheme, _, given = (headers.get("Authorization") or "").partition(" ")
        if scheme != "Bearer" or not token or not hmac.compare_digest(given, token):
            return self.plain(403, "Forbidden")
        for route_method, pattern, name in self.INTERNAL_ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                conn = connect(self.s)
                try:
                    with self.write_lock:
                        status, body = getattr(self, name)(conn, match.groupdict(), query)
                        conn.commit()
                finally:
                    conn.close()
                return status, body
        raise ApiError(404, NOT_FOUND)

    @staticmethod
    def public_key(conn: sqlite3.Connection, key_id: int) -> sqlite3.Row | None:
        if key_id <= 0 or not has_table(conn, "public_key"):
            return None
        return conn.execute("SELECT * FROM public_key WHERE id = ?", (key_id,)).fetchone()

    def serv_none(self, conn, params: dict, _query: dict) -> tuple:
        """routers/private/serv.go ServNoCommand: the key and its owner."""
        key_id = int(params["keyid"])
        if key_id <= 0:
            return 400, {"err": f"Bad key id: {key_id}"}
        key = self.public_key(conn, key_id)
        if key is None:
            return 401, {"err": f"Cannot find key: {key_id}"}
        owner = None
        if key["type"] == KEY_TYPE_USER:
            owner = conn.execute("SELECT * FROM user WHERE id = ?", (key["owner_id"],)).fetchone()
            if owner is None:
                return 401, {
                    "err": f"Cannot find owner with id: {key['owner_id']} for key: {key_id}"
                }
        return 200, {
            "key": {
                "id": key["id"],
                "name": key["name"],
                "type": key["type"],
                "content": key["content"],
            },
            "user": {"id": owner["id"], "name": owner["name"]} if owner else None,
        }

    def serv_command(self, conn, params: dict, query: dict) -> tuple:
        """routers/private/serv.go ServCommand: the repository, the key, its user (or deploy
        key), then the user's access to the code unit against the mode asked (1 read, 2 write);
        a refusal's user_msg is what `gitea serv` shows the git client."""
        key_id, owner_name, repo_name = int(params["keyid"]), params["owner"], params["repo"]
        mode = int((query.get("mode") or ["0"])[0] or 0)
        results = {
            "IsWiki": False,
            "DeployKeyID": 0,
            "KeyID": key_id,
            "KeyName": "",
            "UserName": "",
            "UserEmail": "",
            "UserID": 0,
            "OwnerName": owner_name,
            "RepoName": repo_name,
            "RepoID": 0,
        }
        mode_string = "write to" if mode > ACCESS_READ else "read"
        if repo_name.endswith(".wiki"):  # the stand-in keeps no wikis
            return 404, {
                "err": "wikis are not served by the lab stand-in",
                "user_msg": f"Cannot find repository: {owner_name}/{repo_name}",
            }
        owner = conn.execute(
            "SELECT * FROM user WHERE lower_name = ?", (owner_name.lower(),)
        ).fetchone()
        repo = (
            owner
            and conn.execute(
                "SELECT * FROM repository WHERE owner_id = ? AND lower_name = ?",
                (owner["id"], repo_name.lower()),
            ).fetchone()
        )
        if repo:
            results["RepoID"] = repo["id"]
            if mode > ACCESS_READ and repo["is_mirror"]:
                return 403, {
                    "err": "mirror",
                    "user_msg": f"Mirror Repository {owner_name}/{repo_name} is read-only",
                }
        key = self.public_key(conn, key_id)
        if key is None:
            return 401, {
                "err": f"Cannot find key: {key_id}",
                "user_msg": f"Cannot find key: {key_id}",
            }
        results.update(KeyName=key["name"], KeyID=key["id"], UserID=key["owner_id"])
        if key["type"] == KEY_TYPE_DEPLOY:
            deploy = (
                repo
                and has_table(conn, "deploy_key")
                and conn.execute(
                    "SELECT * FROM deploy_key WHERE key_id = ? AND repo_id = ?",
                    (key["id"], repo["id"]),
                ).fetchone()
            )
            if not deploy:
                return 403, {
                    "err": "deploy key",
                    "user_msg": f"Public (Deploy) Key: {key['id']}:{key['name']} is not authorized "
                    f"to {mode_string} {owner_name}/{repo_name}.",
                }
            if (deploy["mode"] or ACCESS_READ) < mode:
                return 403, {
                    "err": "deploy key",
                    "user_msg": f"Deploy Key: {key['id']}:{key['name']} is not authorized to "
                    f"{mode_string} {owner_name}/{repo_name}.",
                }
            results.update(
                KeyName=deploy["name"],
                DeployKeyID=deploy["id"],
                UserName=owner_name,
                UserID=repo["owner_id"],
            )
            return 200, results
        user = conn.execute("SELECT * FROM user WHERE id = ?", (key["owner_id"],)).fetchone()
        if user is None:
            return 401, {
                "err": "no owner",
                "user_msg": f"Public Key: {key['id']}:{key['name']} owner {key['owner_id']} does "
                "not exist.",
            }
        if not user["is_active"] or user["prohibit_login"]:
            return 403, {"err": "disabled", "user_msg": "Your account is disabled."}
        results.update(
            UserName=user["name"],
            UserEmail="" if user["keep_email_private"] else (user["email"] or ""),
        )
        if repo and mode > ACCESS_READ and repo["is_archived"]:
            return 401, {
                "err": "archived",
                "user_msg": f"Repo: {owner_name}/{repo_name} is archived.",
            }
        if repo and (
            mode > ACCESS_READ
            or repo["is_private"]
            or ini_must_bool(self.s.get("service", "REQUIRE_SIGNIN_VIEW"), False)
        ):
            allowed = (
                self.can_write(conn, repo, user)
                if mode > ACCESS_READ
                else self.visible(conn, repo, user)
            )
            if not allowed:
                return 403, {
                    "err": "unauthorized",
                    "user_msg": f"User: {user['id']}:{user['name']} with Key: {key['id']}:"
                    f"{key['name']} is not authorized to {mode_string} "
                    f"{owner_name}/{repo_name}.",
                }
        if not repo:
            if mode <= ACCESS_READ or owner is None:
                return 404, {
                    "err": "no repository",
                    "user_msg": f"Cannot find repository: {owner_name}/{repo_name}",
                }
            kind = "organizations" if owner["type"] == USER_TYPE_ORGANIZATION else "users"
            return 403, {
                "err": "push create",
                "user_msg": f"Push to create is not enabled for {kind}.",
            }  # the stand-in's default
        return 200, results

    def key_used(self, conn, params: dict, _query: dict) -> tuple:
        """routers/private/key.go UpdatePublicKeyInRepo: the key's last use."""
        if self.public_key(conn, int(params["keyid"])) is not None:
            conn.execute(
                "UPDATE public_key SET updated_unix = ? WHERE id = ?",
                (int(time.time()), int(params["keyid"])),
            )
        return 200, {}

    # -- git's smart HTTP (routers/web/repo/githttp.go, 1.22) --

    GIT_ROUTE = re.compile(
        r"/(?P<owner>[^/]+)/(?P<repo>[^/]+)/"
        r"(?P<what>info/refs|git-upload-pack|git-receive-pack)/?$"
    )
    GIT_PROTOCOL_HEADER = re.compile(r"^[0-9a-zA-Z]+=[0-9a-zA-Z]+(:[0-9a-zA-Z]+=[0-9a-zA-Z]+)*$")
    NO_CACHE = {
        "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
        "Pragma": "no-cache",
        "Cache-Control": "no-cache, max-age=0, must-revalidate",
    }

    @staticmethod
    def plain(status: int, text: str, headers: dict | None = None) -> tuple:
        """ctx.PlainText / ctx.Error: a text body."""
        return (
            status,
            text.encode(),
            {"Content-Type": "text/plain; charset=utf-8", **(headers or {})},
        )

    def git_http(self, method: str, params: dict, query: dict, headers, body: bytes) -> tuple:
        """httpBase, then GetInfoRefs or serviceRPC: who may pull or push which repository
        over HTTP, and git itself (Debian's: `git upload-pack|receive-pack --stateless-rpc`)
        run in the repository with the environment the hooks need (GITEA_* of
        modules/repository/env.go, SSH_ORIGINAL_COMMAND=<service>): so `gitea hook` lets
        these pushes through and refuses pushes on disk (cmd/hook.go)."""
        import gzip
        import subprocess

        what = params["what"]
        if (method != "GET") if what == "info/refs" else (method != "POST"):
            return self.plain(405, "Method Not Allowed")
        if truthy(self.s.get("repository", "DISABLE_HTTP_GIT")):  # HTTPGitEnabledHandler
            return self.plain(403, "Interacting with repositories by HTTP protocol is not allowed")
        service = query.get("service", [""])[0]
        receive = service == "git-receive-pack" or what == "git-receive-pack"
        pull = not receive and (
            service == "git-upload-pack" or what == "git-upload-pack" or method == "GET"
        )
        username = params["owner"]
        reponame = params["repo"][:-4] if params["repo"].endswith(".git") else params["repo"]
        conn = connect(self.s)
        try:
            owner = conn.execute(
                "SELECT * FROM user WHERE lower_name = ?", (username.lower(),)
            ).fetchone()
            if owner is None or reponame.endswith(".wiki"):  # the stand-in keeps no wikis
                return self.plain(404, "Not found.")
            if owner["type"] == USER_TYPE_INDIVIDUAL and not owner["is_active"]:
                return self.plain(
                    403,
                    "Repository cannot be accessed. You cannot push or open issues/pull-requests.",
                )
            repo = conn.execute(
                "SELECT * FROM repository WHERE owner_id = ? AND lower_name = ?",
                (owner["id"], reponame.lower()),
            ).fetchone()
            if repo is not None and repo["is_archived"] and not pull:
                return self.plain(
                    403,
                    "This repo is archived. You can view files and clone it, "
                    "but cannot push or open issues/pull-requests.",
                )
            public_pull = repo is not None and not repo["is_private"] and pull
            ask_auth = (
                not public_pull
                or ini_must_bool(self.s.get("service", "REQUIRE_SIGNIN_VIEW"), False)
                or (owner["visibility"] or 0) != 0
            )
            environ: dict[str, str] = {}
            if ask_auth:
                try:
                    me = self.authenticate(conn, headers)
                except ApiError:
                    me = None
                if me is None:  # not signed in: git asks its credential helper and retries
                    return self.plain(
                        401, "Unauthorized", {"WWW-Authenticate": 'Basic realm="Gitea"'}
                    )
                if (
                    self.password_login(conn, headers)
                    and conn.execute(
                        "SELECT 1 FROM two_factor WHERE uid = ?", (me["id"],)
                    ).fetchone()
                ):
                    return self.plain(
                        401,
                        "Users with two-factor authentication enabled cannot "
                        "perform HTTP/HTTPS operations via plain username and "
                        "password. Please create and use a personal access "
                        "token on the user settings page",
                    )
                environ = {
                    "GITEA_REPO_USER_NAME": username,
                    "GITEA_REPO_NAME": reponame,
                    "GITEA_PUSHER_NAME": me["name"],
                    "GITEA_PUSHER_ID": str(me["id"]),
                    "GITEA_ROOT_URL": self.s.root_url,
                }
                if repo is not None:
                    # 1.22 checks only read access here when git has proc-receive (Debian's
                    # does) and leaves write to the pre-receive hook's internal call
                    # (routers/private/hook_pre_receive.go); the stand-in's hook does not call
                    # back, so write is checked here: the same pushes are refused.
                    allowed = (
                        self.visible(conn, repo, me) if pull else self.can_write(conn, repo, me)
                    )
                    if not allowed:
                        return self.plain(404, "Repository not found")
                    if not pull and repo["is_mirror"]:
                        return self.plain(403, "mirror repository is read-only")
                if not me["keep_email_private"]:
                    environ["GITEA_PUSHER_EMAIL"] = me["email"] or ""
                environ["GITEA_REPO_IS_WIKI"] = "false"
            if repo is None:
                if not receive:
                    return self.plain(404, "Repository not found")
                kind = "organizations" if owner["type"] == USER_TYPE_ORGANIZATION else "users"
                return self.plain(403, f"Push to create is not enabled for {kind}.")
            environ["GITEA_REPO_ID"] = str(repo["id"])
            path = os.path.join(
                self.s.repo_root,
                (repo["owner_name"] or username).lower(),
                repo["lower_name"] + ".git",
            )
        finally:
            conn.close()
        protocol = headers.get("Git-Protocol", "")
        if protocol and self.GIT_PROTOCOL_HEADER.match(protocol):
            environ["GIT_PROTOCOL"] = protocol
        env = {**os.environ, **environ}
        if what == "info/refs":  # GetInfoRefs
            svc = service[4:] if service.startswith("git-") else ""
            if svc not in ("upload-pack", "receive-pack"):  # dumb HTTP: the info/refs file
                subprocess.run(
                    ["git", "update-server-info"], cwd=path, capture_output=True, check=False
                )
                try:
                    with open(os.path.join(path, "info", "refs"), "rb") as handle:
                        return (
                            200,
                            handle.read(),
                            {**self.NO_CACHE, "Content-Type": "text/plain; charset=utf-8"},
                        )
                except FileNotFoundError:
                    return self.plain(404, "Not found.")
            done = subprocess.run(
                ["git", svc, "--stateless-rpc", "--advertise-refs", "."],
                cwd=path,
                env=env,
                capture_output=True,
                check=False,
            )
            if done.returncode != 0:
                log(
                    "E",
                    f"git {svc} --advertise-refs in {path}: "
                    f"{done.stderr.decode(errors='replace').strip()}",
                )
            head = f"# service=git-{svc}\n"
            advert = f"{len(head) + 4:04x}{head}0000".encode() + done.stdout
            return (
                200,
                advert,
                {**self.NO_CACHE, "Content-Type": f"application/x-git-{svc}-advertisement"},
            )
        svc = what[4:]  # serviceRPC
        if headers.get("Content-Type", "") != f"application/x-git-{svc}-request":
            return self.plain(401, "Unauthorized")
        if headers.get("Content-Encoding", "") == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                return self.plain(500, "Internal Server Error")
        env["SSH_ORIGINAL_COMMAND"] = svc  # "set this for allow pre-receive and post-receive"
        done = subprocess.run(
            ["git", svc, "--stateless-rpc", path],
            cwd=path,
            env=env,
            input=body,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            log(
                "E",
                f"Fail to serve RPC({svc}) in {path}: exit status {done.returncode} - "
                f"{done.stderr.decode(errors='replace').strip()}",
            )
        return 200, done.stdout, {"Content-Type": f"application/x-git-{svc}-result"}

    def password_login(self, conn: sqlite3.Connection, headers) -> bool:
        """Basic auth with a password, not a token (githttp.go: ctx.IsBasicAuth and not
        IsApiToken)."""
        scheme, _, credential = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            name, _, password = base64.b64decode(credential.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        as_token = name if (not password or password == "x-oauth-basic") else password
        return self.user_by_token(conn, as_token) is None

    # -- dispatch --

    def handle(self, method: str, raw_path: str, headers, raw_body: bytes):
        url = urlsplit(raw_path)
        path = unquote(url.path)
        if method == "GET" and path == "/robots.txt":
            robots = os.path.join(self.s.custom_path, "public", "robots.txt")
            if os.path.isfile(robots):
                with open(robots, "rb") as handle:
                    return 200, handle.read(), {"Content-Type": "text/plain; charset=utf-8"}
        if method == "GET" and path == "/":
            page = (
                f"<!DOCTYPE html><html><head><title>Gitea (lab stand-in)</title></head>"
                f"<body>Gitea {GITEA_VERSION} lab stand-in</body></html>"
            ).encode()
            return 200, page, {"Content-Type": "text/html; charset=utf-8"}
        if path.startswith("/api/internal/"):
            return self.internal(method, path, parse_qs(url.query), headers)
        git = self.GIT_ROUTE.match(path)
        if git:
            return self.git_http(method, git.groupdict(), parse_qs(url.query), headers, raw_body)
        for route_method, pattern, handler, kind in self.routes:
            match = pattern.match(path)
            if not match:
                continue
            if route_method != method:
                continue
            body: object = raw_body
            if kind == "json":
                try:
                    body = json.loads(raw_body) if raw_body.strip() else None
                except ValueError:
                    raise ApiError(422, "request body is not JSON") from None
                if body is not None and not isinstance(body, dict):
                    raise ApiError(422, "request body must be a JSON object")
            self.request.headers = headers
            conn = connect(self.s)
            try:
                me = self.authenticate(conn, headers)
                return handler(conn, me, match.groupdict(), parse_qs(url.query), body)
            finally:
                conn.close()
        if any(p.match(path) for _m, p, _h, _k in self.routes):
            raise ApiError(405, "method not allowed")
        raise ApiError(404, NOT_FOUND)


def hash_token(token: str, salt: str) -> str:
    """sha256 hex of the token (the lab fixtures' rows); Gitea's own pbkdf2 when salted."""
    if not salt:
        return hashlib.sha256(token.encode()).hexdigest()
    return hashlib.pbkdf2_hmac("sha256", token.encode(), salt.encode(), 10000, 50).hex()


def next_issue_index(conn: sqlite3.Connection, repo_id: int) -> int:
    """Gitea keeps the last issue number per repository in issue_index (resource index)."""
    top = conn.execute(
        'SELECT COALESCE(MAX("index"), 0) FROM issue WHERE repo_id = ?', (repo_id,)
    ).fetchone()[0]
    if has_table(conn, "issue_index"):
        row = conn.execute(
            "SELECT max_index FROM issue_index WHERE group_id = ?", (repo_id,)
        ).fetchone()
        top = max(top, row[0] or 0) if row else top
        conn.execute(
            "INSERT OR REPLACE INTO issue_index (group_id, max_index) VALUES (?, ?)",
            (repo_id, top + 1),
        )
    return top + 1


def run_user_for_ssh(settings: Settings) -> str:
    return settings.get("server", "BUILTIN_SSH_SERVER_USER") or settings.run_user


def gitea_executable() -> str:
    return os.path.realpath(sys.argv[0])


def make_handler(forge: Forge):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Gitea-lab-standin"
        sys_version = ""

        def version_string(self):
            return self.server_version

        def log_message(self, fmt, *args):  # the router log of Gitea, one line per request
            pass

        def _chunked(self) -> bytes:
            """A Transfer-Encoding: chunked body (RFC 9112 7.1), trailers dropped."""
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()

        def _any(self) -> None:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                raw = self._chunked()  # git sends a body over http.postBuffer so
            else:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
            try:
                status, payload, *extra = forge.handle(self.command, self.path, self.headers, raw)
                headers = extra[0] if extra else {}
            except ApiError as exc:
                status, headers = exc.status, {}
                if isinstance(exc, LfsAuthRequired):
                    headers = {"LFS-Authenticate": 'Basic realm="gitea-lfs"'}
                payload = {"errors": None, "message": str(exc), "url": forge.url("api/swagger")}
            except Exception as exc:  # noqa: BLE001 -- a stand-in bug must answer, not hang
                log("E", f"{self.command} {self.path}: {type(exc).__name__}: {exc}")
                status, headers = 500, {}
                payload = {"message": f"{type(exc).__name__}: {exc}", "url": ""}
            if isinstance(payload, bytes):
                data = payload
            else:
                data = json.dumps(payload).encode()
                headers.setdefault("Content-Type", "application/json;charset=utf-8")
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _any

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, family):
        self.address_family = family
        super().__init__(addr, handler)


# --- subcommands -----------------------------------------------------------------------------


def cmd_web(settings: Settings, opts: dict) -> int:
    check_run_user(settings)
    load_generated_secrets(settings)
    if not settings.install_lock:
        raise Fatal(
            f"[security] INSTALL_LOCK is not true in {settings.config}: real Gitea would "
            "serve the install page; this stand-in only runs an installed (restored) "
            "instance"
        )
    if settings.protocol not in ("http",):
        raise Fatal(f"[server] PROTOCOL = {settings.protocol}: this stand-in serves http only")
    open_checked_db(settings)
    migrate(settings)
    sync_tables(settings)
    os.makedirs(settings.repo_root, exist_ok=True)
    family = socket.AF_INET6 if ":" in settings.http_addr else socket.AF_INET
    forge = Forge(settings)
    try:
        httpd = Server((settings.http_addr, settings.http_port), make_handler(forge), family)
    except OSError as exc:
        raise Fatal(
            f"Failed to start server: listen tcp {settings.http_addr}:"
            f"{settings.http_port}: {exc.strerror}"
        ) from None
    if opts.get("pid"):
        with open(str(opts["pid"]), "w", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")

    def stop(signum, _frame):
        log("I", f"Received {signal.Signals(signum).name}: shutting down")
        sd_notify("STOPPING=1")
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log("I", f"Starting Gitea on PID: {os.getpid()} (lab stand-in {GITEA_VERSION})")
    log("I", f"Custom path: {settings.custom_path}; config: {settings.config}")
    log("I", f"AppURL(ROOT_URL): {settings.root_url}")
    log("I", f"Database: sqlite3 {settings.db_path}; repositories: {settings.repo_root}")
    log("I", f"Listen: http://{settings.http_addr}:{httpd.server_address[1]}")
    forge.webhooks.start()
    sd_notify(f"READY=1\nSTATUS=Running\nMAINPID={os.getpid()}")
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
    log("I", f"PID: {os.getpid()} Gitea Web Finished")
    return 0


def installed(settings: Settings) -> None:
    """What a command that reads the database checks first: RUN_USER, the generated secrets
    (saved to app.ini as Gitea does), a sound database."""
    check_run_user(settings)
    load_generated_secrets(settings)
    open_checked_db(settings)
    ensure_up_to_date(settings)


def cmd_migrate(settings: Settings) -> int:
    """`gitea migrate` (cmd/migrate.go): the migrations alone, without serving."""
    check_run_user(settings)
    load_generated_secrets(settings)
    open_checked_db(settings)
    migrate(settings)
    return 0


def cmd_regenerate_hooks(settings: Settings) -> int:
    """services/repository/hooks.go SyncRepositoryHooks (1.22): for every repository row, its
    delegate hooks (gitrepo.CreateDelegateHooks, which makes the folders it writes into, so a
    row whose git data is missing gets a hooks/ folder and nothing else), and its wiki's when
    the wiki is there (HasWiki). A repository on disk with no row is not touched."""
    installed(settings)
    files = hook_files(gitea_executable(), settings.config)
    conn = connect(settings)
    try:
        rows = conn.execute("SELECT owner_name, lower_name FROM repository ORDER BY id").fetchall()
    finally:
        conn.close()
    changed = done = 0
    for row in rows:
        base = os.path.join(
            settings.repo_root, (row["owner_name"] or "").lower(), row["lower_name"]
        )
        targets = [base + ".git"]
        if os.path.isdir(base + ".wiki.git"):
            targets.append(base + ".wiki.git")
        if not os.path.isfile(os.path.join(base + ".git", "HEAD")):
            log(
                "W",
                f"repository {row['owner_name']}/{row['lower_name']} has a row but no git "
                "data: its hooks are written into an otherwise empty folder",
            )
        for repo in targets:
            for rel, content in files.items():
                path = os.path.join(repo, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                changed += write_if_changed(path, content, 0o755)
        done += 1
    print(f"Regenerated hooks in {done} repositories ({changed} files changed)", flush=True)
    return 0


def cmd_regenerate_keys(settings: Settings) -> int:
    installed(settings)
    ssh_dir = settings.ssh_root or os.path.join(pwd_home(settings.run_user), ".ssh")
    path = os.path.join(ssh_dir, "authorized_keys")
    conn = connect(settings)
    try:
        rows = (
            conn.execute(
                "SELECT id, content FROM public_key WHERE type IN (1, 2) ORDER BY id"
            ).fetchall()
            if has_table(conn, "public_key")
            else []
        )
    finally:
        conn.close()
    kept: list[str] = []
    if os.path.isfile(path):  # Gitea keeps the lines it did not write
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        skip = False
        for line in lines:
            if skip:
                skip = False
                continue
            if line.strip() == "# gitea public key":
                skip = True
                continue
            kept.append(line)
    command = f'"{gitea_executable()} --config={settings.config} serv key-%d"'
    text = "".join(f"{line}\n" for line in kept)
    for row in rows:
        text += (
            "# gitea public key\n"
            f"command={command % row['id']},no-port-forwarding,"
            "no-X11-forwarding,no-agent-forwarding,no-pty,no-user-rc,restrict "
            f"{row['content'].strip()}\n"
        )
    os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
    write_if_changed(path, text, 0o600)
    print(f"Regenerated {path} with {len(rows)} keys", flush=True)
    return 0


def pwd_home(user: str) -> str:
    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        return os.path.expanduser("~")


def cmd_doctor(settings: Settings) -> int:
    check_run_user(settings)
    load_generated_secrets(settings)
    print("[1] Check paths and basic configuration", flush=True)
    open_checked_db(settings)
    print(f" - [I] integrity_check of {settings.db_path}: ok\nAll done.", flush=True)
    return 0


def cmd_user_list(settings: Settings) -> int:
    installed(settings)
    conn = connect(settings)
    try:
        rows = conn.execute("SELECT * FROM user WHERE type = 0 ORDER BY id").fetchall()
        enrolled = (
            {r[0] for r in conn.execute("SELECT uid FROM two_factor")}
            if has_table(conn, "two_factor")
            else set()
        )
    finally:
        conn.close()
    print("ID   Username   Email   IsActive   IsAdmin   2FA")  # cmd/admin_user_list.go
    for u in rows:
        print(
            f"{u['id']}   {u['name']}   {u['email']}   {bool(u['is_active'])}   "
            f"{bool(u['is_admin'])}   {str(u['id'] in enrolled).lower()}"
        )
    return 0


def _storage_path(settings: Settings, section: str, default: str) -> str:
    """[section] PATH, else APP_DATA_PATH/default (Gitea 1.22 modules/setting/storage.go)."""
    return settings.path(settings.get(section, "PATH") or os.path.join(settings.app_data, default))


# gitea-db.sql as Gitea 1.22 writes it: cmd/dump.go calls models/db DumpDatabase
# (models/db/engine.go in 1.22, engine_dump.go later), which hands the registered tables and
# `version` (last) to xorm's DumpTablesToFile. xorm's engine.go dumpTables (v1.3, the
# "Escape string and blob results from dump more correctly" change) with dialects/sqlite3.go
# and dialects/dialect.go (CreateTableSQL, ColumnString, CreateIndexSQL) writes: a header
# comment, per table CREATE TABLE IF NOT EXISTS and its CREATE INDEX lines, then one INSERT
# per row; every name in backquotes; no BEGIN/COMMIT and no sqlite_sequence. Values: NULL,
# numbers as they are, blobs as X'..', text quoted with control characters cut out as X'..'
# joined by || (so a text of control characters alone comes back a blob, as with xorm).
XORM_NUMERIC = frozenset(
    "BIT TINYINT SMALLINT MEDIUMINT INT INTEGER BIGINT NUMBER DECIMAL NUMERIC REAL FLOAT DOUBLE "
    "MONEY SMALLMONEY SERIAL BIGSERIAL INT8 BOOL BOOLEAN".split()
)
XORM_BLOB = frozenset("BINARY VARBINARY TINYBLOB BLOB MEDIUMBLOB LONGBLOB BYTEA".split())
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")


def xorm_quote(name: str) -> str:
    return "`" + name + "`"


def xorm_value(value: object, decl_type: str) -> str:
    """One value as xorm's dumpTables writes it for SQLite."""
    if value is None:
        return "NULL"
    if decl_type in XORM_NUMERIC and not isinstance(value, bytes):
        return repr(value) if isinstance(value, float) else str(value)
    raw = value if isinstance(value, bytes) else str(value).encode()
    if not raw:
        return "''"
    if decl_type in XORM_BLOB or isinstance(value, bytes):
        return f"X'{raw.hex()}'"
    text, parts, at = str(value).replace("'", "''"), [], 0
    for match in CONTROL_CHARACTERS.finditer(text):
        if match.start() > at:
            parts.append(f"'{text[at : match.start()]}'")
        parts.append(f"X'{match.group().encode().hex()}'")
        at = match.end()
    if at < len(text):
        parts.append(f"'{text[at:]}'")
    return " || ".join(parts)


def xorm_dump(conn: sqlite3.Connection) -> Iterator[str]:
    """gitea-db.sql in xorm's SQLite dialect (described above XORM_NUMERIC), in pieces."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    yield f"/*Generated by xorm {stamp}, from sqlite3 to sqlite3*/\n\n"
    tables = [
        (name, sql)
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY rowid"
        )
        if not name.startswith("sqlite_")
    ]
    tables.sort(key=lambda table: table[0] == "version")  # DumpDatabase appends it last
    for n, (table, sql) in enumerate(tables):
        if n:
            yield "\n"
        cols = conn.execute(f"PRAGMA table_info({xorm_quote(table)})").fetchall()
        keys = [c[1] for c in sorted(cols, key=lambda c: c[5]) if c[5]]
        autoincr = "AUTOINCREMENT" in (sql or "").upper()
        defs = []
        for _cid, name, decl, notnull, default, pk in cols:
            col = f"{xorm_quote(name)} {decl}"
            if pk and len(keys) == 1:
                col += " PRIMARY KEY" + (" AUTOINCREMENT" if autoincr else "")
            if default is not None:
                col += f" DEFAULT {default}"
            defs.append(col + (" NOT NULL" if notnull else " NULL"))
        if len(keys) > 1:
            defs.append("PRIMARY KEY (" + ",".join(xorm_quote(k) for k in keys) + ")")
        yield f"CREATE TABLE IF NOT EXISTS {xorm_quote(table)} ({', '.join(defs)});\n"
        for _seq, index, unique, origin, _partial in conn.execute(
            f"PRAGMA index_list({xorm_quote(table)})"
        ).fetchall():
            if origin != "c":
                continue  # a primary key's or UNIQUE constraint's own index
            on = conn.execute(f"PRAGMA index_info({xorm_quote(index)})").fetchall()
            yield (
                f"CREATE{' UNIQUE' if unique else ''} INDEX {xorm_quote(index)} ON "
                f"{xorm_quote(table)} ({','.join(xorm_quote(c[2]) for c in on)});\n"
            )
        names = ", ".join(xorm_quote(c[1]) for c in cols)
        types = [(c[2] or "").upper() for c in cols]
        head = f"INSERT INTO {xorm_quote(table)} ({names}) VALUES ("
        for row in conn.execute(f"SELECT {names} FROM {xorm_quote(table)}"):
            yield (
                head + ",".join(xorm_value(v, t) for v, t in zip(row, types, strict=True)) + ");\n"
            )


def cmd_dump(settings: Settings, opts: dict) -> int:
    """`gitea dump` as Gitea 1.22's cmd/dump.go lays the zip out: repos/ (the repository
    root), data/lfs/ (LFS objects, when the LFS server is on), gitea-db.sql (the database in
    xorm's SQL: xorm_dump), app.ini, custom/ (unless it is inside the data folder), data/
    (APP_DATA_PATH but for file sessions, the repository root, LFS, attachments, packages,
    logs and the dump itself; so a SQLite gitea.db there is in it, copied as it is),
    data/attachments/, data/packages/, log/. Zip only here (the real one also writes tar.*);
    the file is 0600."""
    import zipfile

    check_run_user(settings)
    if not settings.install_lock:
        log("E", f"Is '{settings.config}' really the right config path?")
        raise Fatal("gitea is not initialized")
    out_type = str(opts.get("type") or "zip")
    if out_type != "zip":
        raise Fatal(f"--type {out_type}: this stand-in writes zip dumps only")
    name = str(opts.get("file") or f"gitea-dump-{int(time.time())}.zip")
    name = re.sub(r"\.(zip|tar|tar\.(sz|gz|xz|bz2|br|lz4|zst))$", "", name) + ".zip"
    target = os.path.abspath(name)
    lfs = _storage_path(settings, "lfs", "lfs")
    attachments = _storage_path(settings, "attachment", "attachments")
    packages = _storage_path(settings, "packages", "packages")
    log_root = settings.path(
        settings.get("log", "ROOT_PATH") or os.path.join(settings.work_path, "log")
    )

    def add_tree(zf, inside: str, root: str, excludes: list[str]) -> None:
        # cmd/dump.go addRecursiveExclude: folders (as entries) and regular files, recursively
        if not os.path.isdir(root):
            return
        for entry in sorted(os.listdir(root)):
            path = os.path.join(root, entry)
            arc = f"{inside}/{entry}"
            if os.path.isdir(path) and not os.path.islink(path):
                if path not in excludes:
                    zf.write(path, arc + "/")
                    add_tree(zf, arc, path, excludes)
            elif os.path.isfile(path) and path != target:
                zf.write(path, arc)

    conn = None
    try:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            if not opts.get("skip_repository"):
                add_tree(zf, "repos", settings.repo_root, [target])
                lfs_on = truthy(settings.get("server", "LFS_START_SERVER"))
                if not opts.get("skip_lfs_data") and lfs_on:
                    add_tree(zf, "data/lfs", lfs, [])
            try:
                conn = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True, timeout=10)
                sql_info = zipfile.ZipInfo("gitea-db.sql", time.localtime()[:6])
                sql_info.compress_type = zipfile.ZIP_DEFLATED
                sql_info.external_attr = 0o600 << 16  # os.CreateTemp's file, as Gitea adds it
                with zf.open(sql_info, "w", force_zip64=True) as out:
                    for line in xorm_dump(conn):
                        out.write(line.encode())
            except sqlite3.Error as exc:
                raise Fatal(f"Failed to dump database: {exc}") from None
            zf.write(settings.config, "app.ini")
            custom = settings.custom_path
            inside_data = not os.path.relpath(custom, settings.app_data).startswith("..")
            if not opts.get("skip_custom_dir") and os.path.isdir(custom) and not inside_data:
                add_tree(zf, "custom", custom, [target])
            if os.path.isdir(settings.app_data):
                excludes = [settings.repo_root, lfs, attachments, packages, log_root, target]
                if (settings.get("session", "PROVIDER") or "memory") == "file":
                    excludes.append(
                        settings.path(
                            settings.get("session", "PROVIDER_CONFIG")
                            or os.path.join(settings.app_data, "sessions")
                        )
                    )
                add_tree(zf, "data", settings.app_data, excludes)
            if not opts.get("skip_attachment_data"):
                add_tree(zf, "data/attachments", attachments, [])
            if not opts.get("skip_package_data"):
                add_tree(zf, "data/packages", packages, [])
            if not opts.get("skip_log"):
                add_tree(zf, "log", log_root, [target])
    except OSError as exc:
        raise Fatal(f"Failed to save {name}: {exc}") from None
    finally:
        if conn is not None:
            conn.close()
    os.chmod(target, 0o600)
    log("I", f"Finish dumping in file {name}")
    return 0


# modules/repository/env.go (1.22): what Gitea sets for the hooks of a push it serves
ENV_IS_INTERNAL = "GITEA_INTERNAL_PUSH"
NO_ENVIRONMENT = (
    "Rejecting changes as Gitea environment not set.\n"
    "If you are pushing over SSH you must push with a key managed by\n"
    "Gitea or set your environment appropriately."
)


def go_parse_bool(value: str | None) -> bool | None:
    """Go's strconv.ParseBool: None when the text is not one of its words."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def ini_must_bool(value: str, default: bool) -> bool:
    """go-ini's Key.MustBool: its parseBool's words (strconv's, plus yes/no/on/off/y/n),
    the default for anything else or an empty value."""
    low = value.strip()
    if low in ("1", "t", "T", "TRUE", "true", "True", "YES", "yes", "Yes", "y", "ON", "on", "On"):
        return True
    if low in (
        "0",
        "f",
        "F",
        "FALSE",
        "false",
        "False",
        "NO",
        "no",
        "No",
        "n",
        "OFF",
        "off",
        "Off",
    ):
        return False
    return default


def hook_fail(message: str) -> int:
    """cmd/serv.go fail (1.22): an empty line on stdout, `Gitea: <message>` on stderr, exit
    status 1 (cli.NewExitError("", 1)); git shows it to the pusher as `remote: Gitea: ...`."""
    print("", flush=True)
    print(f"Gitea: {message}", file=sys.stderr, flush=True)
    return 1


def hook_setup(opts: dict) -> Settings:
    """cmd/serv.go setup: setting.MustInstalled, then the repository root must be there."""
    settings = Settings(opts)
    if not settings.install_lock:
        raise Fatal(
            "Unable to load config file for a installed Gitea instance, you should either "
            'use "--config" to set your config file (app.ini), or run "gitea web" command '
            "to install Gitea."
        )
    if not os.path.exists(settings.repo_root):
        raise HookRefused("Unable to access repository path")
    return settings


class HookRefused(Exception):
    """A hook's refusal through cmd/serv.go fail."""


def cmd_hook(words: list[str], opts: dict) -> int:
    """`gitea hook <name>` as 1.22's cmd/hook.go runs it from a repository's hooks.

    Without Gitea's environment (SSH_ORIGINAL_COMMAND, set by `gitea serv` for SSH and by
    routers/web/repo/githttp.go serviceRPC for HTTP) pre-receive, post-receive and
    proc-receive refuse the push while [security] ONLY_ALLOW_PUSH_IF_GITEA_ENVIRONMENT_SET is
    true, its default (modules/setting/security.go: MustBool(true)): a push straight into the
    repository on disk is refused by real Gitea, so it is here. GITEA_INTERNAL_PUSH=true
    (Gitea's own pushes, modules/repository/env.go InternalPushingEnvironment) skips the
    checks. With the environment, real Gitea hands the refs to its internal API (branch
    protection, the branch table, webhooks); the stand-in accepts them."""
    name = words[1] if len(words) > 1 else ""
    internal = bool(go_parse_bool(os.environ.get(ENV_IS_INTERNAL)))
    no_environment = not os.environ.get("SSH_ORIGINAL_COMMAND")
    try:
        if name == "pre-receive":  # runHookPreReceive
            if internal:
                return 0
            settings = hook_setup(opts)
            if no_environment and only_push_with_environment(settings):
                return hook_fail(NO_ENVIRONMENT)
            sys.stdin.read()
            return 0
        if name == "update":  # runHookUpdate: kept for compatibility, refuses refs/pull/*
            if internal or len(words) < 5:
                return 0
            return 1 if words[-3].startswith("refs/pull/") else 0
        if name == "post-receive":  # runHookPostReceive
            settings = hook_setup(opts)
            import subprocess

            done = subprocess.run(["git", "update-server-info"], capture_output=True, check=False)
            if done.returncode != 0:
                raise Fatal(
                    "Failed to call 'git update-server-info': "
                    + done.stderr.decode(errors="replace").strip()
                )
            if internal:
                return 0
            if no_environment and only_push_with_environment(settings):
                return hook_fail(NO_ENVIRONMENT)
            sys.stdin.read()
            return 0
        if name == "proc-receive":  # runHookProcReceive
            settings = hook_setup(opts)
            if no_environment and only_push_with_environment(settings):
                return hook_fail(NO_ENVIRONMENT)
            return hook_fail("No proc-receive support")  # the stand-in does not speak AGit
    except HookRefused as exc:
        return hook_fail(str(exc))
    raise Fatal(f"No help topic for 'hook {name}'")


def only_push_with_environment(settings: Settings) -> bool:
    return ini_must_bool(settings.get("security", "ONLY_ALLOW_PUSH_IF_GITEA_ENVIRONMENT_SET"), True)


# cmd/serv.go (1.22): the verbs `gitea serv` lets through, and the access each asks for
SERV_VERBS = {
    "git-upload-pack": ACCESS_READ,
    "git-upload-archive": ACCESS_READ,
    "git-receive-pack": ACCESS_WRITE,
}
SERV_LFS_VERBS = ("git-lfs-authenticate", "git-lfs-transfer")


def local_url(settings: Settings) -> str:
    """modules/setting/server.go LOCAL_ROOT_URL: where Gitea's own commands reach its web
    process (HTTP_ADDR, 0.0.0.0 read as localhost)."""
    given = settings.get("server", "LOCAL_ROOT_URL")
    if given:
        return given if given.endswith("/") else given + "/"
    addr = settings.http_addr if settings.http_addr not in ("0.0.0.0", "") else "localhost"
    return f"http://{addr}:{settings.http_port}/"


def private_call(settings: Settings, method: str, path: str) -> tuple[int, dict]:
    """modules/private/request.go: the internal API with the internal token; a web process that
    does not answer is "Internal Server Connection Error", as for real Gitea."""
    import urllib.error
    import urllib.request

    token = load_secret(settings, "security", "INTERNAL_TOKEN_URI", "INTERNAL_TOKEN")
    request = urllib.request.Request(
        local_url(settings) + path.lstrip("/"),
        method=method,
        headers={"Authorization": f"Bearer {token}"},
        data=b"" if method == "POST" else None,
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"{}")
        except ValueError:
            return exc.code, {"err": raw.decode(errors="replace").strip()}
    except OSError as exc:
        raise HookRefused("Internal Server Connection Error") from exc


def cmd_serv(words: list[str], opts: dict) -> int:
    """`gitea serv key-N`, what the `command=` of each authorized_keys line runs (cmd/serv.go,
    1.22): the key named by its id, SSH_ORIGINAL_COMMAND split as a shell would, the verb and
    `owner/repo` checked, the private API asked whether this key's user may read or write it
    (routers/private/serv.go), then Debian's git-upload-pack or git-receive-pack run in the
    repository root with Gitea's environment (modules/repository/env.go), so the hooks take
    the push. Every refusal goes through `fail`: `Gitea: <why>` on stderr, exit status 1."""
    import shlex
    import subprocess

    try:
        settings = hook_setup(opts)
        if truthy(settings.get("server", "DISABLE_SSH")):
            print("Gitea: SSH has been disabled", file=sys.stderr, flush=True)
            return 0
        if len(words) < 2:
            print(USAGE)
            return 0
        keys = words[1].split("-")
        if len(keys) != 2 or keys[0] != "key":
            return hook_fail("Key ID format error")
        if not re.fullmatch(r"-?\d+", keys[1]):
            return hook_fail("Key ID parsing error")
        key_id = int(keys[1])
        command = os.environ.get("SSH_ORIGINAL_COMMAND", "")
        if not command:
            status, body = private_call(settings, "GET", f"api/internal/serv/none/{key_id}")
            if status != 200:
                return hook_fail("Key check failed")
            key, user = body["key"], body.get("user") or {}
            if key["type"] == KEY_TYPE_DEPLOY:
                print(
                    "Hi there! You've successfully authenticated with the deploy key named "
                    f"{key['name']}, but Gitea does not provide shell access.",
                    file=sys.stderr,
                )
            else:
                print(
                    f"Hi there, {user.get('name')}! You've successfully authenticated with the "
                    f"key named {key['name']}, but Gitea does not provide shell access.",
                    file=sys.stderr,
                )
            print(
                "If this is unexpected, please log in with password and setup Gitea under "
                "another user.",
                file=sys.stderr,
            )
            return 0
        try:
            argv = shlex.split(command)
        except ValueError:
            return hook_fail("Error parsing arguments")
        if len(argv) < 2:
            return hook_fail("Too few arguments")
        verb, repo_path = argv[0], argv[1].removeprefix("/")
        parts = repo_path.split("/", 1)
        if len(parts) != 2:
            return hook_fail("Invalid repository path")
        username, reponame = parts[0], parts[1].removesuffix(".git")
        repo_path = repo_path.strip().lower()
        if re.search(r"[^\w\-.]", reponame):
            return hook_fail("Invalid repo name")
        if verb in SERV_LFS_VERBS:
            if not truthy(settings.get("server", "LFS_START_SERVER")):
                return hook_fail("LFS Server is not enabled")
            return hook_fail(f"{verb} is not served by the lab stand-in")
        if verb not in SERV_VERBS:
            return hook_fail("Unknown git command")
        status, results = private_call(
            settings,
            "GET",
            f"api/internal/serv/command/{key_id}/{username}/{reponame}"
            f"?mode={SERV_VERBS[verb]}&verb={verb}",
        )
        if status != 200:
            return hook_fail(results.get("user_msg") or "Internal Server Error (no specific error)")
        home = settings.get("git", "HOME_PATH") or os.path.join(settings.app_data, "home")
        env = {
            **os.environ,
            "GITEA_REPO_IS_WIKI": "true" if results["IsWiki"] else "false",
            "GITEA_REPO_NAME": results["RepoName"],
            "GITEA_REPO_USER_NAME": results["OwnerName"],
            "GITEA_PUSHER_NAME": results["UserName"],
            "GITEA_PUSHER_EMAIL": results["UserEmail"],
            "GITEA_PUSHER_ID": str(results["UserID"]),
            "GITEA_REPO_ID": str(results["RepoID"]),
            "GITEA_PR_ID": "0",
            "GITEA_DEPLOY_KEY_ID": str(results["DeployKeyID"]),
            "GITEA_KEY_ID": str(results["KeyID"]),
            "GITEA_ROOT_URL": settings.root_url,
            # modules/git/git.go CommonCmdServEnvs
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "HOME": settings.path(home),
        }
        done = subprocess.run([verb, repo_path], cwd=settings.repo_root, env=env, check=False)
        if done.returncode != 0:
            return hook_fail("Failed to execute git command")
        if results["KeyID"] > 0:
            private_call(
                settings, "POST", f"api/internal/ssh/{results['KeyID']}/update/{results['RepoID']}"
            )
        return 0
    except HookRefused as exc:
        return hook_fail(str(exc))


USAGE = f"""NAME:
   gitea - A painless self-hosted Git service (LAB STAND-IN {GITEA_VERSION})

USAGE:
   gitea [global options] command [command options]

COMMANDS:
   web                       Start Gitea web server (needs INSTALL_LOCK, RUN_USER, a sound db)
   migrate                   Migrate an older database to this release's version
   admin regenerate hooks    Rewrite the git hooks of every repository
   admin regenerate keys     Rewrite the RUN_USER's authorized_keys from the database
   admin user list           List users
   doctor check              PRAGMA integrity_check of the database
   dump [-f FILE] [-R] …     Dump Gitea files and database into a zip (cmd/dump.go's layout)
   hook                      Delegate commands called by the git hooks (1.22's checks)
   serv key-N                Git over SSH for the key N (authorized_keys' command=)

GLOBAL OPTIONS:
   --config value, -c value       Set custom config file \
(default: "$GITEA_WORK_DIR/custom/conf/app.ini")
   --work-path value, -w value    Set Gitea's working path (default: /var/lib/gitea)
   --custom-path value, -C value  Set custom path
   --version, -v                  print the version
"""


def main(argv: list[str]) -> int:
    try:
        words, opts = parse_args(argv)
        if opts.get("version"):
            print(BUILD_LINE)
            return 0
        if opts.get("help") or words[:1] == ["help"]:
            print(USAGE)
            return 0
        if words[:1] == ["hook"]:
            return cmd_hook(words, opts)
        if words[:1] == ["serv"]:
            return cmd_serv(words, opts)
        command = words or ["web"]  # like Gitea: no subcommand means `web`
        settings = Settings(opts)
        if command == ["web"]:
            return cmd_web(settings, opts)
        if command == ["admin", "regenerate", "hooks"]:
            return cmd_regenerate_hooks(settings)
        if command == ["admin", "regenerate", "keys"]:
            return cmd_regenerate_keys(settings)
        if command == ["admin", "user", "list"]:
            return cmd_user_list(settings)
        if command == ["migrate"]:
            return cmd_migrate(settings)
        if command == ["dump"]:
            return cmd_dump(settings, opts)
        if command[:2] == ["doctor", "check"] or command == ["doctor"]:
            return cmd_doctor(settings)
        raise Fatal(f"No help topic for '{' '.join(command)}' (lab stand-in: see gitea --help)")
    except Fatal as exc:
        log("F", str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
