"""The host's hardening (tasks/hardening.py and the units' sandboxing, unit_hardening; the
security baseline the runbook lacks): no secret readable by others, Phoenix's units no more
exposed than unit_exposure_max."""

from __future__ import annotations

import re
import shlex

from .helpers import mode, out, unit_loaded


def _secret_files(host, settings) -> list[str]:
    """The host's secret files: app.ini (SECRET_KEY, INTERNAL_TOKEN), each Hermes house's .env
    (the model's and the API server's keys), and when there is a backup job, its folder's
    files (restic password, store key, credentials) but the store's public known_hosts."""
    paths = [f"{settings['gitea_config_dir']}/app.ini"]
    paths += [
        f"{settings['hermes_root'].rstrip('/')}/{house}/.env"
        for house in [settings["backend_house"], *settings["wizard_names"]]
    ]
    folder = settings.get("backup_config_dir")
    if folder and host.file(folder).is_directory:
        paths += sorted(
            out(host, f"find {shlex.quote(folder)} -type f ! -name known_hosts").split()
        )
    return [p for p in paths if host.file(p).exists]


def test_security_no_secret_readable_by_others(host, settings):
    files = _secret_files(host, settings)
    assert files, f"{settings['gitea_config_dir']}/app.ini is missing: nothing to check"
    problems = []
    for path in files:
        f = host.file(path)
        if f.mode & 0o007:
            problems.append(
                f"{path} is mode {mode(f)}: readable by every user on the host (chmod o-rwx {path})"
            )
    assert not problems, "; ".join(problems)


def test_security_units_sandboxed(host, settings):
    """systemd-analyze's exposure of Phoenix's own units (the Hermes units, to a limit of their
    own: checks/hermes.py)."""
    limit = settings["unit_exposure_max"]
    worse = []
    for unit in (
        "gitea.service",
        "caddy.service",
        "phoenix-backup.service",
        "phoenix-backup-repositories.service",
        "phoenix-standby-refresh.service",
    ):
        if not unit_loaded(host, unit):
            continue
        line = out(host, f"systemd-analyze security --no-pager {unit} | tail -n1")
        found = re.search(r"exposure level for \S+: (\d+\.\d+)", line)
        if found is None or float(found.group(1)) > limit:
            worse.append(f"{unit} {found.group(1) if found else line.strip()}")
    assert not worse, f"units more exposed than {limit} (systemd-analyze security): " + ", ".join(
        worse
    )
