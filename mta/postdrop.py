"""postdrop: the local submission endpoint; writes one maildrop/ file per message for `mta sendmail`.

Postfix's sendmail runs the setgid-postdrop ``postdrop`` command to write into
maildrop/. Python programs cannot be setgid, so this MTA runs postdrop as a
daemon on ``queue_directory/submit/postdrop`` (a 0666 socket in a root-owned
0755 directory: every local user can connect). For each connection it learns
the caller's uid from the kernel (SO_PEERCRED), checks authorized_submit_users,
reads one ``{"op": "submit", "sender", "recipients", "attrs"}`` request plus
the content, writes ``maildrop/ID`` (0600, fsync, 0700, fsync of the directory)
with attributes ``uid`` and ``origin=sendmail``, replies
``{"status": 0, "queue_id": ID}`` and triggers pickup. The sender the user
asked for (-f) is kept, as Postfix allows any user to set it; the uid is
recorded and logged, and cleanup's Received: header shows it.

SECURITY. The peer is any local user and is not trusted: the uid comes from
the kernel, never from the request; the access check happens before anything
is read; the request line and content are bounded (message_size_limit) before
they are read; only the full name is taken from the request's attributes, and
no field may hold a control character that could forge a queue-file record.
Files are written as mail_owner in maildrop/ (0730, not readable by users), so
no user can read, alter or delete another user's queued mail. postdrop runs
as mail_owner, not chrooted (it looks users up in the password database).
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mta import clients, log, proto
from mta.config import MainConfig
from mta.match_list import StringList
from mta.queue import MAILDROP, queue_abort, queue_create, queue_finish
from mta.record import Envelope, Recipient, record_write
from mta.skeleton import DaemonContext

SERVER = "single"
USER_ATTRS = ("fullname",)  # the only attributes a user may set
FULLNAME_MAX = 256


class SubmitError(Exception):
    """A submission is refused: status (4 or 5), dsn and reason for the reply."""

    def __init__(self, status: int, dsn: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.dsn, self.reason = status, dsn, reason


def postdrop_path(queue_dir: Path) -> Path:
    """Where the postdrop socket lives: ``queue_directory/submit/postdrop``."""
    return queue_dir / "submit" / "postdrop"


class SubmitAcl:
    """authorized_submit_users: which local users may submit mail (Postfix's check_user_acl_byuid).

    A string list of user names (``!name`` excludes, ``type:table`` matches the
    names the table has); a value that starts with ``static:`` (the default,
    ``static:anyone``) lets everyone in, as in Postfix. A uid without a password
    entry is the user "unknown".
    """

    def __init__(self, entries: list[str]) -> None:
        self.anyone = bool(entries) and entries[0].startswith("static:")
        self.users = StringList("authorized_submit_users", [] if self.anyone else entries)

    def check(self, uid: int) -> str | None:
        """None when uid may submit, else the user name to report."""
        if self.anyone:
            return None
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = "unknown"
        return None if self.users.match(name) else name


@dataclass
class PostdropSettings:
    """main.cf as postdrop uses it."""

    acl: SubmitAcl
    size_limit: int
    timeout: int


def settings_create(cfg: MainConfig) -> PostdropSettings:
    """Read authorized_submit_users (opening its tables), message_size_limit and ipc_timeout."""
    return PostdropSettings(SubmitAcl(cfg.get_list("authorized_submit_users")),
                            cfg.get_int("message_size_limit", minimum=0),
                            cfg.get_time("ipc_timeout", minimum=1))


def pre_init(ctx: DaemonContext) -> None:
    """Read the configuration and open the authorized_submit_users tables."""
    ctx.state["settings"] = settings_create(ctx.cfg)


def post_init(ctx: DaemonContext) -> None:
    """Nothing to do after the privilege drop."""


def peer_uid(sock: socket.socket) -> int:
    """The connected peer's uid, from the kernel (SO_PEERCRED: pid, uid, gid)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def request_read(sock: socket.socket, limit: int) -> tuple[dict[str, Any], bytes] | None:
    """Read one request line and its content, refusing content over limit before reading it."""
    rfile = sock.makefile("rb")
    try:
        line = rfile.readline(proto.MAX_LINE + 1)
        if not line:
            return None
        try:
            request = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            request = None
        length = request.get("content_length") if isinstance(request, dict) else None
        if not isinstance(request, dict) or not isinstance(length, int) or length < 0:
            raise SubmitError(proto.PERMFAIL, "5.5.4", "malformed request")
        if limit and length > limit:
            raise SubmitError(proto.PERMFAIL, "5.3.4", "message file too big")
        content = rfile.read(length)
        if len(content) != length:
            raise proto.ProtocolError("connection closed in the middle of a message body")
        return request, content
    finally:
        rfile.close()


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or any(ord(c) < 32 or c == "\x7f" for c in value):
        raise SubmitError(proto.PERMFAIL, "5.1.3" if what == "recipient" else "5.1.7",
                          f"bad {what} address syntax")
    return value


def request_check(request: dict[str, Any]) -> tuple[str, list[Recipient], dict[str, str]]:
    """Validate a submit request: (sender, recipients, the user attributes we keep)."""
    if request.get("op") != "submit" or not isinstance(request.get("recipients"), list):
        raise SubmitError(proto.PERMFAIL, "5.5.4", "malformed request")
    sender = _text(request.get("sender"), "sender")
    recipients: list[Recipient] = []
    for item in request["recipients"]:
        address = item.get("address") if isinstance(item, dict) else item
        recipients.append(Recipient(_text(address, "recipient")))
    if not recipients:
        raise SubmitError(proto.PERMFAIL, "5.1.0", "no recipients specified")
    given = request.get("attrs")
    if not isinstance(given, dict):
        given = {}
    attrs: dict[str, str] = {}
    for name in USER_ATTRS:
        value = given.get(name)
        if isinstance(value, str) and value:
            attrs[name] = "".join(" " if ord(c) < 32 or c == "\x7f" else c for c in value)[:FULLNAME_MAX]
    return sender, recipients, attrs


def maildrop_write(queue_dir: Path, sender: str, recipients: list[Recipient], content: bytes,
                   attrs: dict[str, str], owner: tuple[int, int] | None = None) -> str:
    """Write one ready maildrop file and return its queue ID; nothing is left behind on error.

    + owner: (uid, gid) to give the file (root's sendmail writes as mail_owner's).
    """
    qf = queue_create(queue_dir, MAILDROP)
    try:
        if owner is not None:
            os.fchown(qf.fd, *owner)
        record_write(qf.fd, Envelope(sender, recipients, time.time(), attrs), content)
        queue_finish(qf)
    except BaseException:
        queue_abort(qf)
        raise
    return qf.queue_id


def postdrop_request(sock: socket.socket, queue_dir: Path, settings: PostdropSettings,
                     uid: int) -> tuple[dict[str, Any] | None, str]:
    """Check, read and store one submission from uid: (reply or None if the peer left, queue ID)."""
    denied = settings.acl.check(uid)
    if denied is not None:
        reason = f"User {denied}({uid}) is not allowed to submit mail"
        log.msg_warn(f"uid={uid}: {reason}")
        return proto.reply(proto.PERMFAIL, reason, "5.7.1"), ""
    try:
        received = request_read(sock, settings.size_limit)
        if received is None:
            return None, ""
        sender, recipients, attrs = request_check(received[0])
    except SubmitError as exc:
        log.msg_warn(f"uid={uid}: reject: {exc.dsn} {exc.reason}")
        return proto.reply(exc.status, exc.reason, exc.dsn), ""
    except (OSError, proto.ProtocolError) as exc:
        log.msg_warn(f"uid={uid}: read request: {exc}")
        return None, ""
    attrs.update(uid=str(uid), origin="sendmail")
    try:
        queue_id = maildrop_write(queue_dir, sender, recipients, received[1], attrs)
    except Exception as exc:  # noqa: BLE001 - the user gets "try again later", the log the cause
        log.msg_warn(f"uid={uid}: queue file write error: {exc}")
        return proto.reply(proto.TEMPFAIL, "queue file write error", "4.3.0"), ""
    log.msg_info(f"{queue_id}: uid={uid} from=<{sender}>")
    return proto.reply(proto.OK, queue_id=queue_id), queue_id


def service(conn: socket.socket, ctx: DaemonContext) -> None:
    """Serve one local submission: reply, then wake pickup."""
    settings: PostdropSettings = ctx.state.get("settings") or settings_create(ctx.cfg)
    ctx.state["settings"] = settings
    conn.settimeout(settings.timeout)
    try:
        uid = peer_uid(conn)
    except OSError as exc:
        log.msg_warn(f"postdrop: cannot get peer credentials: {exc}")
        return
    answer, queue_id = postdrop_request(conn, ctx.queue_dir, settings, uid)
    if answer is None:
        return
    try:
        conn.sendall(json.dumps(answer, separators=(",", ":")).encode("utf-8") + b"\n")
    except OSError as exc:
        log.msg_warn(f"uid={uid}: send reply: {exc}")
    if queue_id:
        clients.pickup_trigger(ctx.queue_dir)
