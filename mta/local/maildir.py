"""Maildir delivery (home_mailbox = Maildir/, or a /file/name/ destination) with the stdlib mailbox module.

The copy is Return-Path:, X-Original-To:, Delivered-To: and the message, with
no From_ line and no quoting (local(8) "MAILBOX DELIVERY"). It runs in a
child with the rights of the mailbox owner: missing ``tmp``, ``new`` and
``cur`` directories (and the maildir itself) are created mode 0700, the file
is written under ``tmp/`` and fsynced by mailbox.Maildir.add(), linked into
``new/``, and ``new/`` is fsynced so the delivery survives a crash before the
queue manager marks the recipient done. mailbox_size_limit applies to the
file, through RLIMIT_FSIZE, as in Postfix.
"""

from __future__ import annotations

import mailbox
import os
import resource
from typing import Any

from mta import log, proto
from mta.local import privs
from mta.local.delivered import copy_headers
from mta.local.state import Delivery, RcptState, Result, UserAttr, mbox_dsn, result_status


def _maildir_create(path: str) -> None:
    """Create the maildir and its tmp, new and cur directories (mode 0700) where missing."""
    os.makedirs(path, 0o700, exist_ok=True)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), 0o700, exist_ok=True)


def maildir_write(path: str, data: bytes, size_limit: int) -> dict[str, Any]:
    """Deliver data to the maildir at path; run this with the mailbox owner's rights.

    Returns {"dsn": "2.0.0", "file": name in new/} or {"dsn": ..., "reason": ...}.
    The directories are created only when the first attempt finds one missing,
    so an existing maildir costs no extra system calls.
    """
    if size_limit > 0:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size_limit, resource.RLIM_INFINITY))
    for attempt in (1, 2):
        try:
            box = mailbox.Maildir(path, factory=None, create=False)
            key = box.add(data)
            fd = os.open(os.path.join(path, "new"), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return {"dsn": "2.0.0", "file": key}
        except (FileNotFoundError, mailbox.NoSuchMailboxError) as exc:
            if attempt == 2:
                errno = getattr(exc, "errno", None) or 2
                return {"dsn": mbox_dsn(errno, "5.2.0"), "access": False,
                        "reason": f"create maildir file {os.path.join(path, 'tmp')}: {os.strerror(errno)}"}
            try:
                _maildir_create(path)
            except OSError as mkdir_exc:
                return {"dsn": mbox_dsn(mkdir_exc.errno or 0, "5.2.0"), "access": mkdir_exc.errno == 13,
                        "reason": f"create maildir file {path}: {os.strerror(mkdir_exc.errno or 0)}"}
        except OSError as exc:
            return {"dsn": mbox_dsn(exc.errno or 0, "5.2.0"), "access": exc.errno == 13,
                    "reason": f"create maildir file {os.path.join(path, 'tmp')}: {os.strerror(exc.errno or 0)}"}
    raise AssertionError("unreachable")


def maildir_deliver(delivery: Delivery, rcpt: RcptState, usr: UserAttr, path: str) -> Result:
    """Deliver one copy for rcpt to the maildir at path with usr's rights."""
    data = copy_headers(delivery, rcpt, "file", from_=False) + delivery.message.content
    reply = privs.run_delivery(privs.creds_of(usr.uid, usr.gid), maildir_write, path, data,
                               delivery.settings.mailbox_size_limit)
    if reply["dsn"].startswith("2"):
        return Result(proto.OK, "2.0.0", "delivered to maildir", rcpt.address)
    if reply.get("access"):
        log.msg_warn(f"maildir access problem for UID/GID={usr.uid}/{usr.gid}: {reply['reason']}")
    return Result(result_status(reply["dsn"]), reply["dsn"], f"maildir delivery failed: {reply['reason']}",
                  rcpt.address)
