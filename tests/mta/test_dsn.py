"""Tests for mta.dsn: RFC 3464 non-delivery notifications, parsed back with the email package."""

from __future__ import annotations

import email
from email.message import Message

from mta.bounce_log import record_create
from mta.dsn import DelayNotice, dsn_build, original_headers

ORIGINAL = (b"Received: from client\nFrom: Alice <alice@example.test>\nSubject: caf\xc3\xa9 plans\n"
            b"Message-ID: <m1@example.test>\n\nsecret body\n")


def build(**overrides: object) -> bytes:
    args: dict[str, object] = dict(
        reporting_mta="mx.example.test", queue_id="ABCDEF012345", sender="alice@example.test",
        arrival=1_700_000_000.0, original=ORIGINAL, now=1_700_000_100.0,
        records=[
            record_create("bob@example.test", "robert@example.test", "bounced", "5.1.1",
                          'unknown user: "bob"'),
            record_create("carol@example.test", "", "expired", "4.4.1",
                          "delivery temporarily suspended: connect to local: Connection refused"),
        ],
    )
    args.update(overrides)
    return dsn_build(**args)  # type: ignore[arg-type]


def parts(message: Message) -> list[Message]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    return [part for part in payload if isinstance(part, Message)]


def test_structure_is_multipart_report() -> None:
    message = email.message_from_bytes(build())
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message.get_boundary() == "ABCDEF012345.1700000100/mx.example.test"
    assert message["From"] == "MAILER-DAEMON@mx.example.test (Mail Delivery System)"
    assert message["To"] == "alice@example.test"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Message-Id"] == "<20231114221500.ABCDEF012345@mx.example.test>"
    assert [p.get_content_type() for p in parts(message)] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]


def test_human_readable_part() -> None:
    text = parts(email.message_from_bytes(build()))[0].get_payload()
    assert isinstance(text, str)
    assert text.startswith("This is the mail system at host mx.example.test.\n\n"
                           "I'm sorry to have to inform you that your message could not\n"
                           "be delivered to one or more recipients. It's attached below.\n")
    assert "please send mail to postmaster." in text
    assert '<bob@example.test> (expanded from <robert@example.test>): unknown user: "bob"' in text
    assert "<carol@example.test>: delivery temporarily suspended" in text


def test_delivery_status_fields() -> None:
    status = parts(email.message_from_bytes(build()))[1]
    per_message, bob, carol = parts(status)
    assert per_message["Reporting-MTA"] == "dns; mx.example.test"
    assert per_message["X-Postfix-Queue-ID"] == "ABCDEF012345"
    assert per_message["X-Postfix-Sender"] == "rfc822; alice@example.test"
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() == 1_700_000_000
    assert (bob["Final-Recipient"], bob["Original-Recipient"], bob["Action"], bob["Status"]) == (
        "rfc822; bob@example.test", "rfc822; robert@example.test", "failed", "5.1.1")
    assert bob["Diagnostic-Code"] == 'X-Postfix; unknown user: "bob"'
    assert carol["Original-Recipient"] is None
    # An expired recipient keeps its 4.x.x code with Action: failed, as Postfix reports it.
    assert (carol["Action"], carol["Status"]) == ("failed", "4.4.1")
    assert "Connection refused" in " ".join(carol["Diagnostic-Code"].split())


def test_original_headers_only() -> None:
    data = build()
    returned = parts(email.message_from_bytes(data))[2]
    assert returned["Content-Transfer-Encoding"] == "8bit"
    assert b"Subject: caf\xc3\xa9 plans\n" in data  # 8-bit header bytes returned unchanged
    payload = returned.get_payload()
    assert isinstance(payload, str)
    assert "Message-ID: <m1@example.test>" in payload and "secret body" not in payload
    assert b"secret body" not in data


def test_original_headers_limit_and_shapes() -> None:
    assert original_headers(b"A: 1\nB: 2\n\nbody") == b"A: 1\nB: 2\n"
    assert original_headers(b"A: 1\nB: 2") == b"A: 1\nB: 2\n"
    assert original_headers(b"A: 1\nB: 2222\n\n", limit=8) == b"A: 1\n"
    assert original_headers(b"") == b""


def test_mail_name_and_line_ends() -> None:
    data = build(mail_name="MTA", records=[record_create("x@y", "", "bounced", "5.0.0", "bad\x07 \u00fc")])
    assert b"\r\n" not in data
    assert b"X-MTA-Queue-ID: ABCDEF012345" in data
    assert b"Diagnostic-Code: X-MTA; bad  \\xfc" in data


DELAY = DelayNotice(warning_time=4 * 3600, queue_lifetime=5 * 86400)
DEFERRED = [record_create("bob@example.test", "robert@example.test", "deferred", "4.4.1",
                          "connect to mx.example.test[192.0.2.25]:25: Connection refused")]


def test_delay_notice_structure_and_text() -> None:
    message = email.message_from_bytes(build(records=DEFERRED, delay=DELAY))
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message["Subject"] == "Delayed Mail (still being retried)"
    assert message["From"] == "MAILER-DAEMON@mx.example.test (Mail Delivery System)"
    assert message["To"] == "alice@example.test"
    human, status, returned = parts(message)
    assert [p.get_content_type() for p in (human, status, returned)] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    text = human.get_payload()
    assert isinstance(text, str)
    assert text.startswith(
        "This is the mail system at host mx.example.test.\n\n"
        "####################################################################\n"
        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
        "####################################################################\n\n"
        "Your message could not be delivered for more than 4 hour(s).\n"
        "It will be retried until it is 5 day(s) old.\n")
    assert "<bob@example.test> (expanded from <robert@example.test>): connect to mx.example.test" in text
    assert "I'm sorry" not in text


def test_delay_notice_status_fields() -> None:
    status = parts(email.message_from_bytes(build(records=DEFERRED, delay=DELAY)))[1]
    per_message, bob = parts(status)
    assert per_message["X-Postfix-Queue-ID"] == "ABCDEF012345"
    assert (bob["Final-Recipient"], bob["Original-Recipient"], bob["Action"], bob["Status"]) == (
        "rfc822; bob@example.test", "rfc822; robert@example.test", "delayed", "4.4.1")
    assert "Connection refused" in " ".join(bob["Diagnostic-Code"].split())
    # Will-Retry-Until is arrival + maximal_queue_lifetime (RFC 3464 2.3.9), as Postfix writes it.
    retry = email.utils.parsedate_to_datetime(bob["Will-Retry-Until"]).timestamp()
    assert retry == 1_700_000_000 + 5 * 86400
    failure = parts(parts(email.message_from_bytes(build(records=DEFERRED)))[1])[1]
    assert failure["Action"] == "failed" and failure["Will-Retry-Until"] is None


def test_delay_notice_returns_the_original_headers_only() -> None:
    data = build(records=DEFERRED, delay=DELAY)
    returned = parts(email.message_from_bytes(data))[2]
    assert returned["Content-Description"] == "Undelivered Message Headers"
    payload = returned.get_payload()
    assert isinstance(payload, str)
    assert "From: Alice <alice@example.test>" in payload and "Message-ID: <m1@example.test>" in payload
    assert b"secret body" not in data


def test_delay_notice_times_round_down() -> None:
    text = parts(email.message_from_bytes(build(records=DEFERRED, delay=DelayNotice(5399, 86399))))[0]
    payload = text.get_payload()
    assert isinstance(payload, str)
    assert "for more than 1 hour(s)." in payload and "until it is 0 day(s) old." in payload
