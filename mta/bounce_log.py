"""Per-message delivery status logs: append and read the defer/ID and bounce/ID recipient records.

Postfix keeps one log file per message in ``defer/`` (hashed one level deep,
like ``deferred/``) and ``bounce/``: qmgr appends a record each time a
recipient is deferred or bounced, ``postqueue -p`` prints the latest defer
reason under each recipient, and the bounce daemon turns the bounce log into
a delivery status notification. Here a record is one line of JSON::

    {"recipient": ..., "original": ..., "status": "deferred", "dsn": "4.3.0",
     "reason": "...", "time": 1700000000.5}

``status`` is the outcome word Postfix logs: ``deferred`` in defer logs,
``bounced`` or ``expired`` in bounce logs. Each record is written with one
``write(2)`` on an ``O_APPEND`` descriptor (so writers in several threads or
processes never interleave) and fsynced before the caller marks the recipient
done in the queue file. A line that cannot be parsed (a torn last line after
a crash) is skipped with a warning.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mta import log, queue

DEFER = queue.DEFER_LOG
BOUNCE = queue.BOUNCE_LOG

DEFERRED = "deferred"
BOUNCED = "bounced"
EXPIRED = "expired"

_FIELDS = ("recipient", "original", "status", "dsn", "reason", "time")


@dataclass
class StatusRecord:
    """One recipient's outcome, as written to a defer or bounce log.

    + recipient: the envelope recipient address.
    + original: the original recipient (before alias or canonical rewriting), "" if none.
    + status: ``deferred``, ``bounced`` or ``expired``.
    + dsn: the RFC 3463 enhanced status code, e.g. ``4.3.0`` or ``5.1.1``.
    + reason: the human-readable diagnostic text.
    + time: when the outcome was recorded (seconds since the epoch).
    """

    recipient: str
    original: str
    status: str
    dsn: str
    reason: str
    time: float

    @property
    def action(self) -> str:
        """The RFC 3464 Action value: ``delayed`` for a deferral, else ``failed``."""
        return "delayed" if self.status == DEFERRED else "failed"


def record_create(recipient: str, original: str, status: str, dsn: str, reason: str,
                  when: float | None = None) -> StatusRecord:
    """A new record, timestamped now unless when is given."""
    return StatusRecord(recipient, original, status, dsn, reason, time.time() if when is None else when)


def log_path(queue_dir: Path, log_queue: str, queue_id: str) -> Path:
    """Where the log of queue_id lives: ``defer/A/A1B2...`` or ``bounce/A1B2...``."""
    return queue.queue_path(queue_dir, log_queue, queue_id)


def log_append(queue_dir: Path, log_queue: str, queue_id: str, *records: StatusRecord) -> None:
    """Append records to the log of queue_id and fsync it.

    + log_queue: ``defer`` (DEFER) or ``bounce`` (BOUNCE).
    Raises OSError when the log cannot be written; the caller must then not
    mark the recipient done.
    """
    if not records:
        return
    path = log_path(queue_dir, log_queue, queue_id)
    if log_queue in queue.HASHED:
        path.parent.mkdir(mode=0o700, exist_ok=True)
    data = b"".join(
        json.dumps(asdict(r), separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"
        for r in records
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _record_parse(line: bytes) -> StatusRecord | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or any(name not in obj for name in _FIELDS):
        return None
    try:
        return StatusRecord(str(obj["recipient"]), str(obj["original"]), str(obj["status"]),
                            str(obj["dsn"]), str(obj["reason"]), float(obj["time"]))
    except (TypeError, ValueError):
        return None


def log_read(queue_dir: Path, log_queue: str, queue_id: str) -> list[StatusRecord]:
    """All records of queue_id's log, oldest first; [] when there is no log.

    Malformed lines are skipped with a warning naming the log and line.
    """
    path = log_path(queue_dir, log_queue, queue_id)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    records: list[StatusRecord] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        record = _record_parse(line)
        if record is None:
            log.msg_warn(f"{queue_id}: {log_queue} log line {number}: malformed record skipped")
            continue
        records.append(record)
    return records


def log_latest(queue_dir: Path, log_queue: str, queue_id: str) -> dict[str, StatusRecord]:
    """The newest record per recipient address (for ``postqueue -p`` reason lines)."""
    latest: dict[str, StatusRecord] = {}
    for record in log_read(queue_dir, log_queue, queue_id):
        latest[record.recipient] = record
    return latest


def log_exists(queue_dir: Path, log_queue: str, queue_id: str) -> bool:
    """True when queue_id has a log in log_queue."""
    return os.path.exists(queue.queue_file(queue_dir, log_queue, queue_id))


def log_remove(queue_dir: Path, log_queue: str, queue_id: str) -> bool:
    """Delete queue_id's log; False when there was none."""
    try:
        os.unlink(queue.queue_file(queue_dir, log_queue, queue_id))
        return True
    except FileNotFoundError:
        return False
