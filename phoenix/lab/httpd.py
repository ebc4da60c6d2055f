"""The one small JSON HTTP server the lab's API stand-ins are built on.

A server is a list of routes `(method, regex, handler)`; a handler takes a `Request` and
returns `(status, body)` or `(status, body, headers)`, where body is JSON-able (or None for
an empty body). Runs threaded, so a slow client does not hold the others up.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Response = tuple[int, Any] | tuple[int, Any, dict[str, str]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: Any  # parsed JSON, or None
    params: dict[str, str]  # named groups of the route regex

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def bearer(self) -> str | None:
        value = self.headers.get("Authorization", "")
        return value[7:] if value.startswith("Bearer ") else None


Handler = Callable[[Request], Response]


class JSONServer:
    def __init__(self, host: str, port: int, routes: list[tuple[str, str, Handler]],
                 *, before: Callable[[Request], Response | None] | None = None) -> None:
        self.routes = [(m, re.compile(p + r"/?$"), h) for m, p, h in routes]
        self.before = before
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out apart: no 40 ms stalls

            def log_message(self, *args: Any) -> None:  # quiet: the lab logs elsewhere
                pass

            def _handle(self) -> None:
                server._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(h, 400, {"message": "request body is not JSON"}, {})
            return
        for method, pattern, handler in self.routes:
            match = pattern.match(url.path)
            if match and method == h.command:
                request = Request(h.command, url.path, parse_qs(url.query), h.headers, body,
                                  match.groupdict())
                try:
                    result = (self.before and self.before(request)) or handler(request)
                except Exception as exc:  # a bug in the stand-in must answer, not hang
                    result = (500, {"message": f"{type(exc).__name__}: {exc}"})
                status, payload, *rest = result
                self._send(h, status, payload, rest[0] if rest else {})
                return
        self._send(h, 404, {"id": "not_found", "message": "no such endpoint"}, {})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: Any,
              headers: dict[str, str]) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        h.send_response(status)
        if payload is not None:
            h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    def start(self) -> JSONServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
