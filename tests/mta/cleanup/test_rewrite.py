"""mta.cleanup.rewrite: appending @$myorigin and .$mydomain, masquerading, header rewrite clients."""

from __future__ import annotations

import pytest

from mta.cleanup.rewrite import (
    MASQ_CLASSES,
    RewriteClients,
    RewriteContext,
    address_quote,
    address_rewrite,
    address_split,
    local_unquote,
    masquerade_address,
    masquerade_create,
)
from mta.errors import ConfigError
from mta.match_list import NetworkList

LOCAL = RewriteContext("host.example.test", "example.test")
NO_DOT = RewriteContext("host.example.test", "")
NOTHING = RewriteContext("", "", swap_bangpath=False, percent_hack=False)


@pytest.mark.parametrize(
    ("context", "address", "expected"),
    [
        (LOCAL, "root", "root@host.example.test"),
        (LOCAL, "user@gw", "user@gw.example.test"),
        (NO_DOT, "user@gw", "user@gw"),
        (LOCAL, "user@gw.other.test", "user@gw.other.test"),
        (LOCAL, "user@[192.0.2.1]", "user@[192.0.2.1]"),
        (LOCAL, "user@x.test.", "user@x.test"),
        (LOCAL, "gw!user", "user@gw.example.test"),
        (LOCAL, "user%gw.test", "user@gw.test"),
        (NOTHING, "gw!user", "gw!user"),
        (NOTHING, "root", "root"),
        (LOCAL, "", ""),
        (LOCAL, "@", ""),
        (LOCAL, "@r1,@r2:user@x.test", "user@x.test"),
        (LOCAL, '"john doe"', '"john doe"@host.example.test'),
        (LOCAL, '"a@b"@x.test', '"a@b"@x.test'),
        (LOCAL, "john doe", "john doe@host.example.test"),
    ],
)
def test_address_rewrite(context: RewriteContext, address: str, expected: str) -> None:
    assert address_rewrite(context, address) == expected


def test_address_helpers() -> None:
    assert address_split('"x@y"@z') == ('"x@y"', "z")
    assert address_split("bare") == ("bare", None)
    assert local_unquote('"a\\"b c"') == 'a"b c'
    assert address_quote("john doe@x") == '"john doe"@x'
    assert address_quote("MAILER-DAEMON") == "MAILER-DAEMON"
    assert address_quote("") == ""


# Reference §7, observed with masquerade_domains = !keep.example.test, example.test
# and masquerade_exceptions = root.
MASQ = masquerade_create(["!keep.example.test", "example.test"], ["root"], sorted(MASQ_CLASSES))


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("user@host.sub.example.test", "user@example.test"),
        ("root@host.example.test", "root@host.example.test"),
        ("ROOT@host.example.test", "ROOT@host.example.test"),
        ("user@a.keep.example.test", "user@a.keep.example.test"),
        ("user@keep.example.test", "user@keep.example.test"),
        ("user@other.example.org", "user@other.example.org"),
        ("user@example.test", "user@example.test"),
        ("user@HOST.Example.Test", "user@example.test"),
        ("user", "user"),
        ("", ""),
    ],
)
def test_masquerade_reference_table(address: str, expected: str) -> None:
    assert masquerade_address(MASQ, address) == expected


def test_masquerade_first_match_wins() -> None:
    masq = masquerade_create(["foo.example.com", "example.com"], [], ["envelope_sender"])
    assert masquerade_address(masq, "a@x.foo.example.com") == "a@foo.example.com"
    # An exact match with an earlier entry leaves the address alone.
    assert masquerade_address(masq, "a@foo.example.com") == "a@foo.example.com"
    assert masquerade_address(masq, "a@bar.example.com") == "a@example.com"


def test_masquerade_classes() -> None:
    masq = masquerade_create(["example.test"], [], ["envelope_sender", "header_sender", "header_recipient"])
    assert masq.applies("envelope_sender") and masq.applies("header_recipient")
    assert not masq.applies("envelope_recipient")
    assert not masquerade_create([], [], ["envelope_sender"]).applies("envelope_sender")
    with pytest.raises(ConfigError, match="unknown address class: bogus"):
        masquerade_create(["x"], [], ["bogus"])


def test_masquerade_exceptions_table() -> None:
    masq = masquerade_create(["example.test"], ["inline:{ postmaster=yes }"], ["envelope_sender"])
    assert masquerade_address(masq, "postmaster@h.example.test") == "postmaster@h.example.test"
    assert masquerade_address(masq, "user@h.example.test") == "user@example.test"


@pytest.mark.parametrize(
    ("entries", "attrs", "expected"),
    [
        (["permit_inet_interfaces"], {"client_address": "127.0.0.1"}, True),
        (["permit_inet_interfaces"], {"client_address": "::1"}, True),
        (["permit_inet_interfaces"], {"client_address": "192.0.2.2"}, True),
        (["permit_inet_interfaces"], {"client_address": "192.0.2.99"}, False),
        (["permit_inet_interfaces"], {"client_address": "::ffff:192.0.2.2"}, True),
        (["permit_mynetworks"], {"client_address": "10.1.2.3"}, True),
        (["permit_mynetworks"], {"client_address": "192.0.2.99"}, False),
        (["permit_sasl_authenticated"], {"client_address": "192.0.2.99", "sasl_username": "u"}, True),
        (["check_address_map", "inline:{ 192.0.2.7=ok }"], {"client_address": "192.0.2.7"}, True),
        (["check_address_map", "inline:{ 192.0.2.7=ok }"], {"client_address": "192.0.2.8"}, False),
        (["static:all"], {"client_address": "203.0.113.1"}, True),
        ([], {"client_address": "127.0.0.1"}, False),
        (["permit_inet_interfaces"], {"client_address": "not-an-ip"}, False),
    ],
)
def test_rewrite_clients(entries: list[str], attrs: dict[str, str], expected: bool) -> None:
    clients = RewriteClients(entries, ["192.0.2.2"], NetworkList("mynetworks", ["10.0.0.0/8"]))
    assert clients.match(attrs) is expected
