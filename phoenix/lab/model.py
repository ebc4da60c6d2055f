"""LAB STAND-IN for a paid model provider: an OpenAI-compatible chat completions endpoint.

The one part of the agent layer that stays a stand-in (a real provider is a paid service
beyond this machine). Hermes Agent reaches it as a `custom` provider (config.yaml `model:
{provider: custom, base_url: <artifact server>/v1, api_key: …}`); it is served by the lab
server beside the artifacts. Held to OpenAI's chat completions API shapes:

- `GET /v1/models` → `{"object": "list", "data": [{"id", "object": "model", ...}]}`;
- `POST /v1/chat/completions` → a `chat.completion`, or with `"stream": true` Server-Sent
  Events of `chat.completion.chunk` objects ended by `data: [DONE]`;
- a missing or wrong bearer key → 401 `{"error": {"code": "invalid_api_key", ...}}`, as
  OpenAI answers; a body without `model` or `messages` → 400 `invalid_request_error`.

It thinks nothing: it answers `lab-model heard <nonce>` for every `phoenix-nonce-<hex>` in the
last user message (validation's round trip), else a short fixed sentence. Every call is
logged as a JSON line (time, model, stream, nonces; never the key) to `<lab>/logs/model.log`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

MODEL_ID = "phoenix-lab-model"
NONCE = re.compile(r"phoenix-nonce-[0-9a-f]{8,64}")
# Hermes requires a context of at least 64000 tokens; advertise what it will be told.
CONTEXT_LENGTH = 131072


def answer_for(nonces: list[str]) -> str:
    if nonces:
        return " ".join(f"lab-model heard {n}" for n in nonces)
    return "The Phoenix lab model is a stand-in and has nothing to say."


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _error(status: int, message: str, kind: str, code: str | None) -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": kind, "param": None, "code": code}}


class Model:
    """The endpoint's state: its key and its call log."""

    def __init__(self, *, key: str, log: Path) -> None:
        self.key = key
        self.log = log
        self._lock = threading.Lock()

    def _record(self, entry: dict) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.log, "a") as out:
            out.write(json.dumps(entry) + "\n")

    def handles(self, path: str) -> bool:
        return path.split("?", 1)[0].rstrip("/") in ("/v1/models", "/v1/chat/completions")

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        """Answer one request on `h` (GET /v1/models or POST /v1/chat/completions)."""
        path = h.path.split("?", 1)[0].rstrip("/")
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        auth = h.headers.get("Authorization", "")
        if auth != f"Bearer {self.key}":
            self._record({"time": time.time(), "path": path, "status": 401})
            return self._json(
                h,
                *_error(
                    401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                ),
            )
        if path == "/v1/models" and h.command == "GET":
            return self._json(
                h,
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": MODEL_ID,
                            "object": "model",
                            "created": 0,
                            "owned_by": "phoenix-lab",
                            "context_length": CONTEXT_LENGTH,
                        }
                    ],
                },
            )
        if path != "/v1/chat/completions" or h.command != "POST":
            return self._json(
                h,
                *_error(
                    405, f"{h.command} is not allowed on {path}", "invalid_request_error", None
                ),
            )
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._json(
                h,
                *_error(
                    400,
                    "We could not parse the JSON body of your request.",
                    "invalid_request_error",
                    None,
                ),
            )
        messages = body.get("messages")
        if not body.get("model") or not isinstance(messages, list) or not messages:
            return self._json(
                h,
                *_error(
                    400,
                    "you must provide a model parameter and a non-empty messages array",
                    "invalid_request_error",
                    None,
                ),
            )
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        nonces = NONCE.findall(_text(users[-1].get("content")) if users else "")
        stream = bool(body.get("stream"))
        self._record(
            {
                "time": time.time(),
                "path": path,
                "status": 200,
                "model": body["model"],
                "stream": stream,
                "messages": len(messages),
                "nonces": nonces,
            }
        )
        text = answer_for(nonces)
        reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        usage = {
            "prompt_tokens": sum(len(_text(m.get("content")).split()) for m in users),
            "completion_tokens": len(text.split()),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not stream:
            return self._json(
                h,
                200,
                {
                    "id": reply_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": body["model"],
                    "usage": usage,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "logprobs": None,
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                },
            )
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close")
        h.end_headers()
        base = {
            "id": reply_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body["model"],
        }
        words = text.split(" ")
        chunks = [{"role": "assistant", "content": ""}] + [
            {"content": w if i == 0 else " " + w} for i, w in enumerate(words)
        ]
        for delta in chunks:
            self._event(
                h, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            )
        self._event(h, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event(h, {**base, "choices": [], "usage": usage})
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()
        h.close_connection = True

    @staticmethod
    def _event(h: BaseHTTPRequestHandler, payload: dict) -> None:
        h.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        h.wfile.flush()

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
