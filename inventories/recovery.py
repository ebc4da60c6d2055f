"""The replacement droplet, as `phoenix provision` left it in the state file.

Without the CLI: PHOENIX_HOST (address), PHOENIX_SSH_KEY and PHOENIX_KNOWN_HOSTS (a file
holding the host's pinned key) describe the host instead.
    pyinfra inventories/recovery.py deploy.py
"""

from phoenix.inventory import hosts_for

_hosts, _groups = hosts_for("recovery")
if "lab" in _groups:
    lab = _hosts  # defined first: pyinfra lets the later group's data win, the role's here
recovery = _hosts
