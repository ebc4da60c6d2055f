"""The forge's certificate in Caddy's storage: kept when the backup brought a good one back,
else issued over DNS-01 from the operator's machine (phoenix/forge/dns01.py) and written where
Caddy looks, so it serves it at once and renews it itself once DNS points at the droplet.

The layout is Debian 12's Caddy 2.6.2, built with certmagic 0.17.2 (its Built-Using), in Caddy's
data folder $HOME/.local/share/caddy (caddy's AppDataDir; Debian's caddy user has its HOME at
https_state_dir, /var/lib/caddy). From certmagic v0.17.2:
- storage.go KeyBuilder.SiteCert/SitePrivateKey/SiteMeta:
  certificates/<Safe(issuer key)>/<Safe(name)>/<name>.crt, .key, .json (crypto.go
  saveCertResource: the .json is the CertificateResource, {"sans", "issuer_data"}; Caddy
  loads nothing without it);
- acmeissuer.go issuerKey: the CA URL's host, plus its path with "/" turned into "-"
  (https://acme-v02.api.letsencrypt.org/directory -> acme-v02.api.letsencrypt.org-directory);
- account.go storageKeyUserReg/storageKeyUserPrivateKey: acme/<Safe(issuer key)>/users/
  <Safe(email or "default")>/<Safe(the email's user part or "default")>.json and .key, the .json
  acmez's acme.Account (status, contact, termsOfServiceAgreed, orders, location); a stored
  account with a status is used as it is, never registered again (acmeclient.go);
- filestorage.go: folders 0700, files 0600.
Caddy reads its storage when it starts, not while it runs: it is restarted after the write.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import re
import shlex
import tarfile
from typing import Any

from cryptography import x509

from phoenix.errors import PhoenixError
from phoenix.forge.dns01 import LETS_ENCRYPT, Issued, Say
from phoenix.sshconf import Target, remote
from phoenix.sshconf import run as ssh_run

DATA = ".local/share/caddy"  # below Caddy's HOME
_UNSAFE = re.compile(r"[^\w@.-]")


def safe(text: str) -> str:
    """certmagic's KeyBuilder.Safe: one storage key component."""
    text = text.lower().strip()
    for old, new in ((" ", "_"), ("+", "_plus_"), ("*", "wildcard_"), (":", "-"), ("..", "")):
        text = text.replace(old, new)
    return _UNSAFE.sub("", text)


def issuer_key(directory: str) -> str:
    """certmagic's ACMEIssuer.issuerKey for the CA's directory URL."""
    from urllib.parse import urlsplit

    url = urlsplit(directory)
    key = url.netloc
    path = url.path.replace("/", "-").replace("\\", "-").strip("-")
    return f"{key}-{path}" if path else key


def storage_files(issued: Issued) -> dict[str, bytes]:
    """{path below Caddy's data folder: content} for the certificate and its ACME account."""
    issuer, name = safe(issuer_key(issued.directory)), safe(issued.name)
    site = f"certificates/{issuer}/{name}/{name}"
    email = (issued.email or "").lower()
    user = email[: email.index("@")] if "@" in email[1:] else email.lstrip("@")
    users = f"acme/{issuer}/users/{safe(email or 'default')}/{safe(user or 'default')}"
    meta = {"sans": [issued.name], "issuer_data": {"url": issued.url, "ca": issued.directory}}
    return {
        f"{site}.crt": issued.fullchain_pem.encode(),
        f"{site}.key": issued.key_pem.encode(),
        f"{site}.json": json.dumps(meta, indent="\t").encode(),
        f"{users}.json": json.dumps(issued.account, indent="\t").encode(),
        f"{users}.key": issued.account_key_pem.encode(),
    }


def _tar(files: dict[str, bytes]) -> bytes:
    """The files as a tar stream, 0600 in 0700 folders, as certmagic's FileStorage makes them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folders = sorted(
            {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        )
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(info)
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), 0o600
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def install(target: Target, issued: Issued, *, home: str) -> None:
    """Write the certificate and account into Caddy's storage on `target` (the keys go over
    SSH's stdin, never a command line) and restart Caddy if it runs, so it reads them."""
    data = f"{home.rstrip('/')}/{DATA}"
    q = shlex.quote
    command = (
        f"set -e; umask 077; install -d -m 0700 {q(data)}; "
        f"tar -x --no-same-owner -C {q(data)}; "
        f"chown -R caddy:caddy {q(home.rstrip('/') + '/.local')}; "
        "systemctl try-restart caddy.service"
    )
    payload = base64.b64encode(_tar(storage_files(issued))).decode()
    proc = ssh_run(
        target,
        f"base64 -d | sh -c {q(command)}",
        timeout=120,
        late=f"writing the certificate into Caddy's storage on {target.host}",
        input=payload,
    )
    if proc.returncode != 0:
        raise PhoenixError(
            f"on {target.host}: writing the certificate into {data} failed: "
            f"{proc.stderr.strip()[-300:] or f'exit {proc.returncode}'}"
        )


_NEXT = "--phoenix-next-file--"


def stored_chains(target: Target, name: str, *, home: str) -> list[list[x509.Certificate]]:
    """Each certificate file for `name` in Caddy's storage on `target` (whatever its issuer),
    as its chain: the certificate for the name first, then its intermediates."""
    pattern = f"{home.rstrip('/')}/{DATA}/certificates/*/{safe(name)}/{safe(name)}.crt"
    out = remote(
        target, f'for f in {pattern}; do [ -f "$f" ] && cat "$f" && echo {_NEXT}; done; true'
    )
    chains = [_certificates(part) for part in out.split(_NEXT)]
    return [chain for chain in chains if chain and name in _names(chain[0])]


def untrusted(chain: list[x509.Certificate], name: str, bundle: str | None) -> str | None:
    """Why the operator's checks would refuse `chain` for `name` (validation trusts the CA
    file `bundle` only, else the system's store, as requests does); None when they accept it.
    A certificate restored from a backup may come from a CA no longer trusted."""
    import certifi
    from cryptography.x509 import DNSName
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    path = bundle or certifi.where()
    try:
        with open(path, "rb") as fh:
            roots = x509.load_pem_x509_certificates(fh.read())
    except (OSError, ValueError) as exc:
        return f"the trust bundle {path} cannot be read ({exc})"
    verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(DNSName(name))
    try:
        verifier.verify(chain[0], chain[1:])
    except VerificationError as exc:
        return f"not trusted by {'https_trust_bundle' if bundle else 'the system store'} ({exc})"
    return None


def days_left(chain: list[x509.Certificate]) -> float:
    return (
        chain[0].not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    ).total_seconds() / 86400


def _certificates(pem: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem.encode()) if "BEGIN CERTIFICATE" in pem else []
    except ValueError:
        return []


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(n).lower() for n in san.value.get_values_for_type(x509.DNSName)]


def ensure(
    settings: dict[str, Any],
    target: Target,
    *,
    cf: Any = None,
    say: Say = print,
) -> str:
    """The forge's certificate in place before validation: the backup's when it is valid for
    more than https_min_days and trusted as validation trusts (no ACME call), else a new one
    over DNS-01. Says which."""
    from phoenix.cutover import dns
    from phoenix.cutover.dnswire import parse_server, resolvers
    from phoenix.forge import dns01

    home, name = settings.get("https_state_dir"), settings["gitea_domain"]
    if not home:
        return "none: https_state_dir is None, this host serves no HTTPS"
    bundle = settings.get("https_trust_bundle")
    chains = stored_chains(target, name, home=home)
    trusted = [chain for chain in chains if untrusted(chain, name, bundle) is None]
    left = max((days_left(chain) for chain in trusted), default=None)
    if left is not None and left > settings["https_min_days"]:
        return f"kept: Caddy's storage (the backup's) holds one valid {left:.0f} more days"
    if left is not None:
        found = f"the backup's ends in {left:.1f} days"
    elif chains:
        found = f"the backup's is {untrusted(chains[0], name, bundle)}"
    else:
        found = "no certificate in the backup"
    say(f"   {found}: a new one for {name} over DNS-01")
    given = settings.get("dns_authoritative")
    issued = dns01.issue(
        name=name,
        cf=cf or dns.client(),
        directory=settings.get("https_acme_ca") or LETS_ENCRYPT,
        email=settings.get("https_acme_email"),
        ca_bundle=settings.get("https_acme_ca_root"),
        authoritative=[parse_server(s) for s in given] if given else None,
        resolvers=resolvers(settings),
        timeout=settings["https_acme_timeout"],
        say=say,
    )
    install(target, issued, home=home)
    return f"issued by DNS-01 in {issued.seconds:.0f} s"
