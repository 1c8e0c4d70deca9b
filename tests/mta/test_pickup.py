"""pickup: maildrop/ files go to a real cleanup (in a thread) and are removed only after its OK."""

from __future__ import annotations

import logging
import os
import socket
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import pytest

import mta.cleanup as cleanup
import mta.pickup as pickup
from mta import proto
from mta.postdrop import maildrop_write
from mta.record import Recipient, record_read
from mta.skeleton import DaemonContext
from tests.mta.cleanup.server import UnixServer, config_make, ctx_make, queue_make

SENDMAIL_ATTRS = {"uid": "1000", "origin": "sendmail", "fullname": "Joe User"}


class Setup:
    """A queue with a real cleanup service whose first `failures` requests get a 4xx reply."""

    def __init__(self, tmp_path: Path, stack: ExitStack) -> None:
        self.queue = queue_make(tmp_path)
        cfg = config_make(tmp_path, self.queue)
        self.cleanup_ctx = ctx_make("cleanup", cfg, self.queue)
        cleanup.pre_init(self.cleanup_ctx)
        self.ctx: DaemonContext = ctx_make("pickup", cfg, self.queue)
        self.failures = 0
        self.requests = 0
        self.stack = stack

    def cleanup_start(self) -> None:
        self.stack.enter_context(UnixServer(self.queue / "public" / "cleanup", self._cleanup))

    def _cleanup(self, conn: socket.socket) -> None:
        self.requests += 1
        if self.failures:
            self.failures -= 1
            channel = proto.Channel(conn)
            channel.receive()
            channel.send(proto.reply(proto.TEMPFAIL, "queue file write error", "4.3.0"))
            return
        cleanup.service(conn, self.cleanup_ctx)

    def drop(self, content: bytes = b"Subject: hello\n\nbody\n", attrs: dict[str, str] | None = None) -> str:
        return maildrop_write(self.queue, "joe", [Recipient("root")], content,
                              dict(SENDMAIL_ATTRS if attrs is None else attrs))

    def listing(self, name: str) -> list[str]:
        return sorted(n for n in os.listdir(self.queue / name) if not n.startswith("."))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with ExitStack() as stack:
        yield Setup(tmp_path, stack)


def test_maildrop_file_goes_to_incoming(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    setup.cleanup_start()
    drop_id = setup.drop()
    with caplog.at_level(logging.INFO, logger="mta"):
        pickup.trigger(b"W", setup.ctx)
    assert setup.listing("maildrop") == []
    [queue_id] = setup.listing("incoming")
    envelope, content = record_read(setup.queue / "incoming" / queue_id)
    assert envelope.sender == "joe@mx.example.test"
    assert envelope.recipients[0].address == "root@mx.example.test"
    assert envelope.attrs["origin"] == "pickup" and envelope.attrs["uid"] == "1000"
    text = content.decode()
    assert text.startswith(f"Received: by mx.example.test (mta, from userid 1000)\n\tid {queue_id}; ")
    assert "\nFrom: Joe User <joe@mx.example.test>\n" in text
    assert text.endswith("Subject: hello\n" + text.split("Subject: hello\n", 1)[1])
    assert f"{queue_id}: uid=1000 from=<joe> orig_id={drop_id}" in caplog.messages


def test_corrupt_file_is_quarantined(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    setup.cleanup_start()
    path = setup.queue / "maildrop" / "0123456789AB"
    path.write_bytes(b"mta-queue 1\nT 1\nS joe\nR root\nC 999\ntruncated")
    path.chmod(0o700)
    with caplog.at_level(logging.INFO, logger="mta"):
        pickup.trigger(b"W", setup.ctx)
    quarantined = setup.queue / "corrupt" / "0123456789AB"
    assert quarantined.stat().st_mode & 0o777 == 0o400
    assert quarantined.read_bytes().endswith(b"truncated")
    assert setup.listing("maildrop") == [] and setup.listing("incoming") == []
    assert any("saving corrupt file from maildrop" in m for m in caplog.messages)


def test_embryonic_file_is_left_alone(setup: Setup) -> None:
    setup.cleanup_start()
    path = setup.queue / "maildrop" / "0123456789AB"
    path.write_bytes(b"still being written")
    path.chmod(0o600)
    pickup.trigger(b"W", setup.ctx)
    assert setup.listing("maildrop") == ["0123456789AB"] and setup.requests == 0


def test_file_removed_only_after_cleanup_ok(setup: Setup) -> None:
    setup.cleanup_start()
    setup.failures = 1
    drop_id = setup.drop()
    pickup.trigger(b"W", setup.ctx)
    assert setup.listing("maildrop") == [drop_id] and setup.listing("incoming") == []
    pickup.trigger(b"W", setup.ctx)
    assert setup.listing("maildrop") == [] and len(setup.listing("incoming")) == 1
    assert setup.requests == 2


def test_cleanup_down_keeps_files(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    ids = sorted([setup.drop(), setup.drop()])
    with caplog.at_level(logging.INFO, logger="mta"):
        assert pickup.pickup_scan(setup.queue) == 0
    assert setup.listing("maildrop") == ids
    assert sum("connect to cleanup service" in m for m in caplog.messages) == 1  # the scan stopped
    setup.cleanup_start()
    assert pickup.pickup_scan(setup.queue) == 2
    assert setup.listing("maildrop") == [] and len(setup.listing("incoming")) == 2


def test_permanent_refusal_moves_file_to_hold(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    setup.cleanup_start()
    loop = b"".join(b"Received: from hop%d\n" % i for i in range(60)) + b"\nlooping\n"
    drop_id = setup.drop(loop)
    with caplog.at_level(logging.INFO, logger="mta"):
        pickup.trigger(b"W", setup.ctx)
    assert setup.listing("maildrop") == [] and setup.listing("incoming") == []
    assert setup.listing("hold") == [drop_id]
    assert any("rejected by cleanup: 5.4.0 too many hops; moved to hold" in m for m in caplog.messages)


def test_uid_of_a_foreign_file_is_its_owner(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    setup.cleanup_start()
    drop_id = setup.drop(attrs={"uid": "0", "origin": "sendmail", "client_address": "forged"})
    os.chown(setup.queue / "maildrop" / drop_id, 65534, 65534)
    with caplog.at_level(logging.INFO, logger="mta"):
        pickup.trigger(b"W", setup.ctx)
    [queue_id] = setup.listing("incoming")
    envelope, content = record_read(setup.queue / "incoming" / queue_id)
    assert envelope.attrs == {"origin": "pickup", "uid": "65534"}
    assert b"(mta, from userid 65534)" in content
