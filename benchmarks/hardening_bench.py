"""Hardening figures on a recovered droplet: `systemd-analyze security` of every
unit Phoenix runs, ssh-audit's failures and warnings, and lynis's hardening index.

A warm-standby drill is run and its lab kept, so that the promoted standby carries every unit
(gitea, caddy, the backup job and the standby refresh, the hermes houses); the figures are
read there, then the lab is taken down. Lynis (Debian's) is installed on that droplet for the
audit only. Root. Prints a table; it does not pass or fail.
    python3 benchmarks/hardening_bench.py [--keep-image] [--current-lab]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.lab_bench import fresh_bench_lab, print_table  # noqa: E402  (path set above)

UNITS = ["gitea", "caddy", "phoenix-backup", "phoenix-standby-refresh", "hermes-backend"]


def on(target, command: str, timeout: float = 600) -> str:
    from phoenix.sshconf import ssh_command

    proc = subprocess.run(
        ssh_command(target, command), capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"`{command}` failed on {target.host}: {proc.stderr[-500:]}")
    return proc.stdout


def exposure(target, unit: str) -> str:
    line = on(target, f"systemd-analyze security --no-pager {unit}.service | tail -n1")
    found = re.search(r": (\d+\.\d+) (\S+)", line)
    return f"{found.group(1)} {found.group(2)}" if found else line.strip()


def ssh_audit(address: str) -> str:
    proc = subprocess.run(
        ["ssh-audit", "-n", address], capture_output=True, text=True, timeout=120, check=False
    )
    lines = proc.stdout.splitlines()
    fails = [line for line in lines if "[fail]" in line]
    warns = [re.sub(r"\s+--.*", "", line).strip() for line in lines if "[warn]" in line]
    return f"{len(fails)} failures, {len(warns)} warnings" + (
        f" ({'; '.join(warns)})" if warns else ""
    )


def lynis(target) -> tuple[str, str]:
    on(target, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q lynis >/dev/null")
    on(
        target,
        "lynis audit system --quick --no-colors --logfile /root/lynis.log "
        "--report-file /root/lynis-report.dat >/dev/null 2>&1 || true",
        timeout=900,
    )
    report = on(target, "cat /root/lynis-report.dat")
    index = re.search(r"^hardening_index=(\d+)", report, re.MULTILINE)
    warnings = [
        line.split("=", 1)[1].split("|")[0]
        for line in report.splitlines()
        if line.startswith("warning[]=")
    ]
    suggestions = sum(line.startswith("suggestion[]=") for line in report.splitlines())
    return (
        index.group(1) if index else "?",
        f"warnings: {', '.join(warnings) or 'none'}; {suggestions} suggestions",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--keep-image", action="store_true", help="keep the bench lab's image and apt cache"
    )
    parser.add_argument(
        "--current-lab",
        action="store_true",
        help="use the lab of the PHOENIX_LAB_* environment, not the bench's",
    )
    args = parser.parse_args()
    if args.current_lab:
        from phoenix.lab import config as labconfig

        config = labconfig.load()
    else:
        config = fresh_bench_lab(keep_image=args.keep_image)
    from phoenix.lab import lab as lablib
    from phoenix.lab.drill import drill
    from phoenix.provision import droplet as prov
    from phoenix.state import State

    was_up = lablib.status(config)["up"]
    rows: list[tuple[str, str]] = []
    try:
        report = drill(standby=True, say=lambda m: None, keep_lab=True).to_dict()
        rows.append(("drill --standby RTO (HTTPS)", f"{report['rto_seconds']} s"))
        folder = max((config.state_dir / "drills").iterdir())
        state = State("standby", folder)
        target = prov.target(state)
        for unit in UNITS:
            rows.append((f"systemd-analyze security {unit}", exposure(target, unit)))
        rows.append(("ssh-audit", ssh_audit(state.address)))
        index, warnings = lynis(target)
        rows.append(("lynis hardening index", index))
        rows.append(("lynis findings", warnings))
    finally:
        if not (args.current_lab and was_up):
            lablib.down(config, purge=not (args.keep_image or args.current_lab))
        else:  # the lab was up before: leave it, minus what the drill made
            from phoenix.lab import offsite
            from phoenix.lab.drill import OFFSITE
            from phoenix.provision.do import DO

            do = DO(token=config.do_token_file.read_text().strip(), endpoint=config.do_endpoint)
            store = offsite.load(config, OFFSITE)
            if store is not None:
                offsite.destroy(config, do, store)
            for role in ("primary", "standby", "recovery"):
                for d in do.droplets(tag=f"phoenix-{role}"):
                    do.destroy(d["id"])
    print_table(rows)


if __name__ == "__main__":
    main()
