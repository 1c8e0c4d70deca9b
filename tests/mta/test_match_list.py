"""Tests for mta.match_list: domain, network and string lists as Postfix's match_list matches them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mta.config import load_config
from mta.errors import ConfigError
from mta.match_list import DomainList, NetworkList, StringList, domain_list, network_list, string_list
from tests.mta.test_derived import INTERFACES


@pytest.fixture(autouse=True)
def _mta_log_reaches_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.main() (other tests) stops the mta logger from propagating; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("mta"), "propagate", True)


# -- domain lists --------------------------------------------------------------

@pytest.mark.parametrize("patterns, parent, name, expected", [
    (["example.com"], False, "example.com", True),
    (["example.com"], False, "EXAMPLE.Com", True),
    (["example.com"], False, "example.com.", True),
    (["example.com"], False, "mx.example.com", False),        # not parent style: exact only
    (["example.com"], True, "mx.example.com", True),          # parent style: subdomains too
    (["example.com"], True, "notexample.com", False),
    ([".example.com"], False, "mx.example.com", True),
    ([".example.com"], False, "a.b.example.com", True),
    ([".example.com"], False, "example.com", False),
    (["Example.COM"], False, "example.com", True),            # patterns are casefolded
    (["!mx.example.com", "example.com"], True, "mx.example.com", False),
    (["!mx.example.com", "example.com"], True, "www.example.com", True),
    (["example.com", "!mx.example.com"], True, "mx.example.com", True),   # first match wins
    (["!!example.com"], False, "example.com", True),          # each ! toggles
    ([], False, "example.com", False),
    (["example.com"], False, "", False),
])
def test_domain_list(patterns: list[str], parent: bool, name: str, expected: bool) -> None:
    assert DomainList("test_list", patterns, parent=parent).match(name) is expected


@pytest.mark.parametrize("parent, name, expected", [
    (False, "example.net", True),
    (False, "mx.example.net", False),     # non-parent keys are ".example.net", not in the table
    (False, "mx.dot.example", True),      # ".dot.example" is a key
    (True, "mx.example.net", True),       # parent keys: "example.net"
    (True, "a.b.example.net", True),
    (True, "other.test", False),
])
def test_domain_list_fixed_table_parent_lookups(parent: bool, name: str, expected: bool) -> None:
    table = "inline:{example.net=x, .dot.example=y}"
    assert DomainList("test_list", [table], parent=parent).match(name) is expected


def test_domain_list_pattern_table_sees_only_the_full_name() -> None:
    lst = DomainList("relay_domains", ["regexp:{{/^example\\.org$/ x}}"], parent=True)
    assert lst.match("example.org")
    assert not lst.match("mx.example.org")   # regexp tables get no parent-domain keys


def test_domain_list_negated_table() -> None:
    lst = DomainList("mydestination", ["!inline:{bad.example=1}", "static:any"], parent=False)
    assert not lst.match("bad.example")
    assert lst.match("good.example")


def test_parent_style_follows_parent_domain_matches_subdomains(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("relay_domains = example.com\nmydestination = example.com\n")
    cfg = load_config(tmp_path, hostname="gw.example.com", interfaces=INTERFACES)
    assert domain_list(cfg, "relay_domains").match("sub.example.com")       # listed by default
    assert not domain_list(cfg, "mydestination").match("sub.example.com")   # not listed
    (tmp_path / "main.cf").write_text("relay_domains = example.com\nparent_domain_matches_subdomains =\n")
    cfg = load_config(tmp_path, hostname="gw.example.com", interfaces=INTERFACES)
    assert not domain_list(cfg, "relay_domains").match("sub.example.com")


def test_mydestination_default_and_file_entries(tmp_path: Path) -> None:
    (tmp_path / "domains").write_text("# local domains\nexample.org\n  other.example\n!no.example.net\n")
    (tmp_path / "main.cf").write_text(f"mydestination = $myhostname, localhost, {tmp_path}/domains\n")
    cfg = load_config(tmp_path, hostname="gw.example.com", interfaces=INTERFACES)
    lst = domain_list(cfg, "mydestination")
    assert [lst.match(n) for n in ("gw.example.com", "localhost", "example.org", "other.example")] == [True] * 4
    assert not lst.match("no.example.net")
    assert not lst.match("example.com")


# -- network lists -------------------------------------------------------------

NETWORKS = ["127.0.0.0/8", "192.0.2.7", "[2001:db8::]/32", "[::1]", "!10.1.0.0/16", "10.0.0.0/8"]


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1", True),
    ("127.255.1.2", True),
    ("192.0.2.7", True),
    ("192.0.2.8", False),
    ("2001:db8::25", True),
    ("2001:DB8:0:0::1", True),
    ("2001:db9::1", False),
    ("::1", True),
    ("0:0:0:0:0:0:0:1", True),        # another spelling of [::1]
    ("10.1.2.3", False),              # the negation comes first
    ("10.2.3.4", True),
    ("unknown", False),
    ("", False),
])
def test_network_list(address: str, expected: bool) -> None:
    assert NetworkList("mynetworks", NETWORKS).match(address) is expected


def test_network_list_table_is_asked_for_the_address() -> None:
    lst = NetworkList("mynetworks", ["cidr:{{192.0.2.0/24 ok}}", "inline:{198.51.100.9=1}"])
    assert lst.match("192.0.2.200")
    assert lst.match("198.51.100.9")
    assert not lst.match("198.51.100.10")


def test_network_list_host_names_match_the_client_name() -> None:
    lst = NetworkList("mynetworks", ["!bad.example.net", "example.net"], parent=True)
    assert lst.match("203.0.113.1", "mx.example.net")      # parent style (mynetworks is listed)
    assert not lst.match("203.0.113.1", "bad.example.net")
    assert not lst.match("203.0.113.1", "unknown")
    assert not lst.match("203.0.113.1")


def test_dot_pattern_in_parent_style_matches_no_subdomain() -> None:
    # Postfix 3.7 match_hostname(): with the parent flag a ".domain" pattern is only
    # compared as a parent *name*, so it never matches (the "." must precede it).
    assert not DomainList("relay_domains", [".example.net"], parent=True).match("mx.example.net")
    assert DomainList("relay_domains", [".example.net"], parent=True).match(".example.net")


@pytest.mark.parametrize("pattern, message", [
    ("192.0.2.1/24", 'non-null host address bits in "192.0.2.1/24", perhaps you should use '
                     '"192.0.2.0/24" instead'),
    ("192.0.2.0/33", 'bad mask length in "192.0.2.0/33"'),
    ("[2001:db8::1]/32", "non-null host address bits"),
])
def test_network_list_bad_pattern_is_a_config_error(pattern: str, message: str) -> None:
    with pytest.raises(ConfigError, match="mynetworks: " + message.replace("[", "\\[").replace(".", "\\.")):
        NetworkList("mynetworks", [pattern])


def test_bare_ipv6_is_a_table_name_and_an_error() -> None:
    with pytest.raises(ConfigError, match="unsupported dictionary type"):
        NetworkList("mynetworks", ["::1"])


def test_mynetworks_default_from_mynetworks_style(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("mynetworks_style = host\n")
    cfg = load_config(tmp_path, hostname="gw.example.com", interfaces=INTERFACES)
    lst = network_list(cfg, "mynetworks")
    assert lst.match("127.0.0.1") and lst.match("192.0.2.2") and lst.match("::1")
    assert not lst.match("127.0.0.2") and not lst.match("192.0.2.3")
    (tmp_path / "main.cf").write_text("mynetworks_style = subnet\n")
    cfg = load_config(tmp_path, hostname="gw.example.com", interfaces=INTERFACES)
    lst = network_list(cfg, "mynetworks")
    assert lst.match("127.0.0.2") and lst.match("192.0.2.3") and lst.match("fd00::7")


# -- failures --------------------------------------------------------------------

def test_missing_table_is_a_warning_and_a_lookup_error(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    missing = f"hash:{tmp_path}/nonexistent"
    lst = DomainList("relay_domains", ["example.com", missing], parent=True)
    assert "relay_domains: " + missing in caplog.text
    assert lst.match("example.com") and not lst.error       # decided before the broken table
    assert not lst.match("example.net")
    assert lst.error                                        # "no" is uncertain: try again later
    assert "table lookup problem" in caplog.text
    # Answers are remembered, but an uncertain one is not: asked again, the table is asked again.
    caplog.clear()
    assert lst.match("example.com") and not lst.error
    assert not lst.match("example.net") and lst.error
    assert "table lookup problem" in caplog.text


def test_answers_are_remembered_per_key(tmp_path: Path) -> None:
    """A pcre table's answer for a name is kept: the list does not ask the table twice."""
    table = tmp_path / "domains.pcre"
    table.write_text("/^a\\.example$/ OK\n")
    lst = DomainList("relay_domains", [f"pcre:{table}"], parent=True)
    pattern = lst.patterns[0]
    assert pattern.table is not None
    asked: list[str] = []
    lookup = pattern.table.lookup
    pattern.table.lookup = lambda key: asked.append(key) or lookup(key)  # type: ignore[method-assign]
    assert [lst.match("A.example."), lst.match("a.example"), lst.match("b.example")] == [True, True, False]
    assert lst.match("b.example") is False
    assert asked == ["a.example", "b.example"]


def test_no_pattern_after_negation() -> None:
    with pytest.raises(ConfigError, match="no pattern after '!'"):
        DomainList("mydestination", ["!"])


# -- string lists ------------------------------------------------------------------

@pytest.mark.parametrize("word, expected", [
    ("CONNECT", True), ("connect", True), ("GET", True), ("POST", True),
    ("FOO", False), ("Bogus", False),
    ("8BITS", True), ("<script>", True), ("", False),
])
def test_forbidden_commands_default(tmp_path: Path, word: str, expected: bool) -> None:
    cfg = load_config(tmp_path, hostname="gw.example.com", interfaces=INTERFACES)
    assert string_list(cfg, "smtpd_forbidden_commands").match(word) is expected


def test_string_list_is_exact() -> None:
    lst = StringList("authorized_submit_users", ["!nobody", "alice", "static:all"])
    assert lst.match("ALICE") and lst.match("bob") and not lst.match("nobody")
