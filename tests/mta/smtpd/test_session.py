"""The command loop over real loopback connections: pipelining, error limits, forbidden commands, timeouts, logs."""

from __future__ import annotations

import time
from typing import Callable

import pytest

from tests.mta.smtpd.client import STRANGER, Raw, client, reply
from tests.mta.smtpd.conftest import HOSTNAME, FakeCleanup, SmtpdServer
from tests.mta.smtpd.replies import (
    S220_BANNER,
    S221_BYE,
    S221_FORBIDDEN,
    S250_MAIL,
    S250_OK,
    S250_RCPT,
    S354,
    S421_ERRORS,
    S421_TIMEOUT,
    S500_UTF8,
    S501_BAD_SENDER,
    S501_RSET_SYNTAX,
    S503_NEED_MAIL,
    S503_NEED_RCPT,
    S554_SYNC,
    user_unknown,
)


@pytest.mark.parametrize("line", [b"CONNECT example.com:443 HTTP/1.1", b"GET / HTTP/1.0", b"Subject: hello"])
def test_forbidden_command_hangs_up(server: SmtpdServer, caplog: pytest.LogCaptureFixture, line: bytes) -> None:
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(line + b"\r\nNOOP\r\n")
    assert raw.replies(1) == [S221_FORBIDDEN]
    assert raw.closed()
    server.wait_sessions(1)
    assert f"non-SMTP command from unknown[127.0.0.1]: {line.decode()}" in caplog.messages
    assert "disconnect from unknown[127.0.0.1] unknown=0/1 commands=0/1" in caplog.messages



def test_hard_error_limit(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup,
                          caplog: pytest.LogCaptureFixture) -> None:
    server = start_server("smtpd_hard_error_limit = 3\n")
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(b"RCPT TO:<a@b>\r\nDATA\r\nRSET x\r\nNOOP\r\n")
    assert raw.replies(4) == [S503_NEED_MAIL, S503_NEED_RCPT, S501_RSET_SYNTAX, S421_ERRORS]
    assert raw.closed()
    server.wait_sessions(1)
    assert "too many errors after RSET from unknown[127.0.0.1]" in caplog.messages



def test_soft_error_limit_slows_replies(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup) -> None:
    server = start_server("smtpd_soft_error_limit = 1\nsmtpd_error_sleep_time = 1s\n")
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(b"RSET x\r\n")
    assert raw.replies(1) == [S501_RSET_SYNTAX]                # first error: no delay
    started = time.monotonic()
    raw.send(b"NOOP\r\n")
    assert raw.replies(1) == [S250_OK]
    assert time.monotonic() - started >= 0.9



def test_long_command_line_is_cut_and_the_rest_skipped(start_server: Callable[..., SmtpdServer],
                                                      cleanup: FakeCleanup, caplog: pytest.LogCaptureFixture) -> None:
    server = start_server("line_length_limit = 100\n")
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(b"RSET " + b"x" * 5000 + b"\r\nNOOP\r\n")
    assert raw.replies(2) == [S501_RSET_SYNTAX, S250_OK]
    raw.close()
    server.wait_sessions(1)
    assert f"unknown[127.0.0.1]: request longer than 100: RSET {'x' * 25}..." in caplog.messages



def test_bad_utf8(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup) -> None:
    server = start_server("smtputf8_enable = yes\n")
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(b"\xff\xfe\r\nMAIL FROM:<\xff@x.example>\r\n")
    assert raw.replies(2) == [S500_UTF8, S500_UTF8]
    server = start_server("smtputf8_enable = no\n")
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(b"HELO c\r\nMAIL FROM:<\xff@x.example>\r\n\xff\xfe\r\n")   # 8-bit passes, but not to JSON
    assert raw.replies(3) == [f"250 {HOSTNAME}", S501_BAD_SENDER, S221_FORBIDDEN]



def test_improper_pipelining_is_logged_once(server: SmtpdServer, cleanup: FakeCleanup,
                                            caplog: pytest.LogCaptureFixture) -> None:
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(b"HELO c\r\nMAIL FROM:<a@b.example>\r\n")
    assert raw.replies(2) == [f"250 {HOSTNAME}", S250_MAIL]
    raw.send(b"NOOP\r\nNOOP\r\nQUIT\r\n")
    assert raw.replies(3) == [S250_OK, S250_OK, S221_BYE]
    server.wait_sessions(1)
    assert [m for m in caplog.messages if "pipelining" in m] == [
        "improper command pipelining after HELO from unknown[127.0.0.1]: MAIL FROM:<a@b.example>\\r\\n"]



def test_forbid_unauth_pipelining(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup) -> None:
    server = start_server("smtpd_forbid_unauth_pipelining = yes\n")
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.test>\r\n")
    assert raw.replies(1) == [S554_SYNC]
    assert raw.closed()
    with client(server) as smtp:               # one command at a time is fine; so is pipelining after EHLO
        smtp.ehlo("c")
        smtp.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.test>\r\n")
        assert [reply(smtp.getreply()) for _ in range(2)] == [S250_MAIL, S250_RCPT]



def test_timeout(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup,
                 caplog: pytest.LogCaptureFixture) -> None:
    server = start_server("smtpd_timeout = 1s\n")
    raw = Raw(server.port)
    raw.send(b"EHLO c.example\r\n")
    started = time.monotonic()
    lines = raw.replies(3)
    assert lines[0] == S220_BANNER and lines[-1] == S421_TIMEOUT
    assert 0.9 <= time.monotonic() - started < 5
    assert raw.closed()
    server.wait_sessions(1)
    assert "timeout after EHLO from unknown[127.0.0.1]" in caplog.messages



def test_pipelined_commands_get_all_replies_at_once(server: SmtpdServer, cleanup: FakeCleanup) -> None:
    raw = Raw(server.port)
    raw.replies(1)
    raw.send(b"EHLO c.example\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
             b"RCPT TO:<nobody@example.test>\r\nDATA\r\n")
    time.sleep(0.2)
    first = raw.sock.recv(65536)  # one flush for the whole batch
    raw.buf = first
    assert raw.replies(5)[-4:] == [S250_MAIL, S250_RCPT, user_unknown("nobody@example.test"), S354]
    raw.send(b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<>\r\nRSET\r\nQUIT\r\n")
    assert raw.replies(4) == ["250 2.0.0 Ok: queued as 000000ABC001", S250_MAIL, S250_OK, S221_BYE]
    assert cleanup.submissions[0].recipients == ["alice@example.test"]



def test_soft_bounce(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup) -> None:
    server = start_server("soft_bounce = yes\n")
    with client(server, STRANGER) as smtp:
        smtp.ehlo("c.example")
        smtp.mail("s@remote.example")
        assert reply(smtp.rcpt("nobody@example.test")) == user_unknown("nobody@example.test").replace(
            "550 5.1.1", "450 4.1.1")
