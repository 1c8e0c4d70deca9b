"""Retry scheduling: finish a delivery pass by bouncing, expiring, deferring with back-off, or removing.

At the end of each pass over a message (every delivery request answered),
as Postfix's qmgr_active_done():

1. Pending recipients of a message older than maximal_queue_lifetime
   (bounce_queue_lifetime for null-sender mail), or of one whose file has the
   forced-expiry mode bit, are moved from the defer log to the bounce log:
   ``ID: from=<sender>, status=expired, returned to sender``. Their last
   4.x.x status is kept, with Action: failed.
2. If the bounce log has records, one RFC 3464 notification goes to the
   sender through cleanup (null sender, origin "bounce"): ``ID: sender
   non-delivery notification: NEWID``. Mail from the null sender or the
   double-bounce address is never bounced: the notification is discarded
   and logged, so a bounce that cannot be delivered is not bounced again.
3. With no recipient left the file and its logs are removed (``ID:
   removed``). Otherwise, or when the notification could not be handed to
   cleanup, the file goes to deferred/ with mtime = now + the message's age
   clamped to [minimal_backoff_time, maximal_backoff_time].
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from mta import bounce_log, clients, log, proto, queue
from mta.config import MainConfig
from mta.dsn import dsn_build
from mta.qmgr.active import ActiveMessage, active_bounce, active_remove, active_to_deferred
from mta.qmgr.deliver import Routing
from mta.record import RecordError, record_parse

EXPIRED_DSN = "4.4.7"
EXPIRED_REASON = "message expired"
FORCED_DSN = "4.7.0"
FORCED_REASON = "message is administratively expired"


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off and lifetime settings, in seconds.

    + minimal_backoff, maximal_backoff: the clamp for the retry delay.
    + queue_lifetime: maximal_queue_lifetime (0 = try once).
    + bounce_lifetime: bounce_queue_lifetime, for mail from the null sender.
    """

    minimal_backoff: int
    maximal_backoff: int
    queue_lifetime: int
    bounce_lifetime: int


def policy_from_config(cfg: MainConfig) -> RetryPolicy:
    """The retry policy from main.cf (time units as Postfix: ``5d``, ``300s``, ...)."""
    minimal = cfg.get_time("minimal_backoff_time", minimum=1)
    maximal = cfg.get_time("maximal_backoff_time", minimum=1)
    return RetryPolicy(minimal, max(maximal, minimal), cfg.get_time("maximal_queue_lifetime", minimum=0),
                       cfg.get_time("bounce_queue_lifetime", minimum=0))


@dataclass(frozen=True)
class Notifier:
    """What a non-delivery notification needs besides the message.

    + routing: to recognise the double-bounce sender.
    + myhostname, mail_name: the Reporting-MTA and the X-<mail_name>- fields.
    + header_limit: bounce_size_limit, the most original header bytes returned.
    + timeout: how long to wait for cleanup.
    """

    routing: Routing
    myhostname: str
    mail_name: str = "Postfix"
    header_limit: int = 50000
    timeout: float = 300.0


def notifier_from_config(cfg: MainConfig, routing: Routing) -> Notifier:
    """A Notifier from myhostname, mail_name and bounce_size_limit."""
    return Notifier(routing, cfg.get("myhostname"), cfg.get("mail_name") or "Postfix",
                    cfg.get_int("bounce_size_limit", minimum=1))


def retry_time(policy: RetryPolicy, arrival: float, now: float) -> float:
    """When a message that arrived at arrival is next tried, deferred at now."""
    return now + queue.backoff_delay(now - arrival, policy.minimal_backoff, policy.maximal_backoff)


def message_expired(policy: RetryPolicy, msg: ActiveMessage, now: float) -> bool:
    """True when msg has outlived its queue lifetime or was expired by postsuper."""
    lifetime = policy.bounce_lifetime if msg.envelope.sender == "" else policy.queue_lifetime
    return msg.forced_expire or now - msg.envelope.arrival > lifetime


def defer_expire(queue_dir: Path, msg: ActiveMessage) -> int:
    """Return msg's pending recipients to the sender as expired; how many were expired.

    Each keeps its last deferral status and reason from the defer log.
    """
    latest = bounce_log.log_latest(queue_dir, bounce_log.DEFER, msg.queue_id)
    dsn, reason = (FORCED_DSN, FORCED_REASON) if msg.forced_expire else (EXPIRED_DSN, EXPIRED_REASON)
    count = 0
    for rcpt in msg.envelope.pending():
        last = latest.get(rcpt.address)
        if last is not None and not msg.forced_expire:
            rcpt_dsn, rcpt_reason = last.dsn, last.reason
        else:
            rcpt_dsn, rcpt_reason = dsn, reason
        if active_bounce(queue_dir, msg, rcpt, "none", rcpt_dsn, rcpt_reason, msg.delays(),
                         status=bounce_log.EXPIRED, quiet=True):
            count += 1
    if count:
        log.msg_info(f"{msg.queue_id}: from=<{msg.envelope.sender}>, status=expired, returned to sender")
    return count


def _content(msg: ActiveMessage) -> bytes:
    """The message content, read back through the open descriptor (b"" if unreadable)."""
    try:
        size = os.fstat(msg.fd).st_size
        return record_parse(os.pread(msg.fd, size, 0))[1]
    except (OSError, RecordError) as exc:
        log.msg_warn(f"{msg.queue_id}: cannot reread message for notification: {exc}")
        return b""


def bounce_notify(queue_dir: Path, msg: ActiveMessage, notifier: Notifier) -> bool:
    """Send one non-delivery notification for the bounce log; True when none is left to send.

    The bounce log is removed once cleanup has the notification (or when it
    is discarded); it is kept, and False returned, when cleanup cannot take it.
    """
    records = bounce_log.log_read(queue_dir, bounce_log.BOUNCE, msg.queue_id)
    if not records:
        return True
    sender = msg.envelope.sender
    if sender == "" or notifier.routing.is_double_bounce(sender):
        log.msg_info(f"{msg.queue_id}: from=<{sender}>, status=bounced, "
                     f"non-delivery notification discarded")
        bounce_log.log_remove(queue_dir, bounce_log.BOUNCE, msg.queue_id)
        return True
    data = dsn_build(reporting_mta=notifier.myhostname, queue_id=msg.queue_id, sender=sender,
                     arrival=msg.envelope.arrival, records=records, original=_content(msg),
                     mail_name=notifier.mail_name, header_limit=notifier.header_limit)
    try:
        new_id = clients.cleanup_submit(queue_dir, "", [{"address": sender}], data,
                                        {"origin": "bounce"}, timeout=notifier.timeout)
    except (OSError, proto.ProtocolError, clients.ServiceError) as exc:
        log.msg_warn(f"{msg.queue_id}: sender non-delivery notification failed: "
                     f"{exc or type(exc).__name__}")
        return False
    log.msg_info(f"{msg.queue_id}: sender non-delivery notification: {new_id}")
    bounce_log.log_remove(queue_dir, bounce_log.BOUNCE, msg.queue_id)
    return True


def defer_finish(queue_dir: Path, msg: ActiveMessage, policy: RetryPolicy, notifier: Notifier,
                 now: float | None = None) -> str:
    """Finish a pass over msg (see the module summary); returns ``removed`` or ``deferred``."""
    now = time.time() if now is None else now
    if msg.envelope.pending() and message_expired(policy, msg, now):
        defer_expire(queue_dir, msg)
    notified = bounce_notify(queue_dir, msg, notifier)
    if notified and not msg.envelope.pending():
        active_remove(queue_dir, msg)
        return "removed"
    active_to_deferred(queue_dir, msg, retry_time(policy, msg.envelope.arrival, now))
    return "deferred"
