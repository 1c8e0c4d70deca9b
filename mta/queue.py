"""Queue directories and files: names, IDs, hashing, state in mode bits, atomic moves, quarantine.

Postfix's rules (reference/postfix.md §3.4, §11.3): a queue file is created
embryonic (0600) and becomes ready (0700) only after its last byte is on disk;
``g+x`` marks forced expiry; a deferred file's mtime is its next retry time;
``deferred/`` and ``defer/`` are hashed one level deep; a file that cannot be
read is quarantined in ``corrupt/`` (mode 0400), never deleted. Moves between
queues are single ``rename(2)`` calls on one file system, so a file is always
in exactly one queue.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mta import log
from mta.errors import MtaError

MAILDROP = "maildrop"
INCOMING = "incoming"
ACTIVE = "active"
DEFERRED = "deferred"
HOLD = "hold"
CORRUPT = "corrupt"
SAVED = "saved"
BOUNCE_LOG = "bounce"
DEFER_LOG = "defer"
TRACE_LOG = "trace"
FLUSH = "flush"

# Message queues, in the order postqueue lists them.
MESSAGE_QUEUES = (MAILDROP, INCOMING, ACTIVE, DEFERRED, HOLD)
LOG_QUEUES = (BOUNCE_LOG, DEFER_LOG, TRACE_LOG)
HASHED = frozenset({DEFERRED, DEFER_LOG})

MODE_EMBRYONIC = 0o600
MODE_READY = 0o700
MODE_FORCED_EXPIRE = 0o010  # g+x
MODE_CORRUPT = 0o400

_ID_LENGTH = 12


class QueueError(MtaError):
    """A queue file operation failed; the message names the queue, ID and cause."""


_ID_RE = re.compile(r"[0-9A-F]{6,32}")


def queue_id_valid(queue_id: str) -> bool:
    """True for an ID this MTA could have made (upper-case hex), so it is safe in a path."""
    return _ID_RE.fullmatch(queue_id) is not None


def queue_file(queue_dir: Path | str, queue: str, queue_id: str) -> str:
    """Where queue_id lives in queue, as a string: ``deferred/A/A1B2C3...`` for hashed queues.

    The daemons use this on the delivery path (a Path object per file costs
    more than the rest of the name's work); queue_path is the same as a Path.
    """
    if _ID_RE.fullmatch(queue_id) is None:
        raise QueueError(f"invalid queue id: {queue_id!r}")
    if queue in HASHED:
        return f"{queue_dir}/{queue}/{queue_id[0]}/{queue_id}"
    return f"{queue_dir}/{queue}/{queue_id}"


def queue_path(queue_dir: Path, queue: str, queue_id: str) -> Path:
    """Where queue_id lives in queue: ``deferred/A/A1B2C3...`` for hashed queues."""
    return Path(queue_file(queue_dir, queue, queue_id))


def _new_id(inode: int) -> str:
    """Time in microseconds (8 hex digits, wrapping) plus the inode (4 hex digits)."""
    usec = time.time_ns() // 1000
    return f"{usec & 0xFFFFFFFF:08X}{inode & 0xFFFF:04X}"


@dataclass
class QueueFile:
    """An open embryonic queue file: write to fd, then queue_finish()."""

    queue_dir: Path
    queue: str
    queue_id: str
    fd: int

    @property
    def path(self) -> Path:
        return queue_path(self.queue_dir, self.queue, self.queue_id)

    @property
    def file(self) -> str:
        return queue_file(self.queue_dir, self.queue, self.queue_id)


def queue_create(queue_dir: Path, queue: str) -> QueueFile:
    """Create a new embryonic (0600) file with a fresh unique ID in queue.

    The file is first created under a temporary name, and then linked to its
    final ID-based name with O_EXCL semantics (link fails if the name exists),
    so two processes can never get the same ID.
    """
    tmp = f"{queue_dir}/{queue}/.tmp.{os.getpid()}.{time.monotonic_ns()}"
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, MODE_EMBRYONIC)
    except OSError as exc:
        raise QueueError(f"create file {tmp}: {os.strerror(exc.errno or 0)}") from None
    try:
        os.fchmod(fd, MODE_EMBRYONIC)
        inode = os.fstat(fd).st_ino
        for attempt in range(64):
            queue_id = _new_id(inode + attempt)
            final = queue_file(queue_dir, queue, queue_id)
            if queue in HASHED:
                os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
            try:
                os.link(tmp, final)
                return QueueFile(queue_dir, queue, queue_id, fd)
            except FileExistsError:
                continue
        raise QueueError(f"{queue}: cannot find a free queue id")
    except BaseException:
        os.close(fd)
        raise
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def fsync_dir(directory: Path | str) -> None:
    """fsync a directory so a create, rename or unlink in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def queue_finish(qf: QueueFile) -> None:
    """Make an embryonic file ready: mode 0700, then fsync it and its directory.

    Only after this returns may a daemon tell its client the message is queued.
    One fsync covers data and mode together. A crash before it returns may leave
    a 0700 file whose data did not all reach the disk; the record format catches
    that (content length and end marker), the file is quarantined in corrupt/,
    and nothing was acknowledged for it, so the client sends the message again.
    """
    try:
        os.fchmod(qf.fd, MODE_READY)
        os.fsync(qf.fd)
        fsync_dir(os.path.dirname(qf.file))
    except OSError as exc:
        raise QueueError(f"{qf.queue}/{qf.queue_id}: finish: {os.strerror(exc.errno or 0)}") from None
    finally:
        os.close(qf.fd)
        qf.fd = -1


def queue_abort(qf: QueueFile) -> None:
    """Remove an embryonic file that will not be finished (client went away, error)."""
    if qf.fd >= 0:
        os.close(qf.fd)
        qf.fd = -1
    try:
        os.unlink(qf.file)
    except FileNotFoundError:
        pass


def queue_ready(path: Path | str) -> bool:
    """True when the file is complete (owner-execute bit set, as Postfix's mail_open_ok)."""
    try:
        return bool(os.stat(path).st_mode & stat.S_IXUSR)
    except FileNotFoundError:
        return False


def queue_move(queue_dir: Path, queue_id: str, source: str, target: str, *, sync: bool = True) -> str:
    """Rename queue_id from one queue to another (one rename(2)); return the new path."""
    old = queue_file(queue_dir, source, queue_id)
    new = queue_file(queue_dir, target, queue_id)
    if target in HASHED:
        os.makedirs(os.path.dirname(new), mode=0o700, exist_ok=True)
    try:
        os.rename(old, new)
    except OSError as exc:
        raise QueueError(
            f"rename {queue_id} from {source} to {target}: {os.strerror(exc.errno or 0)}"
        ) from None
    if sync:
        fsync_dir(os.path.dirname(new))
    return new


def queue_remove(queue_dir: Path, queue: str, queue_id: str) -> bool:
    """Delete a queue file; False when it was already gone."""
    try:
        os.unlink(queue_file(queue_dir, queue, queue_id))
        return True
    except FileNotFoundError:
        return False


def queue_scan(queue_dir: Path, queue: str) -> Iterator[str]:
    """Queue IDs present in queue (hashed subdirectories included), in no particular order."""
    directory = queue_dir / queue
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        if queue in HASHED and entry.is_dir(follow_symlinks=False):
            try:
                for sub in os.scandir(entry.path):
                    if queue_id_valid(sub.name):
                        yield sub.name
            except FileNotFoundError:
                continue
        elif queue_id_valid(entry.name):
            yield entry.name


def queue_find(queue_dir: Path, queue_id: str, queues: tuple[str, ...] = MESSAGE_QUEUES) -> str | None:
    """The message queue that holds queue_id, or None."""
    for queue in queues:
        if os.path.exists(queue_file(queue_dir, queue, queue_id)):
            return queue
    return None


def queue_quarantine(queue_dir: Path, queue: str, queue_id: str, reason: str) -> None:
    """Move an unreadable file to corrupt/ (mode 0400) with a warning; never delete it."""
    log.msg_warn(f"{queue_id}: saving corrupt file from {queue}: {reason}")
    try:
        path = queue_move(queue_dir, queue_id, queue, CORRUPT)
        os.chmod(path, MODE_CORRUPT)
    except (QueueError, OSError) as exc:
        log.msg_warn(f"{queue_id}: cannot quarantine corrupt file: {exc}")


def set_retry_time(path: Path | str, when: float) -> None:
    """Record the next retry time of a deferred file in its mtime (atime = now)."""
    os.utime(path, (time.time(), when))


def backoff_delay(age: float, minimal: int, maximal: int) -> int:
    """Postfix's retry delay: the message's age clamped to [minimal_backoff_time, maximal_backoff_time].

    >>> backoff_delay(10, 300, 4000), backoff_delay(1000, 300, 4000), backoff_delay(9999, 300, 4000)
    (300, 1000, 4000)
    """
    return int(min(max(age, minimal), maximal))


# Directory layout, reference §11.3: (name, owner is mail_owner, group is setgid_group, mode).
QUEUE_DIRS: tuple[tuple[str, bool, bool, int], ...] = (
    (MAILDROP, True, True, 0o1730),
    (INCOMING, True, False, 0o700),
    (ACTIVE, True, False, 0o700),
    (DEFERRED, True, False, 0o700),
    (HOLD, True, False, 0o700),
    (CORRUPT, True, False, 0o700),
    (SAVED, True, False, 0o700),
    (BOUNCE_LOG, True, False, 0o700),
    (DEFER_LOG, True, False, 0o700),
    (TRACE_LOG, True, False, 0o700),
    (FLUSH, True, False, 0o700),
    ("private", True, False, 0o700),
    ("public", True, True, 0o2710),
    ("pid", False, False, 0o755),
    ("submit", False, False, 0o755),
)


def queue_dirs_create(queue_dir: Path, mail_uid: int, setgid_gid: int) -> list[str]:
    """Create missing queue directories with Postfix's owners and modes; return what was created.

    Existing directories keep their contents; their owner and mode are reset to
    the table's (never recursively: queue file state lives in mode bits).
    """
    created: list[str] = []
    queue_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chown(queue_dir, 0, 0)
    os.chmod(queue_dir, 0o755)
    for name, mail_owned, group_owned, mode in QUEUE_DIRS:
        path = queue_dir / name
        if not path.is_dir():
            path.mkdir(mode=0o700)
            created.append(name)
        uid = mail_uid if mail_owned else 0
        gid = setgid_gid if group_owned else 0
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    return created
