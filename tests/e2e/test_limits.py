"""End to end: per-client connection limits across smtpd processes, counted by the real anvil daemon."""

from __future__ import annotations

import os
import signal
import socket
import time

import psutil

from tests.e2e.conftest import Mta, wait_for

OUTSIDE = ("127.0.0.2", 0)  # a client address outside mynetworks (127.0.0.1/32)


def greet(mta: Mta, source: tuple[str, int] = OUTSIDE) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", mta.port), timeout=30, source_address=source)
    return sock, sock.recv(200)


def server_pid(client: socket.socket) -> int:
    """The smtpd process serving this client connection."""
    mine = client.getsockname()
    [pid] = {c.pid for c in psutil.net_connections("tcp") if c.raddr and tuple(c.raddr) == mine and c.pid}
    return pid


def test_concurrency_limit(make_mta) -> None:  # type: ignore[no-untyped-def]
    mta = make_mta(main_extra="smtpd_client_connection_count_limit = 2\n")
    mta.start()
    first, banner1 = greet(mta)
    second, banner2 = greet(mta)
    assert banner1.startswith(b"220 ") and banner2.startswith(b"220 ")  # two smtpd processes, both counted
    third, refused = greet(mta)
    assert refused == b"421 4.7.0 gw.example.test Error: too many connections from 127.0.0.2\r\n"
    assert third.recv(100) == b""  # and the connection is closed
    third.close()
    # mynetworks (smtpd_client_event_limit_exceptions) is not limited.
    trusted, banner = greet(mta, ("127.0.0.1", 0))
    assert banner.startswith(b"220 ")
    trusted.close()
    # An smtpd killed in the middle of a session releases its count with its anvil connection.
    os.kill(server_pid(second), signal.SIGKILL)
    assert second.recv(100) == b""
    wait_for(lambda: greet_ok(mta), what="a connection in the place of the killed session's")
    first.close()
    second.close()
    log = mta.log()
    assert "warning: Connection concurrency limit exceeded: 3 from " in log
    assert f"[127.0.0.2] for service 127.0.0.1:{mta.port}" in log


def greet_ok(mta: Mta) -> bool:
    sock, banner = greet(mta)
    sock.close()
    return banner.startswith(b"220 ")


def test_rate_limit(make_mta) -> None:  # type: ignore[no-untyped-def]
    mta = make_mta(main_extra="smtpd_client_connection_rate_limit = 3\n")
    mta.start()
    replies = []
    for _ in range(5):
        sock, banner = greet(mta)
        replies.append(banner[:3])
        sock.close()
        time.sleep(0.05)
    assert replies == [b"220", b"220", b"220", b"421", b"421"]
    assert "warning: Connection rate limit exceeded: 4 from " in mta.log()
    # A restart of the mail system starts a new anvil, which logs its peak as it goes.
    mta.stop()
    wait_for(lambda: "statistics: max connection rate 5/60s for (" in mta.log(), what="anvil's statistics")
