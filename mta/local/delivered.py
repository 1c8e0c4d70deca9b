"""Delivered-To: loop detection and the envelope headers local(8) prepends to each copy.

EXTERNAL LOOP CONTROL (local(8) "MAIL FORWARDING"). Each copy the local agent
writes or forwards carries ``Delivered-To: <recipient>``; mail that arrives for
a recipient already named in a Delivered-To: header of the primary header block
(mta.delivered_hdr) is bounced with ``5.4.6 mail forwarding loop for <recipient>``.

COPY HEADERS (mta.mail_copy, Postfix's mail_copy()). Depending on the destination the copy
starts with a ``From sender  date`` line (mbox files and commands), then
``Return-Path: <sender>``, ``X-Original-To: <original recipient>`` and
``Delivered-To: <recipient>`` (when prepend_delivered_header names the
context), in that order.
"""

from __future__ import annotations

from mta.local.state import Delivery, RcptState
from mta.mail_copy import envelope_headers


def copy_headers(delivery: Delivery, rcpt: RcptState, context: str, *, from_: bool) -> bytes:
    """The lines to put before the message for one copy.

    + context: "file" (mailbox, maildir, /file) or "command": chooses whether
      Delivered-To: is added (prepend_delivered_header).
    + from_: start with the mbox From_ line (mbox files and commands).
    """
    delivered = delivery.top if context in delivery.settings.prepend_delivered else None
    return envelope_headers(delivery.message.sender, from_=from_, return_path=True,
                            original=rcpt.original or None, delivered=delivered)


def delivered_loop(delivery: Delivery, rcpt: RcptState) -> bool:
    """True (and a 5.4.6 bounce recorded) when rcpt already appears in a Delivered-To: header."""
    if rcpt.address.lower() in delivery.message.delivered_to:
        delivery.fail(rcpt, "5.4.6", f"mail forwarding loop for {rcpt.address}")
        return True
    return False
