"""Fixtures of the post-recovery validation suite (pytest-testinfra, any host).

Its modules are named after tasks/ (checks/gitea.py proves what tasks/gitea.py does); the
runbook's table (phoenix/runbook.py) says which make the suite. Run it as `phoenix validate`,
or by hand (pytest collects the files it is given, whatever their names):
    PHOENIX_ENV=lab pytest $(python3 -m phoenix.runbook) --hosts=ssh://forge --ssh-config=FILE
The expected values come from group_data (phoenix.settings.load(); PHOENIX_ENV picks the
override), never from this suite. Every test is named after the runbook step it proves
(test_step4_…; test_security_…, test_backups_…, test_standby_… for what the runbook lacks)
and fails with a sentence an operator can act on.
"""

from __future__ import annotations

import configparser
import json
import shlex
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError
from phoenix.settings import load

from .helpers import ROOT, ini_get, read_ini


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-dns",
        action="store_true",
        help="fail (not skip) when dns_records do not point at this host yet; "
        "for after the cutover",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`wizard` is each of group_data's wizard_names: one test per wizard house; `house` is
    each Hermes house, the backend's first."""
    if "wizard" in metafunc.fixturenames:
        metafunc.parametrize("wizard", load()["wizard_names"])
    if "house" in metafunc.fixturenames:
        settings = load()
        metafunc.parametrize("house", [settings["backend_house"], *settings["wizard_names"]])


# ---- settings and the operator's side -------------------------------------------------------


@pytest.fixture(scope="session")
def settings() -> dict:
    return load()


@pytest.fixture(scope="module")
def role(host) -> str:
    """The host's role marker (tasks/role.py): a standby runs no house and no cron until its
    promotion, so the checks of those ask the opposite of it."""
    return host.run("cat /var/lib/phoenix/role 2>/dev/null || true").stdout.strip() or "unknown"


@pytest.fixture(scope="module")
def address(host) -> str:
    """The host's address as the operator reaches it: the ssh_config HostName of the target."""
    backend = host.backend
    if backend.NAME == "local":
        return "127.0.0.1"
    if not hasattr(backend, "ssh_config"):
        return backend.hostname
    cmd = ["ssh", "-G"] + (["-F", backend.ssh_config] if backend.ssh_config else [])
    out = subprocess.run(
        [*cmd, backend.host.name], check=False, capture_output=True, text=True, timeout=10
    )
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "hostname":
            return value.strip()
    return backend.host.name


@pytest.fixture(scope="module")
def address_ip(address) -> str:
    return socket.gethostbyname(address)


@pytest.fixture(scope="module")
def forge_https(address, settings):
    """(session, base URL) for the forge over HTTPS at this host's address: TLS and Host for
    gitea_domain (the certificate users will see, before the DNS cutover too), trusting only
    https_trust_bundle when it is set."""
    from phoenix.forge.tls import https_session

    return https_session(
        settings["gitea_domain"], address=address, trust=settings.get("https_trust_bundle")
    )


@pytest.fixture(scope="module")
def app_ini_path(settings) -> str:
    return f"{settings['gitea_config_dir']}/app.ini"


@pytest.fixture(scope="module")
def app_ini(host, app_ini_path) -> configparser.ConfigParser:
    f = host.file(app_ini_path)
    assert f.exists, f"{app_ini_path} is missing: Gitea has no configuration (runbook step 4)"
    return read_ini(f.content_string)


@pytest.fixture(scope="module")
def gitea_paths(app_ini, settings) -> dict:
    """Where this Gitea keeps its data, by app.ini and Gitea's own defaults."""

    def get(section: str, key: str) -> str:
        return ini_get(app_ini, section, key)

    work = get(ROOT, "WORK_PATH") or settings["gitea_work_dir"]

    def path(value: str) -> str:
        return value if value.startswith("/") else f"{work.rstrip('/')}/{value}"

    data = path(get("server", "APP_DATA_PATH") or "data")
    return {
        "work": work,
        "data": data,
        "custom": f"{work.rstrip('/')}/custom",
        "db": path(get("database", "PATH") or f"{data}/gitea.db"),
        "repos": path(get("repository", "ROOT") or f"{data}/gitea-repositories"),
        "run_user": get(ROOT, "RUN_USER"),
        "db_type": get("database", "DB_TYPE"),
    }


# ---- the backup this host was restored from -------------------------------------------------


def _manifest_from_source(source: str) -> dict | None:
    path = Path(source).expanduser()
    if path.is_dir() and (path / "manifest.json").is_file():
        return json.loads((path / "manifest.json").read_text())
    if path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.name.lstrip("./") == "manifest.json":
                    return json.loads(tar.extractfile(member).read())
    return None


def _manifest_on_host(host, staging: str) -> dict | None:
    """The manifest the deploy restored: its sha256 is in <staging>/restored, the manifest
    itself in <staging>/<archive sha256>/unpacked/ (tasks/restore.py)."""
    marker = host.file(f"{staging}/restored")
    if not marker.is_file:
        return None
    wanted = marker.content_string.strip()
    listing = host.run(f"sha256sum {shlex.quote(staging)}/*/unpacked/manifest.json")
    for line in listing.stdout.splitlines():
        digest, _, path = line.partition("  ")
        if digest == wanted:
            return json.loads(host.file(path).content_string)
    return None


@pytest.fixture(scope="module")
def manifest(host, settings) -> dict:
    """The manifest of the backup this host was restored from (the deploy's record on the
    host), else the one of restore_source on the operator's side; skips when neither exists."""
    staging = settings["restore_staging_dir"].rstrip("/")
    found = _manifest_on_host(host, staging)
    if found:
        return found
    source = settings.get("restore_source")
    if not source:
        pytest.skip(
            "no restored backup to compare with: restore_source is not set and the "
            f"host has no restore record in {staging}"
        )
    try:
        found = _manifest_from_source(source)
    except (OSError, tarfile.TarError, ValueError) as exc:
        pytest.fail(f"cannot read the manifest of restore_source {source}: {exc}")
    if not found:
        pytest.fail(f"restore_source {source} holds no manifest.json")
    return found


# ---- backups ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def streaming(settings) -> bool:
    if not settings.get("litestream_replica_url"):
        pytest.skip("litestream_replica_url is not set: this forge's databases do not stream")
    return True


# ---- the Gitea API token (step 9) -----------------------------------------------------------


@pytest.fixture(scope="session")
def gitea_token(settings) -> str:
    from phoenix.secrets import read_secret

    try:
        return read_secret("gitea_api_token", folder=settings.get("secrets_dir"))
    except PhoenixError as exc:
        # A failure, never a skip: a validation that could not prove step 9 has not passed.
        pytest.fail(f"no Gitea API token, so step 9 cannot be proven: {exc}")
