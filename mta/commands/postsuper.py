"""mta postsuper: delete (-d), hold (-h), release (-H) or requeue (-r) queued mail; root only.

Each option takes a queue ID, ``ALL`` (upper case only, as a safety measure)
or ``-`` (IDs read from standard input, one per line), may be repeated, and
runs in the order given. Trailing arguments name the queues to act on
(default: hold, incoming, active and deferred); inapplicable ones are skipped
as in Postfix: -h leaves maildrop and hold alone, -H looks only in hold, -r
skips maildrop.

  -d  removes the message and its defer, bounce and trace logs   ID: removed
  -h  moves it to hold/, where it is neither delivered nor expired  ID: placed on hold
  -H  moves it from hold/ to deferred/, due now                 ID: released from hold
  -r  writes its pending recipients and content into a new maildrop file, so
      pickup and cleanup process it again (address rewriting included), and
      removes the old file and logs                             ID: requeued

Then a summary per action, e.g. ``Deleted: 2 messages``. IDs are checked
before use (invalid ones get ``invalid mail queue id``), so no argument can
name a path outside the queue. As Postfix's postsuper does, the work is done
with mail_owner's rights (the effective uid and gid are switched for the
duration), so a compromised queue cannot lead root astray and new files get
the mail system's ownership.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from mta import clients, log
from mta.config import load_config
from mta.eugid import effective_ids
from mta.queue import ACTIVE as ACTIVE_QUEUE
from mta.queue import (
    DEFERRED,
    HOLD,
    INCOMING,
    LOG_QUEUES,
    MAILDROP,
    MESSAGE_QUEUES,
    QueueError,
    queue_create,
    queue_finish,
    queue_id_valid,
    queue_move,
    queue_path,
    queue_ready,
    queue_remove,
    queue_scan,
    set_retry_time,
)
from mta.record import Envelope, Recipient, RecordError, record_read, record_write

SUMMARY = "delete, hold, release or requeue queued mail (root only)"
ADD_HELP = False  # -h means "hold", as in Postfix; help is --help

DEFAULT_QUEUES = (HOLD, INCOMING, ACTIVE_QUEUE, DEFERRED)

# action -> (queues it never touches or the only ones it touches, past-tense summary)
SKIP = {"d": (), "h": (MAILDROP, HOLD), "H": tuple(q for q in MESSAGE_QUEUES if q != HOLD), "r": (MAILDROP,)}
SUMMARIES = (("r", "Requeued"), ("d", "Deleted"), ("h", "Placed on hold"), ("H", "Released from hold"))


class _Operation(argparse.Action):
    """Collect (action, argument) pairs in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        operations = list(getattr(namespace, self.dest, None) or [])
        operations.append((self.const, values))
        setattr(namespace, self.dest, operations)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """-d, -h, -H, -r (repeatable) and the optional queue names."""
    parser.add_argument("--help", action="help", help="show this help message and exit")
    for flag, text in (("-d", "delete"), ("-h", "put on hold"), ("-H", "release from hold"),
                       ("-r", "requeue through pickup and cleanup")):
        parser.add_argument(flag, dest="operations", action=_Operation, const=flag[1], metavar="ID",
                            help=f"{text} the message with this queue ID (ALL: every message; -: IDs from stdin)")
    parser.add_argument("queues", nargs="*", metavar="queue",
                        help="queues to act on (default: hold incoming active deferred)")
    parser.set_defaults(operations=None)


def _logs_remove(queue_dir: Path, queue_id: str) -> None:
    for log_queue in LOG_QUEUES:
        try:
            queue_path(queue_dir, log_queue, queue_id).unlink()
        except FileNotFoundError:
            pass


def _requeue(queue_dir: Path, queue: str, queue_id: str) -> None:
    """Copy the pending part of a message into a new maildrop file, then remove the old one."""
    envelope, content = record_read(queue_path(queue_dir, queue, queue_id))
    pending = [Recipient(r.address, r.original) for r in envelope.pending()]
    qf = queue_create(queue_dir, MAILDROP)
    try:
        record_write(qf.fd, Envelope(envelope.sender, pending, envelope.arrival, envelope.attrs), content)
    except BaseException:
        os.close(qf.fd)
        qf.path.unlink(missing_ok=True)
        raise
    queue_finish(qf)
    queue_remove(queue_dir, queue, queue_id)
    _logs_remove(queue_dir, queue_id)


def operate(queue_dir: Path, action: str, queue: str, queue_id: str) -> bool:
    """Apply action to queue_id in queue; True when it was done."""
    path = queue_path(queue_dir, queue, queue_id)
    if not queue_ready(path):
        return False
    try:
        if action == "d":
            _logs_remove(queue_dir, queue_id)
            if not queue_remove(queue_dir, queue, queue_id):
                return False
            log.msg_info(f"{queue_id}: removed")
        elif action == "h":
            queue_move(queue_dir, queue_id, queue, HOLD)
            log.msg_info(f"{queue_id}: placed on hold")
        elif action == "H":
            set_retry_time(queue_move(queue_dir, queue_id, HOLD, DEFERRED), time.time())
            log.msg_info(f"{queue_id}: released from hold")
        else:
            _requeue(queue_dir, queue, queue_id)
            log.msg_info(f"{queue_id}: requeued")
    except (QueueError, OSError, RecordError) as exc:
        log.msg_warn(f"{queue_id}: {exc}")
        return False
    return True


def _ids(argument: str) -> list[str]:
    if argument == "-":
        return [line.strip() for line in sys.stdin if line.strip()]
    return [argument]


def run_operations(queue_dir: Path, operations: Sequence[tuple[str, str]], queues: Sequence[str]) -> dict[str, int]:
    """Do every (action, argument) in order on queues; return the count of messages per action."""
    counts = {action: 0 for action, _ in operations}
    for action, argument in operations:
        targets = [q for q in queues if q not in SKIP[action]]
        if argument == "ALL":
            for queue in targets:
                for queue_id in sorted(queue_scan(queue_dir, queue)):
                    counts[action] += operate(queue_dir, action, queue, queue_id)
            continue
        for queue_id in _ids(argument):
            if not queue_id_valid(queue_id):
                log.msg_warn(f"invalid mail queue id: {queue_id}")
                continue
            counts[action] += any(operate(queue_dir, action, queue, queue_id) for queue in targets)
    return counts


def run(args: argparse.Namespace) -> int:
    """Check privileges and arguments, then operate as mail_owner and print the summaries."""
    if os.geteuid() != 0:
        log.msg_fatal("use of this command is reserved for the superuser")
        return 1
    operations = args.operations or []
    if not operations:
        log.msg_fatal("usage: postsuper [-d ID] [-h ID] [-H ID] [-r ID] [queue ...]")
        return 1
    for queue in args.queues:
        if queue not in MESSAGE_QUEUES:
            log.msg_fatal(f"invalid directory name: {queue}")
            return 1
    cfg = load_config(args.config_dir)
    queue_dir = Path(cfg.get("queue_directory"))
    try:
        owner = pwd.getpwnam(cfg.get("mail_owner"))
    except KeyError:
        log.msg_fatal(f"unknown mail_owner user: {cfg.get('mail_owner')}")
        return 1
    with effective_ids(owner.pw_uid, owner.pw_gid):
        counts = run_operations(queue_dir, operations, args.queues or DEFAULT_QUEUES)
    for action, label in SUMMARIES:
        if action in counts:
            count = counts[action]
            log.msg_info(f"{label}: {count} message{'' if count == 1 else 's'}")
    if counts.get("r"):
        clients.pickup_trigger(queue_dir)
    return 0
