"""Fixtures for the SMTP server tests: a real listener on 127.0.0.1 and a fake cleanup service.

The smtpd daemon is driven through its CONTRACT (pre_init, post_init, service)
by a thread that accepts connections one at a time, as a forked smtpd process
would. cleanup is another process in production; here a thread listens on
queue_dir/public/cleanup, records each submission and replies with a queue ID.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import mta.smtpd as smtpd
from mta import proto
from mta.config import load_config
from mta.service_table import row_parse
from mta.skeleton import DaemonContext
from tests.mta.test_derived import INTERFACES

HOSTNAME = "mx.example.test"

# The settings every test starts from; tests add or override lines.
BASE_MAIN_CF = f"""\
compatibility_level = 3.6
myhostname = {HOSTNAME}
mydestination = $myhostname, localhost, example.test
mynetworks = 127.0.0.1/32
relay_domains = relay.example
local_recipient_maps = inline:{{alice=1, bob=1}}
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
inet_interfaces = loopback-only
"""


@dataclass
class Submission:
    """One message cleanup received."""

    sender: str
    recipients: list[str]
    content: bytes
    attrs: dict[str, str]
    flags: list[str] = field(default_factory=list)


@dataclass
class FakeCleanup:
    """A cleanup service double on a unix socket: records submissions, answers with reply()."""

    path: Path
    submissions: list[Submission] = field(default_factory=list)
    reply: Callable[[int], dict[str, Any]] = lambda n: {"status": 0, "queue_id": f"{0xABC000 + n:012X}"}

    def start(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(16)
        self.sock.settimeout(0.02)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            channel = proto.Channel(conn, timeout=10)
            try:
                received = channel.receive()
                if received is None:
                    continue
                message, content = received
                self.submissions.append(Submission(
                    message["sender"], [r["address"] for r in message["recipients"]],
                    content or b"", message["attrs"], message.get("flags", [])))
                channel.send(self.reply(len(self.submissions)))
            finally:
                channel.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


class SmtpdServer:
    """smtpd's service() behind a listening socket on 127.0.0.1, one session at a time."""

    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.02)
        self.port = self.listener.getsockname()[1]
        self.sessions = 0
        self.done = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            try:
                smtpd.service(conn, self.ctx)
            finally:
                with self.done:
                    self.sessions += 1
                    self.done.notify_all()

    def wait_sessions(self, count: int, timeout: float = 10.0) -> None:
        """Wait until count sessions have ended (so their log lines are written)."""
        with self.done:
            assert self.done.wait_for(lambda: self.sessions >= count, timeout), "session did not end"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.listener.close()


@pytest.fixture(autouse=True)
def _mta_log_reaches_caplog(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """cli.main() (other tests) stops the mta logger from propagating; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("mta"), "propagate", True)
    caplog.set_level(logging.INFO, logger="mta")


@pytest.fixture
def queue_dir(tmp_path: Path) -> Path:
    """A queue directory with public/ for the cleanup socket."""
    path = tmp_path / "queue"
    (path / "public").mkdir(parents=True)
    return path


@pytest.fixture
def cleanup(queue_dir: Path) -> Iterator[FakeCleanup]:
    """The fake cleanup service, listening."""
    fake = FakeCleanup(queue_dir / "public" / "cleanup")
    fake.start()
    yield fake
    fake.close()


def make_context(tmp_path: Path, queue_dir: Path, extra: str = "") -> DaemonContext:
    """A DaemonContext for smtpd with BASE_MAIN_CF plus extra lines, after pre_init and post_init."""
    conf = tmp_path / "etc"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text(BASE_MAIN_CF + f"queue_directory = {queue_dir}\n" + extra)
    cfg = load_config(conf, hostname=HOSTNAME, interfaces=INTERFACES)
    ctx = DaemonContext(row_parse("smtp inet n - n - - smtpd"), cfg, queue_dir)
    smtpd.pre_init(ctx)
    smtpd.post_init(ctx)
    return ctx


@pytest.fixture
def start_server(tmp_path: Path, queue_dir: Path) -> Iterator[Callable[..., SmtpdServer]]:
    """start_server(extra_main_cf="") -> a running SmtpdServer; stopped after the test."""
    servers: list[SmtpdServer] = []

    def start(extra: str = "") -> SmtpdServer:
        server = SmtpdServer(make_context(tmp_path, queue_dir, extra))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def server(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup) -> SmtpdServer:
    """A server with the base configuration and a listening cleanup."""
    return start_server()
