"""Runbook step 5 (tasks/backend.py): Hermes Agent's backend runs, answers /health, refuses
a call without its key and thinks (one real chat through it)."""

from __future__ import annotations

import json
import secrets
import shlex

from .helpers import BACKEND, active_and_enabled, house_home, journal


def _backend_url(settings, path: str) -> str:
    return f"http://{settings['backend_host']}:{settings['backend_port']}{path}"


def _call(host, settings, path: str, body: dict | None, *, key: bool) -> tuple[str, str]:
    """(HTTP status, body) of a call to the backend made on the host; with `key`, the API
    server's key is read from the backend's .env there and reaches curl on stdin only."""
    env = shlex.quote(f"{house_home(settings, settings['backend_house'])}/.env")
    header = (
        f"sed -n 's/^API_SERVER_KEY=//p' {env} | {{ read -r k; "
        'printf \'header = "Authorization: Bearer %s"\\n\' "$k"; } | '
        if key
        else "true | "
    )
    data = (
        f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))} "
        if body is not None
        else ""
    )
    result = host.run(
        f"{header}curl -sS -m 180 -K - -w '\\n%{{http_code}}' {data}"
        f"{shlex.quote(_backend_url(settings, path))}"
    )
    text, _, code = result.stdout.rpartition("\n")
    return code.strip(), text


def test_step5_backend_active_and_enabled(host):
    active_and_enabled(host, BACKEND, "Hermes Agent's gateway and API server")


def test_step5_backend_health_200(host, settings):
    code, body = _call(host, settings, settings["backend_health_path"], None, key=False)
    assert code == "200", (
        f"GET {_backend_url(settings, settings['backend_health_path'])} on the host "
        f"answered {code or 'nothing'}, expected 200 (is {BACKEND} listening on "
        f"backend_port {settings['backend_port']}?); its journal ends:\n{journal(host, BACKEND)}"
    )
    assert json.loads(body).get("platform") == "hermes-agent", f"not Hermes answering: {body}"


def test_step5_backend_refuses_a_call_without_its_key(host, settings):
    code, body = _call(
        host, settings, "/v1/chat/completions", {"model": "hermes-agent", "messages": []}, key=False
    )
    assert code == "401", (
        f"the backend answered {code} to a chat without API_SERVER_KEY, "
        f"expected 401: is its API server open to anyone? {body[:200]}"
    )


def test_step5_backend_model_round_trip(host, settings):
    """One real chat through the backend to the model provider: the answer must carry this
    request's nonce, which only a model that read the request can give back."""
    nonce = f"phoenix-nonce-{secrets.token_hex(8)}"
    code, body = _call(
        host,
        settings,
        "/v1/chat/completions",
        {
            "model": "hermes-agent",
            "messages": [
                {"role": "user", "content": f"Reply with exactly this and nothing else: {nonce}"}
            ],
        },
        key=True,
    )
    assert code == "200", (
        f"a chat through the backend answered {code}, expected 200: "
        f"{body[:300]}; its journal ends:\n{journal(host, BACKEND)}"
    )
    answer = json.loads(body)["choices"][0]["message"]["content"] or ""
    assert nonce in answer, (
        f"the backend's answer does not carry the nonce {nonce}: "
        f"{answer[:200]!r} (is its model the configured provider?)"
    )
