"""A fleet: the full deploy converged on 1 droplet, then on 8 at once (pyinfra's own
parallelism), side by side in one run: wall time, CPU seconds (the whole machine, and the
pyinfra controller alone), and the lab's memory with 8 droplets up. In a lab of its own,
reading the main lab's image and package cache when there is one. Root. Prints figures.
    python3 benchmarks/fleet_bench.py [--fleet 8]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.lab_bench import print_table, pss_kib  # noqa: E402  (path set above)

FLEET_ENV = {
    "PHOENIX_LAB_TAG": "phxf",
    "PHOENIX_LAB_SUBNET": "10.213.89.0/24",
    "PHOENIX_LAB_DO_PORT": "8980",
    "PHOENIX_LAB_CF_PORT": "8981",
    "PHOENIX_LAB_ARTIFACT_PORT": "8982",
    "PHOENIX_LAB_APT_PORT": "3252",
}


def busy_seconds() -> float:
    """CPU time spent by the whole machine (user+nice+system+irq+softirq), in seconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[i] for i in (0, 1, 2, 5, 6)) / os.sysconf("SC_CLK_TCK")


def converge(names: list[str]) -> tuple[float, float, float]:
    """(wall s, machine CPU s, pyinfra's own CPU s) of one pyinfra run over `names`."""
    env = {**os.environ, "PHOENIX_LAB_DROPLETS": ",".join(names)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, t0 = busy_seconds(), time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyinfra",
            "-y",
            "--parallel",
            str(len(names)),
            "inventories/lab.py",
            "deploy.py",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    wall, cpu = time.monotonic() - t0, busy_seconds() - cpu0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"converge of {names} failed:\n{proc.stderr[-3000:]}")
    own = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, own


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fleet", type=int, default=8)
    args = parser.parse_args()
    os.environ.update(FLEET_ENV)
    from phoenix.lab import config as labconfig
    from phoenix.lab import lab as lablib
    from phoenix.provision.do import DO
    from phoenix.sshconf import public_half

    config = labconfig.load()
    rows: list[tuple[str, str]] = []
    try:
        lablib.up(config, log=lambda m: None)
        do = DO(token=config.do_token_file.read_text().strip(), endpoint=config.do_endpoint)
        fp = do.ensure_key("fleet", public_half(config.ssh_key).read_text())

        def make(names: list[str]) -> None:
            made = [
                do.create(
                    {
                        "name": n,
                        "region": "nyc1",
                        "size": "s-2vcpu-4gb",
                        "image": "debian-12-x64",
                        "ssh_keys": [fp],
                    }
                )
                for n in names
            ]
            for d in made:
                do.wait_active(d["id"], timeout=300)

        for size in (1, args.fleet):
            names = [f"fleet{size}-{n}" for n in range(size)]
            make(names)
            wall, cpu, own = converge(names)
            rows.append(
                (
                    f"{size} droplet(s): first converge, wall",
                    f"{wall:.1f} s ({wall / size:.1f} s per droplet)",
                )
            )
            rows.append(
                (
                    f"{size} droplet(s): CPU, machine / pyinfra controller",
                    f"{cpu:.1f} s / {own:.1f} s ({cpu / size:.1f} s / "
                    f"{own / size:.1f} s per droplet)",
                )
            )
            if size == args.fleet:
                pids = []
                for d in do.droplets(name=None):
                    ns = f"{config.tag}-{d['id']}"
                    pids += [
                        int(p)
                        for p in subprocess.run(
                            ["ip", "netns", "pids", ns], capture_output=True, text=True
                        ).stdout.split()
                    ]
                rows.append(
                    (
                        f"lab memory with {size} converged droplets (PSS)",
                        f"{pss_kib(pids) / 1024:.0f} MiB in {len(pids)} processes",
                    )
                )
            wall, _cpu, own = converge(names)
            rows.append(
                (
                    f"{size} droplet(s): no-change converge, wall / controller CPU",
                    f"{wall:.1f} s / {own:.1f} s",
                )
            )
        rows.append(("machine", f"{os.cpu_count()} cores; other work on it counts in 'machine'"))
    finally:
        lablib.down(config, purge=True)
    print_table(rows)


if __name__ == "__main__":
    main()
