"""Privilege separation for local delivery: run a function in a forked child as another user.

DELIVERY RIGHTS. The local daemon runs as root so it can become any recipient.
It never touches a user's files with root's rights: every mailbox, maildir or
file delivery, and every read of a ~/.forward or user-owned :include: file,
happens in a forked child that first calls setgroups(), setresgid() and
setresuid() and only then opens anything. The child hands a JSON-safe result
back through a pipe and exits with os._exit(), so nothing of the parent's
state (atexit handlers, buffered log output) runs twice. The parent keeps root
only to read its own tables and the queue file.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from typing import Any, Callable

from mta.errors import MtaError

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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def run_as(creds: Creds | None, func: Callable[..., Any], *args: Any) -> Any:
    """Run func(*args) in a forked child with creds (None: keep root) and return its result.

    + creds: who the child becomes before calling func.
    + func: returns a JSON-safe value; an exception in it becomes PrivsError here.
    The child process inherits no threads and runs nothing but func, so it is
    safe to fork from a threaded parent as long as func takes no locks.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, checked through its results
        try:
            os.close(read_fd)
            os.umask(0o077)
            if creds is not None:
                privs_drop(creds)
            reply: dict[str, Any] = {"ok": func(*args)}
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            _write_all(write_fd, json.dumps(reply).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        data = _read_all(read_fd)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    if not data:
        raise PrivsError(f"delivery process {pid} died without a result")
    reply = json.loads(data)
    if "error" in reply:
        raise PrivsError(str(reply["error"]))
    return reply["ok"]


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
