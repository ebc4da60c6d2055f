"""The operator's view of the settings is the deploy's: the same groups, merged in pyinfra's
order (all, the environment's, the role's), so `phoenix validate --standby` sees standby.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from phoenix import settings
from phoenix.errors import PhoenixError

REPO = Path(__file__).resolve().parents[2]
# pyinfra's own inventory loader, in a process of its own (pyinfra_cli patches with gevent)
PYINFRA = """
import json, sys
from pyinfra.api import Config, State
from pyinfra.context import ctx_state
ctx_state.set(State())
from pyinfra_cli.inventory import make_inventory
inventory = make_inventory(sys.argv[1], cwd=sys.argv[2])
State(inventory, Config())
print(json.dumps(inventory.get_host("192.0.2.10").data.dict(), default=repr))
"""


def pyinfra_data(inventory: str, tmp_path) -> dict:
    """What pyinfra gives the one host of `inventory` (PHOENIX_HOST: no state file needed)."""
    known = tmp_path / "known_hosts"
    known.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("PHOENIX_ENV", "PHOENIX_ROLE")}
    env.update(PHOENIX_HOST="192.0.2.10", PHOENIX_KNOWN_HOSTS=str(known),
               PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", PYINFRA, str(REPO / inventory), str(REPO)],
                          capture_output=True, text=True, env=env, timeout=120, check=True)
    return json.loads(proc.stdout)


@pytest.mark.parametrize(("inventory", "role"), [("inventories/recovery.py", "recovery"),
                                                  ("inventories/standby.py", "standby"),
                                                  ("inventories/forge.py", "primary")])
def test_the_operator_reads_what_pyinfra_gives_the_host(inventory, role, tmp_path):
    deploy = pyinfra_data(inventory, tmp_path)
    mine = json.loads(json.dumps(settings.load(role=role), default=repr))
    assert mine == {key: deploy.get(key) for key in mine}
    # and nothing of group_data that pyinfra sees is missing here (the rest is the host's
    # own inventory data: address, key, pinned host key)
    extra = {key for key in deploy if key not in mine}
    assert extra <= {"ssh_user", "ssh_port", "ssh_key", "ssh_strict_host_key_checking",
                     "ssh_known_hosts_file"}, extra


def test_the_standby_role_sees_its_own_file():
    assert settings.groups(None, "standby") == ["all", "standby"]
    assert settings.groups("lab", "primary") == ["all", "lab", "forge"]
    assert settings.load(role="standby")["phoenix_role"] == "standby"
    assert settings.load()["phoenix_role"] == "recovery"


def test_the_gitea_url_is_derived_from_its_version():
    data = settings.load()
    assert data["gitea_version"] in data["gitea_binary_url"]


GROUP_DATA_KEYS = """
import json, sys
from pyinfra.api import State
from pyinfra.context import ctx_state
ctx_state.set(State())
from pyinfra_cli.inventory import _get_group_data
print(json.dumps(sorted(_get_group_data(sys.argv[1])[sys.argv[2]])))
"""


@pytest.mark.parametrize("group", sorted(p.stem for p in (REPO / "group_data").glob("*.py")))
def test_each_group_files_all_exports_what_pyinfra_would_find_without_it(group, tmp_path):
    """`__all__` spares pyinfra a parse of the file per name (issue 20): the names it exports
    are the ones pyinfra's own filter (no imports, no dunders) gives without it, less the
    file's private `_names` (lab.py's `_config`…), which the operator's view drops too."""
    source = (REPO / "group_data" / f"{group}.py").read_text()
    assert "\n__all__ = " in source
    without = tmp_path / f"{group}.py"
    without.write_text(source[:source.index("\n__all__ = ")] + "\n")

    def keys(path: Path) -> list[str]:
        proc = subprocess.run([sys.executable, "-c", GROUP_DATA_KEYS, str(path), group],
                              capture_output=True, text=True, timeout=60, check=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        return json.loads(proc.stdout)

    exported = keys(REPO / "group_data" / f"{group}.py")
    assert exported and exported == [k for k in keys(without) if not k.startswith("_")]


def test_an_operators_machine_without_a_lab_reads_the_settings_pyinfra_gives(tmp_path,
                                                                              monkeypatch):
    """pyinfra executes every group_data file, the lab's too: on an operator's machine that
    never built the lab, the production inventories still load (the lab's file defines its
    settings empty), and asking for the lab there says it is not up."""
    monkeypatch.setenv("PHOENIX_LAB_DIR", str(tmp_path / "no-lab"))
    deploy = pyinfra_data("inventories/recovery.py", tmp_path)
    assert deploy["phoenix_role"] == "recovery" and deploy["gitea_sha256"]
    monkeypatch.setenv("PHOENIX_ENV", "lab")
    with pytest.raises(PhoenixError, match="is the lab up"):
        settings.load()



def test_a_setting_of_the_wrong_type_is_one_line_where_the_settings_are_read(tmp_path):
    """backup_keep_hourly = "24h" in all.py ended `phoenix backup prune` in a ValueError
    traceback; every setting is checked against the type all.py declares for it."""
    import shutil

    from phoenix.errors import NOT_CONFIGURED
    from tests.unit.test_cli import REPO, phoenix

    project = tmp_path / "project"
    shutil.copytree(REPO / "group_data", project / "group_data")
    shutil.copy(REPO / "deploy.py", project / "deploy.py")
    all_py = project / "group_data" / "all.py"
    text = all_py.read_text()
    for old, new in (("backup_keep_hourly: int = 24", 'backup_keep_hourly: int = "24h"'),
                     ("backup_append_only: bool = True", "backup_append_only: bool = 1")):
        assert old in text
        text = text.replace(old, new)
    all_py.write_text(text)
    env = {"PHOENIX_PROJECT": str(project), "PYTHONPATH": str(REPO)}
    for command in (["backup", "prune"], ["check"]):
        result = phoenix(*command, env=env, tmp=tmp_path)
        assert result.returncode == NOT_CONFIGURED, result.stderr
        assert "Traceback" not in result.stderr
        lines = [line.strip() for line in result.stderr.splitlines()]
        assert "setting backup_keep_hourly is '24h', not a whole number (group_data)" in lines
        assert "setting backup_append_only is 1, not True or False (group_data)" in lines


def test_every_setting_declares_its_type_and_every_group_file_keeps_to_it():
    import runpy

    from phoenix.settings import GROUP_DATA, _fits, schema

    declared = schema()
    names = runpy.run_path(str(GROUP_DATA / "all.py"))["__all__"]
    assert [n for n in names if n not in declared] == []
    for path in sorted(GROUP_DATA.glob("*.py")):
        if path.name == "lab.py":
            continue  # reads the lab's artifacts: checked by load("lab") in the lab tests
        values = runpy.run_path(str(path))
        assert [k for k in declared if k in values and not _fits(values[k], declared[k])] == \
            [], path
