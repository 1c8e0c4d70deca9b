"""Delivered-To: loop detection and the envelope headers local(8) prepends to each copy.

EXTERNAL LOOP CONTROL (local(8) "MAIL FORWARDING"). Each copy the local agent
writes or forwards carries ``Delivered-To: <recipient>``; mail that arrives for
a recipient already named in a Delivered-To: header of the primary header block
is bounced with ``5.4.6 mail forwarding loop for <recipient>``.

COPY HEADERS (Postfix's mail_copy()). Depending on the destination the copy
starts with a ``From sender  date`` line (mbox files and commands), then
``Return-Path: <sender>``, ``X-Original-To: <original recipient>`` and
``Delivered-To: <recipient>`` (when prepend_delivered_header names the
context), in that order.
"""

from __future__ import annotations

import time

from mta.local.state import Delivery, RcptState

MAILER_DAEMON = "MAILER-DAEMON"


def _unfold(parts: list[bytes]) -> str:
    return b" ".join(part.strip() for part in parts).strip().decode("utf-8", "replace").lower()


def delivered_find(content: bytes) -> frozenset[str]:
    """Lowercased values of every Delivered-To: header in the primary header block.

    >>> sorted(delivered_find(b"Subject: x\\nDelivered-To: Bob@Example.com\\n\\nDelivered-To: no\\n"))
    ['bob@example.com']
    """
    found: set[str] = set()
    current: list[bytes] | None = None
    for line in content.split(b"\n"):
        if line[:1] in (b" ", b"\t") and line.strip():
            if current is not None:
                current.append(line)
            continue
        if current is not None:
            found.add(_unfold(current))
            current = None
        if not line.strip():
            break
        name, colon, value = line.partition(b":")
        if not colon:
            break  # not a header: the body starts here (no blank line)
        if name.strip().lower() == b"delivered-to":
            current = [value]
    if current is not None:
        found.add(_unfold(current))
    return frozenset(found)


def from_line(sender: str, now: float | None = None) -> bytes:
    """The mbox ``From sender  Day Mon dd hh:mm:ss yyyy`` line (two spaces, as Postfix)."""
    stamp = time.asctime(time.localtime(time.time() if now is None else now))
    return f"From {sender or MAILER_DAEMON}  {stamp}\n".encode("utf-8", "surrogateescape")


def copy_headers(delivery: Delivery, rcpt: RcptState, context: str, *, from_: bool) -> bytes:
    """The lines to put before the message for one copy.

    + context: "file" (mailbox, maildir, /file) or "command": chooses whether
      Delivered-To: is added (prepend_delivered_header).
    + from_: start with the mbox From_ line (mbox files and commands).
    """
    sender = delivery.message.sender
    lines = [from_line(sender)] if from_ else []
    lines.append(f"Return-Path: <{sender}>\n".encode("utf-8", "surrogateescape"))
    if rcpt.original:
        lines.append(f"X-Original-To: {rcpt.original}\n".encode("utf-8", "surrogateescape"))
    if context in delivery.settings.prepend_delivered:
        lines.append(f"Delivered-To: {delivery.top}\n".encode("utf-8", "surrogateescape"))
    return b"".join(lines)


def delivered_loop(delivery: Delivery, rcpt: RcptState) -> bool:
    """True (and a 5.4.6 bounce recorded) when rcpt already appears in a Delivered-To: header."""
    if rcpt.address.lower() in delivery.message.delivered_to:
        delivery.fail(rcpt, "5.4.6", f"mail forwarding loop for {rcpt.address}")
        return True
    return False
