"""Tests for mta.qmgr.scan: readiness, retry times, flush, forced expiry, fairness."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mta import queue
from mta.qmgr.scan import Scanner
from tests.mta.qmgr.conftest import enqueue


def deferred(qdir: Path, retry_in: float, mode: int = queue.MODE_READY) -> str:
    qid = enqueue(qdir, ["bob@example.test"], where=queue.DEFERRED)
    path = queue.queue_path(qdir, queue.DEFERRED, qid)
    os.chmod(path, mode)
    queue.set_retry_time(path, time.time() + retry_in)
    return qid


def drain(scanner: Scanner) -> list[tuple[str, str]]:
    out = []
    while (item := scanner.select()) is not None:
        out.append(item)
    return out


def test_incoming_offers_only_ready_files(qdir: Path) -> None:
    ready = enqueue(qdir, ["bob@example.test"])
    enqueue(qdir, ["bob@example.test"], ready=False)
    scanner = Scanner(qdir)
    assert scanner.scan_incoming() == 1
    assert scanner.scan_incoming() == 0  # already listed
    assert drain(scanner) == [(queue.INCOMING, ready)]


def test_deferred_offers_due_files_unless_flushed(qdir: Path) -> None:
    due = deferred(qdir, -5)
    later = deferred(qdir, 3600)
    scanner = Scanner(qdir)
    assert scanner.scan_deferred(time.time()) == 1
    assert drain(scanner) == [(queue.DEFERRED, due)]
    assert scanner.scan_deferred(time.time(), ignore_time=True) == 2
    assert sorted(q for _, q in drain(scanner)) == sorted([due, later])


def test_forced_expiry_is_due_at_once(qdir: Path) -> None:
    forced = deferred(qdir, 3600, queue.MODE_READY | queue.MODE_FORCED_EXPIRE)
    scanner = Scanner(qdir)
    scanner.scan_deferred(time.time())
    assert drain(scanner) == [(queue.DEFERRED, forced)]


def test_hold_and_corrupt_are_not_scanned(qdir: Path) -> None:
    enqueue(qdir, ["bob@example.test"], where=queue.HOLD)
    enqueue(qdir, ["bob@example.test"], where=queue.CORRUPT)
    scanner = Scanner(qdir)
    assert scanner.scan_incoming() + scanner.scan_deferred(time.time(), ignore_time=True) == 0
    assert scanner.select() is None


def test_fairness_alternates_incoming_and_deferred(qdir: Path) -> None:
    incoming = sorted(enqueue(qdir, [f"i{i}@example.test"]) for i in range(3))
    old = [deferred(qdir, -30 + i) for i in range(4)]
    scanner = Scanner(qdir)
    scanner.scan_incoming()
    scanner.scan_deferred(time.time())
    order = drain(scanner)
    assert [source for source, _ in order] == [queue.INCOMING, queue.DEFERRED] * 3 + [queue.DEFERRED]
    assert [q for s, q in order if s == queue.INCOMING] == incoming
    # Deferred files go oldest retry time first.
    assert [q for s, q in order if s == queue.DEFERRED] == old
    assert scanner.pending == 0


def test_forget_drops_candidates(qdir: Path) -> None:
    enqueue(qdir, ["bob@example.test"])
    scanner = Scanner(qdir)
    scanner.scan_incoming()
    scanner.forget()
    assert scanner.pending == 0 and scanner.select() is None
    assert scanner.scan_incoming() == 1
