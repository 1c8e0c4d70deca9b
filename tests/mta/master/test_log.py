"""Daemon logging: Postfix's line format in maillog_file and over the syslog socket."""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path

import pytest

from mta import log
from mta.config import MainConfig, load_config
from mta.errors import ConfigError


def config(tmp_path: Path, text: str = "") -> MainConfig:
    (tmp_path / "main.cf").write_text("myhostname = mx.example.test\n" + text)
    return load_config(tmp_path)


def test_maillog_lines(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    fd = log.maillog_open(str(tmp_path / "maillog"))
    try:
        log.setup_daemon(log.daemon_tag("smtpd", cfg), cfg, fd)
        log.msg_info("ABC123: client=localhost[127.0.0.1]")
        log.msg_warn("two\nlines")
        log.msg_fatal("bad")
        log.msg_panic("worse")
    finally:
        os.close(fd)
    assert (tmp_path / "maillog").stat().st_mode & 0o777 == 0o600
    lines = (tmp_path / "maillog").read_text().splitlines()
    stamp = r"[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d"
    head = rf"{stamp} mx\.example\.test mta/smtpd\[{os.getpid()}\]: "
    assert re.fullmatch(head + re.escape("ABC123: client=localhost[127.0.0.1]"), lines[0])
    assert re.fullmatch(head + "warning: two lines", lines[1])
    assert re.fullmatch(head + "fatal: bad", lines[2])
    assert re.fullmatch(head + "panic: worse", lines[3])


def test_direct_and_record_paths_agree(tmp_path: Path) -> None:
    """msg_info() writes without a LogRecord while the daemon handler is alone; with another
    handler added it goes through logging. Both give the same line; debug needs verbose."""
    cfg = config(tmp_path)
    fd = log.maillog_open(str(tmp_path / "maillog"))
    try:
        log.setup_daemon("mta/qmgr", cfg, fd)
        log.msg_warn("direct")
        log.logger.debug("hidden")
        extra = logging.NullHandler()
        log.logger.addHandler(extra)
        log.msg_warn("direct")
        log.logger.removeHandler(extra)
        log.setup_daemon("mta/qmgr", cfg, fd, verbose=True)
        log.logger.debug("shown")
    finally:
        os.close(fd)
    lines = [line.split(": ", 1)[1] for line in (tmp_path / "maillog").read_text().splitlines()]
    assert lines == ["warning: direct", "warning: direct", "shown"]


def test_syslog_datagrams(tmp_path: Path) -> None:
    cfg = config(tmp_path, "syslog_facility = local3\n").with_overrides({"syslog_name": "postfix/submission"})
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "log"))
    server.settimeout(5)
    try:
        log.setup_daemon(log.daemon_tag("smtpd", cfg), cfg, None, syslog_path=str(tmp_path / "log"))
        log.msg_info("hello")
        log.msg_warn("careful")
        info, warning = server.recv(1000).decode(), server.recv(1000).decode()
    finally:
        server.close()
    tag = f"postfix/submission/smtpd[{os.getpid()}]"
    assert re.fullmatch(rf"<158>[A-Z][a-z]{{2}} [ 0-9]\d \d\d:\d\d:\d\d {re.escape(tag)}: hello", info)
    assert warning.startswith("<156>") and warning.endswith(f"{tag}: warning: careful")


def test_syslog_missing_socket_is_silent(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    log.setup_daemon("mta/master", cfg, None, syslog_path=str(tmp_path / "nothing"))
    log.msg_info("dropped without an error")


def test_daemon_tag(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert log.daemon_tag("smtpd", cfg) == "mta/smtpd"
    assert log.daemon_tag("smtpd", cfg.with_overrides({"syslog_name": "postfix"})) == "postfix/smtpd"
    relay = cfg.with_overrides({"service_name": "relay", "syslog_name": "postfix/$service_name"})
    assert log.daemon_tag("smtp", relay) == "postfix/relay/smtp"


def test_unknown_facility(tmp_path: Path) -> None:
    cfg = config(tmp_path, "syslog_facility = nosuch\n")
    with pytest.raises(ConfigError, match='unknown syslog_facility value: "nosuch"'):
        log.setup_daemon("mta/master", cfg, None)
