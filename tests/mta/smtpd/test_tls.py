"""Tests for smtpd's STARTTLS (mta.smtpd.tls): a generated certificate, TLS 1.2 or newer, no plaintext injection."""

from __future__ import annotations

import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from mta.errors import ConfigError
from tests.mta.smtpd.client import STRANGER, Raw
from tests.mta.smtpd.conftest import HOSTNAME, FakeCleanup, SmtpdServer


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={HOSTNAME}", "-addext", f"subjectAltName=DNS:{HOSTNAME}",
                    "-keyout", str(base / "key.pem"), "-out", str(base / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    return base


def tls_config(cert: Path, level: str = "may") -> str:
    return (f"smtpd_tls_security_level = {level}\nsmtpd_tls_cert_file = {cert / 'cert.pem'}\n"
            f"smtpd_tls_key_file = {cert / 'key.pem'}\n")


def client_context(cert: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert / "cert.pem"))
    ctx.check_hostname = False
    return ctx


def test_starttls_session(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup, certificate: Path) -> None:
    server = start_server(tls_config(certificate) + "smtpd_tls_received_header = yes\n")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10, source_address=STRANGER) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        code, text = smtp.starttls(context=client_context(certificate))
        assert (code, text) == (220, b"2.0.0 Ready to start TLS")
        assert smtp.sock.version() in ("TLSv1.2", "TLSv1.3")
        smtp.ehlo()
        assert not smtp.has_extn("starttls")  # not offered twice
        assert smtp.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
        smtp.sendmail("a@remote.example", ["alice@example.test"], b"Subject: tls\r\n\r\nx\r\n")
    [message] = cleanup.submissions
    assert message.attrs["protocol"] == "ESMTPS"
    assert message.attrs["tls"].startswith(("TLSv1.3 with cipher", "TLSv1.2 with cipher"))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_no_tls_before_1_2(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup, certificate: Path) -> None:
    server = start_server(tls_config(certificate))
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo()
        with pytest.raises((ssl.SSLError, ConnectionError, smtplib.SMTPServerDisconnected)):
            smtp.starttls(context=old)


def test_pipelined_plaintext_is_discarded(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup,
                                          certificate: Path) -> None:
    """CVE-2011-0411: commands sent in plain text right behind STARTTLS must not run inside TLS."""
    server = start_server(tls_config(certificate))
    raw = Raw(server.port, STRANGER)
    raw.replies(1)
    raw.send(b"EHLO c.example\r\n")
    raw.replies(1)
    raw.send(b"STARTTLS\r\nMAIL FROM:<injected@remote.example>\r\n")
    assert raw.replies(1) == ["220 2.0.0 Ready to start TLS"]
    tls = client_context(certificate).wrap_socket(raw.sock, server_hostname=HOSTNAME)
    tls.sendall(b"MAIL FROM:<a@remote.example>\r\n")
    reply = tls.recv(1000)
    # Had the injected MAIL run, this would be "503 5.5.1 Error: nested MAIL command" (or a second reply).
    assert reply == b"250 2.1.0 Ok\r\n"
    tls.sendall(b"QUIT\r\n")
    assert tls.recv(1000) == b"221 2.0.0 Bye\r\n"
    tls.close()


def test_encrypt_level_requires_starttls(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup,
                                         certificate: Path) -> None:
    server = start_server(tls_config(certificate, "encrypt"))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.docmd("MAIL FROM:<a@remote.example>") == (530, b"5.7.0 Must issue a STARTTLS command first")
        smtp.starttls(context=client_context(certificate))
        smtp.ehlo()
        assert smtp.docmd("MAIL FROM:<a@remote.example>")[0] == 250


def test_bad_settings_are_refused(start_server: Callable[..., SmtpdServer], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs smtpd_tls_cert_file"):
        start_server("smtpd_tls_security_level = may\n")
    with pytest.raises(ConfigError, match="cannot load TLS certificate"):
        start_server(f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {tmp_path}/none.pem\n")
    with pytest.raises(ConfigError, match='invalid smtpd_tls_security_level value: "sometimes"'):
        start_server("smtpd_tls_security_level = sometimes\n")


def test_plain_socket_still_answers_without_tls(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup) -> None:
    server = start_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.recv(100)
        sock.sendall(b"STARTTLS\r\n")
        assert sock.recv(100) == b"502 5.5.1 Error: command not implemented\r\n"


def test_timeout_over_tls(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup, certificate: Path,
                          caplog: pytest.LogCaptureFixture) -> None:
    """smtpd_timeout also ends a silent session after STARTTLS, with 421 sent over TLS."""
    server = start_server(tls_config(certificate) + "smtpd_timeout = 1s\n")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo()
        smtp.starttls(context=client_context(certificate))
        smtp.ehlo()
        started = time.monotonic()
        code, text = smtp.getreply()
        assert (code, text) == (421, f"4.4.2 {HOSTNAME} Error: timeout exceeded".encode())
        assert 0.9 <= time.monotonic() - started < 5
    server.wait_sessions(1)
    assert "timeout after EHLO from unknown[127.0.0.1]" in caplog.messages
