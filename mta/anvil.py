"""anvil: connection counts and rates per client, shared by every smtpd process (Postfix's anvil(8)).

PROTOCOL (mta.proto lines on private/anvil). Each smtpd process keeps one
connection to anvil for its whole life, as Postfix's does:

    {"op": "connect", "ident": "SERVICE:ADDRESS"}  -> {"status": 0, "count": N, "rate": R}
    {"op": "disconnect", "ident": ...}             (no reply)
    {"op": "lookup", "ident": ...}                 -> the same numbers, nothing counted

``connect`` counts one more concurrent connection for ident, held by this
client connection, and one more connection in the current rate window;
count and rate include it. ``disconnect`` ends one that this client holds
(it has no reply, so a session's end costs no round trip). When the client
connection closes, for whatever reason (the smtpd process exited, crashed or
was killed), everything it still holds is released, so a count never leaks.

RATES use fixed windows of anvil_rate_time_unit (60 s) per ident, as
Postfix's anvil: the window starts at an ident's first connection and its
count starts again from zero once the unit has passed. Idents with nothing
open and an expired window are forgotten, so memory follows the clients of
the last time unit. At exit anvil logs the largest rate and count it saw
("statistics: max connection rate 12/60s for (smtp:192.0.2.1) at Nov 24
10:00:00"), as Postfix does.

SECURITY. anvil is a multi server (one process, maxproc 1) on a private
socket that only mail_owner's daemons reach; it may be chrooted and runs
unprivileged. It stores no more than counters and time stamps per client
address, and trusts nothing it is sent beyond an ident string, which it
bounds in length.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mta import log, proto

if TYPE_CHECKING:
    from mta.skeleton import DaemonContext

SERVER = "multi"
IDENT_MAX = 300  # service name, colon, address: anything longer is a protocol error
PRUNE_EVERY = 1000  # requests between sweeps of forgotten idents


@dataclass
class Tally:
    """One ident: connections open now, this window's start and connections in it."""

    count: int = 0
    window_start: float = 0.0
    rate: int = 0


@dataclass
class Peak:
    """The largest value seen, for whom and when (logged at exit)."""

    value: int = 0
    ident: str = ""
    when: float = 0.0

    def update(self, value: int, ident: str, now: float) -> None:
        if value > self.value:
            self.value, self.ident, self.when = value, ident, now


@dataclass
class Anvil:
    """The counters of every ident, and which client connection holds which connections."""

    unit: float
    tallies: dict[str, Tally] = field(default_factory=dict)
    held: dict[int, list[str]] = field(default_factory=dict)  # client fd -> idents it connected
    requests: int = 0
    max_rate: Peak = field(default_factory=Peak)
    max_count: Peak = field(default_factory=Peak)

    def connect(self, holder: int, ident: str, now: float) -> Tally:
        """Count one connection of ident, held by holder, and one in its rate window."""
        tally = self._window(ident, now)
        tally.count += 1
        tally.rate += 1
        self.held.setdefault(holder, []).append(ident)
        self.max_count.update(tally.count, ident, now)
        self.max_rate.update(tally.rate, ident, now)
        self._sweep(now)
        return tally

    def lookup(self, ident: str, now: float) -> Tally:
        """The numbers of ident, counting nothing."""
        tally = self.tallies.get(ident)
        if tally is None:
            return Tally()
        if now - tally.window_start >= self.unit:
            return Tally(tally.count, now, 0)
        return tally

    def disconnect(self, holder: int, ident: str) -> None:
        """holder ends one connection of ident (nothing happens when it holds none)."""
        idents = self.held.get(holder, [])
        if ident in idents:
            idents.remove(ident)
            tally = self.tallies.get(ident)
            if tally is not None and tally.count > 0:
                tally.count -= 1

    def release(self, holder: int) -> None:
        """holder's connection closed: its connections end."""
        for ident in self.held.pop(holder, []):
            tally = self.tallies.get(ident)
            if tally is not None and tally.count > 0:
                tally.count -= 1

    def _window(self, ident: str, now: float) -> Tally:
        tally = self.tallies.get(ident)
        if tally is None:
            tally = self.tallies[ident] = Tally(window_start=now)
        elif now - tally.window_start >= self.unit:
            tally.window_start, tally.rate = now, 0
        return tally

    def _sweep(self, now: float) -> None:
        self.requests += 1
        if self.requests % PRUNE_EVERY:
            return
        for ident in [i for i, t in self.tallies.items() if t.count == 0 and now - t.window_start >= self.unit]:
            del self.tallies[ident]


def pre_init(ctx: "DaemonContext") -> None:
    """Read anvil_rate_time_unit."""
    ctx.state["anvil"] = Anvil(float(ctx.cfg.get_time("anvil_rate_time_unit", minimum=1)))
    ctx.state["channels"] = {}


def post_init(ctx: "DaemonContext") -> None:
    """Nothing to open after chroot."""


def request(conn: socket.socket, ctx: "DaemonContext") -> bool:
    """Answer every request a connected client has sent; False when it has gone (or broke the protocol)."""
    channels: dict[int, proto.Channel] = ctx.state["channels"]
    channel = channels.get(conn.fileno())
    if channel is None:
        channel = channels[conn.fileno()] = proto.Channel(conn, timeout=10)
    while True:
        if not _answer(conn, channel, ctx):
            return False
        if not channel.pending():  # a disconnect and the next connect can arrive together
            return True


def _answer(conn: socket.socket, channel: proto.Channel, ctx: "DaemonContext") -> bool:
    try:
        received = channel.receive()
    except proto.ProtocolError as exc:
        log.msg_warn(f"anvil: bad request: {exc}")
        return False
    if received is None:
        return False
    message = received[0]
    ident = message.get("ident")
    if not isinstance(ident, str) or not ident or len(ident) > IDENT_MAX:
        log.msg_warn("anvil: request without a valid ident")
        return False
    anvil: Anvil = ctx.state["anvil"]
    now = time.time()
    if message.get("op") == "connect":
        tally = anvil.connect(conn.fileno(), ident, now)
    elif message.get("op") == "disconnect":
        anvil.disconnect(conn.fileno(), ident)
        return True
    elif message.get("op") == "lookup":
        tally = anvil.lookup(ident, now)
    else:
        log.msg_warn(f"anvil: unknown request: {str(message.get('op'))[:40]!r}")
        return False
    channel.send({"status": proto.OK, "count": tally.count, "rate": tally.rate})
    return True


def closed(conn: socket.socket, ctx: "DaemonContext") -> None:
    """A client went away: release what it held."""
    ctx.state["anvil"].release(conn.fileno())
    ctx.state["channels"].pop(conn.fileno(), None)


def pre_exit(ctx: "DaemonContext") -> None:
    """Log the peaks, as Postfix's anvil does when it exits."""
    anvil: Anvil | None = ctx.state.get("anvil")
    if anvil is None:
        return
    unit = f"{anvil.unit:g}s"
    for what, peak, suffix in (("rate", anvil.max_rate, f"/{unit}"), ("count", anvil.max_count, "")):
        if peak.value:
            when = time.strftime("%b %e %H:%M:%S", time.localtime(peak.when))
            log.msg_info(f"statistics: max connection {what} {peak.value}{suffix} for ({peak.ident}) at {when}")

