"""The forge that runs today (`phoenix adopt`): the state file's primary, or PHOENIX_HOST
(with PHOENIX_SSH_KEY and PHOENIX_KNOWN_HOSTS, its pinned key).
    pyinfra inventories/forge.py adopt.py
"""

from phoenix.inventory import hosts_for

_hosts, _groups = hosts_for("primary")
if "lab" in _groups:
    lab = _hosts  # defined first: pyinfra lets the later group's data win, the role's here
forge = _hosts
