"""The delivery-agent side of a delivery request: read the one request of a connection, answer it.

Shared by the delivery agents that need nothing else from the connection
(error, retry, discard, smtp): the queue manager sends ``{"op": "deliver", ...}``
(mta.clients.deliver_request) and waits for one reply; reply_all() builds a
reply that gives every recipient the same result.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from mta import log, proto


def request_serve(conn: socket.socket, timeout: float, name: str,
                  answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Read one delivery request from conn and send answer(request); other ops get a permanent error."""
    channel = proto.Channel(conn, timeout=timeout)
    try:
        received = channel.receive()
        if received is None:
            return
        request = received[0]
        if request.get("op") != "deliver":
            channel.send(proto.reply(proto.PERMFAIL, f"unknown request: {str(request.get('op'))[:40]!r}"))
            return
        channel.send(answer(request))
    except (OSError, proto.ProtocolError) as exc:
        log.msg_warn(f"{name}: request: {exc}")
    finally:
        channel.close()


def reply_all(recipients: Any, status: int, dsn: str, reason: str, relay: str | None = "none") -> dict[str, Any]:
    """A delivery reply giving every recipient of a request the same result (relay None: no relay field)."""
    results = [{"address": r.get("address", ""), "offset": r.get("offset"), "status": status, "dsn": dsn,
                "reason": reason} for r in recipients or [] if isinstance(r, dict)]
    reply: dict[str, Any] = {"status": proto.OK, "recipients": results}
    if relay is not None:
        reply["relay"] = relay
    return reply
