"""The lab's alert receiver: what a healthchecks-style service is to the forge's pings.

The forge's backup job pings the operator's alert URL (the secret `alert_url`) after each run:
POST URL on success, POST URL/fail with the reason on failure (healthchecks.io's ping API:
https://healthchecks.io/docs/http_api/). In the lab that URL is /ping/<check> on the artifact
server; each ping is one JSON line in <state>/logs/pings.jsonl ({at, check, failed, body,
from}), which tests read: a ping that does not come is the silence an operator would see.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from phoenix.lab.config import LabConfig

PATH = re.compile(r"^/ping/(?P<check>[0-9a-f-]{8,64})(?P<fail>/fail)?/?$")
BODY_LIMIT = 100_000  # as healthchecks keeps the first 100 kB of a ping's body


def pings_file(config: LabConfig) -> Path:
    return config.state_dir / "logs" / "pings.jsonl"


def read(config: LabConfig, check: str | None = None) -> list[dict]:
    """The pings received so far (of `check`, the last part of the alert URL, if given)."""
    path = pings_file(config)
    if not path.exists():
        return []
    found = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [p for p in found if check is None or p["check"] == check]


class Receiver:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    @staticmethod
    def handles(url: str) -> bool:
        return PATH.match(url.split("?", 1)[0]) is not None

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        match = PATH.match(h.path.split("?", 1)[0])
        assert match is not None
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length)[:BODY_LIMIT] if length else b""
        line = {
            "at": time.time(),
            "check": match["check"],
            "failed": bool(match["fail"]),
            "body": body.decode("utf-8", "replace"),
            "from": h.client_address[0],
        }
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")
        h.send_response(200)  # healthchecks answers "OK"
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", "2")
        h.end_headers()
        h.wfile.write(b"OK")
