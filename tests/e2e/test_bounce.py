"""End to end: the bounce and defer services (mta.bounce) in a running MTA, and ``postqueue -s``.

Each test sends mail from a local user to a domain transport_maps routes to
the error or retry service, and reads what comes back in the user's Maildir
and the maillog. Messages carry a per-test token in their subject, so mail
other tests leave in the shared test users' Maildirs is never counted.
"""

from __future__ import annotations

import email
import os
import re
import smtplib
import time
from email.message import Message

import pytest

from tests.e2e.conftest import DOMAIN, Mta, home, maildir_messages, wait_for
from tests.mta.qmgr.conftest import subparts, text_of

U1 = "mtae2e1"
SENDER = f"{U1}@{DOMAIN}"
DELAYED = "Delayed Mail (still being retried)"


@pytest.fixture(autouse=True)
def _clean(clean_maildirs: None) -> None:
    """Every test here starts with empty Maildirs."""


@pytest.fixture
def token(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name[:30]}-{os.getpid()}-{time.monotonic_ns()}"


def send(mta: Mta, rcpt: str, subject: str, extra_headers: str = "") -> None:
    message = f"From: {SENDER}\nTo: {rcpt}\nSubject: {subject}\n{extra_headers}\nthe body text\n"
    with smtplib.SMTP("127.0.0.1", mta.port, timeout=30) as client:
        client.ehlo("client.example.test")
        client.sendmail(SENDER, [rcpt], message)


def mine(token: str) -> list[Message]:
    """The messages in U1's Maildir that mention token (notifications quote the original Subject)."""
    return [email.message_from_bytes(raw) for raw in maildir_messages(home(U1)) if token.encode() in raw]


def queue_id_of(mta: Mta, rcpt: str) -> str:
    """The queue ID of the (first) message logged for rcpt."""
    found = wait_for(lambda: re.search(rf"([0-9A-F]+): to=<{re.escape(rcpt)}>", mta.log()), timeout=15,
                     what=f"a delivery attempt for {rcpt}")
    assert isinstance(found, re.Match)
    return found.group(1)


def attempts(mta: Mta, queue_id: str) -> int:
    """Delivery attempts logged for queue_id that ended deferred."""
    return len(re.findall(rf"{queue_id}: to=<[^>]*>, relay=none, .*status=deferred", mta.log()))


def test_one_delay_warning_names_the_deferral_reason(make_mta, token: str) -> None:  # type: ignore[no-untyped-def]
    """delay_warning_time = 1s and a domain the retry service always defers: the sender gets exactly one
    "Delayed Mail" notice naming the reason, and postqueue -p shows the reason under the recipient."""
    mta = make_mta(main_extra="delay_warning_time = 1s\n"
                              "transport_maps = inline:{ {slow.example=retry:4.4.1 slow.example is not answering} }\n")
    mta.start()
    send(mta, "bob@slow.example", f"stuck {token}")
    qid = queue_id_of(mta, "bob@slow.example")
    wait_for(lambda: mine(token), timeout=15, what="the delay warning")
    # Two more deferrals after the warning (back-off 2 to 4 s): it must not come again.
    first = attempts(mta, qid)
    wait_for(lambda: attempts(mta, qid) >= first + 2, timeout=15, what="two more delivery attempts")
    time.sleep(0.5)  # a second warning would be on its way through cleanup and local by now
    [warning] = mine(token)
    assert warning["Subject"] == DELAYED
    assert warning["Return-Path"] == "<>"
    assert warning.get_content_type() == "multipart/report"
    assert warning.get_param("report-type") == "delivery-status"
    human, status, returned = subparts(warning)
    assert "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #" in text_of(human)
    assert "<bob@slow.example>: slow.example is not answering" in text_of(human)
    [per_rcpt] = subparts(status)[1:]
    assert (per_rcpt["Final-Recipient"], per_rcpt["Action"], per_rcpt["Status"]) == (
        "rfc822; bob@slow.example", "delayed", "4.4.1")
    assert per_rcpt["Will-Retry-Until"]
    assert f"Subject: stuck {token}" in text_of(returned) and "the body text" not in text_of(returned)
    log = mta.log()
    assert len(re.findall(rf"bounce\[\d+\]: {qid}: sender delay notification: [0-9A-F]+", log)) == 1
    listing = mta.run("postqueue", "-p").stdout.decode()
    block = listing[listing.index(qid):]
    assert "(slow.example is not answering)\n" in block and "bob@slow.example" in block
    assert len(mta.queue_files("deferred")) == 1


def test_error_transport_bounce_returns_the_original_headers(  # type: ignore[no-untyped-def]
        make_mta, token: str) -> None:
    mta = make_mta(main_extra="transport_maps = inline:{ {closed.example=error:5.1.1 this domain is closed} }\n")
    mta.start()
    send(mta, "x@closed.example", f"closed {token}", extra_headers="X-Order-Number: 4711\n")
    qid = queue_id_of(mta, "x@closed.example")
    [dsn] = list(wait_for(lambda: mine(token), timeout=15, what="the bounce"))  # type: ignore[call-overload]
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
    assert dsn["Return-Path"] == "<>" and dsn["To"] == SENDER
    assert dsn.get_content_type() == "multipart/report"
    human, status, returned = subparts(dsn)
    assert "<x@closed.example>: this domain is closed" in text_of(human)
    per_message, per_rcpt = subparts(status)
    assert per_message["X-Postfix-Queue-ID"] == qid
    assert (per_rcpt["Final-Recipient"], per_rcpt["Action"], per_rcpt["Status"]) == (
        "rfc822; x@closed.example", "failed", "5.1.1")
    assert returned.get_content_type() == "text/rfc822-headers"
    headers = text_of(returned)
    assert f"Subject: closed {token}" in headers and "X-Order-Number: 4711" in headers
    assert f"From: {SENDER}" in headers and "Received: from client.example.test" in headers
    assert "the body text" not in headers
    found = re.search(rf"bounce\[\d+\]: {qid}: sender non-delivery notification: ([0-9A-F]+)", mta.log())
    assert found is not None
    wait_for(lambda: f"{found.group(1)}: removed" in mta.log(), timeout=10, what="the DSN's delivery")
    wait_for(lambda: not mta.queue_files("deferred") and not mta.queue_files("active")
             and not mta.queue_files("bounce"), timeout=10, what="the queue and bounce logs to empty")


def test_postqueue_s_retries_one_destination_now(make_mta, token: str) -> None:  # type: ignore[no-untyped-def]
    mta = make_mta(main_extra="minimal_backoff_time = 600s\nmaximal_backoff_time = 600s\n"
                              "transport_maps = inline:{ {slow.example=retry:4.4.1 slow.example is not answering}, "
                              "{other.example=retry:4.4.1 other.example is not answering} }\n")
    mta.start()
    send(mta, "a@slow.example", f"slow {token}")
    send(mta, "b@other.example", f"other {token}")
    slow, other = queue_id_of(mta, "a@slow.example"), queue_id_of(mta, "b@other.example")
    wait_for(lambda: len(mta.queue_files("deferred")) == 2, timeout=15, what="both messages deferred")
    time.sleep(1.5)  # deferred-queue scans (queue_run_delay 1s) pass them by: next try in 600 s
    assert (attempts(mta, slow), attempts(mta, other)) == (1, 1)
    mta.run("postqueue", "-s", "SLOW.example")
    wait_for(lambda: attempts(mta, slow) == 2, timeout=10, what="a new delivery attempt for slow.example")
    time.sleep(1.5)
    assert (attempts(mta, slow), attempts(mta, other)) == (2, 1)
    assert len(mta.queue_files("deferred")) == 2
    retry = min(os.stat(path).st_mtime for path in mta.queue_files("deferred"))
    assert retry > time.time() + 500  # deferred again with its back-off
    bad = mta.run("postqueue", "-s", "", check=False)
    assert bad.returncode == 64 and b"empty site name" in bad.stderr
