"""The Gitea a host already runs, as its systemd unit and binary describe it (tasks/adopt.py)."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase, QuoteString, StringCommand

PROPERTIES = (
    "LoadState",
    "ActiveState",
    "MainPID",
    "ExecStart",
    "User",
    "Group",
    "WorkingDirectory",
    "Environment",
    "FragmentPath",
)


class GiteaUnit(FactBase):
    """
    The unit's settings that say where Gitea is (`systemctl show`), or None when the unit is
    not there:

    .. code:: python

        {"argv": ["/usr/local/bin/gitea", "web", "-c", "/etc/gitea/app.ini"],
         "user": "git", "working_directory": "/var/lib/gitea",
         "environment": {"GITEA_WORK_DIR": "/var/lib/gitea"},
         "fragment_path": "/etc/systemd/system/gitea.service", "active": True, "main_pid": 812}
    """

    def command(self, unit: str = "gitea.service") -> StringCommand:
        return StringCommand(
            "systemctl",
            "show",
            "--property=" + ",".join(PROPERTIES),
            QuoteString(unit),
            "2>/dev/null",
            "||",
            "true",
        )

    def process(self, output: list[str]) -> dict | None:
        props = dict(line.partition("=")[::2] for line in output if "=" in line)
        if props.get("LoadState") != "loaded":
            return None
        argv: list[str] = []
        exec_start = props.get("ExecStart", "")
        if "argv[]=" in exec_start:  # "{ path=… ; argv[]=/usr/local/bin/gitea web -c … ; …}"
            argv = shlex.split(exec_start.split("argv[]=", 1)[1].split(" ;", 1)[0])
        env = {}
        for item in shlex.split(props.get("Environment", "")):
            key, _, value = item.partition("=")
            env[key] = value
        return {
            "argv": argv,
            "user": props.get("User") or "root",
            "group": props.get("Group") or "",
            "working_directory": props.get("WorkingDirectory") or "",
            "environment": env,
            "fragment_path": props.get("FragmentPath") or "",
            "active": props.get("ActiveState") == "active",
            "main_pid": int(props.get("MainPID") or 0),
        }


class GiteaVersion(FactBase):
    """
    What `gitea --version` says, e.g. "1.22.3"; None when the binary is not there.
    """

    def command(self, binary: str) -> StringCommand:
        return StringCommand(QuoteString(binary), "--version", "2>/dev/null", "||", "true")

    def process(self, output: list[str]) -> str | None:
        for line in output:
            words = line.split()
            if len(words) >= 3 and words[:2] == ["Gitea", "version"]:
                return words[2]
        return None
