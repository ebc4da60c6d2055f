"""Key-only SSH with the algorithms ssh-audit recommends for Debian 12, no forwarding of X11,
TCP or agents, few tries per connection; sshd checked before it is reloaded."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from facts.sshd import WeakModuli

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "ssh_agent_forwarding",
    "ssh_ciphers",
    "ssh_client_alive",
    "ssh_dropin_path",
    "ssh_host_key_algorithms",
    "ssh_host_keys",
    "ssh_kex_algorithms",
    "ssh_log_level",
    "ssh_macs",
    "ssh_max_auth_tries",
    "ssh_moduli_min_bits",
    "ssh_password_authentication",
    "ssh_permit_root_login",
    "ssh_required_rsa_size",
    "ssh_tcp_forwarding",
    "ssh_x11_forwarding",
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
MODULI = "/etc/ssh/moduli"
SETTINGS = (
    "ssh_password_authentication",
    "ssh_permit_root_login",
    "ssh_x11_forwarding",
    "ssh_tcp_forwarding",
    "ssh_agent_forwarding",
    "ssh_max_auth_tries",
    "ssh_client_alive",
    "ssh_log_level",
    "ssh_host_keys",
    "ssh_kex_algorithms",
    "ssh_ciphers",
    "ssh_macs",
    "ssh_host_key_algorithms",
    "ssh_required_rsa_size",
)


@deploy("Harden SSH")
def harden_ssh() -> None:
    data = host.data
    dropin = files.template(
        name="Ensure sshd takes keys only, with strong algorithms and no X11 forwarding",
        src=str(TEMPLATES / "sshd-phoenix.conf.j2"),
        dest=data.ssh_dropin_path,
        user="root",
        group="root",
        mode="0644",
        **{key: data.get(key) for key in SETTINGS},
    )
    bits = int(data.ssh_moduli_min_bits)
    moduli = None
    if host.get_fact(WeakModuli, path=MODULI, min_bits=bits):  # only this operation fixes it
        # Group exchange picks from this file: a small modulus is a weak key exchange.
        moduli = server.shell(
            name=f"Ensure sshd's group-exchange moduli are at least {bits} bits",
            commands=[
                StringCommand(
                    "awk",
                    QuoteString(f"/^#/ || $5 >= {bits}"),
                    QuoteString(MODULI),
                    ">",
                    QuoteString(MODULI + ".phoenix"),
                    "&&",
                    "mv",
                    "-f",
                    QuoteString(MODULI + ".phoenix"),
                    QuoteString(MODULI),
                )
            ],
        )
    changed = any_changed(dropin, *([moduli] if moduli else []))
    rejected = (
        f"sshd -t rejects the configuration with {data.ssh_dropin_path}: it was moved "
        "to .rejected and sshd was not reloaded; fix the ssh_* settings"
    )
    server.shell(
        name="Check the new sshd configuration before reloading",
        commands=[
            StringCommand(
                "sshd",
                "-t",
                "||",
                "{",
                "mv",
                "-f",
                QuoteString(data.ssh_dropin_path),
                QuoteString(data.ssh_dropin_path + ".rejected"),
                ";",
                "echo",
                QuoteString(rejected),
                ">&2;",
                "exit",
                "1;",
                "}",
            )
        ],
        _if=changed,
    )
    systemd.service(
        name="Reload sshd for its new configuration",
        service="ssh.service",
        reloaded=True,
        _if=changed,
    )
