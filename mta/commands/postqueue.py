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
The queue directory is queue_directory from main.cf (-c DIR, MAIL_CONFIG).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from mta import clients, log, proto
from mta.config import load_config
from mta.showq import showq_scan

SUMMARY = "list (-p, -j) or flush (-f) the mail queue"

EX_USAGE = 64
EX_SOFTWARE = 70
EX_UNAVAILABLE = 69

HEADINGS = ("-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")


class ShowqError(Exception):
    """The showq service answered with something that is not a queue listing."""


class QueueDown(Exception):
    """Neither the showq service nor the queue directory can be read."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """-p, -j and -f, one of them."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-p", dest="mode", action="store_const", const="p",
                       help="print the queue in the traditional mailq format")
    group.add_argument("-j", dest="mode", action="store_const", const="j",
                       help="print the queue as JSON lines")
    group.add_argument("-f", dest="mode", action="store_const", const="f",
                       help="flush: retry all deferred mail now")


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
    if args.mode is None:
        log.msg_fatal("usage: postqueue -f | postqueue -j | postqueue -p")
        return EX_USAGE
    cfg = load_config(args.config_dir)
    queue_dir = Path(cfg.get("queue_directory"))
    if args.mode == "f":
        if not clients.qmgr_trigger(queue_dir, b"FADI"):
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
