"""HTTPS in front of Gitea: Debian's Caddy with a certificate over ACME, HTTP/2 and the
http -> https redirect; Gitea itself listens on the loopback only (gitea_http_addr).

Runs after the restore: Caddy's home (its certificates and ACME account) comes back with the
backup (backup_paths); without one there, `phoenix recover` writes one it got over DNS-01 from
the operator's machine and restarts Caddy (phoenix/forge/caddycert.py), so a recovered forge
serves its certificate before the DNS cutover, also to a check that reaches it by address.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.operations import apt, files

from tasks._units import run_unit

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "base_install_recommends",
    "gitea_domain",
    "gitea_http_addr",
    "gitea_http_port",
    "https_acme_ca",
    "https_acme_ca_root",
    "https_acme_email",
    "unit_hardening",
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Debian's; deploy.py has the base install take them in its one apt run, and this
# task still ensures them (a no-op then).
PACKAGES = ["caddy"]
CA_ROOT = "/etc/caddy/acme-ca-root.pem"


def _upstream() -> str:
    addr = host.data.gitea_http_addr
    return "127.0.0.1" if addr in ("0.0.0.0", "::", "") else addr


@deploy("Serve the forge over HTTPS")
def serve_https() -> None:
    data = host.data
    apt.packages(
        name="Ensure Caddy is installed",
        packages=PACKAGES,
        no_recommends=not data.base_install_recommends,
    )
    changes = []
    root = data.https_acme_ca_root
    if root:
        if not Path(root).is_file():
            raise DeployError(
                f"https_acme_ca_root {root} is not a file on this machine: give "
                "the PEM of the CA that signs the ACME server's certificate"
            )
        changes.append(
            files.put(
                name="Ensure Caddy trusts the ACME CA's certificate",
                src=root,
                dest=CA_ROOT,
                user="root",
                group="root",
                mode="0644",
            )
        )
    changes.append(
        files.template(
            name=f"Ensure Caddy serves {data.gitea_domain} over HTTPS in front of Gitea",
            src=str(TEMPLATES / "Caddyfile.j2"),
            dest="/etc/caddy/Caddyfile",
            user="root",
            group="root",
            mode="0644",
            https_acme_ca=data.https_acme_ca,
            https_acme_ca_root=CA_ROOT if root else None,
            https_acme_email=data.https_acme_email,
            gitea_domain=data.gitea_domain,
            gitea_http_addr=_upstream(),
            gitea_http_port=data.gitea_http_port,
        )
    )
    files.directory(
        name="Ensure caddy.service.d exists",
        path="/etc/systemd/system/caddy.service.d",
        user="root",
        group="root",
        mode="0755",
    )
    dropin = files.template(
        name="Ensure Caddy runs sandboxed",
        src=str(TEMPLATES / "caddy-phoenix.conf.j2"),
        dest="/etc/systemd/system/caddy.service.d/phoenix.conf",
        user="root",
        group="root",
        mode="0644",
        https_hardening=data.unit_hardening,
    )
    run_unit(
        "caddy.service",
        files=[dropin],
        restart_for=[dropin, *changes],
        what="Caddy sandbox",
        running_name="Ensure Caddy is running and enabled",
        restart_name="Restart Caddy for its new configuration or sandbox",
    )
