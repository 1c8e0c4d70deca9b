"""SMTP clients for the tests: a raw socket one for what smtplib will not send, and smtplib helpers."""

from __future__ import annotations

import smtplib
import socket

from tests.mta.smtpd.conftest import SmtpdServer

STRANGER = ("127.0.0.2", 0)  # a source address outside mynetworks = 127.0.0.1/32


class Raw:
    """A plain socket client, for what smtplib will not send."""

    def __init__(self, port: int, source: tuple[str, int] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=source)
        self.buf = b""

    def send(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.sock.sendall(data)

    def replies(self, count: int) -> list[str]:
        """The next count replies (a multi-line reply counts once), as lines without CRLF."""
        lines: list[str] = []
        done = 0
        while done < count:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError(f"closed after {lines}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode()
            lines.append(text)
            if text[3:4] != "-":
                done += 1
        return lines

    def closed(self) -> bool:
        """True when the server has closed the connection (after any pending data)."""
        return self.sock.recv(65536) == b""

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()


def client(server: SmtpdServer, source: tuple[str, int] | None = None) -> smtplib.SMTP:
    """An smtplib client connected to the server (from source when given)."""
    return smtplib.SMTP("127.0.0.1", server.port, source_address=source, timeout=10)


def reply(pair: tuple[int, bytes]) -> str:
    """An smtplib (code, text) pair as one reply line."""
    return f"{pair[0]} {pair[1].decode()}"
