"""Queue scanning: find ready messages in incoming/ and due ones in deferred/, and take turns between them.

FAIRNESS. As Postfix's qmgr, each time the active queue has room the
scanner offers one message from one queue and the next time one from the
other, so a flood of new mail cannot starve retries and a large deferred
queue cannot starve new mail. When the queue whose turn it is has nothing,
the other one is used.

READINESS. An incoming file is offered only when it is complete (owner
execute bit, set by cleanup after the last byte is on disk). A deferred file
is offered when its mtime (the next retry time) has passed, always after a
flush (trigger ``A``), and always when it carries the forced-expiry bit.
hold/ is never scanned, and corrupt/ is left alone.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from pathlib import Path

from mta import queue


class Scanner:
    """Candidates for the active queue, collected by scans and handed out in turn.

    Only the scheduler thread uses a Scanner, so it has no lock.
    """

    def __init__(self, queue_dir: Path) -> None:
        self.queue_dir = queue_dir
        self._todo: dict[str, deque[str]] = {queue.INCOMING: deque(), queue.DEFERRED: deque()}
        self._listed: set[tuple[str, str]] = set()
        self._turn = queue.INCOMING

    def _add(self, source: str, queue_id: str) -> bool:
        if (source, queue_id) in self._listed:
            return False
        self._listed.add((source, queue_id))
        self._todo[source].append(queue_id)
        return True

    def scan_incoming(self) -> int:
        """List the complete files in incoming/; how many new candidates were found."""
        found = 0
        for queue_id in sorted(queue.queue_scan(self.queue_dir, queue.INCOMING)):
            if (queue.INCOMING, queue_id) in self._listed:
                continue
            if queue.queue_ready(queue.queue_path(self.queue_dir, queue.INCOMING, queue_id)):
                found += self._add(queue.INCOMING, queue_id)
        return found

    def scan_deferred(self, now: float, ignore_time: bool = False) -> int:
        """List the deferred files due at now (all of them with ignore_time); how many were new.

        + ignore_time: the flush trigger ``A``, which disregards retry times.
        """
        due: list[tuple[float, str]] = []
        for queue_id in queue.queue_scan(self.queue_dir, queue.DEFERRED):
            if (queue.DEFERRED, queue_id) in self._listed:
                continue
            try:
                st = os.stat(queue.queue_path(self.queue_dir, queue.DEFERRED, queue_id))
            except FileNotFoundError:
                continue
            if not st.st_mode & stat.S_IXUSR:
                continue
            if ignore_time or st.st_mtime <= now or st.st_mode & queue.MODE_FORCED_EXPIRE:
                due.append((st.st_mtime, queue_id))
        # Oldest retry time first, so long-waiting mail goes before fresh deferrals.
        return sum(self._add(queue.DEFERRED, queue_id) for _, queue_id in sorted(due))

    def select(self) -> tuple[str, str] | None:
        """The next (queue, queue_id) to move into active/, alternating queues; None when empty."""
        first = self._turn
        second = queue.DEFERRED if first == queue.INCOMING else queue.INCOMING
        self._turn = second
        for source in (first, second):
            if self._todo[source]:
                queue_id = self._todo[source].popleft()
                self._listed.discard((source, queue_id))
                return source, queue_id
        return None

    @property
    def pending(self) -> int:
        """Candidates not handed out yet."""
        return sum(len(todo) for todo in self._todo.values())

    def forget(self) -> None:
        """Drop every candidate (they are found again by the next scans)."""
        for todo in self._todo.values():
            todo.clear()
        self._listed.clear()
