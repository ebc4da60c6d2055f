"""`make bench`: every benchmark in turn (root, the lab's figures need it). Each prints its
own table; none passes or fails on time, since these machines are shared and noisy."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for script in (
    "lab_bench.py",
    "converge_bench.py",
    "fleet_bench.py",
    "floor_bench.py",
    "backup_bench.py",
    "import_bench.py",
    "adopt_bench.py",
    "hermes_bench.py",
    "hardening_bench.py",
    "litestream_bench.py",
    "rpo_bench.py",
    "certificate_bench.py",
):
    print(f"\n## {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=False)
