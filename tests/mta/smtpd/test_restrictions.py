"""Tests for mta.smtpd.restrictions beyond the golden transcripts: parsing, startup refusal, edge semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config import load_config
from mta.errors import ConfigError
from mta.smtpd.policy import RecipientPolicy
from mta.smtpd.restrictions import (
    RECIPIENT,
    RELAY,
    SENDER,
    CheckState,
    RestrictionError,
    Restrictions,
    restrictions_parse,
)
from tests.mta.smtpd.conftest import BASE_MAIN_CF


def restrictions(tmp_path: Path, extra: str) -> Restrictions:
    (tmp_path / "main.cf").write_text(BASE_MAIN_CF + extra)
    cfg = load_config(tmp_path)
    return Restrictions(cfg, RecipientPolicy.from_config(cfg))


def state(**kw: object) -> CheckState:
    base: dict[str, object] = {"client_name": "unknown", "client_addr": "192.0.2.9", "helo": "c.example",
                               "sender": "s@remote.example", "recipient": None, "trusted": False}
    base.update(kw)
    return CheckState(**base)  # type: ignore[arg-type]


def test_no_relay_control_is_refused_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="specify at least one working instance of: reject_unauth_destination"):
        restrictions(tmp_path, "smtpd_relay_restrictions = permit_mynetworks\n")
    with pytest.raises(ConfigError):
        restrictions(tmp_path, "compatibility_level = 0\n")
    restrictions(tmp_path, "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = reject_unauth_destination\n")


def test_parse_errors() -> None:
    with pytest.raises(RestrictionError, match='unknown smtpd restriction: "reject_everything"'):
        restrictions_parse("permit_mynetworks, reject_everything", None, "smtpd_client_restrictions")
    with pytest.raises(RestrictionError, match="check_sender_access needs a type:table argument"):
        restrictions_parse("check_sender_access", None, "smtpd_sender_restrictions")


def test_an_unknown_restriction_tempfails_what_it_judges(tmp_path: Path) -> None:
    r = restrictions(tmp_path, "smtpd_sender_restrictions = reject_everything\n")
    assert r.check([SENDER], state()) == "451 4.3.5 Server configuration error"
    assert r.check([RELAY], state(recipient="alice@example.test")) is None


def test_routed_recipient_ok_counts_as_dunno(tmp_path: Path) -> None:
    r = restrictions(tmp_path, "smtpd_relay_restrictions = check_recipient_access inline:{ {example.test=OK} }, "
                               "reject_unauth_destination\n")
    assert r.check([RELAY], state(recipient="alice@example.test")) is None
    assert r.check([RELAY], state(recipient="x%remote.example@example.test")) == \
        "554 5.7.1 <x%remote.example@example.test>: Relay access denied"


def test_warn_if_reject_only_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    r = restrictions(tmp_path, "smtpd_recipient_restrictions = warn_if_reject reject_non_fqdn_recipient, "
                               "reject_unauth_destination\n")
    assert r.check([RECIPIENT], state(recipient="alice@example")) is not None  # unauth destination still rejects
    assert r.check([RECIPIENT], state(recipient="alice@example.test")) is None
    caplog.clear()
    r2 = restrictions(tmp_path, "smtpd_sender_restrictions = warn_if_reject reject_non_fqdn_sender\n")
    assert r2.check([SENDER], state(sender="nodomain")) is None
    assert "reject_warning: SENDER from unknown[192.0.2.9]: 504 5.5.2 <nodomain>" in caplog.text


def test_unknown_client_hostname_restrictions(tmp_path: Path) -> None:
    r = restrictions(tmp_path, "smtpd_client_restrictions = reject_unknown_reverse_client_hostname, "
                               "reject_unknown_client_hostname\n")
    assert r.check(["client"], state()) == \
        "450 4.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.9]"
    assert r.check(["client"], state(reverse_name="ptr.example")) == \
        "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.9]"
    assert r.check(["client"], state(client_name="ptr.example", reverse_name="ptr.example")) is None
