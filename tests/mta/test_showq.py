"""Tests for mta.showq: the queue listing service and its scan of queue files and defer logs.

queue_fixture(), QueueFixture and build_queue() are shared with the postqueue and postsuper tests.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from mta import bounce_log, proto, queue, showq
from mta.config import load_config
from mta.record import Envelope, Recipient, record_encode
from mta.service_table import row_parse
from mta.skeleton import DaemonContext
from tests.unix_server import UnixServer

ARRIVAL = 1606159343  # Mon Nov 23 19:22:23 2020 UTC
REFUSED = "connect to mx.example.test[192.0.2.25]:25: Connection refused"


@dataclass
class QueueFixture:
    """A queue directory (world-searchable, so mail_owner can work in it) with its main.cf."""

    queue_dir: Path
    config_dir: Path

    def add(self, queue_name: str, queue_id: str, sender: str, recipients: list[tuple[str, bool]],
            size: int, *, mode: int = 0o700, arrival: float = ARRIVAL) -> Path:
        """Write a queue file: recipients are (address, done) pairs; content is size bytes."""
        rcpts = [Recipient(address, "", done=done) for address, done in recipients]
        data = record_encode(Envelope(sender, rcpts, arrival, {"origin": "test"}), b"x" * size)
        path = queue.queue_path(self.queue_dir, queue_name, queue_id)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_bytes(data)
        owner = pwd.getpwnam("postfix")
        os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chown(path.parent, owner.pw_uid, owner.pw_gid)
        path.chmod(mode)
        return path

    def defer(self, queue_id: str, *entries: tuple[str, str]) -> None:
        """Append (recipient, reason) records to queue_id's defer log."""
        records = [bounce_log.record_create(r, "", bounce_log.DEFERRED, "4.4.1", why) for r, why in entries]
        bounce_log.log_append(self.queue_dir, bounce_log.DEFER, queue_id, *records)
        owner = pwd.getpwnam("postfix")
        path = bounce_log.log_path(self.queue_dir, bounce_log.DEFER, queue_id)
        os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chown(path.parent, owner.pw_uid, owner.pw_gid)


@contextmanager
def queue_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[QueueFixture]:
    """An empty queue with Postfix's layout and owners; TZ=UTC so times are predictable."""
    saved_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    monkeypatch.delenv("MAIL_CONFIG", raising=False)
    base = Path(tempfile.mkdtemp(prefix="mta-queue-"))
    base.chmod(0o755)
    qdir, cfgdir = base / "spool", base / "etc"
    cfgdir.mkdir()
    owner = pwd.getpwnam("postfix")
    queue.queue_dirs_create(qdir, owner.pw_uid, owner.pw_gid)
    (cfgdir / "main.cf").write_text(f"queue_directory = {qdir}\nmyhostname = mail.example.test\n")
    try:
        yield QueueFixture(qdir, cfgdir)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if saved_tz is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved_tz
        time.tzset()


@pytest.fixture
def qfix(monkeypatch: pytest.MonkeyPatch) -> Iterator[QueueFixture]:
    """See queue_fixture()."""
    with queue_fixture(monkeypatch) as fixture:
        yield fixture


def build_queue(q: QueueFixture) -> None:
    """The sample queue the listing tests share (2662 content bytes in 4 listed messages)."""
    q.add(queue.MAILDROP, "0A0B0C0D0E0F", "local@mail.example.test", [("root@mail.example.test", False)], 300)
    q.add(queue.ACTIVE, "1A2B3C4D5E6F", "sender@example.org",
          [("alice@example.test", False), ("bob@example.test", False)], 167)
    q.add(queue.DEFERRED, "3172221C1BF0", "", [("a@example.test", False), ("b@example.test", False),
                                               ("c@example.test", False), ("d@example.test", True)],
          2000, mode=0o710)
    q.defer("3172221C1BF0", ("a@example.test", "old reason"), ("b@example.test", REFUSED),
            ("a@example.test", REFUSED), ("d@example.test", "delivered since"))
    q.add(queue.HOLD, "4DEADBEEF000", "odd name@example.org", [("x@example.test", False)], 195)
    q.add(queue.INCOMING, "5555555555AA", "half@example.org", [("y@example.test", False)], 10, mode=0o600)


LISTING = [
    {"queue_name": "maildrop", "queue_id": "0A0B0C0D0E0F", "arrival_time": ARRIVAL, "message_size": 300,
     "forced_expire": False, "sender": "local@mail.example.test",
     "recipients": [{"address": "root@mail.example.test", "orig_address": "root@mail.example.test",
                     "delay_reason": ""}]},
    {"queue_name": "active", "queue_id": "1A2B3C4D5E6F", "arrival_time": ARRIVAL, "message_size": 167,
     "forced_expire": False, "sender": "sender@example.org",
     "recipients": [{"address": "alice@example.test", "orig_address": "alice@example.test", "delay_reason": ""},
                    {"address": "bob@example.test", "orig_address": "bob@example.test", "delay_reason": ""}]},
    {"queue_name": "deferred", "queue_id": "3172221C1BF0", "arrival_time": ARRIVAL, "message_size": 2000,
     "forced_expire": True, "sender": "MAILER-DAEMON",
     "recipients": [{"address": "a@example.test", "orig_address": "a@example.test", "delay_reason": REFUSED},
                    {"address": "b@example.test", "orig_address": "b@example.test", "delay_reason": REFUSED},
                    {"address": "c@example.test", "orig_address": "c@example.test", "delay_reason": ""}]},
    {"queue_name": "hold", "queue_id": "4DEADBEEF000", "arrival_time": ARRIVAL, "message_size": 195,
     "forced_expire": False, "sender": '"odd name"@example.org',
     "recipients": [{"address": "x@example.test", "orig_address": "x@example.test", "delay_reason": ""}]},
]


def test_scan_lists_ready_messages_with_defer_reasons(qfix: QueueFixture) -> None:
    build_queue(qfix)
    assert list(showq.showq_scan(qfix.queue_dir)) == LISTING


def test_scan_of_an_empty_or_missing_queue(tmp_path: Path) -> None:
    assert list(showq.showq_scan(tmp_path)) == []


def test_corrupt_file_is_skipped(qfix: QueueFixture) -> None:
    path = qfix.add(queue.DEFERRED, "6666666666AA", "s@x", [("r@x", False)], 5)
    path.write_bytes(b"garbage")
    assert list(showq.showq_scan(qfix.queue_dir)) == []


def test_address_quote() -> None:
    assert showq.address_quote("bob@example.com") == "bob@example.com"
    assert showq.address_quote('we"ird@x') == '"we\\"ird"@x'
    assert showq.address_quote("bell\a@x") == '"bell?"@x'


def showq_start(q: QueueFixture) -> UnixServer:
    """Run the showq service on public/showq in a thread; close() the returned server to stop it."""
    cfg = load_config(q.config_dir)
    ctx = DaemonContext(row_parse("showq unix n - n - - showq"), cfg, q.queue_dir)
    showq.pre_init(ctx)
    showq.post_init(ctx)
    return UnixServer(q.queue_dir / "public" / "showq", lambda conn: showq.service(conn, ctx)).start()


def test_service_sends_each_message_then_end(qfix: QueueFixture) -> None:
    build_queue(qfix)
    server = showq_start(qfix)
    try:
        channel = proto.unix_connect(str(qfix.queue_dir / "public" / "showq"))
        received: list[dict[str, Any]] = []
        while True:
            message = channel.receive()
            assert message is not None
            if message[0].get("end"):
                break
            received.append(message[0])
        channel.close()
    finally:
        server.close()
    assert received == LISTING


def test_module_contract() -> None:
    assert showq.SERVER == "single"
    assert showq.SHOWQ_QUEUES == ("maildrop", "active", "incoming", "deferred", "hold")
