"""Runbook step 4, installed (tasks/gitea.py): Gitea at the pinned version, its app.ini, folders
and unit, running as its own user and listening."""

from __future__ import annotations

import re
import shlex

from phoenix.forge.appini import jwt_secret_ok

from .helpers import ini_get, mode, not_root, out, unit_property

UNIT = "gitea"


def _binary(host) -> str:
    """The program the gitea unit starts (its ExecStart), so the check follows the unit."""
    exec_start = unit_property(host, UNIT, "ExecStart")
    match = re.search(r"path=(\S+)", exec_start)
    assert match, "the gitea unit has no ExecStart: is gitea.service installed? (runbook step 4)"
    return match.group(1)


def test_step4_gitea_binary_is_pinned_version(host, settings):
    binary = _binary(host)
    result = host.run(f"{shlex.quote(binary)} --version")
    assert result.rc == 0, (
        f"{binary} --version failed (exit {result.rc}): {result.stderr.strip()[:200]}"
    )
    match = re.search(r"version (\S+)", result.stdout)
    found = match.group(1) if match else result.stdout.strip()[:60]
    assert found == settings["gitea_version"], (
        f"{binary} is Gitea {found}, expected {settings['gitea_version']} (gitea_version)"
    )


def test_step4_app_ini_run_user_is_gitea_user(host, settings, gitea_paths, app_ini_path):
    run_user, want = gitea_paths["run_user"], settings["gitea_user"]
    assert run_user == want, (
        f"RUN_USER in {app_ini_path} is {run_user or 'not set'}, expected {want} (gitea_user)"
    )
    unit_user = unit_property(host, UNIT, "User") or "root"
    assert unit_user == run_user, (
        f"the gitea unit runs as {unit_user} but app.ini says "
        f"RUN_USER = {run_user}: Gitea will refuse to start"
    )


def test_step4_app_ini_holds_the_secrets_gitea_would_die_generating(app_ini, app_ini_path):
    """Gitea 1.22 generates a missing or invalid JWT_SECRET, INTERNAL_TOKEN or (with LFS on)
    LFS_JWT_SECRET and saves it to app.ini; it dies when it cannot (root:gitea 0640 here). An
    empty SECRET_KEY is Gitea's built-in key, never generated (modules/setting/security.go)."""
    missing = []
    if not (
        ini_get(app_ini, "security", "INTERNAL_TOKEN")
        or ini_get(app_ini, "security", "INTERNAL_TOKEN_URI")
    ):
        missing.append("[security] INTERNAL_TOKEN is not set")
    oauth2 = ini_get(app_ini, "oauth2", "ENABLE").lower() not in ("false", "0")
    if oauth2 and not jwt_secret_ok(ini_get(app_ini, "oauth2", "JWT_SECRET")):
        missing.append("[oauth2] JWT_SECRET is missing or not 32 bytes of base64url")
    lfs = ini_get(app_ini, "server", "LFS_START_SERVER").lower() in ("true", "1")
    if lfs and not jwt_secret_ok(ini_get(app_ini, "server", "LFS_JWT_SECRET")):
        missing.append("[server] LFS_JWT_SECRET is missing or not 32 bytes of base64url")
    assert not missing, (
        f"{app_ini_path}: {'; '.join(missing)}: Gitea would generate it and "
        "die saving app.ini (modules/setting/oauth2.go); render it from the "
        "backup's app.ini (phoenix/forge/appini.py)"
    )


def test_step4_gitea_folders_owned_by_run_user(host, settings, gitea_paths):
    """The work, data, custom and repository folders are the run user's and closed to others
    (they hold private repositories); the config folder is closed to others too."""
    user = settings["gitea_user"]
    problems = []
    for key in ("work", "data", "custom", "repos"):
        f = host.file(gitea_paths[key])
        if not f.is_directory:
            problems.append(f"{gitea_paths[key]} is missing")
        elif f.user != user:
            problems.append(f"{gitea_paths[key]} is owned by {f.user}, expected {user}")
        elif f.mode & 0o007:
            problems.append(
                f"{gitea_paths[key]} is mode {mode(f)}: open to every user on the "
                "host, expected no access for others (0750)"
            )
    config = host.file(settings["gitea_config_dir"])
    if not config.is_directory or config.mode & 0o007:
        problems.append(f"{settings['gitea_config_dir']} is missing or open to others")
    home = host.file(settings["gitea_home"])
    if not home.is_directory or home.user != user:
        problems.append(f"{settings['gitea_home']} (gitea_home) is missing or not owned by {user}")
    wrong = out(
        host,
        f"find {shlex.quote(gitea_paths['repos'])} "
        f"! -user {shlex.quote(user)} -print 2>/dev/null | head -3 || true",
    ).split()
    if wrong:
        problems.append(
            f"files in the repositories not owned by {user}, e.g. {wrong[0]} "
            f"(runbook step 4: chown -R {user}:{user})"
        )
    assert not problems, "; ".join(problems)


def test_step4_gitea_service_active_and_enabled(host):
    gitea = host.service(UNIT)
    assert gitea.is_running, (
        "the gitea service is not running (systemctl status gitea; journalctl -u gitea)"
    )
    assert gitea.is_enabled, "the gitea service is not enabled: it will not start at boot"


def test_step4_gitea_listening_on_http_port(host, settings):
    port = settings["gitea_http_port"]
    listening = [s for s in host.socket.get_listening_sockets() if s.startswith("tcp://")]
    assert any(s.rsplit(":", 1)[1] == str(port) for s in listening), (
        f"nothing listens on TCP port {port} (gitea_http_port): is gitea running? "
        f"(listening: {', '.join(sorted(s[6:] for s in listening))})"
    )


def test_security_gitea_not_running_as_root(host, settings):
    problems = not_root(host, "gitea", settings["gitea_user"])
    assert not problems, "; ".join(problems)
