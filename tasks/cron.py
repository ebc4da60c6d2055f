"""Runbook step 6: the cron jobs of timmy-config's cron/ folder, their source of truth, in
one /etc/cron.d file that Phoenix owns (a job removed there is removed here)."""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy
from pyinfra.operations import files, server

from facts.cron import CronFileInSync, build_command
from tasks.role import role

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = ("cron_file", "cron_source_dir", "timmy_config_dest")

# A line must be a comment, an environment setting, or `m h dom mon dow USER command`
# (`@reboot USER command`): a line without its user would run nothing, silently.
CHECK = (
    r"/^[ \t]*(#|$)/ {next} /^[A-Za-z_][A-Za-z0-9_]*[ \t]*=/ {next} "
    r"($1 ~ /^@/ && NF >= 3) || NF >= 7 {next} "
    r'{printf "%s:%d: not an /etc/cron.d line (m h dom mon dow USER command): %s\n", '
    r'FILENAME, FNR, $0 > "/dev/stderr"; bad = 1} END {exit bad}'
)


@deploy("Install the cron jobs from timmy-config")
def install_cron() -> None:
    data = host.data
    if role() == "standby":  # one primary: the jobs run on the forge alone
        files.file(
            name=f"Ensure {data.cron_file} is absent until promotion (standby)",
            path=data.cron_file,
            present=False,
        )
        return
    source = posixpath.join(data.timmy_config_dest, data.cron_source_dir)
    dest = data.cron_file
    fresh = QuoteString(dest + ".phoenix-new")
    server.shell(
        name=f"Install {dest} from timmy-config's {data.cron_source_dir}/",
        commands=[
            StringCommand(
                "for",
                "f",
                "in",
                StringCommand(QuoteString(source), "/*.cron", _separator=""),
                ";",
                "do",
                "[",
                "-f",
                '"$f"',
                "]",
                "||",
                "continue;",
                "awk",
                QuoteString(CHECK),
                '"$f"',
                "||",
                "exit",
                "1;",
                "done",
            ),
            StringCommand(
                build_command(source),
                ">",
                fresh,
                "&&",
                "chown",
                "root:root",
                fresh,
                "&&",
                "chmod",
                "0644",
                fresh,
                "&&",
                "mv",
                "-f",
                fresh,
                QuoteString(dest),
            ),
        ],
        # Compared when it runs, after this converge's checkout: only a change rewrites it.
        _if=lambda: not host.get_fact(CronFileInSync, source=source, dest=dest),
    )
