"""Tests for mta.smtpd.chat: line reading with limits, reply flushing, and log text helpers."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

from mta.smtpd.chat import (
    SessionLost,
    SessionTimeout,
    SmtpStream,
    client_identify,
    command_stats,
    escape,
    namaddr,
    printable,
    reply_multiline,
    reply_soft_bounce,
    whatsup,
)


@pytest.fixture
def pair() -> Iterator[tuple[SmtpStream, socket.socket]]:
    """(server stream, client socket) over a socketpair."""
    server, peer = socket.socketpair()
    peer.settimeout(5)
    yield SmtpStream(server, timeout=5), peer
    server.close()
    peer.close()


def test_lines_end_at_lf_with_or_without_cr(pair: tuple[SmtpStream, socket.socket]) -> None:
    stream, peer = pair
    peer.sendall(b"one\r\ntwo\nthree\r\r\n\r\n")
    assert [stream.read_line(100) for _ in range(4)] == [
        (b"one", True), (b"two", True), (b"three\r", True), (b"", True)]


def test_long_lines_come_in_pieces(pair: tuple[SmtpStream, socket.socket]) -> None:
    stream, peer = pair
    peer.sendall(b"abcdefghij\r\n1234\r\n12345\r\n")
    assert [stream.read_line(4) for _ in range(6)] == [
        (b"abcd", False), (b"efgh", False), (b"ij", True), (b"1234", True), (b"1234", False), (b"5", True)]


def test_long_command_is_cut_and_rest_skipped(pair: tuple[SmtpStream, socket.socket]) -> None:
    stream, peer = pair
    peer.sendall(b"NOOP " + b"x" * 100 + b"\r\nQUIT\r\n")
    assert stream.read_command(10) == (b"NOOP xxxxx", False)
    assert stream.read_command(10) == (b"QUIT", True)


def test_replies_wait_until_input_runs_dry(pair: tuple[SmtpStream, socket.socket]) -> None:
    stream, peer = pair
    peer.sendall(b"A\r\nB\r\n")
    stream.read_line(100)
    stream.reply("250 first")
    stream.read_line(100)          # still buffered: nothing sent yet
    stream.reply("250 second")
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(100)
    peer.setblocking(True)
    threading.Timer(0.1, lambda: peer.sendall(b"C\r\n")).start()
    assert stream.read_line(100) == (b"C", True)   # the read flushed both replies at once
    assert peer.recv(100) == b"250 first\r\n250 second\r\n"
    assert stream.bytes_in == 9


def test_end_of_file_and_timeout() -> None:
    server, peer = socket.socketpair()
    stream = SmtpStream(server, timeout=0.1)
    with pytest.raises(SessionTimeout):
        stream.read_line(100)
    peer.sendall(b"partial")
    peer.close()
    with pytest.raises(SessionLost):
        stream.read_line(100)
    server.close()


def test_client_identify() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    conn = socket.create_connection(listener.getsockname(), source_address=("127.0.0.2", 0))
    accepted, _ = listener.accept()
    name, address, port = client_identify(accepted, lookup=False)
    assert (name, address, int(port)) == ("unknown", "127.0.0.2", conn.getsockname()[1])
    unix, other = socket.socketpair()
    assert client_identify(unix, lookup=False)[:2] == ("localhost", "127.0.0.1")
    for s in (listener, conn, accepted, unix, other):
        s.close()


def test_reply_helpers() -> None:
    assert reply_multiline(250, ["a", "b", "c"]) == "250-a\r\n250-b\r\n250 c"
    assert reply_multiline(250, ["only"]) == "250 only"
    assert reply_soft_bounce("550 5.1.1 <a@b>: nope") == "450 4.1.1 <a@b>: nope"
    assert reply_soft_bounce("554 Error") == "454 Error"
    assert reply_soft_bounce("250 2.0.0 Ok") == "250 2.0.0 Ok"
    assert printable("a\tb\x7fc") == "a?b?c"


def test_log_helpers() -> None:
    assert namaddr("unknown", "192.0.2.1") == "unknown[192.0.2.1]"
    assert namaddr("mx.example", "192.0.2.1", "4711", log_port=True) == "mx.example[192.0.2.1]:4711"
    assert whatsup("s@x", "r@y", "ESMTP", "h") == " from=<s@x> to=<r@y> proto=ESMTP helo=<h>"
    assert whatsup(None, None, "SMTP", None) == " proto=SMTP"
    assert command_stats({"helo": [0, 0], "quit": [1, 1]}) == " quit=1 commands=1"
    assert command_stats({}) == " commands=0/0"


def test_escape() -> None:
    assert escape(b"MAIL FROM:<a@b>\r\n") == "MAIL FROM:<a@b>\\r\\n"
    assert escape(b"\\ \x00\x7f\xc3\xa9\t") == "\\\\ \\000\\177\\303\\251\\t"


def test_peek_reads_what_is_waiting_without_blocking(pair: tuple[SmtpStream, socket.socket]) -> None:
    stream, peer = pair
    assert stream.peek(10) == b""
    peer.sendall(b"NOOP\r\nQUIT\r\n")
    deadline = 50
    while not stream.peek(10) and deadline:
        deadline -= 1
        threading.Event().wait(0.01)
    assert stream.peek(10) == b"NOOP\r\nQUIT"
    assert stream.read_line(100) == (b"NOOP", True)
    assert stream.peek(100) == b"QUIT\r\n"
