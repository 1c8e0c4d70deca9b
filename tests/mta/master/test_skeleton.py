"""Finding daemons for master.cf commands (the process side is exercised through real masters)."""

from __future__ import annotations

import os
import sys

import pytest

from mta.skeleton import (
    DaemonError,
    chroot_check,
    daemon_available,
    daemon_load,
    daemon_module,
    daemon_preload,
    process_name,
    process_title,
)
from tests.mta.master import daemons


@pytest.mark.parametrize("command, module, name", [
    ("smtpd", ("mta.smtpd", None), "smtpd"),
    ("/usr/lib/postfix/sbin/qmgr", ("mta.qmgr", None), "qmgr"),
    ("tests.mta.master.daemons:echo", ("tests.mta.master.daemons", "echo"), "echo"),
    ("tests.mta.master.daemons", ("tests.mta.master.daemons", None), "daemons"),
])
def test_daemon_module_and_name(command: str, module: tuple[str, str | None], name: str) -> None:
    assert daemon_module(command) == module
    assert process_name(command) == name


def test_availability() -> None:
    assert daemon_module("trivial-rewrite") is None
    assert not daemon_available("trivial-rewrite")
    assert not daemon_available("no.such.module")
    assert daemon_available("tests.mta.master.daemons:echo")


def test_load() -> None:
    assert daemon_load("tests.mta.master.daemons:recorder") is daemons.Recorder
    with pytest.raises(DaemonError, match="module tests.mta.master.daemons has no daemon nosuch"):
        daemon_load("tests.mta.master.daemons:nosuch")
    with pytest.raises(DaemonError, match="import no.such.module: ModuleNotFoundError"):
        daemon_load("no.such.module")
    with pytest.raises(DaemonError, match="command lmtp is not available in this MTA"):
        daemon_load("lmtp")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/PID/comm is Linux's")
def test_process_title() -> None:
    pid = os.fork()
    if pid == 0:
        try:
            process_title("trivial-rewrite-long")
            with open("/proc/self/comm") as comm:
                os._exit(0 if comm.read().strip() == "trivial-rewrite" else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_preload_imports_table_types() -> None:
    for name in ("mta.maps.cidr", "mta.maps.regexp"):
        sys.modules.pop(name, None)
    daemon_preload(["smtpd"])
    assert "mta.maps.cidr" in sys.modules and "mta.maps.regexp" in sys.modules and "mta.smtpd" in sys.modules


def test_local_refuses_a_chroot_row() -> None:
    from mta import local
    from mta.service_table import row_parse

    with pytest.raises(DaemonError, match="local: refusing to run chrooted: set the chroot column of service "
                                          "local to n"):
        chroot_check(local, row_parse("local unix - n y - - local", "master.cf", 1, "3.6"))
    chroot_check(local, row_parse("local unix - n n - - local", "master.cf", 1, "3.6"))
    from mta import smtpd
    chroot_check(smtpd, row_parse("smtp inet n - y - - smtpd", "master.cf", 1, "3.6"))
