"""The master's pid file, queue_directory/pid/master.pid, and the fcntl lock that proves it is live.

A running master holds a POSIX write lock on its pid file for as long as it
lives, so a pid file left behind by ``kill -9`` is recognised as stale (nobody holds
the lock) and a second master is refused (somebody does). Other commands ask the
kernel who holds the lock (F_GETLK) instead of trusting the file's text, and never
take the lock themselves, so asking cannot make a starting master fail.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

from mta.errors import MtaError

PID_FILE = Path("pid") / "master.pid"

# struct flock on Linux: l_type, l_whence (short), l_start, l_len (off_t), l_pid (pid_t), padded to 32.
_FLOCK = struct.Struct("hhqqi")
_FLOCK_SIZE = 32


class AlreadyRunning(MtaError):
    """Another master holds the pid file lock."""

    def __init__(self) -> None:
        super().__init__("the mail system is already running")


def pidfile_path(queue_dir: Path) -> Path:
    """Where the master's pid file is."""
    return queue_dir / PID_FILE


def pidfile_lock(queue_dir: Path) -> int:
    """Lock the pid file and write this process's pid into it; return the descriptor to keep open.

    Raises AlreadyRunning when another process holds the lock, OSError when the
    file cannot be opened. Closing any descriptor of this file in this process
    releases the lock, so the master opens it only here.
    """
    path = pidfile_path(queue_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise AlreadyRunning() from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid():>10}\n".encode(), 0)
    os.fsync(fd)
    return fd


def pidfile_owner(queue_dir: Path) -> int | None:
    """The pid of the process holding the pid file lock (the running master), or None."""
    try:
        fd = os.open(pidfile_path(queue_dir), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0).ljust(_FLOCK_SIZE, b"\0")
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    finally:
        os.close(fd)
    lock_type, _whence, _start, _len, pid = _FLOCK.unpack(answer[:_FLOCK.size])
    if lock_type == fcntl.F_UNLCK:
        return None
    return int(pid)


def pidfile_remove(queue_dir: Path, fd: int) -> None:
    """Remove the pid file, then release the lock (a waiting `stop` sees both together)."""
    pidfile_path(queue_dir).unlink(missing_ok=True)
    os.close(fd)
