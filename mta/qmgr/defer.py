"""Retry scheduling: finish a delivery pass by bouncing, expiring, deferring with back-off, or removing.

At the end of each pass over a message (every delivery request answered),
as Postfix's qmgr_active_done():

1. Pending recipients of a message older than maximal_queue_lifetime
   (bounce_queue_lifetime for null-sender mail), or of one whose file has the
   forced-expiry mode bit, are moved from the defer log to the bounce log:
   ``ID: from=<sender>, status=expired, returned to sender``. Their last
   4.x.x status is kept, with Action: failed.
2. If the bounce log has records, the bounce service (mta.bounce, Postfix's
   bounce(8)) sends one RFC 3464 notification to the sender through cleanup
   and logs ``ID: sender non-delivery notification: NEWID``. Mail from the
   null sender or the double-bounce address is never bounced: the service
   discards the notification and logs it, so a bounce that cannot be
   delivered is not bounced again.
3. With no recipient left the file and its logs are removed (``ID:
   removed``). Otherwise, or when the bounce service could not be reached
   (the bounce log is kept for the next pass), the sender gets the one delay
   warning once it is due (delay_warn: delay_warning_time, through the
   defer service, ``ID: sender delay notification: NEWID``), and the file
   goes to deferred/ with mtime = now + the message's age clamped to
   [minimal_backoff_time, maximal_backoff_time].
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from mta import bounce_log, clients, log, proto, queue
from mta.config import MainConfig
from mta.qmgr.active import ActiveMessage, active_bounce, active_remove, active_to_deferred
from mta.qmgr.deliver import Routing
from mta.record import RecordError, record_mark_warned

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
    """How qmgr asks the bounce service (mta.bounce) for notifications.

    + routing: to recognise the double-bounce sender (no delay warning for it).
    + timeout: how long to wait for the bounce service (ipc_timeout).
    """

    routing: Routing
    timeout: float = 300.0


def notifier_from_config(cfg: MainConfig, routing: Routing) -> Notifier:
    """A Notifier waiting ipc_timeout for the bounce service."""
    return Notifier(routing, cfg.get_time("ipc_timeout", minimum=1))


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


def bounce_notify(queue_dir: Path, msg: ActiveMessage, notifier: Notifier) -> bool:
    """Have the bounce service notify the sender about the bounce log; True when none is left to send.

    The bounce daemon builds the notification, hands it to cleanup and removes
    the bounce log (or discards it for a null or double-bounce sender, and
    logs that). When the service cannot be reached or fails, the bounce log is
    kept, a warning logged and False returned: the message is then deferred
    and the notification asked for again after the next pass.
    """
    if not bounce_log.log_exists(queue_dir, bounce_log.BOUNCE, msg.queue_id):
        return True
    try:
        clients.bounce_notify(queue_dir, queue.ACTIVE, msg.queue_id, timeout=notifier.timeout)
    except (OSError, proto.ProtocolError, clients.ServiceError) as exc:
        log.msg_warn(f"{msg.queue_id}: sender non-delivery notification failed: bounce service: "
                     f"{exc or type(exc).__name__}")
        return False
    return True


def delay_warn(queue_dir: Path, msg: ActiveMessage, notifier: Notifier, now: float) -> bool:
    """Send the sender the one delay warning once it is due; True when it was sent (or needs no sending).

    DELAY WARNING. cleanup writes the time a warning is due (arrival +
    delay_warning_time) into the queue file; when a pass ends after it with
    recipients still pending, the defer service sends the warning and the
    time is overwritten with 0 in place (as Postfix's qmgr rewrites its
    REC_TYPE_WARN record), so the warning goes out once, across restarts. A
    crash between the two can repeat it, never lose it. Mail from the null
    sender or the double-bounce address gets no warning. When the service
    fails the time stays and the next pass tries again.
    """
    envelope = msg.envelope
    if envelope.warn_time <= 0 or now < envelope.warn_time or not envelope.pending():
        return True
    if envelope.sender == "" or notifier.routing.is_double_bounce(envelope.sender):
        return True
    try:
        clients.bounce_warn(queue_dir, queue.ACTIVE, msg.queue_id, timeout=notifier.timeout)
    except (OSError, proto.ProtocolError, clients.ServiceError) as exc:
        log.msg_warn(f"{msg.queue_id}: sender delay notification failed: defer service: "
                     f"{exc or type(exc).__name__}")
        return False
    try:
        record_mark_warned(msg.fd, envelope)
        os.fsync(msg.fd)
    except (OSError, RecordError) as exc:
        log.msg_warn(f"{msg.queue_id}: cannot record the delay warning: {exc}")
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
    delay_warn(queue_dir, msg, notifier, now)
    active_to_deferred(queue_dir, msg, retry_time(policy, msg.envelope.arrival, now))
    return "deferred"
