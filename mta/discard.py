"""discard: report every recipient of a delivery request as delivered, and deliver nothing (Postfix's discard(8)).

A transport_maps entry such as ``spamtrap.example  discard:silently dropped``
sends mail here; the text after ``discard:`` (the request's next hop) is
the reason logged with ``status=sent``, "discarded" when there is none.

SECURITY. discard only reads the request and answers it: it opens no file
and may run chrooted and unprivileged.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from mta import proto
from mta.agent import reply_all, request_serve

if TYPE_CHECKING:
    from mta.skeleton import DaemonContext

SERVER = "single"


def pre_init(ctx: "DaemonContext") -> None:
    """Nothing to open."""


def post_init(ctx: "DaemonContext") -> None:
    """Nothing to open."""


def discard_reply(request: dict[str, Any]) -> dict[str, Any]:
    """The reply to a delivery request: every recipient sent, with the next hop's text as the reason."""
    reason = str(request.get("nexthop") or "").strip() or "discarded"
    return reply_all(request.get("recipients"), proto.OK, "2.0.0", reason)


def service(conn: socket.socket, ctx: "DaemonContext") -> None:
    """Answer one delivery request."""
    request_serve(conn, ctx.cfg.get_time("ipc_timeout", minimum=1), "discard", discard_reply)
