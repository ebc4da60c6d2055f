"""The package floor: in one run on fresh lab droplets, the first converge beside a
raw `apt-get update && apt-get install` of the same packages, and the no-change converge.

A first converge spends most of its time installing packages; the floor is what that alone
costs on the same kind of droplet through the same apt proxy, so `converge / floor` is the
share of the tooling itself. Order: a warm-up converge on a droplet of its own (fills the apt
proxy and the wheelhouse caches, and tells which packages the deploy installs), then the floor
on a fresh droplet, then the first and the no-change converge on another. Also prints where
the converge's time goes: before the first operation (connect, facts, planning) and the
slowest operations. Root. Prints a table; it does not pass or fail on time.

Two floors, two ratios: apt alone, and apt + the Hermes install, the same
pip command the deploy runs from the same lock and wheelhouse, timed on the floor droplet right
after apt: Hermes's wheels are packages the deploy installs, and no apt-get installs them.
    python3 benchmarks/floor_bench.py        # with PHOENIX_LAB_* set: that lab, else its own
    python3 benchmarks/floor_bench.py --repeat 3 --baseline /tmp/old-checkout
`--repeat N`: N fresh pairs of droplets, medians printed; `--baseline DIR`: the same
converges with the code in DIR (another commit's tree) on droplets of their own, in turn with
this tree's, so both meet the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.lab_bench import BENCH_ENV, print_table  # noqa: E402  (path set above)
from facts.boot import BootSettled  # noqa: E402

LOCK = REPO / "files" / "hermes-requirements.txt"  # the lock of group_data's hermes_requirements
START = re.compile(r"^--> Starting (?:[\w ,]+ )?operation: (?P<name>.*?)(?: \(.*\))?$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def converge(name: str, repo: Path = REPO) -> tuple[float, float, list[tuple[float, str]]]:
    """(total seconds, seconds before the first operation, [(seconds, operation)])."""
    env = {
        **os.environ,
        "PHOENIX_ENV": "lab",
        "PHOENIX_LAB_DROPLETS": name,
        "PYTHONPATH": str(repo),
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/lab.py", "deploy.py"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
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
            current, since = (match["name"].strip() if match else ""), now
            if first_op is None:
                first_op = now
    seconds = time.monotonic() - started
    if proc.wait() != 0:
        raise SystemExit(f"converge of {name} failed:\n" + "\n".join(tail))
    return seconds, first_op or seconds, sorted(ops, reverse=True)


def ssh(config, name: str, command: str) -> str:
    from phoenix.lab.client import droplet_target
    from phoenix.sshconf import ssh_command

    proc = subprocess.run(
        ssh_command(droplet_target(config, name), command),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise SystemExit(f"on {name}: {command[:80]} failed: {proc.stderr[-1500:]}")
    return proc.stdout


def phases(ops: list[tuple[float, str]]) -> tuple[float, float]:
    """(the package operations, the wait for the Hermes install: pip, beside the packages)."""
    packages = sum(t for t, op in ops if "the base packages" in op and "are installed" in op)
    hermes = sum(t for t, op in ops if op.startswith("Install Hermes Agent | Install hermes"))
    return packages, hermes


def pip_floor_command(lock_text: str) -> str:
    """The Hermes install alone as a shell line: the lock, then the deploy's own pip command
    (the lab's wheelhouse, hashes required, a venv without its own pip, compileall on every
    core) into a scratch venv. Needs python3-pip and python3-venv (the apt floor's)."""
    from urllib.parse import urlsplit

    from phoenix.lab import config as labconfig

    index = json.loads((labconfig.load().artifacts_dir / "index.json").read_text())
    links = index["hermes"]["wheelhouse"]
    lock, venv = "/root/floor-requirements.txt", "/root/floor-venv"
    return (
        f"printf %s {shlex.quote(lock_text)} > {lock} && python3 -m venv --without-pip "
        f"{venv} && python3 -m pip --python {venv}/bin/python install --quiet --isolated "
        "--no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: "
        f"--no-compile --no-index --find-links {shlex.quote(links)} --trusted-host "
        f"{urlsplit(links).hostname} -r {lock} && {venv}/bin/python -m compileall -q -j0 "
        f"{venv}/lib >/dev/null"
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1, help="fresh droplet pairs (medians)")
    parser.add_argument("--baseline", type=Path, help="another tree to converge beside this one")
    args = parser.parse_args()
    if "PHOENIX_LAB_TAG" not in os.environ:  # a lab of its own beside the main one
        os.environ.update(BENCH_ENV)
    from phoenix.lab import config as labconfig
    from phoenix.lab import lab as lablib
    from phoenix.provision.do import DO
    from phoenix.sshconf import public_half

    config = labconfig.load()
    was_up = lablib.status(config)["up"]
    trees = {"this tree": REPO}
    if args.baseline:
        trees["baseline"] = args.baseline.resolve()
    figures: dict[str, dict[str, list[float]]] = {tree: {} for tree in trees}
    floors: list[float] = []
    pip_floors: list[float] = []
    made: list[int] = []
    slowest: list[tuple[float, str]] = []
    packages: list[str] = []

    def note(tree: str, key: str, value: float) -> None:
        figures[tree].setdefault(key, []).append(value)

    try:
        lablib.up(config, log=lambda m: None)
        do = DO(token=config.do_token_file.read_text().strip(), endpoint=config.do_endpoint)
        fp = do.ensure_key("bench", public_half(config.ssh_key).read_text())

        def make(*names: str) -> None:
            ids = []
            for name in names:
                d = do.create(
                    {
                        "name": name,
                        "region": "nyc1",
                        "size": "s-2vcpu-4gb",
                        "image": "debian-12-x64",
                        "ssh_keys": [fp],
                    }
                )
                made.append(d["id"])
                ids.append(d["id"])
            for droplet_id in ids:
                do.wait_active(droplet_id, timeout=180)
            for name in names:  # its first minute holds the dpkg lock: timed from settled
                ssh(config, name, BootSettled().command(timeout=300))

        def deploy_name(tree: str, i: int) -> str:
            return f"floor-{'deploy' if tree == 'this tree' else 'base'}-{i}"

        make("floor-warmup", "floor-raw-0", *(deploy_name(t, 0) for t in trees))
        manual = "apt-mark showmanual | sort"
        before = set(ssh(config, "floor-raw-0", manual).split())
        converge("floor-warmup")
        packages = sorted(set(ssh(config, "floor-warmup", manual).split()) - before)
        install = (
            "export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null && "
            "apt-get install -y -q --no-install-recommends "
            + " ".join(shlex.quote(p) for p in packages)
            + " >/dev/null"
        )
        for i in range(args.repeat):
            if i:  # one pair at a time: ten converged droplets at once strain a shared host
                for droplet_id in made[:]:
                    if droplet_id != made[0]:
                        do.destroy(droplet_id)
                        made.remove(droplet_id)
                make(f"floor-raw-{i}", *(deploy_name(t, i) for t in trees))
            started = time.monotonic()
            ssh(config, f"floor-raw-{i}", install)
            floors.append(time.monotonic() - started)
            started = time.monotonic()
            ssh(config, f"floor-raw-{i}", pip_floor_command(LOCK.read_text()))
            pip_floors.append(time.monotonic() - started)
            order = list(trees) if i % 2 == 0 else list(reversed(trees))
            for tree in order:
                name = deploy_name(tree, i)
                first, before_ops, ops = converge(name, trees[tree])
                again, again_before, again_ops = converge(name, trees[tree])
                apt_op, hermes_op = phases(ops)
                note(tree, "first", first)
                note(tree, "ratio", first / floors[-1])
                note(tree, "ratio_pip", first / (floors[-1] + pip_floors[-1]))
                note(tree, "before", before_ops)
                note(tree, "apt", apt_op)
                note(tree, "hermes", hermes_op)
                note(tree, "rest", first - before_ops - apt_op - hermes_op)
                note(tree, "again", again)
                note(tree, "again_before", again_before)
                note(tree, "again_ops", float(len(again_ops)))
                if tree == "this tree":
                    slowest = ops
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
    runs = f" (median of {args.repeat})" if args.repeat > 1 else ""
    rows: list[tuple[str, str]] = [
        (
            f"floor: apt-get update && install of the deploy's {len(packages)} packages{runs}",
            f"{median(floors):.1f} s",
        ),
        (
            f"floor with Hermes: + the same pip install of its lock (its wheels are packages the "
            f"deploy installs){runs}",
            f"{median(floors) + median(pip_floors):.1f} s (pip {median(pip_floors):.1f} s)",
        ),
    ]
    for tree, got in figures.items():
        m = {key: median(values) for key, values in got.items()}
        rows += [
            (f"[{tree}] first converge (same packages, warm caches)", f"{m['first']:.1f} s"),
            (f"[{tree}] first converge / floor", f"{m['ratio']:.2f}x"),
            (f"[{tree}] first converge / floor with Hermes (apt + pip)", f"{m['ratio_pip']:.2f}x"),
            ("  of it before the first operation (connect, facts, plan)", f"{m['before']:.1f} s"),
            ("  of it the package operations", f"{m['apt']:.1f} s"),
            ("  of it the Hermes install (or the wait for it to end)", f"{m['hermes']:.1f} s"),
            ("  of it every other operation", f"{m['rest']:.1f} s"),
            (f"[{tree}] no-change converge", f"{m['again']:.1f} s"),
            ("  of it before the first operation", f"{m['again_before']:.1f} s"),
            (
                "  every figure of each run",
                "; ".join(
                    f"{key} " + "/".join(f"{v:.1f}" for v in values)
                    for key, values in got.items()
                    if key != "again_ops"
                ),
            ),
            (
                "  floor runs (apt / pip)",
                "/".join(f"{v:.1f}" for v in floors)
                + " / "
                + "/".join(f"{v:.1f}" for v in pip_floors),
            ),
        ]
    rows += [(f"  {op[:60]}", f"{t:.1f} s") for t, op in slowest[:6]]
    rows.append(("packages", " ".join(packages)))
    print_table(rows)


if __name__ == "__main__":
    main()
