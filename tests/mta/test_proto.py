"""Tests for mta.proto: JSON-line messages with content over real unix sockets."""

from __future__ import annotations

import socket
import threading
import time
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


def test_messages_in_one_packet_and_split_content() -> None:
    """Two messages sent together are read one at a time (pending() sees the second);
    content that arrives in pieces, larger than one read, is put together."""
    left, right = socket.socketpair()
    reader = proto.Channel(right, timeout=5)
    big = bytes(range(256)) * 1000  # 256,000 bytes: several reads
    left.sendall(b'{"op":"a","content_length":3}\nxyz{"op":"b"}\n')
    assert reader.receive() == ({"op": "a", "content_length": 3}, b"xyz")
    assert reader.pending()
    assert reader.receive() == ({"op": "b"}, None)
    assert not reader.pending()

    def send_big() -> None:
        line = b'{"op":"c","content_length":%d}\n' % len(big)
        left.sendall(line + big[:1000])
        left.sendall(big[1000:] + b'{"op":"d"}\n')

    thread = threading.Thread(target=send_big)
    thread.start()
    assert reader.receive() == ({"op": "c", "content_length": len(big)}, big)
    assert reader.receive() == ({"op": "d"}, None)
    thread.join()
    left.close()
    assert not reader.pending() and reader.receive() is None


def test_silent_peer_times_out() -> None:
    """A read waits at most the channel's timeout, then raises TimeoutError (the socket stays blocking)."""
    left, right = socket.socketpair()
    reader = proto.Channel(right, timeout=0.3)
    assert reader.sock.gettimeout() is None
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        reader.receive()
    assert 0.25 <= time.monotonic() - started < 3
    left.close()


def test_line_longer_than_the_limit_is_refused() -> None:
    left, right = socket.socketpair()
    reader = proto.Channel(right, timeout=5)

    def flood() -> None:
        try:
            left.sendall(b"x" * (proto.MAX_LINE + proto.READ_SIZE * 2))
        except OSError:
            pass

    thread = threading.Thread(target=flood)
    thread.start()
    with pytest.raises(proto.ProtocolError, match="too long"):
        reader.receive()
    right.close()
    thread.join()
    left.close()


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
