"""mta sendmail: Postfix-compatible sendmail(1): read a message on stdin and queue it for delivery.

Recipients are the arguments (each parsed as an address list, so "a, b" and
"Name <addr>" work); -t also takes them from the To:, Cc: and Bcc: headers
(Resent-To/Cc/Bcc when present) and removes Bcc: from the message. -f sets the
envelope sender (``-f '<>'`` for the null sender; default: your login name,
qualified later with @$myorigin), -F the full name for a generated From:
header. A line with a lone "." ends the message unless -i or -oi is given.
Lines may end in LF or CRLF (sendmail_fix_line_endings). -bm (the default)
queues mail; -bi (or the name newaliases) rebuilds the alias tables; -bp (or
the name mailq) lists the queue; -q flushes it; -C names the configuration
(a directory, or its main.cf). -N and -R (DSN) are ignored with a warning;
other legacy options (-o..., -B, -h, -m, -n, -U, -V, -X, -L, -O) are ignored.

The message goes to the postdrop service (queue_directory/submit/postdrop).
When that is not running, root writes straight into maildrop/ (pickup takes it
when the MTA starts); anyone else gets "the mail system is down" and exit
status 75 (EX_TEMPFAIL). Exit statuses follow sysexits(3): 64 bad usage,
65 bad input, 66 unreadable input, 69 refused, 70 internal error, 77 not
allowed to submit, 78 configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pwd
import sys
from email.utils import getaddresses
from pathlib import Path
from typing import BinaryIO, NoReturn, Sequence

from mta import cli, clients, log, proto
from mta.cleanup.message import header_name, message_split
from mta.config import MainConfig, load_config
from mta.errors import MtaError
from mta.postdrop import SubmitAcl, maildrop_write, postdrop_path
from mta.record import Recipient

SUMMARY = "submit a message from standard input (Postfix-compatible sendmail)"
ADD_HELP = False  # -h is sendmail's (ignored) hop count option

EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_UNAVAILABLE = 64, 65, 66, 69
EX_SOFTWARE, EX_OSERR, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 70, 71, 75, 77, 78
TIMEOUT = 300.0

_IGNORED_WITH_VALUE = "ABLOVXehp"  # legacy options that take a value and do nothing here
_IGNORED_FLAGS = "GUmn"


class SendmailExit(Exception):
    """End the command with a fatal message and a sysexits status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """sendmail(1)'s options; -c and -v come from the mta wrapper (or console_main)."""
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("-t", dest="extract", action="store_true", help="take recipients from the headers")
    parser.add_argument("-i", dest="ignore_dots", action="store_true", help="a lone '.' does not end input")
    parser.add_argument("-f", "-r", dest="sender", metavar="SENDER", help="envelope sender")
    parser.add_argument("-F", dest="fullname", metavar="NAME", help="full name for the From: header")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT",
                        help="-oi: same as -i; -oA/path: alias file for -bi; others ignored")
    parser.add_argument("-b", dest="mode", default="m", metavar="MODE",
                        help="m: queue mail (default), i: newaliases, p: mailq, d: start the MTA")
    parser.add_argument("-q", dest="queue", nargs="?", const="", metavar="ARG", help="flush the queue")
    parser.add_argument("-I", dest="newaliases", action="store_true", help="same as -bi")
    parser.add_argument("-C", dest="config_file", metavar="PATH", help="configuration directory or main.cf")
    parser.add_argument("-N", dest="dsn_notify", metavar="DSN", help="(ignored)")
    parser.add_argument("-R", dest="dsn_ret", metavar="RET", help="(ignored)")
    for letter in _IGNORED_WITH_VALUE:
        parser.add_argument(f"-{letter}", dest=f"ignored_{letter}", metavar="ARG", help=argparse.SUPPRESS)
    for letter in _IGNORED_FLAGS:
        parser.add_argument(f"-{letter}", dest=f"ignored_{letter}", action="store_true",
                            help=argparse.SUPPRESS)
    parser.add_argument("recipients", nargs="*", metavar="RECIPIENT")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``mta sendmail``."""
    return sendmail_run(args, sys.stdin.buffer)


class _Parser(argparse.ArgumentParser):
    """Usage errors exit with EX_USAGE, as sendmail does."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"mta/sendmail: fatal: {message}\n")


def console_main(argv: Sequence[str] | None = None, stdin: BinaryIO | None = None) -> int:
    """Entry point of the ``sendmail`` console script (also as ``mailq`` and ``newaliases``)."""
    parser = _Parser(prog="sendmail", add_help=False, description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", dest="verbose", action="store_true", help="verbose logging")
    parser.add_argument("-c", dest="ignored_c", action="store_true", help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    args.config_dir, _ = cli.config_dir_from(argparse.Namespace())
    name = os.path.basename(sys.argv[0]) if argv is None else "sendmail"
    if name == "mailq":
        args.mode = "p"
    elif name == "newaliases":
        args.mode = "i"
    log.setup_stderr("mta/sendmail", verbose=args.verbose)
    return sendmail_run(args, stdin or sys.stdin.buffer)


def sendmail_run(args: argparse.Namespace, stdin: BinaryIO) -> int:
    """Do what the options ask; return the exit status (fatal errors are logged here)."""
    try:
        config_dir = Path(args.config_dir)
        if args.config_file:
            path = Path(args.config_file)
            config_dir = path.parent if path.name == "main.cf" else path
        for letter, value in (("N", args.dsn_notify), ("R", args.dsn_ret)):
            if value is not None:
                log.msg_warn(f"-{letter} option ignored: delivery status notifications are not supported")
        mode = "i" if args.newaliases else args.mode
        if args.queue and args.queue[0].isdigit():
            log.msg_warn(f"-q{args.queue} ignored: the master's wakeup timers schedule queue runs")
        elif args.queue is not None and mode == "m":
            return _flush(args.queue, config_dir, args)
        if mode != "m":
            return _other_mode(mode, config_dir, args)
        cfg = load_config(config_dir)
        return enqueue(cfg, args, stdin)
    except SendmailExit as exc:
        log.msg_fatal(str(exc))
        return exc.status
    except MtaError as exc:
        log.msg_fatal(str(exc))
        return EX_CONFIG


def _delegate(command: str, argv: list[str], config_dir: Path, args: argparse.Namespace) -> int | None:
    """Run another mta command (newaliases, postqueue, ...) when it exists; None when it does not."""
    module_name = cli.COMMANDS.get(command)
    if module_name is None:
        return None
    module = importlib.import_module(module_name)
    parser = _Parser(prog=f"mta {command}", add_help=False)
    module.add_arguments(parser)
    sub = parser.parse_args(argv)
    sub.config_dir, sub.config_dir_explicit, sub.verbose = config_dir, True, args.verbose
    return int(module.run(sub))


def _need_no_recipients(args: argparse.Namespace, what: str) -> None:
    if args.recipients:
        raise SendmailExit(EX_USAGE, f"{what} mode requires no recipient")


def _flush(value: str, config_dir: Path, args: argparse.Namespace) -> int:
    """-q (flush the queue), -qRsite (flush one site), -qIid (deliver one message)."""
    _need_no_recipients(args, "flush queue")
    if value == "":
        status = _delegate("flush", [], config_dir, args)
        if status is None:
            status = _delegate("postqueue", ["-f"], config_dir, args)
    elif value[0] in "RI" and value[1:]:
        status = _delegate("postqueue", ["-s" if value[0] == "R" else "-i", value[1:]], config_dir, args)
    else:
        raise SendmailExit(EX_USAGE, f"-q{value} is not implemented")
    if status is None:
        raise SendmailExit(EX_UNAVAILABLE, "queue flush is not available in this installation; use mta flush")
    return status


def _other_mode(mode: str, config_dir: Path, args: argparse.Namespace) -> int:
    """-bi (newaliases), -bp (mailq), -bd (start), -bh/-bH (nothing); the rest is unsupported."""
    if mode in ("h", "H"):
        return 0
    if mode == "i":
        _need_no_recipients(args, "alias initialization")
        alias_file = next((o[1:] for o in args.options if o.startswith("A") and len(o) > 1), None)
        status = (_delegate("postalias", [alias_file], config_dir, args) if alias_file
                  else _delegate("newaliases", [], config_dir, args))
    elif mode == "p":
        _need_no_recipients(args, "display queue")
        status = _delegate("postqueue", ["-p"], config_dir, args)
    elif mode in ("d", "l"):
        _need_no_recipients(args, "daemon")
        status = _delegate("start", [], config_dir, args)
    else:
        raise SendmailExit(EX_USAGE, f"unsupported: -b{mode}")
    if status is None:
        raise SendmailExit(EX_UNAVAILABLE, f"-b{mode} is not available in this installation")
    return status


def _login_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        raise SendmailExit(EX_OSERR, f"no login name found for user ID {uid}") from None


def _fullname(uid: int) -> str:
    """$NAME, else the GECOS name ('&' is the capitalised login name), as Postfix's fullname()."""
    if os.environ.get("NAME"):
        return os.environ["NAME"]
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return ""
    return entry.pw_gecos.split(",", 1)[0].replace("&", entry.pw_name.capitalize())


def addresses_parse(text: str) -> list[str]:
    """The addresses in one argument or header value ("a, Name <b>", "<>" gives "")."""
    return [address for _, address in getaddresses([text])]


def message_read(stream: BinaryIO, dot_ends: bool, fix_eol: str, limit: int) -> bytes:
    """Read the message: LF line ends, leading "From " lines skipped, a lone "." ends it if dot_ends."""
    strip_cr = {"always": True, "never": False}.get(fix_eol)
    out: list[bytes] = []
    size = 0
    at_start = True
    while True:
        try:
            line = stream.readline(limit + 2 if limit > 0 else -1)
        except OSError as exc:
            raise SendmailExit(EX_NOINPUT, f"error reading input: {os.strerror(exc.errno or 0)}") from None
        if not line:
            break
        text = line[:-1] if line.endswith(b"\n") else line
        if strip_cr is None:
            strip_cr = text.endswith(b"\r")
        if at_start and text.lstrip(b">").startswith(b"From "):
            continue
        at_start = False
        if strip_cr:
            text = text.rstrip(b"\r")
        if dot_ends and text == b".":
            break
        out.append(text + b"\n")
        size += len(text) + 1
        if limit > 0 and size > limit:
            raise SendmailExit(EX_DATAERR, "message file too big")
    return b"".join(out)


def recipients_extract(content: bytes) -> tuple[list[str], bytes]:
    """-t: recipients from To/Cc/Bcc (Resent-* when present), and the content without Bcc headers."""
    message = message_split(content)
    plain: list[str] = []
    resent: list[str] = []
    kept: list[bytes] = []
    for header in message.headers:
        name = header_name(header)
        if name in ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"):
            value = header.split(b":", 1)[1].decode("utf-8", "surrogateescape")
            target = resent if name.startswith("resent-") else plain
            target.extend(a for a in addresses_parse(" ".join(value.split())) if a)
        if name not in ("bcc", "resent-bcc"):
            kept.append(header)
    has_resent = any(header_name(h).startswith("resent-") and header_name(h)[7:] in ("to", "cc", "bcc")
                     for h in message.headers)
    return (resent if has_resent else plain), b"".join(kept) + message.body


def enqueue(cfg: MainConfig, args: argparse.Namespace, stdin: BinaryIO) -> int:
    """Read the message and hand it to postdrop (or to maildrop/ directly when root and it is down)."""
    uid = os.getuid()
    if args.sender is not None:
        found = addresses_parse(args.sender)
        if len(found) > 1:
            log.msg_warn(f"-f option specified malformed sender: {args.sender}")
        sender = found[0] if found else ""
    else:
        sender = _login_name(uid)
    denied = SubmitAcl(cfg.get_list("authorized_submit_users")).check(uid)
    if denied is not None:
        raise SendmailExit(EX_NOPERM, f"User {denied}({uid}) is not allowed to submit mail")
    dot_ends = not (args.ignore_dots or "i" in args.options)
    content = message_read(stdin, dot_ends, cfg.get("sendmail_fix_line_endings"),
                           cfg.get_int("message_size_limit", minimum=0))
    recipients: list[str] = []
    for arg in args.recipients:
        recipients.extend(addresses_parse(arg) or [""])
    if args.extract:
        extracted, content = recipients_extract(content)
        recipients.extend(extracted)
    if not recipients:
        raise SendmailExit(EX_USAGE, f"{sender}({uid}): " + (
            "No recipient addresses found in message header" if args.extract else
            "Recipient addresses must be specified on the command line or via the -t option"))
    fullname = args.fullname if args.fullname is not None else _fullname(uid)
    attrs = {"fullname": fullname} if fullname else {}
    return submit(cfg, sender, recipients, content, attrs, uid)


def submit(cfg: MainConfig, sender: str, recipients: list[str], content: bytes,
           attrs: dict[str, str], uid: int) -> int:
    """Send the message to postdrop; map its reply to an exit status."""
    queue_dir = Path(cfg.get("queue_directory"))
    path = postdrop_path(queue_dir)
    try:
        channel = proto.unix_connect(str(path), timeout=TIMEOUT)
    except OSError:
        if os.geteuid() == 0:
            return maildrop_direct(cfg, queue_dir, sender, recipients, content, attrs, uid)
        raise SendmailExit(EX_TEMPFAIL, f"the mail system is down (cannot connect to {path})") from None
    request = {"op": "submit", "sender": sender, "recipients": [{"address": r} for r in recipients],
               "attrs": attrs}
    try:
        try:
            channel.send(request, content)
        except (BrokenPipeError, ConnectionResetError):
            pass  # postdrop refused before reading; its reply is waiting
        answer = channel.receive()
    except (OSError, proto.ProtocolError) as exc:
        raise SendmailExit(EX_TEMPFAIL, f"{sender}({uid}): error talking to postdrop: {exc}") from None
    finally:
        channel.close()
    if answer is None:
        raise SendmailExit(EX_TEMPFAIL, f"{sender}({uid}): postdrop closed the connection without replying")
    reply = answer[0]
    if reply.get("status") == proto.OK:
        log.logger.debug(f"queued as {reply.get('queue_id')}")
        return 0
    dsn = str(reply.get("dsn", ""))
    status = (EX_TEMPFAIL if reply.get("status") == proto.TEMPFAIL else EX_NOPERM if dsn == "5.7.1"
              else EX_DATAERR if dsn == "5.3.4" else EX_UNAVAILABLE)
    raise SendmailExit(status, f"{sender}({uid}): {reply.get('reason', 'unknown error')}")


def maildrop_direct(cfg: MainConfig, queue_dir: Path, sender: str, recipients: list[str], content: bytes,
                    attrs: dict[str, str], uid: int) -> int:
    """Root, with postdrop down: write maildrop/ as mail_owner, as Postfix's postdrop does."""
    owner_name = cfg.get("mail_owner")
    try:
        owner = pwd.getpwnam(owner_name)
    except KeyError:
        raise SendmailExit(EX_CONFIG, f"unknown mail_owner user: {owner_name}") from None
    try:
        maildrop_write(queue_dir, sender, [Recipient(r) for r in recipients], content,
                       dict(attrs, uid=str(uid), origin="sendmail"), (owner.pw_uid, owner.pw_gid))
    except (MtaError, OSError) as exc:
        raise SendmailExit(EX_TEMPFAIL,
                           f"the mail system is down (cannot write to maildrop: {exc})") from None
    if not clients.pickup_trigger(queue_dir):
        log.msg_warn("unable to look up public/pickup: the mail system is down; "
                     "the message waits in maildrop/ until it starts")
    return 0
