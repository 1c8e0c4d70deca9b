"""Tests for inline: and static: tables (mta.maps.inline)."""

from __future__ import annotations

import pytest

from mta.errors import MapError
from mta.maps import maps_find, open_map
from mta.maps.inline import InlineMap, StaticMap, inline_parse


@pytest.mark.parametrize("spec, key, expected", [
    ("inline:{a=b, c=d}", "a", "b"),
    ("inline:{a=b, c=d}", "c", "d"),
    ("inline:{a=b, c=d}", "x", None),
    ("inline:{A=b}", "a", "b"),
    ("inline:{ { a = text with spaces }, c=d }", "a", "text with spaces"),
    ("inline:{a=b\tc=d}", "c", "d"),
    ("inline:{a=b,a=c}", "a", "c"),
    ("inline:{{a=b=c}}", "a", "b=c"),
    ("inline:{{a==c}}", "a", "=c"),
    ("inline:{a={b}}", "a", "{b}"),
    ("inline:{{a={b c}}}", "a", "{b c}"),
    ('inline:{a="b"}', "a", '"b"'),
    ("inline:{a=b,,c=d}", "c", "d"),
    ("inline:{a=}", "a", ""),
    ("inline:{=b}", "", "b"),
])
def test_inline_lookup(spec: str, key: str, expected: str | None) -> None:
    assert maps_find([open_map(spec)], key) == expected


@pytest.mark.parametrize("spec, message", [
    ("inline:{}", 'bad syntax: "inline:{}"; need "inline:{name=value...}"'),
    ("inline:{a=b", 'bad syntax: "inline:{a=b"; need "inline:{name=value...}"'),
    ("inline:a=b", 'bad syntax: "inline:a=b"; need "inline:{name=value...}"'),
    ("inline:{a=b} x", 'bad syntax: "inline:{a=b} x"; need "inline:{name=value...}"'),
    ("inline:{a}", """missing '=' after attribute name: "inline:{a}"; need "inline:{name=value...}\""""),
    ("inline:{a = b}",
     """missing '=' after attribute name: "inline:{a = b}"; need "inline:{name=value...}\""""),
    ("inline:{ { a b = x } }",
     """missing '=' after attribute name: "inline:{ { a b = x } }"; need "inline:{name=value...}\""""),
    ("inline:{ {a=b}x }",
     """syntax error after '}' in "{a=b}x": "inline:{ {a=b}x }"; need "inline:{name=value...}\""""),
    ('inline:{a="b c"}', """unbalanced '"': "inline:{a="b c"}"; need "inline:{name=value...}\""""),
])
def test_inline_errors(spec: str, message: str) -> None:
    with pytest.raises(MapError) as info:
        open_map(spec)
    assert str(info.value) == message


def test_inline_fold_switch() -> None:
    table = open_map("inline:{Key=V, other=W}")
    assert isinstance(table, InlineMap)
    assert table.items() == [("key", "V"), ("other", "W")]
    table.fold_case = False
    assert (table.lookup("Key"), table.lookup("key")) == ("V", None)
    assert table.items() == [("Key", "V"), ("other", "W")]


def test_inline_parse_keeps_case() -> None:
    assert inline_parse("inline:{A=b}", "{A=b}") == [("A", "b")]


@pytest.mark.parametrize("spec, expected", [
    ("static:foo", "foo"),
    ("static:{foo bar}", "foo bar"),
    ("static:{ foo bar }", "foo bar"),
    ("static:foo bar", "foo bar"),
    ("static:{{a}}", "{a}"),
    ("static:{ {a} }", "{a}"),
    ("static:a}", "a}"),
    ("static:{}", ""),
])
def test_static(spec: str, expected: str) -> None:
    table = open_map(spec)
    assert isinstance(table, StaticMap)
    assert (table.lookup("x"), table.lookup("")) == (expected, expected)


@pytest.mark.parametrize("spec, message", [
    ("static:", 'open dictionary: expecting "type:name" form instead of "static:"'),
    ("static:{foo", """bad static:name syntax: missing '}' in "{foo\""""),
    ("static:{a}b", """bad static:name syntax: syntax error after '}' in "{a}b\""""),
    ("static:{a}}", """bad static:name syntax: syntax error after '}' in "{a}}\""""),
])
def test_static_errors(spec: str, message: str) -> None:
    with pytest.raises(MapError) as info:
        open_map(spec)
    assert str(info.value) == message
