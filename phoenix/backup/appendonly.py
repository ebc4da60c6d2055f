"""Proof that the store is append-only for the forge: with the forge's own key, try
what a compromised forge would, and require the store's refusal.

The forge's key is forced on the store to `rclone serve restic --stdio --append-only REPO`,
which speaks restic's REST protocol as HTTP/2 on stdin/stdout (what restic's rclone backend
talks to). Here the same protocol goes over the same ssh channel (the `h2` library frames it)
and asks for operations that are harmless even where they would be allowed: deleting a pack,
a key and a snapshot that do not exist, and writing the repository's config with its own
bytes. rclone refuses each with 403 in append-only mode (checked with rclone 1.60; without
--append-only it answers 404, 404, 404 and 200). A key that is not pinned to the endpoint
runs the harmless remote command instead and the channel closes: that is a failure too.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from typing import IO, cast

import h2.config
import h2.connection
import h2.events

from phoenix.errors import PhoenixError
from phoenix.sshconf import Target, ssh_command

ZERO = "0" * 64
PROBES = [  # (what a compromised forge would do, method, path); the config's POST is last
    ("delete a pack", "DELETE", f"/data/{ZERO}"),
    ("remove a key", "DELETE", f"/keys/{ZERO}"),
    ("forget a snapshot", "DELETE", f"/snapshots/{ZERO}"),
    ("overwrite the repository's config", "POST", "/config"),
]
REST_V2 = "application/vnd.x.restic.rest.v2"  # what restic asks for (rclone needs it to list)
# Run if the key is NOT forced to the endpoint: exits at once, so the channel closes unread.
UNFORCED = "exit 0"


class Channel:
    """restic's REST protocol over a process's stdin/stdout, one request at a time."""

    def __init__(self, argv: list[str], *, timeout: float = 30) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        # Pipes, as asked for above (Popen types them Optional).
        self.stdin, self.stdout, self.stderr = cast(
            "tuple[IO[bytes], IO[bytes], IO[bytes]]",
            (self.proc.stdin, self.proc.stdout, self.proc.stderr),
        )
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            try:
                self.stdin.write(data)
                self.stdin.flush()
            except BrokenPipeError:
                raise self._closed() from None

    def _closed(self) -> PhoenixError:
        self.proc.kill()
        self.proc.wait()
        err = self.stderr.read().decode(errors="replace").strip()
        last = err.splitlines()[-1] if err else f"it closed (exit {self.proc.returncode})"
        return PhoenixError(f"no append-only endpoint answered the forge's key: {last}")

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (":method", method),
            (":path", path),
            (":scheme", "http"),
            (":authority", "restic"),
            ("accept", REST_V2),
        ]
        if body is not None:
            headers.append(("content-length", str(len(body))))
        self.conn.send_headers(sid, headers, end_stream=body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        self._flush()
        status, data = 0, b""
        deadline = time.monotonic() + self.timeout
        fd = self.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.proc.kill()
                raise PhoenixError(
                    f"the store's endpoint did not answer {method} {path} "
                    f"within {self.timeout:.0f} s"
                )
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._closed()
            for event in self.conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    data += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif (
                    isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset))
                    and event.stream_id == sid
                ):
                    self._flush()
                    return status, data
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise self._closed()
            self._flush()

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self._flush()
            self.stdin.close()
        except (OSError, PhoenixError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def refusals(argv: list[str], *, timeout: float = 30) -> dict[str, int]:
    """Each forbidden operation's HTTP status through the channel `argv` (403: refused)."""
    channel = Channel(argv, timeout=timeout)
    try:
        found: dict[str, int] = {}
        config = b""
        for what, method, path in PROBES:
            if method == "POST":
                got, config = channel.request("GET", path)
                if got != 200:
                    raise PhoenixError(
                        f"the store's endpoint has no repository config "
                        f"(HTTP {got}): is the repository initialised?"
                    )
            found[what], _ = channel.request(method, path, config if method == "POST" else None)
        return found
    finally:
        channel.close()


def prove(target: Target, *, timeout: float = 30) -> list[str]:
    """With the forge's key (`target`), try every forbidden operation on the store; return
    the ones refused (all of them), or raise naming what the forge's key could do."""
    found = refusals(ssh_command(target, UNFORCED), timeout=timeout)
    allowed = [f"{what} (HTTP {status})" for what, status in found.items() if status != 403]
    if allowed:
        raise PhoenixError(
            f"the store {target.host} is not append-only for the forge's key: it "
            f"could {', '.join(allowed)}; pin that key to `rclone serve restic "
            "--stdio --append-only` there (files/phoenix_offsite_store.py)"
        )
    return list(found)
