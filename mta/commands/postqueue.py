"""mta postqueue: list the mail queue (-p, -j) or flush it (-f), as Postfix's postqueue(1).

-p prints the traditional mailq listing in Postfix's exact format (one block
per message: ID with ``*`` active, ``!`` on hold and ``#`` forced to expire,
size, arrival time and sender, then the recipients, each change of delay
reason shown in parentheses ending at column 78; then ``-- N Kbytes in M
Requests.`` or ``Mail queue is empty``). -j prints one JSON object per line
with Postfix 3.7's fields: queue_name, queue_id, arrival_time, message_size,
forced_expire, sender and recipients [{address, delay_reason}]. Both ask the
showq service (public/showq); when the mail system is down, root reads the
queue directly after a warning, and other users get an error.

-f asks the queue manager to retry all deferred mail now (Postfix's trigger
sequence F, A, D, I) and wakes pickup; it fails when the mail system is down.

-s SITE schedules immediate delivery of the deferred mail for one destination
(postqueue(1)): every message in deferred/ with a pending recipient in domain
SITE (case-insensitive; ``[SITE]`` is accepted too) is made due now by setting
its retry time, the file's mtime, to now; then qmgr is told to forget dead
destinations and scan deferred/ (F, D). Postfix does this through its flush(8)
service for fast-flush domains only; here every destination qualifies, and
the queue is updated by this command itself, so it needs root (or
mail_owner). The queue directory is queue_directory from main.cf (-c DIR,
MAIL_CONFIG).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from mta import clients, log, proto
from mta.config import load_config
from mta.queue import DEFERRED, queue_path, queue_scan, set_retry_time
from mta.record import RecordError, record_read
from mta.showq import showq_scan

SUMMARY = "list (-p, -j) or flush (-f, -s SITE) the mail queue"

EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_NOPERM = 77

FLUSH_TRIGGER = b"FADI"
SITE_TRIGGER = b"FD"
USAGE = "usage: postqueue -f | postqueue -j | postqueue -p | postqueue -s site"

_SITE = re.compile(r"[A-Za-z0-9._:-]+")

HEADINGS = ("-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")


class ShowqError(Exception):
    """The showq service answered with something that is not a queue listing."""


class QueueDown(Exception):
    """Neither the showq service nor the queue directory can be read."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """-p, -j, -f and -s SITE, one of them."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-p", dest="mode", action="store_const", const="p",
                       help="print the queue in the traditional mailq format")
    group.add_argument("-j", dest="mode", action="store_const", const="j",
                       help="print the queue as JSON lines")
    group.add_argument("-f", dest="mode", action="store_const", const="f",
                       help="flush: retry all deferred mail now")
    group.add_argument("-s", dest="site", metavar="SITE",
                       help="retry now the deferred mail for one destination: every message with a "
                            "recipient in domain SITE (also written [SITE]); needs root")


def site_domain(site: str) -> str | None:
    """The recipient domain a -s argument names (lower case, no brackets or final dot); None if invalid.

    >>> site_domain("Example.COM."), site_domain("[mx.example.com]"), site_domain("a b"), site_domain("[]")
    ('example.com', 'mx.example.com', None, None)
    """
    name = site.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.rstrip(".").lower()
    return name if _SITE.fullmatch(name) else None


def site_schedule(queue_dir: Path, domain: str, now: float | None = None) -> list[str]:
    """Make every deferred message with a pending recipient in domain due now; return their queue IDs.

    The retry time of a deferred file is its mtime (reference §3.4), so the
    next deferred-queue scan picks these files up. PermissionError when this
    process cannot read the deferred queue.
    """
    when = time.time() if now is None else now
    scheduled: list[str] = []
    for queue_id in sorted(queue_scan(queue_dir, DEFERRED)):
        path = queue_path(queue_dir, DEFERRED, queue_id)
        try:
            envelope, _ = record_read(path)
        except FileNotFoundError:
            continue  # delivered, or moved by qmgr, since the scan
        except PermissionError:
            raise
        except (OSError, RecordError) as exc:
            log.msg_warn(f"{queue_id}: skipping unreadable deferred file: {exc}")
            continue
        if not any(rcpt.address.rpartition("@")[2].rstrip(".").lower() == domain
                   for rcpt in envelope.pending() if "@" in rcpt.address):
            continue
        try:
            set_retry_time(path, when)
        except FileNotFoundError:
            continue
        scheduled.append(queue_id)
    return scheduled


def _site_flush(queue_dir: Path, site: str) -> int:
    """postqueue -s: make the site's deferred mail due, then trigger qmgr (F, D)."""
    domain = site_domain(site)
    if domain is None:
        log.msg_fatal("empty site name" if not site.strip(" []") else f'Invalid request: "{site}"')
        return EX_USAGE
    try:
        site_schedule(queue_dir, domain)
    except PermissionError as exc:
        log.msg_fatal(f"Cannot flush mail queue for {domain}: {exc.filename or queue_dir}: "
                      f"{os.strerror(exc.errno or 0)} (postqueue -s needs root)")
        return EX_NOPERM
    if not clients.qmgr_trigger(queue_dir, SITE_TRIGGER):
        log.msg_fatal("Cannot flush mail queue - mail system is down")
        return EX_UNAVAILABLE
    return 0


def showq_receive(queue_dir: Path) -> Iterator[dict[str, Any]]:
    """The listing from the showq service (OSError when it cannot be reached)."""
    channel = proto.unix_connect(str(queue_dir / "public" / "showq"))
    try:
        while True:
            received = channel.receive()
            if received is None:
                raise ShowqError("malformed showq server response: premature end")
            message = received[0]
            if message.get("end"):
                return
            if not isinstance(message.get("recipients"), list):
                raise ShowqError("malformed showq server response")
            yield message
    finally:
        channel.close()


def print_compat(messages: Iterable[dict[str, Any]], out: TextIO) -> None:
    """Postfix's showq_compat() output (src/postqueue/showq_compat.c)."""
    count = total = 0
    for message in messages:
        out.write("\n" if count else "%-11s %7s %-20s %s\n" % HEADINGS)
        status = message["queue_id"]
        status += {"active": "*", "hold": "!"}.get(message["queue_name"], "")
        status += "#" if message.get("forced_expire") else ""
        arrival = time.asctime(time.localtime(int(message["arrival_time"])))
        out.write("%-11s %7d %20.20s %s\n" % (status, int(message["message_size"]), arrival, message["sender"]))
        previous = ""
        for rcpt in message["recipients"]:
            reason = rcpt.get("delay_reason") or ""
            if reason != previous:
                previous = reason
                shown = reason or "reason unavailable"
                out.write("%*s(%s)\n" % (max(0, 76 - len(shown)), "", shown))
            out.write("%-11s %7s %-20s %s\n" % ("", "", "", rcpt["address"]))
        total += int(message["message_size"])
        count += 1
    if count == 0:
        out.write("Mail queue is empty\n")
    else:
        out.write(f"\n-- {total // 1024} Kbytes in {count} Request{'' if count == 1 else 's'}.\n")


def print_json(messages: Iterable[dict[str, Any]], out: TextIO) -> None:
    """Postfix 3.7's showq_json() output: one object per line, its field order and spacing."""
    for message in messages:
        recipients = []
        for rcpt in message["recipients"]:
            item = {"address": rcpt["address"]}
            if rcpt.get("delay_reason"):
                item["delay_reason"] = rcpt["delay_reason"]
            recipients.append(item)
        entry = {key: message[key] for key in
                 ("queue_name", "queue_id", "arrival_time", "message_size", "forced_expire", "sender")}
        entry["recipients"] = recipients
        out.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _listing(queue_dir: Path, empty_sender: str) -> Iterator[dict[str, Any]]:
    """Messages from showq, or straight from the queue (root only) when the mail system is down."""
    stream = showq_receive(queue_dir)
    try:
        first = next(stream, None)
    except proto.ProtocolError:
        raise
    except OSError as exc:
        reason = f"Connect to the mta showq service: {os.strerror(exc.errno or 0) if exc.errno else exc}"
        if os.geteuid() != 0:
            raise QueueDown(f"Queue report unavailable - mail system is down ({reason})") from None
        log.msg_warn(f"Mail system is down -- accessing queue directly ({reason})")
        yield from showq_scan(queue_dir, empty_sender)
        return
    if first is not None:
        yield first
        yield from stream


def run(args: argparse.Namespace) -> int:
    """Run postqueue; the exit status follows Postfix (69 when the mail system is down)."""
    if args.mode is None and args.site is None:
        log.msg_fatal(USAGE)
        return EX_USAGE
    cfg = load_config(args.config_dir)
    queue_dir = Path(cfg.get("queue_directory"))
    if args.site is not None:
        return _site_flush(queue_dir, args.site)
    if args.mode == "f":
        if not clients.qmgr_trigger(queue_dir, FLUSH_TRIGGER):
            log.msg_fatal("Cannot flush mail queue - mail system is down")
            return EX_UNAVAILABLE
        clients.pickup_trigger(queue_dir)
        return 0
    printer = print_compat if args.mode == "p" else print_json
    try:
        printer(_listing(queue_dir, cfg.get("empty_address_recipient") or "MAILER-DAEMON"), sys.stdout)
    except QueueDown as exc:
        log.msg_fatal(str(exc))
        return EX_UNAVAILABLE
    except (ShowqError, proto.ProtocolError) as exc:
        log.msg_fatal(str(exc))
        return EX_SOFTWARE
    except PermissionError as exc:
        log.msg_fatal(f"Queue report unavailable: {exc}")
        return EX_UNAVAILABLE
    sys.stdout.flush()
    return 0
