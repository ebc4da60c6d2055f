"""tasks/_speed.py: TCP_NODELAY on the deploy's SSH connection (issue 20)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

from tasks._speed import no_delay


def _host(sock) -> SimpleNamespace:
    transport = SimpleNamespace(sock=sock)
    client = SimpleNamespace(get_transport=lambda: transport)
    return SimpleNamespace(connector=SimpleNamespace(client=client))


def test_the_connections_tcp_socket_sends_without_delay():
    server = socket.create_server(("127.0.0.1", 0))
    sock = socket.create_connection(server.getsockname())
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        assert no_delay(_host(sock)) is True
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()
        server.close()


def test_a_connection_without_a_tcp_socket_is_left_alone():
    left, right = socket.socketpair()  # a ProxyCommand's pipe is no TCP socket either
    try:
        assert no_delay(_host(left)) is False
        assert no_delay(SimpleNamespace(connector=SimpleNamespace())) is False  # @local
        assert no_delay(_host(None)) is False  # not connected
    finally:
        left.close()
        right.close()
