"""Tests for mta.smtp: next hops (brackets, MX order, fallback), and what an unreachable server defers with."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from mta import proto
from mta.dns_lookup import DnsClient
from mta.smtp import Settings, hosts_for, smtp_deliver
from tests.dns_server import DnsServer
from tests.mta.qmgr.conftest import enqueue, qdir  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the test DNS server needs port 53")


@pytest.fixture()
def dns(tmp_path: Path) -> DnsClient:
    server = DnsServer("127.0.0.53", {
        ("example.test", "MX"): ["20 mx2.example.test.", "10 mx1.example.test.", "20 mx3.example.test."],
        ("mx1.example.test", "A"): ["127.0.0.1"],
        ("plain.example", "A"): ["127.0.0.1"],
    })
    try:
        yield DnsClient(str(server.resolv_conf(tmp_path)), timeout=2)  # type: ignore[misc]
    finally:
        server.close()


def test_next_hops(dns: DnsClient) -> None:
    assert hosts_for("[192.0.2.7]:2525", dns) == [("192.0.2.7", 2525)]
    assert hosts_for("[mail.internal]", dns) == [("mail.internal", 25)]  # brackets: no MX lookup
    # RFC 5321 section 5.1: lowest preference first; equal ones (20) after it, in random order.
    for nexthop, port in (("example.test", 25), ("example.test:2525", 2525)):
        found = hosts_for(nexthop, dns)
        assert found[0] == ("mx1.example.test", port)
        assert sorted(found[1:]) == [("mx2.example.test", port), ("mx3.example.test", port)]
    assert hosts_for("plain.example", dns) == [("plain.example", 25)]  # no MX: the name's own address


def test_unreachable_server_defers_every_recipient(dns: DnsClient, qdir: Path) -> None:  # noqa: F811
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    queue_id = enqueue(qdir, ["a@example.test", "b@example.test"])
    settings = Settings(qdir, "gw.example.test", 5.0, "")
    request = {"op": "deliver", "queue_name": "incoming", "queue_id": queue_id, "nexthop": f"[127.0.0.1]:{port}",
               "recipients": [{"address": "a@example.test", "offset": 1}, {"address": "b@example.test", "offset": 2}]}
    reply = smtp_deliver(settings, dns, request)
    assert [(r["status"], r["dsn"]) for r in reply["recipients"]] == [(proto.TEMPFAIL, "4.4.1")] * 2
    assert reply["recipients"][0]["reason"] == f"connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused"
    # A name that does not resolve at all.
    request["nexthop"] = "nowhere.invalid"
    reply = smtp_deliver(settings, dns, request)
    assert reply["recipients"][0]["reason"].startswith("Host or domain name not found")
