"""A task's @deploy run by pyinfra on this machine (@local): `--dry` lists its operations and
whether each would change something, facts read here and nothing changed; without it, the task
converges for real (point its paths into a test's tmp_path with `data`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from phoenix.settings import REPO


def run_task(tmp_path: Path, module: str, function: str, *, dry: bool = True,
             data: dict | None = None) -> dict[str, bool]:
    """{operation name: would change (dry) / changed (a real run)} of
    tasks.<module>.<function>()."""
    deploy = tmp_path / f"deploy_{module}.py"
    deploy.write_text(f"from tasks.{module} import {function}\n{function}()\n")
    cmd = [sys.executable, "-m", "pyinfra", "@local", str(deploy), "--json",
           "--dry" if dry else "-y"]
    for key, value in (data or {}).items():
        cmd += ["--data", f"{key}={value}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else
                           proc.stderr.strip())
    found = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("{")))
    if dry:
        return {op["name"].split(" | ", 1)[1]: bool(op["hosts_with_change"])
                for op in found["plan"]}
    # a real run: what each operation did (the plan names no changes when it is not dry)
    return {op["name"].split(" | ", 1)[1]: bool(op["success"])
            for op in found["results"]["operations"]}
