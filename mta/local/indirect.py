"""Mail forwarding: alias and .forward destinations outside mydestination are resubmitted via cleanup.

Postfix's forward_append()/forward_finish(): the addresses reached while
delivering one recipient are collected, then submitted as one new message
(origin "local") with the original envelope sender and content, preceded by
``Delivered-To: <recipient>`` (prepend_delivered_header includes
``forward``), so a forwarding loop is caught when it comes back. Each
forwarded address is reported "forwarded as QUEUEID"; if cleanup cannot take
the message, all of them defer.
"""

from __future__ import annotations

from mta import clients, proto
from mta.local.state import Delivery, RcptState, Result


def forward_append(delivery: Delivery, rcpt: RcptState, address: str) -> None:
    """Queue address (reached from rcpt) for resubmission; duplicates within the request count once."""
    key = f"forward-addr {address.lower()}"
    if delivery.duplicate(key):
        return
    delivery.forwards.append(address)


def forward_flush(delivery: Delivery) -> None:
    """Submit the collected addresses as one new message and record each one's result."""
    if not delivery.forwards:
        return
    message, settings = delivery.message, delivery.settings
    content = message.content
    if "forward" in settings.prepend_delivered:
        content = f"Delivered-To: {delivery.top}\n".encode("utf-8", "surrogateescape") + content
    recipients = [{"address": address, "original": delivery.original or delivery.top}
                  for address in delivery.forwards]
    attrs = {key: value for key, value in message.attrs.items() if key.startswith(("client_", "helo"))}
    attrs["origin"] = "local"
    try:
        queue_id = clients.cleanup_submit(settings.queue_dir, message.sender, recipients, content, attrs)
        status, dsn, reason = proto.OK, "2.0.0", f"forwarded as {queue_id}"
    except clients.ServiceError as exc:
        status, dsn, reason = exc.status, exc.dsn, f"mail forwarding transaction failed: {exc.reason}"
    except (OSError, proto.ProtocolError) as exc:
        status, dsn = proto.TEMPFAIL, "4.3.0"
        reason = f"mail forwarding transaction failed: cannot submit to cleanup: {exc}"
    for address in delivery.forwards:
        delivery.record(f"forward-addr {address.lower()}", Result(status, dsn, reason, address))
    delivery.forwards.clear()
