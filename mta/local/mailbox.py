"""Mailbox delivery: the precedence switch (mailbox_command, Maildir, mbox) and locked mbox appends.

PRECEDENCE (local(8)): mailbox_command, then home_mailbox (a name ending in
``/`` is a Maildir), then mail_spool_directory (likewise), each as the
recipient. Mail for root goes to root's own mailbox as root; a
mailbox_command for root runs as default_privs.

MBOX FILES. mbox_append() locks per mailbox_delivery_lock: a ``NAME.lock``
dotlock (O_EXCL, retried deliver_lock_attempts times deliver_lock_delay
apart, removed when older than stale_lock_time), then fcntl() and/or flock()
on the open file. It appends the From_ line, Return-Path:, X-Original-To:,
Delivered-To:, the message with ``From `` lines quoted as ``>From `` and a
blank line, fsyncs, and truncates the file back to its old length when
anything fails. The stdlib mailbox.mbox is not used here: it scans the whole
mailbox to build a table of contents before every append, creates files with
the umask's mode, and follows symlinks.

SPOOL RIGHTS (Postfix's deliver_mailbox_file()). With a world-writable spool
directory the whole delivery runs as the recipient; with a group-writable one
(Debian's /var/mail, root:mail 2775) as the recipient's uid with the spool's
group, so the dotlock can be made; otherwise the file is opened and locked as
root (O_NOFOLLOW, created 0600 and chowned to the recipient) and written with
the recipient's effective uid.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import re
import resource
import stat
import time
from dataclasses import dataclass, replace
from typing import Any

from mta import proto
from mta.local import privs
from mta.local.command import deliver_command
from mta.local.delivered import copy_headers
from mta.local.maildir import maildir_deliver
from mta.local.state import Delivery, RcptState, Result, UserAttr, mbox_dsn, result_status, user_find


@dataclass(frozen=True)
class MboxPolicy:
    """How mbox_append() locks, opens and checks a file.

    + locks: subset of {"fcntl", "flock", "dotlock"}.
    + dot_may_fail: go on without a dotlock that cannot be created (/file deliveries).
    + nofollow: refuse a symlink (privileged opens).
    + chown: give a newly created file this (uid, gid).
    + owner: the file must belong to this uid (strict_mailbox_ownership), else 4.2.0.
    + write_as: (uid, gid) to take as effective ids while writing (root opens).
    + mailbox: mailbox checks and texts (regular file) instead of /file ones (not executable).
    + size_limit: RLIMIT_FSIZE for the write, 0 for none.
    """

    locks: frozenset[str]
    attempts: int
    delay: float
    stale: int
    dot_may_fail: bool = False
    nofollow: bool = False
    chown: tuple[int, int] | None = None
    owner: int | None = None
    write_as: tuple[int, int] | None = None
    mailbox: bool = True
    size_limit: int = 0


def mbox_format(headers: bytes, content: bytes) -> bytes:
    """One mbox entry: headers, the message with ``From `` lines quoted, and a final blank line."""
    body = re.sub(rb"(?m)^From ", b">From ", content)
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return headers + body + b"\n"


def _pause(delay: float) -> None:
    time.sleep(random.uniform(delay * 0.5, delay * 1.5))


def dot_lock(path: str, policy: MboxPolicy) -> int:
    """Create ``path.lock``; 0 on success, else the errno of the last attempt."""
    lock = path + ".lock"
    for attempt in range(1, max(1, policy.attempts) + 1):
        try:
            os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0))
            return 0
        except OSError as exc:
            if exc.errno != errno.EEXIST or attempt >= policy.attempts:
                return exc.errno or errno.EIO
        try:
            if time.time() > os.stat(lock).st_ctime + policy.stale:
                os.unlink(lock)
                continue
        except FileNotFoundError:
            continue
        except OSError as exc:
            return exc.errno or errno.EIO
        _pause(policy.delay)
    return errno.EEXIST


def kernel_lock(fd: int, policy: MboxPolicy) -> int:
    """fcntl() and/or flock() exclusive locks with retries; 0 or the errno."""
    for attempt in range(1, max(1, policy.attempts) + 1):
        try:
            if "fcntl" in policy.locks:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if "flock" in policy.locks:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return 0
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK) or attempt >= policy.attempts:
                return errno.EAGAIN if exc.errno in (errno.EACCES, errno.EWOULDBLOCK) else exc.errno or errno.EIO
        _pause(policy.delay)
    return errno.EAGAIN


def mbox_append(path: str, data: bytes, policy: MboxPolicy) -> dict[str, Any]:
    """Lock, open and append data to the mbox file at path; run this in a delivery child.

    Returns {"dsn": "2.0.0"} or {"dsn": ..., "reason": ...} (the reason
    without the caller's "cannot update mailbox" prefix).
    """
    dotted = False
    try:
        st = os.stat(path)
        regular_before = stat.S_ISREG(st.st_mode)
    except OSError:
        regular_before = True
    if "dotlock" in policy.locks and regular_before:
        err = dot_lock(path, policy)
        if err == 0:
            dotted = True
        elif err == errno.EEXIST or not policy.dot_may_fail:
            return {"dsn": "4.2.0" if err == errno.EEXIST else mbox_dsn(err, "5.2.0"),
                    "reason": f"unable to create lock file {path}.lock: {os.strerror(err)}"}
    try:
        return _mbox_write(path, data, policy)
    finally:
        if dotted:
            if policy.write_as is not None:
                os.seteuid(0)
            try:
                os.unlink(path + ".lock")
            except OSError:
                pass


def _mbox_write(path: str, data: bytes, policy: MboxPolicy) -> dict[str, Any]:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | (os.O_NOFOLLOW if policy.nofollow else 0)
    existed = os.path.lexists(path)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        return {"dsn": mbox_dsn(exc.errno or 0, "5.2.0"), "reason": f"cannot open file: {os.strerror(exc.errno or 0)}"}
    try:
        st = os.fstat(fd)
        if not existed and policy.chown is not None:
            os.fchown(fd, *policy.chown)
            st = os.fstat(fd)
        regular = stat.S_ISREG(st.st_mode)
        if regular:
            err = kernel_lock(fd, policy)
            if err:
                return {"dsn": mbox_dsn(err, "5.2.0"),
                        "reason": f"unable to lock for exclusive access: {os.strerror(err)}"}
            if st.st_nlink != 1:
                return {"dsn": "4.2.0", "reason": "target file status changed unexpectedly"}
        if policy.mailbox and not regular:
            return {"dsn": "5.2.0", "reason": f"destination {path} is not a regular file"}
        if policy.owner is not None and st.st_uid != policy.owner:
            return {"dsn": "4.2.0", "reason": f"destination {path} is not owned by recipient"}
        if not policy.mailbox and regular and st.st_mode & 0o111:
            return {"dsn": "5.7.1", "reason": "file is executable"}
        if policy.size_limit > 0 and regular:
            resource.setrlimit(resource.RLIMIT_FSIZE, (policy.size_limit, resource.RLIM_INFINITY))
        if policy.write_as is not None:
            os.setegid(policy.write_as[1])
            os.seteuid(policy.write_as[0])
        end = os.lseek(fd, 0, os.SEEK_END) if regular else 0
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if regular:
                os.fsync(fd)
        except OSError as exc:
            if regular:
                os.ftruncate(fd, end)
            return {"dsn": mbox_dsn(exc.errno or 0, "5.3.0"),
                    "reason": f"error writing message: {os.strerror(exc.errno or 0)}"}
        return {"dsn": "2.0.0"}
    finally:
        os.close(fd)


def mailbox_file(delivery: Delivery, rcpt: RcptState, usr: UserAttr) -> Result:
    """Append to the recipient's mbox (home_mailbox, else mail_spool_directory/user)."""
    settings = delivery.settings
    policy = MboxPolicy(settings.mailbox_lock, settings.lock_attempts, settings.lock_delay,
                        settings.stale_lock_time, nofollow=True, mailbox=True,
                        owner=usr.uid if settings.strict_mailbox_ownership else None,
                        size_limit=settings.mailbox_size_limit)
    creds: privs.Creds | None = privs.creds_of(usr.uid, usr.gid)
    if settings.home_mailbox:
        path = os.path.join(usr.home, settings.home_mailbox)
    else:
        path = os.path.join(settings.mail_spool_directory, rcpt.user)
        try:
            spool = os.stat(settings.mail_spool_directory)
        except OSError:
            spool = None
        if spool is not None and not spool.st_mode & stat.S_IWOTH:
            if spool.st_mode & stat.S_IWGRP:
                creds = privs.Creds(usr.uid, spool.st_gid, (spool.st_gid,))
            else:
                creds = None
                policy = replace(policy, chown=(usr.uid, usr.gid), write_as=(usr.uid, usr.gid))
    data = mbox_format(copy_headers(delivery, rcpt, "file", from_=True), delivery.message.content)
    reply = privs.run_delivery(creds, mbox_append, path, data, policy)
    if reply["dsn"].startswith("2"):
        return Result(proto.OK, "2.0.0", "delivered to mailbox", rcpt.address)
    reason = f"cannot update mailbox {path} for user {rcpt.user}. {reply['reason']}"
    return Result(result_status(reply["dsn"]), reply["dsn"], reason, rcpt.address)


def deliver_mailbox(delivery: Delivery, rcpt: RcptState) -> bool:
    """Deliver to rcpt's own mailbox; False when rcpt.user is not a local account.

    DUPLICATE ELIMINATION: a mailbox gets at most one copy per request, and a
    later recipient that reaches it again shares the first one's result.
    """
    settings = delivery.settings
    key = f"mailbox {rcpt.local}"
    if delivery.duplicate(key):
        return True
    usr = user_find(rcpt.user)
    if usr is None:
        return False
    before = len(delivery.results)
    if settings.mailbox_command:
        deliver_command(delivery, rcpt, settings.mailbox_command, usr)
    elif settings.home_mailbox.endswith("/"):
        delivery.results.append(maildir_deliver(delivery, rcpt, usr,
                                                os.path.join(usr.home, settings.home_mailbox)))
    elif settings.mail_spool_directory.endswith("/"):
        delivery.results.append(maildir_deliver(delivery, rcpt, usr,
                                                os.path.join(settings.mail_spool_directory, rcpt.user) + "/"))
    else:
        delivery.results.append(mailbox_file(delivery, rcpt, usr))
    if len(delivery.results) > before:
        delivery.done[key] = delivery.results[-1]
    return True
