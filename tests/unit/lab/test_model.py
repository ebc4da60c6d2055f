"""The lab's model stand-in (phoenix/lab/model.py) as the lab server serves it, beside the
artifacts: OpenAI's chat completions shapes, streamed and not, its key, its call log."""

from __future__ import annotations

import functools
import json
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import pytest

from phoenix.lab import model
from phoenix.lab.pings import PATH, Receiver
from phoenix.lab.server import _Artifacts

KEY = "lab-model-key-for-the-unit-test"


@pytest.fixture
def endpoint(tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "artifact.txt").write_text("an artifact\n")
    _Artifacts.model = model.Model(key=KEY, log=tmp_path / "model.log")
    _Artifacts.pings = Receiver(tmp_path / "pings.jsonl")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        _Artifacts, directory=str(tmp_path / "files")))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "model.log"
    server.shutdown()
    server.server_close()


def call(url: str, body: dict | None = None, *, key: str | None = KEY) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_models_and_artifacts_side_by_side(endpoint):
    url, _log = endpoint
    status, body = call(f"{url}/v1/models")
    assert status == 200 and json.loads(body)["data"][0]["id"] == model.MODEL_ID
    assert call(f"{url}/artifact.txt", key=None) == (200, b"an artifact\n")


@pytest.mark.parametrize("key", [None, "lab-wrong"])
def test_a_call_without_the_key_is_401_as_openai_answers(endpoint, key):
    url, log = endpoint
    status, body = call(f"{url}/v1/chat/completions",
                        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, key=key)
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    assert KEY not in log.read_text()


def test_the_answer_carries_the_nonce_and_the_log_shows_the_call(endpoint):
    url, log = endpoint
    nonce = "phoenix-nonce-0123456789abcdef"
    status, body = call(f"{url}/v1/chat/completions", {"model": "m", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": f"say {nonce}"}]}]})
    reply = json.loads(body)
    assert status == 200 and reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"] == {"role": "assistant",
                                              "content": f"lab-model heard {nonce}"}
    assert reply["choices"][0]["finish_reason"] == "stop"
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["nonces"] == [nonce] and entry["stream"] is False and KEY not in log.read_text()


def test_a_streamed_answer_is_sse_chunks_ending_with_done(endpoint):
    url, _log = endpoint
    status, body = call(f"{url}/v1/chat/completions", {
        "model": "m", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "phoenix-nonce-abcdef0123"}]})
    events = [line[6:] for line in body.decode().split("\n\n") if line.startswith("data: ")]
    assert status == 200 and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "lab-model heard phoenix-nonce-abcdef0123"
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_a_body_without_messages_is_400(endpoint):
    url, _log = endpoint
    status, body = call(f"{url}/v1/chat/completions", {"model": "m"})
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"


def test_the_alert_receiver_records_pings_beside_the_artifacts(endpoint):
    url, log = endpoint
    check = "5f0c3c1e-4d7b-4a8e-9a59-0f6f3c2a1b7d"
    assert call(f"{url}/ping/{check}", key=None)[0] == 200  # Litestream's GET
    request = urllib.request.Request(f"{url}/ping/{check}/fail", data=b"full backup FAILED: x")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.read() == b"OK"
    lines = [json.loads(line) for line in (log.parent / "pings.jsonl").read_text().splitlines()]
    assert [(p["check"], p["failed"], p["body"]) for p in lines] == [
        (check, False, ""), (check, True, "full backup FAILED: x")]
    assert PATH.match("/ping/../etc/passwd") is None
    assert call(f"{url}/artifact.txt", key=None) == (200, b"an artifact\n")
