"""facts.cron: the cron file built from timmy-config's cron/ folder, and whether the installed
one is it, run here with sh as the SSH connector runs it on a host."""

from __future__ import annotations

import subprocess

from facts.cron import HEADER, CronFileInSync, build_command
from tests.unit.facts.test_batch import alone


def _build(source) -> str:
    return subprocess.run(["sh", "-c", build_command(str(source)).get_raw_value()],
                          capture_output=True, text=True, check=True).stdout


def test_the_file_is_every_cron_file_in_c_order_under_its_name(tmp_path):
    source = tmp_path / "cron"
    source.mkdir()
    (source / "b.cron").write_text("*/5 * * * * root /usr/local/bin/fleet-health\n")
    (source / "B.cron").write_text("0 3 * * * root /usr/local/bin/backup\n")
    (source / "notes.txt").write_text("not a cron file\n")
    built = _build(source)
    assert built.splitlines()[0] == HEADER
    assert built.index("# --- B.cron") < built.index("# --- b.cron")  # C order: upper first
    assert "fleet-health" in built and "not a cron file" not in built


def test_in_sync_only_while_the_installed_file_is_what_the_source_makes(tmp_path):
    source, dest = tmp_path / "cron", tmp_path / "phoenix-timmy"
    source.mkdir()
    (source / "a.cron").write_text("0 * * * * root true\n")
    kwargs = {"source": str(source), "dest": str(dest)}
    assert alone(CronFileInSync, kwargs) is False  # a fresh host: no file yet
    dest.write_text(_build(source))
    assert alone(CronFileInSync, kwargs) is True
    (source / "a.cron").write_text("30 * * * * root true\n")  # timmy-config moved on
    assert alone(CronFileInSync, kwargs) is False
