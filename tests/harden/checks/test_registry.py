"""Tests for harden.checks: every check has an ID, texts and a severity; IDs are unique; the issue's list is there."""

from __future__ import annotations

import pytest

from harden.checks import SEVERITIES, check, checks_all


def test_every_check_is_documented() -> None:
    found = checks_all()
    ids = [c.id for c in found]
    assert len(ids) == len(set(ids)) >= 20
    for c in found:
        assert c.title and c.rationale and c.remediation and c.severity in SEVERITIES, c.id
        assert c.function.__name__.startswith("test_")  # plain pytest collects it
    # The controls issue 7 names, one check each at least.
    for wanted in ("MTA-JAIL-01", "MTA-JAIL-02", "MTA-JAIL-03", "MTA-CHROOT-01", "MTA-CHROOT-02", "MTA-PROC-01",
                   "MTA-PROC-02", "MTA-PROC-03", "MTA-ALIAS-01", "MTA-ALIAS-02", "MTA-ALIAS-03", "MTA-ALIAS-04",
                   "MTA-CONF-01", "MTA-QUEUE-01", "MTA-CHECK-01", "SMTP-BANNER-01", "SMTP-VRFY-01",
                   "SMTP-RELAY-01", "SMTP-LIMIT-01", "SMTP-MASQ-01", "SMTP-UCE-01", "SMTP-LISTEN-01", "SMTP-TLS-01"):
        assert wanted in ids


def test_bad_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="severity must be one of"):
        check("X-1", "t", severity="urgent", rationale="r", remediation="m")
