"""mta flush: attempt to deliver all queued mail now (like ``postfix flush`` and ``postqueue -f``).

Sends qmgr the trigger bytes Postfix's mail_flush_deferred() sends: F (forget
dead destinations), A (ignore the deferred files' retry times), D (scan
deferred), I (scan incoming); then wakes pickup for the maildrop queue. Fails
when the mail system is not running.
"""

from __future__ import annotations

import argparse

from mta import clients, log
from mta.master.control import master_pid, queue_dir_find

SUMMARY = "flush the queue: deliver deferred mail now"

FLUSH_TRIGGER = b"FADI"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options besides the common -c and -v."""


def run(args: argparse.Namespace) -> int:
    """Trigger qmgr and pickup; 1 when the mail system is down."""
    queue_dir = queue_dir_find(args.config_dir)
    if master_pid(queue_dir) is None or not clients.qmgr_trigger(queue_dir, FLUSH_TRIGGER):
        log.msg_fatal("Cannot flush mail queue - mail system is down")
        return 1
    if (queue_dir / "public" / "pickup").exists() and not clients.pickup_trigger(queue_dir):
        log.msg_fatal("Cannot flush maildrop - mail system is down")
        return 1
    return 0
