"""Tests for mta.proto: JSON-line messages with content over real unix sockets."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from mta import proto


def test_request_with_content_and_reply() -> None:
    left, right = socket.socketpair()
    client, server = proto.Channel(left), proto.Channel(right)

    def serve() -> None:
        received = server.receive()
        assert received is not None
        message, content = received
        server.send(proto.reply(proto.OK, queue_id="ABC123", echo=message["op"], size=len(content or b"")))

    thread = threading.Thread(target=serve)
    thread.start()
    answer = client.request({"op": "submit"}, b"Subject: x\n\nbody\n\x00\xff")
    thread.join()
    assert answer == {"status": 0, "dsn": "2.0.0", "reason": "", "queue_id": "ABC123",
                      "echo": "submit", "size": 19}


def test_clean_end_of_stream_is_none() -> None:
    left, right = socket.socketpair()
    left.close()
    assert proto.Channel(right).receive() is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json\n", "malformed message"),
        (b"[1, 2]\n", "not an object"),
        (b'{"content_length": -1}\n', "bad content_length"),
        (b'{"content_length": 10}\nshort', "closed in the middle"),
        (b'{"op": "x"', "too long or truncated"),
    ],
)
def test_protocol_errors(raw: bytes, message: str) -> None:
    left, right = socket.socketpair()
    left.sendall(raw)
    left.close()
    with pytest.raises(proto.ProtocolError, match=message):
        proto.Channel(right).receive()


def test_trigger_to_missing_socket_is_false(tmp_path: Path) -> None:
    assert proto.trigger(str(tmp_path / "nothing")) is False


def test_trigger_delivers_bytes(tmp_path: Path) -> None:
    path = str(tmp_path / "qmgr")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    assert proto.trigger(path, b"A") is True
    conn, _ = listener.accept()
    assert conn.recv(10) == b"A"
    conn.close()
    listener.close()
