"""tasks.layout (runbook step 2) run by pyinfra on this machine, into a temporary folder: the
dry run lists every folder, the run makes them with group_data's modes, and a second dry run
has nothing left to change."""

from __future__ import annotations

import os
import stat

import pytest

from phoenix.settings import load
from tests.unit.tasks.dry import run_task


def test_the_layout_is_made_with_its_modes_and_a_second_run_changes_nothing(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the layout's folders are root's (group adm): pyinfra @local needs root")
    settings = load()
    data = {"phoenix_state_dir": tmp_path / "phoenix", "layout_wizard_root": tmp_path / "wizards",
            "layout_hermes_home": tmp_path / ".hermes", "layout_log_dir": tmp_path / "log"}
    planned = run_task(tmp_path, "layout", "make_layout", data=data)
    wizards = [f"Ensure the wizard folder of {name} exists" for name in settings["wizard_names"]]
    assert set(wizards) <= set(planned) and all(planned.values()), planned
    run_task(tmp_path, "layout", "make_layout", dry=False, data=data)
    for name in settings["wizard_names"]:
        folder = tmp_path / "wizards" / name
        assert oct(stat.S_IMODE(folder.stat().st_mode)) == oct(int(
            settings["layout_wizard_mode"], 8)), folder
    for sub in settings["layout_hermes_dirs"]:
        assert (tmp_path / ".hermes" / sub).is_dir()
    assert oct(stat.S_IMODE((tmp_path / "phoenix").stat().st_mode)) == "0o700"
    again = run_task(tmp_path, "layout", "make_layout", data=data)
    assert not any(again.values()), [name for name, changed in again.items() if changed]
