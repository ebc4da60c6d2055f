"""The warm standby, as `phoenix provision --standby` left it in the state file.

The same deploy builds it; group_data/standby.py changes only what differs (it restores the
latest backup on a schedule). PHOENIX_HOST etc. work as for inventories/recovery.py.
"""

from phoenix.inventory import hosts_for

standby, _groups = hosts_for("standby")
if "lab" in _groups:
    lab = standby
