# The forge that runs today (inventories/forge.py, `phoenix adopt`): it is the primary, so its
# backup timer runs (tasks/role.py; without a marker on it, phoenix_role decides).
phoenix_role = "primary"

# What pyinfra exports from this file: without __all__ it parses the file again for every name
# (pyinfra_cli.inventory._get_group_data, 3.10), 0.4 s of every converge.
__all__ = [_name for _name in dict(globals()) if not _name.startswith("_")]
