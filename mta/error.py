"""error and retry: refuse every recipient of a delivery request with the next hop's text (Postfix's error(8)).

A transport_maps entry such as ``old.example  error:5.1.1 this domain is closed``
sends mail for old.example here; the text after ``error:`` arrives as the
request's next hop and becomes the reason, an optional leading ``X.Y.Z``
detail code (or ``5NN X.Y.Z``) its DSN (default 5.0.0). As the ``retry``
service (master.cf ``retry unix - - y - - error``) the same daemon defers
instead, with 4.0.0 by default. The queue manager records the outcome, logs
it and sends the bounce, as for any delivery agent.

SECURITY. error only reads the request and answers it: it opens no file and
may run chrooted and unprivileged.
"""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING, Any

from mta import proto
from mta.agent import reply_all, request_serve

if TYPE_CHECKING:
    from mta.skeleton import DaemonContext

SERVER = "single"
_TEXT = re.compile(r"(?:[245]\d\d\s+)?([245]\.\d{1,3}\.\d{1,3})\s*(.*)", re.S)


def pre_init(ctx: "DaemonContext") -> None:
    """Nothing to open."""


def post_init(ctx: "DaemonContext") -> None:
    """Nothing to open."""


def error_reply(request: dict[str, Any], retry: bool) -> dict[str, Any]:
    """The reply to a delivery request: every recipient bounced (or, for retry, deferred) with the next hop's text."""
    status = proto.TEMPFAIL if retry else proto.PERMFAIL
    text = str(request.get("nexthop") or "").strip()
    match = _TEXT.fullmatch(text)
    dsn, reason = (match.group(1), match.group(2).strip()) if match else ("", text)
    if not dsn or dsn[0] != str(status):
        dsn = f"{status}.0.0"
    reason = reason or ("delivery temporarily suspended" if retry else "delivery failed")
    return reply_all(request.get("recipients"), status, dsn, reason)


def service(conn: socket.socket, ctx: "DaemonContext") -> None:
    """Answer one delivery request."""
    retry = ctx.service.service == "retry"
    request_serve(conn, ctx.cfg.get_time("ipc_timeout", minimum=1), "error",
                  lambda request: error_reply(request, retry))
