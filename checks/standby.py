"""A warm standby (tasks/standby.py): its refresh keeps the latest snapshot staged while it
waits, on a timer; a promoted standby (the forge now) and every other host have it off."""

from __future__ import annotations

from tasks.standby import UNIT

from .helpers import unit_loaded

TIMER = f"{UNIT}.timer"


def test_standby_refresh_runs_on_a_waiting_standby_alone(host, role):
    timer = host.service(TIMER)
    if role != "standby":
        assert not timer.is_running, (
            f"{TIMER} runs on a {role} host: it would restore the "
            "store's snapshot over this host's own staging"
        )
        return
    if not unit_loaded(host, TIMER):
        return  # a cold standby (standby_warm False): restored once, not refreshed
    assert timer.is_running and timer.is_enabled, (
        f"{TIMER} is installed but not running and enabled: this warm standby's copy of the "
        "latest backup goes stale (systemctl status phoenix-standby-refresh.timer)"
    )
