"""Runbook step 8: the forge's names resolve to this host through the configured resolvers.

Validation comes before the cutover (the cutover waits for it), so a name that still points
at another host is a skip that says so; `--require-dns` (after the cutover) makes it a failure.
"""

from __future__ import annotations

import pytest

from phoenix.cutover.dnswire import DNSQueryError, query_a, resolvers


def pytest_generate_tests(metafunc):
    if "record" in metafunc.fixturenames:
        from phoenix.settings import load

        records = load()["dns_records"] or []
        metafunc.parametrize("record", records or [None], ids=records or ["none"])


def test_step8_dns_record_resolves_to_this_host(record, settings, address_ip, request):
    if record is None or not settings["dns_resolvers"]:
        pytest.skip("no dns_records or dns_resolvers configured: DNS is not Phoenix's job here")
    elsewhere = []
    for server, port in resolvers(settings):
        try:
            answer = query_a(record, server, port, timeout=3)
        except DNSQueryError as exc:
            pytest.fail(f"resolver {server}:{port} gave no answer for {record}: {exc}")
        got = answer.addresses
        assert answer.status == "NOERROR" and got, (
            f"{record} does not resolve at {server}:{port} ({answer.status}, no A record)"
        )
        assert got == [address_ip] or address_ip not in got, (
            f"{record} resolves to {', '.join(got)} at {server}:{port}: this host and others, "
            "so some users still reach another forge"
        )
        if got != [address_ip]:
            elsewhere.append(f"{', '.join(got)} at {server}:{port}")
    if elsewhere:
        message = f"{record} resolves to {'; '.join(elsewhere)}, not to this host ({address_ip})"
        if request.config.getoption("--require-dns"):
            pytest.fail(message + ": the DNS cutover did not happen or has not propagated")
        pytest.skip(
            message + ": not cut over yet (runbook step 8, `phoenix cutover`, "
            "comes after validation)"
        )
