"""mta stop: stop the mail system, letting work in progress finish.

Sends SIGTERM to the master, which stops accepting connections and asks every
process to exit once its current client is done; the master waits up to 30
seconds, kills what is left, removes its pid file and exits. This command waits
for that (--timeout, default 40 s) and then, as ``postfix stop`` does, kills the
master's whole process group with SIGKILL.
"""

from __future__ import annotations

import argparse
import signal

from mta import log
from mta.master.control import (
    master_kill,
    master_pid,
    master_signal,
    master_wait,
    queue_dir_find,
    superuser_require,
)

SUMMARY = "stop the mail system"
DEFAULT_TIMEOUT = 40.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--timeout: how long to wait for the master before killing its process group."""
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"wait this long for the master to exit (default {DEFAULT_TIMEOUT:.0f})")


def run(args: argparse.Namespace) -> int:
    """Signal the master and wait for it; 1 when it was not running."""
    superuser_require("stop")
    queue_dir = queue_dir_find(args.config_dir)
    pid = master_pid(queue_dir)
    if pid is None:
        log.msg_fatal("the mail system is not running")
        return 1
    log.msg_info("stopping the mail system")
    master_signal(pid, signal.SIGTERM)
    if not master_wait(queue_dir, args.timeout):
        log.msg_warn(f"the master (pid {pid}) did not stop within {args.timeout:g}s; "
                     "killing its process group")
        master_kill(queue_dir, pid)
    return 0
