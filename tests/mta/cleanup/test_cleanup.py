"""The cleanup daemon end to end: requests over a real unix socket, queue files in a tmp queue."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator

import pytest

import mta.cleanup as cleanup
from mta import clients, proto
from mta.queue import QueueFile
from mta.record import Envelope, record_read
from tests.mta.cleanup.server import TriggerSink, UnixServer, config_make, ctx_make, queue_make

LOCAL = {"origin": "pickup", "uid": "1000"}
REMOTE = {"origin": "smtpd", "client_name": "client.example.org", "client_address": "192.0.2.99",
          "helo": "helo.example.org", "protocol": "ESMTP"}
LOOPBACK = dict(REMOTE, client_name="localhost", client_address="127.0.0.1")
MASQ_CONF = "masquerade_domains = !keep.example.test, example.test\nmasquerade_exceptions = root\n"

Start = Callable[..., Path]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """start(extra main.cf text) runs cleanup on tmp/queue/public/cleanup and returns the queue dir."""
    with ExitStack() as stack:
        def run(extra: str = "") -> Path:
            queue = queue_make(tmp_path)
            ctx = ctx_make("cleanup", config_make(tmp_path, queue, extra), queue)
            cleanup.pre_init(ctx)
            cleanup.post_init(ctx)
            stack.enter_context(UnixServer(queue / "public" / "cleanup", lambda c: cleanup.service(c, ctx)))
            return queue
        yield run


def submit(queue: Path, content: bytes, sender: str = "joe", rcpts: tuple[str, ...] = ("root",),
           attrs: dict[str, str] | None = None) -> tuple[str, Envelope, bytes]:
    """Submit through the real client; return the queue ID and the incoming file's envelope and content."""
    queue_id = clients.cleanup_submit(queue, sender, [{"address": r} for r in rcpts], content,
                                      dict(LOCAL if attrs is None else attrs))
    path = queue / "incoming" / queue_id
    assert path.stat().st_mode & 0o777 == 0o700
    envelope, final = record_read(path)
    return queue_id, envelope, final


def header(content: bytes, name: str) -> list[str]:
    """All values of header name (case-insensitive) in the primary header."""
    head = content.split(b"\n\n", 1)[0].decode()
    return re.findall(rf"(?mi)^{name}:[ \t]*(.*(?:\n[ \t].*)*)", head)


def incoming(queue: Path) -> list[str]:
    return sorted(os.listdir(queue / "incoming"))


def test_local_submission_gets_headers_and_qualified_addresses(start: Start,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    queue = start()
    with caplog.at_level(logging.INFO, logger="mta"):
        queue_id, envelope, content = submit(queue, b"Subject: hi\n\nbody line\n")
    assert envelope.sender == "joe@mx.example.test"
    assert [(r.address, r.original) for r in envelope.recipients] == [("root@mx.example.test", "root")]
    assert envelope.attrs == LOCAL
    assert re.match(rf"Received: by mx.example.test \(mta, from userid 1000\)\n\tid {queue_id}; ",
                    content.decode())
    assert re.fullmatch(rf"<\d{{14}}\.{queue_id}@mx.example.test>", header(content, "Message-Id")[0])
    assert len(header(content, "Date")) == 1
    assert header(content, "From") == ["joe@mx.example.test"]
    assert content.endswith(b"Subject: hi\n" + content.split(b"Subject: hi\n", 1)[1])
    assert content.endswith(b"\n\nbody line\n")
    assert f"{queue_id}: message-id={header(content, 'Message-Id')[0]}" in caplog.messages


def test_present_headers_are_kept_byte_for_byte(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    queue = start()
    original = (b"From: Joe <joe@example.org>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
                b"Message-ID: <given@example.org>\nSubject: =?utf-8?q?caf=C3=A9?=\n\tfolded\n"
                b"X-Raw: \xff\xfe\n\nbody\n.\n..\n")
    with caplog.at_level(logging.INFO, logger="mta"):
        queue_id, _, content = submit(queue, original, attrs={**LOCAL, "fullname": "Ignored Name"})
    received, rest = content.split(b"\n", 2)[:2], content.split(b"\n", 2)[2]
    assert received[0].startswith(b"Received: by mx.example.test")
    assert rest == original
    assert f"{queue_id}: message-id=<given@example.org>" in caplog.messages


def test_full_name_makes_from_header(start: Start) -> None:
    queue = start()
    _, _, content = submit(queue, b"Subject: x\n\n", attrs={**LOCAL, "fullname": "Joe Q. User"})
    assert header(content, "From") == ['"Joe Q. User" <joe@mx.example.test>']


def test_remote_client_headers_left_alone(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    queue = start()
    with caplog.at_level(logging.INFO, logger="mta"):
        queue_id, envelope, content = submit(queue, b"From: joe\nTo: root\n\nx\n", rcpts=("root@gw",),
                                             attrs=REMOTE)
    assert envelope.sender == "joe@mx.example.test"
    assert envelope.recipients[0].address == "root@gw.example.test"
    assert content.decode().startswith(
        "Received: from helo.example.org (client.example.org [192.0.2.99])\n"
        f"\tby mx.example.test (mta) with ESMTP id {queue_id}\n\tfor <root@gw>; ")
    assert header(content, "From") == ["joe"] and header(content, "To") == ["root"]
    assert header(content, "Date") == [] and header(content, "Message-Id") == []
    assert f"{queue_id}: message-id=<>" in caplog.messages


def test_loopback_client_gets_header_rewriting(start: Start) -> None:
    queue = start()
    _, _, content = submit(queue, b"From: joe\nTo: a, b@gw\n\nx\n", rcpts=("a", "b"), attrs=LOOPBACK)
    assert header(content, "From") == ["joe@mx.example.test"]
    assert header(content, "To") == ["a@mx.example.test, b@gw.example.test"]
    assert len(header(content, "Date")) == 1
    assert re.search(r"with ESMTP id \w+;\n\t", content.decode())  # two recipients: no "for <...>"


def test_always_add_missing_headers_and_remote_rewrite_domain(start: Start) -> None:
    queue = start("always_add_missing_headers = yes\nremote_header_rewrite_domain = remote.example\n")
    _, _, content = submit(queue, b"To: joe\n\nx\n", attrs=REMOTE)
    assert header(content, "To") == ["joe@remote.example"]
    assert header(content, "From") == ["joe@mx.example.test"]
    assert len(header(content, "Date")) == 1 and len(header(content, "Message-Id")) == 1


@pytest.mark.parametrize(
    ("sender", "masqueraded"),
    [
        ("user@host.sub.example.test", "user@example.test"),
        ("root@host.example.test", "root@host.example.test"),
        ("user@a.keep.example.test", "user@a.keep.example.test"),
        ("user@other.example.org", "user@other.example.org"),
    ],
)
def test_masquerading_reference_table(start: Start, sender: str, masqueraded: str) -> None:
    queue = start(MASQ_CONF)
    content = f"From: Someone <{sender}>\nCc: {sender}\n\nx\n".encode()
    _, envelope, final = submit(queue, content, sender=sender, rcpts=(sender,))
    assert envelope.sender == masqueraded
    assert header(final, "From") == [f"Someone <{masqueraded}>"]
    assert header(final, "Cc") == [masqueraded]
    assert envelope.recipients[0].address == sender  # envelope recipients are not masqueraded


def test_masquerading_envelope_sender_of_remote_mail(start: Start) -> None:
    queue = start(MASQ_CONF)
    _, envelope, final = submit(queue, b"From: user@host.sub.example.test\n\nx\n",
                                sender="user@host.sub.example.test", attrs=REMOTE)
    assert envelope.sender == "user@example.test"
    assert header(final, "From") == ["user@host.sub.example.test"]  # no header rewriting for this client


def test_hopcount_limit(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    queue = start()
    hops = b"".join(b"Received: from hop%d\n" % i for i in range(49))
    with pytest.raises(clients.ServiceError) as failure, caplog.at_level(logging.INFO, logger="mta"):
        submit(queue, hops + b"\nloop\n")
    assert (failure.value.status, failure.value.dsn, failure.value.reason) == (5, "5.4.0", "too many hops")
    assert incoming(queue) == []
    assert any(m.endswith("message rejected: hopcount exceeded") for m in caplog.messages)
    queue_id, _, _ = submit(queue, hops[len(b"Received: from hop0\n"):] + b"\nok\n")
    assert incoming(queue) == [queue_id]


def test_message_size_limit(start: Start) -> None:
    queue = start("message_size_limit = 1000\n")
    with pytest.raises(clients.ServiceError) as failure:
        submit(queue, b"Subject: big\n\n" + b"x" * 1000)
    assert (failure.value.status, failure.value.dsn) == (5, "5.3.4")
    assert incoming(queue) == []
    submit(queue, b"Subject: fits\n\n" + b"x" * 900)


def test_reply_only_after_file_is_ready(start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = start()
    events: list[str] = []
    real_finish, real_send = cleanup.queue_finish, proto.Channel.send
    server_thread: list[threading.Thread] = []

    def finish(qf: QueueFile) -> None:
        real_finish(qf)
        server_thread.append(threading.current_thread())
        events.append(f"finish {qf.path.stat().st_mode & 0o777:o}")

    def send(self: proto.Channel, message: dict[str, object], content: bytes | None = None) -> None:
        if server_thread and threading.current_thread() is server_thread[0]:
            events.append(f"reply {message['status']}")
        real_send(self, message, content)

    monkeypatch.setattr(cleanup, "queue_finish", finish)
    monkeypatch.setattr(proto.Channel, "send", send)
    submit(queue, b"Subject: durable\n\n")
    assert events == ["finish 700", "reply 0"]


def test_broken_request_leaves_no_file(start: Start) -> None:
    queue = start()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(queue / "public" / "cleanup"))
    sock.sendall(b'{"op":"submit","sender":"a","recipients":[{"address":"b"}],"attrs":{},'
                 b'"content_length":100}\nonly ten b')
    sock.close()
    # A second, complete request proves the first one has been dealt with.
    submit(queue, b"Subject: after\n\n")
    assert len(incoming(queue)) == 1
    assert not [n for n in os.listdir(queue / "incoming") if n.startswith(".")]


def test_write_error_replies_4_and_leaves_no_file(start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = start()

    def broken(fd: int, envelope: Envelope, content: bytes) -> None:
        os.write(fd, b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cleanup, "record_write", broken)
    with pytest.raises(clients.ServiceError) as failure:
        submit(queue, b"Subject: x\n\n")
    assert (failure.value.status, failure.value.dsn) == (4, "4.3.0")
    assert failure.value.reason == "queue file write error"
    assert os.listdir(queue / "incoming") == []


@pytest.mark.parametrize(
    ("request_", "status", "dsn"),
    [
        ({"op": "submit", "sender": "a", "recipients": [], "attrs": {}}, 5, "5.1.0"),
        ({"op": "submit", "sender": "a\nR evil", "recipients": ["b"], "attrs": {}}, 5, "5.1.7"),
        ({"op": "submit", "sender": "a", "recipients": [{"address": "b\n"}], "attrs": {}}, 5, "5.1.3"),
        ({"op": "bogus", "sender": "a", "recipients": ["b"]}, 4, "4.3.0"),
        ({"op": "submit", "sender": 1, "recipients": ["b"]}, 4, "4.3.0"),
        ({"op": "submit", "sender": "a", "recipients": "b"}, 4, "4.3.0"),
    ],
)
def test_bad_requests(start: Start, request_: dict[str, object], status: int, dsn: str) -> None:
    queue = start()
    channel = proto.unix_connect(str(queue / "public" / "cleanup"))
    try:
        answer = channel.request(request_, b"Subject: x\n\n")
    finally:
        channel.close()
    assert (answer["status"], answer["dsn"]) == (status, dsn)
    assert incoming(queue) == []


def test_envelope_details_and_qmgr_trigger(start: Start) -> None:
    queue = start()
    with TriggerSink(queue / "public" / "qmgr") as qmgr:
        attrs = {**LOCAL, "arrival_time": "1700000000.5", "bad\nname": "v\x00"}
        _, envelope, _ = submit(queue, b"x: y\n\n", sender="", rcpts=("a", "a", "", "b@x.test"), attrs=attrs)
        assert qmgr.event.wait(5)
    assert qmgr.data == b"I"
    assert envelope.sender == ""
    assert [r.address for r in envelope.recipients] == ["a@mx.example.test", "MAILER-DAEMON@mx.example.test",
                                                        "b@x.test"]
    assert envelope.arrival == 1700000000.5
    assert envelope.attrs == {"origin": "pickup", "uid": "1000", "bad?name": "v?"}


def test_null_sender_from_header_and_drop_headers(start: Start) -> None:
    queue = start()
    _, _, content = submit(queue, b"Bcc: hidden@x\nReturn-Path: <x>\nContent-Length: 3\nSubject: s\n\nx\n",
                           sender="")
    assert header(content, "From") == ["MAILER-DAEMON"]
    assert header(content, "Bcc") == [] and header(content, "Return-Path") == []
    assert header(content, "Content-Length") == []


@pytest.mark.parametrize(("setting", "expected"), [("delay_warning_time = 4\n", 1700000000 + 4 * 3600),
                                                   ("delay_warning_time = 90s\n", 1700000000 + 90),
                                                   ("", 0)])
def test_delay_warning_time_is_recorded_in_the_queue_file(start: Start, setting: str, expected: int) -> None:
    """As Postfix's cleanup: with delay_warning_time set, the file says when the warning is due.

    A value without a unit is in hours (Postfix's default is 0h); the default 0h writes no record.
    """
    queue = start(setting)
    _, envelope, _ = submit(queue, b"x: y\n\n", attrs={**LOCAL, "arrival_time": "1700000000.5"})
    assert envelope.warn_time == expected
    assert (envelope.warn_offset > 0) == bool(expected)
