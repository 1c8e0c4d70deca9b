"""SMTP server I/O: buffered command and DATA lines, pipelined replies, and Postfix-style log text.

READING. Input is read in large blocks and split into lines here, so a client
may pipeline many commands in one packet. A line ends at LF; a CR before
the LF is dropped, so CRLF and bare LF both end a line, and ``bare_lf`` says
which it was (smtpd_forbid_bare_newline decides what a bare LF may do; see
mta.smtpd.data). A line longer than the limit comes back in
pieces of at most ``limit`` bytes (DATA content, as Postfix's records), or is
cut at the limit with the rest thrown away (commands, so that a long line
cannot desynchronise the session).

WRITING (PIPELINING, RFC 2920). Replies are queued and only sent when the
server is about to wait for more input, i.e. when the input buffer holds no
complete line; a pipelined batch of commands therefore gets one packet of
replies, as with Postfix's VSTREAM.

TIMEOUTS. Every socket read and write is bounded by smtpd_timeout; when it
expires SessionTimeout is raised, and a closed or reset connection raises
SessionLost. The server turns both into the right log line. A plain
connection stays a blocking socket with the timeout set in the kernel
(SO_RCVTIMEO, SO_SNDTIMEO): Python's own socket timeout would poll() before
every read and write, two system calls for one. Over TLS Python's timeout is
used, since the TLS layer needs it to tell a timeout from a broken record.
"""

from __future__ import annotations

import select
import socket
import ssl

from mta.access import localpart_quote
from mta.proto import kernel_timeouts

READ_SIZE = 65536


class SessionTimeout(Exception):
    """The client was silent (or did not read) for longer than smtpd_timeout."""


class SessionLost(Exception):
    """The client closed or reset the connection."""


class SmtpStream:
    """A blocking, buffered SMTP connection.

    + sock: the accepted connection.
    + timeout: seconds for each read or write (smtpd_timeout).
    """

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout if timeout > 0 else None
        kernel_timeouts(sock, self.timeout)
        self._buf = b""
        self._pos = 0
        self._out: list[bytes] = []
        self.bytes_in = 0
        self.bare_lf = False  # the last complete line ended in LF without CR

    # -- input ------------------------------------------------------------

    def _fill(self) -> None:
        """Send queued replies, then wait for more input (the pipelining flush point)."""
        self.flush()
        try:
            data = self.sock.recv(READ_SIZE)
        except (socket.timeout, BlockingIOError):  # Python's timeout (TLS), the kernel's (plain)
            raise SessionTimeout() from None
        except OSError:
            raise SessionLost() from None
        if not data:
            raise SessionLost()
        self.bytes_in += len(data)
        rest = self._buf[self._pos:]
        self._buf = rest + data if rest else data
        self._pos = 0

    def pending(self) -> int:
        """Bytes received but not yet consumed."""
        return len(self._buf) - self._pos

    def read_line(self, limit: int) -> tuple[bytes, bool]:
        """The next line or piece of one, without its line end; the flag is True when the line ended.

        + limit: the most content bytes returned at once (line_length_limit).
        """
        while True:
            buf, pos = self._buf, self._pos
            end = buf.find(b"\n", pos, pos + limit + 2)
            if end >= 0:
                crlf = end > pos and buf[end - 1] == 13
                stop = end - 1 if crlf else end  # drop a CR before LF
                if stop - pos <= limit:
                    self._pos = end + 1
                    self.bare_lf = not crlf
                    return buf[pos:stop], True
            if end >= 0 or len(buf) - pos >= limit + 2:
                self._pos = pos + limit
                return buf[pos:pos + limit], False
            self._fill()

    def peek(self, limit: int) -> bytes:
        """Up to limit bytes the client already sent but nobody read, without waiting for more."""
        if self.pending() == 0:
            try:
                if isinstance(self.sock, ssl.SSLSocket):
                    readable = self.sock.pending() > 0 or select.select([self.sock], [], [], 0)[0]
                    data = self.sock.recv(READ_SIZE) if readable else b""
                else:
                    data = self.sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                data = b""
            except OSError:
                raise SessionLost() from None
            if data:
                self.bytes_in += len(data)
                self._buf, self._pos = data, 0
        return self._buf[self._pos:self._pos + limit]

    def read_command(self, limit: int) -> tuple[bytes, bool]:
        """A command line cut at limit bytes, the rest of a long line skipped; True when not cut."""
        line, complete = self.read_line(limit)
        if complete:
            return line, True
        while not self.read_line(limit)[1]:
            pass
        return line, False

    def discard(self) -> int:
        """Throw away input received but not read (before a STARTTLS handshake); return how much."""
        dropped = self.pending()
        self._buf, self._pos = b"", 0
        return dropped

    def tls_start(self, context: ssl.SSLContext) -> None:
        """Do the server side of the TLS handshake on this connection; SessionLost when it fails."""
        self.sock.settimeout(self.timeout)
        try:
            self.sock = context.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            raise SessionLost(f"TLS handshake: {exc}") from None
        self.sock.settimeout(self.timeout)

    # -- output -----------------------------------------------------------

    def reply(self, text: str) -> None:
        """Queue one reply (one or more lines joined by CRLF) for the next flush."""
        self._out.append(text.encode("utf-8", "surrogateescape") + b"\r\n")

    def flush(self) -> None:
        """Send every queued reply."""
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        try:
            self.sock.sendall(data)
        except (socket.timeout, BlockingIOError):
            raise SessionTimeout() from None
        except OSError:
            raise SessionLost() from None


def client_identify(conn: socket.socket, lookup: bool) -> tuple[str, str, str]:
    """(name, address, port) of the peer; the name is ``unknown`` unless lookup confirms it.

    IPv4-mapped IPv6 addresses are shown as IPv4, as Postfix does. With lookup,
    the PTR name must resolve back to the address (forward-confirmed), else ``unknown``.
    """
    name, _reverse, address, port = client_names(conn, lookup)
    return name, address, port


def client_names(conn: socket.socket, lookup: bool) -> tuple[str, str, str, str]:
    """(name, reverse name, address, port): reverse is the PTR name as found, name only when confirmed.

    Both are ``unknown`` without a PTR record (or with lookup off), as Postfix's
    client_name and reverse_client_name; reject_unknown_client_hostname judges
    the first, reject_unknown_reverse_client_hostname the second.
    """
    try:
        peer = conn.getpeername()
    except OSError:
        return "unknown", "unknown", "unknown", "unknown"
    if not isinstance(peer, tuple):
        return "localhost", "localhost", "127.0.0.1", "unknown"
    address, port = str(peer[0]).split("%", 1)[0], str(peer[1])
    if address.lower().startswith("::ffff:") and "." in address:
        address = address[7:]
    if not lookup:
        return "unknown", "unknown", address, port
    try:
        reverse = socket.gethostbyaddr(address)[0]
    except OSError:
        return "unknown", "unknown", address, port
    try:
        confirmed = {info[4][0] for info in socket.getaddrinfo(reverse, None)}
    except OSError:
        return "unknown", reverse, address, port
    return (reverse if address in confirmed else "unknown"), reverse, address, port


def reply_multiline(code: int, lines: list[str]) -> str:
    """A multi-line reply: ``250-first``, ..., ``250 last``.

    >>> reply_multiline(250, ["mx.example.com", "PIPELINING"])
    '250-mx.example.com\\r\\n250 PIPELINING'
    """
    last = len(lines) - 1
    return "\r\n".join(f"{code}{' ' if i == last else '-'}{line}" for i, line in enumerate(lines))


def reply_soft_bounce(text: str) -> str:
    """soft_bounce = yes: a 5xx reply becomes 4xx, with its 5.x.x detail code (Postfix's safety net)."""
    if text[:1] != "5":
        return text
    text = "4" + text[1:]
    if text[4:5] == "5":
        text = text[:4] + "4" + text[5:]
    return text


def printable(text: str, replacement: str = "?") -> str:
    """text with control and non-printable characters replaced, for logs and HELO names.

    >>> printable("a\\x01b")
    'a?b'
    """
    return "".join(c if c.isprintable() else replacement for c in text)


_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 92: "\\\\"}


def escape(data: bytes) -> str:
    """Client bytes for a log line, C-escaped as Postfix's escape() does.

    >>> escape(b"GET / HTTP/1.1\\r\\n\\xff")
    'GET / HTTP/1.1\\\\r\\\\n\\\\377'
    """
    return "".join(chr(b) if 32 <= b < 127 and b != 92 else _ESCAPES.get(b, f"\\{b:03o}") for b in data)


def namaddr(name: str, address: str, port: str = "", log_port: bool = False) -> str:
    """The client as Postfix logs it: ``name[address]`` or, with smtpd_client_port_logging, ``...:port``."""
    text = f"{name}[{address}]"
    return f"{text}:{port}" if log_port and port else text


def address_quote(address: str) -> str:
    """An address in external form: the local part quoted when it is not a dot-atom.

    >>> address_quote("alice@remote.example@example.test")
    '"alice@remote.example"@example.test'
    >>> address_quote(""), address_quote("user@example.com")
    ('', 'user@example.com')
    """
    if not address:
        return address
    local, at, domain = address.rpartition("@")
    if not at:
        return localpart_quote(address)
    return f"{localpart_quote(local)}@{domain}"


def whatsup(sender: str | None, recipient: str | None, protocol: str, helo: str | None) -> str:
    """The ``from=<...> to=<...> proto=... helo=<...>`` tail of a reject log line (quoted addresses)."""
    parts = []
    if sender is not None:
        parts.append(f" from=<{address_quote(sender)}>")
    if recipient is not None:
        parts.append(f" to=<{address_quote(recipient)}>")
    parts.append(f" proto={protocol}")
    if helo is not None:
        parts.append(f" helo=<{helo}>")
    return "".join(parts)


def command_stats(counts: dict[str, list[int]]) -> str:
    """The per-command totals of a disconnect log line, in Postfix's format.

    + counts: command name (lower case) -> [successes, total], in Postfix's command
      table order; commands that were never used are left out.

    >>> command_stats({"ehlo": [1, 1], "mail": [1, 1], "rcpt": [0, 1], "quit": [1, 1]})
    ' ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4'
    """
    parts = []
    ok_all = total_all = 0
    for name, (ok, total) in counts.items():
        if not total:
            continue
        parts.append(f" {name}={ok}" + (f"/{total}" if ok != total else ""))
        ok_all += ok
        total_all += total
    tail = f" commands={ok_all}"
    if ok_all != total_all or total_all == 0:
        tail += f"/{total_all}"
    return "".join(parts) + tail
