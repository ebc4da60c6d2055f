"""Adopt the forge that runs today: `pyinfra INVENTORY adopt.py`.

Orchestration only. It touches nothing but the backup job (tasks/adopt.py): the forge keeps
its binary, app.ini, unit and data. `phoenix adopt` runs it, takes the first snapshot, proves
it by a test restore, and checks by sha256 that the forge was left as it was.
"""

from tasks.adopt import adopt_forge

adopt_forge()
