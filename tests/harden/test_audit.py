"""harden audit on the lab: provisioned hosts pass, one broken five ways fails exactly those five checks,
and a host running Debian's Postfix is audited through its own postconf."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import date
from pathlib import Path

import pytest

from harden.audit import ERROR, FAIL, PASS, SKIP, audit, audit_run, exit_status
from harden.checks import checks_all
from harden.checks.facts import facts_command, facts_parse, tools_command
from harden.inventory import inventory_load
from harden.lab import postfix as lab_postfix
from harden.lab.fleet import run_on_host
from harden.provision import provision
from harden.transport import transport_for
from tests.conftest import LabFixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")
REPO = Path(__file__).resolve().parents[2]

BREAKAGES = {
    "MTA-JAIL-01": "chown postfix:postdrop /var/spool/postfix/etc",
    "MTA-JAIL-03": "echo 'nameserver 192.0.2.53' >> /var/spool/postfix/etc/resolv.conf",
    "MTA-CHROOT-01": "awk '$1 == \"local\" && $2 == \"unix\" {$5 = \"y\"} {print}' /etc/postfix/master.cf "
                     "> /tmp/master.cf && cat /tmp/master.cf > /etc/postfix/master.cf",
    "MTA-ALIAS-01": "sed -i 's/^root:.*/root: root/' /etc/postfix/aliases && mta -c /etc/postfix newaliases",
    "SMTP-RELAY-01": "mta -c /etc/postfix postconf -e 'mynetworks = 0.0.0.0/0'",
}


# What a fresh Debian Postfix (Internet Site) gets wrong by the seed's standard, and nothing else.
POSTFIX_FAILS = {"MTA-ALIAS-01", "SMTP-BANNER-01", "SMTP-VRFY-01", "SMTP-LIMIT-01", "SMTP-MASQ-01", "SMTP-UCE-01"}


def test_good_broken_and_real_postfix_hosts(fresh_lab: LabFixture) -> None:
    """Issue 7: 2 provisioned hosts pass, 1 broken five ways fails those five, 1 real Postfix is read right."""
    lab = fresh_lab
    inv = inventory_load(lab.dir / "inventory.yml")
    provisioned = provision(inv, "gw1*,gw2*,gw3*")
    assert [r.status for r in provisioned] == ["changed"] * 3
    # Provisioning audits what it changed: every host passes as provisioned.
    assert all(r.audit is not None and r.audit["pass"] >= 18 and r.findings == [] for r in provisioned), \
        [(r.audit, r.findings) for r in provisioned]
    lab.ssh("gw3", " && ".join(BREAKAGES.values()) + " && mta -c /etc/postfix reload")
    gw4 = lab.hosts[3]
    lab_postfix.postfix_install(lab.dir, gw4, lambda h, script: run_on_host(lab.dir, h, script))
    started = time.monotonic()
    first, second, broken, postfix = audit(inv)
    elapsed = time.monotonic() - started
    assert not any(a.unreachable for a in (first, second, broken, postfix))
    for good in (first, second):
        assert {r.check.id: r.message for r in good.results if r.status in (FAIL, ERROR)} == {}
        assert good.count(PASS) >= 18  # the rest are skipped, each with a reason
        assert all(r.message for r in good.results if r.status == SKIP)
    failed = {r.check.id: r.message for r in broken.results if r.status in (FAIL, ERROR)}
    assert sorted(failed) == sorted(BREAKAGES), failed
    assert "etc (postfix:postdrop 755)" in failed["MTA-JAIL-01"]
    assert "/var/spool/postfix/etc/resolv.conf" in failed["MTA-JAIL-03"]
    assert "local (local)" in failed["MTA-CHROOT-01"]
    assert "root (privileged or mail_owner)" in failed["MTA-ALIAS-01"]
    assert "mynetworks trusts 0.0.0.0/0" in failed["SMTP-RELAY-01"] and "accepted" in failed["SMTP-RELAY-01"]
    # Debian's Postfix, read through its own postconf: chroot, jail, queue modes and relay control are
    # right out of the box; the banner, VRFY, root's alias and the anti-UCE settings are not.
    statuses = {r.check.id: r.status for r in postfix.results}
    assert {c for c, s in statuses.items() if s in (FAIL, ERROR)} == POSTFIX_FAILS, statuses
    for passing in ("MTA-CHROOT-01", "MTA-CHROOT-02", "MTA-PROC-01", "MTA-PROC-03", "MTA-JAIL-01", "MTA-JAIL-02",
                    "MTA-JAIL-03", "MTA-QUEUE-01", "MTA-CONF-01", "SMTP-RELAY-01", "SMTP-LISTEN-01"):
        assert statuses[passing] == PASS, passing
    banner = next(r.message for r in postfix.results if r.check.id == "SMTP-BANNER-01")
    assert "ESMTP Postfix (Debian/GNU)" in banner
    assert exit_status([first, second]) == 0 and exit_status([first, broken]) == 1
    assert elapsed < 30


def test_facts_from_the_rollouts_tools_output_match_a_fresh_read(fresh_lab: LabFixture) -> None:
    """harden rollout hands the audit its validation's tools output: the facts and verdicts of a fresh read."""
    lab = fresh_lab
    inv = inventory_load(lab.dir / "inventory.yml")
    [host] = inv.select("gw2*")
    assert provision(inv, "gw2*", audit_after=False)[0].status == "changed"
    lab.ssh("gw2", f"{BREAKAGES['MTA-ALIAS-01']} && {BREAKAGES['MTA-JAIL-03']} && chmod g+w /etc/postfix/main.cf")
    t = transport_for(host)
    try:
        tools = t.run(tools_command()).stdout
        fresh = facts_parse(t.run(facts_command()).stdout)
        given = facts_parse(t.run(facts_command(tools_given=True), stdin=tools.encode()).stdout)
        assert fresh.check_status == 1 and any("writable: /etc/postfix/main.cf" in line for line in fresh.check_output)
        assert fresh.aliases["hash:/etc/postfix/aliases"]["root"] == "root" and fresh.master and fresh.params
        assert {(p.name, p.uid, p.root) for p in given.processes} == {(p.name, p.uid, p.root) for p in fresh.processes}
        given.processes = fresh.processes = []
        assert given == fresh
        checks = checks_all()
        plain, reused = (audit_run(host, t, checks, [], date.today(), output) for output in (None, tools))
    finally:
        t.close()
    verdicts = {r.check.id: r.status for r in plain.results}
    assert {r.check.id: r.status for r in reused.results} == verdicts
    assert {"MTA-ALIAS-01", "MTA-JAIL-03"} <= {c for c, status in verdicts.items() if status == FAIL}


def test_cli_reports_and_exit_status(lab: LabFixture, tmp_path: Path) -> None:
    inv = inventory_load(lab.dir / "inventory.yml")
    assert provision(inv, "gw3*")[0].status in ("ok", "changed")
    harden = str(REPO / ".venv/bin/harden")
    done = subprocess.run([harden, "audit", "-i", str(lab.dir / "inventory.yml"), "-l", "gw3*", "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    report = json.loads(done.stdout)
    [host] = report["hosts"]
    assert host["host"] == "gw3.lab.example" and report["summary"]["fail"] == 0
    assert {"id", "title", "severity", "status", "message", "remediation"} <= set(host["checks"][0])
    # A failure, then the same failure waived (and an expired waiver that no longer applies).
    lab.ssh("gw3", "mta -c /etc/postfix postconf -e 'smtpd_banner = $myhostname ESMTP Postfix (Debian/GNU)' && "
                   "mta -c /etc/postfix reload")
    try:
        junit = tmp_path / "audit.xml"
        done = subprocess.run([harden, "audit", "-i", str(lab.dir / "inventory.yml"), "-l", "gw3*",
                               "--format", "junit", "-o", str(junit)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert 'classname="SMTP-BANNER" name="SMTP-BANNER-01' in junit.read_text() and "<failure" in junit.read_text()
        waivers = tmp_path / "waivers.yml"
        waivers.write_text("- id: SMTP-BANNER-01\n  hosts: 'gw3*'\n  justification: relay partner needs it\n"
                           "  expires: 2999-12-31\n")
        wide = dict(os.environ, COLUMNS="250")  # the table's cells unfolded
        done = subprocess.run([harden, "audit", "-i", str(lab.dir / "inventory.yml"), "-l", "gw3*",
                               "--waivers", str(waivers)], capture_output=True, text=True, timeout=120, env=wide)
        assert done.returncode == 0, done.stdout
        assert "waived" in done.stdout and "relay partner needs it" in done.stdout
        waivers.write_text("- id: SMTP-BANNER-01\n  hosts: 'gw3*'\n  justification: relay partner needs it\n"
                           "  expires: 2020-01-01\n")
        done = subprocess.run([harden, "audit", "-i", str(lab.dir / "inventory.yml"), "-l", "gw3*",
                               "--waivers", str(waivers)], capture_output=True, text=True, timeout=120, env=wide)
        assert done.returncode == 1 and "expired waiver" in done.stdout
    finally:
        lab.ssh("gw3", "mta -c /etc/postfix postconf -e 'smtpd_banner = $myhostname ESMTP' && "
                       "mta -c /etc/postfix reload")


def test_plain_pytest_runs_the_same_checks(lab: LabFixture) -> None:
    """The checks are testinfra modules: plain pytest with testinfra's ssh backend runs them too."""
    inv = inventory_load(lab.dir / "inventory.yml")
    assert provision(inv, "gw3*")[0].status in ("ok", "changed")
    done = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--hosts=ssh://gw3.lab.example", f"--ssh-config={lab.dir / 'ssh_config'}",
         str(REPO / "harden/checks")],
        capture_output=True, text=True, timeout=300, cwd=REPO / "harden")
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_tls_is_probed_where_enabled(lab: LabFixture) -> None:
    inv = inventory_load(lab.dir / "inventory.yml")
    assert provision(inv, "gw1*", audit_after=False)[0].status in ("ok", "changed")
    lab.ssh("gw1", "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=gw1.lab.example "
                   "-keyout /etc/postfix/tls.key -out /etc/postfix/tls.crt 2>/dev/null && chmod 600 /etc/postfix/tls.key "
                   "&& mta -c /etc/postfix postconf -e 'smtpd_tls_security_level = may' "
                   "'smtpd_tls_cert_file = /etc/postfix/tls.crt' 'smtpd_tls_key_file = /etc/postfix/tls.key' "
                   "&& mta -c /etc/postfix reload")
    try:
        time.sleep(0.5)  # new smtpd processes after the reload
        [gw1] = audit(inv, "gw1*")
        [tls] = [r for r in gw1.results if r.check.id == "SMTP-TLS-01"]
        assert tls.status == PASS, tls.message  # STARTTLS offered, TLS 1.2+ agreed, TLS 1.1 refused
    finally:
        lab.ssh("gw1", "mta -c /etc/postfix postconf -X smtpd_tls_security_level smtpd_tls_cert_file "
                       "smtpd_tls_key_file && mta -c /etc/postfix reload", check=False)
