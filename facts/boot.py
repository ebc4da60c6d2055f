"""Whether a new droplet has settled: cloud-init done and nobody holding the package locks."""

from __future__ import annotations

from pyinfra.api import FactBase

LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock")

# cloud-init writes result.json when its last stage is over, with the errors of every stage
# (what `cloud-init status` reports as done or error): read it, as `cloud-init status` takes
# most of a second to start; only a boot still running (or cloud-init disabled) waits on it.
RESULT = "/run/cloud-init/result.json"
_RESULT = (
    'import json, sys; errors = json.load(open(sys.argv[1]))["v1"]["errors"]; '
    'print("cloud-init", "error" if errors else "done")'
)

# apt and dpkg take fcntl locks (not flock): the only way to see one held is to try it. A
# holder is named from /proc/locks so the error can say who it is.
_WAIT_LOCKS = """
import fcntl, os, sys, time
deadline = time.monotonic() + float(sys.argv[1])
def holder(path):
    ino = os.stat(path).st_ino
    for line in open("/proc/locks"):
        f = line.split()
        if f[-3].split(":")[-1] == str(ino):
            try:
                return f[-4] + " (" + open("/proc/" + f[-4] + "/comm").read().strip() + ")"
            except OSError:
                return f[-4]
    return "?"
for path in sys.argv[2:]:
    if not os.path.exists(path):
        continue
    with open(path, "a") as lock:
        while True:
            try:
                fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.lockf(lock, fcntl.LOCK_UN)
                break
            except OSError:
                if time.monotonic() > deadline:
                    print("held", path, holder(path))
                    break
                time.sleep(0.5)
"""


class BootSettled(FactBase):
    """
    Waits (at most `timeout` seconds each) for cloud-init to finish and for the dpkg/apt
    locks to be free, as a droplet's first minutes hold them (cloud-init, the monitoring
    agent's install, apt-daily), then says what it found:

    .. code:: python

        {"cloud_init": "done", "locks_held": []}

    `cloud_init` is "done", "error", "running" (still, after the timeout), "disabled" or
    "absent"; `locks_held` lists "PATH PID (COMMAND)" for each lock still taken.
    """

    def command(self, timeout: int = 300) -> str:
        script = _WAIT_LOCKS.replace("'", "'\\''")
        return (
            "if ! command -v cloud-init >/dev/null 2>&1; then echo 'cloud-init absent'; "
            f"elif [ -f {RESULT} ]; then python3 -c '{_RESULT}' {RESULT} 2>/dev/null "
            "|| echo 'cloud-init error'; "
            "else "
            f"timeout {int(timeout)} cloud-init status --wait >/dev/null 2>&1; "
            "echo \"cloud-init $(cloud-init status 2>/dev/null | sed -n 's/^status: //p')\"; "
            "fi; "
            f"python3 -c '{script}' {int(timeout)} {' '.join(LOCKS)}"
        )

    @staticmethod
    def default() -> dict:
        return {"cloud_init": "absent", "locks_held": []}

    def process(self, output: list[str]) -> dict:
        found = self.default()
        for line in output:
            word, _, rest = line.partition(" ")
            if word == "cloud-init":
                found["cloud_init"] = rest.strip() or "unknown"
            elif word == "held":
                found["locks_held"].append(rest.strip())
        return found
