"""One `phoenix recover` per state folder for its whole run, and one cutover or rollback of
any role: a second is refused in one line naming the first's pid and start time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from phoenix import recover as rec
from phoenix.errors import PhoenixError
from phoenix.state import State, cutting_over, recovering
from tests.unit.test_cli import phoenix


def test_a_second_recover_is_refused_while_the_first_deploys(tmp_path, monkeypatch):
    monkeypatch.setenv("PHOENIX_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr("phoenix.provision.do.client", lambda **_: None)
    second: list[subprocess.CompletedProcess] = []

    def deploy(*_args, **_kwargs):   # the first run, deploying: a second one starts now
        second.append(phoenix("recover", tmp=tmp_path))
        raise PhoenixError("the test stops the first run here")

    monkeypatch.setattr(rec, "run_deploy", deploy)
    with pytest.raises(PhoenixError, match="the test stops the first run here"):
        rec.recover(role="recovery", deploy_data={}, provision_step=False, say=lambda _: None,
                    report_dir=tmp_path)
    refused = second[0]
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr   # one line, before any check ran
    assert f"another phoenix recover (pid {os.getpid()}, since 20" in lines[0], lines
    assert str(tmp_path / "state" / "recover.lock") in lines[0]
    with recovering(tmp_path / "state"):   # released when the first run ended
        pass


def test_a_cutover_or_rollback_of_any_role_is_refused_while_another_moves_traffic(
        tmp_path):
    folder = tmp_path / "state"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path\n"
         "from phoenix.state import cutting_over\n"
         "with cutting_over(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
         str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        from phoenix.cutover import traffic

        started = time.monotonic()
        with pytest.raises(PhoenixError, match=rf"another cutover or rollback \(pid "
                                               rf"{holder.pid}, since 20.*\) is moving traffic"):
            traffic.cutover(settings={}, state=State("standby", folder), do=None,
                            reserved_ip=False, force=False, say=print)
        with pytest.raises(PhoenixError, match="another cutover or rollback"):
            traffic.rollback(state=State("recovery", folder), do=None, say=print)
        assert time.monotonic() - started < 5   # refused at once, not waited for
    finally:
        holder.kill()
        holder.wait()
    with cutting_over(folder):
        pass
