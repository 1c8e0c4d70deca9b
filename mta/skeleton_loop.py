"""The server loops of a daemon process (Postfix's single, multi and trigger servers): mta.skeleton's second half.

A loop watches the service's inherited listening sockets, its lifeline pipe and
a signal pipe. It reports busy and idle to the master on the status pipe as
STATUS records, and returns when it is time for the process to exit: SIGTERM
(after the current client), the lifeline at end of file (master gone, or the
service retired by a reload), the listener shut down by the master (service
removed, mail system stopping), max_use or max_idle. A broken status pipe means
the master is gone: ServerDone is raised and the process exits quietly.

A multi server (Postfix's multi_server, as anvil uses) holds many client
connections at once in one process: each readable connection gets one call
of request(), which reads and answers one request and returns False when the
client is gone; closed() then learns of the end, so state tied to a
connection dies with it even when the client crashed. It reports idle only,
since it never stops accepting.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import struct
import time
from typing import Callable, Sequence

# Status pipe record: (pid, STATUS_BUSY or STATUS_IDLE); 5 bytes, so every write is atomic.
STATUS = struct.Struct("=iB")
STATUS_IDLE = 0
STATUS_BUSY = 1

TRIGGER_MAX = 1024  # trigger bytes read per connection
TRIGGER_TIMEOUT = 10.0  # seconds a trigger client may take to send them


class ServerDone(Exception):
    """The master is gone or shut the listener down: exit without serving more."""


class Signals:
    """SIGTERM handling for a child: set a flag, and wake the select loop through a pipe."""

    def __init__(self) -> None:
        self.stop = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum: int, frame: object) -> None:
        # Only a flag: a client in progress is served to the end, then the loop returns.
        self.stop = True

    def drain(self) -> None:
        """Empty the wake pipe."""
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass


def status_report(fd: int, state: int) -> None:
    """Tell the master this process is busy or idle; ServerDone when the master is gone."""
    if fd < 0:
        return
    try:
        os.write(fd, STATUS.pack(os.getpid(), state))
    except BrokenPipeError:
        raise ServerDone() from None


def _selector(listen_fds: Sequence[int], lifeline_fd: int, signals: Signals) -> tuple[
        selectors.BaseSelector, list[socket.socket]]:
    sel = selectors.DefaultSelector()
    listeners = []
    for fd in listen_fds:
        sock = socket.socket(fileno=fd)
        # Another child may win the accept race: never block in accept().
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, "listen")
        listeners.append(sock)
    if lifeline_fd >= 0:
        sel.register(lifeline_fd, selectors.EVENT_READ, "lifeline")
    sel.register(signals.wake_r, selectors.EVENT_READ, "signal")
    return sel, listeners


def _accept(ready: list[tuple[selectors.SelectorKey, int]]) -> socket.socket | None:
    """Accept from the first ready listener; None when another process took the connection."""
    for key, _ in ready:
        if key.data != "listen":
            continue
        try:
            conn, _addr = key.fileobj.accept()  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            continue
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # shutdown() by the master
                raise ServerDone() from None
            raise
        conn.setblocking(True)
        return conn
    return None


def _should_exit(ready: list[tuple[selectors.SelectorKey, int]], signals: Signals) -> bool:
    """SIGTERM arrived, or the lifeline pipe reached end of file (master gone or retiring us)."""
    if any(key.data == "signal" for key, _ in ready):
        signals.drain()
    return signals.stop or any(key.data == "lifeline" for key, _ in ready)


def single_server(service: Callable[[socket.socket], None], listen_fds: Sequence[int], status_fd: int,
                  lifeline_fd: int, signals: Signals, max_use: int, max_idle: int) -> None:
    """Serve one connection at a time until max_use, max_idle, SIGTERM or the lifeline ends it.

    + service: called with each accepted connection, which is closed afterwards.
    + max_use, max_idle: connections and idle seconds before exiting (0: no limit).
    """
    sel, _listeners = _selector(listen_fds, lifeline_fd, signals)
    served = 0
    idle_since = time.monotonic()
    while not signals.stop:
        timeout = None
        if max_idle:
            timeout = idle_since + max_idle - time.monotonic()
            if timeout <= 0:
                return
        ready = sel.select(timeout)
        if _should_exit(ready, signals):
            return
        conn = _accept(ready)
        if conn is None:
            continue
        status_report(status_fd, STATUS_BUSY)
        try:
            service(conn)
        finally:
            conn.close()
        served += 1
        if (max_use and served >= max_use) or signals.stop:
            return
        status_report(status_fd, STATUS_IDLE)
        idle_since = time.monotonic()


def _trigger_read(conn: socket.socket) -> bytes:
    """Up to TRIGGER_MAX bytes, until the client closes or TRIGGER_TIMEOUT passes."""
    data = b""
    deadline = time.monotonic() + TRIGGER_TIMEOUT
    try:
        while len(data) < TRIGGER_MAX:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            conn.settimeout(remaining)
            chunk = conn.recv(TRIGGER_MAX - len(data))
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def trigger_server(trigger: Callable[[bytes], None], listen_fds: Sequence[int], status_fd: int,
                   lifeline_fd: int, signals: Signals) -> None:
    """Hand each connection's trigger bytes to trigger() until SIGTERM or the lifeline ends it.

    Long-lived, like Postfix's qmgr: no max_use or max_idle (the master keeps one
    process and wakes it every `wakeup` seconds).
    """
    sel, _listeners = _selector(listen_fds, lifeline_fd, signals)
    while not signals.stop:
        ready = sel.select(None)
        if _should_exit(ready, signals):
            return
        conn = _accept(ready)
        if conn is None:
            continue
        status_report(status_fd, STATUS_BUSY)
        try:
            data = _trigger_read(conn)
        finally:
            conn.close()
        if data:
            trigger(data)
        status_report(status_fd, STATUS_IDLE)


def multi_server(request: Callable[[socket.socket], bool], closed: Callable[[socket.socket], None],
                 listen_fds: Sequence[int], status_fd: int, lifeline_fd: int, signals: Signals) -> None:
    """Serve every connected client in one process until SIGTERM or the lifeline ends it.

    + request: called when a client is readable; False closes that client.
    + closed: called once for each client, just before its socket is closed.
    """
    sel, _listeners = _selector(listen_fds, lifeline_fd, signals)
    clients: set[socket.socket] = set()

    def drop(conn: socket.socket) -> None:
        sel.unregister(conn)
        clients.discard(conn)
        try:
            closed(conn)
        finally:
            conn.close()

    try:
        while not signals.stop:
            ready = sel.select(None)
            if _should_exit(ready, signals):
                return
            for key, _ in ready:
                if key.data == "client":
                    conn = key.fileobj
                    assert isinstance(conn, socket.socket)
                    keep = False
                    try:
                        keep = request(conn)
                    except OSError:
                        keep = False
                    if not keep:
                        drop(conn)
            accepted = _accept(ready)
            if accepted is not None:
                clients.add(accepted)
                sel.register(accepted, selectors.EVENT_READ, "client")
    finally:
        for conn in list(clients):
            drop(conn)
