"""facts.gitea: the Gitea a host runs, from its binary's own `--version` (the lab's stand-in,
which prints what Gitea 1.22 prints). GiteaUnit's parsing of `systemctl show` is proven with
phoenix/forge/discover.py, its reader (tests/unit/test_discover.py)."""

from __future__ import annotations

from facts.gitea import GiteaVersion
from phoenix.settings import REPO, load
from tests.unit.facts.test_batch import alone

STANDIN = REPO / "phoenix" / "lab" / "standins" / "gitea.py"


def test_the_version_is_read_from_the_binarys_own_words(tmp_path):
    assert alone(GiteaVersion, {"binary": str(STANDIN)}) == load()["gitea_version"]
    assert alone(GiteaVersion, {"binary": str(tmp_path / "gitea")}) is None

