"""Tests for mta.access: the order in which access tables are searched (smtpd_check)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mta.access import (
    AccessMatch,
    access_find_address,
    access_find_client,
    access_find_host,
    access_find_ip,
    access_parent_style,
    address_has_routing,
    address_keys,
    domain_keys,
    ip_keys,
    localpart_quote,
    localpart_strip,
)
from mta.commands.postmap import postmap_build
from mta.maps import Map, open_map


@pytest.fixture(autouse=True)
def _mta_log_reaches_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.main() (other tests) stops the mta logger from propagating; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("mta"), "propagate", True)


class Recorder(Map):
    """A table that finds nothing and remembers which keys it was asked for."""

    def __init__(self, *, fixed: bool = True, fold_case: bool = True) -> None:
        super().__init__("recorder:")
        self.fixed = fixed
        self.fold_case = fold_case
        self.keys: list[str] = []

    def lookup(self, key: str) -> str | None:
        self.keys.append(key)
        return None


NO_PARENT = ("relay_domains",)


@pytest.mark.parametrize("address, options, keys", [
    ("user@example.com", {},
     ["user@example.com", "example.com", "com", "user@"]),
    ("user+ext@sub.example.com", {"recipient_delimiter": "+"},
     ["user+ext@sub.example.com", "user@sub.example.com", "sub.example.com", "example.com", "com",
      "user+ext@", "user@"]),
    ("user+ext@example.com", {},
     ["user+ext@example.com", "example.com", "com", "user+ext@"]),
    ("user@sub.example.com", {"parent_domain_matches_subdomains": NO_PARENT},
     ["user@sub.example.com", "sub.example.com", ".example.com", ".com", "user@"]),
    ("a-b_c@example.com", {"recipient_delimiter": "-_"},
     ["a-b_c@example.com", "a@example.com", "example.com", "com", "a-b_c@", "a@"]),
    ("postmaster+x@example.com", {"recipient_delimiter": "+"},
     ["postmaster+x@example.com", "postmaster@example.com", "example.com", "com",
      "postmaster+x@", "postmaster@"]),
    ("postmaster@example.com", {"recipient_delimiter": "+"},
     ["postmaster@example.com", "example.com", "com", "postmaster@"]),
    ("owner-list@example.com", {"recipient_delimiter": "-"},
     ["owner-list@example.com", "example.com", "com", "owner-list@"]),
    ("list-request@example.com", {"recipient_delimiter": "-"},
     ["list-request@example.com", "example.com", "com", "list-request@"]),
    ("owner-list@example.com", {"recipient_delimiter": "-", "owner_request_special": False},
     ["owner-list@example.com", "owner@example.com", "example.com", "com", "owner-list@", "owner@"]),
    ("+ext@example.com", {"recipient_delimiter": "+"},
     ["+ext@example.com", "example.com", "com", "+ext@"]),
    ("a b@example.com", {},
     ['"a b"@example.com', "a b@example.com", "example.com", "com", '"a b"@', "a b@"]),
    ("User@Example.COM", {},
     ["user@example.com", "example.com", "com", "user@"]),
])
def test_address_lookup_order(address: str, options: dict[str, object], keys: list[str]) -> None:
    table = Recorder()
    assert access_find_address([table], address, **options) is None  # type: ignore[arg-type]
    assert table.keys == keys


def test_pattern_tables_only_see_the_full_address() -> None:
    fixed, pattern = Recorder(), Recorder(fixed=False, fold_case=False)
    access_find_address([pattern, fixed], "User+x@Sub.Example.com", recipient_delimiter="+")
    assert pattern.keys == ["User+x@Sub.Example.com"]
    assert fixed.keys[:2] == ["user+x@sub.example.com", "user@sub.example.com"]


def test_null_sender() -> None:
    fixed, pattern = Recorder(), Recorder(fixed=False)
    assert access_find_address([fixed, pattern], "") is None
    assert (fixed.keys, pattern.keys) == (["<>"], ["<>"])
    quiet = Recorder()
    assert access_find_address([quiet], "", null_access_lookup_key="") is None
    assert quiet.keys == []
    found = access_find_address([open_map("inline:{<>=REJECT}")], "")
    assert found == AccessMatch("<>", "REJECT")


def test_address_without_domain_is_not_looked_up(caplog: pytest.LogCaptureFixture) -> None:
    table = Recorder()
    with caplog.at_level(logging.WARNING, logger="mta"):
        assert access_find_address([table], "user") is None
    assert table.keys == []
    assert caplog.messages == ["access: no @domain in address: user"]


ACCESS = """\
user+special@example.com   special
user@example.com           plain-user
example.com                domain
.example.org               dot-subdomains
blocked@                   any-domain
stop.example.net           DUNNO
example.net                REJECT
<>                         null-sender
"""


@pytest.fixture
def access_hash(tmp_path: Path) -> Map:
    path = tmp_path / "access"
    path.write_text(ACCESS)
    postmap_build(path)
    return open_map(f"hash:{path}")


@pytest.mark.parametrize("address, delimiter, parent, expected", [
    ("user+special@example.com", "+", True, ("user+special@example.com", "special")),
    ("user+other@example.com", "+", True, ("user@example.com", "plain-user")),
    ("user+other@example.com", "", True, ("example.com", "domain")),
    ("bob@example.com", "+", True, ("example.com", "domain")),
    ("bob@mail.example.com", "+", True, ("example.com", "domain")),
    ("bob@mail.example.com", "+", False, None),
    ("bob@example.org", "+", False, None),
    ("bob@mail.example.org", "+", False, (".example.org", "dot-subdomains")),
    ("blocked@elsewhere.test", "+", True, ("blocked@", "any-domain")),
    ("blocked+x@elsewhere.test", "+", True, ("blocked@", "any-domain")),
    # DUNNO is a match: the search stops before the parent domain's REJECT
    ("bob@stop.example.net", "+", True, ("stop.example.net", "DUNNO")),
    ("bob@a.stop.example.net", "+", True, ("stop.example.net", "DUNNO")),
    ("bob@other.example.net", "+", True, ("example.net", "REJECT")),
    ("", "+", True, ("<>", "null-sender")),
])
def test_address_lookup_in_hash_table(access_hash: Map, address: str, delimiter: str, parent: bool,
                                      expected: tuple[str, str] | None) -> None:
    pdms = ("smtpd_access_maps",) if parent else NO_PARENT
    found = access_find_address([access_hash], address, recipient_delimiter=delimiter,
                                parent_domain_matches_subdomains=pdms)
    assert found == (AccessMatch(*expected) if expected else None)


def test_tables_searched_key_by_key(access_hash: Map) -> None:
    """For each key every table is tried before the next key (Postfix's maps_find)."""
    later = open_map("inline:{user+other@example.com=from-second-table}")
    found = access_find_address([access_hash, later], "user+other@example.com", recipient_delimiter="+")
    assert found == AccessMatch("user+other@example.com", "from-second-table")


def test_regexp_table_gets_whole_address(tmp_path: Path) -> None:
    path = tmp_path / "re"
    path.write_text("/^example\\.com$/ domain-only\n/^(.*)@example\\.com$/ user=$1\n")
    table = open_map(f"regexp:{path}")
    assert access_find_address([table], "Bob+x@example.com", recipient_delimiter="+") == \
        AccessMatch("Bob+x@example.com", "user=Bob+x")


@pytest.mark.parametrize("hostname, parent, keys", [
    ("mail.example.com", True, ["mail.example.com", "example.com", "com"]),
    ("mail.example.com", False, ["mail.example.com", ".example.com", ".com"]),
    ("host.example.", True, ["host.example.", "example."]),
    ("host.example.", False, ["host.example.", ".example.", "."]),
    ("localhost", True, ["localhost"]),
    ("1.2.3.4", True, ["1.2.3.4"]),
    ("", True, []),
])
def test_host_lookup_order(hostname: str, parent: bool, keys: list[str]) -> None:
    table = Recorder()
    pdms = ("smtpd_access_maps",) if parent else NO_PARENT
    assert access_find_host([table], hostname, parent_domain_matches_subdomains=pdms) is None
    assert table.keys == keys


@pytest.mark.parametrize("address, keys", [
    ("192.0.2.10", ["192.0.2.10", "192.0.2", "192.0", "192"]),
    ("2001:db8:1::5", ["2001:db8:1::5", "2001:db8:1:", "2001:db8:1", "2001:db8", "2001"]),
    ("::1", ["::1", ":"]),
])
def test_ip_lookup_order(address: str, keys: list[str]) -> None:
    table = Recorder()
    assert access_find_ip([table], address) is None
    assert table.keys == keys
    assert ip_keys(address)[:len(keys)] == keys


def test_client_name_before_address_and_cidr_full_key_only(tmp_path: Path) -> None:
    fixed, cidr = Recorder(), Recorder(fixed=False)
    access_find_client([fixed, cidr], "mail.example.com", "192.0.2.10")
    assert fixed.keys == ["mail.example.com", "example.com", "com",
                          "192.0.2.10", "192.0.2", "192.0", "192"]
    assert cidr.keys == ["mail.example.com", "192.0.2.10"]


def test_client_lookup_in_real_tables(tmp_path: Path) -> None:
    src = tmp_path / "clients"
    src.write_text("192.0.2 REJECT net\nexample.com OK\n")
    postmap_build(src)
    cidr_path = tmp_path / "cidr"
    cidr_path.write_text("198.51.100.0/24 cidr-hit\n")
    maps = [open_map(f"hash:{src}"), open_map(f"cidr:{cidr_path}")]
    assert access_find_client(maps, "unknown", "192.0.2.77") == AccessMatch("192.0.2", "REJECT net")
    assert access_find_client(maps, "mx.example.com", "192.0.2.77") == AccessMatch("example.com", "OK")
    assert access_find_client(maps, "unknown", "198.51.100.9") == AccessMatch("198.51.100.9", "cidr-hit")
    assert access_find_client(maps, "unknown", "203.0.113.1") is None


@pytest.mark.parametrize("localpart, delimiter, expected", [
    ("user+foo+bar", "+", "user"),
    ("user", "+", None),
    ("+foo", "+", None),
    ("MAILER-DAEMON+x", "+", "MAILER-DAEMON"),
    ("mailer-daemon", "-", None),
    ("double-bounce", "-", None),
    ("owner-list", "-", None),
    ("list-request", "-", None),
    ("list-request", "+", None),
    ("a-request", "-", None),
    ("x-y", "+-", "x"),
    ("user+foo", "", None),
])
def test_localpart_strip(localpart: str, delimiter: str, expected: str | None) -> None:
    assert localpart_strip(localpart, delimiter) == expected


@pytest.mark.parametrize("localpart, expected", [
    ("first.last", "first.last"),
    ("a b", '"a b"'),
    ('a"b', '"a\\"b"'),
    (".lead", '".lead"'),
    ("two..dots", '"two..dots"'),
    ("semi;colon", '"semi;colon"'),
])
def test_localpart_quote(localpart: str, expected: str) -> None:
    assert localpart_quote(localpart) == expected


def test_helpers() -> None:
    assert access_parent_style(["smtpd_access_maps", "relay_domains"])
    assert not access_parent_style([])
    assert domain_keys("a.b.c", parent_style=False) == ["a.b.c", ".b.c", ".c"]
    assert address_keys("u@d")[0] == ("u@d", False)
    assert address_has_routing("a!b@c") and not address_has_routing("plain@example.com")
