# The forge that runs today (inventories/forge.py, `phoenix adopt`): it is the primary, so its
# backup timer runs (tasks/role.py; without a marker on it, phoenix_role decides).
phoenix_role = "primary"
