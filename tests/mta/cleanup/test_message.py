"""mta.cleanup.message: header split, address spans, in-place rewriting, added headers, Received:."""

from __future__ import annotations

import re

import pytest

from mta.cleanup.message import (
    HeaderPolicy,
    from_header,
    header_addresses,
    header_addresses_parsed,
    header_rewrite,
    headers_missing,
    headers_process,
    mail_date,
    message_render,
    message_split,
    received_header,
)
from mta.cleanup.rewrite import MASQ_CLASSES, RewriteContext, masquerade_create

LOCAL = RewriteContext("host.example.test", "example.test")
MASQ = masquerade_create(["!keep.example.test", "example.test"], ["root"], sorted(MASQ_CLASSES))
DATE_RE = (r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [ 123]\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
           r"\d{4} \d\d:\d\d:\d\d [+-]\d{4} \([^)]+\)")


@pytest.mark.parametrize(
    ("content", "headers", "body"),
    [
        (b"A: 1\nB: 2\n\nbody\n", [b"A: 1\n", b"B: 2\n"], b"\nbody\n"),
        (b"A: 1\n\tfolded\n  twice\nB: 2\n", [b"A: 1\n\tfolded\n  twice\n", b"B: 2\n"], b""),
        (b"A: 1", [b"A: 1\n"], b""),
        # Postfix forces the empty separator line when the header ends on a non-header line.
        (b"no header here\n", [], b"\nno header here\n"),
        (b"A: 1\nnot a header\n", [b"A: 1\n"], b"\nnot a header\n"),
        (b" leading blank\n", [], b"\n leading blank\n"),
        (b"Subject : spaced\n\nx\n", [b"Subject : spaced\n"], b"\nx\n"),
        (b"", [], b""),
        (b"A: 1\r\n\r\nbody\r\n", [b"A: 1\r\n"], b"\r\nbody\r\n"),
    ],
)
def test_message_split(content: bytes, headers: list[bytes], body: bytes) -> None:
    message = message_split(content)
    assert (message.headers, message.body) == (headers, body)


@pytest.mark.parametrize(
    ("value", "addresses"),
    [
        (" a, b@c", ["a", "b@c"]),
        (' Joe Q <joe>, "x y" <x@y> (c)', ["joe", "x@y"]),
        (" undisclosed-recipients:;", []),
        (" grp: a, b;, c", ["a", "b", "c"]),
        (" John Smith", []),
        (' "a b"@c (comment)', ['"a b"@c']),
        (" <@r1,@r2:u@d>", ["u@d"]),
        (" <>", []),
        (" a (one), (two) b", ["a", "b"]),
        (" a\n\t, b", ["a", "b"]),
    ],
)
def test_header_addresses(value: str, addresses: list[str]) -> None:
    assert [value[s:e] for s, e in header_addresses(value)] == addresses


@pytest.mark.parametrize(
    "value",
    [" <a@b.example>", " a@b.example", "a.b+c@d-e.example\n", " \t<x_y@z>\r\n", " <a@b.example",
     " a@b.example>", " <a.@b>", " a..b@c", " a@b..c", " a@[1.2.3.4]", ' "q"@b', " a@b, c@d",
     " <a@b> (c)", " a @b", " Joe <a@b>", " a@b.", " @b", " a@", ""],
)
def test_header_addresses_shortcut_agrees_with_parser(value: str) -> None:
    """One plain address is located without tokenising; the full parser gives the same answer."""
    assert header_addresses(value) == header_addresses_parsed(value)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"From: Joe <joe>\n", b"From: Joe <joe@example.test>\n"),
        (b"To: a,\n\tb@gw (Bee)\n", b"To: a@example.test,\n\tb@example.test (Bee)\n"),
        (b"From: root@h.example.test\n", b"From: root@h.example.test\n"),
        (b"From: user@host.sub.example.test\n", b"From: user@example.test\n"),
        (b"To: undisclosed-recipients:;\n", b"To: undisclosed-recipients:;\n"),
        (b"To:  other@example.org  (spacing kept)\n", b"To:  other@example.org  (spacing kept)\n"),
    ],
)
def test_header_rewrite(header: bytes, expected: bytes) -> None:
    assert header_rewrite(header, LOCAL, MASQ) == expected


def test_header_rewrite_unchanged_is_same_bytes() -> None:
    header = b"Cc: \xc3\xa9l\xc3\xa8ve <eleve@x.example.org>\n"
    assert header_rewrite(header, LOCAL, None) is header


def test_headers_process_counts_drops_and_rewrites() -> None:
    headers = [b"Received: one\n", b"Received: two\n", b"Bcc: secret\n", b"Return-Path: <x>\n",
               b"From: joe\n", b"Subject: joe\n", b"Message-ID: <a@b>\n", b"Resent-To: r\n"]
    found = headers_process(headers, HeaderPolicy(LOCAL, MASQ, frozenset({"bcc", "return-path"})))
    assert found.hops == 2
    assert found.resent
    assert found.message_ids == [("message-id", "<a@b>")]
    assert found.lines == [b"Received: one\n", b"Received: two\n", b"From: joe@example.test\n",
                           b"Subject: joe\n", b"Message-ID: <a@b>\n", b"Resent-To: r@example.test\n"]
    assert {"bcc", "from", "resent-to"} <= found.seen


def test_headers_process_without_rewriting_keeps_addresses() -> None:
    found = headers_process([b"From: joe\n", b"To: x@gw\n"], HeaderPolicy(None, MASQ))
    assert found.lines == [b"From: joe\n", b"To: x@gw\n"]


def test_headers_missing_adds_message_id_date_from() -> None:
    found = headers_process([b"Subject: x\n"], HeaderPolicy(None, None))
    added = headers_missing(found, "A1B2C3D4E5F6", 0.0, 0.0, "mx.example.test", "joe@example.test", "Joe")
    assert added[0] == "Message-Id: <19700101000000.A1B2C3D4E5F6@mx.example.test>"
    assert re.fullmatch("Date: " + DATE_RE, added[1])
    assert added[2] == "From: Joe <joe@example.test>"


def test_headers_missing_not_duplicated_and_resent() -> None:
    present = headers_process([b"message-id: <x@y>\n", b"DATE: now\n", b"from: me\n"],
                              HeaderPolicy(None, None))
    assert headers_missing(present, "ID1234", 0, 0, "h", "s@h", "") == []
    resent = headers_process([b"Resent-To: a@b\n", b"From: me\n", b"Date: d\n"], HeaderPolicy(None, None))
    added = headers_missing(resent, "ID1234", 0, 0, "h", "", "")
    assert [h.split(":")[0] for h in added] == ["Resent-Message-Id", "Resent-Date", "Resent-From"]
    assert added[2] == "Resent-From: MAILER-DAEMON"


@pytest.mark.parametrize(
    ("sender", "fullname", "standard", "expected"),
    [
        ("", "Ignored", True, "From: MAILER-DAEMON"),
        ("joe@x", "", True, "From: joe@x"),
        ("joe@x", "Joe User", True, "From: Joe User <joe@x>"),
        ("joe@x", "Joe Q. User", True, 'From: "Joe Q. User" <joe@x>'),
        ("joe@x", "Joe (J) User", False, "From: joe@x (Joe \\(J\\) User)"),
        ("john doe@x", "", True, 'From: "john doe"@x'),
        ("joe@x", "Jöe", True, "From: =?utf-8?q?J=C3=B6e?= <joe@x>"),
        ("joe@x", "Bad\nName", True, "From: Bad Name <joe@x>"),
    ],
)
def test_from_header(sender: str, fullname: str, standard: bool, expected: str) -> None:
    assert from_header("", sender, fullname, standard) == expected


def test_from_header_folds_long_lines() -> None:
    text = from_header("", "someone@" + "x" * 60 + ".test", "A Rather Long Full Name")
    assert "\n\t<someone@" in text


def test_mail_date_format() -> None:
    assert re.fullmatch(DATE_RE, mail_date(1_700_000_000))
    assert re.fullmatch(DATE_RE, mail_date(0))


def test_received_smtpd_single_and_many_recipients() -> None:
    attrs = {"origin": "smtpd", "client_name": "client.example.org", "client_address": "192.0.2.9",
             "helo": "helo.example.org", "protocol": "ESMTP"}
    one = received_header(attrs, "mx.example.test", "ABCDEF123456", ["user@example.test"], 0)
    assert re.fullmatch(r"Received: from helo.example.org \(client.example.org \[192.0.2.9\]\)\n"
                        r"\tby mx.example.test \(mta\) with ESMTP id ABCDEF123456\n"
                        r"\tfor <user@example.test>; " + DATE_RE, one)
    many = received_header(attrs, "mx.example.test", "ABCDEF123456", ["a@x", "b@x"], 0)
    assert re.fullmatch(r"Received: from .*\n\tby mx.example.test \(mta\) with ESMTP id ABCDEF123456;\n\t"
                        + DATE_RE, many)


def test_received_ipv6_no_helo_and_hostile_text() -> None:
    attrs = {"client_name": "unknown", "client_address": "2001:db8::1", "helo": "evil)\n(x"}
    text = received_header(attrs, "mx", "ID1234", [], 0)
    assert text.startswith("Received: from evil???x (unknown [IPv6:2001:db8::1])\n\tby mx (mta) with ESMTP")
    assert received_header({"client_address": "192.0.2.1"}, "mx", "ID", [], 0).startswith(
        "Received: from unknown (unknown [192.0.2.1])")


def test_received_local_and_internal() -> None:
    local = received_header({"origin": "pickup", "uid": "1000"}, "mx.example.test", "ID1234", ["a"], 0)
    assert re.fullmatch(r"Received: by mx.example.test \(mta, from userid 1000\)\n\tid ID1234; " + DATE_RE,
                        local)
    internal = received_header({"origin": "bounce"}, "mx", "ID1234", [], 0)
    assert internal.startswith("Received: by mx (mta)\n\tid ID1234; ")


def test_message_render_order() -> None:
    out = message_render("Received: r", [b"A: 1\n"], ["Date: d"], b"\nbody\n")
    assert out == b"Received: r\nA: 1\nDate: d\n\nbody\n"
