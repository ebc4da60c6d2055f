"""tasks.role in pyinfra's dry state on this machine (no marker here): what the converge
would write in the marker, a promotion winning over phoenix_role, a role that is none of the
three refused before anything is written."""

from __future__ import annotations

import pytest

from phoenix.state import ROLE_FILE
from tests.unit.tasks.dry import run_task


def test_the_marker_says_the_role_and_a_promotion_makes_the_primary(tmp_path):
    planned = run_task(tmp_path, "role", "record_role",
                       data={"phoenix_role": "standby", "phoenix_promote": "True"})
    assert planned == {f"Ensure {ROLE_FILE} says primary": True}


def test_an_unknown_role_is_refused_by_name(tmp_path):
    with pytest.raises(RuntimeError, match="phoenix_role 'forge' is not one of recovery, "
                                           "standby, primary"):
        run_task(tmp_path, "role", "record_role", data={"phoenix_role": "forge"})
