"""Key-only SSH: no passwords, root by key only; sshd checked before it is reloaded."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy
from pyinfra.operations import files, server, systemd

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@deploy("Harden SSH")
def harden_ssh() -> None:
    data = host.data
    dropin = files.template(
        name="Ensure sshd takes keys only",
        src=str(TEMPLATES / "sshd-phoenix.conf.j2"), dest=data.ssh_dropin_path,
        user="root", group="root", mode="0644",
        ssh_password_authentication=data.ssh_password_authentication,
        ssh_permit_root_login=data.ssh_permit_root_login,
    )
    rejected = (f"sshd -t rejects the configuration with {data.ssh_dropin_path}: it was moved "
                "to .rejected and sshd was not reloaded; fix the ssh_* settings")
    server.shell(
        name="Check the new sshd configuration before reloading",
        commands=[StringCommand("sshd", "-t", "||", "{",
                                "mv", "-f", QuoteString(data.ssh_dropin_path),
                                QuoteString(data.ssh_dropin_path + ".rejected"), ";",
                                "echo", QuoteString(rejected), ">&2;", "exit", "1;", "}")],
        _if=dropin.did_change,
    )
    systemd.service(name="Reload sshd for its new configuration", service="ssh.service",
                    reloaded=True, _if=dropin.did_change)
