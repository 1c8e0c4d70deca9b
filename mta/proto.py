"""Inter-daemon messages over unix sockets: one JSON line, optionally followed by raw content bytes.

A request or reply is a JSON object on one line. When it carries a message
body, the object names its size in ``content_length`` and exactly that many
bytes follow the line. Replies use ``status`` 0 for success, 4 for "try again
later" and 5 for a permanent failure, with ``dsn`` and ``reason`` (Postfix's
attr_print/attr_scan, in a form Python reads natively).
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

MAX_LINE = 1 << 20  # a request line larger than this is refused
READ_SIZE = 65536

OK = 0
TEMPFAIL = 4
PERMFAIL = 5


class ProtocolError(ConnectionError):
    """The peer sent something that is not a well-formed message, or went away mid-message."""


def kernel_timeouts(sock: socket.socket, timeout: float | None) -> None:
    """Make sock blocking, each read and write limited to timeout seconds by the kernel (None or 0: no limit).

    SO_RCVTIMEO and SO_SNDTIMEO cost nothing per call, where Python's socket
    timeout polls before every read and write. An expired limit makes the call
    fail with EAGAIN, which Python raises as BlockingIOError.
    """
    sock.settimeout(None)
    if timeout is not None and timeout > 0:
        whole = int(timeout)
        timeval = struct.pack("@ll", whole, int((timeout - whole) * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


class Channel:
    """A buffered, blocking message stream over one connected socket.

    + timeout: seconds each read or write may wait (None: no limit). It is kept
      by the kernel (SO_RCVTIMEO, SO_SNDTIMEO) on a blocking socket: Python's
      own socket timeout would poll() before every read and write. An expired
      timeout raises TimeoutError, as Python's would.
    """

    def __init__(self, sock: socket.socket, timeout: float | None = None) -> None:
        self.sock = sock
        if timeout is None:
            timeout = sock.gettimeout()
        kernel_timeouts(sock, timeout)
        self._buf = b""
        self._pos = 0

    def _recv(self, flags: int = 0) -> bytes:
        try:
            return self.sock.recv(READ_SIZE, flags)
        except BlockingIOError:
            if flags & socket.MSG_DONTWAIT:
                raise
            raise TimeoutError("timed out") from None

    def send(self, message: dict[str, Any], content: bytes | None = None) -> None:
        """Send one message, with content bytes when given (content_length is set for you)."""
        if content is not None:
            message = dict(message, content_length=len(content))
        line = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        try:
            self.sock.sendall(line if content is None else line + content)
        except BlockingIOError:
            raise TimeoutError("timed out") from None

    def _line(self) -> bytes:
        """The next line with its LF; what is left at the end of the stream; b"" at a clean end."""
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end >= 0:
                line = self._buf[self._pos:end + 1]
                self._pos = end + 1
                return line
            if len(self._buf) - self._pos > MAX_LINE:
                raise ProtocolError("message line too long or truncated")
            data = self._recv()
            if not data:
                line, self._buf, self._pos = self._buf[self._pos:], b"", 0
                return line
            self._buf = self._buf[self._pos:] + data
            self._pos = 0

    def _exactly(self, length: int) -> bytes:
        """length bytes (fewer only when the stream ends first)."""
        have = len(self._buf) - self._pos
        if have >= length:
            data = self._buf[self._pos:self._pos + length]
            self._pos += length
            return data
        parts = [self._buf[self._pos:]]
        self._buf, self._pos = b"", 0
        while have < length:
            data = self._recv()
            if not data:
                break
            if have + len(data) > length:  # the next message came along
                self._buf, self._pos = data, length - have
                data = data[:length - have]
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def receive(self) -> tuple[dict[str, Any], bytes | None] | None:
        """The next message and its content (None without content); None at a clean end of stream."""
        line = self._line()
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise ProtocolError("message line too long or truncated")
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise ProtocolError(f"malformed message: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError("malformed message: not an object")
        length = message.get("content_length")
        if length is None:
            return message, None
        if not isinstance(length, int) or length < 0:
            raise ProtocolError(f"bad content_length {length!r}")
        content = self._exactly(length)
        if len(content) != length:
            raise ProtocolError("connection closed in the middle of a message body")
        return message, content

    def pending(self) -> bool:
        """Whether more input is at hand now (already buffered, or readable), without blocking.

        A server that waits in select() must ask this after each message: a
        client may send its next message before reading a reply, and the
        buffer can then hold it while the socket itself has nothing new.
        """
        if self._pos < len(self._buf):
            return True
        try:
            data = self._recv(socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        self._buf, self._pos = data, 0
        return bool(data)

    def request(self, message: dict[str, Any], content: bytes | None = None) -> dict[str, Any]:
        """Send a request and wait for its one-line reply."""
        self.send(message, content)
        reply = self.receive()
        if reply is None:
            raise ProtocolError("peer closed the connection without replying")
        return reply[0]

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def reply(status: int, reason: str = "", dsn: str = "", **extra: Any) -> dict[str, Any]:
    """A reply object: status 0 ok, 4 defer, 5 bounce; dsn defaults to 2.0.0/4.3.0/5.3.0."""
    if not dsn:
        dsn = {OK: "2.0.0", TEMPFAIL: "4.3.0", PERMFAIL: "5.3.0"}[status]
    return {"status": status, "dsn": dsn, "reason": reason, **extra}


def unix_connect(path: str, timeout: float | None = 30.0) -> Channel:
    """Connect to a daemon's unix socket (private/NAME or public/NAME)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if timeout is not None:
            sock.settimeout(timeout)
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return Channel(sock)


def trigger(path: str, data: bytes = b"W", timeout: float = 5.0) -> bool:
    """Send trigger bytes to a trigger service (qmgr, pickup); False when it is not listening."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(data)
        return True
    except OSError:
        return False
    finally:
        sock.close()
