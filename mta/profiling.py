"""Development aid: profile a daemon process with cProfile when MTA_PROFILE_DIR is set.

Set MTA_PROFILE_DIR in the master's environment and list it in main.cf's
import_environment (the master keeps nothing else), e.g.

    import_environment = MAIL_CONFIG TZ LANG=C MTA_PROFILE_DIR=/var/tmp/prof

Every daemon process then writes DIR/SERVICE.PID.prof when it exits normally,
timed by the CPU time of each thread (MTA_PROFILE_CLOCK=wall times by the clock,
which shows where a process waits),
readable with ``python -m pstats``. Threads a daemon starts (qmgr's delivery
threads) are profiled too, each with its own profiler, and merged into the same
file. The file is opened before chroot and the privilege drop, so DIR only has to
be writable by root. Profiling slows a daemon down several times; it is for
finding where the time goes, never for production.
"""

from __future__ import annotations

import cProfile
import marshal
import os
import pstats
import threading
import time
from typing import Any, Callable

ENV = "MTA_PROFILE_DIR"
CLOCK_ENV = "MTA_PROFILE_CLOCK"


class _Collector:
    """The profilers of one process: the main thread's and every other thread's."""

    def __init__(self, fd: int, wall: bool) -> None:
        self.fd = fd
        self.timer = time.perf_counter if wall else time.thread_time
        self.main = cProfile.Profile(self.timer)
        self.threads: list[cProfile.Profile] = []  # finished or still running (read as they are)
        self.lock = threading.Lock()

    def thread_wrap(self, run: Callable[[Any], None]) -> Callable[[Any], None]:
        collector = self

        def profiled_run(thread: Any) -> None:
            prof = cProfile.Profile(collector.timer)
            with collector.lock:
                collector.threads.append(prof)
            prof.enable()
            try:
                run(thread)
            finally:
                prof.disable()

        return profiled_run

    def finish(self) -> None:
        self.main.disable()
        stats = pstats.Stats(self.main)
        with self.lock:
            for prof in self.threads:
                stats.add(prof)
        with os.fdopen(self.fd, "wb") as out:
            marshal.dump(stats.stats, out)  # type: ignore[attr-defined]


def profile_start(service: str) -> Callable[[], None] | None:
    """Start profiling this process when MTA_PROFILE_DIR is set; return the function that saves it.

    + service: the master.cf service name, the first part of the file name.
    Returns None when profiling is off or the file cannot be created.
    """
    directory = os.environ.get(ENV)
    if not directory:
        return None
    name = os.path.join(directory, f"{service.replace('/', '_')}.{os.getpid()}.prof")
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    collector = _Collector(fd, os.environ.get(CLOCK_ENV) == "wall")
    threading.Thread.run = collector.thread_wrap(threading.Thread.run)  # type: ignore[method-assign,assignment]
    collector.main.enable()
    return collector.finish
