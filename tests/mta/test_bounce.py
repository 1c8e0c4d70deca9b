"""The bounce daemon end to end: requests over its unix sockets, a real queue and the real cleanup daemon."""

from __future__ import annotations

import email
import logging
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Iterator

import pytest

import mta.bounce as bounce
import mta.cleanup as cleanup
from mta import bounce_log, clients, proto, queue
from mta.errors import ConfigError
from mta.record import Envelope, Recipient, record_read, record_write
from mta.skeleton import DAEMONS, daemon_load
from tests.mta.cleanup.server import TriggerSink, UnixServer, config_make, ctx_make, queue_make, world_dir
from tests.mta.qmgr.conftest import subparts, text_of

ORIGINAL = (b"From: Alice <alice@example.test>\nTo: bob@remote.example\nSubject: quarterly numbers\n"
            b"Message-ID: <q1@example.test>\n\nthe secret body\n")
ARRIVAL = 1_700_000_000.0


@dataclass
class Bed:
    """A queue with cleanup on public/cleanup and bounce on private/bounce and private/defer."""

    queue: Path
    servers: list[UnixServer]

    def enqueue(self, sender: str, rcpts: list[tuple[str, bool]], where: str | None = None) -> str:
        """A queue file in where (default active: qmgr is working on it); rcpts are (address, done)."""
        qf = queue.queue_create(self.queue, where or queue.ACTIVE)
        recipients = [Recipient(a, "", done=d) for a, d in rcpts]
        envelope = Envelope(sender, recipients, ARRIVAL, {"origin": "smtpd"})
        record_write(qf.fd, envelope, ORIGINAL)
        queue.queue_finish(qf)
        return qf.queue_id

    def log(self, log_queue: str, queue_id: str, *entries: tuple[str, str, str]) -> None:
        """Append (recipient, dsn, reason) records to a bounce or defer log."""
        status = bounce_log.BOUNCED if log_queue == bounce_log.BOUNCE else bounce_log.DEFERRED
        bounce_log.log_append(self.queue, log_queue, queue_id,
                              *(bounce_log.record_create(r, "", status, dsn, why) for r, dsn, why in entries))

    def request(self, service: str, message: dict[str, Any]) -> dict[str, Any]:
        """One raw request to private/SERVICE, as any client could send it."""
        channel = proto.unix_connect(str(self.queue / "private" / service), timeout=10)
        try:
            return channel.request(message)
        finally:
            channel.close()

    def incoming(self) -> list[tuple[Envelope, Message]]:
        """The notifications cleanup queued: envelope and parsed message."""
        found = []
        for queue_id in sorted(queue.queue_scan(self.queue, queue.INCOMING)):
            envelope, content = record_read(queue.queue_path(self.queue, queue.INCOMING, queue_id))
            found.append((envelope, email.message_from_bytes(content)))
        return found

    @property
    def errors(self) -> list[str]:
        return [error for server in self.servers for error in server.errors]


@pytest.fixture
def bed() -> Iterator[Bed]:
    root = world_dir()
    try:
        with ExitStack() as stack:
            qdir = queue_make(root)
            for name in queue.LOG_QUEUES:
                (qdir / name).mkdir()
            cfg = config_make(root, qdir, "mydestination = $myhostname, localhost\n"
                                          "delay_warning_time = 4h\nmaximal_queue_lifetime = 5d\n")
            cleanup_ctx = ctx_make("cleanup", cfg, qdir)
            cleanup.pre_init(cleanup_ctx)
            bounce_ctx = ctx_make("bounce", cfg, qdir)
            bounce.pre_init(bounce_ctx)
            bounce.post_init(bounce_ctx)
            stack.enter_context(TriggerSink(qdir / "public" / "qmgr"))  # cleanup wakes qmgr
            servers = [stack.enter_context(UnixServer(qdir / "public" / "cleanup",
                                                      lambda c: cleanup.service(c, cleanup_ctx)))]
            for name in ("bounce", "defer", "trace"):
                servers.append(stack.enter_context(UnixServer(qdir / "private" / name,
                                                              lambda c: bounce.service(c, bounce_ctx))))
            state = Bed(qdir, servers)
            yield state
            assert state.errors == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_notify_queues_a_dsn_with_the_original_headers(bed: Bed, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    qid = bed.enqueue("alice@example.test", [("bob@remote.example", True), ("carol@remote.example", True)])
    bed.log(bounce_log.BOUNCE, qid, ("bob@remote.example", "5.1.1", "unknown user: bob"),
            ("carol@remote.example", "5.2.2", "mailbox full"))
    new_id = clients.bounce_notify(bed.queue, queue.ACTIVE, qid, timeout=10)
    assert new_id is not None and new_id != qid
    [(envelope, report)] = bed.incoming()
    assert envelope.sender == "" and [r.address for r in envelope.recipients] == ["alice@example.test"]
    assert envelope.attrs["origin"] == "bounce"
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["Subject"] == "Undelivered Mail Returned to Sender"
    human, status, returned = subparts(report)
    assert "<bob@remote.example>: unknown user: bob" in text_of(human)
    blocks = subparts(status)
    assert blocks[0]["X-Postfix-Queue-ID"] == qid
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in blocks[1:]] == [
        ("rfc822; bob@remote.example", "failed", "5.1.1"),
        ("rfc822; carol@remote.example", "failed", "5.2.2")]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert "Subject: quarterly numbers" in text_of(returned)
    assert "Message-ID: <q1@example.test>" in text_of(returned)
    assert "secret body" not in text_of(returned)
    assert not bounce_log.log_exists(bed.queue, bounce_log.BOUNCE, qid)
    assert f"{qid}: sender non-delivery notification: {new_id}" in caplog.text


@pytest.mark.parametrize("sender", ["", "double-bounce", "double-bounce@mx.example.test",
                                    "Double-Bounce@LOCALHOST"])
def test_notify_discards_a_bounce_of_a_bounce(bed: Bed, caplog: pytest.LogCaptureFixture,
                                              sender: str) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    qid = bed.enqueue(sender, [("bob@remote.example", True)])
    bed.log(bounce_log.BOUNCE, qid, ("bob@remote.example", "5.1.1", "unknown user"))
    assert bed.request("bounce", {"op": "notify", "queue_name": "active", "queue_id": qid}) == {
        "status": 0, "dsn": "2.0.0", "reason": "", "discarded": True}
    assert clients.bounce_notify(bed.queue, queue.ACTIVE, qid) is None
    assert bed.incoming() == []
    assert not bounce_log.log_exists(bed.queue, bounce_log.BOUNCE, qid)
    assert f"{qid}: from=<{sender}>, status=bounced, non-delivery notification discarded" in caplog.text


def test_double_bounce_elsewhere_is_an_ordinary_sender(bed: Bed) -> None:
    qid = bed.enqueue("double-bounce@remote.example", [("bob@remote.example", True)])
    bed.log(bounce_log.BOUNCE, qid, ("bob@remote.example", "5.1.1", "unknown user"))
    assert clients.bounce_notify(bed.queue, queue.ACTIVE, qid) is not None
    assert [r.address for r in bed.incoming()[0][0].recipients] == ["double-bounce@remote.example"]


def test_notify_without_records_sends_nothing(bed: Bed) -> None:
    qid = bed.enqueue("alice@example.test", [("bob@remote.example", False)])
    assert clients.bounce_notify(bed.queue, queue.ACTIVE, qid) is None
    assert bed.incoming() == []


def test_warn_names_the_pending_recipients_and_keeps_the_defer_log(
        bed: Bed, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mta")
    qid = bed.enqueue("alice@example.test", [("bob@remote.example", False), ("carol@remote.example", True),
                                             ("dave@remote.example", False)], where=queue.DEFERRED)
    bed.log(bounce_log.DEFER, qid, ("bob@remote.example", "4.4.1", "old reason"),
            ("carol@remote.example", "4.2.2", "was full, since delivered"),
            ("bob@remote.example", "4.4.1", "connect to mx.remote.example: Connection refused"))
    new_id = clients.bounce_warn(bed.queue, queue.DEFERRED, qid)
    [(envelope, warning)] = bed.incoming()
    assert envelope.sender == "" and [r.address for r in envelope.recipients] == ["alice@example.test"]
    assert warning["Subject"] == "Delayed Mail (still being retried)"
    human, status, returned = subparts(warning)
    assert "Your message could not be delivered for more than 4 hour(s).\n" \
           "It will be retried until it is 5 day(s) old.\n" in text_of(human)
    assert "<bob@remote.example>: connect to mx.remote.example: Connection refused" in text_of(human)
    assert "carol" not in text_of(human) and "old reason" not in text_of(human)
    [bob] = subparts(status)[1:]  # dave has no deferral on record: nothing to say about him
    assert (bob["Final-Recipient"], bob["Action"], bob["Status"]) == ("rfc822; bob@remote.example", "delayed",
                                                                      "4.4.1")
    retry = email.utils.parsedate_to_datetime(bob["Will-Retry-Until"]).timestamp()
    assert retry == ARRIVAL + 5 * 86400
    assert "Subject: quarterly numbers" in text_of(returned)
    assert bounce_log.log_exists(bed.queue, bounce_log.DEFER, qid)
    assert f"{qid}: sender delay notification: {new_id}" in caplog.text


def test_warn_never_goes_to_the_null_sender(bed: Bed) -> None:
    qid = bed.enqueue("", [("bob@remote.example", False)])
    bed.log(bounce_log.DEFER, qid, ("bob@remote.example", "4.4.1", "refused"))
    assert clients.bounce_warn(bed.queue, queue.ACTIVE, qid) is None
    assert bed.incoming() == []


def test_trace_answers_the_same_requests(bed: Bed) -> None:
    qid = bed.enqueue("alice@example.test", [("bob@remote.example", False)])
    bed.log(bounce_log.DEFER, qid, ("bob@remote.example", "4.4.1", "refused"))
    reply = bed.request("trace", {"op": "warn", "queue_name": "active", "queue_id": qid})
    assert reply["status"] == 0 and queue.queue_id_valid(reply["queue_id"])


def test_cleanup_failure_keeps_the_bounce_log(bed: Bed, caplog: pytest.LogCaptureFixture) -> None:
    qid = bed.enqueue("alice@example.test", [("bob@remote.example", True)])
    bed.log(bounce_log.BOUNCE, qid, ("bob@remote.example", "5.1.1", "unknown user"))
    bed.servers[0].close()  # cleanup goes away
    reply = bed.request("bounce", {"op": "notify", "queue_name": "active", "queue_id": qid})
    assert reply["status"] == 4 and reply["reason"].startswith("cleanup: ")
    with pytest.raises(clients.ServiceError) as failed:
        clients.bounce_notify(bed.queue, queue.ACTIVE, qid)
    assert failed.value.status == 4
    assert bounce_log.log_exists(bed.queue, bounce_log.BOUNCE, qid)
    assert f"{qid}: sender non-delivery notification failed: " in caplog.text


@pytest.mark.parametrize(("message", "status", "reason"), [
    ({"op": "flush", "queue_name": "active", "queue_id": "ABCDEF123456"}, 5, "unknown request: 'flush'"),
    ({"op": "notify", "queue_name": "../etc", "queue_id": "ABCDEF123456"}, 5, "malformed request"),
    ({"op": "notify", "queue_name": "corrupt", "queue_id": "ABCDEF123456"}, 5, "malformed request"),
    ({"op": "notify", "queue_name": "active", "queue_id": "../../x"}, 5, "malformed request"),
    ({"op": "warn", "queue_name": "active", "queue_id": 7}, 5, "malformed request"),
    ({"op": "notify", "queue_name": "active", "queue_id": "ABCDEF123456"}, 4,
     "cannot read queue file active/ABCDEF123456"),
])
def test_bad_requests_are_refused(bed: Bed, message: dict[str, Any], status: int, reason: str) -> None:
    reply = bed.request("bounce", message)
    assert reply["status"] == status and reply["reason"].startswith(reason)


def test_daemon_contract_and_configuration(tmp_path: Path) -> None:
    assert DAEMONS["bounce"] == "mta.bounce" and daemon_load("bounce") is bounce
    assert bounce.SERVER == "single"
    qdir = queue_make(tmp_path)
    ctx = ctx_make("bounce", config_make(tmp_path, qdir, "delay_warning_time = soon\n"), qdir)
    with pytest.raises(ConfigError, match="delay_warning_time"):
        bounce.pre_init(ctx)
    settings = bounce.settings_create(config_make(tmp_path, qdir, "double_bounce_sender = bounce-bin\n"
                                                               "mydestination = a.example, hash:/x\n"))
    assert settings.local_domains == frozenset({"a.example", "localhost"})
    assert settings.delay.warning_time == 0  # Postfix's default 0h: no warnings
    assert bounce.sender_silenced(settings, "bounce-bin@A.example.")
    assert not bounce.sender_silenced(settings, "double-bounce@a.example")
    assert not bounce.sender_silenced(settings, "bounce-bin@b.example")


def test_client_refuses_a_reply_without_queue_id() -> None:
    qdir = world_dir()
    try:
        (qdir / "private").mkdir()

        def handler(conn: Any) -> None:
            channel = proto.Channel(conn)
            channel.receive()
            channel.send({"status": 0})

        with UnixServer(qdir / "private" / "bounce", handler):
            with pytest.raises(proto.ProtocolError, match="no queue_id"):
                clients.bounce_notify(qdir, queue.ACTIVE, "ABCDEF123456", timeout=5)
    finally:
        shutil.rmtree(qdir, ignore_errors=True)
