"""A throwaway mail system per test: config and queue under tmp_path, the master run as a real process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from mta.master.pidfile import pidfile_owner
from tests.conftest import REPO, wait_for

DAEMONS = "tests.mta.master.daemons"

MAIN_CF = """\
compatibility_level = 3.6
myhostname = test.example
queue_directory = {tmp}/spool
data_directory = {tmp}/data
maillog_file = {tmp}/maillog
maillog_file_prefixes = {tmp}
inet_interfaces = loopback-only
inet_protocols = ipv4
"""


@pytest.fixture(scope="session")
def mail_users() -> None:
    """The postfix user and postdrop group (mail_owner, setgid_group), created when missing."""
    if os.geteuid() != 0:
        pytest.skip("the master tests start a real master and must run as root")
    if subprocess.run(["getent", "group", "postdrop"], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "--system", "postdrop"], check=True)
    if subprocess.run(["getent", "passwd", "postfix"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "postfix"], check=True)


class Instance:
    """One mail system under tmp_path: write its configuration, run ``mta`` commands, read its log."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config_dir = tmp / "etc"
        self.queue_dir = tmp / "spool"
        self.maillog = tmp / "maillog"
        self.config_dir.mkdir()
        self.main_cf = MAIN_CF.format(tmp=tmp)

    def configure(self, master_cf: str, main_extra: str = "") -> None:
        """Write main.cf (defaults above plus main_extra) and master.cf."""
        (self.config_dir / "main.cf").write_text(self.main_cf + main_extra)
        (self.config_dir / "master.cf").write_text(master_cf)

    def mta(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``mta -c CONFIG_DIR ARGS`` (test daemons importable through PYTHONPATH)."""
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("MAIL_CONFIG", None)
        return subprocess.run([sys.executable, "-m", "mta", "-c", str(self.config_dir), *args],
                              capture_output=True, text=True, env=env, timeout=timeout)

    def start(self) -> int:
        """Start the master; return its pid."""
        result = self.mta("start")
        assert result.returncode == 0, result.stderr
        pid = self.pid()
        assert pid is not None
        return pid

    def pid(self) -> int | None:
        """The running master's pid, from the pid file lock."""
        return pidfile_owner(self.queue_dir)

    def log(self) -> str:
        """Everything logged so far."""
        return self.maillog.read_text() if self.maillog.exists() else ""

    def wait_log(self, text: str, timeout: float = 10.0, count: int = 1) -> str:
        """Wait until the log holds text (count times); return the log."""
        wait_for(lambda: self.log().count(text) >= count, timeout, f"{text!r} in the mail log")
        return self.log()

    def processes(self) -> list[psutil.Process]:
        """Every live process of this instance: master and children share its command line."""
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if str(self.config_dir) in (proc.info["cmdline"] or []) and proc.pid != os.getpid():
                found.append(proc)
        return found

    def children(self) -> list[psutil.Process]:
        """The master's live child processes."""
        pid = self.pid()
        if pid is None:
            return []
        try:
            return [c for c in psutil.Process(pid).children() if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []

    def kill_all(self) -> None:
        """SIGKILL every process of this instance (test cleanup, also after a failure)."""
        for proc in self.processes():
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def instance(tmp_path: Path, mail_users: None) -> Iterator[Instance]:
    """A configured-but-not-started mail system; every process it started is killed afterwards."""
    inst = Instance(tmp_path)
    try:
        yield inst
    finally:
        inst.kill_all()
        # Chrooted daemons may leave root-owned files; let pytest clean up the rest.
        shutil.rmtree(inst.queue_dir / "pid", ignore_errors=True)


def connect(port: int, timeout: float = 10.0) -> tuple[socket.socket, str]:
    """Connect to 127.0.0.1:port and read the greeting line (``PID GREETING``)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock, readline(sock)


def readline(sock: socket.socket) -> str:
    """One line from sock, without its newline."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode().rstrip("\n")
