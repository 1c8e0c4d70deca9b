"""Thin clients for the services daemons call on each other: cleanup, bounce, qmgr and pickup triggers, local.

The only way one daemon reaches another (style guide): each function takes the
queue directory as the caller sees it (``ctx.queue_dir``, "/" when chrooted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from mta import proto
from mta.errors import MtaError


class ServiceError(MtaError):
    """A service refused or failed a request; status is 4 (retry later) or 5 (permanent)."""

    def __init__(self, service: str, status: int, dsn: str, reason: str) -> None:
        super().__init__(f"{service}: {dsn} {reason}")
        self.service = service
        self.status = status
        self.dsn = dsn
        self.reason = reason


def cleanup_submit(
    queue_dir: Path,
    sender: str,
    recipients: Sequence[dict[str, str]],
    content: bytes,
    attrs: dict[str, str] | None = None,
    timeout: float = 300.0,
    flags: Sequence[str] = (),
) -> str:
    """Hand one message to cleanup; return its queue ID once it is safely in incoming/.

    + recipients: [{"address": ..., "original": ...}] ("original" optional).
    + content: header and body, LF line ends, dot-unstuffed.
    + attrs: client_name, client_address, helo, protocol, origin ("smtpd", "pickup",
      "bounce", "sendmail"), uid, ... recorded in the queue file and used for logging.
    + flags: "hold" (queue the message in hold/) or "discard" (give it an ID, keep nothing),
      as smtpd's HOLD and DISCARD actions ask.
    Raises ServiceError (status 4 or 5) when cleanup refuses, OSError or
    proto.ProtocolError when it cannot be reached.
    """
    channel = proto.unix_connect(f"{queue_dir}/public/cleanup", timeout=timeout)
    try:
        reply = channel.request(
            {"op": "submit", "sender": sender, "recipients": list(recipients), "attrs": attrs or {},
             "flags": list(flags)},
            content,
        )
    finally:
        channel.close()
    return _queue_id(reply, "cleanup")


def _queue_id(reply: dict[str, Any], service: str) -> str:
    if reply.get("status") != proto.OK:
        raise ServiceError(service, int(reply.get("status", 4)), str(reply.get("dsn", "4.3.0")),
                           str(reply.get("reason", "unknown error")))
    return str(reply["queue_id"])


def bounce_request(queue_dir: Path, service: str, op: str, queue_name: str, queue_id: str,
                   timeout: float = 300.0) -> str | None:
    """Ask the bounce daemon for a notification about queue_id; the new message's queue ID, or None.

    + service: ``bounce`` (op ``notify``: a non-delivery notification from the
      bounce log, which the daemon then removes) or ``defer`` (op ``warn``: a
      delay warning from the defer log), as Postfix's bounce_flush() and
      defer_warn() ask private/bounce and private/defer.
    + queue_name, queue_id: where the message is now (``active``); the daemon
      reads its sender, arrival time and headers from that file.
    None means nothing was sent on purpose: the sender is the null sender or
    the double-bounce address (the daemon logged it), or there was nothing to
    report. Raises ServiceError when the daemon could not send it (status 4:
    keep the log and try again later), OSError or proto.ProtocolError when it
    cannot be reached.
    """
    channel = proto.unix_connect(f"{queue_dir}/private/{service}", timeout=timeout)
    try:
        reply = channel.request({"op": op, "queue_name": queue_name, "queue_id": queue_id})
    finally:
        channel.close()
    if reply.get("status") == proto.OK:
        if reply.get("discarded"):
            return None
        if not isinstance(reply.get("queue_id"), str):
            raise proto.ProtocolError(f"{service}: malformed reply: no queue_id")
    return _queue_id(reply, service)


def bounce_notify(queue_dir: Path, queue_name: str, queue_id: str, timeout: float = 300.0) -> str | None:
    """Send the sender a non-delivery notification for queue_id's bounce log (see bounce_request)."""
    return bounce_request(queue_dir, "bounce", "notify", queue_name, queue_id, timeout)


def bounce_warn(queue_dir: Path, queue_name: str, queue_id: str, timeout: float = 300.0) -> str | None:
    """Send the sender a delay warning for queue_id's defer log (see bounce_request)."""
    return bounce_request(queue_dir, "defer", "warn", queue_name, queue_id, timeout)


def qmgr_trigger(queue_dir: Path, data: bytes = b"I") -> bool:
    """Wake qmgr (I: incoming, D: scan deferred, A: ignore retry times, F: forget dead destinations)."""
    return proto.trigger(f"{queue_dir}/public/qmgr", data)


def pickup_trigger(queue_dir: Path) -> bool:
    """Wake pickup after a file was written to maildrop/."""
    return proto.trigger(f"{queue_dir}/public/pickup", b"W")


def deliver_request(
    queue_dir: Path,
    transport: str,
    request: dict[str, Any],
    timeout: float = 3600.0,
) -> dict[str, Any]:
    """Send a delivery request to a delivery agent (private/TRANSPORT) and return its reply.

    The request names the queue file (queue_name, queue_id), the sender, the
    recipients with their file offsets, and the next hop; the agent opens the
    queue file itself and replies with one result per recipient.
    """
    channel = proto.unix_connect(f"{queue_dir}/private/{transport}", timeout=timeout)
    try:
        return channel.request(dict(request, op="deliver"))
    finally:
        channel.close()



class AnvilClient:
    """An smtpd process's connection to anvil, kept across its sessions (made again when lost).

    + queue_dir: as this process sees it (private/anvil lives there).
    """

    def __init__(self, queue_dir: Path, timeout: float = 10.0) -> None:
        self.path = f"{queue_dir}/private/anvil"
        self.timeout = timeout
        self.channel: proto.Channel | None = None

    def connect(self, ident: str) -> tuple[int, int]:
        """Count a connection of ident: (count, rate), both including it.

        Raises OSError or proto.ProtocolError when anvil cannot be reached or
        answers nonsense. A connection that went stale (anvil restarted) is
        made again once.
        """
        for attempt in (1, 2):
            fresh = self.channel is None
            if self.channel is None:
                self.channel = proto.unix_connect(self.path, timeout=self.timeout)
            try:
                reply = self.channel.request({"op": "connect", "ident": ident})
                if reply.get("status") != proto.OK:
                    raise proto.ProtocolError(f"anvil: status {reply.get('status')!r}")
                return int(reply["count"]), int(reply["rate"])
            except (KeyError, TypeError, ValueError) as exc:
                self.close()
                raise proto.ProtocolError(f"anvil: malformed reply ({exc})") from None
            except (OSError, proto.ProtocolError):
                self.close()
                if fresh or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def disconnect(self, ident: str) -> None:
        """End a connection counted by connect() (no reply is awaited)."""
        if self.channel is None:
            return
        try:
            self.channel.send({"op": "disconnect", "ident": ident})
        except OSError:
            self.close()  # anvil is gone, and with it what this process held

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
