"""The warm standby, as `phoenix provision --standby` left it in the state file.

The same deploy builds it; group_data/standby.py changes only what differs (it restores the
latest backup at converge time and keeps the newest snapshot restored on a schedule, and
takes no backups itself). PHOENIX_HOST etc. work as for inventories/recovery.py.
"""

from phoenix.inventory import hosts_for

_hosts, _groups = hosts_for("standby")
if "lab" in _groups:
    lab = _hosts  # defined first: pyinfra lets the later group's data win, the role's here
standby = _hosts
