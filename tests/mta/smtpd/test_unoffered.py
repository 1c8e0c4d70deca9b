"""Commands of extensions that are not offered: STARTTLS, AUTH, ETRN, BDAT, XCLIENT, XFORWARD."""

from __future__ import annotations

import pytest

from tests.mta.smtpd.client import Raw
from tests.mta.smtpd.conftest import SmtpdServer
from tests.mta.smtpd.replies import (
    S221_BYE,
    S250_MAIL,
    S550_XCLIENT,
)


@pytest.mark.parametrize("commands, expected", [
    ([b"STARTTLS", b"AUTH PLAIN", b"XCLIENT NAME=x", b"XFORWARD NAME=x"],
     ["502 5.5.1 Error: command not implemented", "503 5.5.1 Error: authentication not enabled",
      S550_XCLIENT, S550_XCLIENT]),
    ([b"ETRN", b"ETRN bad..example", b"ETRN example.test", b"ETRN @example.test", b"MAIL FROM:<a@b.example>",
      b"ETRN example.test", b"XCLIENT NAME=x"],
     ["500 Syntax: ETRN domain", "501 Error: invalid parameter syntax", "459 <example.test>: service unavailable",
      "459 <@example.test>: service unavailable", S250_MAIL, "503 Error: MAIL transaction in progress",
      "503 5.5.1 Error: MAIL transaction in progress"]),
])
def test_replies(server: SmtpdServer, commands: list[bytes], expected: list[str]) -> None:
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(b"HELO c\r\n" + b"".join(c + b"\r\n" for c in commands) + b"QUIT\r\n")
    assert raw.replies(len(commands) + 2)[1:] == expected + [S221_BYE]


def test_stats_count_them_as_errors(server: SmtpdServer, caplog: pytest.LogCaptureFixture) -> None:
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(b"STARTTLS\r\nAUTH LOGIN\r\nETRN x.example\r\nQUIT\r\n")
    raw.replies(4)
    server.wait_sessions(1)
    assert "disconnect from unknown[127.0.0.1] starttls=0/1 auth=0/1 etrn=0/1 quit=1 commands=1/4" in caplog.messages
    assert "reject: ETRN x.example... from unknown[127.0.0.1]" in caplog.messages


def test_bdat_hangs_up(server: SmtpdServer) -> None:
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.test>\r\nBDAT 5 LAST\r\nhello")
    assert raw.replies(4)[-1] == "521 5.5.1 Error: command not implemented"
    assert raw.closed()
