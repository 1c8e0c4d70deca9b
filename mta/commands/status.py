"""mta status: report whether the mail system is running, and the master's pid.

Prints "the mail system is running: PID: N" and exits 0, or "the mail system
is not running" and exits 1. A pid file left behind by a master that was
killed does not count: only a live master holds its lock.
"""

from __future__ import annotations

import argparse

from mta import log
from mta.master.control import master_pid, queue_dir_find

SUMMARY = "report whether the mail system is running"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options besides the common -c and -v."""


def run(args: argparse.Namespace) -> int:
    """0 and the pid when a master runs, else 1."""
    pid = master_pid(queue_dir_find(args.config_dir))
    if pid is None:
        log.msg_info("the mail system is not running")
        return 1
    log.msg_info(f"the mail system is running: PID: {pid}")
    return 0
