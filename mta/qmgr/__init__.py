"""qmgr: the queue manager daemon: moves mail into the active queue, dispatches it, retries and bounces.

Trigger server (SERVER = "trigger"), following the daemon CONTRACT in
mta.skeleton. post_init() starts a scheduler thread that owns the scanning
and the active queue; delivery requests run in worker threads
(mta.qmgr.deliver). Trigger bytes, as Postfix's qmgr(8):

    I   scan incoming/
    D   scan deferred/ (files whose retry time has come)
    A   scan deferred/ ignoring retry times (flush)
    F   forget dead transports
    W   wakeup: scan incoming/, and deferred/ when queue_run_delay has passed

Besides triggers, the scheduler scans deferred/ itself every queue_run_delay.
At start-up, files left in active/ by a crash are moved back to incoming/ and
delivered again, except for the recipients already marked done. On a normal
exit (pre_exit) no new message enters active/ and deliveries in flight get up
to STOP_TIMEOUT seconds to finish; whatever is still in active/ then is
recovered at the next start.

SECURITY. qmgr runs as mail_owner and is not chrooted (as in Debian's
master.cf); it never runs user-supplied code. It trusts a queue file only
after record_parse() accepted it (a file it cannot parse is quarantined in
corrupt/), and it trusts delivery agents' replies only as far as their
per-recipient status: unknown status values become temporary failures.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mta import log, queue
from mta.config import MainConfig
from mta.qmgr.active import ActiveMessage, active_close, active_enter, active_load, active_recover
from mta.qmgr.defer import (
    Notifier,
    RetryPolicy,
    defer_finish,
    notifier_from_config,
    policy_from_config,
)
from mta.qmgr.deliver import (
    DeadTransports,
    DeliveryJob,
    Dispatcher,
    Routing,
    TransportLimits,
    jobs_plan,
    routing_from_config,
)
from mta.qmgr.scan import Scanner
from mta.skeleton import DaemonContext

SERVER = "trigger"
TRIGGERS = frozenset(b"IDAFW")
# How long pre_exit() lets deliveries in flight finish; the master waits 30 s
# for its children on stop before it kills them.
STOP_TIMEOUT = 25.0


class Qmgr:
    """The queue manager for one queue directory.

    + queue_dir: the queue directory as this process sees it.
    + cfg: main.cf with the service's overrides; read once, here.
    Call start() (or drive pass_run() directly in tests), trigger() for
    trigger bytes, stop() to shut down.
    """

    def __init__(self, queue_dir: Path, cfg: MainConfig, routing: Routing | None = None) -> None:
        self.queue_dir = Path(queue_dir)
        self.active_limit = cfg.get_int("qmgr_message_active_limit", minimum=1)
        self.queue_run_delay = cfg.get_time("queue_run_delay", minimum=1)
        self.policy: RetryPolicy = policy_from_config(cfg)
        self.routing: Routing = routing or routing_from_config(cfg)  # tables opened before chroot
        self.notifier: Notifier = notifier_from_config(cfg, self.routing)
        self.limits = TransportLimits(cfg)
        self.dead = DeadTransports(cfg.get_time("transport_retry_time", minimum=1),
                                   cfg.get_time("minimal_backoff_time", minimum=1))
        self.dispatcher = Dispatcher(self.queue_dir, self.limits.process_limit, self.dead,
                                     self._job_done, timeout=cfg.get_time("ipc_timeout", minimum=1))
        self.scanner = Scanner(self.queue_dir)
        self._cond = threading.Condition()
        self._flags: set[str] = set()
        self._active: dict[str, ActiveMessage] = {}
        self._wake = False
        self._passing = False
        self._stopping = False
        self._requested = 0
        self._handled = 0
        self._last_deferred_scan = 0.0
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------

    def recover(self) -> list[str]:
        """Move files a crash left in active/ back to incoming/ (before start)."""
        recovered = active_recover(self.queue_dir)
        for queue_id in recovered:
            log.msg_info(f"{queue_id}: requeued from active queue after restart")
        return recovered

    def start(self) -> None:
        """Recover active/, request an incoming and a deferred scan, start the scheduler thread."""
        self.recover()
        self.trigger(b"ID")
        self._thread = threading.Thread(target=self._loop, name="qmgr-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop scheduling and wait (bounded) for deliveries in flight; False on timeout."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
        done = self.dispatcher.join(max(deadline - time.monotonic(), 0.0))
        with self._cond:
            while self._active and time.monotonic() < deadline:
                self._cond.wait(max(deadline - time.monotonic(), 0.01))
            return done and not self._active

    def trigger(self, data: bytes) -> None:
        """Queue trigger bytes for the scheduler; unknown bytes are logged and ignored."""
        with self._cond:
            for byte in data:
                if byte in TRIGGERS:
                    self._flags.add(chr(byte))
                    self._requested += 1
                else:
                    log.msg_warn(f"qmgr: ignoring unknown trigger {bytes([byte])!r}")
            self._wake = True
            self._cond.notify_all()

    # -- scheduling ----------------------------------------------------------

    def pass_run(self) -> int:
        """One scheduler step: act on pending triggers and timers, then fill the active queue.

        Returns the number of messages moved into active/.
        """
        now = time.time()
        with self._cond:
            flags, self._flags = self._flags, set()
            requested, self._wake = self._requested, False
            self._passing = True
        try:
            if "F" in flags:
                self.dead.forget()
            if "I" in flags or "W" in flags:
                self.scanner.scan_incoming()
            if "A" in flags or "D" in flags or now - self._last_deferred_scan >= self.queue_run_delay:
                self.scanner.scan_deferred(now, ignore_time="A" in flags)
                self._last_deferred_scan = now
            moved = self._feed()
        finally:
            with self._cond:
                self._handled = max(self._handled, requested)
                self._passing = False
                self._cond.notify_all()
        return moved

    def _feed(self) -> int:
        """Move candidates into active/ while it holds fewer than qmgr_message_active_limit."""
        moved = 0
        while True:
            with self._cond:
                if self._stopping or len(self._active) >= self.active_limit:
                    return moved
            selected = self.scanner.select()
            if selected is None:
                return moved
            source, queue_id = selected
            if not active_enter(self.queue_dir, source, queue_id):
                continue
            moved += 1
            self._message_start(queue_id)

    def _message_start(self, queue_id: str) -> None:
        msg = active_load(self.queue_dir, queue_id)
        if msg is None:
            return
        with self._cond:
            self._active[queue_id] = msg
        jobs: list[DeliveryJob] = []
        try:
            if not msg.forced_expire:
                jobs = jobs_plan(self.queue_dir, msg, self.routing, self.limits, self.dead)
        except Exception as exc:  # noqa: BLE001 - undecided recipients stay pending and are retried
            log.msg_error(f"{queue_id}: cannot plan delivery: {exc!r}")
            jobs = []
        if not jobs:
            self._message_done(msg)
            return
        with msg.lock:
            msg.outstanding = len(jobs)
        self.dispatcher.submit(jobs)

    def _job_done(self, job: DeliveryJob) -> None:
        """Called in a worker thread when a delivery request has been answered."""
        msg = job.msg
        with msg.lock:
            msg.outstanding -= 1
            last = msg.outstanding == 0
        if last:
            self._message_done(msg)

    def _message_done(self, msg: ActiveMessage) -> None:
        """Finish the pass over msg, then make room in the active queue."""
        try:
            defer_finish(self.queue_dir, msg, self.policy, self.notifier)
        except Exception as exc:  # noqa: BLE001 - the file stays in active/ until the next start
            log.msg_error(f"{msg.queue_id}: cannot finish delivery pass: {exc!r}")
            active_close(msg)
        with self._cond:
            self._active.pop(msg.queue_id, None)
            self._wake = True
            self._cond.notify_all()

    def _loop(self) -> None:
        """The scheduler thread: run a pass, then sleep until a trigger, free room or the timer."""
        while True:
            try:
                self.pass_run()
            except Exception as exc:  # noqa: BLE001 - keep scheduling; the next pass retries
                log.msg_error(f"qmgr: scheduler pass failed: {exc!r}")
                time.sleep(1.0)
            with self._cond:
                while not self._stopping and not self._wake:
                    wait = self._last_deferred_scan + self.queue_run_delay - time.time()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopping:
                    return

    # -- observation ---------------------------------------------------------

    @property
    def active_count(self) -> int:
        """Messages in the active queue now."""
        with self._cond:
            return len(self._active)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every trigger so far is handled, active/ is empty and nothing waits to enter.

        For tests and orderly shutdown; False on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                idle = (self._handled >= self._requested and not self._flags and not self._active
                        and not self._wake and not self._passing)
                if idle and self.scanner.pending == 0:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))


# -- daemon entry points (mta.skeleton CONTRACT) ---------------------------------


def pre_init(ctx: DaemonContext) -> None:
    """Check the configuration before privileges are dropped (a bad value stops the process here)."""
    ctx.state["routing"] = routing_from_config(ctx.cfg)  # transport_maps opened here, outside the jail
    Qmgr(ctx.queue_dir, ctx.cfg, ctx.state["routing"])


def post_init(ctx: DaemonContext) -> None:
    """Make the queue manager (after chroot, so its paths are the jail's), recover active/, start scheduling."""
    qmgr = Qmgr(ctx.queue_dir, ctx.cfg, ctx.state.get("routing"))
    ctx.state["qmgr"] = qmgr
    for name in (queue.INCOMING, queue.ACTIVE, queue.DEFERRED, queue.CORRUPT):
        if not (ctx.queue_dir / name).is_dir():
            log.msg_warn(f"qmgr: queue directory {ctx.queue_dir / name} is missing")
    qmgr.start()


def trigger(data: bytes, ctx: DaemonContext) -> None:
    """Hand trigger bytes from public/qmgr (or the master's wakeup) to the scheduler."""
    qmgr: Qmgr = ctx.state["qmgr"]
    qmgr.trigger(data)


def pre_exit(ctx: DaemonContext) -> None:
    """Stop scheduling and let deliveries in flight finish (bounded by STOP_TIMEOUT)."""
    qmgr: Qmgr | None = ctx.state.get("qmgr")
    if qmgr is not None and not qmgr.stop(STOP_TIMEOUT):
        log.msg_warn(f"qmgr: deliveries still in progress after {STOP_TIMEOUT:.0f}s; "
                     "they are retried after the next start")
