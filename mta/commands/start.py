"""mta start: check the configuration, create the queue directories and start the master in the background.

Like ``postfix start``: the command refuses to run when a master already holds
the pid file (queue_directory/pid/master.pid), checks main.cf and master.cf (a
bad line is reported with file and line), checks mail_owner, default_privs and
setgid_group, creates missing queue directories with Postfix's owners and
modes, and then detaches the master (no init system needed). It returns only
when the master has opened every listener, or prints why it could not and
exits 1. master.cf services whose command this MTA does not have are reported
and left out.
"""

from __future__ import annotations

import argparse

from mta import log
from mta.master.check import config_load, dirs_create, queue_access_warnings, rows_runnable
from mta.master.control import daemonize, master_pid, superuser_require
from mta.master.main import master_main

SUMMARY = "start the mail system"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options besides the common -c and -v."""


def run(args: argparse.Namespace) -> int:
    """Check, create directories, start the master; 0 once it is ready, 1 with the reason otherwise."""
    superuser_require("start")
    mc = config_load(args.config_dir)
    _runnable, warnings = rows_runnable(mc.rows)
    for text in warnings + queue_access_warnings(mc):
        log.msg_warn(text)
    if master_pid(mc.queue_dir) is not None:
        log.msg_fatal("the mail system is already running")
        return 1
    dirs_create(mc)
    log.msg_info("starting the mail system")
    ok, reason = daemonize(lambda ready_fd: master_main(mc.config_dir, ready_fd))
    if not ok:
        log.msg_fatal(reason)
        return 1
    return 0
