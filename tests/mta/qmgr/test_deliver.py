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
    assert routing.route("x@a.sub.example") == ("smtp", "gw.example")  # no transport of its own: the default
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
    assert routing.route("bob@remote.example") == ("smtp", "remote.example")
    assert routing.is_double_bounce("double-bounce@mx.example.test")
    assert routing.is_double_bounce("Double-Bounce")
    assert not routing.is_double_bounce("double-bounce@remote.example")


def test_routing_classes_and_relayhost(qdir: Path) -> None:
    """relay_domains go to relay_transport, the rest to default_transport; relayhost replaces the domain
    as next hop for both unless the transport names its own; transport_maps override all of it."""
    cfg = make_config(qdir, relay_domains="inside.example", relayhost="[smarthost.example]:587",
                      transport_maps="inline:{ {x.example=smtp:}, {y.example=:[y.gw]}, {z.example=:} }")
    routing = routing_from_config(cfg)
    assert routing.route("a@inside.example") == ("relay", "[smarthost.example]:587")
    assert routing.route("a@sub.inside.example") == ("relay", "[smarthost.example]:587")
    assert routing.route("a@outside.example") == ("smtp", "[smarthost.example]:587")
    assert routing.route("a@mx.example.test") == ("local", "mx.example.test")
    # transport(5): a transport with an empty next hop means the recipient domain, not relayhost;
    # an empty transport keeps the class's; both empty keep both.
    assert routing.route("a@x.example") == ("smtp", "x.example")
    assert routing.route("a@y.example") == ("smtp", "[y.gw]")
    assert routing.route("a@z.example") == ("smtp", "[smarthost.example]:587")
    own = routing_from_config(make_config(qdir, relay_domains="inside.example", relayhost="[smarthost.example]",
                                          relay_transport="relay:[mail.internal]:2525",
                                          default_transport="error:5.7.1 outbound mail is disabled"))
    assert own.route("a@inside.example") == ("relay", "[mail.internal]:2525")
    assert own.route("a@outside.example") == ("error", "5.7.1 outbound mail is disabled")
    assert routing_from_config(make_config(qdir)).route("a@inside.example") == ("smtp", "inside.example")


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
    msg = load(qdir, "a@example.test", "b@example.test", "c@example.test", "d@localhost", "e@remote.example",
               "f@Remote.Example")
    jobs = jobs_plan(qdir, msg, routing_from_config(cfg), TransportLimits(cfg), DeadTransports(60))
    assert [(j.transport, j.nexthop, j.key, [r.address for r in j.recipients]) for j in jobs] == [
        ("local", "example.test", "local:example.test", ["a@example.test", "b@example.test"]),
        ("local", "example.test", "local:example.test", ["c@example.test"]),
        ("local", "localhost", "local:localhost", ["d@localhost"]),
        ("smtp", "remote.example", "smtp:remote.example", ["e@remote.example", "f@Remote.Example"]),
    ]
    assert not bounce_log.log_read(qdir, bounce_log.DEFER, msg.queue_id)


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
    assert dead.status("local") is None


def test_dead_transport_expires() -> None:
    dead = DeadTransports(0.05)
    dead.throttle("local", "x")
    assert dead.status("local") == ("4.3.0", "x")
    time.sleep(0.06)
    assert dead.status("local") is None


def test_unreachable_agent_throttles_transport(qdir: Path) -> None:
    msg = load(qdir, "a@example.test")
    dead = DeadTransports(60)
    job_deliver(qdir, DeliveryJob(msg, "local", "example.test", "k", 2, msg.envelope.pending()), dead, 5)
    assert dead.status("local") == ("4.3.0", "delivery temporarily suspended: connect to local: No such file or directory")
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


def test_hop_failure_marks_the_destination_dead(qdir: Path, agent: FakeAgent,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply with hop_status kills that destination for minimal_backoff_time; others still go."""
    replies: list[dict[str, object]] = []
    monkeypatch.setattr(deliver.clients, "deliver_request", lambda qd, transport, request, timeout: replies.pop(0))
    cfg = make_config(qdir)
    routing, limits, dead = routing_from_config(cfg), TransportLimits(cfg), DeadTransports(60, 0.3)
    msg = load(qdir, "a@down.example", "b@down.example")
    [job] = jobs_plan(qdir, msg, routing, limits, dead)
    reason = "connect to mx.down.example[127.0.0.9]:25: Connection refused"
    replies.append({"status": 0, "hop_status": {"dsn": "4.4.1", "reason": reason}, "recipients": [
        {"address": r.address, "offset": r.offset, "status": 4, "dsn": "4.4.1", "reason": reason}
        for r in job.recipients]})
    assert job_deliver(qdir, job, dead, 5) is False
    assert dead.status("smtp:down.example") == ("4.4.1", f"delivery temporarily suspended: {reason}")
    # New mail for the dead destination is deferred without a request; another destination is planned.
    other = load(qdir, "c@down.example", "d@up.example")
    jobs = jobs_plan(qdir, other, routing, limits, dead)
    assert [(j.key, [r.address for r in j.recipients]) for j in jobs] == [("smtp:up.example", ["d@up.example"])]
    [record] = bounce_log.log_read(qdir, bounce_log.DEFER, other.queue_id)
    assert (record.recipient, record.dsn) == ("c@down.example", "4.4.1")
    assert record.reason.startswith("delivery temporarily suspended: connect to mx.down.example")
    # A request already waiting for the destination is deferred when its turn comes, without a request.
    assert job_deliver(qdir, DeliveryJob(other, "smtp", "down.example", "smtp:down.example", 20,
                                         other.envelope.pending()[:0]), dead, 5) is False
    time.sleep(0.35)  # minimal_backoff_time passed: the destination is tried again
    assert dead.status("smtp:down.example") is None
    replies.append({"status": 0, "recipients": [{"address": "c@down.example", "offset": job.recipients[0].offset,
                                                 "status": 0, "dsn": "2.0.0", "reason": "250 ok"}]})
    again = load(qdir, "c@down.example")
    [job2] = jobs_plan(qdir, again, routing, limits, dead)
    replies[-1]["recipients"][0]["offset"] = job2.recipients[0].offset  # type: ignore[index]
    assert job_deliver(qdir, job2, dead, 5) is True
    assert again.envelope.pending() == []


@pytest.mark.parametrize("healthy", [True, False])
def test_dispatcher_slow_start(qdir: Path, monkeypatch: pytest.MonkeyPatch, healthy: bool) -> None:
    """A destination starts at initial_destination_concurrency and widens by one after as many healthy
    deliveries as its window, up to its limit; deliveries that find it dead do not widen it."""
    lock = threading.Lock()
    running = [0]
    seen: list[int] = []

    def fake_deliver(queue_dir: Path, job: DeliveryJob, dead: DeadTransports, timeout: float) -> bool:
        with lock:
            running[0] += 1
            seen.append(running[0])
        time.sleep(0.03)
        with lock:
            running[0] -= 1
        return healthy

    monkeypatch.setattr(deliver, "job_deliver", fake_deliver)
    dispatcher = Dispatcher(qdir, 50, DeadTransports(60), lambda job: None)
    msg = load(qdir, "a@example.test")
    dispatcher.submit([DeliveryJob(msg, "smtp", "x", "smtp:x", 4, [], initial=1) for _ in range(16)])
    assert dispatcher.join(10)
    if healthy:
        # window 1 (1 job), 2 (2 jobs), 3 (3 jobs), then 4 for the rest
        assert seen[0] == 1 and max(seen[:3]) <= 2 and max(seen) == 4
    else:
        assert max(seen) == 1
    assert dispatcher._window == {}  # forgotten once the destination has nothing left
