"""End-to-end tests for the queue manager: a real Qmgr against a scratch queue, fake local and cleanup."""

from __future__ import annotations

import email
import logging
import os
import stat
import time
from pathlib import Path
from typing import Iterator

import pytest

import mta.qmgr as qmgr_daemon
from mta import bounce_log, queue
from mta.qmgr import Qmgr
from mta.record import Recipient, record_read
from mta.skeleton import DaemonContext
from tests.mta.qmgr.conftest import (
    CONTENT,
    SENT,
    BounceService,
    FakeAgent,
    FakeCleanup,
    bounce_start,
    enqueue,
    files,
    make_config,
    subparts,
    text_of,
    wait_for,
)

TEMPFAIL = (4, "4.2.0", "mailbox temporarily unavailable")
PERMFAIL = (5, "5.1.1", 'unknown user: "nobody"')


@pytest.fixture()
def running(qdir: Path) -> Iterator[list[Qmgr]]:
    """Started Qmgr instances, stopped at the end of the test."""
    started: list[Qmgr] = []
    yield started
    for manager in started:
        manager.stop(timeout=10)


def start(running: list[Qmgr], qdir: Path, **settings: str) -> Qmgr:
    manager = Qmgr(qdir, make_config(qdir, **settings))
    manager.start()
    running.append(manager)
    return manager


def idle(manager: Qmgr) -> None:
    assert manager.wait_idle(15), "qmgr did not become idle"


def retry_with_bounce(manager: Qmgr, qdir: Path) -> None:
    """Start the bounce daemon, wake qmgr for another pass over its queue, wait until idle, stop the daemon."""
    service = bounce_start(qdir)
    try:
        manager.trigger(b"A")
        idle(manager)
    finally:
        service.stop()


def dsn_of(cleanup: FakeCleanup, index: int = 0) -> email.message.Message:
    request, content = cleanup.submitted[index]
    assert request["sender"] == ""
    assert request["attrs"] == {"origin": "bounce"}
    return email.message_from_bytes(content)


def status_blocks(report: email.message.Message) -> list[email.message.Message]:
    status = subparts(report)[1]
    assert status.get_content_type() == "message/delivery-status"
    return subparts(status)


def test_delivery_success_removes_the_file(qdir: Path, running: list[Qmgr], agent: FakeAgent,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    qid = enqueue(qdir, [("bob@example.test", "robert@example.test")])
    idle(start(running, qdir))
    assert files(qdir, queue.INCOMING) == files(qdir, queue.ACTIVE) == files(qdir, queue.DEFERRED) == []
    [request] = agent.requests
    assert request["op"] == "deliver" and request["queue_name"] == "active" and request["queue_id"] == qid
    assert request["sender"] == "alice@example.test" and request["nexthop"] == "example.test"
    assert request["attrs"] == {"origin": "smtpd"}
    assert [(r["address"], r["original"]) for r in request["recipients"]] == [
        ("bob@example.test", "robert@example.test")]
    text = caplog.text
    assert f"{qid}: from=<alice@example.test>, size={len(CONTENT)}, nrcpt=1 (queue active)" in text
    assert (f"{qid}: to=<bob@example.test>, orig_to=<robert@example.test>, relay=local, delay="
            in text)
    assert "dsn=2.0.0, status=sent (delivered to maildir)" in text
    assert f"{qid}: removed" in text


def test_partial_success_marks_only_delivered_and_restart_does_not_redeliver(
        qdir: Path, running: list[Qmgr], agent: FakeAgent) -> None:
    agent.script = lambda a: SENT if a.startswith("alice") else TEMPFAIL
    qid = enqueue(qdir, ["alice@example.test", "bob@example.test"])
    first = start(running, qdir)
    idle(first)
    assert files(qdir, queue.DEFERRED) == [qid]
    envelope, _ = record_read(queue.queue_path(qdir, queue.DEFERRED, qid))
    assert [(r.address, r.done) for r in envelope.recipients] == [
        ("alice@example.test", True), ("bob@example.test", False)]
    assert first.stop(10)

    agent.script = lambda a: SENT
    agent.requests.clear()
    second = start(running, qdir)
    second.trigger(b"A")
    idle(second)
    assert agent.delivered == ["bob@example.test"]
    assert files(qdir, queue.DEFERRED) == []
    assert not bounce_log.log_exists(qdir, bounce_log.DEFER, qid)


def test_temporary_failure_defers_with_backoff_mtime(qdir: Path, running: list[Qmgr],
                                                     agent: FakeAgent) -> None:
    agent.script = lambda a: TEMPFAIL
    qid = enqueue(qdir, ["bob@example.test"])
    before = time.time()
    idle(start(running, qdir, minimal_backoff_time="30s", maximal_backoff_time="60s"))
    path = queue.queue_path(qdir, queue.DEFERRED, qid)
    assert path.parent.name == qid[0]
    mtime = os.stat(path).st_mtime
    assert before + 30 - 1 <= mtime <= time.time() + 30 + 1
    [record] = bounce_log.log_read(qdir, bounce_log.DEFER, qid)
    assert (record.recipient, record.status, record.dsn, record.reason) == (
        "bob@example.test", "deferred", "4.2.0", "mailbox temporarily unavailable")


def test_deferred_waits_for_its_time_but_flush_ignores_it(qdir: Path, running: list[Qmgr],
                                                          agent: FakeAgent) -> None:
    agent.script = lambda a: TEMPFAIL
    qid = enqueue(qdir, ["bob@example.test"])
    manager = start(running, qdir, minimal_backoff_time="60s", maximal_backoff_time="60s")
    idle(manager)
    assert files(qdir, queue.DEFERRED) == [qid]
    agent.script = lambda a: SENT
    manager.trigger(b"D")
    idle(manager)
    manager.trigger(b"W")
    idle(manager)
    assert len(agent.requests) == 1 and files(qdir, queue.DEFERRED) == [qid]
    manager.trigger(b"A")
    idle(manager)
    assert len(agent.requests) == 2 and files(qdir, queue.DEFERRED) == []


def test_deferred_is_retried_by_the_timer_when_due(qdir: Path, running: list[Qmgr],
                                                   agent: FakeAgent) -> None:
    agent.script = lambda a: TEMPFAIL
    qid = enqueue(qdir, ["bob@example.test"])
    manager = start(running, qdir, minimal_backoff_time="1s", maximal_backoff_time="1s",
                    queue_run_delay="1s")
    idle(manager)
    agent.script = lambda a: SENT
    assert wait_for(lambda: len(agent.requests) == 2, 8)
    assert wait_for(lambda: files(qdir, queue.DEFERRED) == files(qdir, queue.ACTIVE) == [], 5)
    assert agent.requests[1]["queue_id"] == qid


def test_lifetime_expiry_bounces_with_rfc3464_dsn(qdir: Path, running: list[Qmgr], agent: FakeAgent,
                                                  cleanup: FakeCleanup, bounce: BounceService,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    agent.script = lambda a: TEMPFAIL
    qid = enqueue(qdir, [("bob@example.test", "rob@example.test")], arrival=time.time() - 7200)
    idle(start(running, qdir, maximal_queue_lifetime="1h"))
    assert files(qdir, queue.DEFERRED) == [] and files(qdir, queue.ACTIVE) == []
    assert f"{qid}: from=<alice@example.test>, status=expired, returned to sender" in caplog.text
    assert f"{qid}: sender non-delivery notification: B0B000000001" in caplog.text
    assert f"{qid}: removed" in caplog.text
    request, _ = cleanup.submitted[0]
    assert request["recipients"] == [{"address": "alice@example.test"}]
    report = dsn_of(cleanup)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["To"] == "alice@example.test"
    human, _, headers = subparts(report)
    assert "This is the mail system at host mx.example.test." in text_of(human)
    assert "<bob@example.test> (expanded from <rob@example.test>): mailbox temporarily unavailable" \
        in text_of(human)
    per_message, per_rcpt = status_blocks(report)
    assert per_message["Reporting-MTA"] == "dns; mx.example.test"
    assert per_message["X-Postfix-Queue-ID"] == qid
    assert per_message["Arrival-Date"]
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@example.test"
    assert per_rcpt["Original-Recipient"] == "rfc822; rob@example.test"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "4.2.0"
    assert "mailbox temporarily unavailable" in per_rcpt["Diagnostic-Code"]
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: hello there" in text_of(headers)
    assert "body" not in text_of(headers)


def test_zero_lifetime_tries_once(qdir: Path, running: list[Qmgr], agent: FakeAgent,
                                  cleanup: FakeCleanup, bounce: BounceService) -> None:
    agent.script = lambda a: TEMPFAIL
    enqueue(qdir, ["bob@example.test"])
    idle(start(running, qdir, maximal_queue_lifetime="0"))
    assert len(agent.requests) == 1 and len(cleanup.submitted) == 1
    assert files(qdir, queue.DEFERRED) == []


def test_permanent_failure_bounces(qdir: Path, running: list[Qmgr], agent: FakeAgent, cleanup: FakeCleanup,
                                   bounce: BounceService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    agent.script = lambda a: PERMFAIL if a.startswith("nobody") else SENT
    qid = enqueue(qdir, ["nobody@example.test", "bob@example.test"])
    idle(start(running, qdir))
    assert files(qdir, queue.DEFERRED) == files(qdir, queue.ACTIVE) == []
    assert 'dsn=5.1.1, status=bounced (unknown user: "nobody")' in caplog.text
    [per_rcpt] = status_blocks(dsn_of(cleanup))[1:]
    assert (per_rcpt["Final-Recipient"], per_rcpt["Status"], per_rcpt["Action"]) == (
        "rfc822; nobody@example.test", "5.1.1", "failed")
    assert not bounce_log.log_exists(qdir, bounce_log.BOUNCE, qid)


@pytest.mark.parametrize("sender", ["", "double-bounce@mx.example.test"])
def test_bounce_is_not_bounced_again(qdir: Path, running: list[Qmgr], agent: FakeAgent, cleanup: FakeCleanup,
                                     bounce: BounceService, caplog: pytest.LogCaptureFixture,
                                     sender: str) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    agent.script = lambda a: PERMFAIL
    qid = enqueue(qdir, ["nobody@example.test"], sender=sender)
    idle(start(running, qdir))
    assert cleanup.submitted == []
    assert f"{qid}: from=<{sender}>, status=bounced, non-delivery notification discarded" in caplog.text
    assert files(qdir, queue.DEFERRED) == files(qdir, queue.ACTIVE) == []


def test_notification_failure_keeps_the_message_until_cleanup_takes_it(
        qdir: Path, running: list[Qmgr], agent: FakeAgent, cleanup: FakeCleanup,
        bounce: BounceService) -> None:
    agent.script = lambda a: PERMFAIL
    cleanup.refuse = True
    qid = enqueue(qdir, ["nobody@example.test"])
    manager = start(running, qdir)
    idle(manager)
    assert files(qdir, queue.DEFERRED) == [qid]
    assert bounce_log.log_exists(qdir, bounce_log.BOUNCE, qid)
    cleanup.refuse = False
    manager.trigger(b"A")
    idle(manager)
    assert len(agent.requests) == 1
    assert len(cleanup.submitted) == 1 and files(qdir, queue.DEFERRED) == []


def test_active_queue_limit_is_respected(qdir: Path, running: list[Qmgr], agent: FakeAgent) -> None:
    agent.delay = 0.2
    ids = [enqueue(qdir, [f"user{i}@example.test"]) for i in range(5)]
    manager = start(running, qdir, qmgr_message_active_limit="2",
                    local_destination_concurrency_limit="5")
    idle(manager)
    assert len(agent.requests) == 5 and files(qdir, queue.INCOMING) == []
    assert max(agent.active_seen) <= 2
    assert agent.max_concurrent == 2
    assert sorted(r["queue_id"] for r in agent.requests) == sorted(ids)


def test_destination_concurrency_limit(qdir: Path, running: list[Qmgr], agent: FakeAgent) -> None:
    agent.delay = 0.15
    for _ in range(6):
        enqueue(qdir, ["bob@example.test"])
    idle(start(running, qdir))
    assert len(agent.requests) == 6
    assert agent.max_concurrent == 2  # local_destination_concurrency_limit, per recipient


def test_corrupt_file_is_quarantined(qdir: Path, running: list[Qmgr], agent: FakeAgent) -> None:
    good = enqueue(qdir, ["bob@example.test"])
    qf = queue.queue_create(qdir, queue.INCOMING)
    os.write(qf.fd, b"mta-queue 1\nT 1\nS x\nR bob@example.test\nC 100\nshort")
    bad = qf.queue_id
    queue.queue_finish(qf)
    idle(start(running, qdir))
    assert files(qdir, queue.CORRUPT) == [bad]
    assert stat.S_IMODE(os.stat(qdir / queue.CORRUPT / bad).st_mode) == queue.MODE_CORRUPT
    assert [r["queue_id"] for r in agent.requests] == [good]


def test_crash_recovery_of_active_files(qdir: Path, running: list[Qmgr], agent: FakeAgent) -> None:
    qid = enqueue(qdir, [Recipient("alice@example.test", done=True), Recipient("bob@example.test")],
                  where=queue.ACTIVE)
    idle(start(running, qdir))
    assert agent.delivered == ["bob@example.test"]
    assert files(qdir, queue.ACTIVE) == [] and files(qdir, queue.INCOMING) == []
    assert qid not in files(qdir, queue.DEFERRED)


def test_non_local_recipient_goes_to_default_transport(qdir: Path, running: list[Qmgr], agent: FakeAgent,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A remote recipient is handed to default_transport (smtp); with no smtp service it is deferred."""
    caplog.set_level(logging.INFO, logger="mta")
    qid = enqueue(qdir, ["carol@remote.example", "bob@EXAMPLE.test", "root"])
    idle(start(running, qdir))
    assert sorted(agent.delivered) == ["bob@EXAMPLE.test", "root"]
    assert files(qdir, queue.DEFERRED) == [qid]
    assert (f"{qid}: to=<carol@remote.example>, relay=none, delay=" in caplog.text)
    [record] = bounce_log.log_read(qdir, bounce_log.DEFER, qid)
    assert record.reason == "delivery temporarily suspended: connect to smtp: No such file or directory"


def test_unreachable_transport_defers(qdir: Path, running: list[Qmgr],
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    qid = enqueue(qdir, ["bob@example.test"])
    idle(start(running, qdir))
    assert files(qdir, queue.DEFERRED) == [qid]
    assert ("status=deferred (delivery temporarily suspended: connect to local: "
            "No such file or directory)") in caplog.text


def test_hold_is_never_touched(qdir: Path, running: list[Qmgr], agent: FakeAgent) -> None:
    held = enqueue(qdir, ["bob@example.test"], where=queue.HOLD)
    manager = start(running, qdir)
    manager.trigger(b"AIDW")
    idle(manager)
    assert files(qdir, queue.HOLD) == [held] and agent.requests == []


def test_forced_expire_bounces_at_once(qdir: Path, running: list[Qmgr], agent: FakeAgent,
                                       cleanup: FakeCleanup, bounce: BounceService) -> None:
    qid = enqueue(qdir, ["bob@example.test"], where=queue.DEFERRED)
    path = queue.queue_path(qdir, queue.DEFERRED, qid)
    os.chmod(path, queue.MODE_READY | queue.MODE_FORCED_EXPIRE)
    queue.set_retry_time(path, time.time() + 3600)
    idle(start(running, qdir))
    assert agent.requests == [] and files(qdir, queue.DEFERRED) == []
    [per_rcpt] = status_blocks(dsn_of(cleanup))[1:]
    assert per_rcpt["Status"] == "4.7.0"
    assert "administratively expired" in per_rcpt["Diagnostic-Code"]


def test_double_bounce_recipient_is_discarded(qdir: Path, running: list[Qmgr], agent: FakeAgent,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    enqueue(qdir, ["double-bounce@mx.example.test"], sender="")
    idle(start(running, qdir))
    assert agent.requests == []
    assert "status=sent (undeliverable postmaster notification discarded)" in caplog.text


def test_daemon_entry_points(qdir: Path, agent: FakeAgent) -> None:
    ctx = DaemonContext(service=None, cfg=make_config(qdir), queue_dir=qdir)  # type: ignore[arg-type]
    assert qmgr_daemon.SERVER == "trigger"
    qmgr_daemon.pre_init(ctx)
    qmgr_daemon.post_init(ctx)
    manager: Qmgr = ctx.state["qmgr"]
    try:
        enqueue(qdir, ["bob@example.test"])
        qmgr_daemon.trigger(b"I", ctx)
        assert wait_for(lambda: len(agent.requests) == 1)
        assert manager.wait_idle(10)
    finally:
        qmgr_daemon.pre_exit(ctx)
    assert manager.stop(1)


def test_bounce_service_down_keeps_the_bounce_log_and_defers(
        qdir: Path, running: list[Qmgr], agent: FakeAgent, cleanup: FakeCleanup,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    agent.script = lambda a: PERMFAIL
    qid = enqueue(qdir, ["nobody@example.test"])
    manager = start(running, qdir)
    idle(manager)
    assert files(qdir, queue.DEFERRED) == [qid] and cleanup.submitted == []
    assert bounce_log.log_exists(qdir, bounce_log.BOUNCE, qid)
    assert (f"{qid}: sender non-delivery notification failed: bounce service: "
            "[Errno 2] No such file or directory") in caplog.text
    retry_with_bounce(manager, qdir)
    assert len(agent.requests) == 1  # the recipient was done; only the notification was pending
    assert len(cleanup.submitted) == 1 and files(qdir, queue.DEFERRED) == []
    assert f"{qid}: sender non-delivery notification: B0B000000001" in caplog.text


def delay_warnings(cleanup: FakeCleanup) -> list[email.message.Message]:
    """The delay warnings cleanup received, checked to be notifications from the null sender."""
    found = []
    for index in range(len(cleanup.submitted)):
        report = dsn_of(cleanup, index)
        if report["Subject"] == "Delayed Mail (still being retried)":
            found.append(report)
    return found


def warn_time_of(qdir: Path, qid: str) -> float:
    return record_read(queue.queue_path(qdir, queue.DEFERRED, qid))[0].warn_time


def test_delay_warning_is_sent_once_across_passes_and_restarts(
        qdir: Path, running: list[Qmgr], agent: FakeAgent, cleanup: FakeCleanup, bounce: BounceService,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    agent.script = lambda a: TEMPFAIL
    arrival = time.time() - 30
    qid = enqueue(qdir, [("bob@example.test", "rob@example.test"), "carol@example.test"],
                  arrival=arrival, warn_time=arrival + 20)
    agent.script = lambda a: SENT if a.startswith("carol") else TEMPFAIL
    manager = start(running, qdir)
    idle(manager)
    [warning] = delay_warnings(cleanup)
    assert f"{qid}: sender delay notification: B0B000000001" in caplog.text
    assert warning["To"] == "alice@example.test"
    human, _, headers = subparts(warning)
    assert "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #" in text_of(human)
    assert "<bob@example.test> (expanded from <rob@example.test>): mailbox temporarily unavailable" \
        in text_of(human)
    assert "carol" not in text_of(human)  # delivered: not delayed
    [per_rcpt] = status_blocks(warning)[1:]
    assert (per_rcpt["Final-Recipient"], per_rcpt["Action"], per_rcpt["Status"]) == (
        "rfc822; bob@example.test", "delayed", "4.2.0")
    assert per_rcpt["Will-Retry-Until"]
    assert "Subject: hello there" in text_of(headers)
    assert warn_time_of(qdir, qid) == 0  # recorded in the queue file: sent
    assert bounce_log.log_exists(qdir, bounce_log.DEFER, qid)  # postqueue -p still shows the reason

    manager.trigger(b"A")  # a second pass, still deferred
    idle(manager)
    assert len(agent.requests) == 3 and files(qdir, queue.DEFERRED) == [qid]
    assert len(delay_warnings(cleanup)) == 1
    assert manager.stop(10)

    again = start(running, qdir)  # and after a restart
    again.trigger(b"A")
    idle(again)
    assert len(agent.requests) == 4 and files(qdir, queue.DEFERRED) == [qid]
    assert len(delay_warnings(cleanup)) == 1
    assert caplog.text.count("sender delay notification") == 1


def test_delay_warning_waits_until_it_is_due(qdir: Path, running: list[Qmgr], agent: FakeAgent,
                                             cleanup: FakeCleanup, bounce: BounceService) -> None:
    agent.script = lambda a: TEMPFAIL
    arrival = time.time()
    qid = enqueue(qdir, ["bob@example.test"], arrival=arrival, warn_time=arrival + 3600)
    idle(start(running, qdir))
    assert files(qdir, queue.DEFERRED) == [qid] and cleanup.submitted == []
    assert warn_time_of(qdir, qid) == int(arrival + 3600)


@pytest.mark.parametrize("sender", ["", "double-bounce@mx.example.test"])
def test_no_delay_warning_for_notifications(qdir: Path, running: list[Qmgr], agent: FakeAgent,
                                            cleanup: FakeCleanup, bounce: BounceService, sender: str) -> None:
    agent.script = lambda a: TEMPFAIL
    arrival = time.time() - 30
    qid = enqueue(qdir, ["bob@example.test"], sender=sender, arrival=arrival, warn_time=arrival + 1)
    idle(start(running, qdir))
    assert files(qdir, queue.DEFERRED) == [qid] and cleanup.submitted == []


def test_delay_warning_is_retried_when_the_defer_service_fails(
        qdir: Path, running: list[Qmgr], agent: FakeAgent, cleanup: FakeCleanup,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    agent.script = lambda a: TEMPFAIL
    arrival = time.time() - 30
    qid = enqueue(qdir, ["bob@example.test"], arrival=arrival, warn_time=arrival + 1)
    manager = start(running, qdir)
    idle(manager)
    assert f"{qid}: sender delay notification failed: defer service:" in caplog.text
    assert warn_time_of(qdir, qid) == int(arrival + 1)  # not sent, so not recorded as sent
    retry_with_bounce(manager, qdir)
    assert len(delay_warnings(cleanup)) == 1 and warn_time_of(qdir, qid) == 0
