"""The forge's certificate over ACME DNS-01, from the operator's machine.

HTTP-01 and TLS-ALPN-01 validate at the address DNS gives, which is the dead forge's until the
cutover; DNS-01 validates a TXT record instead, so the new droplet gets its certificate before
DNS moves. The operator's machine holds the Cloudflare token and does it all: the forge never
holds a token that can edit DNS. The ACME client is certbot's `acme` library; the TXT record
goes through the Cloudflare SDK (phoenix/cutover/dns.py) and is removed again, also when the
issuance fails. A refusal is one line (PhoenixError) and leaves no record behind.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudflare
import josepy as jose
import requests
from acme import challenges, client, crypto_util, messages
from acme import errors as acme_errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from phoenix.cutover import dns
from phoenix.cutover.dnswire import DNSQueryError, address_text, query, resolve_a
from phoenix.errors import PhoenixError
from phoenix.poll import poll

Say = Callable[[str], None]
# What ACME clients give the CA's directory when none is set: Let's Encrypt's (Caddy's too).
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


@dataclass
class Issued:
    """A certificate and what Caddy needs to keep renewing it (phoenix/forge/caddystore.py)."""

    name: str
    directory: str  # the CA's directory URL: Caddy files it under this issuer
    fullchain_pem: str
    key_pem: str  # the certificate's key, EC P-256 as Caddy makes its own
    account_key_pem: str
    account: dict  # the ACME account as Caddy stores it (status, contact, location…)
    email: str | None
    url: str  # the certificate's URL at the CA
    seconds: float


class _Network(client.ClientNetwork):
    """A badNonce answer carries a fresh nonce and asks for the request again (RFC 8555
    6.5); acme retries once, and a CA may refuse a few nonces in a row (Pebble refuses 5% of
    them on purpose), so a few more tries before it counts as a refusal."""

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        for _ in range(3):
            try:
                return super().post(*args, **kwargs)
            except messages.Error as exc:
                if exc.code != "badNonce":
                    raise
        return super().post(*args, **kwargs)


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    """SEC 1 / PKCS #1 PEM ("EC PRIVATE KEY", "RSA PRIVATE KEY"): what Caddy writes itself."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def authoritative_servers(
    zone: Any, *, given: list[tuple[str, int]] | None, resolvers: list[tuple[str, int]]
) -> list[tuple[str, int]]:
    """The zone's name servers as addresses: `given` (dns_authoritative), else the names
    Cloudflare lists for the zone, looked up through the resolvers."""
    if given:
        return given
    found: list[tuple[str, int]] = []
    for ns in getattr(zone, "name_servers", None) or []:
        for server, port in resolvers:
            try:
                found += [(address, 53) for address in resolve_a(ns, server, port)]
                break
            except DNSQueryError:
                continue
    if not found:
        raise PhoenixError(
            f"the name servers of the zone {zone.name} ({', '.join(zone.name_servers or [])}) "
            "have no address through dns_resolvers: set dns_authoritative"
        )
    return list(dict.fromkeys(found))


def wait_visible(
    name: str,
    value: str,
    servers: list[tuple[str, int]],
    *,
    timeout: float,
    say: Say,
) -> None:
    """Until every server answers `value` among the TXT records of `name`: the CA asks one
    of them, and a challenge answered before that is one it may fail."""
    pending = {address_text(*s): "has not been asked" for s in servers}

    def visible() -> bool | None:
        for server, port in servers:
            where = address_text(server, port)
            if where not in pending:
                continue
            try:
                answer = query(name, server, port, rdtype="TXT")
            except DNSQueryError as exc:
                pending[where] = f"fails ({exc})"
                continue
            if value in [text for text, _ in answer.records]:
                del pending[where]
            else:
                pending[where] = f"answers {answer.status} without it"
        return True if not pending else None

    poll(
        visible,
        timeout=timeout,
        interval=1,
        what=f"the TXT record {name} at the zone's name servers",
        error=lambda: (
            f"the TXT record {name} is not visible after {timeout:g} s: "
            + "; ".join(f"{k} {v}" for k, v in pending.items())
        ),
    )
    say(f"   TXT {name} visible at {', '.join(address_text(*s) for s in servers)}")


def _refusal(exc: Exception, *, name: str, directory: str, timeout: float) -> str:
    """One line for what went wrong with the CA."""
    if isinstance(exc, acme_errors.ValidationError):
        reasons = [
            f"{c.error.typ.rsplit(':', 1)[-1]}: {c.error.detail}"
            for authzr in exc.failed_authzrs
            for c in authzr.body.challenges
            if c.error is not None
        ]
        return f"the ACME CA refused the DNS-01 challenge for {name}: " + (
            "; ".join(reasons) or "no reason given"
        )
    if isinstance(exc, acme_errors.TimeoutError):
        return f"the ACME CA at {directory} issued nothing for {name} within {timeout:g} s"
    if isinstance(exc, messages.Error):
        return f"the ACME CA at {directory} refused: {exc.code or exc.typ}: {exc.detail}"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"the ACME CA at {directory} did not answer in time ({type(exc).__name__})"
    if isinstance(exc, requests.exceptions.RequestException):
        return f"the ACME CA at {directory} is unreachable ({type(exc).__name__})"
    return f"the ACME CA at {directory}: {type(exc).__name__}: {exc}".splitlines()[0]


def issue(
    *,
    name: str,
    cf: cloudflare.Cloudflare,
    directory: str | None = None,
    email: str | None = None,
    ca_bundle: str | None = None,
    authoritative: list[tuple[str, int]] | None = None,
    resolvers: list[tuple[str, int]],
    timeout: float = 300,
    say: Say = print,
) -> Issued:
    """A certificate for `name` from the CA at `directory` over DNS-01: the TXT record set
    through Cloudflare, visible at the zone's name servers before the challenge is answered,
    and removed after whatever happened. `ca_bundle` is what the CA's own HTTPS is checked
    against (None: the system's store)."""
    started = time.monotonic()
    directory = directory or LETS_ENCRYPT
    zone = dns.zone_of(cf, name)  # a zone not found stops here, before the CA is asked
    servers = authoritative_servers(zone, given=authoritative, resolvers=resolvers)
    account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jose.JWKRSA(key=account_key)
    cert_key = ec.generate_private_key(ec.SECP256R1())
    made: list[str] = []  # TXT record ids to remove
    try:
        # verify_ssl goes to requests' `verify` as it is (acme/client.py _send_request), which
        # takes a CA file too; the annotation says bool only
        net = _Network(
            jwk,
            verify_ssl=ca_bundle or True,  # type: ignore[arg-type]
            user_agent="phoenix",
            timeout=int(min(30, max(1, timeout))),  # one request's; `timeout` the whole
        )
        acme = client.ClientV2(client.ClientV2.get_directory(directory, net), net=net)
        regr = acme.new_account(
            messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
        )
        csr = crypto_util.make_csr(_pem(cert_key).encode(), [name])
        order = acme.new_order(csr)
        answers = []
        for authz in order.authorizations:
            challenge = next(
                (c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01)), None
            )
            if challenge is None:
                raise PhoenixError(f"the ACME CA at {directory} offers no DNS-01 for {name}")
            record = challenge.chall.validation_domain_name(authz.body.identifier.value)
            value = challenge.chall.validation(jwk)
            made.append(dns.add_txt(cf, zone=zone, name=record, content=value))
            wait_visible(record, value, servers, timeout=timeout, say=say)
            answers.append(challenge)
        for challenge in answers:
            acme.answer_challenge(challenge, challenge.chall.response(jwk))
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
        order = acme.poll_and_finalize(order, deadline=deadline)
    except (acme_errors.Error, requests.exceptions.RequestException) as exc:
        line = _refusal(exc, name=name, directory=directory, timeout=timeout)
        raise PhoenixError(line + _cleanup(cf, zone, made, failed=True)) from None
    except PhoenixError as exc:  # Cloudflare's refusal, a TXT record that never showed
        raise PhoenixError(str(exc) + _cleanup(cf, zone, made, failed=True)) from None
    except BaseException:
        _cleanup(cf, zone, made, failed=True)
        raise
    _cleanup(cf, zone, made, failed=False)
    account = {
        "status": str(regr.body.status or "valid"),
        "contact": list(regr.body.contact),
        "termsOfServiceAgreed": True,
        "orders": "",
        "location": regr.uri,
    }
    return Issued(
        name=name,
        directory=directory,
        fullchain_pem=order.fullchain_pem,
        key_pem=_pem(cert_key),
        account_key_pem=_pem(account_key),
        account=account,
        email=email,
        url=str(order.body.certificate or ""),
        seconds=time.monotonic() - started,
    )


def _cleanup(cf: cloudflare.Cloudflare, zone: Any, made: list[str], *, failed: bool) -> str:
    """Remove the TXT records; after a failure, say so in the error's words rather than
    hide it, and when a removal fails, say which record is left."""
    left = []
    for record_id in made:
        try:
            dns.remove_record(cf, zone_id=zone.id, record_id=record_id)
        except PhoenixError:
            left.append(record_id)
    if left and not failed:
        raise PhoenixError(
            f"the certificate was issued but the TXT record(s) {', '.join(left)} in the "
            f"zone {zone.name} could not be removed: remove them in Cloudflare"
        )
    if left:
        return f"; TXT record(s) {', '.join(left)} left in {zone.name}: remove them in Cloudflare"
    return "; no TXT record left" if made else ""
