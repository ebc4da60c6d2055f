"""Runbook steps 5-7: Hermes Agent's backend and wizard houses run, answer, think and beat."""

from __future__ import annotations

import datetime
import json
import secrets
import shlex

import pytest

from .helpers import host_now, out, unit_loaded

BACKEND = "hermes-backend"


def _unit(settings, house: str) -> str:
    return BACKEND if house == settings["backend_house"] else f"hermes-{house}"


def _home(settings, house: str) -> str:
    return f"{settings['hermes_root'].rstrip('/')}/{house}"


def _journal(host, unit: str, lines: int = 20) -> str:
    tail = host.run(f"journalctl -u {shlex.quote(unit)} -n {lines} --no-pager -o cat")
    return "\n".join("    " + line for line in tail.stdout.strip().splitlines()[-lines:])


def _active_and_enabled(host, unit: str, why: str) -> None:
    service = host.service(unit)
    assert service.is_running, f"{unit} is not running ({why}); its journal ends:\n" \
                               f"{_journal(host, unit)}"
    assert service.is_enabled, f"{unit} is not enabled: it will not start at boot"


def _backend_url(settings, path: str) -> str:
    return f"http://{settings['backend_host']}:{settings['backend_port']}{path}"


def _call(host, settings, path: str, body: dict | None, *, key: bool) -> tuple[str, str]:
    """(HTTP status, body) of a call to the backend made on the host; with `key`, the API
    server's key is read from the backend's .env there and reaches curl on stdin only."""
    env = shlex.quote(f"{_home(settings, settings['backend_house'])}/.env")
    header = (f"sed -n 's/^API_SERVER_KEY=//p' {env} | {{ read -r k; "
              "printf 'header = \"Authorization: Bearer %s\"\\n' \"$k\"; } | "
              if key else "true | ")
    data = f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))} " \
        if body is not None else ""
    result = host.run(f"{header}curl -sS -m 180 -K - -w '\\n%{{http_code}}' {data}"
                      f"{shlex.quote(_backend_url(settings, path))}")
    text, _, code = result.stdout.rpartition("\n")
    return code.strip(), text


def test_step5_backend_active_and_enabled(host):
    _active_and_enabled(host, BACKEND, "Hermes Agent's gateway and API server")


def test_step5_backend_health_200(host, settings):
    code, body = _call(host, settings, settings["backend_health_path"], None, key=False)
    assert code == "200", \
        f"GET {_backend_url(settings, settings['backend_health_path'])} on the host " \
        f"answered {code or 'nothing'}, expected 200 (is {BACKEND} listening on " \
        f"backend_port {settings['backend_port']}?); its journal ends:\n{_journal(host, BACKEND)}"
    assert json.loads(body).get("platform") == "hermes-agent", f"not Hermes answering: {body}"


def test_step5_backend_refuses_a_call_without_its_key(host, settings):
    code, body = _call(host, settings, "/v1/chat/completions",
                       {"model": "hermes-agent", "messages": []}, key=False)
    assert code == "401", f"the backend answered {code} to a chat without API_SERVER_KEY, " \
                          f"expected 401: is its API server open to anyone? {body[:200]}"


def test_step5_backend_model_round_trip(host, settings):
    """One real chat through the backend to the model provider: the answer must carry this
    request's nonce, which only a model that read the request can give back."""
    nonce = f"phoenix-nonce-{secrets.token_hex(8)}"
    code, body = _call(host, settings, "/v1/chat/completions", {
        "model": "hermes-agent",
        "messages": [{"role": "user", "content": f"Reply with exactly this and nothing "
                                                 f"else: {nonce}"}]}, key=True)
    assert code == "200", f"a chat through the backend answered {code}, expected 200: " \
                          f"{body[:300]}; its journal ends:\n{_journal(host, BACKEND)}"
    answer = json.loads(body)["choices"][0]["message"]["content"] or ""
    assert nonce in answer, f"the backend's answer does not carry the nonce {nonce}: " \
                            f"{answer[:200]!r} (is its model the configured provider?)"


def test_step6_wizard_active_and_enabled(host, wizard, role):
    unit = f"hermes-{wizard}"
    assert unit_loaded(host, unit), \
        f"the {wizard} wizard has no unit: {unit}.service is missing (runbook step 6)"
    if role == "standby":  # one primary: its houses would act beside the forge's
        assert not host.service(unit).is_running, \
            f"{unit} runs on an unpromoted standby: two houses would act at once"
        return
    _active_and_enabled(host, unit, f"the {wizard} wizard house")


def test_step6_house_config_loads(host, settings, house):
    """Hermes only warns about a config.yaml it cannot parse, and runs on without its model:
    read it as Hermes does (PyYAML in its virtualenv) and require a model."""
    unit, path = _unit(settings, house), f"{_home(settings, house)}/config.yaml"
    if not unit_loaded(host, unit):
        pytest.skip(f"{unit} is missing (step 5/6 says so)")
    env = dict(word.split("=", 1) for word in shlex.split(
        out(host, f"systemctl show -p Environment --value {unit}")) if "=" in word)
    python = f"{env.get('VIRTUAL_ENV', '/nonexistent')}/bin/python"
    check = ("import sys, yaml\n"
             "try:\n    c = yaml.safe_load(open(sys.argv[1]))\n"
             "except Exception as e:\n    sys.exit(' '.join(str(e).split()))\n"
             "if not (isinstance(c, dict) and isinstance(c.get('model'), dict)\n"
             "        and c['model'].get('provider')):\n    sys.exit('it names no model.provider')")
    result = host.run(f"{shlex.quote(python)} -c {shlex.quote(check)} {shlex.quote(path)}")
    assert result.rc == 0, f"{house}'s {path} is broken ({result.stderr.strip()[-300:]}), so " \
                           f"Hermes runs without it; {unit}'s journal ends:\n{_journal(host, unit)}"


def test_step7_wizard_heartbeat_fresh(host, settings, wizard, role):
    """The heartbeat Hermes's gateway writes from its event loop every 30 s."""
    if role == "standby":
        pytest.skip("an unpromoted standby runs no house, so nothing beats")
    path = f"{_home(settings, wizard)}/state/gateway.heartbeat"
    f = host.file(path)
    assert f.is_file, f"{wizard}'s gateway has never written its heartbeat ({path} is missing)"
    try:
        stamp = datetime.datetime.fromisoformat(
            json.loads(f.content_string)["updated_at"]).timestamp()
    except (ValueError, KeyError, TypeError):
        stamp = float(out(host, f"stat -c %Y {shlex.quote(path)}"))
    age = host_now(host) - stamp
    limit = settings["hermes_heartbeat_max_age"]
    assert age <= limit, f"the heartbeat of {wizard} is {age:.0f} s old, expected under " \
                         f"{limit} s (hermes_heartbeat_max_age): is hermes-{wizard} hung? " \
                         f"({path})"


FLEET_HEALTH_REPORTS = ".local/timmy/fleet-health"  # below the job user's home (runbook step 9)


def test_step7_fleet_health_report_at_runbook_path(host, settings, role):
    """The runbook's heartbeat check reads ~/.local/timmy/fleet-health/*.json, which
    timmy-config's fleet-health job writes from the houses' own heartbeats: run the job as
    its cron line does, then read its newest report there; every wizard must be in it, ok."""
    if role == "standby":
        pytest.skip("an unpromoted standby runs no house and no cron, so nothing reports")
    cron = host.file(settings["cron_file"])
    jobs = [line.split(None, 6) for line in (cron.content_string if cron.is_file else "")
            .splitlines() if "fleet-health" in line and not line.lstrip().startswith("#")]
    jobs = [fields for fields in jobs if len(fields) == 7]
    assert jobs, f"no fleet-health job in {settings['cron_file']}: the runbook's heartbeat " \
                 f"check (~/{FLEET_HEALTH_REPORTS}/*.json) would read nothing (runbook step 9)"
    user, command = jobs[0][5], jobs[0][6]
    home = out(host, f"getent passwd {shlex.quote(user)} | cut -d: -f6").strip()
    host.run(f"cd / && env -i HOME={shlex.quote(home)} LOGNAME={shlex.quote(user)} "
             "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SHELL=/bin/bash "
             f"runuser -u {shlex.quote(user)} -- bash -c {shlex.quote(command)}")
    folder = f"{home}/{FLEET_HEALTH_REPORTS}"
    newest = host.run(f"ls -1t {shlex.quote(folder)}/*.json 2>/dev/null | head -1").stdout.strip()
    assert newest, f"the fleet-health job ({command}) wrote no report in {folder}"
    try:
        report = json.loads(out(host, f"tail -n 1 {shlex.quote(newest)}"))
        houses = report["houses"]
    except (ValueError, KeyError, TypeError):
        pytest.fail(f"the last line of {newest} is not a fleet-health report")
    missing = [w for w in settings["wizard_names"] if w not in houses]
    stale = [f"{w} ({houses[w].get('age')} s)" for w in settings["wizard_names"]
             if w in houses and not houses[w].get("ok")]
    assert not missing and not stale, \
        f"the fleet-health report {newest} ({report.get('time')}) says: " + "; ".join(
            ([f"no heartbeat from {', '.join(missing)}"] if missing else [])
            + ([f"STALE: {', '.join(stale)}"] if stale else []))
