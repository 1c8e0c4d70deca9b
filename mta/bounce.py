"""bounce, defer and trace: notify the sender with a DSN built from a bounce or defer log (bounce(8)).

One daemon serves the three master.cf services, as Postfix's does (``bounce
unix - - y - 0 bounce``, the same for ``defer`` and ``trace``). qmgr appends
each recipient's outcome to ``bounce/ID`` or ``defer/ID`` itself
(mta.bounce_log); at the end of a delivery pass it asks this daemon for the
notification, through mta.clients.bounce_notify and bounce_warn:

    {"op": "notify", "queue_name": "active", "queue_id": ID}    private/bounce
        One RFC 3464 non-delivery notification for every record of the
        bounce log, with the message's headers, goes to cleanup from the
        null sender (origin "bounce"): ``ID: sender non-delivery
        notification: NEWID``. The bounce log is then removed.
    {"op": "warn", "queue_name": "active", "queue_id": ID}      private/defer
        A delay warning (Postfix's delay_template: "Delayed Mail (still being
        retried)", Action: delayed, Will-Retry-Until) naming each pending
        recipient's latest reason from the defer log: ``ID: sender delay
        notification: NEWID``. The defer log stays; postqueue -p shows it.

The reply is ``{"status": 0, "queue_id": NEWID}``, or ``{"status": 0,
"discarded": true}`` when nothing is sent on purpose: mail from the null
sender or the double-bounce address is never notified about, so a
notification that cannot be delivered is not bounced again (``ID: from=<>,
status=bounced, non-delivery notification discarded``); an empty log has
nothing to report. When cleanup refuses the notification or cannot be
reached, or the queue file cannot be read, the reply is status 4: the log is
kept and qmgr asks again after the next delivery pass. The trace service
answers the same requests (delivery reports for ``sendmail -v`` and ``-bv``
are not implemented), and no postmaster copies are sent (notify_classes).

SECURITY. bounce runs as mail_owner and may be chrooted to the queue
directory: it reads queue files and logs there and talks to public/cleanup.
It trusts a request only as far as the name of a message queue and a
well-formed queue ID; the notification goes to the sender recorded in the
queue file, not to an address in the request. Diagnostic texts, which may
come from remote servers, are reduced to printable ASCII by mta.dsn.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mta import bounce_log, clients, log, proto, queue
from mta.config import MainConfig
from mta.dsn import DelayNotice, dsn_build
from mta.record import Envelope, RecordError, record_read
from mta.skeleton import DaemonContext

SERVER = "single"

NOTIFY = "notify"
WARN = "warn"


@dataclass(frozen=True)
class BounceSettings:
    """main.cf as bounce uses it, read once in pre_init.

    + myhostname, mail_name: Reporting-MTA and the X-<mail_name>- fields.
    + header_limit: bounce_size_limit, the most header bytes returned.
    + timeout: ipc_timeout, for the client and for cleanup.
    + double_bounce, local_domains: to recognise the double-bounce sender
      (double_bounce_sender, bare or in mydestination).
    + delay: delay_warning_time and maximal_queue_lifetime for the delay text.
    """

    myhostname: str
    mail_name: str
    header_limit: int
    timeout: int
    double_bounce: str
    local_domains: frozenset[str]
    delay: DelayNotice


def settings_create(cfg: MainConfig) -> BounceSettings:
    """Read every parameter bounce uses; ConfigError for a bad value.

    mydestination entries that are lookup tables are not consulted (qmgr does the same).
    """
    domains = {"localhost"}
    for entry in cfg.get_list("mydestination"):
        if ":" not in entry or entry.startswith("["):
            domains.add(entry.lower().rstrip("."))
    return BounceSettings(
        myhostname=cfg.get("myhostname"),
        mail_name=cfg.get("mail_name") or "Postfix",
        header_limit=cfg.get_int("bounce_size_limit", minimum=1),
        timeout=cfg.get_time("ipc_timeout", minimum=1),
        double_bounce=cfg.get("double_bounce_sender") or "double-bounce",
        local_domains=frozenset(domains),
        delay=DelayNotice(cfg.get_time("delay_warning_time", minimum=0),
                          cfg.get_time("maximal_queue_lifetime", minimum=0)),
    )


def sender_silenced(settings: BounceSettings, sender: str) -> bool:
    """True for the null sender and the local double-bounce address: they never get notifications."""
    if sender == "":
        return True
    local, at, domain = sender.rpartition("@")
    if not at:
        local = sender
    if local.lower() != settings.double_bounce.lower():
        return False
    return not at or domain.lower().rstrip(".") in settings.local_domains


def _discarded() -> dict[str, Any]:
    return proto.reply(proto.OK, discarded=True)


def _submit(queue_dir: Path, settings: BounceSettings, queue_id: str, sender: str, what: str,
            data: bytes) -> tuple[str | None, dict[str, Any]]:
    """Hand a notification to cleanup: (new queue ID or None, the reply for the client)."""
    try:
        new_id = clients.cleanup_submit(queue_dir, "", [{"address": sender}], data, {"origin": "bounce"},
                                        timeout=settings.timeout)
    except clients.ServiceError as exc:
        log.msg_warn(f"{queue_id}: sender {what} failed: {exc}")
        dsn = exc.dsn if exc.dsn.startswith("4.") else ""
        return None, proto.reply(proto.TEMPFAIL, f"cleanup: {exc.reason}", dsn)
    except (OSError, proto.ProtocolError) as exc:
        log.msg_warn(f"{queue_id}: sender {what} failed: {exc or type(exc).__name__}")
        return None, proto.reply(proto.TEMPFAIL, f"cleanup: {exc or type(exc).__name__}")
    log.msg_info(f"{queue_id}: sender {what}: {new_id}")
    return new_id, proto.reply(proto.OK, queue_id=new_id)


def bounce_notify(queue_dir: Path, settings: BounceSettings, queue_id: str, envelope: Envelope,
                  content: bytes) -> dict[str, Any]:
    """The notify request: one non-delivery notification for the bounce log, which is then removed."""
    records = bounce_log.log_read(queue_dir, bounce_log.BOUNCE, queue_id)
    if not records:
        return _discarded()
    sender = envelope.sender
    if sender_silenced(settings, sender):
        log.msg_info(f"{queue_id}: from=<{sender}>, status=bounced, non-delivery notification discarded")
        bounce_log.log_remove(queue_dir, bounce_log.BOUNCE, queue_id)
        return _discarded()
    data = dsn_build(reporting_mta=settings.myhostname, queue_id=queue_id, sender=sender,
                     arrival=envelope.arrival, records=records, original=content,
                     mail_name=settings.mail_name, header_limit=settings.header_limit)
    new_id, reply = _submit(queue_dir, settings, queue_id, sender, "non-delivery notification", data)
    if new_id is not None:
        bounce_log.log_remove(queue_dir, bounce_log.BOUNCE, queue_id)
    return reply


def bounce_warn(queue_dir: Path, settings: BounceSettings, queue_id: str, envelope: Envelope,
                content: bytes) -> dict[str, Any]:
    """The warn request: one delay warning naming each pending recipient's latest deferral reason."""
    sender = envelope.sender
    if sender_silenced(settings, sender):
        return _discarded()
    latest = bounce_log.log_latest(queue_dir, bounce_log.DEFER, queue_id)
    records = [latest[r.address] for r in envelope.pending() if r.address in latest]
    if not records:
        return _discarded()
    data = dsn_build(reporting_mta=settings.myhostname, queue_id=queue_id, sender=sender,
                     arrival=envelope.arrival, records=records, original=content,
                     mail_name=settings.mail_name, header_limit=settings.header_limit, delay=settings.delay)
    return _submit(queue_dir, settings, queue_id, sender, "delay notification", data)[1]


def request_answer(queue_dir: Path, settings: BounceSettings, request: dict[str, Any]) -> dict[str, Any]:
    """The reply to one request (see the module docstring)."""
    op = request.get("op")
    if op not in (NOTIFY, WARN):
        return proto.reply(proto.PERMFAIL, f"unknown request: {str(op)[:40]!r}")
    queue_name, queue_id = request.get("queue_name"), request.get("queue_id")
    if (queue_name not in queue.MESSAGE_QUEUES or not isinstance(queue_id, str)
            or not queue.queue_id_valid(queue_id)):
        return proto.reply(proto.PERMFAIL, "malformed request: bad queue name or queue ID")
    try:
        envelope, content = record_read(queue.queue_path(queue_dir, queue_name, queue_id))
    except (OSError, RecordError) as exc:
        log.msg_warn(f"{queue_id}: read {queue_name} file: {exc}")
        return proto.reply(proto.TEMPFAIL, f"cannot read queue file {queue_name}/{queue_id}")
    answer = bounce_notify if op == NOTIFY else bounce_warn
    return answer(queue_dir, settings, queue_id, envelope, content)


# -- daemon entry points (mta.skeleton CONTRACT) ---------------------------------


def pre_init(ctx: DaemonContext) -> None:
    """Read main.cf (a bad value stops the process here, before the jail)."""
    ctx.state["settings"] = settings_create(ctx.cfg)


def post_init(ctx: DaemonContext) -> None:
    """Nothing to do after chroot and privilege drop."""


def service(conn: socket.socket, ctx: DaemonContext) -> None:
    """Answer the one request of a connection."""
    settings: BounceSettings = ctx.state.get("settings") or settings_create(ctx.cfg)
    channel = proto.Channel(conn, timeout=settings.timeout)
    try:
        received = channel.receive()
        if received is None:
            return
        channel.send(request_answer(ctx.queue_dir, settings, received[0]))
    except (OSError, proto.ProtocolError) as exc:
        log.msg_warn(f"bounce: request: {exc}")
    finally:
        channel.close()
