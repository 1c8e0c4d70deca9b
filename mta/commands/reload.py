"""mta reload: make the running master re-read main.cf and master.cf.

The configuration is checked first: when main.cf or master.cf does not parse,
or mail_owner or setgid_group is wrong, the error is reported with file and
line and the master is not signalled. Otherwise SIGHUP tells the master to
reload: listeners whose address is unchanged stay open, removed services are
closed, new ones opened, and the processes of changed services exit once their
current client is done, so no session in progress is dropped.
"""

from __future__ import annotations

import argparse
import signal

from mta import log
from mta.master.check import config_load
from mta.master.control import master_pid, master_signal, superuser_require

SUMMARY = "re-read the configuration files of the running mail system"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options besides the common -c and -v."""


def run(args: argparse.Namespace) -> int:
    """Check the configuration, then SIGHUP the master; 1 when it is not running."""
    superuser_require("reload")
    mc = config_load(args.config_dir)
    pid = master_pid(mc.queue_dir)
    if pid is None:
        log.msg_fatal("the mail system is not running")
        return 1
    log.msg_info("refreshing the mail system")
    master_signal(pid, signal.SIGHUP)
    return 0
