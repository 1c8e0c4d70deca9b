"""/file/name deliveries from aliases, :include: files and .forward files.

DELIVERY RIGHTS. The file is opened, locked and written in a child running as
the user the destination came from (the alias table's or :include: file's
owner, or the .forward owner); root and "no user" mean default_privs. A name
ending in ``/`` is a maildir. Otherwise the copy is appended in mbox format
(From_ line, Return-Path:, X-Original-To:, Delivered-To:, ``>From `` quoting,
a blank line) under the mailbox_delivery_lock locks; a dotlock that cannot be
created in the file's directory is skipped, and an executable regular file is
refused (5.7.1), as Postfix's deliver_file() does. Non-regular files such as
/dev/null are written without locks.
"""

from __future__ import annotations

from mta import proto
from mta.local import privs
from mta.local.delivered import copy_headers
from mta.local.mailbox import MboxPolicy, mbox_append, mbox_format
from mta.local.maildir import maildir_deliver
from mta.local.state import Delivery, RcptState, Result, result_status


def deliver_file(delivery: Delivery, rcpt: RcptState, path: str) -> None:
    """Deliver one copy for rcpt to the file (or maildir) at path."""
    settings = delivery.settings
    runner = rcpt.usr if rcpt.usr is not None and rcpt.usr.uid != 0 else settings.default_privs
    key = f"file {runner.uid} {path}"
    if delivery.duplicate(key):
        return
    if rcpt.exp_type not in settings.allow_files:
        delivery.record(key, Result(proto.PERMFAIL, "5.7.1", "mail to file is restricted", rcpt.address))
        return
    gid = runner.gid or settings.default_privs.gid
    if path.endswith("/"):
        delivery.record(key, maildir_deliver(delivery, rcpt, runner, path))
        return
    policy = MboxPolicy(settings.mailbox_lock, settings.lock_attempts, settings.lock_delay,
                        settings.stale_lock_time, dot_may_fail=True, mailbox=False,
                        size_limit=settings.mailbox_size_limit)
    data = mbox_format(copy_headers(delivery, rcpt, "file", from_=True), delivery.message.content)
    reply = privs.run_delivery(privs.creds_of(runner.uid, gid), mbox_append, path, data, policy)
    if reply["dsn"].startswith("2"):
        result = Result(proto.OK, "2.0.0", f"delivered to file: {path}", rcpt.address)
    else:
        result = Result(result_status(reply["dsn"]), reply["dsn"],
                        f"cannot append message to file {path}: {reply['reason']}", rcpt.address)
    delivery.record(key, result)
