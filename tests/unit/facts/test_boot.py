"""facts.boot: the wait for a droplet's first-boot lock holders, run here for real."""

from __future__ import annotations

import subprocess
import sys
import time

from facts.boot import _WAIT_LOCKS, BootSettled

HOLD = ("import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
        "fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(float(sys.argv[2]))")


def wait_locks(timeout: float, *paths) -> tuple[str, float]:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _WAIT_LOCKS, str(timeout), *map(str, paths)],
                         capture_output=True, text=True, check=True).stdout
    return out, time.monotonic() - started


def hold(path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_lock_held_past_the_timeout_is_named_with_its_holder(tmp_path):
    lock = tmp_path / "lock-frontend"
    holder = hold(lock, 30)
    try:
        out, _ = wait_locks(1, lock)
    finally:
        holder.kill()
    assert out.split()[:3] == ["held", str(lock), str(holder.pid)]


def test_a_lock_released_within_the_timeout_is_waited_for(tmp_path):
    lock = tmp_path / "lock"
    holder = hold(lock, 1.5)
    out, took = wait_locks(20, lock, tmp_path / "missing")
    holder.wait()
    assert out == "" and took >= 1.0


def test_the_fact_reads_cloud_init_and_the_locks():
    fact = BootSettled()
    assert fact.process(["cloud-init done"]) == {"cloud_init": "done", "locks_held": []}
    assert fact.process(["cloud-init running", "held /var/lib/dpkg/lock 91 (python3)"]) == {
        "cloud_init": "running", "locks_held": ["/var/lib/dpkg/lock 91 (python3)"]}
    assert fact.process(["cloud-init absent"])["cloud_init"] == "absent"
