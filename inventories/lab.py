"""Lab droplets as a pyinfra inventory (group `lab`, so group_data/lab.py applies).

PHOENIX_LAB_DROPLETS names the droplets (comma-separated names or ids); host keys are pinned
to the key on each droplet's disk. Example:
    PHOENIX_LAB_DROPLETS=forge-1 pyinfra inventories/lab.py deploy.py
"""

from phoenix.lab.client import droplet_target
from phoenix.lab.config import inventory_droplets, load
from phoenix.sshconf import pyinfra_data

_config = load()
_names = inventory_droplets()

lab = []
for _name in _names:
    _target = droplet_target(_config, _name)
    lab.append((_target.host, pyinfra_data(_target)))
