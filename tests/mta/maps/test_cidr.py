"""Tests for cidr: tables (mta.maps.cidr): patterns, families, negation, if/endif, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mta.errors import ConfigError, MapError
from mta.maps import open_map
from mta.maps.cidr import CidrError, CidrMap, address_parse, cidr_parse


@pytest.fixture(autouse=True)
def _mta_log_reaches_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.main() (other tests) stops the mta logger from propagating; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("mta"), "propagate", True)


def table(tmp_path: Path, text: str, strict: bool = True) -> CidrMap:
    path = tmp_path / "table"
    path.write_text(text)
    return CidrMap(f"cidr:{path}", str(path), strict=strict)


EXAMPLE = """\
192.168.1.1             OK
192.168.0.0/16          REJECT
2001:db8::1             OK6
2001:db8::/32           REJ6
[10.0.0.0]/8            bracket-prefix-outside
[172.16.0.0/12]         bracket-prefix-inside
::ffff:1.2.3.4          mapped
0.0.0.0/0               any4
"""


@pytest.mark.parametrize("key, expected", [
    ("192.168.1.1", "OK"),
    ("192.168.2.3", "REJECT"),
    ("2001:db8::1", "OK6"),
    ("2001:0DB8:0::0001", "OK6"),
    ("2001:db8::2", "REJ6"),
    ("2001:db9::1", None),
    ("10.200.0.1", "bracket-prefix-outside"),
    ("172.31.255.255", "bracket-prefix-inside"),
    ("::ffff:1.2.3.4", "mapped"),
    ("1.2.3.4", "any4"),
    ("::1", None),
    ("[192.168.1.1]", None),
    ("192.168.001.001", None),
    ("fe80::1%eth0", None),
    (" 1.2.3.4", None),
    ("garbage", None),
    ("", None),
])
def test_lookup(tmp_path: Path, key: str, expected: str | None) -> None:
    assert table(tmp_path, EXAMPLE).lookup(key) == expected


@pytest.mark.parametrize("text, key, expected", [
    ("!10.0.0.0/8 not-ten\n", "1.2.3.4", "not-ten"),
    ("!10.0.0.0/8 not-ten\n", "10.1.1.1", None),
    ("!10.0.0.0/8 not-ten\n", "::1", None),          # other family never matches
    ("! 10.0.0.0/8 spaced\n", "1.1.1.1", "spaced"),
    ("!!10.0.0.0/8 double\n", "10.1.1.1", "double"),
    ("if 10.0.0.0/8\n10.1.0.0/16 inner\nendif\n10.0.0.0/8 outer\n", "10.1.2.3", "inner"),
    ("if 10.0.0.0/8\n10.1.0.0/16 inner\nendif\n10.0.0.0/8 outer\n", "10.2.2.2", "outer"),
    ("if !10.0.0.0/8\n0.0.0.0/0 out\nendif\n", "10.1.1.1", None),
    ("if !10.0.0.0/8\n0.0.0.0/0 out\nendif\n", "1.1.1.1", "out"),
    ("IF 10.0.0.0/8\nif 10.1.0.0/16\n10.1.1.0/24 deep\nENDIF\n10.0.0.0/8 mid\nendif\n",
     "10.1.1.1", "deep"),
    ("IF 10.0.0.0/8\nif 10.1.0.0/16\n10.1.1.0/24 deep\nENDIF\n10.0.0.0/8 mid\nendif\n",
     "10.1.2.1", "mid"),
    ("1.2.3.4/032 leading-zero-prefix\n", "1.2.3.4", "leading-zero-prefix"),
    ("1.2.3.4 $1 x\n", "1.2.3.4", "$1 x"),
    ("1.2.3.4 one\n  two\n", "1.2.3.4", "one  two"),
    ("1.2.3.4 first\n1.2.3.4 second\n", "1.2.3.4", "first"),
    ("::1.2.3.4 v4-in-v6\n", "::102:304", "v4-in-v6"),
])
def test_rules(tmp_path: Path, text: str, key: str, expected: str | None) -> None:
    assert table(tmp_path, text).lookup(key) == expected


BAD = [
    ("192.168.1.1/24 OK\n", 'non-null host address bits in "192.168.1.1/24", perhaps you should '
                            'use "192.168.1.0/24" instead'),
    ("2001:DB8::1/32 OK\n", 'non-null host address bits in "2001:DB8::1/32", perhaps you should '
                            'use "2001:db8::/32" instead'),
    ("192.168.1.0/33 OK\n", 'bad mask length in "192.168.1.0/33"'),
    ("2001:db8::/129 OK\n", 'bad mask length in "2001:db8::/129"'),
    ("1.2.3.4/ OK\n", 'bad mask value in "1.2.3.4/"'),
    ("1.2.3.4/0x10 OK\n", 'bad mask value in "1.2.3.4/0x10"'),
    ("1.2.3.4/+32 OK\n", 'bad mask value in "1.2.3.4/+32"'),
    ("192.168.1 OK\n", 'bad address pattern: "192.168.1"'),
    ("010.1.1.1 OK\n", 'bad address pattern: "010.1.1.1"'),
    ("fe80::1%eth0 OK\n", 'bad address pattern: "fe80::1%eth0"'),
    ("1::2::3 OK\n", 'bad address pattern: "1::2::3"'),
    ("[1.2.3.4 OK\n", "missing ']' character after \"[1.2.3.4\""),
    ("1.2.3.4\n", "no lookup result"),
    ("if\n", "no address pattern"),
    ("if 10.0.0.0/8 junk\nendif\n", 'bad mask value in "10.0.0.0/8 junk"'),
    ("endif\n", "ENDIF without IF"),
    ("endif junk\n", "garbage after ENDIF"),
    ("if 10.0.0.0/8\n", "IF has no matching ENDIF"),
]


@pytest.mark.parametrize("text, reason", BAD)
def test_strict_errors(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        table(tmp_path, text)
    assert str(info.value) == f"{tmp_path / 'table'}, line 1: {reason}"


@pytest.mark.parametrize("text, reason", BAD)
def test_lenient_warns_and_skips(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                 text: str, reason: str) -> None:
    with caplog.at_level(logging.WARNING, logger="mta"):
        loaded = table(tmp_path, text + "0.0.0.0/0 fallback\n", strict=False)
    tail = "" if reason.startswith("IF has") else ": skipping this rule"
    assert caplog.messages[0] == f"{tmp_path / 'table'}, line 1: {reason}{tail}"
    assert loaded.lookup("192.168.1.9") in ("fallback", None)


def test_lenient_unclosed_if_swallows_rest(tmp_path: Path) -> None:
    loaded = table(tmp_path, "if 10.0.0.0/8\n0.0.0.0/0 any\n", strict=False)
    assert (loaded.lookup("10.0.0.1"), loaded.lookup("1.1.1.1")) == ("any", None)


def test_parse_helpers() -> None:
    assert cidr_parse("[2001:db8::]/32")[0] == 6
    assert cidr_parse("10.0.0.1") == (4, 0x0A000001, 0xFFFFFFFF)
    assert address_parse("::1") is not None
    with pytest.raises(CidrError):
        cidr_parse("10.0.0.1/8")


def test_inline_rules_and_attributes(tmp_path: Path) -> None:
    loaded = open_map("cidr:{ {10.0.0.0/8 ten}, {!10.0.0.0/8 other} }")
    assert (loaded.lookup("10.1.1.1"), loaded.lookup("11.1.1.1")) == ("ten", "other")
    assert loaded.fixed is False
    with pytest.raises(MapError, match="No such file"):
        open_map(f"cidr:{tmp_path / 'absent'}")
