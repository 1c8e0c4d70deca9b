"""Tests for mta.qmgr.active: delay format, loading, quarantine, outcomes, moves out of active/."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mta import bounce_log, queue
from mta.qmgr.active import (
    ActiveMessage,
    Delays,
    active_bounce,
    active_defer,
    active_enter,
    active_load,
    active_recover,
    active_remove,
    active_sent,
    active_to_deferred,
    format_delay,
)
from mta.record import record_read
from tests.mta.qmgr.conftest import enqueue


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0"), (0.004, "0"), (0.01, "0.01"), (0.07, "0.07"), (0.283, "0.28"), (0.5, "0.5"),
    (1.0, "1.0"), (1.25, "1.2"), (9.99, "9.9"), (10.4, "10"), (12.6, "13"), (4000, "4000"),
])
def test_format_delay(seconds: float, text: str) -> None:
    assert format_delay(seconds) == text


def test_delays_text() -> None:
    assert Delays(0.07, 0.0, 0.0, 1.25).text() == "0.07/0/0/1.2"


def load(qdir: Path, *rcpts: str) -> ActiveMessage:
    qid = enqueue(qdir, list(rcpts))
    assert active_enter(qdir, queue.INCOMING, qid)
    msg = active_load(qdir, qid)
    assert msg is not None
    return msg


def test_enter_and_load(qdir: Path) -> None:
    msg = load(qdir, "bob@example.test", "carol@example.test")
    assert [r.address for r in msg.envelope.pending()] == ["bob@example.test", "carol@example.test"]
    assert msg.size > 0 and not msg.forced_expire and msg.fd >= 0
    assert active_enter(qdir, queue.INCOMING, "0123456789AB") is False
    active_remove(qdir, msg)


def test_corrupt_file_is_quarantined(qdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    qf = queue.queue_create(qdir, queue.ACTIVE)
    os.write(qf.fd, b"garbage\n")
    queue.queue_finish(qf)
    assert active_load(qdir, qf.queue_id) is None
    assert (qdir / queue.CORRUPT / qf.queue_id).exists()
    assert "saving corrupt file from active: bad magic line" in caplog.text


def test_sent_marks_done_on_disk(qdir: Path) -> None:
    msg = load(qdir, "bob@example.test", "carol@example.test")
    active_sent(msg, msg.envelope.recipients[0], "local", "2.0.0", "ok", msg.delays())
    envelope, _ = record_read(queue.queue_path(qdir, queue.ACTIVE, msg.queue_id))
    assert [r.done for r in envelope.recipients] == [True, False]
    assert [r.address for r in msg.envelope.pending()] == ["carol@example.test"]
    active_remove(qdir, msg)


def test_defer_and_bounce_write_logs(qdir: Path) -> None:
    msg = load(qdir, "bob@example.test", "carol@example.test")
    bob, carol = msg.envelope.recipients
    active_defer(qdir, msg, bob, "local", "4.2.0", "try later", msg.delays())
    assert active_bounce(qdir, msg, carol, "local", "5.1.1", "no such user", msg.delays())
    assert [r.address for r in msg.envelope.pending()] == ["bob@example.test"]
    [deferral] = bounce_log.log_read(qdir, bounce_log.DEFER, msg.queue_id)
    [bounce] = bounce_log.log_read(qdir, bounce_log.BOUNCE, msg.queue_id)
    assert (deferral.recipient, deferral.status, deferral.reason) == ("bob@example.test", "deferred", "try later")
    assert (bounce.recipient, bounce.status, bounce.dsn) == ("carol@example.test", "bounced", "5.1.1")
    active_remove(qdir, msg)
    assert not bounce_log.log_exists(qdir, bounce_log.DEFER, msg.queue_id)
    assert not bounce_log.log_exists(qdir, bounce_log.BOUNCE, msg.queue_id)
    assert not (qdir / queue.ACTIVE / msg.queue_id).exists()


def test_bounce_log_failure_defers_instead(qdir: Path) -> None:
    msg = load(qdir, "bob@example.test")
    (qdir / queue.BOUNCE_LOG).rmdir()
    assert not active_bounce(qdir, msg, msg.envelope.recipients[0], "local", "5.1.1", "x", msg.delays())
    assert msg.envelope.pending()
    [record] = bounce_log.log_read(qdir, bounce_log.DEFER, msg.queue_id)
    assert record.reason == "bounce or trace service failure"


def test_to_deferred_sets_retry_time(qdir: Path) -> None:
    msg = load(qdir, "bob@example.test")
    when = time.time() + 1234
    active_to_deferred(qdir, msg, when)
    path = queue.queue_path(qdir, queue.DEFERRED, msg.queue_id)
    assert abs(os.stat(path).st_mtime - when) < 1 and msg.fd == -1


def test_recover_moves_active_back_to_incoming(qdir: Path) -> None:
    qid = enqueue(qdir, ["bob@example.test"], where=queue.ACTIVE)
    assert active_recover(qdir) == [qid]
    assert (qdir / queue.INCOMING / qid).exists() and not (qdir / queue.ACTIVE / qid).exists()
