"""Adopt the forge that runs today: `pyinfra INVENTORY adopt.py`.

Orchestration only. It touches nothing but the backup job (tasks/adopt.py): the forge keeps
its binary, app.ini, unit and data. `phoenix adopt` runs it, takes the first snapshot, proves
it by a test restore, and checks by sha256 that the forge was left as it was.
"""

from phoenix.deploy_events import attach as report_operations
from tasks.adopt import adopt_forge

report_operations()  # to `phoenix adopt`'s live view, through pyinfra's callbacks
adopt_forge()
