"""Tests for mta.qmgr.deliver: routing, limits, request planning, reply handling, the dispatcher."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mta import bounce_log, queue
from mta.errors import ConfigError
from mta.qmgr import deliver
from mta.qmgr.active import ActiveMessage, active_enter, active_load
from mta.qmgr.deliver import (
    DeadTransports,
    DeliveryJob,
    Dispatcher,
    TransportLimits,
    job_deliver,
    jobs_plan,
    reply_apply,
    routing_from_config,
)
from tests.mta.qmgr.conftest import FakeAgent, enqueue, make_config


def load(qdir: Path, *rcpts: str) -> ActiveMessage:
    qid = enqueue(qdir, list(rcpts))
    active_enter(qdir, queue.INCOMING, qid)
    msg = active_load(qdir, qid)
    assert msg is not None
    return msg


def test_transport_maps(qdir: Path) -> None:
    """transport(5): user+ext@domain, user@domain, domain, .parent, *; empty halves keep the defaults."""
    table = ("inline:{ {bob@relay.example=smtp:[mx.internal]:25}, {relay.example=relay:}, "
             "{.sub.example=:gw.example}, {closed.example=error:5.1.1 this domain is closed}, "
             "{mx.example.test=discard:}, {*=retry:4.4.1 later} }")
    routing = routing_from_config(make_config(qdir, transport_maps=table, recipient_delimiter="+"))
    assert routing.route("bob+tag@relay.example") == ("smtp", "[mx.internal]:25")
    assert routing.route("alice@relay.example") == ("relay", "relay.example")
    assert routing.route("x@a.sub.example") == (None, "gw.example")  # no transport of its own: the default
    assert routing.route("x@sub.example") == ("retry", "4.4.1 later")  # ".sub.example" is for subdomains only
    assert routing.route("x@closed.example") == ("error", "5.1.1 this domain is closed")
    assert routing.route("bob@mx.example.test") == ("discard", "mx.example.test")  # even a local domain
    assert routing.route("root") == ("retry", "4.4.1 later")
    with pytest.raises(ConfigError, match="transport_maps: .*no_such_file"):
        routing_from_config(make_config(qdir, transport_maps=f"hash:{qdir}/no_such_file"))


def test_routing(qdir: Path) -> None:
    routing = routing_from_config(make_config(qdir, local_transport="mylocal:$myhostname"))
    assert routing.local_transport == "mylocal"
    assert routing.route("bob@MX.Example.Test") == ("mylocal", "mx.example.test")
    assert routing.route("bob@localhost.example.test") == ("mylocal", "localhost.example.test")
    assert routing.route("bob@localhost") == ("mylocal", "localhost")
    assert routing.route("root") == ("mylocal", "")
    assert routing.route("bob@remote.example") == (None, "remote.example")
    assert routing.is_double_bounce("double-bounce@mx.example.test")
    assert routing.is_double_bounce("Double-Bounce")
    assert not routing.is_double_bounce("double-bounce@remote.example")


def test_routing_skips_tables(qdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    routing = routing_from_config(make_config(qdir, mydestination="a.example, hash:/etc/x"))
    assert routing.local_domains == frozenset({"a.example"})
    assert "mydestination table hash:/etc/x is not supported" in caplog.text


def test_transport_limits(qdir: Path) -> None:
    limits = TransportLimits(make_config(qdir, default_process_limit="7", relay_destination_concurrency_limit="3"))
    assert (limits.concurrency("local"), limits.recipients("local")) == (2, 1)
    assert (limits.concurrency("relay"), limits.recipients("relay")) == (3, 50)
    assert limits.process_limit == 7


def test_plan_groups_per_transport_within_the_recipient_limit(qdir: Path) -> None:
    cfg = make_config(qdir, local_destination_recipient_limit="2")
    msg = load(qdir, "a@example.test", "b@example.test", "c@example.test", "d@localhost", "e@remote.example")
    jobs = jobs_plan(qdir, msg, routing_from_config(cfg), TransportLimits(cfg), DeadTransports(60))
    assert [(j.transport, j.nexthop, j.key, [r.address for r in j.recipients]) for j in jobs] == [
        ("local", "example.test", "local:example.test", ["a@example.test", "b@example.test"]),
        ("local", "example.test", "local:example.test", ["c@example.test"]),
        ("local", "localhost", "local:localhost", ["d@localhost"]),
    ]
    assert [r.address for r in msg.envelope.pending()][-1] == "e@remote.example"
    [record] = bounce_log.log_read(qdir, bounce_log.DEFER, msg.queue_id)
    assert record.reason == deliver.UNAVAILABLE


def test_plan_uses_per_recipient_destinations_with_limit_one(qdir: Path) -> None:
    cfg = make_config(qdir)
    msg = load(qdir, "a@example.test", "B@example.test")
    jobs = jobs_plan(qdir, msg, routing_from_config(cfg), TransportLimits(cfg), DeadTransports(60))
    assert [(j.key, j.limit) for j in jobs] == [("local:a@example.test", 2), ("local:b@example.test", 2)]


def test_dead_transport_defers_without_trying(qdir: Path) -> None:
    cfg = make_config(qdir)
    dead = DeadTransports(60)
    dead.throttle("local", "delivery temporarily suspended: connect to local: Connection refused")
    msg = load(qdir, "a@example.test")
    assert jobs_plan(qdir, msg, routing_from_config(cfg), TransportLimits(cfg), dead) == []
    [record] = bounce_log.log_read(qdir, bounce_log.DEFER, msg.queue_id)
    assert "Connection refused" in record.reason
    dead.forget()
    assert dead.reason("local") is None


def test_dead_transport_expires() -> None:
    dead = DeadTransports(0.05)
    dead.throttle("local", "x")
    assert dead.reason("local") == "x"
    time.sleep(0.06)
    assert dead.reason("local") is None


def test_unreachable_agent_throttles_transport(qdir: Path) -> None:
    msg = load(qdir, "a@example.test")
    dead = DeadTransports(60)
    job_deliver(qdir, DeliveryJob(msg, "local", "example.test", "k", 2, msg.envelope.pending()), dead, 5)
    assert dead.reason("local") == "delivery temporarily suspended: connect to local: No such file or directory"
    assert msg.envelope.pending()


def test_job_deliver_against_agent(qdir: Path, agent: FakeAgent) -> None:
    agent.script = lambda a: (0, "2.0.0", "delivered to mailbox") if a[0] == "a" else (5, "5.1.1", "unknown")
    msg = load(qdir, "a@example.test", "b@example.test")
    job = DeliveryJob(msg, "local", "example.test", "k", 2, msg.envelope.pending())
    job_deliver(qdir, job, DeadTransports(60), 5)
    assert msg.envelope.pending() == []
    [record] = bounce_log.log_read(qdir, bounce_log.BOUNCE, msg.queue_id)
    assert record.recipient == "b@example.test"


@pytest.mark.parametrize(("reply", "expected"), [
    ({"status": 0}, ("sent", None)),
    ({"status": 5, "dsn": "5.7.1", "reason": "no"}, ("bounced", "5.7.1")),
    ({"status": 4, "dsn": "5.0.0", "reason": "mismatched code"}, ("deferred", "4.3.0")),
    ({"status": 9, "reason": "nonsense"}, ("deferred", "4.3.0")),
    ({"status": 0, "recipients": []}, ("deferred", "4.3.0")),
    ({"status": 0, "recipients": [{"address": "a@example.test", "status": 4, "dsn": "4.2.2",
                                   "reason": "full"}]}, ("deferred", "4.2.2")),
])
def test_reply_apply(qdir: Path, reply: dict[str, object], expected: tuple[str, str | None]) -> None:
    msg = load(qdir, "a@example.test")
    job = DeliveryJob(msg, "local", "example.test", "k", 2, msg.envelope.pending())
    reply_apply(qdir, job, reply, time.time(), time.time())
    outcome, dsn = expected
    if outcome == "sent":
        assert msg.envelope.pending() == []
        return
    log_queue = bounce_log.BOUNCE if outcome == "bounced" else bounce_log.DEFER
    [record] = bounce_log.log_read(qdir, log_queue, msg.queue_id)
    assert (record.status, record.dsn) == (outcome, dsn)


def test_dispatcher_limits(qdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = threading.Lock()
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    total = [0, 0]
    threads: set[int] = set()

    def fake_deliver(queue_dir: Path, job: DeliveryJob, dead: DeadTransports, timeout: float) -> None:
        with lock:
            running[job.key] = running.get(job.key, 0) + 1
            peak[job.key] = max(peak.get(job.key, 0), running[job.key])
            total[0] += 1
            total[1] = max(total[1], total[0])
            threads.add(threading.get_ident())
        time.sleep(0.05)
        with lock:
            running[job.key] -= 1
            total[0] -= 1

    monkeypatch.setattr(deliver, "job_deliver", fake_deliver)
    done: list[DeliveryJob] = []
    dispatcher = Dispatcher(qdir, 3, DeadTransports(60), done.append)
    msg = load(qdir, "a@example.test")
    jobs = [DeliveryJob(msg, "local", "x", key, 2, []) for key in ["a"] * 5 + ["b"] * 5]
    dispatcher.submit(jobs)
    assert dispatcher.join(10)
    time.sleep(0.05)
    assert len(done) == 10 and dispatcher.busy == 0
    assert set(peak) == {"a", "b"} and max(peak.values()) <= 2
    assert total[1] == 3
    assert len(threads) <= 3  # workers are reused: never more than the process limit


def test_dispatcher_idle_workers_exit(qdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deliver, "job_deliver", lambda *args: None)
    monkeypatch.setattr(Dispatcher, "WORKER_IDLE", 0.1)
    done: list[DeliveryJob] = []
    dispatcher = Dispatcher(qdir, 3, DeadTransports(60), done.append)
    msg = load(qdir, "a@example.test")
    dispatcher.submit([DeliveryJob(msg, "local", "x", "a", 2, []) for _ in range(4)])
    assert dispatcher.join(10)
    deadline = time.monotonic() + 5
    while dispatcher._workers and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(done) == 4 and dispatcher._workers == 0
    dispatcher.submit([DeliveryJob(msg, "local", "x", "a", 2, [])])  # a new worker starts again
    assert dispatcher.join(10)
    deadline = time.monotonic() + 5
    while len(done) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(done) == 5
