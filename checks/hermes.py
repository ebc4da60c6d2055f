"""Hermes Agent's houses (tasks/hermes.py, steps 5 and 6): each house's config.yaml loads as
Hermes reads it; the houses run as their own user, sandboxed."""

from __future__ import annotations

import shlex

import pytest

from .helpers import house_home, house_unit, journal, not_root, out, unit_loaded


def test_step6_house_config_loads(host, settings, house):
    """Hermes only warns about a config.yaml it cannot parse, and runs on without its model:
    read it as Hermes does (PyYAML in its virtualenv) and require a model."""
    unit, path = house_unit(settings, house), f"{house_home(settings, house)}/config.yaml"
    if not unit_loaded(host, unit):
        pytest.skip(f"{unit} is missing (step 5/6 says so)")
    env = dict(
        word.split("=", 1)
        for word in shlex.split(out(host, f"systemctl show -p Environment --value {unit}"))
        if "=" in word
    )
    python = f"{env.get('VIRTUAL_ENV', '/nonexistent')}/bin/python"
    check = (
        "import sys, yaml\n"
        "try:\n    c = yaml.safe_load(open(sys.argv[1]))\n"
        "except Exception as e:\n    sys.exit(' '.join(str(e).split()))\n"
        "if not (isinstance(c, dict) and isinstance(c.get('model'), dict)\n"
        "        and c['model'].get('provider')):\n    sys.exit('it names no model.provider')"
    )
    result = host.run(f"{shlex.quote(python)} -c {shlex.quote(check)} {shlex.quote(path)}")
    assert result.rc == 0, (
        f"{house}'s {path} is broken ({result.stderr.strip()[-300:]}), so "
        f"Hermes runs without it; {unit}'s journal ends:\n{journal(host, unit)}"
    )


def test_security_hermes_not_running_as_root(host, settings):
    problems = not_root(host, "hermes-backend", settings["hermes_user"])
    for wizard in settings["wizard_names"]:
        if unit_loaded(host, f"hermes-{wizard}"):  # a missing one fails in step 6
            problems += not_root(host, f"hermes-{wizard}", settings["hermes_user"])
    assert not problems, "; ".join(problems)


def test_security_hermes_units_sandboxed(host, settings):
    """`systemd-analyze security`: each Hermes unit's exposure at most hermes_max_exposure."""
    limit, problems = settings["hermes_max_exposure"], []
    for house in [settings["backend_house"], *settings["wizard_names"]]:
        unit = "hermes-backend" if house == settings["backend_house"] else f"hermes-{house}"
        if not unit_loaded(host, unit):
            continue  # a missing one fails in step 5/6
        last = out(host, f"systemd-analyze security {unit} --no-pager").strip().splitlines()[-1]
        words = [w for w in last.split() if w.replace(".", "", 1).isdigit()]
        exposure = float(words[-1]) if words else 10.0
        if exposure > limit:
            problems.append(
                f"{unit} has exposure {exposure} (`systemd-analyze security "
                f"{unit}`), expected at most {limit}: its sandboxing was loosened"
            )
    assert not problems, "; ".join(problems)
