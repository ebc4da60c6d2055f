"""The forge's identity carried from the backup's app.ini (phoenix/forge/appini.py)."""

from __future__ import annotations

import pytest

from phoenix.errors import PhoenixError
from phoenix.forge import appini

JWT = "x" * 43
OLD = f"""\
APP_NAME = The old forge
RUN_USER = git
WORK_PATH = /home/git/gitea

[server]
DOMAIN = forge.example
LFS_START_SERVER = true
LFS_JWT_SECRET = {"L" * 43}
LFS_CONTENT_PATH = /home/git/gitea/lfs

[security]
INSTALL_LOCK = true
SECRET_KEY = old-secret
INTERNAL_TOKEN = old-token

[oauth2]
JWT_SECRET = {JWT}

[mailer]
ENABLED = true
SMTP_ADDR = smtp.example

[webhook]
ALLOWED_HOST_LIST = ci.example
"""
PHOENIX = """\
; written by Phoenix
RUN_USER = gitea
WORK_PATH = /var/lib/gitea

[server]
DOMAIN = forge.lab.test

[security]
INSTALL_LOCK = true
SECRET_KEY = new
"""


def test_merge_keeps_old_settings_and_drops_old_paths():
    merged = appini.merge(appini.parse(PHOENIX), appini.parse(OLD))
    assert merged[""]["RUN_USER"] == "gitea" and merged[""]["WORK_PATH"] == "/var/lib/gitea"
    assert merged["server"]["DOMAIN"] == "forge.lab.test"
    assert "LFS_CONTENT_PATH" not in merged["server"]
    assert merged["mailer"] == {"ENABLED": "true", "SMTP_ADDR": "smtp.example"}
    assert merged["webhook"]["ALLOWED_HOST_LIST"] == "ci.example"
    text = appini.render(merged, appini.header_of(PHOENIX))
    assert text.startswith("; written by Phoenix\nRUN_USER = gitea\n")
    assert appini.parse(text) == merged


def test_identity_comes_from_the_backup():
    old = appini.parse(OLD)
    chosen = appini.resolve_identity(backup=appini.identity(old), operator=lambda _: None,
                                     lfs=appini.lfs_on(old), where="snapshot abc")
    assert chosen == {"gitea_secret_key": "old-secret", "gitea_internal_token": "old-token",
                      "gitea_jwt_secret": JWT, "gitea_lfs_jwt_secret": "L" * 43}


def test_a_differing_operator_secret_names_the_key_not_the_value():
    old = appini.parse(OLD)
    mine = {"gitea_secret_key": "operators-own-value"}
    with pytest.raises(PhoenixError) as info:
        appini.resolve_identity(backup=appini.identity(old), operator=mine.get, lfs=True,
                                where="snapshot abc")
    message = str(info.value)
    assert "gitea_secret_key" in message and "SECRET_KEY" in message
    assert "operators-own-value" not in message and "old-secret" not in message


def test_without_a_backup_the_operator_secrets_are_required_and_checked():
    mine = {"gitea_secret_key": "k", "gitea_internal_token": "t"}
    with pytest.raises(PhoenixError, match="JWT_SECRET .*gitea_jwt_secret"):
        appini.resolve_identity(backup={}, operator=mine.get, lfs=False, where="the backup")
    mine["gitea_jwt_secret"] = "0123456789abcdef" * 4   # hex: Gitea would replace it
    with pytest.raises(PhoenixError, match="not 32 bytes of unpadded base64url"):
        appini.resolve_identity(backup={}, operator=mine.get, lfs=False, where="the backup")
    mine["gitea_jwt_secret"] = JWT
    assert appini.resolve_identity(backup={}, operator=mine.get, lfs=False,
                                   where="the backup")["gitea_jwt_secret"] == JWT


URI_FORGE = f"""\
RUN_USER = git

[server]
LFS_START_SERVER = true
LFS_JWT_SECRET_URI = file:///etc/gitea/lfs_jwt

[security]
INSTALL_LOCK = true
SECRET_KEY_URI = file:/etc/gitea/secret_key
INTERNAL_TOKEN_URI = file:/etc/gitea/internal_token

[oauth2]
JWT_SECRET_URI = file:/etc/gitea/jwt
"""
SAVED = {"/etc/gitea/secret_key": "key-from-file\n", "/etc/gitea/internal_token": " tok \n",
         "/etc/gitea/jwt": JWT + "\n", "/etc/gitea/lfs_jwt": "L" * 43}


def test_uri_secrets_are_read_from_the_backups_files_and_written_in_one_form():
    old = appini.parse(URI_FORGE)
    assert sorted(appini.secret_files(old).values()) == sorted(SAVED)
    chosen = appini.resolve_identity(backup=appini.identity(old, SAVED.get),
                                     operator=lambda _: None, lfs=True, where="snapshot abc")
    assert chosen == {"gitea_secret_key": "key-from-file", "gitea_internal_token": "tok",
                      "gitea_jwt_secret": JWT, "gitea_lfs_jwt_secret": "L" * 43}
    merged = appini.merge(appini.parse(PHOENIX), old)
    assert not [f"[{s}] {k}" for s, keys in merged.items() for k in keys if k.endswith("_URI")]
    assert merged["security"]["SECRET_KEY"] == "new"


def test_a_uri_file_the_backup_lacks_is_named_and_both_forms_are_refused():
    old = appini.parse(URI_FORGE)
    lacking = {k: v for k, v in SAVED.items() if k != "/etc/gitea/internal_token"}
    with pytest.raises(PhoenixError, match=r"INTERNAL_TOKEN_URI \(not in it\)"):
        appini.resolve_identity(backup=appini.identity(old, lacking.get),
                                operator=lambda _: None, lfs=True, where="snapshot abc")
    both = appini.parse(URI_FORGE.replace("[oauth2]", f"[oauth2]\nJWT_SECRET = {JWT}"))
    with pytest.raises(PhoenixError, match="both JWT_SECRET and JWT_SECRET_URI"):
        appini.identity(both, SAVED.get)
    with pytest.raises(PhoenixError, match="not a file: URI"):
        appini.secret_files(appini.parse("[security]\nSECRET_KEY_URI = env:KEY\n"))


def test_an_empty_secret_key_is_giteas_builtin_one_and_stays_empty():
    old = appini.parse(OLD.replace("SECRET_KEY = old-secret", "SECRET_KEY ="))
    chosen = appini.resolve_identity(backup=appini.identity(old), operator=lambda _: None,
                                     lfs=True, where="snapshot abc")
    assert chosen["gitea_secret_key"] == appini.DEFAULT_SECRET_KEY == "!#@FDEWREWR&*("
    assert appini.written_secret_key(chosen["gitea_secret_key"]) == ""
    assert appini.written_secret_key("old-secret") == "old-secret"
    # the operator's own key would lose every 2FA enrolment made under the built-in one
    with pytest.raises(PhoenixError, match="gitea_secret_key differs"):
        appini.resolve_identity(backup=appini.identity(old), operator={
            "gitea_secret_key": "operators-own"}.get, lfs=True, where="snapshot abc")
    # no backup app.ini, or one of a forge not installed: nothing says it used the built-in key
    assert "gitea_secret_key" not in appini.identity({})
    partial = appini.parse("[server]\nLFS_START_SERVER = true\n")
    assert "gitea_secret_key" not in appini.identity(partial)


def test_the_forges_ssh_host_and_port_are_kept_not_rewritten_with_the_web_name():
    old = appini.parse(OLD.replace("DOMAIN = forge.example",
                                   "DOMAIN = forge.example\nSSH_DOMAIN = git.example\n"
                                   "SSH_PORT = 2222"))
    phoenix = appini.parse(PHOENIX.replace("DOMAIN = forge.lab.test",
                                           "DOMAIN = forge.lab.test\nSSH_DOMAIN = forge.lab.test\n"
                                           "SSH_PORT = 22"))
    merged = appini.merge(phoenix, old)
    assert merged["server"]["SSH_DOMAIN"] == "git.example"
    assert merged["server"]["SSH_PORT"] == "2222"
    assert merged["server"]["DOMAIN"] == "forge.lab.test"
    # a forge that never set them: Phoenix's
    assert appini.merge(phoenix, appini.parse(OLD))["server"]["SSH_DOMAIN"] == "forge.lab.test"
