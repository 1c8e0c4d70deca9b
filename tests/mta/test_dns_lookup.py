"""Tests for mta.dns_lookup against the test DNS server on 127.0.0.53 (never the machine's resolver)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from mta.dns_lookup import DnsClient, reverse_name
from tests.dns_server import DnsServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="port 53 needs root")


@pytest.fixture
def dns_client(tmp_path: Path) -> Iterator[tuple[DnsClient, DnsServer]]:
    server = DnsServer("127.0.0.53", {
        ("mx.example.test", "A"): ["192.0.2.25"],
        ("example.test", "MX"): ["10 mx.example.test."],
        ("2.0.0.127.rbl.test", "A"): ["127.0.0.2"],
        ("2.0.0.127.rbl.test", "TXT"): ['"listed for testing"'],
    }, fail={"broken.test"})
    try:
        yield DnsClient(str(server.resolv_conf(tmp_path)), timeout=2), server
    finally:
        server.close()


def test_lookups(dns_client: tuple[DnsClient, DnsServer]) -> None:
    client, server = dns_client
    assert client.lookup("mx.example.test", "A").values == ("192.0.2.25",)
    assert client.lookup("2.0.0.127.rbl.test", "TXT").values == ("listed for testing",)
    assert client.lookup("nothing.test", "A").status == "none"
    assert client.lookup("mx.example.test", "MX").status == "none"
    assert client.lookup("broken.test", "A").status == "tempfail"
    assert client.domain_exists("example.test") == "found"
    assert client.domain_exists("nothing.test") == "none"
    assert ("mx.example.test", "A") in server.queries


def test_reverse_name() -> None:
    assert reverse_name("192.0.2.1", "zen.example") == "1.2.0.192.zen.example"
    assert reverse_name("2001:db8::1", "z").startswith("1.0.0.0.0.0.0.0") and reverse_name("2001:db8::1", "z").endswith(
        "8.b.d.0.1.0.0.2.z")
    assert reverse_name("nonsense", "z") is None
