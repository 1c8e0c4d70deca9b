"""Tests for mta.mail_copy: the From_ line, envelope headers, local-part quoting and content transforms."""

from __future__ import annotations

import pytest

from mta.mail_copy import copy_lines, envelope_headers, from_line, quote_822_local


def test_from_line_format() -> None:
    line = from_line("", now=0)
    assert line.startswith(b"From MAILER-DAEMON  ") and len(line) == len(b"From MAILER-DAEMON  ") + 25
    assert from_line("a@b", now=0, eol=b"\r\n").endswith(b"\r\n")


@pytest.mark.parametrize("address, quoted", [
    ("bob@example.com", "bob@example.com"),
    ("first.last@example.com", "first.last@example.com"),
    ("a b@example.com", '"a b"@example.com'),
    ("a..b@example.com", '"a..b"@example.com'),
    ('say"hi@example.com', '"say\\"hi"@example.com'),
    ("jürgen@example.com", "jürgen@example.com"),  # 8-bit transparent
    ("weird@x@example.com", '"weird@x"@example.com'),
    ("", ""),
])
def test_quote_822_local(address: str, quoted: str) -> None:
    assert quote_822_local(address) == quoted


def test_envelope_headers_order_and_eol() -> None:
    got = envelope_headers("s@x", return_path=True, original="o@y", delivered="d@y", eol=b"\r\n")
    assert got == b"Return-Path: <s@x>\r\nX-Original-To: o@y\r\nDelivered-To: d@y\r\n"
    assert envelope_headers("", return_path=True) == b"Return-Path: <>\n"
    assert envelope_headers("s@x") == b""
    with_from = envelope_headers("s@x", from_=True, return_path=True)
    assert with_from.startswith(b"From s@x  ") and with_from.endswith(b"\nReturn-Path: <s@x>\n")


@pytest.mark.parametrize("flags, expected", [
    ({}, b"Subject: x\n\nFrom here\n.dot\nend\n"),
    ({"eol": b"\r\n"}, b"Subject: x\r\n\r\nFrom here\r\n.dot\r\nend\r\n"),
    ({"dot": True}, b"Subject: x\n\nFrom here\n..dot\nend\n"),
    ({"quote_from": True}, b"Subject: x\n\n>From here\n.dot\nend\n"),
    ({"blank": True}, b"Subject: x\n\nFrom here\n.dot\nend\n\n"),
])
def test_copy_lines(flags: dict[str, object], expected: bytes) -> None:
    assert copy_lines(b"Subject: x\n\nFrom here\n.dot\nend\n", **flags) == expected  # type: ignore[arg-type]


def test_copy_lines_adds_a_missing_last_line_end() -> None:
    assert copy_lines(b"a\nb") == b"a\nb\n"
    assert copy_lines(b"") == b""
