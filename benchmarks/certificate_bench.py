"""The two recoveries side by side, in one run and one lab: a forge whose backup brings its
certificate back (Phoenix's own forge, the Nth disaster) and the first real disaster, whose
backup holds none (`--no-certificate-in-backup`: a certificate over ACME DNS-01 before
validation, DNS untouched). In the bench lab (benchmarks/lab_bench.py's settings), so it runs
beside the main lab. Root. Prints a table; it does not pass or fail.
    python3 benchmarks/certificate_bench.py [--keep-image]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.lab_bench import fresh_bench_lab, print_table  # noqa: E402  (path set above)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--keep-image", action="store_true", help="keep the bench lab's image and apt cache"
    )
    args = parser.parse_args()
    config = fresh_bench_lab(keep_image=args.keep_image)
    from phoenix.lab import lab as lablib
    from phoenix.lab.drill import drill

    rows: list[tuple[str, str]] = []
    try:
        lablib.up(config, log=lambda m: None)
        # the image is built before either drill: neither carries the build in its figures
        for bare, label in ((False, "certificate in the backup"), (True, "first disaster")):
            report = drill(say=lambda m: None, no_certificate=bare).to_dict()
            steps = {s["name"]: s["seconds"] for s in report["steps"]}
            rows.append(
                (
                    f"RTO, {label}",
                    f"{report['rto_seconds']} s (certificate step {steps.get('certificate')} s: "
                    f"{report['certificate']}; deploy {steps.get('deploy')} s, validate "
                    f"{steps.get('validate')} s)",
                )
            )
    finally:
        lablib.down(config, purge=not args.keep_image)
    print_table(rows)


if __name__ == "__main__":
    main()
