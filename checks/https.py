"""Runbook step 4, served (tasks/https.py): Gitea answers the operator over HTTPS through
Caddy, with the forge's own certificate, and plain HTTP is redirected."""

from __future__ import annotations

import shlex

import pytest
import requests


def test_step4_gitea_api_version_200_from_operator(forge_https, settings):
    session, base = forge_https
    url = f"{base}/api/v1/version"
    name = settings["gitea_domain"]
    try:
        response = session.get(url, timeout=10)
    except requests.exceptions.SSLError as exc:
        pytest.fail(
            f"https://{name} at {base[8:]}: no valid certificate for {name} from the "
            f"trusted CA ({type(exc).__name__}); is Caddy's storage restored "
            "(journalctl -u caddy)?"
        )
    except requests.RequestException as exc:
        pytest.fail(
            f"Gitea does not answer from here: GET https://{name}/api/v1/version at "
            f"{base[8:]} failed ({type(exc).__name__}); check caddy, gitea, firewall"
        )
    assert response.status_code not in (502, 503, 504), (
        f"Gitea does not answer behind Caddy: https://{name}/api/v1/version answered "
        f"{response.status_code} (systemctl status gitea)"
    )
    assert response.status_code == 200, f"GET {url} answered {response.status_code}, expected 200"
    version = response.json().get("version")
    assert version == settings["gitea_version"], (
        f"Gitea answers version {version}, expected {settings['gitea_version']}"
    )


def test_step4_http_redirects_to_https(address, settings):
    name = settings["gitea_domain"]
    try:
        response = requests.get(
            f"http://{address}/api/v1/version",
            headers={"Host": name},
            timeout=10,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        pytest.fail(
            f"nothing answers http:// on {address} port 80 ({type(exc).__name__}): "
            "Caddy redirects it to https (systemctl status caddy)"
        )
    location = response.headers.get("Location", "")
    assert response.status_code in (301, 308) and location.startswith(f"https://{name}/"), (
        f"http://{name}/ answered {response.status_code} to {location or 'nowhere'}, "
        "expected a permanent redirect to https"
    )


def test_step4_caddy_holds_the_forges_certificate(host, settings):
    """Caddy's home came back with the backup (tasks/backups.saved_paths), or `phoenix
    recover` wrote one it got over DNS-01 (phoenix/forge/caddycert.py): a recovered host
    serves the forge's certificate before the DNS cutover, when HTTP-01 and TLS-ALPN-01 could
    not validate a new one. Told apart here from a Caddy that holds it but does not serve it."""
    home, name = settings.get("https_state_dir"), settings["gitea_domain"]
    if not home:
        pytest.skip("https_state_dir is None in group_data: this host serves no HTTPS")
    q = shlex.quote
    found = host.run(
        f"ls -d {q(home)}/.local/share/caddy/certificates/*/{q(name)}/{q(name)}.crt 2>/dev/null"
    ).stdout.split()
    assert found, (
        f"Caddy's storage ({home}/.local/share/caddy/certificates) holds no "
        f"certificate for {name}: it was not restored from the backup (is "
        f"{home} in the snapshot?), nor written by phoenix recover's certificate step"
    )
    owner = host.file(found[0])
    assert owner.user == "caddy", (
        f"{found[0]} belongs to {owner.user}, not caddy: Caddy "
        "cannot read its certificate (systemctl restart caddy)"
    )
