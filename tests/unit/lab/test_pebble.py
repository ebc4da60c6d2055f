"""The lab's Pebble listener certificate: valid for the bridge address, from the lab's CA
(what a droplet's Caddy trusts as acme_ca_root), kept while the bridge address stays."""

from __future__ import annotations

import subprocess

from phoenix.lab import config as labconfig
from phoenix.lab import pebble


def test_listener_certificate_is_for_the_bridge_and_signed_by_the_lab_ca(tmp_path):
    config = labconfig.load({"PHOENIX_LAB_DIR": str(tmp_path), "PHOENIX_LAB_TAG": "t1",
                             "PHOENIX_LAB_SUBNET": "10.213.250.0/24"})
    pebble.ensure_listener_cert(config)
    cert = pebble.folder(config) / "listener.pem"
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(pebble.listener_ca(config)),
                               "-verify_ip", config.bridge_ip, str(cert)],
                              capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    wrong_ip = subprocess.run(["openssl", "verify", "-CAfile", str(pebble.listener_ca(config)),
                               "-verify_ip", "10.213.250.2", str(cert)],
                              capture_output=True, text=True, check=False)
    assert wrong_ip.returncode != 0
    assert (pebble.folder(config) / "listener.key").stat().st_mode & 0o077 == 0

    before = cert.read_bytes()
    pebble.ensure_listener_cert(config)  # a second lab up keeps what droplets already trust
    assert cert.read_bytes() == before
    assert pebble.directory_url(config) == "https://10.213.250.1:14000/dir"

    # The same state folder under another subnet: a new listener certificate for the new
    # bridge, from the same lab CA (droplets already trust it)
    moved = labconfig.load({"PHOENIX_LAB_DIR": str(tmp_path), "PHOENIX_LAB_TAG": "t1",
                            "PHOENIX_LAB_SUBNET": "10.213.251.0/24"})
    assert pebble.folder(moved) == pebble.folder(config)
    ca_before = pebble.listener_ca(config).read_bytes()
    pebble.ensure_listener_cert(moved)
    assert pebble.listener_ca(moved).read_bytes() == ca_before
    again = subprocess.run(["openssl", "verify", "-CAfile", str(pebble.listener_ca(moved)),
                            "-verify_ip", "10.213.251.1", str(cert)],
                           capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
