"""After the cutover: the runbook's step 9.1, literally. The forge's name, resolved through
DNS (dns_resolvers, else the system's resolver), is the new host and answers `HTTP/2 200` on
/api/v1/version over TLS for that name; `phoenix recover` ends with it.

A name whose Cloudflare record is proxied resolves to Cloudflare's edge, never to the host:
for it the proof is the cutover's own, the record read back through the API holds the host's
address (still proxied), and the host answers the same request for the name.
"""

from __future__ import annotations

import socket
import subprocess
from typing import TYPE_CHECKING

from phoenix.cutover import dns
from phoenix.cutover.dnswire import resolvers
from phoenix.errors import PhoenixError
from phoenix.poll import poll

if TYPE_CHECKING:
    import cloudflare


def step_9_1_command(name: str, ip: str, trust: str | None, port: int = 443) -> list[str]:
    """The runbook's `curl -I https://NAME/api/v1/version`, connecting where DNS said NAME is
    (curl cannot ask a given resolver), trusting only `trust` when given. A GET whose status
    line is read, not -I's HEAD: Gitea 1.22's API answers HEAD with 405 (go-gitea/gitea#18543;
    HEAD came to the API with go-gitea/gitea#38245, long after 1.22)."""
    url = f"https://{name}{'' if port == 443 else f':{port}'}/api/v1/version"
    cmd = [
        "curl",
        "-sS",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "--http2",
        "--max-time",
        "10",
        "--resolve",
        f"{name}:{port}:{ip}",
    ]
    if trust:
        cmd += ["--cacert", trust]
    return [*cmd, url]


def _resolve(name: str, server: str, port: int) -> list[str]:
    from phoenix.cutover.dnswire import query_a

    if not server:
        return sorted({str(a[4][0]) for a in socket.getaddrinfo(name, 443, socket.AF_INET)})
    return query_a(name, server, port, timeout=3).addresses


def _resolves_once(name: str, ip: str, servers: list[tuple[str, int]]) -> str | None:
    """None when every resolver says `ip` for `name`; else why not."""
    from phoenix.cutover.dnswire import DNSQueryError

    for server, dns_port in servers:
        where = f"{server}:{dns_port}" if server else "the system resolver"
        try:
            ips = _resolve(name, server, dns_port)
        except (DNSQueryError, OSError) as exc:
            return f"{name} does not resolve at {where}: {exc}"
        if ips != [ip]:
            return f"{name} resolves to {', '.join(ips) or 'nothing'} at {where}, not {ip}"
    return None


def _answers_once(name: str, ip: str, trust: str | None, port: int, at: str = "") -> str | None:
    """None when curl gets HTTP/2 200 for `name` at `ip`; else why not, in one line."""
    proc = subprocess.run(
        step_9_1_command(name, ip, trust, port),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        # curl's own line ("curl: (60) SSL certificate problem: …"); advice lines follow it
        said = (proc.stderr.strip().splitlines() or ["no message"])[0][:200]
        return f"curl https://{name}/api/v1/version{at} failed: {said}"
    status = (proc.stdout.splitlines() or [""])[0].strip()
    if status != "HTTP/2 200":
        return f"https://{name}/api/v1/version{at} answered {status!r}, not 'HTTP/2 200'"
    return None


def check_after_cutover(
    settings: dict,
    expected_ip: str,
    *,
    saved: dict | None = None,
    client: cloudflare.Cloudflare | None = None,
    timeout: float | None = None,
    say=print,
    port: int = 443,
) -> str:
    """Runbook step 9.1: the forge's name, resolved through DNS (dns_resolvers, else the
    system's resolver), is this host and answers `HTTP/2 200` on /api/v1/version with a
    certificate valid for the name (from the CA of https_trust_bundle, else the system's
    trust store). Retried until https_ready_timeout.

    `saved`: the values the DNS cutover saved (the state's dns_saved). When they say the
    name's record is proxied, Cloudflare's record read back (through `client`, else the
    operator's) must hold this host's address, still proxied, and the host itself must
    answer for the name; a record no longer proxied is checked through DNS again."""
    name = settings["gitea_domain"]
    trust = settings.get("https_trust_bundle")
    servers = resolvers(settings) or [("", 0)]
    limit = settings.get("https_ready_timeout", 60) if timeout is None else timeout
    fqdn, saved = dns.full_name(name), saved or {}
    proxied = fqdn in dns.proxied_names(saved)
    if proxied and client is None:
        client = dns.client()
    why = how = ""

    def once() -> str | None:
        """None when step 9.1 holds (`how` says by which proof); else why not."""
        nonlocal how
        if proxied:
            try:
                held = dns.read_back(client=client, saved=saved, name=fqdn)
            except PhoenixError as exc:
                return str(exc)
            if held["content"] != expected_ip:
                return (
                    f"Cloudflare holds {held['content']} for {name}, not {expected_ip}: "
                    "run the cutover again"
                )
            if held["proxied"]:
                how = "proxied: Cloudflare's record holds it, public DNS answers Cloudflare's edge"
                at = f" at the origin {expected_ip} ({name} is proxied)"
                return _answers_once(name, expected_ip, trust, port, at)
        how = "DNS via " + (", ".join(f"{s}:{p}" for s, p in servers if s) or "the system resolver")
        return _resolves_once(name, expected_ip, servers) or _answers_once(
            name, expected_ip, trust, port
        )

    def answered() -> str | None:
        nonlocal why
        why = once() or ""
        if not why:
            return f"https://{name}/api/v1/version: HTTP/2 200 from {expected_ip} ({how})"
        return None

    return poll(
        answered,
        timeout=limit,
        what="runbook step 9.1",
        interval=2,
        progress=lambda _: say(f"step 9.1 not yet: {why}"),
        error=lambda: f"runbook step 9.1 failed after the cutover: {why}",
    )
