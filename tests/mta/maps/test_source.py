"""Tests for mta.maps.source: logical lines, key/value entries, brace lists."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mta.errors import MapError
from mta.maps.source import (
    LogicalLine,
    SourceEntry,
    brace_body,
    brace_tokens,
    source_entries,
    source_inline_lines,
    source_lines,
    source_read,
    source_split,
)


@pytest.fixture(autouse=True)
def _mta_log_reaches_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.main() (other tests) stops the mta logger from propagating; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("mta"), "propagate", True)


def lines_of(text: bytes, path: str = "t") -> list[LogicalLine]:
    return list(source_lines(text.splitlines(keepends=True), path))


@pytest.mark.parametrize("text, expected", [
    (b"a b\nc d\n", [("a b", 1), ("c d", 2)]),
    # continuation keeps the continuation line's whitespace, drops the newline [obs]
    (b"foo bar\n  baz\n", [("foo bar  baz", 1)]),
    (b"foo bar\n\tbaz\n", [("foo bar\tbaz", 1)]),
    (b"foo bar  \n  baz  \n", [("foo bar    baz", 1)]),
    # blank and comment lines do not end a logical line
    (b"foo bar\n \n# c\n  baz\nx y\n", [("foo bar  baz", 1), ("x y", 5)]),
    (b"   # indented comment\n\n", []),
    (b"crlf v\r\n", [("crlf v", 1)]),
    (b"no-newline v", [("no-newline v", 1)]),
    (b"caf\xe9 x\n", [("caf\udce9 x", 1)]),
])
def test_logical_lines(text: bytes, expected: list[tuple[str, int]]) -> None:
    assert [(line.text, line.line) for line in lines_of(text)] == expected


def test_first_line_with_leading_whitespace_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mta"):
        assert lines_of(b"  foo bar\nx y\n") == [LogicalLine("x y", 2)]
    assert caplog.messages == ['t, line 1: logical line must not start with whitespace: "  foo bar"']


@pytest.mark.parametrize("text, expected", [
    ("key value", ("key", "value")),
    ("key\t  value with  spaces", ("key", "value with  spaces")),
    ('"a b"@x.example HOLD', ('"a b"@x.example', "HOLD")),
    ('"a\\"b" x', ('"a\\"b"', "x")),
    ('"a\\\\b" x', ('"a\\\\b"', "x")),
    ('a"b c" x', ('a"b c"', "x")),
    ("novalue", ("novalue", "")),
])
def test_split(text: str, expected: tuple[str, str]) -> None:
    assert source_split(text) == expected


def test_split_unbalanced_quote() -> None:
    with pytest.raises(ValueError, match=r"""unbalanced '"' in '"a b' -- ignoring this line"""):
        source_split('"a b')


@pytest.mark.parametrize("text, fold, duplicates, entries, warnings", [
    ("Foo X\nbar Y\n", True, "warn", [("foo", "X", 1), ("bar", "Y", 2)], []),
    ("Foo X\n", False, "warn", [("Foo", "X", 1)], []),
    ("a 1\nA 2\n", True, "warn", [("a", "1", 1)], ['t, line 2: duplicate entry: "a"']),
    ("a 1\nA 2\n", True, "replace", [("a", "2", 2)], []),
    ("a 1\nA 2\n", True, "ignore", [("a", "1", 1)], []),
    ("a 1\nA 2\n", False, "warn", [("a", "1", 1), ("A", "2", 2)], []),
    ("foo\n", True, "warn", [], ["t, line 1: expected format: key whitespace value"]),
    ("foo: bar\n", True, "warn", [("foo:", "bar", 1)],
     ['t, line 1: record is in "key: value" format; is this an alias file?']),
    ("foo:bar baz\n", True, "warn", [("foo:bar", "baz", 1)], []),
    ('"a b\n', True, "warn", [], ["""t, line 1: unbalanced '"' in '"a b' -- ignoring this line"""]),
    ("ok y\ncaf\xe9 x\n", True, "warn", [("ok", "y", 1)],
     ['t, line 2: non-UTF-8 input "caf? x" -- ignoring this line']),
])
def test_entries(caplog: pytest.LogCaptureFixture, text: str, fold: bool, duplicates: str,
                 entries: list[tuple[str, str, int]], warnings: list[str]) -> None:
    raw = text.encode("latin-1" if "\xe9" in text else "utf-8")
    with caplog.at_level(logging.WARNING, logger="mta"):
        got = source_entries(lines_of(raw), "t", fold=fold, duplicates=duplicates)  # type: ignore[arg-type]
    assert got == [SourceEntry(*entry) for entry in entries]
    assert caplog.messages == warnings


def test_entries_with_existing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mta"):
        got = source_entries(lines_of(b"new v\nold w\n", "stdin"), "stdin",
                             existing=[("old", "kept")])
    assert got == [SourceEntry("old", "kept", 0), SourceEntry("new", "v", 1)]
    assert caplog.messages == ['stdin, line 2: duplicate entry: "old"']


def test_read_file(tmp_path: Path) -> None:
    path = tmp_path / "access"
    path.write_bytes(b"# head\nexample.com REJECT\n  go away\n")
    assert source_read(path) == [SourceEntry("example.com", "REJECT  go away", 2)]


def test_read_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(MapError, match=f"open {tmp_path}/nope: No such file or directory"):
        source_read(tmp_path / "nope")


@pytest.mark.parametrize("text, expected", [
    (" a=b, { c = d e },f", [("a=b", False), ("c = d e", True), ("f", False)]),
    ("{{a=b}},{c}", [("{a=b}", True), ("c", True)]),
    ("", []),
    (" , ,", []),
])
def test_brace_tokens(text: str, expected: list[tuple[str, bool]]) -> None:
    assert brace_tokens(text) == expected


@pytest.mark.parametrize("text, message", [
    ("{a=b", "missing '}' in \"{a=b\""),
    ("{a=b}x c", "syntax error after '}' in \"{a=b}x\""),
])
def test_brace_tokens_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        brace_tokens(text)
    assert str(info.value) == message


@pytest.mark.parametrize("text, expected", [
    ("{a}", "a"),
    ("{ {a}, {b} }", " {a}, {b} "),
    ("{a} ", None),
    ("{a}b", None),
    ("{a}}", None),
    ("{{a}", None),
    ("a", None),
])
def test_brace_body(text: str, expected: str | None) -> None:
    assert brace_body(text) == expected


def test_inline_rules() -> None:
    assert source_inline_lines("{ {/a/ x}, { /b/ y } }", "regexp") == [
        LogicalLine("/a/ x", 1), LogicalLine("/b/ y", 2)]
    assert source_inline_lines("{}", "regexp") == []


@pytest.mark.parametrize("name, message", [
    ("{ /a/ x }", "regexp map: no '{' at start of text in \"/a/\""),
    ("{ {/a/ x}", "regexp map: bad syntax"),
    ("{ {/a/ x}y }", "regexp map: syntax error after '}'"),
])
def test_inline_rules_errors(name: str, message: str) -> None:
    with pytest.raises(MapError) as info:
        source_inline_lines(name, "regexp")
    assert str(info.value).startswith(message)
