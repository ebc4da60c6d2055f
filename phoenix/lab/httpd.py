"""The one small JSON HTTP server the lab's API stand-ins are built on.

A server is a list of routes `(method, regex, handler)`; a handler takes a `Request` and
returns `(status, body)` or `(status, body, headers)`, where body is JSON-able (or None for
an empty body). Runs threaded, so a slow client does not hold the others up.

The fault switch: `inject(Fault(...))` makes matching requests fail before they are served
(nothing happened) or after (it happened, then the answer was lost): with an error status
(the provider's own error shape, from `fault_answer`), after a stall (a client timeout), or
with no answer at all (the connection closed). With a `control_token`, the same switch is
reachable over HTTP at /_lab/faults (GET: the faults and their hits, POST: add one, DELETE:
clear, answering the faults it cleared), so tests can drive the lab server process; a stand-in
adds switches of its own under /_lab/ with `controls` (path -> handler(method, body)).
`recorder`, when set, sees every exchange (the contract tests validate them).
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, overload
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

    @overload
    def arg(self, name: str) -> str | None: ...
    @overload
    def arg(self, name: str, default: str) -> str: ...
    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def bearer(self) -> str | None:
        value = self.headers.get("Authorization", "")
        return value[7:] if value.startswith("Bearer ") else None


Handler = Callable[[Request], Response]
FAULTS_PATH = "/_lab/faults"


@dataclass
class Fault:
    """A failure for the next `count` requests whose method and path match.

    `when`: "before" (the request is not served) or "after" (served, then the answer is
    lost). `status`: the answer given instead (0: none, the connection is closed);
    `retry_after` adds a Retry-After header; `delay` stalls that many seconds first (longer
    than the client's read timeout, it is a timeout).
    """

    path: str = ""  # regex searched in the URL path; "" = any
    method: str = ""  # "" = any
    when: str = "before"
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    count: int = 1
    hits: int = 0

    def __post_init__(self) -> None:
        if self.when not in ("before", "after"):
            raise ValueError(f"fault.when must be 'before' or 'after', not {self.when!r}")
        re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return (
            self.hits < self.count
            and self.method.upper() in ("", method)
            and re.search(self.path, path) is not None
        )


@dataclass
class Exchange:
    """One request and the answer it got, as the recorder sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int
    headers: dict[str, str]
    answer: Any
    fault: Fault | None


def _generic_fault_answer(status: int, fault: Fault) -> Response:
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    return status, {"message": "Injected failure (lab fault switch)."}, headers


class JSONServer:
    def __init__(
        self,
        host: str,
        port: int,
        routes: list[tuple[str, str, Handler]],
        *,
        before: Callable[[Request], Response | None] | None = None,
        fault_answer: Callable[[int, Fault], Response] = _generic_fault_answer,
        control_token: str | None = None,
        controls: dict[str, Callable[[str, Any], Any]] | None = None,
    ) -> None:
        self.routes = [(m, re.compile(p + r"/?$"), h) for m, p, h in routes]
        self.before = before
        self.fault_answer = fault_answer
        self.faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._control_token = control_token
        self._controls = {FAULTS_PATH: self._faults_control, **(controls or {})}
        self.recorder: Callable[[Exchange], None] | None = None
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

    # -- the fault switch ------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        with self._faults_lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> list[Fault]:
        with self._faults_lock:
            gone, self.faults = self.faults, []
        return gone

    def fail_next(self, n: int = 1, *, status: int = 429, retry_after: float | None = 1) -> None:
        """Answer the next `n` requests with `status` (429, 500, 503...) instead of serving
        them, in the API's own error shape; `retry_after` becomes a Retry-After header (None:
        no header). The faults before are cleared."""
        self.clear_faults()
        if n:
            self.inject(Fault(status=status, retry_after=retry_after, count=n))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._faults_lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _control(self, h: BaseHTTPRequestHandler, body: Any, path: str) -> None:
        given = h.headers.get("Authorization", "")[7:].encode()
        if not hmac.compare_digest(given, (self._control_token or "").encode()):
            self._send(h, 401, {"message": "the fault switch needs the lab's API token"}, {})
            return
        try:
            answer = self._controls[path](h.command, body)
        except (TypeError, ValueError, re.error) as exc:
            self._send(h, 400, {"message": f"bad fault: {exc}"}, {})
            return
        self._send(h, 200, answer, {})

    def _faults_control(self, method: str, body: Any) -> dict:
        if method == "POST":
            names = {f.name for f in fields(Fault)} - {"hits"}
            if not isinstance(body, dict) or set(body) - names:
                raise ValueError(f"a fault takes {', '.join(sorted(names))}")
            self.inject(Fault(**body))
        if method == "DELETE":  # the faults that were there, with their hits
            return {"faults": [asdict(f) for f in self.clear_faults()]}
        with self._faults_lock:
            return {"faults": [asdict(f) for f in self.faults]}

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(h, 400, {"message": "request body is not JSON"}, {})
            return
        if self._control_token and url.path in self._controls:
            self._control(h, body, url.path)
            return
        query = parse_qs(url.query)
        for method, pattern, handler in self.routes:
            match = pattern.match(url.path)
            if match and method == h.command:
                request = Request(h.command, url.path, query, h.headers, body, match.groupdict())
                fault = self._take_fault(h.command, url.path)
                if fault is None or fault.when == "after":
                    try:
                        result = (self.before and self.before(request)) or handler(request)
                    except Exception as exc:  # a bug in the stand-in must answer, not hang
                        result = (500, {"message": f"{type(exc).__name__}: {exc}"})
                if fault is not None:
                    time.sleep(fault.delay)
                    if fault.status == 0:  # no answer: the client sees the connection drop
                        h.close_connection = True
                        return
                    result = self.fault_answer(fault.status, fault)
                status, payload, *rest = result
                headers = rest[0] if rest else {}
                if self.recorder is not None:
                    self.recorder(
                        Exchange(h.command, url.path, query, body, status, headers, payload, fault)
                    )
                self._send(h, status, payload, headers)
                return
        self._send(h, 404, {"id": "not_found", "message": "no such endpoint"}, {})

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str]
    ) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            h.send_response(status)
            if payload is not None:
                h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                h.send_header(key, value)
            h.end_headers()
            h.wfile.write(data)
        except OSError:  # the client gave up (a timeout it was meant to have)
            h.close_connection = True

    def start(self) -> JSONServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
