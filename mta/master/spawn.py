"""Fork a daemon process for a service: signals blocked across fork, descriptors closed, then the skeleton.

Children are forked from the master without exec (docs/mail-path.md). All signals
are blocked around fork(): a signal that reached the child before it reset the
master's handlers would be written to the master's self-pipe, which the child
shares, and the master would act on it (a SIGTERM meant for one child would stop
the whole mail system). The child resets the handlers, closes every descriptor
but its listeners, its status pipe, its lifeline and the mail log, and then
mta.skeleton.run_daemon unblocks signals once its own SIGTERM handler is in place.
"""

from __future__ import annotations

import gc
import os
import signal
from typing import Iterable, Sequence

from mta import log
from mta.config import MainConfig
from mta.service_table import ServiceRow
from mta.skeleton import run_daemon

# Signals the master handles; a child starts with the default action for each.
MASTER_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGINT)


def fds_close(keep: Iterable[int]) -> None:
    """Close every descriptor from 3 up except those in keep (0, 1 and 2 stay open)."""
    low = 3
    for fd in sorted(fd for fd in set(keep) if fd >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def child_spawn(row: ServiceRow, cfg: MainConfig, listen_fds: Sequence[int], status_fd: int,
                lifeline_fd: int, maillog_fd: int | None) -> int:
    """Fork a process that runs the row's daemon; return its pid (in the master).

    + row, cfg: the service and main.cf with its -o overrides.
    + listen_fds, status_fd, lifeline_fd, maillog_fd: the descriptors the child keeps
      (see mta.skeleton.run_daemon).

    Raises OSError when fork() fails.
    """
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        return pid
    status = 1
    try:
        # The master's objects stay referenced by its stack frames, which this
        # process never returns to; freezing the collector keeps it from finalising
        # any of them (a socket closed here would close a reused descriptor).
        gc.freeze()
        signal.set_wakeup_fd(-1)
        for sig in MASTER_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        keep = [*listen_fds, status_fd, lifeline_fd]
        if maillog_fd is not None:
            keep.append(maillog_fd)
        fds_close(keep)
        status = run_daemon(row, cfg, listen_fds, status_fd, lifeline_fd=lifeline_fd,
                            maillog_fd=maillog_fd)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - a child must never return into the master's loop
        log.msg_fatal(f"daemon start-up: {type(exc).__name__}: {exc}")
        status = 1
    finally:
        os._exit(status)
