"""The package floor (issue 20): in one run on fresh lab droplets, the first converge beside a
raw `apt-get update && apt-get install` of the same packages, and the no-change converge.

A first converge spends most of its time installing packages; the floor is what that alone
costs on the same kind of droplet through the same apt proxy, so `converge / floor` is the
share of the tooling itself. Order: a warm-up converge on a droplet of its own (fills the apt
proxy and the wheelhouse caches, and tells which packages the deploy installs), then the floor
on a fresh droplet, then the first and the no-change converge on another. Also prints where
the converge's time goes: before the first operation (connect, facts, planning) and the
slowest operations. Root. Prints a table; it does not pass or fail on time.
    python3 benchmarks/floor_bench.py        # with PHOENIX_LAB_* set: that lab, else its own
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.lab_bench import BENCH_ENV, print_table  # noqa: E402  (path set above)

START = re.compile(r"^--> Starting (?:[\w ,]+ )?operation: (?P<name>.*?)(?: \(.*\))?$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def converge(name: str) -> tuple[float, float, list[tuple[float, str]]]:
    """(total seconds, seconds before the first operation, [(seconds, operation)])."""
    env = {**os.environ, "PHOENIX_ENV": "lab", "PHOENIX_LAB_DROPLETS": name}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pyinfra", "-y", "inventories/lab.py",
                             "deploy.py"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    assert proc.stdout is not None
    first_op: float | None = None
    ops: list[tuple[float, str]] = []
    current, since, tail = "", 0.0, []
    for raw in proc.stdout:
        now = time.monotonic() - started
        line = ANSI.sub("", raw.rstrip("\n"))
        tail = [*tail[-30:], line]
        match = START.match(line)
        if match or line.startswith("--> Results"):
            if current:
                ops.append((now - since, current))
            current, since = (match["name"] if match else ""), now
            if first_op is None:
                first_op = now
    seconds = time.monotonic() - started
    if proc.wait() != 0:
        raise SystemExit(f"converge of {name} failed:\n" + "\n".join(tail))
    return seconds, first_op or seconds, sorted(ops, reverse=True)


def ssh(config, name: str, command: str) -> str:
    from phoenix.lab.client import droplet_target
    from phoenix.sshconf import ssh_command

    proc = subprocess.run(ssh_command(droplet_target(config, name), command),
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"on {name}: {command[:80]} failed: {proc.stderr[-1500:]}")
    return proc.stdout


def main() -> None:
    if "PHOENIX_LAB_TAG" not in os.environ:  # a lab of its own beside the main one
        os.environ.update(BENCH_ENV)
    from phoenix.do import DO
    from phoenix.lab import config as labconfig
    from phoenix.lab import lab as lablib
    from phoenix.sshconf import public_half

    config = labconfig.load()
    was_up = lablib.status(config)["up"]
    rows: list[tuple[str, str]] = []
    made: list[int] = []
    try:
        lablib.up(config, log=lambda m: None)
        do = DO(token=config.do_token_file.read_text().strip(), endpoint=config.do_endpoint)
        fp = do.ensure_key("bench", public_half(config.ssh_key).read_text())
        for name in ("floor-warmup", "floor-raw", "floor-deploy"):
            d = do.create({"name": name, "region": "nyc1", "size": "s-2vcpu-4gb",
                           "image": "debian-12-x64", "ssh_keys": [fp]})
            made.append(d["id"])
            do.wait_active(d["id"], timeout=120)

        manual = "apt-mark showmanual | sort"
        before = set(ssh(config, "floor-raw", manual).split())
        converge("floor-warmup")
        packages = sorted(set(ssh(config, "floor-warmup", manual).split()) - before)

        install = ("export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null && "
                   "apt-get install -y -q --no-install-recommends "
                   + " ".join(shlex.quote(p) for p in packages) + " >/dev/null")
        started = time.monotonic()
        ssh(config, "floor-raw", install)
        floor = time.monotonic() - started

        first, before_ops, ops = converge("floor-deploy")
        again, again_before, again_ops = converge("floor-deploy")
        per_op = sorted(s for s, _ in again_ops)[len(again_ops) // 2] if again_ops else 0.0
        rows += [
            (f"floor: apt-get update && install of the deploy's {len(packages)} packages",
             f"{floor:.1f} s"),
            ("first converge (same packages, warm caches)", f"{first:.1f} s"),
            ("first converge / floor", f"{first / floor:.2f}x"),
            ("  of it before the first operation (connect, facts, plan)", f"{before_ops:.1f} s"),
            *((f"  {op[:60]}", f"{s:.1f} s") for s, op in ops[:6]),
            ("no-change converge", f"{again:.1f} s"),
            ("  of it before the first operation", f"{again_before:.1f} s"),
            (f"  {len(again_ops)} operations, median each", f"{per_op * 1000:.0f} ms"),
            ("packages", " ".join(packages)),
        ]
    finally:
        if was_up:
            from phoenix.lab.lab import ledger_for
            from phoenix.lab.nspawn import destroy_droplet

            ledger = ledger_for(config)
            for droplet_id in made:
                if str(droplet_id) in ledger.read()["droplets"]:
                    destroy_droplet(config, ledger, droplet_id)
        else:
            lablib.down(config)
    print_table(rows)


if __name__ == "__main__":
    main()
