"""Active queue: move messages into and out of active/, keep per-message state, record outcomes.

A message enters active/ by one rename from incoming/ or deferred/, is parsed
(a corrupt file is quarantined, never deleted) and stays open read-write so
each recipient's ``R`` byte can be turned into ``D`` the moment it is
delivered or bounced. It leaves active/ either removed (no recipient left) or
renamed into deferred/ with its next retry time as mtime; the mtime is set
before the rename, so a deferred-queue scan never sees a stale time.

Per-recipient outcomes are logged in Postfix's form::

    ID: to=<rcpt>, orig_to=<orig>, relay=local, delay=0.12, delays=0.01/0/0/0.11,
        dsn=2.0.0, status=sent (delivered to maildir)
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mta import bounce_log, log, queue
from mta.record import Envelope, Recipient, RecordError, fd_read, record_mark_done, record_parse


def format_delay(seconds: float, resolution: int = 2) -> str:
    """A delay as Postfix logs it: whole seconds from 10 s, one decimal from 1 s,
    else up to two significant digits with at most resolution decimals.

    >>> [format_delay(x) for x in (0, 0.0004, 0.07, 0.283, 1.25, 9.99, 12.6)]
    ['0', '0', '0.07', '0.28', '1.2', '9.9', '13']
    """
    if seconds >= 10:
        return str(int(seconds + 0.5))
    if seconds >= 1:
        return f"{int(seconds)}.{int(seconds * 10) % 10}"
    for digits in range(1, resolution + 1):
        scaled = int(seconds * 10 ** digits)
        if scaled >= 10 or (digits == resolution and scaled > 0):
            text = f"{seconds:.{digits}f}"[:digits + 2]
            return text.rstrip("0").rstrip(".") or "0"
    return "0"


@dataclass
class Delays:
    """Where a delivery's time went (Postfix's ``delays=a/b/c/d``).

    + a: before the queue manager (arrival until the message entered active/).
    + b: in the queue manager (until the delivery request started).
    + c: connection setup with the delivery agent.
    + d: the delivery itself.
    """

    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0

    def text(self) -> str:
        """``a/b/c/d`` in Postfix's number format."""
        return "/".join(format_delay(max(x, 0.0)) for x in (self.a, self.b, self.c, self.d))


@dataclass(eq=False)
class ActiveMessage:
    """A message in active/: its envelope, open descriptor and delivery progress.

    + queue_id, envelope: what the queue file says.
    + size: the content length (what ``size=`` logs).
    + forced_expire: the file had the g+x mode bit (postsuper -e/-f).
    + active_time: when it entered active/.
    + fd: the file opened read-write for record_mark_done().
    + outstanding: delivery requests still in flight (guarded by lock).
    """

    queue_id: str
    envelope: Envelope
    size: int
    forced_expire: bool
    active_time: float
    fd: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    outstanding: int = 0

    def delays(self, start: float | None = None, connected: float | None = None,
               end: float | None = None) -> Delays:
        """Delays for a delivery that started, connected and ended at these times (default now)."""
        now = time.time()
        start = now if start is None else start
        connected = start if connected is None else connected
        end = connected if end is None else end
        return Delays(self.active_time - self.envelope.arrival, start - self.active_time,
                      connected - start, end - connected)


def active_enter(queue_dir: Path, source: str, queue_id: str) -> bool:
    """Rename queue_id from source (incoming or deferred) into active/; False if it vanished."""
    try:
        queue.queue_move(queue_dir, queue_id, source, queue.ACTIVE, sync=False)
        return True
    except queue.QueueError:
        # Deleted, held or moved by postsuper between the scan and now.
        return False


def active_load(queue_dir: Path, queue_id: str) -> ActiveMessage | None:
    """Open and parse active/queue_id; quarantine it (and return None) when it is corrupt."""
    path = queue.queue_file(queue_dir, queue.ACTIVE, queue_id)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        log.msg_warn(f"{queue_id}: open {path}: {os.strerror(exc.errno or 0)}")
        return None
    try:
        st = os.fstat(fd)
        envelope, content = record_parse(fd_read(fd, st.st_size))
    except (RecordError, OSError) as exc:
        os.close(fd)
        queue.queue_quarantine(queue_dir, queue.ACTIVE, queue_id, str(exc))
        return None
    forced = bool(st.st_mode & queue.MODE_FORCED_EXPIRE)
    msg = ActiveMessage(queue_id, envelope, len(content), forced, time.time(), fd)
    log.msg_info(f"{queue_id}: from=<{envelope.sender}>, size={msg.size}, "
                 f"nrcpt={len(envelope.recipients)} (queue active)")
    return msg


def active_recover(queue_dir: Path) -> list[str]:
    """Move files left in active/ by a crash back to incoming/ (as Postfix does at start-up).

    Recipients already marked done stay done, so only the others are delivered again.
    """
    recovered: list[str] = []
    for queue_id in sorted(queue.queue_scan(queue_dir, queue.ACTIVE)):
        try:
            queue.queue_move(queue_dir, queue_id, queue.ACTIVE, queue.INCOMING)
            recovered.append(queue_id)
        except queue.QueueError as exc:
            log.msg_warn(f"{queue_id}: recover from active queue: {exc}")
    return recovered


def active_close(msg: ActiveMessage) -> None:
    """Close the message's descriptor (idempotent)."""
    if msg.fd >= 0:
        os.close(msg.fd)
        msg.fd = -1


def active_mark_done(msg: ActiveMessage, rcpt: Recipient) -> None:
    """Turn the recipient's R into D, so it is never delivered again.

    The mark is fsynced while other recipients are still pending, so a crash
    never repeats those deliveries. For the last pending recipient it is not:
    the file is removed as soon as the pass ends, and a crash in between can
    at worst repeat one delivery, which is Postfix's own trade-off (its qmgr
    flushes recipient marks without fsync). This saves an fsync per message.
    """
    try:
        record_mark_done(msg.fd, rcpt)
        if any(not other.done for other in msg.envelope.recipients):
            os.fsync(msg.fd)
    except (OSError, RecordError) as exc:
        rcpt.done = True
        log.msg_warn(f"{msg.queue_id}: cannot mark <{rcpt.address}> done: {exc}")


def _status_log(msg: ActiveMessage, rcpt: Recipient, relay: str, delays: Delays, dsn: str,
                status: str, reason: str) -> None:
    orig = f", orig_to=<{rcpt.original}>" if rcpt.original and rcpt.original != rcpt.address else ""
    total = format_delay(max(time.time() - msg.envelope.arrival, 0.0))
    log.msg_info(f"{msg.queue_id}: to=<{rcpt.address}>{orig}, relay={relay}, delay={total}, "
                 f"delays={delays.text()}, dsn={dsn}, status={status} ({reason})")


def active_sent(msg: ActiveMessage, rcpt: Recipient, relay: str, dsn: str, reason: str,
                delays: Delays) -> None:
    """Record a successful delivery: mark the recipient done and log ``status=sent``."""
    active_mark_done(msg, rcpt)
    _status_log(msg, rcpt, relay, delays, dsn, "sent", reason)


def active_defer(queue_dir: Path, msg: ActiveMessage, rcpt: Recipient, relay: str, dsn: str,
                 reason: str, delays: Delays) -> None:
    """Record a temporary failure: append to defer/ID and log ``status=deferred``.

    The recipient stays pending in the queue file, so the next attempt retries it.
    """
    record = bounce_log.record_create(rcpt.address, rcpt.original, bounce_log.DEFERRED, dsn, reason)
    try:
        with msg.lock:
            bounce_log.log_append(queue_dir, bounce_log.DEFER, msg.queue_id, record)
    except OSError as exc:
        log.msg_warn(f"{msg.queue_id}: append defer log: {os.strerror(exc.errno or 0)}")
    _status_log(msg, rcpt, relay, delays, dsn, "deferred", reason)


def active_bounce(queue_dir: Path, msg: ActiveMessage, rcpt: Recipient, relay: str, dsn: str,
                  reason: str, delays: Delays, status: str = bounce_log.BOUNCED,
                  quiet: bool = False) -> bool:
    """Record a permanent failure: append to bounce/ID (fsynced), then mark the recipient done.

    + status: ``bounced``, or ``expired`` for a recipient returned because the
      message outlived maximal_queue_lifetime.
    + quiet: do not log the recipient (an expired message logs one line for all).
    When the bounce log cannot be written the recipient is deferred instead
    (as Postfix does on a bounce service failure) and False is returned.
    """
    record = bounce_log.record_create(rcpt.address, rcpt.original, status, dsn, reason)
    try:
        with msg.lock:
            bounce_log.log_append(queue_dir, bounce_log.BOUNCE, msg.queue_id, record)
    except OSError as exc:
        log.msg_warn(f"{msg.queue_id}: append bounce log: {os.strerror(exc.errno or 0)}")
        active_defer(queue_dir, msg, rcpt, relay, "4.3.0", "bounce or trace service failure", delays)
        return False
    active_mark_done(msg, rcpt)
    if not quiet:
        _status_log(msg, rcpt, relay, delays, dsn, status, reason)
    return True


def active_remove(queue_dir: Path, msg: ActiveMessage) -> None:
    """Delete a finished message and its logs, and log ``removed``.

    The defer and bounce logs go first: if we crash in between, the queue file
    is still there and is simply finished again after the restart.
    """
    active_close(msg)
    bounce_log.log_remove(queue_dir, bounce_log.DEFER, msg.queue_id)
    bounce_log.log_remove(queue_dir, bounce_log.BOUNCE, msg.queue_id)
    if not queue.queue_remove(queue_dir, queue.ACTIVE, msg.queue_id):
        log.msg_warn(f"{msg.queue_id}: remove active/{msg.queue_id}: file already gone")
    log.msg_info(f"{msg.queue_id}: removed")


def active_to_deferred(queue_dir: Path, msg: ActiveMessage, retry_time: float) -> None:
    """Move the message into deferred/ with mtime = retry_time (its next attempt)."""
    active_close(msg)
    path = queue.queue_file(queue_dir, queue.ACTIVE, msg.queue_id)
    try:
        queue.set_retry_time(path, retry_time)
        queue.queue_move(queue_dir, msg.queue_id, queue.ACTIVE, queue.DEFERRED)
    except (OSError, queue.QueueError) as exc:
        # The file stays in active/ and is recovered at the next start.
        log.msg_warn(f"{msg.queue_id}: move to deferred queue: {exc}")
