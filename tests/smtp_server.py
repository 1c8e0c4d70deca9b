"""A scripted SMTP server for the tests (aiosmtpd in a thread) on a 127.0.0.x address.

The test decides each reply: ``rcpt`` maps a recipient to the reply its RCPT
gets (default 250), ``data`` is the end-of-data reply, ``mail`` the MAIL
reply; ``pipelining`` adds PIPELINING to the EHLO keywords (aiosmtpd reads
pipelined commands in order anyway). It records every connection, command
and accepted message, so tests can count connections (reuse) and see what
arrived.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import wait_for


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at host now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class Script:
    """The replies a ScriptedSmtp gives and what it saw."""

    pipelining: bool = True
    mail: str = "250 2.1.0 Ok"
    rcpt: Callable[[str], str] = lambda address: "250 2.1.5 Ok"
    data: str = "250 2.0.0 Ok: queued"
    delay: float = 0.0
    connections: int = 0
    closed: int = 0  # connections that ended
    commands: list[str] = field(default_factory=list)
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler:
    def __init__(self, script: Script) -> None:
        self.script = script

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.script.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        with self.script.lock:
            self.script.commands.append(f"MAIL {address} {' '.join(options)}".strip())
        if self.script.mail.startswith("250"):
            envelope.mail_from = address
        return self.script.mail

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        with self.script.lock:
            self.script.commands.append(f"RCPT {address}")
        reply = self.script.rcpt(address)
        if reply.startswith("25"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if self.script.delay:
            await asyncio.sleep(self.script.delay)
        with self.script.lock:
            self.script.commands.append("DATA")
            if self.script.data.startswith("250"):
                self.script.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return self.script.data


class _CountingSMTP(SMTP):
    script: Script

    def connection_made(self, transport: Any) -> None:
        with self.script.lock:
            self.script.connections += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        with self.script.lock:
            self.script.closed += 1
        super().connection_lost(error)


class ScriptedSmtp:
    """Serve Script on host:port until close() (a context manager)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, script: Script | None = None) -> None:
        self.script = script or Script()
        self.host = host
        self.port = port or free_port(host)
        script_ = self.script

        class Counting(_CountingSMTP):
            script = script_

        class _Controller(Controller):
            def factory(self) -> SMTP:
                return Counting(self.handler, hostname="sink.example.test", decode_data=False)

        self.controller = _Controller(_Handler(self.script), hostname=host, port=self.port)
        self.controller.start()
        with self.script.lock:
            self.script.connections = 0  # start() connected once to see that the server is up
        wait_for(lambda: self.script.closed, timeout=5.0, what="the start-up probe connection to end")
        with self.script.lock:
            self.script.closed = 0

    @property
    def nexthop(self) -> str:
        """``[host]:port`` for a delivery request."""
        return f"[{self.host}]:{self.port}"

    def close(self) -> None:
        self.controller.stop()

    def __enter__(self) -> "ScriptedSmtp":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
