"""Lab droplets as a pyinfra inventory (group `lab`, so group_data/lab.py applies).

PHOENIX_LAB_DROPLETS names the droplets (comma-separated names or ids); host keys are pinned
to the key on each droplet's disk. Example:
    PHOENIX_LAB_DROPLETS=forge-1 pyinfra inventories/lab.py deploy.py
"""

import os

from phoenix.lab.client import droplet_target
from phoenix.lab.config import load
from phoenix.sshconf import pyinfra_data

_config = load()
_names = [n for n in os.environ.get("PHOENIX_LAB_DROPLETS", "").split(",") if n.strip()]

lab = []
for _name in _names:
    _target = droplet_target(_config, _name.strip())
    lab.append((_target.host, pyinfra_data(_target)))
