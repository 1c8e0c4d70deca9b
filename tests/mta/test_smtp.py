"""Tests for mta.smtp: next hops (brackets, MX order, fallback), the SMTP conversation against a real
server (aiosmtpd, scripted replies), per-recipient results, connection reuse, hop failures, timeouts."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from mta import proto
from mta.dns_lookup import DnsClient
from mta.smtp import HopError, SessionCache, Settings, Timeouts, hosts_for, smtp_deliver
from tests.conftest import wait_for
from tests.dns_server import DnsServer
from tests.mta.qmgr.conftest import enqueue, qdir  # noqa: F401 - the fixture
from tests.smtp_server import ScriptedSmtp, free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the test DNS server needs port 53")

CONTENT = b"Subject: test\n\nline one\n.starts with a dot\n..two dots\n"


@pytest.fixture()
def dns(tmp_path: Path) -> Iterator[DnsClient]:
    server = DnsServer("127.0.0.53", {
        ("example.test", "MX"): ["20 mx2.example.test.", "10 mx1.example.test.", "20 mx3.example.test."],
        ("mx1.example.test", "A"): ["127.0.0.1"],
        ("plain.example", "A"): ["127.0.0.1"],
        ("fallback.test", "MX"): ["10 mx1.fallback.test.", "20 mx2.fallback.test."],
        ("mx1.fallback.test", "A"): ["127.0.0.61"],
        ("mx2.fallback.test", "A"): ["127.0.0.62"],
        ("six.example", "AAAA"): ["::1"],
    }, fail={"broken.test"})
    try:
        yield DnsClient(str(server.resolv_conf(tmp_path)), timeout=2)
    finally:
        server.close()


@pytest.fixture()
def sink() -> Iterator[ScriptedSmtp]:
    with ScriptedSmtp("127.0.0.1") as server:
        yield server


def settings(qdir: Path, **changes: Any) -> Settings:  # noqa: F811
    base = Settings(qdir, "gw.example.test", timeouts=Timeouts(connect=5, rset=2, quit=2))
    return dataclasses.replace(base, **changes)


def request(qdir: Path, nexthop: str, *recipients: str, sender: str = "alice@example.test",  # noqa: F811
            content: bytes = CONTENT) -> dict[str, Any]:
    queue_id = enqueue(qdir, list(recipients), sender=sender, content=content)
    return {"op": "deliver", "queue_name": "incoming", "queue_id": queue_id, "nexthop": nexthop, "sender": sender,
            "recipients": [{"address": a, "offset": i + 1} for i, a in enumerate(recipients)]}


def outcomes(reply: dict[str, Any]) -> list[tuple[int, str]]:
    return [(r["status"], r["dsn"]) for r in reply["recipients"]]


def test_next_hops(dns: DnsClient) -> None:
    assert hosts_for("[192.0.2.7]:2525", dns) == [("192.0.2.7", 2525)]
    assert hosts_for("[mail.internal]", dns) == [("mail.internal", 25)]  # brackets: no MX lookup
    assert hosts_for("127.0.0.9:26", dns) == [("127.0.0.9", 26)]  # an address: no MX lookup either
    # RFC 5321 section 5.1: lowest preference first; equal ones (20) after it, in random order.
    for nexthop, port in (("example.test", 25), ("example.test:2525", 2525)):
        found = hosts_for(nexthop, dns)
        assert found[0] == ("mx1.example.test", port)
        assert sorted(found[1:]) == [("mx2.example.test", port), ("mx3.example.test", port)]
    assert hosts_for("plain.example", dns) == [("plain.example", 25)]  # no MX: the name's own address
    with pytest.raises(HopError, match="name=broken.test type=MX: Host not found, try again"):
        hosts_for("broken.test", dns)


@pytest.mark.parametrize("pipelining", [True, False])
def test_results_per_recipient(dns: DnsClient, qdir: Path, sink: ScriptedSmtp,  # noqa: F811
                               pipelining: bool) -> None:
    """One transaction; each recipient's result from its RCPT reply, the rest from end of data."""
    sink.script.pipelining = pipelining
    sink.script.rcpt = lambda a: ("550 5.1.1 <bad@x.test>: Recipient address rejected: User unknown"
                                  if a.startswith("bad") else "450 4.2.0 try later" if a.startswith("later")
                                  else "250 2.1.5 Ok")
    reply = smtp_deliver(settings(qdir), dns, request(qdir, sink.nexthop, "a@x.test", "bad@x.test",
                                                      "later@x.test", "b@x.test"))
    assert outcomes(reply) == [(0, "2.0.0"), (5, "5.1.1"), (4, "4.2.0"), (0, "2.0.0")]
    assert reply["relay"] == f"127.0.0.1[127.0.0.1]:{sink.port}"
    reasons = [r["reason"] for r in reply["recipients"]]
    assert reasons[0] == "250 2.0.0 Ok: queued"
    assert reasons[1] == ("host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <bad@x.test>: Recipient address rejected: "
                          "User unknown (in reply to RCPT TO command)")
    assert reasons[2] == "host 127.0.0.1[127.0.0.1] said: 450 4.2.0 try later (in reply to RCPT TO command)"
    [(sender, rcpts, content)] = sink.script.messages
    assert (sender, rcpts) == ("alice@example.test", ["a@x.test", "b@x.test"])
    assert content == CONTENT.replace(b"\n", b"\r\n")  # CRLF on the wire, dots unstuffed by the server
    assert sink.script.commands[0] == f"MAIL alice@example.test SIZE={len(content)}"
    assert sink.script.connections == 1


def test_mail_and_data_rejections(dns: DnsClient, qdir: Path, sink: ScriptedSmtp) -> None:  # noqa: F811
    sink.script.mail = "451 4.3.0 sender check failed"
    reply = smtp_deliver(settings(qdir), dns, request(qdir, sink.nexthop, "a@x.test", "b@x.test"))
    assert outcomes(reply) == [(4, "4.3.0")] * 2
    assert reply["recipients"][0]["reason"].endswith("451 4.3.0 sender check failed (in reply to MAIL FROM command)")
    assert "DATA" not in sink.script.commands[-1:] or not sink.script.messages
    sink.script.mail = "250 2.1.0 Ok"
    sink.script.data = "554 5.7.1 content rejected"
    reply = smtp_deliver(settings(qdir), dns, request(qdir, sink.nexthop, "a@x.test", sender=""))
    assert outcomes(reply) == [(5, "5.7.1")]
    assert reply["recipients"][0]["reason"] == ("host 127.0.0.1[127.0.0.1] said: 554 5.7.1 content rejected "
                                                "(in reply to end of DATA command)")
    assert "MAIL <> SIZE=" in " ".join(sink.script.commands)  # the null sender as MAIL FROM:<>


def test_connection_reuse(dns: DnsClient, qdir: Path, sink: ScriptedSmtp) -> None:  # noqa: F811
    """Requests to the same next hop share one connection while it is kept; it is closed when idle."""
    cache = SessionCache(0.5, 2.0)
    conf = settings(qdir, cache_time=0.5, reuse_count=3)
    for i in range(3):
        reply = smtp_deliver(conf, dns, request(qdir, sink.nexthop, f"r{i}@x.test"), cache)
        assert outcomes(reply) == [(0, "2.0.0")]
    assert sink.script.connections == 1 and len(sink.script.messages) == 3
    # reuse_count 3 reached: the fourth request opens a new connection.
    smtp_deliver(conf, dns, request(qdir, sink.nexthop, "r3@x.test"), cache)
    assert sink.script.connections == 2
    time.sleep(0.8)  # idle past cache_time: the kept session was closed
    assert cache.take(sink.nexthop) is None
    smtp_deliver(conf, dns, request(qdir, sink.nexthop, "r4@x.test"), cache)
    assert sink.script.connections == 3 and len(sink.script.messages) == 5
    cache.close_all()


def test_idle_session_closed_by_reaper(dns: DnsClient, qdir: Path, sink: ScriptedSmtp) -> None:  # noqa: F811
    """A kept session is closed once idle past cache_time, without another request to notice it,
    also when it was put back several times (only an earlier deadline wakes the reaper)."""
    cache = SessionCache(0.4, 2.0)
    conf = settings(qdir, cache_time=0.4)
    for i in range(3):
        assert outcomes(smtp_deliver(conf, dns, request(qdir, sink.nexthop, f"r{i}@x.test"), cache)) == [(0, "2.0.0")]
    assert sink.script.connections == 1 and sink.script.closed == 0
    wait_for(lambda: sink.script.closed == 1, timeout=3.0, what="the reaper to close the idle session")
    assert cache.take(sink.nexthop) is None
    cache.close_all()


def test_kept_session_that_went_away_is_replaced(dns: DnsClient, qdir: Path) -> None:  # noqa: F811
    port = free_port()
    cache = SessionCache(30, 2.0)
    conf = settings(qdir, cache_time=30)
    with ScriptedSmtp("127.0.0.1", port) as first:
        assert outcomes(smtp_deliver(conf, dns, request(qdir, first.nexthop, "a@x.test"), cache)) == [(0, "2.0.0")]
    with ScriptedSmtp("127.0.0.1", port) as second:  # the server restarted: the kept connection is dead
        reply = smtp_deliver(conf, dns, request(qdir, second.nexthop, "b@x.test"), cache)
        assert outcomes(reply) == [(0, "2.0.0")]
        assert [m[1] for m in second.script.messages] == [["b@x.test"]]  # delivered once, on a new connection
        cache.close_all()


def test_mx_fallback_and_hop_failures(dns: DnsClient, qdir: Path) -> None:  # noqa: F811
    """The lowest preference is tried first; when it cannot be reached the next one takes the mail.
    When none can, every recipient is deferred and the reply reports the hop as failed."""
    port = free_port("127.0.0.62")
    with ScriptedSmtp("127.0.0.62", port) as mx2:
        reply = smtp_deliver(settings(qdir), dns, request(qdir, f"fallback.test:{port}", "a@fallback.test"))
        assert outcomes(reply) == [(0, "2.0.0")] and "hop_status" not in reply
        assert reply["relay"] == f"mx2.fallback.test[127.0.0.62]:{port}"
        assert len(mx2.script.messages) == 1
    reply = smtp_deliver(settings(qdir), dns, request(qdir, f"fallback.test:{port}", "a@fallback.test"))
    assert outcomes(reply) == [(4, "4.4.1")]
    assert reply["recipients"][0]["reason"] == f"connect to mx2.fallback.test[127.0.0.62]:{port}: Connection refused"
    assert reply["hop_status"] == {"dsn": "4.4.1", "reason": reply["recipients"][0]["reason"]}
    # A domain that does not exist bounces (no hop failure: nothing to retry); a failing lookup defers.
    reply = smtp_deliver(settings(qdir), dns, request(qdir, "nowhere.invalid", "a@nowhere.invalid"))
    assert outcomes(reply) == [(5, "5.4.4")] and "hop_status" not in reply
    assert reply["recipients"][0]["reason"] == ("Host or domain name not found. Name service error for "
                                                "name=nowhere.invalid type=A: Host not found")
    reply = smtp_deliver(settings(qdir), dns, request(qdir, "broken.test", "a@broken.test"))
    assert outcomes(reply) == [(4, "4.4.3")] and reply["hop_status"]["dsn"] == "4.4.3"


def test_tls_required_but_not_offered(dns: DnsClient, qdir: Path, sink: ScriptedSmtp) -> None:  # noqa: F811
    reply = smtp_deliver(settings(qdir, tls_level="encrypt"), dns, request(qdir, sink.nexthop, "a@x.test"))
    assert outcomes(reply) == [(4, "4.7.4")]
    assert reply["recipients"][0]["reason"] == "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]"
    assert not sink.script.messages


def test_phase_timeout(dns: DnsClient, qdir: Path, sink: ScriptedSmtp) -> None:  # noqa: F811
    sink.script.delay = 1.5
    conf = settings(qdir, timeouts=Timeouts(connect=5, data_done=0.5, rset=1, quit=1))
    reply = smtp_deliver(conf, dns, request(qdir, sink.nexthop, "a@x.test"))
    assert outcomes(reply) == [(4, "4.4.2")]
    assert reply["recipients"][0]["reason"] == ("conversation with 127.0.0.1[127.0.0.1] timed out while sending "
                                                "end of data -- message may be sent more than once")
    assert proto.TEMPFAIL == 4


def test_ipv6_address_when_there_is_no_a_record(dns: DnsClient, qdir: Path) -> None:  # noqa: F811
    """A name with only an AAAA record is reached over IPv6; [ipv6:...] is an IPv6 literal."""
    assert hosts_for("[ipv6:::1]:2525", dns) == [("::1", 2525)]
    port = free_port("::1")
    with ScriptedSmtp("::1", port) as server:
        reply = smtp_deliver(settings(qdir), dns, request(qdir, f"six.example:{port}", "a@six.example"))
        assert outcomes(reply) == [(0, "2.0.0")]
        assert reply["relay"] == f"six.example[::1]:{port}"
        assert len(server.script.messages) == 1
