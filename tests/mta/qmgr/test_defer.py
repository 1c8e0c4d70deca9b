"""Tests for mta.qmgr.defer: back-off, lifetimes, expiry, notifications and finishing a pass."""

from __future__ import annotations

import email
import os
import time
from pathlib import Path

import pytest

from mta import bounce_log, queue
from mta.qmgr.active import ActiveMessage, active_bounce, active_defer, active_enter, active_load
from mta.qmgr.defer import (
    Notifier,
    RetryPolicy,
    bounce_notify,
    defer_expire,
    defer_finish,
    delay_warn,
    message_expired,
    notifier_from_config,
    policy_from_config,
    retry_time,
)
from mta.qmgr.deliver import routing_from_config
from mta.record import record_read
from tests.mta.qmgr.conftest import BounceService, FakeCleanup, enqueue, make_config, subparts

POLICY = RetryPolicy(300, 4000, 5 * 86400, 86400)


def load(qdir: Path, *rcpts: str, sender: str = "alice@example.test", age: float = 0,
         warn_after: float = 0) -> ActiveMessage:
    arrival = time.time() - age
    qid = enqueue(qdir, list(rcpts), sender=sender, arrival=arrival,
                  warn_time=arrival + warn_after if warn_after else 0.0)
    active_enter(qdir, queue.INCOMING, qid)
    msg = active_load(qdir, qid)
    assert msg is not None
    return msg


def notifier(qdir: Path) -> Notifier:
    cfg = make_config(qdir)
    return notifier_from_config(cfg, routing_from_config(cfg))


def test_policy_from_config(qdir: Path) -> None:
    cfg = make_config(qdir, minimal_backoff_time="5m", maximal_backoff_time="1h",
                      maximal_queue_lifetime="2d", bounce_queue_lifetime="3h")
    assert policy_from_config(cfg) == RetryPolicy(300, 3600, 2 * 86400, 3 * 3600)
    assert policy_from_config(make_config(qdir, maximal_queue_lifetime="0")).queue_lifetime == 0


@pytest.mark.parametrize(("age", "delay"), [(0, 300), (299, 300), (1000, 1000), (3999, 3999), (10**6, 4000)])
def test_retry_time_is_clamped_age(age: float, delay: int) -> None:
    now = 1_700_000_000.0
    assert retry_time(POLICY, now - age, now) == now + delay


def test_message_expired(qdir: Path) -> None:
    young = load(qdir, "a@example.test", age=3600)
    old = load(qdir, "a@example.test", age=6 * 86400)
    bounce = load(qdir, "a@example.test", sender="", age=2 * 86400)
    now = time.time()
    assert not message_expired(POLICY, young, now)
    assert message_expired(POLICY, old, now)
    assert message_expired(POLICY, bounce, now)  # bounce_queue_lifetime is shorter
    assert message_expired(RetryPolicy(300, 4000, 0, 0), young, now)  # 0 = try once
    young.forced_expire = True
    assert message_expired(POLICY, young, now)


def test_expire_keeps_last_deferral(qdir: Path) -> None:
    msg = load(qdir, "a@example.test", "b@example.test")
    a, _ = msg.envelope.recipients
    active_defer(qdir, msg, a, "local", "4.4.1", "connect to x: Connection refused", msg.delays())
    assert defer_expire(qdir, msg) == 2
    records = bounce_log.log_read(qdir, bounce_log.BOUNCE, msg.queue_id)
    assert [(r.recipient, r.status, r.dsn, r.reason) for r in records] == [
        ("a@example.test", "expired", "4.4.1", "connect to x: Connection refused"),
        ("b@example.test", "expired", "4.4.7", "message expired"),
    ]
    assert msg.envelope.pending() == []


def test_finish_defers_with_backoff(qdir: Path) -> None:
    msg = load(qdir, "a@example.test", age=1000)
    now = time.time()
    assert defer_finish(qdir, msg, POLICY, notifier(qdir), now) == "deferred"
    mtime = os.stat(queue.queue_path(qdir, queue.DEFERRED, msg.queue_id)).st_mtime
    assert abs(mtime - (now + 1000)) < 2


def test_finish_removes_a_finished_message(qdir: Path) -> None:
    msg = load(qdir, "a@example.test")
    msg.envelope.recipients[0].done = True
    assert defer_finish(qdir, msg, POLICY, notifier(qdir)) == "removed"
    assert not (qdir / queue.ACTIVE / msg.queue_id).exists()


def test_notify_sends_one_dsn_for_all_bounces(qdir: Path, cleanup: FakeCleanup,
                                              bounce: BounceService) -> None:
    msg = load(qdir, "a@example.test", "b@example.test")
    for rcpt in msg.envelope.recipients:
        active_bounce(qdir, msg, rcpt, "local", "5.1.1", "unknown user", msg.delays())
    assert bounce_notify(qdir, msg, notifier(qdir))
    [(request, content)] = cleanup.submitted
    assert request["recipients"] == [{"address": "alice@example.test"}]
    report = email.message_from_bytes(content)
    blocks = subparts(subparts(report)[1])
    assert [b["Final-Recipient"] for b in blocks[1:]] == ["rfc822; a@example.test", "rfc822; b@example.test"]
    assert not bounce_log.log_exists(qdir, bounce_log.BOUNCE, msg.queue_id)


def test_notify_failure_keeps_the_bounce_log(qdir: Path) -> None:
    msg = load(qdir, "a@example.test")
    active_bounce(qdir, msg, msg.envelope.recipients[0], "local", "5.1.1", "unknown user", msg.delays())
    assert not bounce_notify(qdir, msg, notifier(qdir))  # no bounce service listening
    assert bounce_log.log_exists(qdir, bounce_log.BOUNCE, msg.queue_id)
    assert defer_finish(qdir, msg, POLICY, notifier(qdir)) == "deferred"


def test_notify_without_a_bounce_log_asks_nothing(qdir: Path) -> None:
    msg = load(qdir, "a@example.test")
    assert bounce_notify(qdir, msg, notifier(qdir))  # no service needed: nothing to send


def test_delay_warn_when_due_and_pending(qdir: Path, cleanup: FakeCleanup, bounce: BounceService) -> None:
    msg = load(qdir, "a@example.test", age=100, warn_after=60)
    rcpt = msg.envelope.recipients[0]
    active_defer(qdir, msg, rcpt, "local", "4.2.2", "mailbox full", msg.delays())
    now = time.time()
    assert delay_warn(qdir, msg, notifier(qdir), msg.envelope.arrival + 59)  # not due yet
    assert cleanup.submitted == [] and msg.envelope.warn_time > 0
    assert delay_warn(qdir, msg, notifier(qdir), now)
    [(request, content)] = cleanup.submitted
    assert request["sender"] == "" and request["recipients"] == [{"address": "alice@example.test"}]
    report = email.message_from_bytes(content)
    assert report["Subject"] == "Delayed Mail (still being retried)"
    assert subparts(subparts(report)[1])[1]["Action"] == "delayed"
    assert msg.envelope.warn_time == 0
    path = queue.queue_path(qdir, queue.ACTIVE, msg.queue_id)
    assert record_read(path)[0].warn_time == 0  # rewritten in the file, not only in memory
    assert delay_warn(qdir, msg, notifier(qdir), now) and len(cleanup.submitted) == 1


def test_delay_warn_skips_finished_and_unwarned_messages(qdir: Path) -> None:
    done = load(qdir, "a@example.test", age=100, warn_after=60)
    done.envelope.recipients[0].done = True
    unwarned = load(qdir, "a@example.test", age=100)
    # No service is listening: True means nothing was asked for.
    assert delay_warn(qdir, done, notifier(qdir), time.time())
    assert delay_warn(qdir, unwarned, notifier(qdir), time.time())
    failing = load(qdir, "a@example.test", age=100, warn_after=60)
    assert not delay_warn(qdir, failing, notifier(qdir), time.time())
    assert failing.envelope.warn_time > 0
