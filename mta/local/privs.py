"""Privilege separation for local delivery: run a function with a user's rights, then get root back.

DELIVERY RIGHTS. The local daemon runs as root so it can become any recipient.
It never touches a user's files with root's rights: every mailbox, maildir or
file delivery, and every read of a ~/.forward or user-owned :include: file,
runs with the user's effective ids. run_as() does this the way Postfix's
local(8) does (set_eugid): setgroups(), setegid(), seteuid(), call the
function, then back to root. The functions it runs are this package's own
file operations, never user-supplied code; the kernel checks every open,
create and rename against the effective ids, so a symlink planted by the user
gains nothing. Commands (|command, mailbox_command) are different: they run
user-controlled programs, so mta.local.command forks and drops every id
(privs_drop) irrevocably before exec.

Switching effective ids in-process instead of forking a child per delivery
cut a Maildir delivery from about 5 ms to about 2 ms (bench/mta_throughput.py).
The daemon delivers one request at a time on one thread, which the switch
requires: effective ids are process-wide.
"""

from __future__ import annotations

import os
import resource
import stat
from dataclasses import dataclass
from typing import Any, Callable

from mta.errors import MtaError
from mta.eugid import effective_ids

MAX_TABLE_FILE = 1 << 20  # largest .forward or :include: file read


class PrivsError(MtaError):
    """A delivery child could not run or died without a result."""


@dataclass(frozen=True)
class Creds:
    """A uid, gid and supplementary group list to switch to (empty groups: just gid)."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def privs_drop(creds: Creds) -> None:
    """Irrevocably become creds (real, effective and saved ids); verify root is gone."""
    os.setgroups(list(creds.groups) or [creds.gid])
    os.setresgid(creds.gid, creds.gid, creds.gid)
    os.setresuid(creds.uid, creds.uid, creds.uid)
    if creds.uid != 0 and (os.geteuid() == 0 or os.getuid() == 0):
        raise PrivsError(f"privs_drop: still root after switching to uid {creds.uid}")


_FSIZE: list[tuple[int, int]] = []  # the daemon's own file size limit, read once


def run_as(creds: Creds | None, func: Callable[..., Any], *args: Any) -> Any:
    """Run func(*args) with creds as the effective ids (None: as root) and return its result.

    + creds: the user to act as; real and saved ids stay root, so root is
      restored afterwards (mta.eugid, root's uid first, so this also undoes a
      further drop inside func: the spool mbox writer does one), as are the
      umask (0077 during the call) and the file size limit, which delivery
      functions lower. (The daemon ignores SIGXFSZ, so a write past the limit
      fails with EFBIG.) The daemon's own limit never changes, so it is read once.
    + func: one of this package's file operations (see DELIVERY RIGHTS); an
      exception in it becomes PrivsError.
    """
    if not _FSIZE:
        _FSIZE.append(resource.getrlimit(resource.RLIMIT_FSIZE))
    uid, gid, groups = (creds.uid, creds.gid, creds.groups) if creds else (os.getuid(), os.getgid(), ())
    saved_umask = os.umask(0o077)
    try:
        with effective_ids(uid, gid, groups):
            return func(*args)
    except Exception as exc:  # noqa: BLE001 - the caller gets one error type
        raise PrivsError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        os.umask(saved_umask)
        resource.setrlimit(resource.RLIMIT_FSIZE, _FSIZE[0])


def run_delivery(creds: Creds | None, func: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """run_as() for a delivery function returning {"dsn", "reason"}: a child failure defers (4.3.0)."""
    try:
        reply: dict[str, Any] = run_as(creds, func, *args)
    except PrivsError as exc:
        return {"dsn": "4.3.0", "reason": f"delivery process failed: {exc}"}
    return reply


def table_file_read(path: str, owner_uid: int | None, follow: bool, forbid_mode: int) -> dict[str, Any]:
    """Stat and read a .forward or :include: file with the caller's current rights.

    + path: the file.
    + owner_uid: when given, the file must be owned by this uid or by root.
    + follow: follow a symlink (:include:) or refuse it as not regular (.forward).
    + forbid_mode: mode bits that make the file unsafe (world or group write).
    Returns {"missing": True} when it does not exist, {"warning": text} when it
    must not be used, else {"uid": owner, "text": contents}.
    """
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return {"missing": True}
    except OSError as exc:
        return {"warning": f"cannot access file {path}: {os.strerror(exc.errno or 0)}"}
    if not stat.S_ISREG(st.st_mode):
        return {"warning": f"file {path} is not a regular file"}
    if owner_uid is not None and st.st_uid not in (0, owner_uid):
        return {"warning": f"file {path} has bad owner uid {st.st_uid}"}
    if st.st_mode & forbid_mode:
        kind = "world" if st.st_mode & stat.S_IWOTH else "group"
        return {"warning": f"file {path} is {kind} writable"}
    try:
        flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
        fd = os.open(path, flags)
        try:
            data = os.read(fd, MAX_TABLE_FILE)
        finally:
            os.close(fd)
    except OSError as exc:
        return {"warning": f"cannot open file {path}: {os.strerror(exc.errno or 0)}"}
    return {"uid": st.st_uid, "text": data.decode("utf-8", "replace")}


def creds_of(uid: int, gid: int) -> Creds:
    """Creds with only the primary group (Postfix: secondary groups are not enabled)."""
    return Creds(uid, gid, (gid,))
