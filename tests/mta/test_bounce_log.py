"""Tests for mta.bounce_log: per-recipient status records in defer/ (hashed) and bounce/."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from mta import bounce_log, queue
from mta.bounce_log import (
    StatusRecord,
    log_append,
    log_exists,
    log_latest,
    log_read,
    log_remove,
    record_create,
)

QID = "A1B2C3D4E5F6"


@pytest.fixture()
def qdir(tmp_path: Path) -> Path:
    for name in queue.LOG_QUEUES:
        (tmp_path / name).mkdir()
    return tmp_path


def test_append_and_read_round_trip(qdir: Path) -> None:
    first = record_create("bob@example.test", "rob@example.test", "deferred", "4.2.0", "mailbox full\nreally",
                          when=1700000000.5)
    second = record_create("carol@example.test", "", "deferred", "4.3.0", "try later \u00e9")
    log_append(qdir, bounce_log.DEFER, QID, first)
    log_append(qdir, bounce_log.DEFER, QID, second)
    assert log_read(qdir, bounce_log.DEFER, QID) == [first, second]
    path = qdir / "defer" / "A" / QID
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().count(b"\n") == 2  # one line per record, newlines escaped
    assert first.action == "delayed"


def test_bounce_log_is_not_hashed(qdir: Path) -> None:
    record = record_create("bob@example.test", "", "bounced", "5.1.1", "unknown user")
    log_append(qdir, bounce_log.BOUNCE, QID, record)
    assert (qdir / "bounce" / QID).exists()
    assert log_read(qdir, bounce_log.BOUNCE, QID)[0].action == "failed"


def test_missing_log_is_empty(qdir: Path) -> None:
    assert log_read(qdir, bounce_log.BOUNCE, QID) == []
    assert not log_exists(qdir, bounce_log.BOUNCE, QID)
    assert log_remove(qdir, bounce_log.BOUNCE, QID) is False


def test_latest_record_per_recipient(qdir: Path) -> None:
    log_append(qdir, bounce_log.DEFER, QID,
               record_create("bob@x", "", "deferred", "4.2.0", "old"),
               record_create("carol@x", "", "deferred", "4.4.1", "refused"),
               record_create("bob@x", "", "deferred", "4.2.2", "new"))
    latest = log_latest(qdir, bounce_log.DEFER, QID)
    assert {k: v.reason for k, v in latest.items()} == {"bob@x": "new", "carol@x": "refused"}


def test_torn_and_malformed_lines_are_skipped(qdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = record_create("bob@x", "", "bounced", "5.1.1", "unknown")
    log_append(qdir, bounce_log.BOUNCE, QID, good)
    with open(qdir / "bounce" / QID, "ab") as fh:
        fh.write(b'{"recipient": "x"}\n[1]\n{"recipient":"carol@x","orig')
    assert log_read(qdir, bounce_log.BOUNCE, QID) == [good]
    assert "bounce log line 2: malformed record skipped" in caplog.text
    assert "line 4" in caplog.text


def test_remove(qdir: Path) -> None:
    log_append(qdir, bounce_log.DEFER, QID, record_create("bob@x", "", "deferred", "4.2.0", "x"))
    assert log_remove(qdir, bounce_log.DEFER, QID) is True
    assert not log_exists(qdir, bounce_log.DEFER, QID)


def test_concurrent_appends_do_not_interleave(qdir: Path) -> None:
    def writer(n: int) -> None:
        for i in range(50):
            log_append(qdir, bounce_log.DEFER, QID,
                       record_create(f"r{n}-{i}@x", "", "deferred", "4.0.0", "y" * 2000))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = log_read(qdir, bounce_log.DEFER, QID)
    assert len(records) == 200 and all(isinstance(r, StatusRecord) for r in records)


def test_invalid_queue_id_is_refused(qdir: Path) -> None:
    with pytest.raises(queue.QueueError):
        log_append(qdir, bounce_log.DEFER, "../etc", record_create("a", "", "deferred", "4.0.0", "x"))
