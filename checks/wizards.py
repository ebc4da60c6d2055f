"""Runbook steps 6 and 7 (tasks/wizards.py): each wizard house runs (not on an unpromoted
standby) and its gateway's heartbeat is fresh."""

from __future__ import annotations

import datetime
import json
import shlex

import pytest

from .helpers import active_and_enabled, host_now, house_home, out, unit_loaded


def test_step6_wizard_active_and_enabled(host, wizard, role):
    unit = f"hermes-{wizard}"
    assert unit_loaded(host, unit), (
        f"the {wizard} wizard has no unit: {unit}.service is missing (runbook step 6)"
    )
    if role == "standby":  # one primary: its houses would act beside the forge's
        assert not host.service(unit).is_running, (
            f"{unit} runs on an unpromoted standby: two houses would act at once"
        )
        return
    active_and_enabled(host, unit, f"the {wizard} wizard house")


def test_step7_wizard_heartbeat_fresh(host, settings, wizard, role):
    """The heartbeat Hermes's gateway writes from its event loop every 30 s."""
    if role == "standby":
        pytest.skip("an unpromoted standby runs no house, so nothing beats")
    path = f"{house_home(settings, wizard)}/state/gateway.heartbeat"
    f = host.file(path)
    assert f.is_file, f"{wizard}'s gateway has never written its heartbeat ({path} is missing)"
    try:
        stamp = datetime.datetime.fromisoformat(
            json.loads(f.content_string)["updated_at"]
        ).timestamp()
    except (ValueError, KeyError, TypeError):
        stamp = float(out(host, f"stat -c %Y {shlex.quote(path)}"))
    age = host_now(host) - stamp
    limit = settings["hermes_heartbeat_max_age"]
    assert age <= limit, (
        f"the heartbeat of {wizard} is {age:.0f} s old, expected under "
        f"{limit} s (hermes_heartbeat_max_age): is hermes-{wizard} hung? "
        f"({path})"
    )
