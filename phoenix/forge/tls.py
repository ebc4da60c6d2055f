"""HTTPS to the forge by its name, wherever it is: before the DNS cutover the new host is
reached by address while TLS (SNI, the certificate's name) and the Host header speak for the
forge's name, what `curl --resolve NAME:443:ADDRESS` does, so the certificate checked is the
one users will see. Used by phoenix/forge/api.py, validation and the drill.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from phoenix.errors import PhoenixError


class _AsName(HTTPAdapter):
    """TLS for `name` (SNI and the certificate's name) on a connection to an address."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(server_hostname=self.name, assert_hostname=self.name)
        super().init_poolmanager(*args, **kwargs)


class _Trusting(requests.Session):
    """A session whose CA file wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, which requests
    otherwise prefers to a session's own `verify`."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str) and verify in (None, True):
            settings["verify"] = self.verify
        return settings


def https_session(
    name: str, *, address: str | None = None, trust: str | None = None
) -> tuple[requests.Session, str]:
    """A session for https://`name`, reaching `address` if given (else DNS), trusting only
    the CA file `trust` (None: the system's store); returns it with the base URL to use."""
    session = _Trusting()
    session.verify = trust or True
    if not address or address == name:
        return session, f"https://{name}"
    base = f"https://{address}"
    session.mount(base + "/", _AsName(name))
    session.headers["Host"] = name
    return session, base


def served_certificate(address: str, name: str, *, port: int = 443, timeout: float = 10) -> str:
    """The sha256 of the certificate `address` serves for SNI `name`, trusted or not: tells
    a restored certificate from a new one (the drill, the backup tests)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise PhoenixError(
            f"no TLS answer for {name} at {address}:{port} ({type(exc).__name__}: {exc})"
        ) from None
    if not der:
        raise PhoenixError(f"{address}:{port} sent no certificate for {name}")
    return hashlib.sha256(der).hexdigest()
