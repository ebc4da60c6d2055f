"""Runbook step 4: Gitea installed at the pinned version, restored, running, answering."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import requests

from phoenix.appini import jwt_secret_ok

from .helpers import VALIDATION_ISSUE_TITLE, ini_get, mode, out, unit_property, verifier

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
    assert result.rc == 0, f"{binary} --version failed (exit {result.rc}): " \
                           f"{result.stderr.strip()[:200]}"
    match = re.search(r"version (\S+)", result.stdout)
    found = match.group(1) if match else result.stdout.strip()[:60]
    assert found == settings["gitea_version"], \
        f"{binary} is Gitea {found}, expected {settings['gitea_version']} (gitea_version)"


def test_step4_app_ini_run_user_is_gitea_user(host, settings, gitea_paths, app_ini_path):
    run_user, want = gitea_paths["run_user"], settings["gitea_user"]
    assert run_user == want, f"RUN_USER in {app_ini_path} is {run_user or 'not set'}, " \
                             f"expected {want} (gitea_user)"
    unit_user = unit_property(host, UNIT, "User") or "root"
    assert unit_user == run_user, f"the gitea unit runs as {unit_user} but app.ini says " \
                                  f"RUN_USER = {run_user}: Gitea will refuse to start"


def test_step4_app_ini_holds_the_secrets_gitea_would_die_generating(app_ini, app_ini_path):
    """Gitea 1.22 generates a missing or invalid JWT_SECRET, INTERNAL_TOKEN or (with LFS on)
    LFS_JWT_SECRET and saves it to app.ini; it dies when it cannot (root:gitea 0640 here), and
    a new SECRET_KEY would break every user's 2FA: all must be the forge's own, in app.ini."""
    missing = []
    for section, key in (("security", "SECRET_KEY"), ("security", "INTERNAL_TOKEN")):
        if not (ini_get(app_ini, section, key) or ini_get(app_ini, section, key + "_URI")):
            missing.append(f"[{section}] {key} is not set")
    oauth2 = ini_get(app_ini, "oauth2", "ENABLE").lower() not in ("false", "0")
    if oauth2 and not jwt_secret_ok(ini_get(app_ini, "oauth2", "JWT_SECRET")):
        missing.append("[oauth2] JWT_SECRET is missing or not 32 bytes of base64url")
    lfs = ini_get(app_ini, "server", "LFS_START_SERVER").lower() in ("true", "1")
    if lfs and not jwt_secret_ok(ini_get(app_ini, "server", "LFS_JWT_SECRET")):
        missing.append("[server] LFS_JWT_SECRET is missing or not 32 bytes of base64url")
    assert not missing, f"{app_ini_path}: {'; '.join(missing)}: Gitea would generate it and " \
                        "die saving app.ini (modules/setting/oauth2.go); render it from the " \
                        "backup's app.ini (phoenix/appini.py)"


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
            problems.append(f"{gitea_paths[key]} is mode {mode(f)}: open to every user on the "
                            "host, expected no access for others (0750)")
    config = host.file(settings["gitea_config_dir"])
    if not config.is_directory or config.mode & 0o007:
        problems.append(f"{settings['gitea_config_dir']} is missing or open to others")
    home = host.file(settings["gitea_home"])
    if not home.is_directory or home.user != user:
        problems.append(f"{settings['gitea_home']} (gitea_home) is missing or not owned by "
                        f"{user}")
    wrong = out(host, f"find {shlex.quote(gitea_paths['repos'])} "
                      f"! -user {shlex.quote(user)} -print 2>/dev/null | head -3 || true").split()
    if wrong:
        problems.append(f"files in the repositories not owned by {user}, e.g. {wrong[0]} "
                        f"(runbook step 4: chown -R {user}:{user})")
    assert not problems, "; ".join(problems)


def test_step4_gitea_db_owned_by_run_user_0600(host, settings, gitea_paths):
    db = host.file(gitea_paths["db"])
    assert db.is_file, f"{gitea_paths['db']} is missing: the Gitea database was not restored"
    assert db.user == settings["gitea_user"], \
        f"gitea.db is owned by {db.user}, expected {settings['gitea_user']} " \
        f"(chown {settings['gitea_user']}: {gitea_paths['db']})"
    assert db.mode == 0o600, f"gitea.db is mode {mode(db)}, expected 0600 " \
                             f"(chmod 600 {gitea_paths['db']})"


def _query_copy(host, db: str, sql: str) -> list[str]:
    """Run sqlite3 on a copy of the live database: never a lock on it, never a root-owned
    -wal/-shm beside it."""
    script = ('set -e; t=$(mktemp -d); trap \'rm -rf "$t"\' EXIT; '
              f'cp {shlex.quote(db)} "$t/db"; '
              f'for s in -wal; do [ -f {shlex.quote(db)}$s ] && cp {shlex.quote(db)}$s "$t/db$s"; '
              'done; '
              f'sqlite3 -readonly "$t/db" {shlex.quote(sql)}')
    return out(host, f"bash -c {shlex.quote(script)}").splitlines()


def test_step4_gitea_db_integrity_ok(host, gitea_paths):
    rows = _query_copy(host, gitea_paths["db"], "PRAGMA integrity_check;")
    assert rows == ["ok"], f"gitea.db failed PRAGMA integrity_check: {'; '.join(rows[:3])} " \
                           "(restore it again from the backup)"


def test_step4_gitea_service_active_and_enabled(host):
    gitea = host.service(UNIT)
    assert gitea.is_running, "the gitea service is not running (systemctl status gitea; " \
                             "journalctl -u gitea)"
    assert gitea.is_enabled, "the gitea service is not enabled: it will not start at boot"


def test_step4_gitea_listening_on_http_port(host, settings):
    port = settings["gitea_http_port"]
    listening = [s for s in host.socket.get_listening_sockets() if s.startswith("tcp://")]
    assert any(s.rsplit(":", 1)[1] == str(port) for s in listening), \
        f"nothing listens on TCP port {port} (gitea_http_port): is gitea running? " \
        f"(listening: {', '.join(sorted(s[6:] for s in listening))})"


def test_step4_gitea_api_version_200_from_operator(forge_https, settings):
    session, base = forge_https
    url = f"{base}/api/v1/version"
    name = settings["gitea_domain"]
    try:
        response = session.get(url, timeout=10)
    except requests.exceptions.SSLError as exc:
        pytest.fail(f"https://{name} at {base[8:]}: no valid certificate for {name} from the "
                    f"trusted CA ({type(exc).__name__}); is Caddy's storage restored "
                    "(journalctl -u caddy)?")
    except requests.RequestException as exc:
        pytest.fail(f"Gitea does not answer from here: GET https://{name}/api/v1/version at "
                    f"{base[8:]} failed ({type(exc).__name__}); check caddy, gitea, firewall")
    assert response.status_code not in (502, 503, 504), \
        f"Gitea does not answer behind Caddy: https://{name}/api/v1/version answered " \
        f"{response.status_code} (systemctl status gitea)"
    assert response.status_code == 200, f"GET {url} answered {response.status_code}, expected 200"
    version = response.json().get("version")
    assert version == settings["gitea_version"], \
        f"Gitea answers version {version}, expected {settings['gitea_version']}"


def test_step4_http_redirects_to_https(address, settings):
    name = settings["gitea_domain"]
    try:
        response = requests.get(f"http://{address}/api/v1/version", headers={"Host": name},
                                timeout=10, allow_redirects=False)
    except requests.RequestException as exc:
        pytest.fail(f"nothing answers http:// on {address} port 80 ({type(exc).__name__}): "
                    "Caddy redirects it to https (systemctl status caddy)")
    location = response.headers.get("Location", "")
    assert response.status_code in (301, 308) and location.startswith(f"https://{name}/"), \
        f"http://{name}/ answered {response.status_code} to {location or 'nowhere'}, " \
        "expected a permanent redirect to https"


def test_step4_caddy_holds_the_forges_certificate(host, settings):
    """Caddy's home came back with the backup (tasks/backups.saved_paths): a recovered host
    serves the forge's certificate before the DNS cutover, when no ACME CA could validate a
    new one. Told apart here from a Caddy that holds it but does not serve it."""
    home, name = settings.get("https_state_dir"), settings["gitea_domain"]
    if not home:
        pytest.skip("https_state_dir is None in group_data: this host serves no HTTPS")
    q = shlex.quote
    found = host.run(f"ls -d {q(home)}/.local/share/caddy/certificates/*/{q(name)}/"
                     f"{q(name)}.crt 2>/dev/null").stdout.split()
    assert found, f"Caddy's storage ({home}/.local/share/caddy/certificates) holds no " \
                  f"certificate for {name}: it was not restored from the backup (is " \
                  f"{home} in the snapshot?), nor issued yet (journalctl -u caddy)"
    owner = host.file(found[0])
    assert owner.user == "caddy", f"{found[0]} belongs to {owner.user}, not caddy: Caddy " \
                                  "cannot read its certificate (systemctl restart caddy)"


def _replica_used(host, settings, name: str) -> bool:
    """Whether the restore brought database `name` to its Litestream replica's newer point
    (files/phoenix-litestream-restore's report on the host)."""
    path = f"{settings['restore_staging_dir'].rstrip('/')}/litestream.json"
    text = host.run(f"cat {shlex.quote(path)} 2>/dev/null || true").stdout
    if not text.strip():
        return False
    return any(db.get("name") == name and db.get("used") == "replica"
               for db in json.loads(text).get("databases", []))


def test_step4_restored_data_matches_backup_manifest(host, settings, gitea_paths, manifest):
    queries = verifier().COUNT_QUERIES
    own = ("SELECT COUNT(*) FROM issue WHERE COALESCE(is_pull, 0) = 0 AND name = '"
           + VALIDATION_ISSUE_TITLE.replace("'", "''") + "'")
    rows = _query_copy(host, gitea_paths["db"],
                       "; ".join([*queries.values(), own]) + ";")
    *counts, own_issues = (int(r) for r in rows)
    found = dict(zip(queries, counts, strict=True))
    found["issues"] -= own_issues  # the issues step 9 made are not restored data
    wanted = manifest["counts"]
    # Issue 21: a database brought past the snapshot by its Litestream replica holds at least
    # what the snapshot held (more: what was written after it), and every repository row
    # must still have its git data on disk.
    newer = _replica_used(host, settings, "gitea")
    wrong = [f"{found[k]} {k}, the backup has {wanted[k]}"
             for k in ("repositories", "users", "issues", "organizations")
             if k in wanted and (found.get(k, 0) < wanted[k] if newer
                                 else found.get(k) != wanted[k])]
    # A wiki is <name>.wiki.git beside its repository, not a repository of its own
    # (models/repo/wiki.go WikiPath): it is not counted.
    on_disk = out(host, f"find {shlex.quote(gitea_paths['repos'])} -mindepth 2 -maxdepth 2 "
                        "-type d -name '*.git' ! -name '*.wiki.git' 2>/dev/null | wc -l").strip()
    rows_expected = found["repositories"] if newer else wanted.get("repositories")
    if rows_expected is not None and int(on_disk or 0) != rows_expected:
        wrong.append(f"{on_disk} repositories on disk in {gitea_paths['repos']}, "
                     f"the {'database' if newer else 'backup'} has {rows_expected}")
    assert not wrong, f"the restored Gitea does not hold the backup's data: {'; '.join(wrong)}" \
                      f" (backup of {manifest.get('created', 'unknown date')})"
