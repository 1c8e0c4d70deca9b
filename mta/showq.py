"""showq: list the mail queue for ``mta postqueue -p`` / ``-j``.

PROTOCOL. On each connection showq writes one JSON line per queued message
and then ``{"end": true}``; the client sends nothing. A message is
``{"queue_name", "queue_id", "arrival_time", "message_size", "forced_expire",
"sender", "recipients": [{"address", "orig_address", "delay_reason"}]}``,
the fields of Postfix 3.7's postqueue -j (plus orig_address). Queues are
listed in Postfix's order: maildrop, active, incoming, deferred, hold; IDs
within a queue are sorted. Only complete files (mode 0700) are listed.

REASONS. As Postfix's showq_report(): recipients named in the message's defer
log (``defer/X/ID``, read with mta.bounce_log) come first, with the latest
reason for each; then the remaining pending recipients of the queue file,
without a reason. Delivered recipients are not listed.
The size is the content length (the envelope is not counted); a null sender
is shown as $empty_address_recipient (MAILER-DAEMON).

SECURITY. showq runs as mail_owner and may be chrooted to the queue
directory. It only reads queue files and defer logs, and it tells any local
user who connects to public/showq what is queued, as Postfix's showq does.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Iterator

from mta import bounce_log, log, proto
from mta.queue import (
    ACTIVE,
    DEFERRED,
    HOLD,
    INCOMING,
    MAILDROP,
    MODE_FORCED_EXPIRE,
    queue_path,
    queue_ready,
    queue_scan,
)
from mta.record import RecordError, record_read
from mta.skeleton import DaemonContext

SERVER = "single"

# Postfix's showq order (showq.c queue_info[]).
SHOWQ_QUEUES = (MAILDROP, ACTIVE, INCOMING, DEFERRED, HOLD)

_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


def address_quote(address: str) -> str:
    """RFC 5321 external form: quote a local part that is not all atom characters (quote_822_local).

    >>> address_quote("a b@example.com"), address_quote("bob@example.com")
    ('"a b"@example.com', 'bob@example.com')
    """
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if local and not _ATOM.fullmatch(local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    text = f"{local}{at}{domain}"
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def showq_message(queue_dir: Path, queue: str, queue_id: str,
                  empty_sender: str = "MAILER-DAEMON") -> dict[str, Any] | None:
    """The listing entry for one queue file, or None when it is gone, incomplete or unreadable."""
    path = queue_path(queue_dir, queue, queue_id)
    if not queue_ready(path):
        return None
    try:
        st = os.stat(path)
        envelope, content = record_read(path)
    except FileNotFoundError:
        return None
    except (OSError, RecordError) as exc:
        log.msg_warn(f"{queue_id}: cannot read {queue} file: {exc}")
        return None
    pending = {r.address: r.original for r in envelope.pending()}
    recipients = []
    for address, record in bounce_log.log_latest(queue_dir, bounce_log.DEFER, queue_id).items():
        if address in pending:
            recipients.append({"address": address_quote(address),
                               "orig_address": address_quote(record.original or pending[address] or address),
                               "delay_reason": record.reason})
            del pending[address]
    for address, original in pending.items():
        recipients.append({"address": address_quote(address or empty_sender),
                           "orig_address": address_quote(original or address or empty_sender),
                           "delay_reason": ""})
    return {
        "queue_name": queue,
        "queue_id": queue_id,
        "arrival_time": int(envelope.arrival) if envelope.arrival > 0 else int(st.st_mtime),
        "message_size": len(content),
        "forced_expire": bool(st.st_mode & MODE_FORCED_EXPIRE),
        "sender": address_quote(envelope.sender or empty_sender),
        "recipients": recipients,
    }


def showq_scan(queue_dir: Path, empty_sender: str = "MAILER-DAEMON") -> Iterator[dict[str, Any]]:
    """Every listed message, queue by queue (also used by postqueue when showq is down)."""
    for queue in SHOWQ_QUEUES:
        for queue_id in sorted(queue_scan(queue_dir, queue)):
            entry = showq_message(queue_dir, queue, queue_id, empty_sender)
            if entry is not None:
                yield entry


def pre_init(ctx: DaemonContext) -> None:
    """Remember how a null sender is shown."""
    ctx.state["empty_sender"] = ctx.cfg.get("empty_address_recipient") or "MAILER-DAEMON"


def post_init(ctx: DaemonContext) -> None:
    """Nothing to do after chroot and privilege drop."""


def service(conn: socket.socket, ctx: DaemonContext) -> None:
    """Write the queue listing to conn, then the end marker."""
    channel = proto.Channel(conn, timeout=ctx.cfg.get_time("ipc_timeout"))
    try:
        for entry in showq_scan(ctx.queue_dir, ctx.state.get("empty_sender", "MAILER-DAEMON")):
            channel.send(entry)
        channel.send({"end": True})
    except OSError as exc:
        log.msg_warn(f"showq: write to client: {exc}")
    finally:
        channel.close()
