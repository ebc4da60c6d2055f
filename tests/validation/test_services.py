"""Runbook steps 5-7: the hermes backend and the wizard houses run, answer and beat."""

from __future__ import annotations

import json
import shlex

from .helpers import host_now, out, unit_loaded

BACKEND = "hermes-backend"


def _active_and_enabled(host, unit: str, why: str) -> None:
    service = host.service(unit)
    assert service.is_running, f"{unit} is not running ({why}; systemctl status {unit})"
    assert service.is_enabled, f"{unit} is not enabled: it will not start at boot"


def test_step5_backend_active_and_enabled(host):
    _active_and_enabled(host, BACKEND, "the hermes FastAPI backend")


def test_step5_backend_health_200(host, settings):
    url = f"http://127.0.0.1:{settings['backend_port']}{settings['backend_health_path']}"
    code = host.run(f"curl -s -o /dev/null -m 10 -w '%{{http_code}}' {shlex.quote(url)}")
    assert code.stdout.strip() == "200", \
        f"GET {url} on the host answered {code.stdout.strip() or 'nothing'}, expected 200 " \
        f"(is {BACKEND} listening on backend_port {settings['backend_port']}?)"


def test_step6_wizard_active_and_enabled(host, wizard):
    unit = f"hermes-{wizard}"
    assert unit_loaded(host, unit), \
        f"the {wizard} wizard has no unit: {unit}.service is missing (runbook step 6)"
    _active_and_enabled(host, unit, f"the {wizard} wizard house")


def test_step7_wizard_heartbeat_fresh(host, settings, wizard):
    path = f"{settings['wizard_heartbeat_dir']}/{wizard}.json"
    f = host.file(path)
    assert f.is_file, f"{wizard} has never written a heartbeat ({path} is missing)"
    try:
        stamp = float(json.loads(f.content_string)["ts"])
    except (ValueError, KeyError, TypeError):
        stamp = float(out(host, f"stat -c %Y {shlex.quote(path)}"))
    age = host_now(host) - stamp
    limit = settings["wizard_heartbeat_max_age"]
    assert age <= limit, f"the heartbeat of {wizard} is {age:.0f} s old, expected under " \
                         f"{limit} s (wizard_heartbeat_max_age): is hermes-{wizard} hung? " \
                         f"({path})"
