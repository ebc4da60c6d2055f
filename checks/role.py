"""One primary at a time (tasks/role.py): the host says which role it plays, in a marker only
root may write, and every later converge and the cutover read it."""

from __future__ import annotations

from phoenix.state import ROLE_FILE, ROLES

from .helpers import mode


def test_standby_role_marker_names_one_role(host):
    f = host.file(ROLE_FILE)
    assert f.is_file, (
        f"{ROLE_FILE} is missing: the host does not say whether it is the "
        "forge, a standby or a recovery host (tasks/role.py)"
    )
    said = f.content_string.strip()
    assert said in ROLES, f"{ROLE_FILE} says {said!r}, not one of {', '.join(ROLES)}"
    assert f.user == "root" and not f.mode & 0o022, (
        f"{ROLE_FILE} is {f.user} {mode(f)}: anyone but root could make this host the forge"
    )
