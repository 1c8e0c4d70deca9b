"""The rollout journal: an append-only, fsynced JSON-lines record on the control machine, for ``--resume``.

WHAT. The first line (``start``) names the rollout: inventory, limit,
serial, failure threshold, MTA bundle version, the batches in order and,
for each host, the SHA-256 of every file the inventory renders for it (the
target). Then one line per event: a host's ``snapshot`` (the content, owner
and mode of each file about to change, its MTA version; written before
anything on the host is touched), ``applied``, ``reloaded``, ``done`` (its
final status, whether a failed host was restored, the error), a
``batch`` line when a batch ends, and ``end`` (finished, halted or
interrupted).

DURABILITY. Each line is written with one write() and fsync()ed before the
step it records goes on, so after a crash of the control machine (or a
SIGKILL) the journal says at least as much as was done, bar the step in
flight. A last line cut short by the crash is ignored; a bad line anywhere
else is an error naming the file and line.

ONE AT A TIME. The journal is held with an exclusive flock() while a
rollout runs, so a second rollout of the same inventory is refused instead
of interleaving with the first.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harden.errors import HardenError
from mta.queue import fsync_dir

JOURNAL_VERSION = 1
SUFFIX = ".rollout.jsonl"


class JournalError(HardenError):
    """The journal cannot be read, is held by another rollout, or does not allow what was asked."""


def journal_default(inventory: Path) -> Path:
    """Where a rollout of inventory keeps its journal unless told: next to it, INVENTORY.rollout.jsonl."""
    return inventory.with_name(inventory.name + SUFFIX)


@dataclass
class HostEntry:
    """What the journal says of one host: its last step, its snapshot, and how it ended."""

    step: str = ""  # "", snapshot, applied, reloaded, done
    snapshot: dict[str, Any] | None = None
    status: str = ""  # after done: changed, ok, failed, unreachable
    restored: bool | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        """Done, and nothing left to put back (a failed host that was restored, or never touched)."""
        return self.step == "done" and self.restored is not False


@dataclass
class JournalState:
    """A journal replayed: the start record, each host's entry, the batches ended, and the end record."""

    start: dict[str, Any]
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    batches: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        """finished, halted or interrupted (no end line: the control machine crashed or was killed)."""
        return str(self.end["status"]) if self.end else "interrupted"

    def unrestored(self) -> list[str]:
        """Hosts that failed and could not be put back (their snapshot is here)."""
        return [name for name, entry in self.hosts.items() if entry.step == "done" and entry.restored is False]


def journal_read(path: Path) -> JournalState:
    """Replay the journal at path; JournalError naming file and line when it cannot be read."""
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise JournalError(f"{path}: cannot read the rollout journal: {exc.strerror}") from None
    records: list[dict[str, Any]] = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            if number >= len(lines) - 1:  # the last line, cut short by a crash: the step it began did not finish
                break
            raise JournalError(f"{path}:{number}: not a journal record ({exc})") from None
        records.append(record)
    if not records or records[0].get("type") != "start":
        raise JournalError(f"{path}:1: not a rollout journal (no start record)")
    if records[0].get("version") != JOURNAL_VERSION:
        raise JournalError(f"{path}:1: journal version {records[0].get('version')!r}, this harden writes "
                           f"{JOURNAL_VERSION}")
    state = JournalState(records[0])
    for record in records[1:]:
        kind = record.get("type")
        if kind == "host":
            entry = state.hosts.setdefault(str(record["host"]), HostEntry())
            entry.step = str(record["step"])
            if "snapshot" in record:
                entry.snapshot = record["snapshot"]
            if entry.step == "done":
                entry.status = str(record.get("status", ""))
                entry.restored = record.get("restored")
                entry.error = str(record.get("error", ""))
        elif kind == "batch":
            state.batches.append(record)
        elif kind == "end":
            state.end = record
    return state


class Journal:
    """An open journal: appends fsynced records while holding the file's lock. Close it (or use ``with``)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def create(cls, path: Path, start: dict[str, Any]) -> "Journal":
        """Begin a new journal at path with the start record.

        An earlier journal that finished, or halted with every failed host
        restored, is kept as PATH.prev; one that was interrupted or left a
        host unrestored is refused (JournalError says how to go on).
        """
        if path.exists():
            fd = cls._lock(path, os.O_RDWR)
            try:
                previous = journal_read(path)
                if previous.status == "interrupted":
                    raise JournalError(
                        f"{path}: an interrupted rollout (started {previous.start.get('started', '?')}) is recorded "
                        "here; continue it with --resume, or remove the file to give it up")
                if previous.unrestored():
                    raise JournalError(
                        f"{path}: the last rollout left {', '.join(previous.unrestored())} changed and not restored; "
                        "run the rollout with --resume to restore them first")
                os.replace(path, path.with_name(path.name + ".prev"))
            finally:
                os.close(fd)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = cls._lock(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            raise JournalError(f"{path}: another rollout of this inventory has just started") from None
        journal = cls(path, fd)
        journal.append(dict(start, type="start", version=JOURNAL_VERSION))
        fsync_dir(path.parent)
        return journal

    @classmethod
    def reopen(cls, path: Path) -> tuple["Journal", JournalState]:
        """Open an existing journal to resume it: the journal and its replayed state."""
        if not path.exists():
            raise JournalError(f"{path}: no rollout journal to resume (a rollout writes it when it starts)")
        fd = cls._lock(path, os.O_RDWR)
        try:
            state = journal_read(path)
        except JournalError:
            os.close(fd)
            raise
        os.lseek(fd, 0, os.SEEK_END)
        return cls(path, fd), state

    @staticmethod
    def _lock(path: Path, flags: int) -> int:
        fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError(f"{path}: another rollout of this inventory is running (it holds the journal)") \
                from None
        return fd

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a line and fsync it before returning."""
        data = (json.dumps(dict(record, at=round(time.time(), 3)), sort_keys=True) + "\n").encode()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

