"""pickup: feed the files in maildrop/ to cleanup, then remove them (Postfix's pickup(8)).

On each trigger (the master's wakeup ``W``, or postdrop's after a new file)
pickup scans maildrop/ until a pass removes nothing. Each ready file (owner
execute bit set) is parsed; a file that does not parse is quarantined in
corrupt/ with a warning, never deleted. The message goes to cleanup with
``origin=pickup`` and the submitting user's uid, and the maildrop file is
unlinked only after cleanup replied that the message is in incoming/: a crash
in between can at worst deliver a message twice, never lose it.

When cleanup refuses a message permanently (too many hops, too big, no
recipients), Postfix's cleanup bounces it; until this MTA has a bounce client,
pickup moves the file to hold/ with a warning instead, so the administrator
can inspect it (``postqueue -p`` shows it with ``!``) and delete or release it.
When cleanup is unreachable, the scan stops and the next wakeup retries.

SECURITY. maildrop files are written only by postdrop (as mail_owner) and by
root's sendmail, so their uid attribute is trusted; a file owned by anyone else
is attributed to its owner instead. Only the envelope, the content, the uid and
the full name are taken from a file; other attributes are ignored. pickup runs
chrooted as mail_owner and needs nothing from outside the queue directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from mta import clients, log, proto
from mta.queue import (
    HOLD,
    MAILDROP,
    QueueError,
    queue_move,
    queue_path,
    queue_quarantine,
    queue_ready,
    queue_scan,
)
from mta.record import RecordError, record_read
from mta.skeleton import DaemonContext

SERVER = "trigger"

REMOVED = "removed"  # handed to cleanup and unlinked, or moved to hold/ or corrupt/
KEPT = "kept"  # left in maildrop/ for a later scan
STOP = "stop"  # cleanup is unreachable: end this scan


def pre_init(ctx: DaemonContext) -> None:
    """Nothing to open: pickup reads only the queue directory."""


def post_init(ctx: DaemonContext) -> None:
    """Nothing to do after chroot and privilege drop."""


def trigger(data: bytes, ctx: DaemonContext) -> None:
    """Any trigger byte means: scan maildrop/."""
    pickup_scan(ctx.queue_dir)


def pickup_scan(queue_dir: Path) -> int:
    """Process maildrop/ until a pass removes nothing; return how many files left it."""
    total = 0
    while True:
        removed = 0
        for queue_id in list(queue_scan(queue_dir, MAILDROP)):
            result = pickup_file(queue_dir, queue_id)
            if result == STOP:
                return total + removed
            removed += result == REMOVED
        total += removed
        if removed == 0:
            return total


def _uid(attrs: dict[str, str], owner: int) -> str:
    """The submitting uid: the recorded one for files of ours (mail_owner or root), else the owner."""
    recorded = attrs.get("uid", "")
    if owner in (os.geteuid(), 0) and recorded.isdigit():
        return recorded
    return str(owner)


def pickup_file(queue_dir: Path, queue_id: str) -> str:
    """Hand one maildrop file to cleanup; REMOVED, KEPT or STOP (see the constants)."""
    path = queue_path(queue_dir, MAILDROP, queue_id)
    if not queue_ready(path):
        return KEPT
    try:
        owner = os.stat(path).st_uid
        envelope, content = record_read(path)
    except FileNotFoundError:
        return KEPT
    except RecordError as exc:
        queue_quarantine(queue_dir, MAILDROP, queue_id, str(exc))
        return KEPT if path.exists() else REMOVED
    except OSError as exc:
        log.msg_warn(f"open input file {path}: {os.strerror(exc.errno or 0)}")
        return KEPT
    uid = _uid(envelope.attrs, owner)
    attrs = {"origin": "pickup", "uid": uid, "arrival_time": f"{envelope.arrival:.6f}"}
    if envelope.attrs.get("fullname"):
        attrs["fullname"] = envelope.attrs["fullname"]
    recipients = [{"address": r.address, "original": r.original} if r.original else {"address": r.address}
                  for r in envelope.pending()]
    try:
        new_id = clients.cleanup_submit(queue_dir, envelope.sender, recipients, content, attrs)
    except clients.ServiceError as exc:
        if exc.status != proto.PERMFAIL:
            log.msg_warn(f"{queue_id}: uid={uid} from=<{envelope.sender}>: cleanup: {exc.dsn} {exc.reason}"
                         " (will retry)")
            return KEPT
        return _hold(queue_dir, queue_id, f"uid={uid} from=<{envelope.sender}>: "
                                          f"rejected by cleanup: {exc.dsn} {exc.reason}")
    except (OSError, proto.ProtocolError) as exc:
        log.msg_warn(f"connect to cleanup service: {exc}")
        return STOP
    log.msg_info(f"{new_id}: uid={uid} from=<{envelope.sender}> orig_id={queue_id}")
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.msg_warn(f"remove {path}: {os.strerror(exc.errno or 0)}")
        return KEPT
    return REMOVED


def _hold(queue_dir: Path, queue_id: str, reason: str) -> str:
    """Move a refused maildrop file to hold/ with a warning."""
    log.msg_warn(f"{queue_id}: {reason}; moved to {HOLD}")
    try:
        queue_move(queue_dir, queue_id, MAILDROP, HOLD)
    except QueueError as exc:
        log.msg_warn(f"{queue_id}: {exc}")
        return KEPT
    return REMOVED
