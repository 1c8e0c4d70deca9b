"""Tests for mta.smtpd.restrictions beyond the golden transcripts: parsing, startup refusal, edge semantics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from mta.config import load_config
from mta.dns_lookup import DnsClient
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
from tests.dns_server import DnsServer
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


def test_warn_if_reject_only_logs(tmp_path: Path) -> None:
    r = restrictions(tmp_path, "smtpd_recipient_restrictions = warn_if_reject reject_non_fqdn_recipient, "
                               "reject_unauth_destination\n")
    assert r.check([RECIPIENT], state(recipient="alice@example")) is not None  # unauth destination still rejects
    assert r.check([RECIPIENT], state(recipient="alice@example.test")) is None
    r2 = restrictions(tmp_path, "smtpd_sender_restrictions = warn_if_reject reject_non_fqdn_sender\n")
    judged = state(sender="nodomain")
    assert r2.check([SENDER], judged) is None
    assert judged.events == [("reject_warning",
                              "504 5.5.2 <nodomain>: Sender address rejected: need fully-qualified address")]


ACTIONS = ("smtpd_sender_restrictions = check_sender_access inline:{ {x@discard.example=DISCARD}, "
           "{x@text.example=DISCARD spam run}, {x@hold.example=HOLD}, {x@dip.example=DEFER_IF_PERMIT}, "
           "{x@dir.example=DEFER_IF_REJECT not today}, {x@warn.example=WARN look here} }\n"
           "smtpd_recipient_restrictions = check_sender_access inline:{ {x@dir2.example=defer_if_reject} }, "
           "check_recipient_access inline:{ {nobody@example.test=REJECT} }\n")


def test_discard_accepts_everything_after_it(tmp_path: Path) -> None:
    r = restrictions(tmp_path, ACTIONS)
    judged = state(sender="x@discard.example", recipient="alice@example.test")
    assert r.check(r.rcpt_stages(), judged) is None
    assert judged.discard and judged.events == [
        ("discard", "<x@discard.example>: Sender address triggers DISCARD action")]
    # The mark carries over: a relay recipient of the same transaction is not even judged.
    later = state(sender="x@discard.example", recipient="bob@elsewhere.example", discard=True)
    assert r.check(r.rcpt_stages(), later) is None and later.events == []
    assert r.check(r.rcpt_stages(), state(sender="x@ok.example", recipient="bob@elsewhere.example")) == \
        "454 4.7.1 <bob@elsewhere.example>: Relay access denied"
    text = state(sender="x@text.example", recipient="alice@example.test")
    r.check(r.rcpt_stages(), text)
    assert text.events == [("discard", "<x@text.example>: Sender address spam run")]


def test_hold_marks_once_and_goes_on(tmp_path: Path) -> None:
    r = restrictions(tmp_path, ACTIONS)
    first = state(sender="x@hold.example", recipient="alice@example.test")
    assert r.check(r.rcpt_stages(), first) is None
    assert first.hold and first.events == [("hold", "<x@hold.example>: Sender address triggers HOLD action")]
    second = state(sender="x@hold.example", recipient="bob@elsewhere.example", hold=True)
    assert r.check(r.rcpt_stages(), second) == "454 4.7.1 <bob@elsewhere.example>: Relay access denied"
    assert second.events == []  # logged once per transaction


def test_defer_if_permit_and_defer_if_reject(tmp_path: Path) -> None:
    r = restrictions(tmp_path, ACTIONS)
    # DEFER_IF_PERMIT: an acceptance (after every list) becomes 450; a reject still wins.
    assert r.check(r.rcpt_stages(), state(sender="x@dip.example", recipient="alice@example.test")) == \
        "450 4.7.1 <x@dip.example>: Sender address rejected: Service unavailable"
    assert r.check(r.rcpt_stages(), state(sender="x@dip.example", recipient="nobody@example.test")) == \
        "554 5.7.1 <nobody@example.test>: Recipient address rejected: Access denied"
    # DEFER_IF_REJECT in the sender list does not reach a reject of the recipient list ...
    assert r.check(r.rcpt_stages(), state(sender="x@dir.example", recipient="nobody@example.test")) == \
        "554 5.7.1 <nobody@example.test>: Recipient address rejected: Access denied"
    # ... but within one list a later 5xx becomes its 450, and it stays for the unknown-user check.
    assert r.check(r.rcpt_stages(), state(sender="x@dir2.example", recipient="nobody@example.test")) == \
        "450 4.7.1 <x@dir2.example>: Sender address rejected: Service unavailable"
    pending = state(sender="x@dir2.example", recipient="alice@example.test")
    assert r.check(r.rcpt_stages(), pending) is None
    assert pending.defer_if_reject == "450 4.7.1 <x@dir2.example>: Sender address rejected: Service unavailable"
    warned = state(sender="x@warn.example", recipient="alice@example.test")
    assert r.check(r.rcpt_stages(), warned) is None and warned.events == [("warn", "look here")]


def test_bare_defer_if_permit(tmp_path: Path) -> None:
    r = restrictions(tmp_path, "smtpd_client_restrictions = defer_if_permit\n")
    assert r.check(r.rcpt_stages(), state(recipient="alice@example.test")) == \
        "450 4.7.0 <unknown[192.0.2.9]>: Client host rejected: defer_if_permit requested"
    assert r.check(r.rcpt_stages(), state(recipient="bob@elsewhere.example")) == \
        "454 4.7.1 <bob@elsewhere.example>: Relay access denied"


def test_unknown_client_hostname_restrictions(tmp_path: Path) -> None:
    r = restrictions(tmp_path, "smtpd_client_restrictions = reject_unknown_reverse_client_hostname, "
                               "reject_unknown_client_hostname\n")
    assert r.check(["client"], state()) == \
        "450 4.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.9]"
    assert r.check(["client"], state(reverse_name="ptr.example")) == \
        "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.9]"
    assert r.check(["client"], state(client_name="ptr.example", reverse_name="ptr.example")) is None


# -- DNS restrictions, against the test DNS server -------------------------------------------

RBL_RECORDS = {
    ("9.2.0.192.rbl.test", "A"): ["127.0.0.2"],
    ("9.2.0.192.rbl.test", "TXT"): ['"Listed: see https://rbl.test/192.0.2.9"'],
    ("9.2.0.192.other.test", "A"): ["127.0.0.10"],
    ("spammer.example.rhsbl.test", "A"): ["127.0.0.2"],
    ("good.example", "MX"): ["10 mx.good.example."],
    ("mx.good.example", "A"): ["192.0.2.25"],
}


@pytest.fixture
def dns_restrictions(tmp_path: Path) -> Iterator[Callable[[str], Restrictions]]:
    if os.geteuid() != 0:
        pytest.skip("port 53 needs root")
    server = DnsServer("127.0.0.53", RBL_RECORDS, fail={"9.2.0.192.broken.test"})
    conf = server.resolv_conf(tmp_path)

    def make(extra: str) -> Restrictions:
        (tmp_path / "main.cf").write_text(BASE_MAIN_CF + extra)
        cfg = load_config(tmp_path)
        return Restrictions(cfg, RecipientPolicy.from_config(cfg), DnsClient(str(conf), timeout=2))

    try:
        yield make
    finally:
        server.close()


def test_rbl_client(dns_restrictions: Callable[[str], Restrictions]) -> None:
    r = dns_restrictions("smtpd_client_restrictions = reject_rbl_client rbl.test\n")
    assert r.check(["client"], state()) == ("554 5.7.1 Service unavailable; Client host [192.0.2.9] blocked using "
                                            "rbl.test; Listed: see https://rbl.test/192.0.2.9")
    assert r.check(["client"], state(client_addr="192.0.2.10")) is None


@pytest.mark.parametrize("zone, listed", [("other.test=127.0.0.10", True), ("other.test=127.0.0.2", False),
                                          ("other.test=127.0.0.[2..11]", True), ("other.test=127.0.0.[2;3]", False)])
def test_rbl_client_answer_filter(dns_restrictions: Callable[[str], Restrictions], zone: str, listed: bool) -> None:
    r = dns_restrictions(f"smtpd_client_restrictions = reject_rbl_client {zone}\n")
    result = r.check(["client"], state())
    assert (result == "554 5.7.1 Service unavailable; Client host [192.0.2.9] blocked using other.test") == listed
    assert (result is None) == (not listed)


def test_rhsbl_sender_maps_rbl_and_tempfail(dns_restrictions: Callable[[str], Restrictions]) -> None:
    r = dns_restrictions("smtpd_sender_restrictions = reject_rhsbl_sender rhsbl.test\n")
    assert r.check([SENDER], state(sender="x@spammer.example")) == \
        "554 5.7.1 Service unavailable; Sender address [x@spammer.example] blocked using rhsbl.test"
    assert r.check([SENDER], state(sender="x@good.example")) is None
    maps = dns_restrictions("maps_rbl_domains = broken.test, rbl.test\nsmtpd_client_restrictions = reject_maps_rbl\n")
    # A DNSBL that does not answer (SERVFAIL) blocks nothing; the next one still does.
    assert maps.check(["client"], state()).startswith("554 5.7.1 Service unavailable; Client host [192.0.2.9] "
                                                      "blocked using rbl.test")


def test_unknown_sender_domain(dns_restrictions: Callable[[str], Restrictions]) -> None:
    r = dns_restrictions("smtpd_sender_restrictions = reject_unknown_sender_domain\n")
    assert r.check([SENDER], state(sender="x@good.example")) is None
    assert r.check([SENDER], state(sender="x@nowhere.example")) == \
        "450 4.1.8 <x@nowhere.example>: Sender address rejected: Domain not found"
    assert r.check([SENDER], state(sender="")) is None  # the null sender has no domain


def test_rbl_over_smtp(start_server: Callable[..., Any], cleanup: Any, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path: smtpd reads MTA_RESOLV_CONF before it serves, asks the test server, rejects at RCPT."""
    if os.geteuid() != 0:
        pytest.skip("port 53 needs root")
    import smtplib

    from tests.mta.smtpd.client import STRANGER

    server = DnsServer("127.0.0.53", {("2.0.0.127.rbl.test", "A"): ["127.0.0.2"]})
    try:
        monkeypatch.setenv("MTA_RESOLV_CONF", str(server.resolv_conf(tmp_path)))
        smtpd = start_server("smtpd_client_restrictions = reject_rbl_client rbl.test\n")
        with smtplib.SMTP("127.0.0.1", smtpd.port, timeout=10, source_address=STRANGER) as smtp:
            smtp.helo("c.example")
            smtp.mail("s@remote.example")
            assert smtp.rcpt("alice@example.test") == (
                554, b"5.7.1 Service unavailable; Client host [127.0.0.2] blocked using rbl.test")
        assert ("2.0.0.127.rbl.test", "A") in server.queries
    finally:
        server.close()


def test_access_answers_are_remembered(tmp_path: Path) -> None:
    """A sender, client or recipient seen before is not looked up again (its table cannot change while open)."""
    r = restrictions(tmp_path, "smtpd_sender_restrictions = check_sender_access inline:{ {bad.example=REJECT} }\n")
    [restriction] = r.lists[SENDER]
    assert restriction.table is not None
    asked: list[str] = []
    real = restriction.table.lookup

    def counting(key: str) -> str | None:
        asked.append(key)
        return real(key)

    restriction.table.lookup = counting  # type: ignore[method-assign]
    counts = []
    for _ in range(3):
        assert r.check([SENDER], state(sender="x@bad.example")) == \
            "554 5.7.1 <x@bad.example>: Sender address rejected: Access denied"
        assert r.check([SENDER], state(sender="x@good.example")) is None
        counts.append(len(asked))
    first = counts[0]
    assert first > 0 and counts == [first] * 3  # the second and third rounds asked the table nothing
    assert r.check([SENDER], state(sender="y@good.example")) is None
    assert len(asked) > first  # a new address is looked up
    restriction.table.stable = False  # a table whose answers may change is asked every time
    r._memo.clear()
    before = len(asked)
    r.check([SENDER], state(sender="x@bad.example"))
    r.check([SENDER], state(sender="x@bad.example"))
    assert len(asked) >= before + 2
