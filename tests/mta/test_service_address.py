"""Tests for mta.service_address: inet service names split and checked as host_port(3) does."""

from __future__ import annotations

import pytest

from mta.service_address import inet_service_split


@pytest.mark.parametrize(("name", "host", "port"), [
    ("smtp", None, "smtp"),
    ("2525", None, "2525"),
    (":submission", None, "submission"),
    ("127.0.0.1:10025", "127.0.0.1", "10025"),
    ("localhost:smtp", "localhost", "smtp"),
    ("mx_1.example.com:25", "mx_1.example.com", "25"),
    ("[127.0.0.1]:25", "127.0.0.1", "25"),
    ("[::1]:10025", "::1", "10025"),
    ("[IPv6:2001:db8::1]:25", "2001:db8::1", "25"),
    ("::1:25", "::1", "25"),
])
def test_inet_service_split(name: str, host: str | None, port: str) -> None:
    assert inet_service_split(name) == (host, port)


@pytest.mark.parametrize(("name", "reason"), [
    ("127.0.0.1:", "missing service information"),
    ("[::1]", "missing service information"),
    ("[::1", 'missing "]"'),
    ("[::1]25", 'garbage after "]"'),
    ("[ipv6:nope]:25", "malformed IPv6 address"),
    ("[]:25", "valid hostname or network address required"),
    ("-bad-:25", "valid hostname or network address required"),
    ("1.2.3:25", "valid hostname or network address required"),
    ("25x", "garbage after numerical service"),
])
def test_inet_service_split_errors(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{reason}$"):
        inet_service_split(name)
