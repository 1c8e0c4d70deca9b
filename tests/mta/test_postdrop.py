"""postdrop: the local submission endpoint, with real peers (root, and a child that became nobody)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import mta.postdrop as postdrop
from mta import proto
from mta.record import record_read
from tests.mta.cleanup.server import (
    NOBODY,
    TriggerSink,
    UnixServer,
    config_make,
    ctx_make,
    queue_make,
    run_as_nobody,
    world_dir,
)

REQUEST = {"op": "submit", "sender": "joe", "recipients": [{"address": "root"}],
           "attrs": {"fullname": "Joe\tUser", "uid": "0", "origin": "smtpd", "client_address": "1.2.3.4"}}
CONTENT = b"Subject: hello\n\nbody\n"

Start = Callable[..., Path]


@pytest.fixture
def start() -> Iterator[Start]:
    """start(extra main.cf text) runs postdrop on ROOT/queue/submit/postdrop; returns the queue dir."""
    root = world_dir()
    with ExitStack() as stack:
        def run(extra: str = "") -> Path:
            queue = queue_make(root)
            ctx = ctx_make("postdrop", config_make(root, queue, extra), queue)
            postdrop.pre_init(ctx)
            postdrop.post_init(ctx)
            stack.enter_context(UnixServer(postdrop.postdrop_path(queue), lambda c: postdrop.service(c, ctx)))
            return queue
        yield run
    shutil.rmtree(root, ignore_errors=True)


def ask(queue: Path, request: dict[str, Any] = REQUEST, content: bytes = CONTENT) -> dict[str, Any]:
    """Send one request and return the reply; like sendmail, read the reply even when postdrop
    refused before reading the request (our send then fails with EPIPE)."""
    channel = proto.unix_connect(str(postdrop.postdrop_path(queue)), timeout=10)
    try:
        try:
            channel.send(request, content)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = channel.receive()
        assert received is not None
        return received[0]
    finally:
        channel.close()


def ask_as_nobody(queue: Path) -> dict[str, Any]:
    """Submit REQUEST from a child process running as nobody; return the reply it got."""
    def child() -> int:
        sys.stderr.write(json.dumps(ask(queue)))
        return 0
    status, output = run_as_nobody(child)
    assert status == 0, output
    return dict(json.loads(output))


def maildrop(queue: Path) -> list[str]:
    return sorted(n for n in os.listdir(queue / "maildrop") if not n.startswith("."))


def test_root_submission_and_pickup_trigger(start: Start) -> None:
    queue = start()
    with TriggerSink(queue / "public" / "pickup") as pickup:
        answer = ask(queue)
        assert pickup.event.wait(5)
    assert answer["status"] == 0
    assert maildrop(queue) == [answer["queue_id"]]
    path = queue / "maildrop" / answer["queue_id"]
    assert path.stat().st_mode & 0o777 == 0o700
    envelope, content = record_read(path)
    assert envelope.sender == "joe" and [r.address for r in envelope.recipients] == ["root"]
    # The uid comes from the kernel; user-supplied attributes other than the full name are dropped.
    assert envelope.attrs == {"fullname": "Joe User", "uid": "0", "origin": "sendmail"}
    assert content == CONTENT
    assert pickup.data == b"W"


def test_nobody_uid_is_recorded(start: Start) -> None:
    queue = start()
    answer = ask_as_nobody(queue)
    assert answer["status"] == 0
    envelope, _ = record_read(queue / "maildrop" / answer["queue_id"])
    assert envelope.attrs["uid"] == str(NOBODY)
    assert envelope.sender == "joe"  # -f is the user's choice, as in Postfix


@pytest.mark.parametrize("acl", ["root", "!nobody, static:anyone", "root, !nobody"])
def test_authorized_submit_users_refuses_nobody(start: Start, acl: str) -> None:
    queue = start(f"authorized_submit_users = {acl}\n")
    answer = ask_as_nobody(queue)
    assert (answer["status"], answer["dsn"]) == (5, "5.7.1")
    assert answer["reason"] == f"User nobody({NOBODY}) is not allowed to submit mail"
    assert maildrop(queue) == []
    assert ask(queue)["status"] == 0  # root is allowed


def test_size_limit_is_checked_before_reading(start: Start) -> None:
    queue = start("message_size_limit = 100\n")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(postdrop.postdrop_path(queue)))
    sock.sendall(json.dumps(dict(REQUEST, content_length=1000)).encode() + b"\n")
    answer = json.loads(sock.makefile("rb").readline())  # no content was sent: postdrop must not wait
    sock.close()
    assert (answer["status"], answer["dsn"], answer["reason"]) == (5, "5.3.4", "message file too big")
    assert maildrop(queue) == []


@pytest.mark.parametrize(
    ("request_", "dsn"),
    [
        (dict(REQUEST, op="other"), "5.5.4"),
        (dict(REQUEST, recipients=[]), "5.1.0"),
        (dict(REQUEST, recipients="root"), "5.5.4"),
        (dict(REQUEST, sender="joe\nR evil"), "5.1.7"),
        (dict(REQUEST, recipients=[{"address": "a\x00b"}]), "5.1.3"),
        (dict(REQUEST, recipients=[{"no": "address"}]), "5.1.3"),
    ],
)
def test_bad_requests(start: Start, request_: dict[str, Any], dsn: str) -> None:
    queue = start()
    answer = ask(queue, request_)
    assert (answer["status"], answer["dsn"]) == (5, dsn)
    assert maildrop(queue) == []


def test_malformed_line_and_missing_content(start: Start) -> None:
    queue = start()
    for line in (b"not json\n", b'{"op":"submit"}\n', b"[1]\n"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(str(postdrop.postdrop_path(queue)))
        sock.sendall(line)
        answer = json.loads(sock.makefile("rb").readline())
        sock.close()
        assert (answer["status"], answer["dsn"]) == (5, "5.5.4")
    assert maildrop(queue) == []


def test_write_error_leaves_nothing(start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = start()

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(postdrop, "record_write", broken)
    answer = ask(queue)
    assert (answer["status"], answer["dsn"]) == (4, "4.3.0")
    assert os.listdir(queue / "maildrop") == []


def test_submit_acl_unknown_uid() -> None:
    acl = postdrop.SubmitAcl(["!unknown", "inline:{ root=yes }"])
    assert acl.check(0) is None
    assert acl.check(4_000_000) == "unknown"
    assert postdrop.SubmitAcl(["static:anyone"]).check(4_000_000) is None
    assert postdrop.SubmitAcl([]).check(0) == "root"


def test_refusal_reply_reaches_a_client_still_sending(start: Start) -> None:
    queue = start("authorized_submit_users = nobody\n")
    answer = ask(queue, content=b"x" * 4_000_000)  # far more than the socket buffers hold
    assert (answer["status"], answer["dsn"]) == (5, "5.7.1")
    assert answer["reason"] == "User root(0) is not allowed to submit mail"
