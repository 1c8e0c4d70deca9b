"""One master.cf service in the master: its listener, children, status pipe, lifeline, wakeup timer, throttle.

PROCESS ACCOUNTING (Postfix's master_avail.c). A child counts as idle from the
moment it is forked until it reports busy on the status pipe, and again when it
reports idle. The master listens on a service's sockets only while none of its
children is idle and the service is below maxproc: a readable listener then means
a client is waiting for a process, and one more is forked.

LIFELINE. Each generation of children shares a pipe whose write end only the
master holds. Closing it tells them to exit once idle; that is how a reload
retires the children of a changed service, and how every child notices that the
master is gone.

THROTTLING. A child that exits non-zero or by a signal is a failure. After 3
failures within 10 seconds no new process is forked for 10 seconds (main.cf's
service_throttle_time when it is set), so a daemon that dies at start-up does not
make the master fork in a tight loop.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass

from mta import log
from mta.config import MainConfig
from mta.master.listen import Listener
from mta.master.spawn import child_spawn
from mta.service_table import ServiceRow
from mta.skeleton import process_name
from mta.skeleton_loop import STATUS, STATUS_BUSY

THROTTLE_FAILURES = 3  # failures ...
THROTTLE_WINDOW = 10.0  # ... within this many seconds ...
THROTTLE_TIME = 10  # ... stop forking for this long (service_throttle_time overrides)
LIMIT_WARN_INTERVAL = 60.0  # at most one process-limit warning per service per minute


def service_cfg(cfg: MainConfig, row: ServiceRow) -> MainConfig:
    """main.cf as the row's daemon sees it: its -o overrides, and $service_name and $process_name."""
    names = {"service_name": row.service, "process_name": process_name(row.command)}
    return cfg.with_overrides({**names, **row.overrides})


def service_fingerprint(row: ServiceRow, cfg: MainConfig) -> tuple[object, ...]:
    """Everything a child inherits; children are retired on reload when it changes."""
    main = tuple((d.name, d.value) for d in cfg.parsed.definitions.values())
    return (row.type, row.service, row.private, row.unpriv, row.chroot, row.wakeup,
            row.wakeup_conditional, row.maxproc, row.command, row.args,
            tuple(row.overrides.items()), main)


def exit_text(wait_status: int) -> str | None:
    """``exit status 1`` or ``killed by signal 9`` for an abnormal exit; None for exit status 0."""
    if os.WIFSIGNALED(wait_status):
        return f"killed by signal {os.WTERMSIG(wait_status)}"
    code = os.waitstatus_to_exitcode(wait_status)
    return f"exit status {code}" if code else None


@dataclass
class Child:
    """A process of the current generation: its pid and whether it is serving a client."""

    pid: int
    busy: bool = False


class Service:
    """The master's state for one runnable master.cf row.

    + row, cfg: the service and main.cf with its overrides (see `service_cfg`).
    + listener: its open sockets, kept across reloads while its key is unchanged.
    + now: the current monotonic time, to start the wakeup timer.
    """

    def __init__(self, row: ServiceRow, cfg: MainConfig, listener: Listener, now: float) -> None:
        self.listener = listener
        self.status_r, self.status_w = os.pipe()
        os.set_blocking(self.status_r, False)
        self.lifeline_r, self.lifeline_w = os.pipe()
        self.children: dict[int, Child] = {}
        self._idle = 0  # children with busy False, kept in step with self.children
        self.failures: deque[float] = deque()
        self.throttled_until = 0.0
        self.listening = False
        self._buffer = b""
        self._limit_warned = -LIMIT_WARN_INTERVAL
        self.configure(row, cfg, now)

    def configure(self, row: ServiceRow, cfg: MainConfig, now: float) -> None:
        """Take a (new) row and configuration; the caller retires the old children first."""
        self.row, self.cfg = row, cfg
        self.tag = log.daemon_tag(process_name(row.command), cfg)
        self.fingerprint = service_fingerprint(row, cfg)
        self.throttle_time = cfg.get_time("service_throttle_time", minimum=1) \
            if cfg.is_set("service_throttle_time") else THROTTLE_TIME
        self.used = False
        self.wakeup_next: float | None = None
        if row.wakeup and not row.wakeup_conditional:
            # Postfix's master_wakeup_init(): wake the service at once, then every
            # `wakeup` seconds, so pickup and qmgr look at their queues right after
            # a start or reload instead of a wakeup period later.
            self.wakeup_next = now

    # -- state -------------------------------------------------------------

    @property
    def name(self) -> str:
        """``smtp/inet``, for messages."""
        return self.row.name_type

    def idle(self) -> int:
        """How many children are waiting for a client."""
        return self._idle

    def throttled(self, now: float) -> bool:
        """True while no new process may be forked."""
        return now < self.throttled_until

    def below_limit(self) -> bool:
        """True when maxproc allows one more process (0 is unlimited)."""
        return self.row.maxproc == 0 or len(self.children) < self.row.maxproc

    def wants_listen(self, now: float) -> bool:
        """Watch the listener: no idle child, below maxproc, not throttled."""
        return self.idle() == 0 and self.below_limit() and not self.throttled(now)

    def wants_process(self, now: float) -> bool:
        """A wakeup (trigger) service keeps one process running at all times."""
        return self.row.wakeup > 0 and not self.children and not self.throttled(now)

    # -- children ----------------------------------------------------------

    def spawn(self, maillog_fd: int | None) -> int | None:
        """Fork one more child; None (with a warning) when fork() fails."""
        try:
            pid = child_spawn(self.row, self.cfg, self.listener.fds(), self.status_w,
                              self.lifeline_r, maillog_fd)
        except OSError as exc:
            log.msg_warn(f"{self.tag}: fork: {os.strerror(exc.errno or 0)}")
            return None
        self.child_add(pid)
        return pid

    def child_add(self, pid: int) -> None:
        """Count a new child of this service; it is idle until it reports busy."""
        self.children[pid] = Child(pid)
        self._idle += 1

    def status_read(self, now: float) -> None:
        """Apply the children's busy/idle reports waiting in the status pipe."""
        try:
            while chunk := os.read(self.status_r, 4096):
                self._buffer += chunk
        except BlockingIOError:
            pass
        usable = len(self._buffer) - len(self._buffer) % STATUS.size
        for offset in range(0, usable, STATUS.size):
            pid, state = STATUS.unpack_from(self._buffer, offset)
            child = self.children.get(pid)
            if child is None:
                continue  # a retired child; it no longer counts
            busy = state == STATUS_BUSY
            if busy != child.busy:
                self._idle += -1 if busy else 1
                child.busy = busy
            if busy:
                self._used(now)
        self._buffer = self._buffer[usable:]
        if self.idle() == 0 and not self.below_limit() and self.row.maxproc > 0 and not self.row.wakeup:
            self._limit_warn(now)

    def _used(self, now: float) -> None:
        """The first client arrived: start a conditional ("60?") wakeup timer."""
        if not self.used:
            self.used = True
            if self.row.wakeup and self.wakeup_next is None:
                self.wakeup_next = now + self.row.wakeup

    def _limit_warn(self, now: float) -> None:
        if now - self._limit_warned < LIMIT_WARN_INTERVAL:
            return
        self._limit_warned = now
        log.msg_warn(f'service "{self.row.service}" ({self.listener.label}) has reached its process limit '
                     f'"{self.row.maxproc}": new clients may experience noticeable delays')
        log.msg_warn("to avoid this condition, increase the process count in master.cf "
                     "or reduce the service time per client")

    def child_exit(self, pid: int, wait_status: int, now: float) -> None:
        """Forget an exited child; log and count an abnormal exit, throttling when they pile up."""
        child = self.children.pop(pid, None)
        if child is not None and not child.busy:
            self._idle -= 1
        text = exit_text(wait_status)
        if text is None:
            return
        log.msg_warn(f"process {self.tag} pid {pid} {text}")
        self.failures.append(now)
        while self.failures and self.failures[0] < now - THROTTLE_WINDOW:
            self.failures.popleft()
        if len(self.failures) >= THROTTLE_FAILURES:
            self.failures.clear()
            self.throttled_until = now + self.throttle_time
            log.msg_warn(f"{self.tag}: service throttled: {self.name} failed {THROTTLE_FAILURES} times "
                         f"within {THROTTLE_WINDOW:.0f}s; no new process for {self.throttle_time}s")
            if not self.children:
                self._turn_away()

    def _turn_away(self) -> None:
        """Close the connections waiting on a throttled internal service that has no process left.

        A client of a private service (qmgr asking a delivery agent) would
        otherwise wait for its whole ipc_timeout; closed, it sees end of file
        at once and defers its mail. Internet clients are left to their timeouts.
        """
        if self.listener.key[0] != "unix":
            return
        turned = 0
        for sock in self.listener.socks:
            while turned < 1000:
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError, OSError):
                    break
                conn.close()
                turned += 1
        if turned:
            log.msg_warn(f"{self.tag}: {self.name}: closed {turned} waiting connection(s): service throttled")

    def retire(self) -> list[int]:
        """Tell the current children to exit once idle; return their pids (they no longer count)."""
        os.close(self.lifeline_w)
        os.close(self.lifeline_r)
        self.lifeline_r, self.lifeline_w = os.pipe()
        pids = list(self.children)
        self.children.clear()
        self._idle = 0
        return pids

    def signal_children(self, sig: int) -> None:
        """Send a signal to every current child."""
        for pid in self.children:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    # -- timers --------------------------------------------------------------

    def wakeup_due(self, now: float) -> None:
        """Send b"W" to the service when its wakeup timer has expired, and re-arm it."""
        if self.wakeup_next is None or now < self.wakeup_next:
            return
        if not self.listener.wakeup():
            log.msg_warn(f"{self.tag}: wakeup {self.listener.label}: cannot connect")
        self.wakeup_next = now + self.row.wakeup

    def deadline(self, now: float) -> float | None:
        """The next time this service needs attention (wakeup or end of throttle), if any."""
        times = [t for t in (self.wakeup_next, self.throttled_until) if t is not None and t > now]
        return min(times) if times else None

    def close(self) -> list[int]:
        """Close the listener and pipes; retire and return the children."""
        pids = self.retire()
        self.listener.close()
        for fd in (self.status_r, self.status_w, self.lifeline_r, self.lifeline_w):
            os.close(fd)
        return pids
