"""Hermes Agent figures: the wheelhouse download from PyPI (cold) and from its cache
(warm), the install of the virtualenv on a droplet from the lab's wheelhouse, and the memory
of the four gateways (backend and three houses) on a converged droplet. In the bench lab
(benchmarks/lab_bench.py's settings). Root. Prints a table; it does not pass or fail.
    python3 benchmarks/hermes_bench.py [--keep-image | --here]
--here uses the lab of this shell's PHOENIX_LAB_* settings instead, and leaves it as it was.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.converge_bench import converge  # noqa: E402  (path set above)
from benchmarks.lab_bench import fresh_bench_lab, print_table  # noqa: E402

UNITS = ["hermes-backend", "hermes-ezra", "hermes-allegro", "hermes-bezalel"]
# The deploy's own install (tasks/hermes.py), into a throw-away virtualenv.
INSTALL = (
    "set -e; rm -rf /tmp/bench-venv; python3 -m venv /tmp/bench-venv; "
    "/tmp/bench-venv/bin/pip install --quiet --isolated --no-cache-dir "
    "--disable-pip-version-check --require-hashes --only-binary=:all: --no-index "
    "--find-links {url} --trusted-host {host} -r $(ls /opt/hermes/requirements-*.txt "
    "| head -1); rm -rf /tmp/bench-venv"
)
MEMORY = (
    "for u in " + " ".join(UNITS) + "; do p=$(systemctl show -p MainPID --value $u); "
    "echo $u $(awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {print r, p}' "
    "/proc/$p/smaps_rollup); done"
)


def timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--keep-image", action="store_true", help="keep the bench lab's image and apt cache"
    )
    parser.add_argument(
        "--here", action="store_true", help="in the lab of PHOENIX_LAB_*, left up if it was up"
    )
    args = parser.parse_args()
    if args.here:
        from phoenix.lab import config as labconfig

        config = labconfig.load()
    else:
        config = fresh_bench_lab(keep_image=args.keep_image)
    from phoenix.lab import lab as lablib
    from phoenix.lab import wheelhouse
    from phoenix.lab.client import droplet_target
    from phoenix.provision.do import DO
    from phoenix.sshconf import public_half, ssh_command

    rows: list[tuple[str, str]] = []
    was_up = lablib.status(config)["up"]
    with tempfile.TemporaryDirectory(prefix="hermes-bench-wheels-") as cache:
        saved = os.environ.get("PHOENIX_LAB_WHEELHOUSE_CACHE")
        os.environ["PHOENIX_LAB_WHEELHOUSE_CACHE"] = cache
        cold = timed(lambda: wheelhouse.ensure_cached(log=lambda m: None))
        warm = timed(lambda: wheelhouse.ensure_cached(log=lambda m: None))
        if saved is None:
            os.environ.pop("PHOENIX_LAB_WHEELHOUSE_CACHE")
        else:
            os.environ["PHOENIX_LAB_WHEELHOUSE_CACHE"] = saved
        size = sum(p.stat().st_size for p in Path(cache).rglob("*.whl"))
        count = len(list(Path(cache).rglob("*.whl")))
    rows.append(
        ("wheelhouse from PyPI (cold)", f"{cold:.1f} s ({count} wheels, {size / 1e6:.0f} MB)")
    )
    rows.append(("wheelhouse from its cache (warm)", f"{warm:.2f} s"))
    try:
        lablib.up(config, log=lambda m: None)
        do = DO(token=config.do_token_file.read_text().strip(), endpoint=config.do_endpoint)
        fp = do.ensure_key("bench", public_half(config.ssh_key).read_text())
        d = do.create(
            {
                "name": "bench-hermes",
                "region": "nyc1",
                "size": "s-2vcpu-4gb",
                "image": "debian-12-x64",
                "ssh_keys": [fp],
            }
        )
        do.wait_active(d["id"], timeout=90)
        rows.append(("first converge (Hermes and all)", f"{converge('bench-hermes'):.1f} s"))
        target = droplet_target(config, "bench-hermes")

        def ssh(command: str) -> str:
            return subprocess.run(
                ssh_command(target, command),
                capture_output=True,
                text=True,
                check=True,
                timeout=900,
            ).stdout

        url = f"{config.artifact_url}/wheelhouse/"
        install = timed(lambda: ssh(INSTALL.format(url=url, host=config.bridge_ip)))
        rows.append(("venv + install on a droplet, from the wheelhouse", f"{install:.1f} s"))
        rows.append(("install, cold wheelhouse (download + install)", f"{cold + install:.1f} s"))
        rows.append(("install, warm wheelhouse", f"{warm + install:.1f} s"))
        time.sleep(30)  # idle, after their start
        total_rss = total_pss = 0
        for line in ssh(MEMORY).splitlines():
            unit, rss, pss = line.split()
            total_rss, total_pss = total_rss + int(rss), total_pss + int(pss)
            rows.append(
                (
                    f"memory of {unit} (idle)",
                    f"RSS {int(rss) / 1024:.0f} MiB, PSS {int(pss) / 1024:.0f} MiB",
                )
            )
        rows.append(
            (
                "memory of the four gateways",
                f"RSS {total_rss / 1024:.0f} MiB, PSS {total_pss / 1024:.0f} MiB",
            )
        )
        do.destroy(d["id"])
    finally:
        if not (args.here and was_up):
            lablib.down(config, purge=not (args.keep_image or args.here))
    print_table(rows)


if __name__ == "__main__":
    main()
