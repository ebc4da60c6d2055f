"""The lab's ACME CA: Debian's `pebble` (Let's Encrypt's RFC 8555 test server) on the bridge.

Caddy on a droplet asks it for the forge's certificate exactly as it would ask Let's Encrypt:
Pebble resolves the name through the lab's DNS server and validates over http-01 / tls-alpn-01
on the droplet's ports 80 and 443 (`PEBBLE_VA_ALWAYS_VALID` is never set: validation is real).

Debian's pebble ships no test certificates, so its own HTTPS listener gets one made here with
openssl, valid for the bridge address and signed by a lab CA (the droplets' `acme_ca_root`).
Pebble makes a new root for the certificates it issues at every start: `fetch_root` saves the
current one (`/roots/0` of its management listener), which the operator's checks then trust,
and nothing else.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.request
from pathlib import Path

from phoenix.errors import PhoenixError
from phoenix.lab import aptproxy, procs
from phoenix.lab.config import LabConfig, child_environment
from phoenix.lab.objects import Ledger
from phoenix.lab.sh import run
from phoenix.poll import poll

NAME = "pebble"
ACME_PORT = 14000  # the directory: https://BRIDGE:14000/dir
MANAGEMENT_PORT = 15000  # https://BRIDGE:15000/roots/0


def folder(config: LabConfig) -> Path:
    return config.state_dir / "pebble"


def directory_url(config: LabConfig) -> str:
    return f"https://{config.bridge_ip}:{ACME_PORT}/dir"


def listener_ca(config: LabConfig) -> Path:
    """The CA of Pebble's own HTTPS listener: what an ACME client trusts to talk to Pebble."""
    return folder(config) / "listener-ca.pem"


def issued_root(config: LabConfig) -> Path:
    """Pebble's current root for the certificates it issues (refreshed by `fetch_root`)."""
    return folder(config) / "root.pem"


def _valid_for_bridge(config: LabConfig, cert: Path) -> bool:
    """The listener certificate is from the lab CA and for this lab's bridge address (a lab
    whose subnet changed keeps its state folder, and Pebble would answer with the old one)."""
    proc = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(listener_ca(config)),
            "-verify_ip",
            config.bridge_ip,
            str(cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0


def ensure_listener_cert(config: LabConfig) -> None:
    """A lab CA (made once) and a listener certificate for the bridge address, with openssl;
    made again when the bridge address is not the one it was made for."""
    base = folder(config)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert, key = base / "listener.pem", base / "listener.key"
    ca_key, ca = base / "listener-ca.key", listener_ca(config)
    if cert.exists() and key.exists() and ca.exists() and _valid_for_bridge(config, cert):
        return
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    if not (ca.exists() and ca_key.exists()):
        run(
            [
                "openssl",
                "req",
                "-x509",
                *ec,
                "-keyout",
                str(ca_key),
                "-out",
                str(ca),
                "-days",
                "3650",
                "-subj",
                f"/CN=Phoenix lab {config.tag} Pebble listener CA",
            ]
        )
    ext = base / "listener.ext"
    ext.write_text(
        f"subjectAltName=IP:{config.bridge_ip}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    csr = base / "listener.csr"
    run(
        [
            "openssl",
            "req",
            *ec,
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            f"/CN={config.bridge_ip}",
        ]
    )
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            str(ext),
            "-out",
            str(cert),
        ]
    )
    for path in (ca_key, key):
        os.chmod(path, 0o600)
    csr.unlink()


def start(config: LabConfig, ledger: Ledger) -> None:
    """Pebble, detached and in the ledger (`lab down` stops it); its root saved once it runs."""
    record = ledger.read()["processes"].get(NAME)
    if record and procs.alive(record) and issued_root(config).exists():
        return
    if record and procs.alive(record):
        fetch_root(config)
        return
    ensure_listener_cert(config)
    for port in (ACME_PORT, MANAGEMENT_PORT):
        aptproxy.ensure_port_free(config.bridge_ip, port, "Pebble (the lab's ACME CA)")
    base = folder(config)
    settings = base / "pebble-config.json"
    settings.write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"{config.bridge_ip}:{ACME_PORT}",
                    "managementListenAddress": f"{config.bridge_ip}:{MANAGEMENT_PORT}",
                    "certificate": str(base / "listener.pem"),
                    "privateKey": str(base / "listener.key"),
                    "httpPort": 80,
                    "tlsPort": 443,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            },
            indent=1,
        )
    )
    # its random wait before validating: at most 1 s here
    env = child_environment({"PEBBLE_VA_SLEEPTIME": "1"}, drop_prefix="PEBBLE_")
    log = config.state_dir / "logs" / "pebble.log"
    issued_root(config).unlink(missing_ok=True)  # the old root is worthless from now on
    procs.spawn(
        ledger,
        NAME,
        ["pebble", "-config", str(settings), "-dnsserver", f"{config.bridge_ip}:{config.dns_port}"],
        log=log,
        env=env,
    )
    for port in (ACME_PORT, MANAGEMENT_PORT):
        aptproxy.wait_port(config.bridge_ip, port, what="Pebble (the lab's ACME CA)", log=log)
    fetch_root(config)


def fetch_root(config: LabConfig, *, timeout: float = 10) -> Path:
    """Save Pebble's current root (`/roots/0`), read over TLS checked against the listener CA."""
    context = ssl.create_default_context(cafile=str(listener_ca(config)))
    url = f"https://{config.bridge_ip}:{MANAGEMENT_PORT}/roots/0"
    last: list[OSError] = []

    def read() -> str | None:
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as response:
                return str(response.read().decode())
        except OSError as exc:
            last[:] = [exc]
            return None

    pem = poll(
        read,
        timeout=timeout,
        what="Pebble's root",
        interval=0.2,
        error=lambda: f"Pebble's root is not readable at {url}: {last[0]}",
    )
    if "BEGIN CERTIFICATE" not in pem:
        raise PhoenixError(f"{url} did not answer a PEM certificate")
    path = issued_root(config)
    path.write_text(pem)
    return path
