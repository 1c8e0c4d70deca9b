"""End to end, the outbound side: a gateway relays to an internal MTA and to scripted SMTP servers
(aiosmtpd) on loopback; MX lookups go to a DNS server the test starts on 127.0.0.53."""

from __future__ import annotations

import os
import smtplib
import socket
import threading
import time
from typing import Iterator

import pytest

from tests.dns_server import DnsServer
from tests.e2e.conftest import DOMAIN, Mta, home, maildir_messages, wait_for
from tests.smtp_server import ScriptedSmtp, free_port

U1, U2 = "mtae2e1", "mtae2e2"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="end-to-end tests run as root")


@pytest.fixture(autouse=True)
def _clean(clean_maildirs: None) -> None:
    """Every test here starts with empty Maildirs."""


def send(mta: Mta, rcpts: list[str], sender: str = f"{U1}@{DOMAIN}", subject: str = "test",
         source: str = "127.0.0.1") -> None:
    msg = f"From: {sender}\nTo: {', '.join(rcpts)}\nSubject: {subject}\n\nhello\n"
    with smtplib.SMTP("127.0.0.1", mta.port, timeout=30, source_address=(source, 0)) as client:
        client.ehlo("client.example.test")
        client.sendmail(sender, rcpts, msg)


@pytest.fixture()
def sink() -> Iterator[ScriptedSmtp]:
    with ScriptedSmtp("127.0.0.1") as server:
        yield server


def test_relay_domains_from_anyone_to_the_internal_mta(make_mta) -> None:  # type: ignore[no-untyped-def]
    """relay_domains is accepted from a client outside mynetworks and relayed over SMTP to the internal
    MTA that transport_maps names; an unknown user there comes back as a DSN naming its reply."""
    internal = make_mta(main_extra="mydestination = internal.example\n")
    internal.start()
    gateway = make_mta(main_extra=f"relay_domains = internal.example\ntransport_maps = inline:{{ "
                                  f"{{internal.example=smtp:[127.0.0.1]:{internal.port}}} }}\n")
    gateway.start()
    send(gateway, [f"{U2}@internal.example", "nosuch@internal.example"], subject="through the gateway",
         source="127.0.0.2")  # not in mynetworks (127.0.0.1/32)
    with pytest.raises(smtplib.SMTPRecipientsRefused):  # and it is no open relay
        send(gateway, ["someone@elsewhere.example"], source="127.0.0.2")
    wait_for(lambda: len(maildir_messages(home(U2))) == 1, what="delivery by the internal MTA")
    got = maildir_messages(home(U2))[0]
    assert b"Subject: through the gateway" in got
    assert got.count(b"Received: ") >= 2  # the gateway's and the internal MTA's
    log = gateway.log()
    assert f"to=<{U2}@internal.example>, relay=127.0.0.1[127.0.0.1]:{internal.port}" in log
    assert "status=sent (250 2.0.0 Ok: queued as " in log
    wait_for(lambda: len(maildir_messages(home(U1))) == 1, what="the bounce for the unknown user")
    dsn = maildir_messages(home(U1))[0]
    assert b"Final-Recipient: rfc822; nosuch@internal.example" in dsn and b"Status: 5.1.1" in dsn
    assert b"said: 550 5.1.1 <nosuch@internal.example>: Recipient address rejected" in dsn.replace(b"\n ", b" ")


def test_local_mail_goes_out_through_relayhost(make_mta, sink: ScriptedSmtp) -> None:  # type: ignore[no-untyped-def]
    gateway = make_mta(main_extra=f"relayhost = {sink.nexthop}\n")
    gateway.start()
    gateway.run("sendmail", "-i", "someone@elsewhere.example", user=U1,
                input=b"Subject: out\n\nvia the relay host\n")
    wait_for(lambda: len(sink.script.messages) == 1, what="delivery to the relay host")
    sender, rcpts, content = sink.script.messages[0]
    assert (sender, rcpts) == (f"{U1}@{DOMAIN}", ["someone@elsewhere.example"])
    assert b"via the relay host" in content
    wait_for(lambda: f"relay=127.0.0.1[127.0.0.1]:{sink.port}" in gateway.log(), what="the status line")
    assert "to=<someone@elsewhere.example>" in gateway.log()


def test_remote_4xx_is_retried_after_flush_and_delivered_once(make_mta, sink: ScriptedSmtp) -> None:  # type: ignore[no-untyped-def]
    sink.script.rcpt = lambda address: "450 4.2.1 mailbox busy, try again later"
    gateway = make_mta(main_extra=f"relayhost = {sink.nexthop}\nminimal_backoff_time = 300s\n"
                                  "maximal_backoff_time = 600s\nqueue_run_delay = 300s\n")
    gateway.start()
    send(gateway, ["someone@elsewhere.example"])
    wait_for(lambda: gateway.queue_files("deferred"), what="the deferral")
    listing = gateway.run("postqueue", "-p").stdout.decode()
    assert ("(host 127.0.0.1[127.0.0.1] said: 450 4.2.1 mailbox busy, try again later "
            "(in reply to RCPT TO command))") in " ".join(listing.split())
    assert not sink.script.messages
    sink.script.rcpt = lambda address: "250 2.1.5 Ok"
    gateway.run("flush")
    wait_for(lambda: len(sink.script.messages) == 1, what="delivery after the flush")
    wait_for(lambda: not gateway.queue_files("deferred") and not gateway.queue_files("active"),
             what="the queue to empty")
    time.sleep(1.0)
    assert len(sink.script.messages) == 1  # once


def test_mx_lowest_preference_first_then_fallback(make_mta) -> None:  # type: ignore[no-untyped-def]
    """The domain's MX records come from a DNS server on 127.0.0.53: the lowest preference (nothing
    listens there) is tried first, then the next one takes the mail."""
    for address in ("127.0.0.61", "127.0.0.62"):
        with socket.socket() as probe:
            if probe.connect_ex((address, 25)) == 0:
                pytest.skip(f"something listens on {address}:25")
    dns = DnsServer("127.0.0.53", {
        ("mx.example", "MX"): ["20 mx2.mx.example.", "10 mx1.mx.example."],
        ("mx1.mx.example", "A"): ["127.0.0.61"],
        ("mx2.mx.example", "A"): ["127.0.0.62"],
    })
    try:
        with ScriptedSmtp("127.0.0.62", 25) as mx2:
            gateway = make_mta()
            dns.resolv_conf(gateway.etc)  # etc/resolv.conf, which MTA_RESOLV_CONF names
            gateway.start()
            send(gateway, ["someone@mx.example"])
            wait_for(lambda: len(mx2.script.messages) == 1, what="delivery to the second MX host")
            wait_for(lambda: "status=sent" in gateway.log(), what="the status line")
            log = gateway.log()
            tried = log.index("connect to mx1.mx.example[127.0.0.61]:25: Connection refused")
            assert tried < log.index("to=<someone@mx.example>, relay=mx2.mx.example[127.0.0.62]:25")
            assert ("mx.example", "MX") in dns.queries
    finally:
        dns.close()


class Tarpit:
    """A server that accepts connections and never says anything (a dead destination)."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, free_port(host)))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def test_dead_destination_does_not_delay_a_healthy_one(make_mta, sink: ScriptedSmtp) -> None:  # type: ignore[no-untyped-def]
    tarpit = Tarpit("127.0.0.63")
    try:
        gateway = make_mta(main_extra=(
            "smtp_helo_timeout = 3s\nminimal_backoff_time = 60s\nmaximal_backoff_time = 120s\n"
            "queue_run_delay = 60s\ntransport_maps = inline:{ "
            f"{{dead.example=smtp:[127.0.0.63]:{tarpit.port}}}, {{healthy.example=smtp:{sink.nexthop}}} }}\n"))
        gateway.start()
        send(gateway, ["a@dead.example"])
        started = time.monotonic()
        send(gateway, ["b@healthy.example"])
        wait_for(lambda: len(sink.script.messages) == 1, what="delivery to the healthy destination")
        assert time.monotonic() - started < 2.5  # not held behind the dead one's 3 s greeting timeout
        wait_for(lambda: "to=<a@dead.example>" in gateway.log(), what="the dead destination's deferral")
        assert ("conversation with 127.0.0.63[127.0.0.63] timed out while receiving the initial server "
                "greeting") in gateway.log()
        # The destination is now dead for minimal_backoff_time: new mail for it is deferred at once,
        # without a connection, and mail for the healthy one still flows.
        for i in range(3):
            send(gateway, [f"c{i}@dead.example"])
        send(gateway, ["d@healthy.example"])
        wait_for(lambda: gateway.log().count("status=deferred (delivery temporarily suspended: conversation "
                                             "with 127.0.0.63[127.0.0.63] timed out") == 3,
                 what="three deferrals without trying")
        wait_for(lambda: len(sink.script.messages) == 2, what="the second healthy delivery")
        assert len(tarpit.accepted) == 1
    finally:
        tarpit.close()
