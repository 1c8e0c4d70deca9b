"""qmgr test fixtures: a scratch queue directory, queue files, a scripted delivery agent, cleanup, bounce."""

from __future__ import annotations

import os
import shutil
import socketserver
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import mta.bounce as bounce_daemon
from mta import proto, queue
from mta.config import MainConfig, parse_main_cf_text
from mta.record import Envelope, Recipient, record_write
from mta.skeleton import DaemonContext
from tests.unix_server import UnixServer

HOST = "mx.example.test"

# Small back-off times keep the tests fast; tests override what they exercise.
BASE_CONFIG = {
    "mydestination": "$myhostname, localhost.$mydomain, localhost, example.test",
    "minimal_backoff_time": "2s",
    "maximal_backoff_time": "4s",
    "queue_run_delay": "1s",
    "maximal_queue_lifetime": "1h",
    "bounce_queue_lifetime": "1h",
    "transport_retry_time": "1s",
    "ipc_timeout": "20s",
}

CONTENT = b"From: Alice <alice@example.test>\nSubject: hello there\nMessage-ID: <m1@example.test>\n\nbody\n"

# A delivery agent's answer for one recipient: (status, dsn, reason).
Result = tuple[int, str, str]
SENT: Result = (0, "2.0.0", "delivered to maildir")


def make_config(qdir: Path, **settings: str) -> MainConfig:
    """main.cf for a test: BASE_CONFIG plus settings, with a fixed myhostname."""
    values = dict(BASE_CONFIG, **settings)
    text = "".join(f"{name} = {value}\n" for name, value in values.items())
    parsed = parse_main_cf_text(text, str(qdir / "main.cf"))
    return MainConfig(qdir, parsed, hostname=HOST, interfaces=[])


@pytest.fixture()
def qdir() -> Iterator[Path]:
    """A queue directory short enough for unix socket paths, with Postfix's subdirectories."""
    path = Path(tempfile.mkdtemp(prefix="qm", dir="/tmp"))
    for name in queue.MESSAGE_QUEUES + queue.LOG_QUEUES + (queue.CORRUPT, "private", "public"):
        (path / name).mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def enqueue(qdir: Path, recipients: list[str | tuple[str, str] | Recipient], sender: str = "alice@example.test",
            content: bytes = CONTENT, arrival: float | None = None, where: str = queue.INCOMING,
            ready: bool = True, warn_time: float = 0.0) -> str:
    """Write a queue file into where (incoming by default) and return its ID.

    + warn_time: when a delay warning is due (the W record cleanup writes), 0 for none.
    """
    rcpts: list[Recipient] = []
    for item in recipients:
        if isinstance(item, Recipient):
            rcpts.append(item)
        elif isinstance(item, tuple):
            rcpts.append(Recipient(item[0], item[1]))
        else:
            rcpts.append(Recipient(item))
    envelope = Envelope(sender, rcpts, time.time() if arrival is None else arrival, {"origin": "smtpd"},
                        warn_time)
    qf = queue.queue_create(qdir, where)
    record_write(qf.fd, envelope, content)
    if ready:
        queue.queue_finish(qf)
    else:
        os.close(qf.fd)
    return qf.queue_id


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


@dataclass
class FakeAgent:
    """A delivery agent on private/local that answers from a script.

    + script(address) -> Result for each recipient (default: delivered).
    + delay: seconds to wait before answering (to observe concurrency).
    + requests: every request received.
    + active_seen: the number of files in active/ at each request.
    + max_concurrent: the most requests served at the same time.
    """

    qdir: Path
    script: Callable[[str], Result] = lambda address: SENT
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    active_seen: list[int] = field(default_factory=list)
    max_concurrent: int = 0
    _current: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: _Server | None = None

    def handle(self, channel: proto.Channel) -> None:
        received = channel.receive()
        if received is None:
            return
        request = received[0]
        with self._lock:
            self.requests.append(request)
            self.active_seen.append(len(os.listdir(self.qdir / queue.ACTIVE)))
            self._current += 1
            self.max_concurrent = max(self.max_concurrent, self._current)
        try:
            if self.delay:
                time.sleep(self.delay)
            results = []
            for rcpt in request["recipients"]:
                status, dsn, reason = self.script(rcpt["address"])
                results.append({"address": rcpt["address"], "offset": rcpt["offset"],
                                "status": status, "dsn": dsn, "reason": reason})
            channel.send({"status": 0, "recipients": results})
        finally:
            with self._lock:
                self._current -= 1

    @property
    def delivered(self) -> list[str]:
        """Addresses of every recipient in every request, in order."""
        with self._lock:
            return [r["address"] for req in self.requests for r in req["recipients"]]

    def start(self, path: Path) -> "FakeAgent":
        agent = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                channel = proto.Channel(self.request, timeout=10)
                agent.handle(channel)

        self._server = _Server(str(path), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class FakeCleanup:
    """cleanup on public/cleanup that accepts (or, with refuse, tempfails) every submission."""

    submitted: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)
    refuse: bool = False
    _server: _Server | None = None
    _count: int = 0

    def start(self, path: Path) -> "FakeCleanup":
        cleanup = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                channel = proto.Channel(self.request, timeout=10)
                received = channel.receive()
                if received is None:
                    return
                if cleanup.refuse:
                    channel.send(proto.reply(proto.TEMPFAIL, "queue file write error"))
                    return
                cleanup._count += 1
                cleanup.submitted.append((received[0], received[1] or b""))
                channel.send(proto.reply(proto.OK, queue_id=f"B0B0000000{cleanup._count:02X}"))

        self._server = _Server(str(path), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class BounceService:
    """The real bounce daemon (mta.bounce.service) on private/bounce and private/defer, one thread each.

    Notifications go to whatever listens on public/cleanup (the cleanup fixture).
    """

    servers: list[UnixServer]

    @property
    def errors(self) -> list[str]:
        """Tracebacks of exceptions that escaped the daemon's service()."""
        return [error for server in self.servers for error in server.errors]

    def stop(self) -> None:
        for server in self.servers:
            server.close()


def bounce_start(qdir: Path, **settings: str) -> BounceService:
    """Start the bounce daemon for qdir with main.cf BASE_CONFIG plus settings."""
    cfg = make_config(qdir, **settings)
    ctx = DaemonContext(service=None, cfg=cfg, queue_dir=qdir)  # type: ignore[arg-type]
    bounce_daemon.pre_init(ctx)
    bounce_daemon.post_init(ctx)
    return BounceService([UnixServer(qdir / "private" / name,
                                     lambda conn: bounce_daemon.service(conn, ctx)).start()
                          for name in ("bounce", "defer")])


@pytest.fixture()
def bounce(qdir: Path) -> Iterator[BounceService]:
    """The bounce daemon on private/bounce and private/defer (use cleanup too, to take its notices)."""
    service = bounce_start(qdir)
    yield service
    service.stop()
    assert service.errors == []


@pytest.fixture()
def agent(qdir: Path) -> Iterator[FakeAgent]:
    """A started FakeAgent on qdir/private/local (delivers everything unless scripted)."""
    fake = FakeAgent(qdir).start(qdir / "private" / "local")
    yield fake
    fake.stop()


@pytest.fixture()
def cleanup(qdir: Path) -> Iterator[FakeCleanup]:
    """A started FakeCleanup on qdir/public/cleanup."""
    fake = FakeCleanup().start(qdir / "public" / "cleanup")
    yield fake
    fake.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll condition until it holds or timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def subparts(message: Message) -> list[Message]:
    """The parts of a multipart message (or the blocks of a delivery-status part), typed."""
    payload = message.get_payload()
    assert isinstance(payload, list)
    return [part for part in payload if isinstance(part, Message)]


def text_of(message: Message) -> str:
    """The payload of a non-multipart part, typed."""
    payload = message.get_payload()
    assert isinstance(payload, str)
    return payload


def files(qdir: Path, name: str) -> list[str]:
    """Queue IDs in one queue of qdir."""
    return sorted(queue.queue_scan(qdir, name))
