#!/usr/bin/python3
"""Phoenix, on the forge, as root: how far each Litestream replica lags behind
its database.

    phoenix-litestream-status LITESTREAM CREDENTIALS_DIR CONFIG...

For each database of each CONFIG (the units' /etc/litestream/<unit>.yml): the replica's
newest transaction (`litestream ltx -json -level all`, read from the replica store), the
database's own newest one (the L0 files Litestream keeps beside it, .<db>-litestream/ltx/0),
and the lag: how long the oldest transaction not yet on the replica has waited (0 when the
replica has them all). Prints one JSON object: {"databases": [{path, local_txid,
replica_txid, replica_time, lag_seconds, error}]}. A replica that cannot be read has an
`error` (one line) and no lag.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time


def txid_range(name: str) -> tuple[int, int] | None:
    stem = os.path.basename(name).removesuffix(".ltx")
    try:
        low, high = stem.split("-")
        return int(low, 16), int(high, 16)
    except ValueError:
        return None


def one(litestream: str, config: str, path: str, env: dict) -> dict:
    out: dict = {"path": path}
    meta = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}-litestream", "ltx", "0")
    local = []
    for name in glob.glob(os.path.join(meta, "*.ltx")):
        found = txid_range(name)
        if found:
            local.append((found[1], os.stat(name).st_mtime))
    out["local_txid"] = max((t for t, _ in local), default=0)
    proc = subprocess.run(
        [litestream, "ltx", "-config", config, "-json", "-level", "all", path],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        lines = [x for x in (proc.stderr or proc.stdout).splitlines() if x.strip()]
        out["error"] = (lines[-1] if lines else "no output").removeprefix("Error: ")
        return out
    rows = json.loads(proc.stdout or "[]") or []
    replica = max((int(r["max_txid"], 16) for r in rows), default=0)
    out["replica_txid"] = replica
    out["replica_time"] = max((r.get("timestamp", "") for r in rows), default=None)
    waiting = [mtime for txid, mtime in local if txid > replica]
    out["lag_seconds"] = round(time.time() - min(waiting), 1) if waiting else 0.0
    return out


def main() -> int:
    if len(sys.argv) < 4:
        sys.exit("usage: phoenix-litestream-status LITESTREAM CREDENTIALS_DIR CONFIG...")
    litestream, credentials, configs = sys.argv[1], sys.argv[2], sys.argv[3:]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "CREDENTIALS_DIRECTORY": credentials}
    found = []
    for config in configs:
        with open(config, encoding="utf-8") as handle:
            spec = json.load(handle)  # Phoenix writes it as JSON (which is YAML)
        for db in spec.get("dbs", []):
            try:
                found.append(one(litestream, config, db["path"], env))
            except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
                found.append({"path": db["path"], "error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps({"databases": found}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
