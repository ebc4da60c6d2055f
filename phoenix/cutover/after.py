"""After the cutover: the runbook's step 9.1, literally. The forge's name, resolved through
DNS (dns_resolvers, else the system's resolver), is the new host and answers `HTTP/2 200` on
/api/v1/version over TLS for that name; `phoenix recover` ends with it.
"""

from __future__ import annotations

import socket
import subprocess

from phoenix.cutover.dnswire import resolvers
from phoenix.poll import poll


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


def _step_9_1_once(
    name: str, ip: str, trust: str | None, servers: list[tuple[str, int]], port: int
) -> str | None:
    """None when every resolver says `ip` and curl gets HTTP/2 200 there; else why not."""
    from phoenix.cutover.dnswire import DNSQueryError

    for server, dns_port in servers:
        where = f"{server}:{dns_port}" if server else "the system resolver"
        try:
            ips = _resolve(name, server, dns_port)
        except (DNSQueryError, OSError) as exc:
            return f"{name} does not resolve at {where}: {exc}"
        if ips != [ip]:
            return f"{name} resolves to {', '.join(ips) or 'nothing'} at {where}, not {ip}"
    proc = subprocess.run(
        step_9_1_command(name, ip, trust, port),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        return f"curl https://{name}/api/v1/version failed: {proc.stderr.strip()[-200:]}"
    status = (proc.stdout.splitlines() or [""])[0].strip()
    if status != "HTTP/2 200":
        return f"https://{name}/api/v1/version answered {status!r}, not 'HTTP/2 200'"
    return None


def check_after_cutover(
    settings: dict, expected_ip: str, *, timeout: float | None = None, say=print, port: int = 443
) -> str:
    """Runbook step 9.1: the forge's name, resolved through DNS (dns_resolvers, else the
    system's resolver), is this host and answers `HTTP/2 200` on /api/v1/version with a
    certificate valid for the name (from the CA of https_trust_bundle, else the system's
    trust store). Retried until https_ready_timeout."""
    name = settings["gitea_domain"]
    trust = settings.get("https_trust_bundle")
    servers = resolvers(settings) or [("", 0)]
    limit = settings.get("https_ready_timeout", 60) if timeout is None else timeout
    why = ""

    def answered() -> str | None:
        nonlocal why
        why = _step_9_1_once(name, expected_ip, trust, servers, port) or ""
        if not why:
            via = ", ".join(f"{s}:{p}" for s, p in servers if s) or "the system resolver"
            return f"https://{name}/api/v1/version: HTTP/2 200 from {expected_ip} (DNS via {via})"
        return None

    return poll(
        answered,
        timeout=limit,
        what="runbook step 9.1",
        interval=2,
        progress=lambda _: say(f"step 9.1 not yet: {why}"),
        error=lambda: f"runbook step 9.1 failed after the cutover: {why}",
    )
