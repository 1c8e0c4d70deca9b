"""Tests for mta.smtpd.data: DATA content rules and cleanup replies."""

from __future__ import annotations

import socket

import pytest

from mta.clients import ServiceError
from mta.smtpd.chat import SessionLost, SmtpStream
from mta.smtpd.data import MessageReader, cleanup_reply


def receive(raw: bytes, line_limit: int = 2048, size_limit: int = 0, strict_end: bool = True) -> bytes | None:
    server, peer = socket.socketpair()
    try:
        peer.sendall(raw)
        return MessageReader(SmtpStream(server, timeout=5), line_limit, size_limit, strict_end).read()
    finally:
        server.close()
        peer.close()


@pytest.mark.parametrize("raw, expected", [
    (b"a\r\nb\r\n.\r\n", b"a\nb\n"),
    (b".\r\n", b""),
    (b"..\r\n.\r\n", b".\n"),
    (b"a\nb\n.\r\n.\r\n", b"a\nb\n\n"),   # after a bare LF the dot line is content (unstuffed)
    (b"a\r\n.\nb\r\n.\r\n", b"a\n\nb\n"),  # a dot line ended by a bare LF is content
    (b"x\r\n.\r\ny\r\n", b"x\n"),                               # stops at the end marker
    (b"a\rb\r\n.\r\n", b"a\rb\n"),                              # a bare CR stays
    (b"From sender Mon Jan 1\r\nSubject: x\r\n\r\nb\r\n.\r\n",
     b"X-Mailbox-Line: From sender Mon Jan 1\nSubject: x\n\nb\n"),
    (b">From quoted\r\nFrom twice\r\nS: x\r\n.\r\n",
     b"X-Mailbox-Line: >From quoted\nX-Mailbox-Line: From twice\nS: x\n"),
    (b" starts with space\r\n.\r\n", b"\n starts with space\n"),
    (b"S: x\r\n From later\r\n.\r\n", b"S: x\n From later\n"),
])
def test_content(raw: bytes, expected: bytes) -> None:
    assert receive(raw) == expected


def test_trusted_clients_keep_the_old_end_of_data() -> None:
    """smtpd_forbid_bare_newline_exclusions: any LF.LF ends the data, as with Postfix's "no"."""
    assert receive(b"a\nb\n.\nMAIL FROM:<x@y>\r\n", strict_end=False) == b"a\nb\n"


def test_long_lines_are_not_split_in_the_result() -> None:
    assert receive(b"a" * 10 + b".b\r\n..c\r\n.\r\n", line_limit=10) == b"a" * 10 + b".b\n.c\n"
    assert receive(b"From " + b"x" * 20 + b"\r\nS: y\r\n.\r\n", line_limit=8) == \
        b"X-Mailbox-Line: From " + b"x" * 20 + b"\nS: y\n"


def test_size_counts_stored_lines_only() -> None:
    server, peer = socket.socketpair()
    peer.sendall(b"From x\r\nab\r\n\r\nhalf")
    peer.close()
    reader = MessageReader(SmtpStream(server, timeout=5), 100, 0)
    with pytest.raises(SessionLost):
        reader.read()
    assert reader.size == 6            # "ab" and "" with their line ends; not the From line or the rest
    server.close()


def test_size_limit_counts_two_bytes_per_line() -> None:
    assert receive(b"12345678\r\n.\r\n", size_limit=10) == b"12345678\n"
    assert receive(b"123456789\r\n.\r\n", size_limit=10) is None
    assert receive(b"x\r\n" * 100 + b".\r\n", size_limit=150) is None   # the rest is read and dropped


@pytest.mark.parametrize("status, dsn, reason, expected", [
    (4, "4.3.0", "queue file write error", "451 4.3.0 Error: queue file write error"),
    (5, "5.3.4", "message file too big", "552 5.3.4 Error: message file too big"),
    (5, "5.4.0", "too many hops", "554 5.4.0 Error: too many hops"),
    (5, "5.7.1", "message content rejected", "550 5.7.1 Error: message content rejected"),
    (4, "5.0.0", "odd", "451 4.3.0 Error: odd"),
    (5, "5.7.1", "550 5.7.1 <x>: spam", "550 5.7.1 <x>: spam"),
])
def test_cleanup_reply(status: int, dsn: str, reason: str, expected: str) -> None:
    assert cleanup_reply(ServiceError("cleanup", status, dsn, reason)) == expected
