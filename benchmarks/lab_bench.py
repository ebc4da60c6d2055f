"""Lab figures: cold image build, droplet create-to-SSH-ready, idle memory, lab down.

Runs a lab of its own beside any other (its own state folder, subnet, bridge, ports and
name prefix), so it can run while the main lab is in use. Root. Prints a table; it does not
pass or fail on time.
    python3 benchmarks/lab_bench.py [--droplets 5] [--keep-image]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BENCH_ENV = {
    "PHOENIX_LAB_DIR": "/var/lib/phoenix-lab-bench",
    "PHOENIX_LAB_SUBNET": "10.213.88.0/24",
    "PHOENIX_LAB_BRIDGE": "phxb-br0",
    "PHOENIX_LAB_TAG": "phxb",
    "PHOENIX_LAB_DO_PORT": "8880",
    "PHOENIX_LAB_CF_PORT": "8881",
    "PHOENIX_LAB_ARTIFACT_PORT": "8882",
    "PHOENIX_LAB_APT_PORT": "3242",
    "PHOENIX_LAB_SHARE_FROM": "none",  # its own image and apt cache: the build is cold
}


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def fresh_bench_lab(*, keep_image: bool):
    """The bench lab's settings, its state purged first unless keep_image (caches start cold)."""
    os.environ.update(BENCH_ENV)
    from phoenix.lab import config as labconfig
    from phoenix.lab import lab as lablib

    config = labconfig.load()
    if not keep_image:
        lablib.down(config, purge=True)
    return config


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"{'figure':<{width}}  value")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--droplets", type=int, default=5)
    parser.add_argument(
        "--keep-image",
        action="store_true",
        help="reuse a cached bench image (then the build is not cold)",
    )
    args = parser.parse_args()
    config = fresh_bench_lab(keep_image=args.keep_image)
    from phoenix.lab import lab as lablib
    from phoenix.lab.nspawn import wait_ssh
    from phoenix.provision.do import DO
    from phoenix.sshconf import public_half

    rows: list[tuple[str, str]] = []
    started = time.monotonic()
    timings = lablib.up(config, log=lambda m: None)
    rows.append(("lab up (incl. image build)", f"{time.monotonic() - started:.1f} s"))
    rows.append(
        (
            "image build (debootstrap, cold apt cache)"
            if not args.keep_image
            else "image build (cached)",
            f"{timings['image_build_s']:.1f} s",
        )
    )
    try:
        do = DO(token=config.do_token_file.read_text().strip(), endpoint=config.do_endpoint)
        fp = do.ensure_key("bench", public_half(config.ssh_key).read_text())
        ready: list[float] = []
        ids: list[int] = []
        for n in range(args.droplets):
            t0 = time.monotonic()
            droplet = do.create(
                {
                    "name": f"bench-{n}",
                    "region": "nyc1",
                    "size": "s-1vcpu-1gb",
                    "image": "debian-12-x64",
                    "ssh_keys": [fp],
                }
            )
            ids.append(droplet["id"])
            ip = None
            while ip is None:
                d = do.get(droplet["id"])
                ip = next((v["ip_address"] for v in d["networks"]["v4"]), None)
                if ip is None:
                    time.sleep(0.05)
            wait_ssh(ip, 60, error=lambda n=n: f"bench-{n} never answered SSH")
            ready.append(time.monotonic() - t0)
        rows.append(
            (
                f"droplet create -> SSH ready (median of {len(ready)})",
                f"{statistics.median(ready):.2f} s (min {min(ready):.2f}, max {max(ready):.2f})",
            )
        )
        time.sleep(10)  # let boot-time work settle
        ns = f"{config.tag}-{ids[0]}"
        pids = [
            int(p)
            for p in subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True
            ).stdout.split()
        ]
        rows.append(
            (
                "idle droplet memory (PSS of its processes)",
                f"{pss_kib(pids) / 1024:.1f} MiB in {len(pids)} processes",
            )
        )
    finally:
        seconds = lablib.down(config)
        rows.append((f"lab down ({args.droplets} droplets)", f"{seconds:.1f} s"))
        if not args.keep_image:
            shutil.rmtree(config.state_dir, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
