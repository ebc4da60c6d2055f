"""facts.owners: the first path below a folder that a user does not own, read here with sh."""

from __future__ import annotations

import getpass

from facts.owners import NotOwnedBy
from tests.unit.facts.test_batch import alone


def test_a_folder_all_ours_gives_none_and_another_user_gets_the_first_path(tmp_path):
    home = tmp_path / "ezra"
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "memory.yaml").write_text("x")
    me = getpass.getuser()
    assert alone(NotOwnedBy, {"path": str(home), "user": me}) is None
    assert alone(NotOwnedBy, {"path": str(home), "user": "nobody"}) == str(home)
    assert alone(NotOwnedBy, {"path": str(tmp_path / "missing"), "user": me}) is None
