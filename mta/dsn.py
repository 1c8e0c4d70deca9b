"""Delivery status notifications: build an RFC 3464 multipart/report non-delivery or delay message.

The message follows the shape of Postfix's bounce(8) output for its default
``failure_template`` and ``delay_template`` (bounce(5)): a human-readable
text/plain part ("This is the mail system at host ..."), a
message/delivery-status part with one per-message block (Reporting-MTA,
queue ID, sender, Arrival-Date) and one block per recipient
(Final-Recipient, Original-Recipient, Action, Status, Diagnostic-Code, and
for a delay notice Will-Retry-Until), and the message's headers as
text/rfc822-headers (RFC 3462 / RFC 6522). It is built with the standard
library's email package and flattened with LF line ends, the form queue
files store.

Status codes are kept as recorded: a recipient that expired in the queue
keeps its last 4.x.x code with ``Action: failed``, as Postfix reports it. A
delay notice (``delay=DelayNotice(...)``) says ``Action: delayed`` for every
recipient; its text names delay_warning_time in hours and
maximal_queue_lifetime in days, rounded down, as Postfix's template does
($delay_warning_time_hours, $maximal_queue_lifetime_days).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import Message
from email.policy import compat32
from email.utils import formatdate
from typing import Sequence

from mta.bounce_log import StatusRecord

FAILURE_SUBJECT = "Undelivered Mail Returned to Sender"

FAILURE_TEXT = """\
This is the mail system at host {host}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to {postmaster}.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system
"""

DELAY_SUBJECT = "Delayed Mail (still being retried)"

DELAY_TEXT = """\
This is the mail system at host {host}.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than {hours} hour(s).
It will be retried until it is {days} day(s) old.

For further assistance, please send mail to {postmaster}.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system
"""


@dataclass(frozen=True)
class DelayNotice:
    """What turns a notification into a delay warning ("still being retried").

    + warning_time: delay_warning_time in seconds (the text says how long, in hours).
    + queue_lifetime: maximal_queue_lifetime in seconds: the text's "day(s) old" and
      Will-Retry-Until (arrival + queue_lifetime).
    """

    warning_time: int
    queue_lifetime: int


_POLICY = compat32.clone(linesep="\n", max_line_length=78)


def _ascii(text: str) -> str:
    """Text safe for a us-ascii part or header: control and non-ASCII characters escaped."""
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return cleaned.strip().encode("ascii", "backslashreplace").decode("ascii")


def original_headers(content: bytes, limit: int = 50000) -> bytes:
    """The header section of a message (up to the first empty line), at most limit bytes.

    A header cut by the limit is dropped whole, so the result is always a
    sequence of complete lines.
    """
    end = content.find(b"\n\n")
    headers = content if end < 0 else content[:end + 1]
    if len(headers) > limit:
        headers = headers[:limit]
        headers = headers[:headers.rfind(b"\n") + 1]
    if headers and not headers.endswith(b"\n"):
        headers += b"\n"
    return headers


def _text_part(subtype: str, text: str, description: str, charset: str | None = None) -> Message:
    part = Message()
    part["Content-Description"] = description
    part["Content-Type"] = f"text/{subtype}" + (f"; charset={charset}" if charset else "")
    part.set_payload(text)
    return part


def _fields(pairs: Sequence[tuple[str, str]]) -> Message:
    block = Message()
    for name, value in pairs:
        block[name] = value
    return block


def _recipient_line(record: StatusRecord) -> str:
    who = f"<{record.recipient}>"
    if record.original and record.original != record.recipient:
        who += f" (expanded from <{record.original}>)"
    return _ascii(f"{who}: {record.reason}")


def dsn_build(
    *,
    reporting_mta: str,
    queue_id: str,
    sender: str,
    arrival: float,
    records: Sequence[StatusRecord],
    original: bytes,
    mail_name: str = "Postfix",
    postmaster: str = "postmaster",
    now: float | None = None,
    header_limit: int = 50000,
    delay: DelayNotice | None = None,
) -> bytes:
    """A complete non-delivery notification (or, with delay, a delay warning) for the recipients in records.

    + reporting_mta: this host's name (myhostname), for Reporting-MTA and the text.
    + queue_id, sender, arrival: the returned message's queue ID, envelope
      sender (the notification's To:) and arrival time.
    + records: one StatusRecord per failed recipient (from the bounce log).
    + original: the returned message's content; only its headers are included.
    + mail_name: names the X-<mail_name>-Queue-ID fields and the diagnostic type.
    + postmaster: whom the text tells the reader to contact.
    + now: the notification's Date (default: the current time).
    + header_limit: at most this many bytes of the original headers (bounce_size_limit).
    + delay: build Postfix's delay warning instead (records then come from the defer log).
    Returns the message bytes (LF line ends) to hand to cleanup with the null sender.
    """
    when = time.time() if now is None else now
    host = _ascii(reporting_mta)
    boundary = f"{queue_id}.{int(when)}/{host}"

    outer = Message()
    outer["From"] = f"MAILER-DAEMON@{host} (Mail Delivery System)"
    outer["Subject"] = FAILURE_SUBJECT if delay is None else DELAY_SUBJECT
    outer["To"] = _ascii(sender)
    outer["Auto-Submitted"] = "auto-replied"
    outer["Date"] = formatdate(when, localtime=True)
    outer["Message-Id"] = f"<{time.strftime('%Y%m%d%H%M%S', time.gmtime(when))}.{queue_id}@{host}>"
    outer["MIME-Version"] = "1.0"
    outer["Content-Type"] = "multipart/report"
    outer.set_param("report-type", "delivery-status")
    outer.set_boundary(boundary)
    outer["Content-Transfer-Encoding"] = "8bit"
    outer.preamble = "This is a MIME-encapsulated message."

    if delay is None:
        text = FAILURE_TEXT.format(host=host, postmaster=_ascii(postmaster))
    else:
        text = DELAY_TEXT.format(host=host, postmaster=_ascii(postmaster), hours=delay.warning_time // 3600,
                                 days=delay.queue_lifetime // 86400)
    text += "\n" + "".join(_recipient_line(r) + "\n" for r in records)
    human = _text_part("plain", text, "Notification", "us-ascii")

    diagnostic_type = f"X-{mail_name}"
    blocks: list[Message | str] = [_fields([
        ("Reporting-MTA", f"dns; {host}"),
        (f"X-{mail_name}-Queue-ID", queue_id),
        (f"X-{mail_name}-Sender", f"rfc822; {_ascii(sender)}"),
        ("Arrival-Date", formatdate(arrival, localtime=True)),
    ])]
    for record in records:
        pairs = [("Final-Recipient", f"rfc822; {_ascii(record.recipient)}")]
        if record.original:
            pairs.append(("Original-Recipient", f"rfc822; {_ascii(record.original)}"))
        pairs += [
            ("Action", "failed" if delay is None else "delayed"),
            ("Status", record.dsn),
            ("Diagnostic-Code", f"{diagnostic_type}; {_ascii(record.reason)}"),
        ]
        if delay is not None:
            pairs.append(("Will-Retry-Until", formatdate(arrival + delay.queue_lifetime, localtime=True)))
        blocks.append(_fields(pairs))
    report = Message()
    report["Content-Description"] = "Delivery report"
    report["Content-Type"] = "message/delivery-status"
    report.set_payload(blocks)

    headers = original_headers(original, header_limit)
    returned = _text_part("rfc822-headers", headers.decode("ascii", "surrogateescape"),
                          "Undelivered Message Headers")
    if not headers.isascii():
        returned["Content-Transfer-Encoding"] = "8bit"

    outer.set_payload([human, report, returned])
    buffer = io.BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=_POLICY).flatten(outer)
    return buffer.getvalue()
