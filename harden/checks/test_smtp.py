"""Checks of the SMTP service: live probes from the auditing machine and the anti-UCE settings (seed 7.5.8)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from harden.checks import check
from harden.checks.facts import Facts, mta_facts
from harden.checks.probe import Probe, host_probe, networks_too_wide

INTERFACES_ATTRIBUTE = "_harden_interfaces"
RECIPIENT_LIMIT_MAX = 250
SOFTWARE = re.compile(r"postfix|sendmail|exim|qmail|courier|microsoft|exchange|debian|ubuntu|\bmta\b|"
                      r"\d+\.\d+(\.\d+)?", re.I)
ACCESS_CHECKS = ("check_client_access", "check_helo_access", "check_sender_access", "check_recipient_access")
SANITY = ("reject_non_fqdn_sender", "reject_non_fqdn_recipient", "reject_non_fqdn_helo_hostname",
          "reject_invalid_helo_hostname", "reject_unknown_sender_domain", "reject_unknown_recipient_domain",
          "reject_unknown_client_hostname", "reject_unknown_reverse_client_hostname", "reject_rbl_client",
          "reject_rhsbl_client", "reject_rhsbl_sender", "reject_maps_rbl", "reject_unauth_pipelining")
LISTS = ("smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions",
         "smtpd_relay_restrictions", "smtpd_recipient_restrictions")


def _probe(host: Any) -> Probe:
    mta_facts(host)
    p = host_probe(host)
    if p.error and not p.banner:
        raise ConnectionError(f"no SMTP session with {p.address}:25: {p.error}")
    return p


@check("SMTP-BANNER-01", "the SMTP greeting names no software or version", severity="low",
       rationale="A banner that names the MTA and its version tells an attacker which exploits to try.",
       remediation="smtpd_banner = $myhostname ESMTP",
       refs=("seed 7.5.4",))
def test_banner(host: Any) -> None:
    p = _probe(host)
    text = p.banner.split(None, 1)[1] if " " in p.banner.strip() else ""
    found = SOFTWARE.search(text)
    assert found is None, f"the greeting '220 {p.banner}' names {found.group(0)!r}" if found else ""


@check("SMTP-VRFY-01", "VRFY is refused", severity="medium",
       rationale="VRFY lets anyone test which local accounts exist: a harvesting aid for spammers and "
                 "password guessers.",
       remediation="disable_vrfy_command = yes",
       refs=("seed 7.5.4", "RFC 5321 section 3.5.3"))
def test_vrfy(host: Any) -> None:
    p = _probe(host)
    code, text = p.vrfy
    assert 500 <= code < 600, f"VRFY root answered {code} {text}"


@check("SMTP-RELAY-01", "the server does not relay for outsiders, whatever the address form", severity="critical",
       rationale="An open relay is abused for spam within hours and gets the gateway's address listed; "
                 "routed forms (percent hack, bang paths, source routes) are the classic way around a "
                 "naive relay check.",
       remediation="mynetworks = only your own networks; smtpd_relay_restrictions = permit_mynetworks, "
                   "reject_unauth_destination",
       refs=("seed 7.5.8", "RFC 5321 section 3.9", "RHEL 7 STIG RHEL-07-040680 (V-72297)"))
def test_no_open_relay(host: Any) -> None:
    facts = mta_facts(host)
    p = _probe(host)
    wide = networks_too_wide(facts)
    if p.source_trusted and not wide:
        pytest.skip(f"the probe's source address {p.source} is inside mynetworks, so relaying from it is "
                    "allowed by design; audit from outside")
    problems = [f"mynetworks trusts {', '.join(wide)}"] if wide else []
    problems += [f"RCPT TO:<{rcpt}> accepted ({code})" for rcpt, code, _ in p.relayed]
    assert not problems, f"open relay for {p.source}: " + "; ".join(problems)


@check("SMTP-LIMIT-01", f"smtpd_recipient_limit is at most {RECIPIENT_LIMIT_MAX}", severity="low",
       rationale="One message to thousands of recipients is a spam run or a mailing list; lists belong on a "
                 "list server. The seed recommends 250 at most.",
       remediation=f"smtpd_recipient_limit = {RECIPIENT_LIMIT_MAX}",
       refs=("seed 7.5.8",))
def test_recipient_limit(host: Any) -> None:
    facts = mta_facts(host)
    value = facts.params.get("smtpd_recipient_limit", "1000")
    assert value.isdigit() and int(value) <= RECIPIENT_LIMIT_MAX, f"smtpd_recipient_limit = {value}"


@check("SMTP-MASQ-01", "masquerade_domains is set", severity="low",
       rationale="Without masquerading, outgoing mail shows internal host names (seed 7.5.5).",
       remediation="masquerade_domains = $mydomain (and masquerade_exceptions = root)",
       refs=("seed 7.5.5",))
def test_masquerading(host: Any) -> None:
    facts = mta_facts(host)
    assert facts.param_list("masquerade_domains"), "masquerade_domains is empty"


@check("SMTP-UCE-01", "anti-UCE restrictions are in place", severity="medium",
       rationale="Relay control alone accepts any junk for local users; the seed asks at least for an access "
                 "table and checks of the sender and recipient.",
       remediation="Add check_recipient_access/check_sender_access hash:/etc/postfix/access and "
                   "reject_non_fqdn_sender, reject_non_fqdn_recipient (or DNSBLs) to the restriction lists.",
       refs=("seed 7.5.8",))
def test_anti_uce(host: Any) -> None:
    facts = mta_facts(host)
    words = {w.lower() for name in LISTS for w in facts.param_list(name)}
    missing = []
    if not words & {"reject_unauth_destination", "defer_unauth_destination"}:
        missing.append("reject_unauth_destination")
    if not words & set(ACCESS_CHECKS):
        missing.append("an access table (check_*_access)")
    if not words & set(SANITY):
        missing.append("a sender, recipient, HELO or client check (reject_non_fqdn_*, reject_unknown_*, DNSBL)")
    assert not missing, "missing: " + "; ".join(missing)


def _expected_listeners(host: Any, facts: Facts) -> set[str] | None:
    """The addresses port 25 may listen on; None means every address ("all")."""
    given = getattr(host, INTERFACES_ATTRIBUTE, None)
    words = list(given) if given else facts.param_list("inet_interfaces")
    if not words or "all" in words:
        return None
    out = set()
    for word in words:
        out |= {"127.0.0.1", "::1"} if word == "loopback-only" else {word.strip("[]")}
    return out


@check("SMTP-LISTEN-01", "SMTP listens only on the intended addresses", severity="medium",
       rationale="A gateway that also listens on an internal or management address offers its SMTP server "
                 "where nobody expects one.",
       remediation="inet_interfaces = the inventory's addresses only; reload or restart the MTA.",
       refs=("seed 7.5.3", "CIS Debian 12 2.1.21 (MTA local-only mode; a gateway is the mail server it "
                           "exempts, so this check holds it to the inventory's addresses instead)"))
def test_listen(host: Any) -> None:
    facts = mta_facts(host)
    expected = _expected_listeners(host, facts)
    ports = [a for a in facts.listening if a.rsplit(":", 1)[-1] == "25"]
    if not ports:
        pytest.skip("nothing of the host's own listens on port 25")
    if expected is None:
        return
    extra = [a for a in ports if a.rsplit(":", 1)[0].strip("[]") not in expected]
    assert not extra, f"port 25 also listens on {', '.join(extra)} (expected {', '.join(sorted(expected))})"


@check("SMTP-TLS-01", "STARTTLS is offered with TLS 1.2 or newer only", severity="medium",
       rationale="Where the inventory enables TLS, mail must be encryptable with a protocol version that "
                 "is not broken; TLS 1.0 and 1.1 are (RFC 8996).",
       remediation="smtpd_tls_security_level = may, smtpd_tls_cert_file/key_file set, "
                   "smtpd_tls_protocols = >=TLSv1.2",
       refs=("RFC 8996", "RFC 3207"))
def test_tls(host: Any) -> None:
    facts = mta_facts(host)
    level = facts.params.get("smtpd_tls_security_level", "").lower()
    if level not in ("may", "encrypt", "dane", "verify", "secure"):
        pytest.skip("TLS is not enabled for smtpd on this host")
    p = _probe(host)
    assert any("STARTTLS" in line.upper() for line in p.ehlo), "STARTTLS is not offered"
    assert p.tls_version in ("TLSv1.2", "TLSv1.3"), f"no TLS 1.2+ handshake: {p.tls_error or p.tls_version}"
    assert not p.tls_old_accepted, f"a {p.tls_old_accepted} handshake is accepted"
