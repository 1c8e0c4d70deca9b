"""Tests for mta.smtpd.settings: Postfix 3.7 defaults and checked values."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config import load_config
from mta.errors import ConfigError
from mta.smtpd.settings import SmtpdSettings
from tests.mta.test_derived import INTERFACES


def settings(tmp_path: Path, text: str = "") -> SmtpdSettings:
    (tmp_path / "main.cf").write_text(text)
    return SmtpdSettings.from_config(load_config(tmp_path, hostname="mx.example.test", interfaces=INTERFACES))


def test_defaults(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert (s.myhostname, s.banner) == ("mx.example.test", "mx.example.test ESMTP Postfix")
    assert (s.message_size_limit, s.recipient_limit, s.recipient_overshoot_limit) == (10240000, 1000, 1000)
    assert (s.timeout, s.soft_error_limit, s.hard_error_limit, s.error_sleep_time) == (300, 10, 20, 1)
    assert (s.junk_command_limit, s.line_length_limit, s.queue_minfree) == (100, 2048, 0)
    assert not (s.disable_vrfy or s.helo_required or s.client_port_logging or s.strict_rfc821 or s.soft_bounce)
    assert s.peername_lookup                       # Postfix's default; tests turn it off
    assert not s.forbid_unauth_pipelining and not s.smtputf8_enable   # compatibility_level 0
    assert s.forbidden_commands.match("CONNECT")


def test_overrides(tmp_path: Path) -> None:
    s = settings(tmp_path, "smtpd_banner = $myhostname ready\nsmtpd_timeout = 2m\ndisable_vrfy_command = yes\n")
    assert (s.banner, s.timeout, s.disable_vrfy) == ("mx.example.test ready", 120, True)


@pytest.mark.parametrize("text", ["smtpd_timeout = soon\n", "line_length_limit = 10\n",
                                  "message_size_limit = -1\n", "smtpd_recipient_limit = 0\n"])
def test_bad_values_are_config_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        settings(tmp_path, text)
