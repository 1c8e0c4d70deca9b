"""The master process: opens every service's listener, forks and watches its processes, reloads, stops.

SECURITY. The master runs as root and is never chrooted: it binds the inet
listeners (port 25 needs root), creates the unix sockets owned by mail_owner,
and forks the children, which chroot and drop to mail_owner themselves before
they touch client data (mta.skeleton). The master reads no client data at all: it
only learns that a listener is readable, and takes 5-byte status records from the
pipes of its own children, which count only for pids it forked. It trusts main.cf
and master.cf, which must be writable by root alone (reference §11.3), opens
maillog_file only under maillog_file_prefixes, and reduces its environment to
import_environment before the first child is forked.

EVENTS. One thread, one selectors loop. Signals arrive through a self-pipe
(signal.set_wakeup_fd): SIGHUP reloads, SIGTERM and SIGINT stop, SIGCHLD reaps.
Timers (wakeups, throttle ends, the stop deadline) bound each wait, and no wait
is longer than a second.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
import traceback
from pathlib import Path

from mta import __version__, log
from mta.config import MainConfig, environment_select
from mta.errors import MtaError
from mta.master.check import MasterConfig, config_load, queue_access_warnings, rows_runnable
from mta.master.listen import listener_key, listener_open
from mta.master.pidfile import pidfile_lock, pidfile_remove
from mta.master.service import Service, exit_text, service_cfg, service_fingerprint
from mta.master.spawn import MASTER_SIGNALS
from mta.service_table import ServiceRow
from mta.skeleton import daemon_preload, process_title

STOP_TIMEOUT = 30.0  # seconds children get to finish their clients on stop
TICK = 1.0  # the longest the loop waits


def environment_clean(cfg_import: list[str], config_dir: Path) -> None:
    """Keep only import_environment's variables (NAME keeps, NAME=VALUE sets) and MAIL_CONFIG."""
    keep = environment_select(cfg_import)
    keep["MAIL_CONFIG"] = str(config_dir)
    os.environ.clear()
    os.environ.update(keep)


class Master:
    """The running master: its configuration, services, retired children and event loop.

    + config_dir: the configuration directory (main.cf, master.cf).
    """

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.services: dict[tuple[object, ...], Service] = {}
        self.retired: dict[int, str] = {}  # pid -> log tag of children that no longer count
        self.warned: set[str] = set()
        self.sel = selectors.DefaultSelector()
        self.maillog_fd: int | None = None
        self.pid_fd = -1
        self.stopping = False
        self.stop_deadline = 0.0

    # -- start ---------------------------------------------------------------

    def start(self) -> None:
        """Lock the pid file, open the mail log and every listener; raise MtaError or OSError on failure."""
        self.mc: MasterConfig = config_load(self.config_dir)
        environment_clean(self.mc.cfg.get_list("import_environment"), self.config_dir)
        self.pid_fd = pidfile_lock(self.mc.queue_dir)
        try:
            if self.mc.maillog_file:
                try:
                    self.maillog_fd = log.maillog_open(self.mc.maillog_file)
                except OSError as exc:
                    raise MtaError(f"open maillog_file {self.mc.maillog_file}: "
                                   f"{os.strerror(exc.errno or 0)}") from None
            log.setup_daemon(log.daemon_tag("master", self.mc.cfg), self.mc.cfg, self.maillog_fd)
            for text in queue_access_warnings(self.mc):
                log.msg_warn(text)
            now = time.monotonic()
            runnable = self._runnable(self.mc)
            for row in runnable:
                cfg = service_cfg(self.mc.cfg, row)
                self._service_add(Service(row, cfg, listener_open(
                    row, cfg, self.mc.queue_dir, self.mc.mail_uid, self.mc.mail_gid), now))
        except BaseException:
            for svc in self.services.values():
                svc.close()
            pidfile_remove(self.mc.queue_dir, self.pid_fd)
            raise
        self.sig_r, sig_w = os.pipe()
        os.set_blocking(self.sig_r, False)
        os.set_blocking(sig_w, False)
        signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        for sig in MASTER_SIGNALS:
            signal.signal(sig, lambda signum, frame: None)
        self.sel.register(self.sig_r, selectors.EVENT_READ, ("signal", None))
        process_title("master")  # ps and /proc/PID/comm name it as Postfix's
        log.msg_info(f"daemon started -- version {__version__}, configuration {self.config_dir}")

    def _runnable(self, mc: MasterConfig) -> list[ServiceRow]:
        """The rows this MTA can run; each disabled row is warned about once per master."""
        runnable, warnings = rows_runnable(mc.rows)
        for text in warnings:
            if text not in self.warned:
                self.warned.add(text)
                log.msg_warn(text)
        daemon_preload([row.command for row in runnable])
        return runnable

    def _service_add(self, svc: Service) -> None:
        self.services[svc.listener.key] = svc
        self.sel.register(svc.status_r, selectors.EVENT_READ, ("status", svc))

    def _service_close(self, svc: Service) -> None:
        """Close a service for good; its children finish their clients and exit."""
        self._listen(svc, False)
        self.sel.unregister(svc.status_r)
        for pid in svc.close():
            self.retired[pid] = svc.tag

    # -- loop ----------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; return the exit status."""
        while True:
            now = time.monotonic()
            if self.stopping:
                if not self.retired:
                    break
                if now >= self.stop_deadline:
                    self._kill_remaining()
                    break
            else:
                self._tick(now)
            for key, _ in self.sel.select(self._timeout(now)):
                self._event(key.data, time.monotonic())
            self._reap(time.monotonic())
        pidfile_remove(self.mc.queue_dir, self.pid_fd)
        return 0

    def _tick(self, now: float) -> None:
        for svc in self.services.values():
            svc.wakeup_due(now)
            if svc.wants_process(now):
                svc.spawn(self.maillog_fd)
            self._listen(svc, svc.wants_listen(now))

    def _timeout(self, now: float) -> float:
        deadlines = [d for d in (svc.deadline(now) for svc in self.services.values()) if d is not None]
        if self.stopping:
            deadlines.append(self.stop_deadline)
        return max(0.0, min([now + TICK, *deadlines]) - now)

    def _listen(self, svc: Service, want: bool) -> None:
        """Watch or stop watching a service's listening sockets."""
        want = want and not self.stopping
        if want == svc.listening:
            return
        for sock in svc.listener.socks:
            if want:
                self.sel.register(sock, selectors.EVENT_READ, ("listen", svc))
            else:
                self.sel.unregister(sock)
        svc.listening = want

    def _event(self, data: tuple[str, Service | None], now: float) -> None:
        kind, svc = data
        if kind == "signal":
            self._signals(now)
        elif svc is None or svc.listener.key not in self.services:
            return  # closed earlier in this round
        elif kind == "status":
            svc.status_read(now)
            self._listen(svc, svc.wants_listen(now))
        elif kind == "listen" and svc.wants_listen(now):
            # A client waits and no process is idle: fork one, then stop
            # watching until it reports busy (it counts as idle until then).
            svc.spawn(self.maillog_fd)
            self._listen(svc, svc.wants_listen(now))

    def _signals(self, now: float) -> None:
        try:
            received = os.read(self.sig_r, 512)
        except BlockingIOError:
            return
        for signum in received:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._stop(signum, now)
            elif signum == signal.SIGHUP and not self.stopping:
                self.reload(now)

    def _reap(self, now: float) -> None:
        """Collect every exited child; account it to its service or log it as retired."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            owner = next((svc for svc in self.services.values() if pid in svc.children), None)
            if owner is not None:
                owner.child_exit(pid, status, now)
                self._listen(owner, owner.wants_listen(now))
                continue
            tag = self.retired.pop(pid, "mta/unknown")
            expected = os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGTERM, signal.SIGKILL)
            text = exit_text(status)
            if text is not None and not expected:
                log.msg_warn(f"process {tag} pid {pid} {text}")

    # -- stop ----------------------------------------------------------------

    def _stop(self, signum: int, now: float) -> None:
        """Stop accepting, let children finish their clients (SIGTERM), then exit."""
        if self.stopping:
            return
        log.msg_info(f"terminating on signal {signum}")
        self.stopping = True
        self.stop_deadline = now + STOP_TIMEOUT
        for svc in list(self.services.values()):
            self._service_close(svc)
        self.services.clear()
        for pid in self.retired:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _kill_remaining(self) -> None:
        log.msg_warn(f"{len(self.retired)} process(es) still running after {STOP_TIMEOUT:.0f}s; "
                     "sending SIGKILL")
        for pid in list(self.retired):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.retired.clear()

    def abort(self) -> None:
        """After a fatal error in the loop: SIGTERM every child and remove the pid file."""
        pids = list(self.retired) + [pid for svc in self.services.values() for pid in svc.children]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        pidfile_remove(self.mc.queue_dir, self.pid_fd)

    # -- reload --------------------------------------------------------------

    def reload(self, now: float) -> None:
        """Re-read main.cf and master.cf; keep unchanged listeners, retire changed services' children.

        Sessions in progress continue in their processes, which exit once idle;
        new processes get the new configuration. A configuration that does not
        load is logged and the running one stays in force.
        """
        try:
            mc = config_load(self.config_dir)
            if mc.queue_dir != self.mc.queue_dir:
                raise MtaError(f"queue_directory changed from {self.mc.queue_dir} to {mc.queue_dir}; "
                               "stop and start the mail system instead")
        except MtaError as exc:
            log.msg_error(f"reload failed: {exc}; keeping the running configuration")
            return
        log.msg_info(f"reload -- version {__version__}, configuration {self.config_dir}")
        if mc.maillog_file != self.mc.maillog_file:
            log.msg_warn("maillog_file changed: this takes effect after stop and start")
        wanted: dict[tuple[object, ...], tuple[ServiceRow, MainConfig]] = {}
        for row in self._runnable(mc):
            cfg = service_cfg(mc.cfg, row)
            try:
                wanted[listener_key(row, cfg, mc.queue_dir)] = (row, cfg)
            except MtaError as exc:
                log.msg_error(f"{exc}; service {row.name_type} disabled")
        for key, svc in list(self.services.items()):
            if key not in wanted:
                self._service_close(svc)
                del self.services[key]
        for key, (row, cfg) in wanted.items():
            kept = self.services.get(key)
            if kept is None:
                try:
                    listener = listener_open(row, cfg, mc.queue_dir, mc.mail_uid, mc.mail_gid)
                except MtaError as exc:
                    log.msg_error(f"{exc}; service {row.name_type} disabled")
                    continue
                self._service_add(Service(row, cfg, listener, now))
            elif kept.fingerprint != service_fingerprint(row, cfg):
                for pid in kept.retire():
                    self.retired[pid] = kept.tag
                kept.configure(row, cfg, now)
        self.mc = mc


def _ready(fd: int, text: str) -> None:
    """Tell the waiting ``mta start`` how start-up went, and let go of its pipe."""
    if fd < 0:
        return
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    except OSError:
        pass
    os.close(fd)


def master_main(config_dir: Path, ready_fd: int = -1) -> int:
    """Run the master in this (already detached) process; return its exit status.

    + config_dir: the configuration directory.
    + ready_fd: a pipe to ``mta start``: ``ok`` once every listener is open, or
      ``error: REASON`` when start-up failed.
    """
    master = Master(config_dir)
    try:
        master.start()
    except (MtaError, OSError) as exc:
        reason = str(exc) if isinstance(exc, MtaError) else f"{exc.filename or 'start'}: {exc.strerror}"
        log.msg_fatal(reason)
        _ready(ready_fd, f"error: {reason}")
        return 1
    _ready(ready_fd, "ok")
    try:
        return master.run()
    except Exception as exc:  # noqa: BLE001 - a broken invariant: say so, then let the children go
        log.msg_panic(f"{type(exc).__name__}: {exc}")
        for frame in traceback.extract_tb(exc.__traceback__):
            log.msg_error(f"traceback: {frame.filename}, line {frame.lineno}, in {frame.name}")
        master.abort()
        return 1
