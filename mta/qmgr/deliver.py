"""Delivery dispatch: choose each recipient's transport, then run delivery requests with bounded concurrency.

ROUTING (trivial-rewrite's resolve, then transport(5)). An address is in one
of three classes: local (a bare local part, ``localhost``, or a domain in
mydestination) goes to local_transport; a domain matching relay_domains goes
to relay_transport (``relay``); every other domain to default_transport
(``smtp``). For the two off-host classes the next hop is the transport's own
(``smtp:[relay.example]``), else relayhost, else the recipient domain.
transport_maps then overrides what it lists: keys ``user+ext@domain``,
``user@domain``, ``domain``, ``.parent`` for each parent domain, then ``*``;
values ``transport:nexthop`` as transport(5): an empty transport keeps the
class's transport, an empty next hop with a transport means the recipient
domain (``error:5.1.1 closed`` sends to the error service with that text;
``smtp:[mail.internal]:25`` to the smtp client). The double-bounce address
is discarded as Postfix's qmgr does.

REQUESTS. Recipients of one message are grouped per transport and next hop,
at most ``<transport>_destination_recipient_limit`` per request (Postfix's
local_destination_recipient_limit is 1). A request goes to private/TRANSPORT
through clients.deliver_request; the reply carries one result per recipient.

CONCURRENCY. Requests run at once per destination start at
initial_destination_concurrency and grow by one after as many healthy
deliveries as the current window (Postfix's default feedback, 1/concurrency per
delivery), up to ``<transport>_destination_concurrency_limit``; at most
default_process_limit run in all. The destination is the next hop, or the
recipient itself when the recipient limit is 1 (Postfix's per-recipient
concurrency).

DEAD DESTINATIONS. A transport that cannot be reached is throttled for
transport_retry_time. A destination whose delivery agent reports a hop
failure (``hop_status``: no server of the next hop could be reached, the
name does not resolve) is marked dead for minimal_backoff_time (seed 7.5.1:
"all the email for that domain is assigned a wait time"): its recipients,
including requests already waiting, are deferred without trying
(``delivery temporarily suspended: ...``), so they take no delivery slot
from healthy destinations. An ``F`` trigger (flush) forgets both kinds.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mta import clients, log, proto
from mta.config import MainConfig
from mta.errors import ConfigError, MapError
from mta.maps import Map, open_map
from mta.match_list import DomainList, domain_list
from mta.qmgr.active import ActiveMessage, active_bounce, active_defer, active_sent
from mta.record import Recipient

_DSN_RE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}$")
_DEFAULT_DSN = {proto.OK: "2.0.0", proto.TEMPFAIL: "4.3.0", proto.PERMFAIL: "5.3.0"}
DOUBLE_BOUNCE_DISCARDED = "undeliverable postmaster notification discarded"


@dataclass(frozen=True)
class Routing:
    """Which transport serves an address.

    + local_domains: mydestination entries, lower-cased.
    + local_transport: the transport for them (``local``).
    + double_bounce: the double-bounce local part (double_bounce_sender).
    """

    local_domains: frozenset[str]
    local_transport: str
    double_bounce: str
    transport_maps: tuple[Map, ...] = ()
    recipient_delimiter: str = ""
    relay_domains: DomainList | None = None
    relay_transport: str = "relay"
    default_transport: str = "smtp"
    relayhost: str = ""

    def is_local(self, address: str) -> bool:
        """True for a bare local part, ``localhost``, or a domain in mydestination."""
        local, at, domain = address.rpartition("@")
        if not at:
            return True
        domain = domain.lower().rstrip(".")
        return domain == "localhost" or domain in self.local_domains

    def route(self, address: str) -> tuple[str, str]:
        """(transport, next hop) for address (see ROUTING)."""
        domain = address.rpartition("@")[2].lower().rstrip(".") if "@" in address else ""
        if self.is_local(address):
            transport, nexthop = self.local_transport, domain
        else:
            relayed = self.relay_domains is not None and self.relay_domains.match(domain)
            name, _, own = (self.relay_transport if relayed else self.default_transport).partition(":")
            transport, nexthop = name.strip(), own.strip() or self.relayhost or domain
        found = self._transport_entry(address, domain)
        if found is None:
            return transport, nexthop
        name, _, hop = found.partition(":")
        name, hop = name.strip(), hop.strip()
        if not name:
            return transport, hop or nexthop
        return name, hop or domain

    def _transport_entry(self, address: str, domain: str) -> str | None:
        """The transport_maps value for address (transport(5) search order), or None."""
        if not self.transport_maps:
            return None
        keys = [address]
        local = address.rpartition("@")[0] if "@" in address else address
        for delim in self.recipient_delimiter:
            if delim in local:
                keys.append(local.split(delim, 1)[0] + (f"@{domain}" if domain else ""))
                break
        if domain:
            keys.append(domain)
            labels = domain.split(".")
            keys += ["." + ".".join(labels[i:]) for i in range(1, len(labels))]
        keys.append("*")
        for key in keys:
            for table in self.transport_maps:
                value = table.lookup(key.lower() if table.fold_case else key)
                if value is not None and value.strip():
                    return value.strip()
        return None

    def is_double_bounce(self, address: str) -> bool:
        """True for the local double-bounce address (bare or in a local domain)."""
        local = address.rpartition("@")[0] if "@" in address else address
        return local.lower() == self.double_bounce.lower() and self.is_local(address)


def routing_from_config(cfg: MainConfig) -> Routing:
    """Routing from mydestination, relay_domains, the three class transports, relayhost,
    transport_maps and double_bounce_sender.

    mydestination entries that are lookup tables (``type:name``) are not
    supported yet and are skipped with a warning.
    """
    domains: set[str] = set()
    for entry in cfg.get_list("mydestination"):
        if ":" in entry and not entry.startswith("["):
            log.msg_warn(f"qmgr: mydestination table {entry} is not supported; entry ignored")
            continue
        domains.add(entry.lower().rstrip("."))
    transport = cfg.get("local_transport").partition(":")[0].strip() or "local"
    tables = []
    for spec in cfg.get_list("transport_maps"):
        try:
            tables.append(open_map(spec, cfg))
        except MapError as exc:
            raise ConfigError(f"transport_maps: {exc}", cfg.path) from None
    relay_domains = domain_list(cfg, "relay_domains") if cfg.get_list("relay_domains") else None
    return Routing(frozenset(domains), transport, cfg.get("double_bounce_sender") or "double-bounce",
                   tuple(tables), cfg.get("recipient_delimiter"), relay_domains,
                   cfg.get("relay_transport").strip() or "relay", cfg.get("default_transport").strip() or "smtp",
                   cfg.get("relayhost").strip())


class TransportLimits:
    """Per-transport limits from main.cf, read once per transport name.

    + concurrency(t): ``t_destination_concurrency_limit``, else default_destination_concurrency_limit.
    + recipients(t): ``t_destination_recipient_limit``, else default_destination_recipient_limit.
    + initial: initial_destination_concurrency, where a destination's window starts.
    + process_limit: default_process_limit, the cap on requests in flight.
    """

    def __init__(self, cfg: MainConfig) -> None:
        self._cfg = cfg
        self._cache: dict[str, tuple[int, int]] = {}
        self.process_limit = cfg.get_int("default_process_limit", minimum=1)
        self.initial = cfg.get_int("initial_destination_concurrency", minimum=1)

    def _limits(self, transport: str) -> tuple[int, int]:
        if transport not in self._cache:
            values = []
            for suffix in ("concurrency", "recipient"):
                name = f"{transport}_destination_{suffix}_limit"
                if not self._cfg.get(name):
                    name = f"default_destination_{suffix}_limit"
                values.append(max(self._cfg.get_int(name), 1))
            self._cache[transport] = (values[0], values[1])
        return self._cache[transport]

    def concurrency(self, transport: str) -> int:
        """Requests in flight allowed per destination of transport."""
        return self._limits(transport)[0]

    def recipients(self, transport: str) -> int:
        """Recipients allowed per delivery request to transport."""
        return self._limits(transport)[1]


class DeadTransports:
    """Transports and destinations that failed, remembered for a while (``F`` forgets).

    + retry_time: transport_retry_time, how long a transport that cannot be reached stays dead.
    + backoff: minimal_backoff_time, how long a destination with a hop failure stays dead.
    Keys are transport names (``smtp``) or destination keys (``smtp:example.com``).
    """

    def __init__(self, retry_time: float, backoff: float | None = None) -> None:
        self.retry_time = retry_time
        self.backoff = retry_time if backoff is None else backoff
        self._dead: dict[str, tuple[float, str, str]] = {}
        self._lock = threading.Lock()

    def throttle(self, transport: str, reason: str, dsn: str = "4.3.0") -> None:
        """Mark transport dead for retry_time with the status its recipients are deferred with."""
        with self._lock:
            self._dead[transport] = (time.monotonic() + self.retry_time, dsn, reason)

    def kill(self, destination: str, reason: str, dsn: str = "4.4.1") -> None:
        """Mark a destination dead for backoff seconds."""
        with self._lock:
            self._dead[destination] = (time.monotonic() + self.backoff, dsn, reason)

    def status(self, *keys: str) -> tuple[str, str] | None:
        """(dsn, reason) to defer with while any of keys is dead, else None."""
        with self._lock:
            for key in keys:
                entry = self._dead.get(key)
                if entry is None:
                    continue
                if entry[0] <= time.monotonic():
                    del self._dead[key]
                    continue
                return entry[1], entry[2]
            return None

    def forget(self) -> None:
        """Forget every dead transport and destination (trigger ``F``)."""
        with self._lock:
            self._dead.clear()


@dataclass(eq=False)
class DeliveryJob:
    """One delivery request: some recipients of one message for one transport and destination."""

    msg: ActiveMessage
    transport: str
    nexthop: str
    key: str
    limit: int
    recipients: list[Recipient]
    queued: float = field(default_factory=time.time)
    initial: int = 5


def jobs_plan(queue_dir: Path, msg: ActiveMessage, routing: Routing, limits: TransportLimits,
              dead: DeadTransports) -> list[DeliveryJob]:
    """Delivery requests for msg's pending recipients.

    Recipients that need no request are settled here: the double-bounce
    address is discarded (sent), a dead transport or destination defers.
    """
    groups: dict[tuple[str, str], list[Recipient]] = {}
    for rcpt in msg.envelope.pending():
        if routing.is_double_bounce(rcpt.address):
            active_sent(msg, rcpt, "none", "2.0.0", DOUBLE_BOUNCE_DISCARDED, msg.delays())
            continue
        transport, nexthop = routing.route(rcpt.address)
        found = dead.status(transport, f"{transport}:{nexthop}")
        if found is not None:
            active_defer(queue_dir, msg, rcpt, "none", found[0], found[1], msg.delays())
            continue
        groups.setdefault((transport, nexthop), []).append(rcpt)
    jobs: list[DeliveryJob] = []
    for (transport, nexthop), rcpts in groups.items():
        per_request = limits.recipients(transport)
        for i in range(0, len(rcpts), per_request):
            chunk = rcpts[i:i + per_request]
            where = chunk[0].address.lower() if per_request == 1 else nexthop
            jobs.append(DeliveryJob(msg, transport, nexthop, f"{transport}:{where}",
                                    limits.concurrency(transport), chunk, initial=limits.initial))
    return jobs


def _normalise(result: dict[str, Any]) -> tuple[int, str, str]:
    """(status, dsn, reason) with a status of 0, 4 or 5 and a DSN code of the same class."""
    status = result.get("status")
    if status not in (proto.OK, proto.TEMPFAIL, proto.PERMFAIL):
        status = proto.TEMPFAIL
    dsn = str(result.get("dsn") or "")
    if not _DSN_RE.match(dsn) or dsn[0] != {0: "2", 4: "4", 5: "5"}[status]:
        dsn = _DEFAULT_DSN[status]
    reason = str(result.get("reason") or ("delivered" if status == proto.OK else "unknown mail transport error"))
    return status, dsn, reason


def job_deliver(queue_dir: Path, job: DeliveryJob, dead: DeadTransports, timeout: float) -> bool:
    """Run one delivery request and record each recipient's outcome.

    Returns False when the transport or the destination turned out dead (or
    already was): the dispatcher then does not widen the destination's window.
    """
    msg, transport = job.msg, job.transport
    start = time.time()
    found = dead.status(transport, job.key, f"{transport}:{job.nexthop}")
    if found is not None:
        for rcpt in job.recipients:
            active_defer(queue_dir, msg, rcpt, "none", found[0], found[1], msg.delays(start))
        return False
    request = {
        "queue_name": "active", "queue_id": msg.queue_id, "sender": msg.envelope.sender,
        "arrival": msg.envelope.arrival, "attrs": msg.envelope.attrs, "nexthop": job.nexthop,
        "recipients": [{"address": r.address, "original": r.original, "offset": r.offset}
                       for r in job.recipients],
    }
    try:
        reply = clients.deliver_request(queue_dir, transport, request, timeout=timeout)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        reason = f"delivery temporarily suspended: connect to {transport}: {os.strerror(exc.errno or 0)}"
        dead.throttle(transport, reason)
        for rcpt in job.recipients:
            active_defer(queue_dir, msg, rcpt, "none", "4.3.0", reason, msg.delays(start))
        return False
    except (OSError, proto.ProtocolError) as exc:
        log.msg_warn(f"{msg.queue_id}: delivery request to {transport}: {exc or type(exc).__name__}")
        reply = {"status": proto.TEMPFAIL, "dsn": "4.3.0", "reason": "unknown mail transport error"}
    hop = reply.get("hop_status")
    if isinstance(hop, dict):
        # The next hop itself failed: no server of it could be used. Later
        # requests for it are deferred without trying for minimal_backoff_time.
        dsn = str(hop.get("dsn") or "4.4.1")
        dead.kill(job.key, f"delivery temporarily suspended: {hop.get('reason') or 'destination unreachable'}",
                  dsn if _DSN_RE.match(dsn) and dsn[0] == "4" else "4.4.1")
    reply_apply(queue_dir, job, reply, start, time.time())
    return not isinstance(hop, dict)


def reply_apply(queue_dir: Path, job: DeliveryJob, reply: dict[str, Any], start: float,
                end: float) -> None:
    """Record each recipient's result from a delivery agent's reply.

    Results are matched by file offset, then by address. Without a
    per-recipient list the top-level status applies to all; a recipient the
    list leaves out is deferred.
    """
    msg = job.msg
    results = reply.get("recipients")
    by_offset: dict[int, dict[str, Any]] = {}
    by_address: dict[str, dict[str, Any]] = {}
    if isinstance(results, list):
        for item in results:
            if isinstance(item, dict):
                if isinstance(item.get("offset"), int):
                    by_offset.setdefault(item["offset"], item)
                by_address.setdefault(str(item.get("address", "")), item)
    delays = msg.delays(start, start, end)
    relay = str(reply.get("relay") or job.transport)
    for rcpt in job.recipients:
        if not isinstance(results, list):
            result: dict[str, Any] = reply
        else:
            result = by_offset.get(rcpt.offset) or by_address.get(rcpt.address) or {
                "status": proto.TEMPFAIL, "reason": f"no delivery status from {job.transport}"}
        status, dsn, reason = _normalise(result)
        if status == proto.OK:
            active_sent(msg, rcpt, relay, dsn, reason, delays)
        elif status == proto.PERMFAIL:
            active_bounce(queue_dir, msg, rcpt, relay, dsn, reason, delays)
        else:
            active_defer(queue_dir, msg, rcpt, relay, dsn, reason, delays)


class Dispatcher:
    """Runs delivery jobs in worker threads within per-destination and overall limits.

    + on_done(job) is called in the worker thread after the job's outcomes are recorded.

    Workers are kept between jobs (a thread per request would cost a clone and a
    stack per message); there are never more than process_limit of them, and one
    idle for WORKER_IDLE seconds exits.
    """

    WORKER_IDLE = 60.0

    def __init__(self, queue_dir: Path, process_limit: int, dead: DeadTransports,
                 on_done: Callable[[DeliveryJob], None], timeout: float = 3600.0) -> None:
        self.queue_dir = queue_dir
        self.process_limit = process_limit
        self.dead = dead
        self.timeout = timeout
        self._on_done = on_done
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._work = threading.Condition(self._lock)
        self._waiting: dict[str, deque[DeliveryJob]] = {}
        self._ready: deque[DeliveryJob] = deque()
        self._running: dict[str, int] = {}
        self._window: dict[str, list[int]] = {}  # key -> [concurrency window, healthy deliveries at it]
        self._total = 0
        self._workers = 0
        self._free = 0  # workers not holding a job: waiting, or finishing one (on_done)

    def submit(self, jobs: list[DeliveryJob]) -> None:
        """Queue jobs; they start as soon as their destination and the total have room."""
        with self._lock:
            for job in jobs:
                self._waiting.setdefault(job.key, deque()).append(job)
            self._pump()

    def _pump(self) -> None:
        """Hand every waiting job that fits to a worker (lock held); destinations take turns."""
        for key in list(self._waiting):
            jobs = self._waiting[key]
            window = self._window.setdefault(key, [min(jobs[0].initial, jobs[0].limit) if jobs else 1, 0])
            while jobs and self._total < self.process_limit and self._running.get(key, 0) < window[0]:
                job = jobs.popleft()
                self._running[key] = self._running.get(key, 0) + 1
                self._total += 1
                self._ready.append(job)
                if self._free >= len(self._ready):
                    self._work.notify()
                else:
                    self._workers += 1
                    self._free += 1
                    threading.Thread(target=self._worker, name="qmgr-worker", daemon=True).start()
            if not jobs:
                del self._waiting[key]
                if not self._running.get(key):
                    self._window.pop(key, None)

    def _worker(self) -> None:
        while True:
            with self._lock:
                while not self._ready:
                    if not self._work.wait(self.WORKER_IDLE) and not self._ready:
                        self._free -= 1
                        self._workers -= 1
                        return
                job = self._ready.popleft()
                self._free -= 1
            self._run(job)

    def _run(self, job: DeliveryJob) -> None:
        healthy = False
        try:
            healthy = job_deliver(self.queue_dir, job, self.dead, self.timeout)
        except Exception as exc:  # noqa: BLE001 - a worker must always report back
            log.msg_error(f"{job.msg.queue_id}: delivery to {job.transport} failed: {exc!r}")
        finally:
            with self._lock:
                window = self._window.get(job.key)
                if window is not None and healthy:
                    window[1] += 1
                    if window[1] >= window[0]:
                        window[0], window[1] = min(window[0] + 1, job.limit), 0
                self._running[job.key] -= 1
                if not self._running[job.key]:
                    del self._running[job.key]
                    if job.key not in self._waiting:
                        self._window.pop(job.key, None)
                self._total -= 1
                self._free += 1  # this worker takes the next ready job once on_done returns
                self._pump()
                self._idle.notify_all()
        self._on_done(job)

    @property
    def busy(self) -> int:
        """Jobs running or waiting."""
        with self._lock:
            return self._total + sum(len(q) for q in self._waiting.values())

    def join(self, timeout: float) -> bool:
        """Wait until no job runs or waits; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._total or self._waiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True
