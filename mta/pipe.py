"""pipe: deliver mail to an external command named in master.cf (Postfix's pipe(8)).

A service such as

    procmail  unix  -       n       n       -       -       pipe
        flags=R user=cyrus argv=/usr/bin/procmail -t -m
        USER=${user} EXT=${extension} /etc/procmailrc

gets what transport_maps routes to it (``example.org  procmail:``). The queue
manager sends at most ``procmail_destination_recipient_limit`` recipients per
delivery request (mta.clients.deliver_request); pipe reads the message from
the queue file and runs the command once per request, the message on its
standard input, and every recipient of the request gets that run's result.
The queue manager logs each recipient (``relay=procmail, ... status=sent
(delivered via procmail service)``), keeps the defer and bounce logs and
sends the bounces.

COMMAND ATTRIBUTES (after the generic daemon options; argv= comes last;
names are case-insensitive). ``user=name[:group]`` (required): the command's
rights. ``flags=`` any of BDFORXhqu.> (see FLAGS). ``size=`` bytes: a larger
message bounces with 5.2.3 "message too large". ``eol=`` the line end
(default ``\\n``; C escapes). ``null_sender=`` what $sender, From_ and
Return-Path: say for the null sender (default MAILER-DAEMON; may be empty).
``directory=`` the working directory (default $queue_directory). A bad
attribute stops the process at start-up with a fatal error naming the
service, which the master logs; so do an unknown macro and bad $ syntax in
argv=, which Postfix reports only when mail arrives. ``chroot=`` is refused.

MACROS in argv= arguments: ${name}, $(name) or $name; $$ is a literal $. Per
message: sender, nexthop, size, queue_id, client_address, client_hostname,
client_helo, client_port, client_protocol, sasl_method, sasl_username,
sasl_sender. Per recipient: recipient, original_recipient, user, extension,
mailbox, domain (``user+ext@domain`` with recipient_delimiter ``+``: user,
ext, user+ext, domain); an argument with a per-recipient macro is repeated
once per recipient, and dropped for a recipient with an empty user part.
There is no shell: one argument stays one argument, whatever it contains.

RESULTS. 0 sends ("delivered via SERVICE service"; DSN action "delivered"
with flag X, else "relayed"). Other exits follow mta.pipe_command: sysexits,
a leading RFC 3463 code in the output wins, a signal defers, running past
``<service>_time_limit`` ($command_time_limit) bounces. D and O need one
recipient per request: with more, every recipient is deferred with 4.3.5 and
a warning names ``<service>_destination_recipient_limit``. With D, mail that
already has ``Delivered-To: <recipient>`` bounces with 5.4.6 "mail
forwarding loop for <recipient>".

SECURITY. pipe starts as root (master.cf unpriv ``n``) because it must become
user=, and never runs chrooted (CHROOT_FORBIDDEN; the seed's row says chroot
n). After pre_init it keeps mail_owner's effective ids, as Postfix's does, so
the request and the queue file are handled without root's rights; root's
effective uid comes back only to start the command (mta.pipe_command) and
to check directory= with the user's rights. The command never runs as root
or mail_owner: user= naming either, or group 0, mail_owner's or
setgid_group's group, is refused at start-up. It is executed directly, with
no shell, so addresses and client names from the message are only ever
whole arguments. Its environment is PATH=/usr/bin:/bin and
export_environment, nothing else; its output is cut at 4096 bytes and made
printable before it reaches logs and bounces.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mta import log, proto
from mta.access import localpart_strip
from mta.agent import reply_all, request_serve
from mta.config import MainConfig
from mta.delivered_hdr import delivered_find
from mta.errors import ConfigError
from mta.eugid import effective_ids, root_ids
from mta.mail_copy import MAILER_DAEMON, copy_lines, envelope_headers, quote_822_local
from mta.pipe_command import export_env, pipe_command
from mta.queue import MESSAGE_QUEUES, queue_file, queue_id_valid
from mta.record import RecordError, record_read
from mta.service_table import daemon_operands
from mta.skeleton import DaemonContext, DaemonError

SERVER = "single"
CHROOT_FORBIDDEN = True  # runs commands as user= on the real file system (master(5))

# B blank line at the end, D Delivered-To:, F From_ line, O X-Original-To:,
# R Return-Path:, X final delivery, h lowercase domains, q quote local parts,
# u lowercase local parts, . dot-stuffing, > quote "From " lines.
FLAGS = "BDFORXhqu.>"
RCPT_MACROS = frozenset({"recipient", "original_recipient", "user", "extension", "mailbox", "domain"})
# ${client_*} and ${sasl_*} -> the queue file attribute they come from.
ATTR_MACROS = {
    "client_address": "client_address", "client_hostname": "client_name", "client_helo": "helo",
    "client_port": "client_port", "client_protocol": "protocol", "sasl_method": "sasl_method",
    "sasl_username": "sasl_username", "sasl_sender": "sasl_sender",
}
MACROS = RCPT_MACROS | {"sender", "nexthop", "size", "queue_id"} | set(ATTR_MACROS)

_NAME = re.compile(r"[A-Za-z0-9_]+")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}

Part = tuple[bool, str]  # (is a macro, its name or literal text)


@dataclass(frozen=True)
class PipeAttr:
    """One pipe service's command attributes (its master.cf arguments).

    + service: the master.cf service name: messages and ``<service>_*`` parameters.
    + argv: the command, each argument split into literal text and macro names.
    + user, uid, gid: user=; flags: flags=; size_limit: size= (0: none).
    + eol, null_sender, directory: eol= (unescaped), null_sender=, directory= ("": queue directory).
    """

    service: str
    argv: tuple[tuple[Part, ...], ...]
    user: str
    uid: int
    gid: int
    flags: frozenset[str] = frozenset()
    size_limit: int = 0
    eol: bytes = b"\n"
    null_sender: str = MAILER_DAEMON
    directory: str = ""


@dataclass(frozen=True)
class PipeParams:
    """The main.cf parameters a pipe service uses, read in pre_init."""

    queue_dir: Path
    time_limit: int
    recipient_limit: int
    recipient_delimiter: str = ""
    owner_request_special: bool = True
    double_bounce_sender: str = "double-bounce"
    export_environment: tuple[str, ...] = ()
    owner_uid: int = -1
    owner_gid: int = -1


# -- configuration -----------------------------------------------------------


def macro_parse(text: str) -> tuple[Part, ...]:
    """Split an argv= argument into literal text and macro names; ValueError for bad $ syntax.

    >>> macro_parse("USER=${user}+$(extension)$$$domain")
    ((False, 'USER='), (True, 'user'), (False, '+'), (True, 'extension'), (False, '$'), (True, 'domain'))
    """
    parts: list[Part] = []
    literal = ""
    i = 0
    while i < len(text):
        j = text.find("$", i)
        if j < 0:
            literal += text[i:]
            break
        literal += text[i:j]
        after = text[j + 1:j + 2]
        if after == "$":
            literal += "$"
            i = j + 2
            continue
        if after in ("{", "("):
            close = "}" if after == "{" else ")"
            end = text.find(close, j + 2)
            if end < 0:
                raise ValueError(f"missing '{close}' in \"{text}\"")
            name, i = text[j + 2:end], end + 1
        else:
            found = _NAME.match(text, j + 1)
            if found is None:
                raise ValueError(f"bad $ syntax in \"{text}\" (write $$ for a literal $)")
            name, i = found.group(), found.end()
        if not _NAME.fullmatch(name):
            raise ValueError(f"bad macro name \"{name}\" in \"{text}\"")
        if literal:
            parts.append((False, literal))
            literal = ""
        parts.append((True, name))
    if literal or not parts:
        parts.append((False, literal))
    return tuple(parts)


def _unescape(text: str) -> bytes:
    r"""C escapes as Postfix's unescape(): ``\r\n``, ``\t``, octal ``\015``, ``\\``."""
    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        return chr(int(code, 8)) if code[0] in "01234567" else _ESCAPES.get(code, code)
    return re.sub(r"\\([0-7]{1,3}|.)", one, text, flags=re.S).encode("latin-1", "replace")


def _ids(service: str, owner: str, setgid_group: str) -> tuple[int, int, int]:
    """(uid, gid) of mail_owner and the gid of setgid_group (-1 when there is no such group)."""
    try:
        pw = pwd.getpwnam(owner)
    except KeyError:
        raise DaemonError(f"service {service}: unknown mail_owner user: {owner}") from None
    try:
        setgid = grp.getgrnam(setgid_group).gr_gid
    except KeyError:
        setgid = -1
    return pw.pw_uid, pw.pw_gid, setgid


def pipe_attr_parse(service: str, args: Sequence[str], cfg: MainConfig) -> PipeAttr:
    """Parse a pipe service's command attributes; DaemonError naming the service when they are bad."""
    def bad(text: str) -> DaemonError:
        return DaemonError(f"service {service}: {text}")

    found: dict[str, Any] = {}
    command: list[str] | None = None
    user: str | None = None
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        name = name.lower()
        if name == "argv" and eq:
            command = ([value] if value else []) + list(args[i + 1:])
            if not command:
                raise bad("argv= names no command")
            break
        if not eq or name not in ("flags", "user", "size", "eol", "null_sender", "directory", "chroot"):
            raise bad(f"unknown attribute name: {arg}")
        if name == "flags":
            unknown = [ch for ch in value if ch not in FLAGS]
            if unknown:
                raise bad(f"unknown flag: {unknown[0]} in {arg} (known: {FLAGS})")
            found["flags"] = frozenset(value) | found.get("flags", frozenset())
        elif name == "user":
            user = value
        elif name == "size":
            if not value.isdigit():
                raise bad(f"bad size= value: {value}")
            found["size_limit"] = int(value)
        elif name == "eol":
            found["eol"] = _unescape(value)
        elif name == "null_sender":
            found["null_sender"] = value
        elif name == "directory":
            found["directory"] = value
        else:
            raise bad(f"{arg}: chroot= is not supported by this MTA (the command would run unconfined)")
    if user is None:
        raise bad("missing user= command-line attribute")
    if command is None:
        raise bad("missing argv= command-line attribute")
    name, _, group = user.partition(":")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise bad(f"unknown user name in user={user}: {name}") from None
    gid = pw.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise bad(f"unknown group name in user={user}: {group}") from None
    owner = cfg.get("mail_owner")
    owner_uid, owner_gid, setgid_gid = _ids(service, owner, cfg.get("setgid_group"))
    if pw.pw_uid == 0:
        raise bad(f"user={user} specifies root privileges")
    if pw.pw_uid == owner_uid:
        raise bad(f"user={user} specifies the mail system owner {owner}")
    if gid == 0:
        raise bad(f"user={user} specifies privileged group id 0")
    if gid in (owner_gid, setgid_gid):
        raise bad(f"user={user} specifies mail system group id {gid}")
    argv = []
    for text in command:
        try:
            parts = macro_parse(text)
        except ValueError as exc:
            raise bad(f"argv: {exc}") from None
        for is_macro, macro in parts:
            if is_macro and macro not in MACROS:
                raise bad(f"argv: unknown macro name: \"${{{macro}}}\"")
        argv.append(parts)
    return PipeAttr(service=service, argv=tuple(argv), user=name, uid=pw.pw_uid, gid=gid, **found)


def pipe_params_load(service: str, cfg: MainConfig, queue_dir: Path) -> PipeParams:
    """Read the main.cf parameters: ``<service>_time_limit`` and ``_destination_recipient_limit`` included."""
    def per_service(suffix: str, default: str) -> str:
        return f"{service}{suffix}" if cfg.is_set(f"{service}{suffix}") else default

    owner_uid, owner_gid, _ = _ids(service, cfg.get("mail_owner"), cfg.get("setgid_group"))
    try:
        return PipeParams(
            queue_dir=queue_dir,
            time_limit=cfg.get_time(per_service("_time_limit", "command_time_limit"), minimum=1),
            recipient_limit=cfg.get_int(per_service("_destination_recipient_limit",
                                                    "default_destination_recipient_limit"), minimum=0),
            recipient_delimiter=cfg.get("recipient_delimiter"),
            owner_request_special=cfg.get_bool("owner_request_special"),
            double_bounce_sender=cfg.get("double_bounce_sender") or "double-bounce",
            export_environment=tuple(cfg.get_list("export_environment")),
            owner_uid=owner_uid, owner_gid=owner_gid)
    except ConfigError as exc:
        raise DaemonError(f"service {service}: {exc}") from None


def pre_init(ctx: DaemonContext) -> None:
    """Parse the command attributes and read main.cf (fatal, naming the service, when they are bad)."""
    service = ctx.service.service
    attr = pipe_attr_parse(service, daemon_operands(ctx.service), ctx.cfg)
    params = pipe_params_load(service, ctx.cfg, ctx.queue_dir)
    for flag in "DO":
        if flag in attr.flags and params.recipient_limit != 1:
            log.msg_warn(f"service {service}: flag {flag} requires {service}_destination_recipient_limit = 1 "
                         f"(it is {params.recipient_limit}): mail with more recipients will be deferred")
    ctx.state["pipe"] = (attr, params)


def post_init(ctx: DaemonContext) -> None:
    """Keep mail_owner's effective ids from now on (real and saved stay root's, to start commands)."""
    params: PipeParams = ctx.state["pipe"][1]
    if os.geteuid() != 0:
        log.msg_warn(f"service {ctx.service.service}: not running as root; commands cannot run as user=")
        return
    os.setgroups([params.owner_gid])
    os.setegid(params.owner_gid)
    os.seteuid(params.owner_uid)


# -- delivery ----------------------------------------------------------------


def _fold(address: str, flags: frozenset[str]) -> str:
    """Flag h lowercases the domain (right of the rightmost @), u the local part; both, everything."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower() if "u" in flags else address
    return (local.lower() if "u" in flags else local) + at + (domain.lower() if "h" in flags else domain)


def rcpt_macros(address: str, original: str, flags: frozenset[str], params: PipeParams) -> dict[str, str]:
    """The per-recipient macros; flag q quotes only recipient and original_recipient.

    >>> p = PipeParams(Path("/"), 1, 1, recipient_delimiter="+")
    >>> m = rcpt_macros("Bob+Lists@Example.ORG", "", frozenset("hu"), p)
    >>> m["user"], m["extension"], m["mailbox"], m["domain"], m["recipient"]
    ('bob', 'lists', 'bob+lists', 'example.org', 'bob+lists@example.org')
    """
    def morph(addr: str) -> str:
        return _fold(quote_822_local(addr) if "q" in flags else addr, flags)

    folded = _fold(address, flags)
    local, at, domain = folded.rpartition("@")
    if not at:
        local, domain = folded, ""
    user = localpart_strip(local, params.recipient_delimiter,
                           owner_request_special=params.owner_request_special,
                           double_bounce_sender=params.double_bounce_sender)
    extension = "" if user is None else local[len(user) + 1:]
    return {"recipient": morph(address), "original_recipient": morph(original or address), "mailbox": local,
            "user": local if user is None else user, "extension": extension, "domain": domain}


def argv_expand(argv: Sequence[tuple[Part, ...]], macros: dict[str, str],
                rcpt_values: Sequence[dict[str, str]]) -> list[str]:
    """The command line: each argument expanded, once per recipient when it has a per-recipient macro.

    >>> parts = [macro_parse("-d"), macro_parse("${user}"), macro_parse("$sender")]
    >>> argv_expand(parts, {"sender": "s@x"}, [{"user": "a"}, {"user": ""}, {"user": "b"}])
    ['-d', 'a', 'b', 's@x']
    """
    out = []
    for parts in argv:
        names = {text for is_macro, text in parts if is_macro}
        if not names & RCPT_MACROS:
            out.append("".join(macros.get(text, "") if is_macro else text for is_macro, text in parts))
            continue
        for values in rcpt_values:
            if "user" in names and not values.get("user"):
                continue  # Postfix skips it: cyrus bulletin-board delivery (+folder@host)
            both = {**macros, **values}
            out.append("".join(both.get(text, "") if is_macro else text for is_macro, text in parts))
    return out


def _directory_error(attr: PipeAttr, directory: str) -> str | None:
    """Why the user cannot work in directory (None when it can): resolving DIR/. needs search rights."""
    try:
        with root_ids(), effective_ids(attr.uid, attr.gid):
            os.stat(os.path.join(directory, "."))
    except OSError as exc:
        return f"chdir {directory}: {os.strerror(exc.errno or 0)}"
    return None


def pipe_deliver(attr: PipeAttr, params: PipeParams, request: dict[str, Any]) -> dict[str, Any]:
    """Handle one delivery request (see the module docstring) and return the reply."""
    queue_name, queue_id = str(request.get("queue_name", "")), str(request.get("queue_id", ""))
    recipients = request.get("recipients")
    if (queue_name not in MESSAGE_QUEUES or not queue_id_valid(queue_id) or not isinstance(recipients, list)
            or not recipients or not all(isinstance(r, dict) for r in recipients)):
        return proto.reply(proto.PERMFAIL, "malformed delivery request")
    service = attr.service

    def every(status: int, dsn: str, reason: str) -> dict[str, Any]:
        return reply_all(recipients, status, dsn, reason, relay=service)

    for flag in "DO":
        if flag in attr.flags and len(recipients) > 1:
            log.msg_warn(f"{queue_id}: pipe flag {flag} requires {service}_destination_recipient_limit = 1")
            return every(proto.TEMPFAIL, "4.3.5", f"mail system configuration error: flag {flag} requires "
                                                  f"{service}_destination_recipient_limit = 1")
    try:
        envelope, content = record_read(queue_file(params.queue_dir, queue_name, queue_id))
    except (OSError, RecordError) as exc:
        log.msg_warn(f"{queue_id}: cannot read queue file {queue_name}/{queue_id}: {exc}")
        return every(proto.TEMPFAIL, "4.3.0", "cannot read queue file")
    if attr.size_limit and len(content) > attr.size_limit:
        return every(proto.PERMFAIL, "5.2.3", "message too large")
    first, original = str(recipients[0].get("address", "")), str(recipients[0].get("original") or "")
    if "D" in attr.flags and first.lower() in delivered_find(content):
        return every(proto.PERMFAIL, "5.4.6", f"mail forwarding loop for {first}")

    sender = envelope.sender if request.get("sender") is None else str(request["sender"])
    sender = sender or attr.null_sender
    macros = {"sender": quote_822_local(sender) if "q" in attr.flags else sender,
              "nexthop": str(request.get("nexthop") or "").lower() if "h" in attr.flags
              else str(request.get("nexthop") or ""),
              "size": str(len(content)), "queue_id": queue_id}
    macros.update({macro: envelope.attrs.get(name, "") for macro, name in ATTR_MACROS.items()})
    values = [rcpt_macros(str(r.get("address", "")), str(r.get("original") or ""), attr.flags, params)
              for r in recipients]
    argv = argv_expand(attr.argv, macros, values)
    if not argv or not argv[0]:
        log.msg_warn(f"{queue_id}: service {service}: argv= expands to no command")
        return every(proto.TEMPFAIL, "4.3.5", "mail system configuration error")

    directory = attr.directory or str(params.queue_dir)
    problem = _directory_error(attr, directory)
    if problem is not None:
        log.msg_warn(f"{queue_id}: service {service}: user {attr.user}: {problem}")
        return every(proto.TEMPFAIL, "4.3.0", problem)
    data = envelope_headers(sender, from_="F" in attr.flags, return_path="R" in attr.flags,
                            original=(original or first) if "O" in attr.flags else None,
                            delivered=first if "D" in attr.flags else None, eol=attr.eol)
    data += copy_lines(content, eol=attr.eol, dot="." in attr.flags, quote_from=">" in attr.flags,
                       blank="B" in attr.flags)
    dsn, text = pipe_command(argv, uid=attr.uid, gid=attr.gid, env=export_env(params.export_environment),
                             cwd=directory, stdin=data, time_limit=params.time_limit)
    if dsn.startswith("2"):
        reply = every(proto.OK, "2.0.0", f"delivered via {service} service")
        for result in reply["recipients"]:
            result["action"] = "delivered" if "X" in attr.flags else "relayed"
        return reply
    return every(proto.TEMPFAIL if dsn.startswith("4") else proto.PERMFAIL, dsn, text)


def service(conn: socket.socket, ctx: DaemonContext) -> None:
    """Serve one delivery request on conn."""
    attr, params = ctx.state["pipe"]
    request_serve(conn, ctx.cfg.get_time("ipc_timeout", minimum=1), "pipe",
                  lambda request: pipe_deliver(attr, params, request))
