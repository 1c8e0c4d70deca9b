"""Tests for mta.smtpd.policy: relay control and local recipient validation, as data cases."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mta.aliases import alias_build
from mta.config import load_config
from mta.errors import ConfigError
from mta.smtpd.policy import RecipientPolicy, literal_normalize, recipient_maps_open
from tests.mta.test_derived import INTERFACES

MAIN_CF = """\
myhostname = mx.example.test
mydestination = $myhostname, localhost, example.test
mynetworks = 192.0.2.0/24
relay_domains = relay.example
inet_interfaces = 192.0.2.25, [2001:db8::25]
recipient_delimiter = +
alias_maps =
"""
USERS = ["root", "alice", "bob"]


@pytest.fixture(autouse=True)
def _mta_log_reaches_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.main() (other tests) stops the mta logger from propagating; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("mta"), "propagate", True)


def policy(tmp_path: Path, extra: str = "", users: list[str] | None = USERS) -> RecipientPolicy:
    (tmp_path / "main.cf").write_text(MAIN_CF + extra)
    cfg = load_config(tmp_path, hostname="mx.example.test", interfaces=INTERFACES)
    return RecipientPolicy.from_config(cfg, user_names=users)


def relay_denied(address: str) -> str:
    return f"454 4.7.1 <{address}>: Relay access denied"


def unknown(address: str, code: str = "550 5.1.1") -> str:
    return f"{code} <{address}>: Recipient address rejected: User unknown in local recipient table"


@pytest.mark.parametrize("trusted, recipient, expected", [
    (False, "alice@example.test", None),
    (False, "alice+news@example.test", None),                    # extension stripped
    (False, "ALICE@Example.Test", None),
    (False, "carol@example.test", unknown("carol@example.test")),
    (True, "carol@example.test", unknown("carol@example.test")),
    (False, "postmaster@localhost", None),
    (False, "MAILER-DAEMON@example.test", None),
    (False, "double-bounce@example.test", None),
    (False, "postmaster", None),
    (False, "bob", None),                                         # qualified with myorigin
    (False, "alice@[192.0.2.25]", None),                          # own interface literal
    (False, "alice@[IPv6:2001:DB8::25]", None),
    (False, "alice@[192.0.2.26]", relay_denied("alice@[192.0.2.26]")),
    (True, "alice@[192.0.2.26]", None),
    (False, "x@relay.example", None),                            # relay domains: no user check
    (False, "x@deep.sub.relay.example", None),
    (False, "x@remote.example", relay_denied("x@remote.example")),
    (True, "x@remote.example", None),
    (False, "alice%remote.example@example.test", relay_denied("alice%remote.example@example.test")),
    (False, "remote!alice@example.test", relay_denied("remote!alice@example.test")),
    (True, "alice%remote.example@example.test", None),            # routed: no local user check
])
def test_check_rcpt(tmp_path: Path, trusted: bool, recipient: str, expected: str | None) -> None:
    assert policy(tmp_path).check_rcpt(recipient, trusted) == expected


def test_client_trusted(tmp_path: Path) -> None:
    p = policy(tmp_path)
    assert p.client_trusted("192.0.2.77") is True
    assert p.client_trusted("198.51.100.1") is False


def test_unknown_user_code_and_table_name(tmp_path: Path) -> None:
    p = policy(tmp_path, "unknown_local_recipient_reject_code = 450\nshow_user_unknown_table_name = no\n")
    assert p.check_rcpt("carol@example.test", False) == \
        "450 4.1.1 <carol@example.test>: Recipient address rejected: User unknown"


def test_alias_table_and_system_passwd(tmp_path: Path) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("info: alice\n")
    alias_build(f"hash:{aliases}", hostname="mx.example.test")
    p = policy(tmp_path, f"alias_maps = hash:{aliases}\n", users=None)   # the real passwd database
    assert p.check_rcpt("root@example.test", False) is None
    assert p.check_rcpt("info@example.test", False) is None
    assert p.check_rcpt("no-such-user-here@example.test", False) == unknown("no-such-user-here@example.test")


def test_missing_alias_table_defers_instead_of_rejecting(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    p = policy(tmp_path, f"alias_maps = hash:{tmp_path}/aliases\n")
    assert "local_recipient_maps: hash:" in caplog.text
    assert p.check_rcpt("alice@example.test", False) is None          # found in passwd
    assert p.check_rcpt("info@example.test", False) == \
        "451 4.3.0 <info@example.test>: Temporary lookup failure"


def test_empty_local_recipient_maps_disables_the_check(tmp_path: Path) -> None:
    assert policy(tmp_path, "local_recipient_maps =\n").check_rcpt("anyone@example.test", False) is None


def test_nis_is_skipped_and_unknown_types_are_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "main.cf").write_text(MAIN_CF)
    cfg = load_config(tmp_path, hostname="mx.example.test", interfaces=INTERFACES)
    assert recipient_maps_open(["nis:mail.aliases"], cfg, USERS) == []
    assert "NIS is not supported" in caplog.text
    with pytest.raises(ConfigError, match="unsupported dictionary type: ldap:/etc/x"):
        recipient_maps_open(["ldap:/etc/x"], cfg, USERS)


def test_lookup_key_order(tmp_path: Path) -> None:
    p = policy(tmp_path, "local_recipient_maps = inline:{@example.test=catchall}\n")
    assert p.check_rcpt("whoever@example.test", False) is None          # @domain is the last key
    p = policy(tmp_path, "local_recipient_maps = inline:{carol+x@example.test=1}\n")
    assert p.check_rcpt("carol+x@example.test", False) is None
    assert p.check_rcpt("carol+y@example.test", False) == unknown("carol+y@example.test")


def test_literal_normalize() -> None:
    assert literal_normalize("[IPv6:2001:DB8:0::25]") == "[ipv6:2001:db8::25]"
    assert literal_normalize("[192.0.2.1]") == "[192.0.2.1]"
    assert literal_normalize("[junk]") == "[junk]"


def test_relay_domains_lookup_failure_defers(tmp_path: Path) -> None:
    p = policy(tmp_path, f"relay_domains = relay.example hash:{tmp_path}/missing\n")
    assert p.check_rcpt("x@relay.example", False) is None
    assert p.check_rcpt("alice@example.test", False) is None            # final: relay_domains not asked
    assert p.check_rcpt("x@remote.example", False) == "451 4.3.0 <x@remote.example>: Temporary lookup failure"
    assert p.check_rcpt("x@remote.example", True) is None


def test_mynetworks_lookup_failure(tmp_path: Path) -> None:
    p = policy(tmp_path, f"mynetworks = 192.0.2.0/24 cidr:{tmp_path}/missing\n")
    assert p.client_trusted("192.0.2.9") is True
    assert p.client_trusted("198.51.100.1") is None
    assert p.check_rcpt("alice@example.test", None) == "451 4.3.0 <alice@example.test>: Temporary lookup failure"
