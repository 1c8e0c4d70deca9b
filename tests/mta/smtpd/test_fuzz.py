"""Property-based fuzzing of smtpd (hypothesis): random command sequences and bytes never crash or hang it.

Each example connects, sends a random pipelined batch of SMTP commands (real
verbs with hostile arguments, raw bytes, odd line ends, DATA with random
content), reads the replies until the server closes or goes quiet, and hangs
up. Checked: every reply line is a well-formed SMTP reply, the session ends,
service() never raises, the server keeps answering, and memory stays bounded.

Bounded by FUZZ_EXAMPLES (default 150 examples, about 10 s); for a longer run:
``FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/mta/smtpd/test_fuzz.py``.
"""

from __future__ import annotations

import os
import re
import socket
import traceback
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mta import smtpd
from tests.mta.smtpd.conftest import FakeCleanup, SmtpdServer

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
MTA_DIR = Path(smtpd.__file__).resolve().parent.parent
REPLY = re.compile(rb"[2-5]\d\d[ -]")
VERBS = [b"HELO", b"EHLO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"RSET", b"NOOP", b"VRFY", b"EXPN", b"QUIT",
         b"STARTTLS", b"AUTH", b"BDAT", b"ETRN", b"XCLIENT", b"GET /", b"Subject:", b"mail from:", b"rcpt to:"]
HOSTILE = st.sampled_from([b"<>", b"<a@example.test>", b"<alice@example.test>", b"<x@remote.example>",
                           b"<a%b@example.test>", b"<@x,@y:a@b>", b'<"a b"@c>', b"<a@[127.0.0.1]>", b"<<<",
                           b">", b"\"", b"\\", b"SIZE=99999999999", b"BODY=8BITMIME", b"SIZE=-1", b"\x00",
                           b"\xff\xfe", b"a" * 3000, b"<" + b"a" * 600 + b"@b>", b"=?utf-8?", b"%!@"])
LINE_END = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n", b""])


@st.composite
def command(draw: Callable[..., Any]) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=200)) + draw(LINE_END)
    verb = draw(st.sampled_from(VERBS))
    args = draw(st.lists(st.one_of(HOSTILE, st.binary(max_size=40)), max_size=3))
    line = verb + (b" " if args and not verb.endswith(b":") else b"") + b" ".join(args)
    if verb == b"DATA" and draw(st.booleans()):
        body = draw(st.binary(max_size=400)).replace(b"\r\n.\r\n", b"")
        return line + b"\r\n" + body + draw(st.sampled_from([b"\r\n.\r\n", b"\n.\n", b"\r\n..\r\n", b""]))
    return line + draw(LINE_END)


def exchange(port: int, data: bytes) -> bytes:
    """Send data after the greeting; return what came back until the server closed or went quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        received = sock.recv(65536)
        try:
            sock.sendall(data)
        except OSError:
            return received
        sock.settimeout(0.05)
        while True:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                return received
            if not chunk:
                return received
            received += chunk


@pytest.fixture
def fuzz_server(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup,
                monkeypatch: pytest.MonkeyPatch) -> tuple[SmtpdServer, list[str]]:
    errors: list[str] = []
    real = smtpd.service

    def guarded(conn: socket.socket, ctx: Any) -> None:
        try:
            real(conn, ctx)
        except BaseException:  # noqa: BLE001 - every escape is a finding
            errors.append(traceback.format_exc())

    monkeypatch.setattr(smtpd, "service", guarded)
    return start_server("smtpd_timeout = 2s\nsmtpd_hard_error_limit = 100\n"), errors


def mta_allocated() -> int:
    """Bytes currently allocated by code under mta/ (tracemalloc), i.e. what smtpd keeps."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, f"{MTA_DIR}/*")])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_random_sessions(fuzz_server: tuple[SmtpdServer, list[str]]) -> None:
    server, errors = fuzz_server
    tracemalloc.start()
    before = mta_allocated()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(command(), min_size=1, max_size=12))
    def session(commands: list[bytes]) -> None:
        received = exchange(server.port, b"".join(commands))
        for line in received.split(b"\r\n"):
            if line:
                assert REPLY.match(line), (line, commands)

    session()
    assert errors == [], errors[:1]
    # The server still answers, and what smtpd's code keeps allocated does not grow with the sessions.
    assert exchange(server.port, b"QUIT\r\n").endswith(b"221 2.0.0 Bye\r\n")
    growth = mta_allocated() - before
    tracemalloc.stop()
    assert growth < 2 * 2**20, f"smtpd keeps {growth} bytes more after {EXAMPLES} sessions"
