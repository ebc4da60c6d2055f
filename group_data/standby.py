# A warm standby: the same deploy as a recovery, restoring the latest offsite snapshot at
# converge time and keeping the newest one restored and verified on a schedule, so that a
# promotion (`phoenix drill --standby`, or the deploy with restore_force) only moves folders.
# It takes no backups itself: until it is promoted, its data is a copy, not the forge.
restore_source = "restic:latest"
phoenix_role = "standby"  # no houses, cron or backups until promoted (all.py)
standby_warm = True

# What pyinfra exports from this file: without __all__ it parses the file again for every name
# (pyinfra_cli.inventory._get_group_data, 3.10), 0.4 s of every converge.
__all__ = [_name for _name in dict(globals()) if not _name.startswith("_")]
