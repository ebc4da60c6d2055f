"""Converge and recovery figures: first converge with a cold and a warm apt
cache, a no-change converge, and the drill's RTO, in a lab of its own (benchmarks/lab_bench.py's
settings), so it runs beside the main lab. Root. Prints a table; it does not pass or fail.
    python3 benchmarks/converge_bench.py [--keep-image]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.lab_bench import fresh_bench_lab, print_table  # noqa: E402  (path set above)


def converge(name: str) -> float:
    env = {**os.environ, "PHOENIX_ENV": "lab", "PHOENIX_LAB_DROPLETS": name}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/lab.py", "deploy.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"converge of {name} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--keep-image",
        action="store_true",
        help="keep the bench lab's image and apt cache (the cold run is warm)",
    )
    args = parser.parse_args()
    config = fresh_bench_lab(keep_image=args.keep_image)
    from phoenix.lab import lab as lablib
    from phoenix.lab.drill import drill
    from phoenix.provision.do import DO
    from phoenix.sshconf import public_half

    rows: list[tuple[str, str]] = []
    try:
        lablib.up(config, log=lambda m: None)
        do = DO(token=config.do_token_file.read_text().strip(), endpoint=config.do_endpoint)
        fp = do.ensure_key("bench", public_half(config.ssh_key).read_text())
        for name in ("bench-cold", "bench-warm"):
            d = do.create(
                {
                    "name": name,
                    "region": "nyc1",
                    "size": "s-2vcpu-4gb",
                    "image": "debian-12-x64",
                    "ssh_keys": [fp],
                }
            )
            do.wait_active(d["id"], timeout=90)
            label = (
                "first converge, cold apt cache"
                if name == "bench-cold"
                else "first converge, warm apt cache"
            )
            if args.keep_image and name == "bench-cold":
                label = "first converge (cache kept: not cold)"
            rows.append((label, f"{converge(name):.1f} s"))
        rows.append(("no-change converge", f"{converge('bench-warm'):.1f} s"))
        for d in do.droplets(name=None):
            do.destroy(d["id"])
        for standby in (False, True):
            report = drill(standby=standby, say=lambda m: None).to_dict()
            steps = ", ".join(f"{s['name']} {s['seconds']} s" for s in report["steps"])
            rows.append(
                (
                    f"drill{' --standby' if standby else ''} RTO",
                    f"{report['rto_seconds']} s ({steps}); lost up to the snapshot: "
                    f"{report['data_lost_up_to_snapshot']}",
                )
            )
    finally:
        lablib.down(config, purge=not args.keep_image)
    print_table(rows)


if __name__ == "__main__":
    main()
