"""Running restic from the operator's machine: the password in a 0600 file that lives only
while restic runs (never argv or the environment), the operator's own RESTIC_* settings kept
but for the store and the password (Phoenix's), failures as one line.

The on-host job's `classify` (files/phoenix_backup.py, loaded here as a module) reads both
restic >= 0.17's exit codes (10 no repository, 11 locked, 12 wrong password) and the stderr
of Debian 12's restic 0.14, which exits 1 for all of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from phoenix.backup.store import LOCK_WAIT_SCRIPT, Store, sftp_command
from phoenix.context import current
from phoenix.errors import PhoenixError
from phoenix.scripts import load
from phoenix.settings import REPO

JOB = REPO / "files" / "phoenix_backup.py"
# How long a run waits for a lock another run holds (restic 0.14 has no --retry-lock): the
# forge snapshots its repositories every few minutes and each run holds the store's
# lock for seconds, up to its frequent_snapshot_run_budget (60 s); a prune or check of the operator
# that met one failed at once. A stale lock is still named after the wait.
LOCK_WAIT = 120.0


def job_module() -> ModuleType:
    """The on-host job: its restic failure kinds are the operator's too."""
    return load(JOB)


# --- running restic ----------------------------------------------------------------------------


@contextlib.contextmanager
def _password_file(password: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="phoenix-restic-") as tmp:  # 0700
        path = os.path.join(tmp, "password")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        yield path


def failure(store: Store, what: str, returncode: int, stderr: str) -> PhoenixError:
    """The one-line error for a failed restic run, e.g. 'cannot list snapshots: wrong password
    for the restic repository …: check the restic_password secret'."""
    job = job_module()
    kind = job.classify(returncode, stderr)
    message = f"cannot {what}: {job.explain(kind, stderr, store.location)}"
    if kind == "wrong-password":
        message += " (check the restic_password secret: PHOENIX_RESTIC_PASSWORD or its file)"
    elif kind == "locked":
        message += "; if no restic runs anywhere, `restic unlock` removes a stale lock"
    return PhoenixError(message)


def operator_restic_env() -> dict[str, str]:
    """The operator's RESTIC_* settings (cache dir, compression, limits, pack size…), kept;
    the store and the password are Phoenix's to say (context.RESTIC_OWN)."""
    return current().restic_env()


def run_restic(
    store: Store, *args: str, what: str, timeout: float | None = None, lock_wait: float = LOCK_WAIT
) -> subprocess.CompletedProcess:
    """Run restic on `store` and return what it did, failed or not. A repository locked by
    another run is tried again every 2 s for `lock_wait` seconds (the store's retention waits
    the same way); then the locked run is returned, and its failure names the lock. A run
    that raises (no restic, its timeout) ends the wait."""
    classify = job_module().classify
    return load(LOCK_WAIT_SCRIPT).retry_while_locked(
        lambda: _run_once(store, *args, what=what, timeout=timeout),
        lambda proc: proc.returncode != 0 and classify(proc.returncode, proc.stderr) == "locked",
        wait=lock_wait,
        interval=2,
    )


def _run_once(
    store: Store, *args: str, what: str, timeout: float | None
) -> subprocess.CompletedProcess:
    argv = ["restic"]
    if store.ssh is not None:
        argv += ["-o", f"sftp.command={sftp_command(store.ssh)}"]
    argv += list(args)
    ctx = current()
    with _password_file(store.password) as password_file:
        env = {
            **ctx.base_env(),
            "RESTIC_CACHE_DIR": str(ctx.cache_dir / "restic"),
            **ctx.restic_env(),
            "RESTIC_REPOSITORY": store.repository,
            "RESTIC_PASSWORD_FILE": password_file,
            **store.env,
        }
        try:
            return subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError:
            raise PhoenixError("restic is not installed here: apt-get install restic") from None
        except subprocess.TimeoutExpired:
            raise PhoenixError(
                f"cannot {what}: restic did not finish within {timeout:.0f} s ({store.location})"
            ) from None


def restic(
    store: Store, *args: str, what: str, timeout: float | None = None, lock_wait: float = LOCK_WAIT
) -> subprocess.CompletedProcess:
    """Run restic on `store`; a failure raises the PhoenixError that says what it means."""
    proc = run_restic(store, *args, what=what, timeout=timeout, lock_wait=lock_wait)
    if proc.returncode != 0:
        raise failure(store, what, proc.returncode, proc.stderr)
    return proc


def _json(proc: subprocess.CompletedProcess) -> Any:
    text = proc.stdout.strip()
    return json.loads(text.splitlines()[-1]) if text else None
