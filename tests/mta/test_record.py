"""Tests for mta.record: queue-file encoding, parsing, corruption detection and in-place done marks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mta.record import (
    Envelope,
    Recipient,
    RecordError,
    record_encode,
    record_mark_done,
    record_mark_warned,
    record_parse,
    record_read,
    record_write,
)

CONTENT = b"Subject: hi\n\nline one\nX\n.\n"


def envelope() -> Envelope:
    return Envelope(
        sender="alice@example.com",
        recipients=[Recipient("bob@example.com", "Bob@Example.com"), Recipient("carol@example.com")],
        arrival=1700000000.5,
        attrs={"client_address": "127.0.0.1", "helo": "client.example"},
    )


def test_round_trip() -> None:
    env, content = record_parse(record_encode(envelope(), CONTENT))
    assert content == CONTENT
    assert env.sender == "alice@example.com"
    assert env.arrival == 1700000000.5
    assert env.attrs == {"client_address": "127.0.0.1", "helo": "client.example"}
    assert [(r.address, r.original, r.done) for r in env.recipients] == [
        ("bob@example.com", "Bob@Example.com", False), ("carol@example.com", "", False)]


def test_null_sender_and_empty_content() -> None:
    env = Envelope("", [Recipient("x@y")], 1.0)
    parsed, content = record_parse(record_encode(env, b""))
    assert parsed.sender == "" and content == b""


def test_mark_done_in_place_survives_reread(tmp_path: Path) -> None:
    path = tmp_path / "ID"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    record_write(fd, envelope(), CONTENT)
    env, _ = record_read(path)
    size = os.path.getsize(path)
    record_mark_done(fd, env.recipients[1])
    os.close(fd)
    again, content = record_read(path)
    assert [r.done for r in again.recipients] == [False, True]
    assert [r.address for r in again.pending()] == ["bob@example.com"]
    assert os.path.getsize(path) == size and content == CONTENT


def test_warning_time_round_trip_and_mark_in_place(tmp_path: Path) -> None:
    env = envelope()
    assert b"\nW " not in record_encode(env, CONTENT)  # no delay warning asked for: no record
    env.warn_time = 1700014400.9
    data = record_encode(env, CONTENT)
    assert b"\nW      1700014400\nS " in data  # fixed width, so it can be rewritten in place
    path = tmp_path / "ID"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    record_write(fd, env, CONTENT)
    parsed, _ = record_read(path)
    assert parsed.warn_time == 1700014400 and data[parsed.warn_offset:].startswith(b"W ")
    size = os.path.getsize(path)
    record_mark_warned(fd, parsed)
    record_mark_done(fd, parsed.recipients[0])  # recipient offsets are not disturbed
    os.close(fd)
    assert parsed.warn_time == 0
    again, content = record_read(path)
    assert again.warn_time == 0 and again.warn_offset == parsed.warn_offset
    assert [r.done for r in again.recipients] == [True, False]
    assert os.path.getsize(path) == size and content == CONTENT
    with pytest.raises(RecordError, match="no delay warning record"):
        record_mark_warned(-1, envelope())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"junk" + d, "bad magic"),
        (lambda d: d[:-3], "truncated"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d.replace(b"C 26\n", b"C 99\n"), "truncated"),
        (lambda d: d.replace(b"C 26\n", b"C xx\n"), "bad content length"),
        (lambda d: d.replace(b"T 1700000000.500000\n", b"T soon\n"), "bad arrival time"),
        (lambda d: d.replace(b"S alice", b"W soon\nS alice"), "bad warning time"),
        (lambda d: d.replace(b"S alice", b"Q alice"), "unknown record type"),
        (lambda d: d.replace(b"A helo=client.example\n", b"A helo\n"), "bad attribute"),
        (lambda d: d.replace(b"S alice@example.com\n", b""), "missing sender"),
        (lambda d: d[: d.index(b"C ")], "truncated"),
    ],
)
def test_corruption_is_detected(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = record_encode(envelope(), CONTENT)
    with pytest.raises(RecordError, match=message):
        record_parse(mutate(data))


def test_line_breaks_in_addresses_are_refused() -> None:
    env = Envelope("a@b\nR evil@x", [Recipient("c@d")], 1.0)
    with pytest.raises(RecordError, match="line break"):
        record_encode(env, b"")
