"""Tests for mta.agent: one delivery request read and answered; anything else refused."""

from __future__ import annotations

import socket
import threading
from typing import Any

from mta import proto
from mta.agent import request_serve


def exchange(message: dict[str, Any] | None) -> dict[str, Any] | None:
    server, client = socket.socketpair()
    worker = threading.Thread(target=request_serve, args=(server, 5.0, "test",
                                                        lambda r: {"status": 0, "echo": r["queue_id"]}))
    worker.start()
    channel = proto.Channel(client, timeout=5)
    try:
        if message is None:
            client.shutdown(socket.SHUT_WR)  # the client goes away without asking
        else:
            channel.send(message)
        received = channel.receive()
        return None if received is None else received[0]
    finally:
        worker.join(5)
        channel.close()


def test_deliver_is_answered() -> None:
    assert exchange({"op": "deliver", "queue_id": "ABC"}) == {"status": 0, "echo": "ABC"}


def test_other_requests_are_refused() -> None:
    reply = exchange({"op": "flush"})
    assert reply is not None and reply["status"] == proto.PERMFAIL and "unknown request: 'flush'" in reply["reason"]


def test_a_client_that_leaves_gets_nothing() -> None:
    assert exchange(None) is None
