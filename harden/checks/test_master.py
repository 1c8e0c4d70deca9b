"""Checks of master.cf's chroot column and of the running daemons' jail and user (master(5), seed 7.5.6)."""

from __future__ import annotations

import posixpath
from typing import Any

import pytest

from harden.checks import check
from harden.checks.facts import Facts, mta_facts

NEVER_CHROOTED = ("local", "virtual", "pipe")


def _rows(facts: Facts) -> list[list[str]]:
    return [row for row in facts.master if len(row) >= 8]


@check("MTA-CHROOT-01", "local, virtual and pipe are not chrooted", severity="high",
       rationale="These agents deliver as the recipient into the real file system (mailboxes, commands, "
                 "home directories); chrooted they fail or, worse, deliver into the jail. master(5) forbids it.",
       remediation="Set the chroot column of the local, virtual and pipe rows of master.cf to n, then reload.",
       refs=("master(5)",))
def test_delivery_agents_not_chrooted(host: Any) -> None:
    facts = mta_facts(host)
    bad = [f"{row[0]} ({row[7]})" for row in _rows(facts)
           if posixpath.basename(row[7]) in NEVER_CHROOTED and row[4] == "y"]
    assert not bad, "chrooted in master.cf: " + ", ".join(bad)


@check("MTA-CHROOT-02", "smtpd and the other Internet-facing services are chrooted", severity="high",
       rationale="On a firewall or DMZ gateway the SMTP server talks to anyone; chrooted to the queue "
                 "directory, a compromised smtpd sees only the jail.",
       remediation="Set the chroot column of every inet service (smtp, submission, smtps) to y and build the "
                   "jail (harden provision does both).",
       refs=("seed 7.5.6",))
def test_internet_services_chrooted(host: Any) -> None:
    facts = mta_facts(host)
    inet = [row for row in _rows(facts) if row[1] == "inet"]
    if not inet:
        pytest.skip("master.cf has no inet service")
    bad = [f"{row[0]} ({row[7]})" for row in inet if row[4] != "y"]
    assert not bad, "not chrooted in master.cf: " + ", ".join(bad)


@check("MTA-PROC-01", "the running smtpd is jailed and runs as mail_owner", severity="high",
       rationale="master.cf says what should happen; /proc says what did. A daemon started before a "
                 "configuration change, or by hand, may run unjailed or as root.",
       remediation="Reload or restart the MTA so every smtpd is started from the current master.cf; check "
                   "that mail_owner names an unprivileged account.",
       refs=("seed 7.5.6",))
def test_smtpd_jailed(host: Any) -> None:
    facts = mta_facts(host)
    smtpd = [p for p in facts.processes if p.name == "smtpd"]
    if not smtpd:
        pytest.skip("no smtpd process was running while the facts were gathered")
    owner = facts.passwd.get(facts.params.get("mail_owner", "postfix"), (-1, -1, ""))[0]
    chrooted = any(row[4] == "y" for row in _rows(facts) if posixpath.basename(row[7]) == "smtpd")
    bad = [f"pid {p.pid}: root {p.root}, uid {p.uid}" for p in smtpd
           if p.uid != owner or (chrooted and p.root.rstrip("/") != facts.queue_directory.rstrip("/"))]
    assert not bad, f"smtpd not jailed in {facts.queue_directory} as uid {owner}: " + "; ".join(bad)


@check("MTA-PROC-02", "local and pipe processes are not jailed", severity="medium",
       rationale="A local or pipe process inside the jail cannot reach mailboxes or commands: mail is "
                 "deferred or bounced.",
       remediation="Fix the chroot column (MTA-CHROOT-01) and restart the MTA.",
       refs=("master(5)",))
def test_delivery_processes_not_jailed(host: Any) -> None:
    facts = mta_facts(host)
    agents = [p for p in facts.processes if p.name in NEVER_CHROOTED]
    if not agents:
        pytest.skip("no local, virtual or pipe process was running while the facts were gathered")
    bad = [f"{p.name} pid {p.pid} in {p.root}" for p in agents if p.root != "/"]
    assert not bad, "jailed delivery agents: " + ", ".join(bad)


@check("MTA-PROC-03", "the master process runs as root", severity="medium",
       rationale="Only a root master can bind port 25, chroot its children and switch them to mail_owner; "
                 "a master started as another user runs every daemon unjailed with its rights.",
       remediation="Start the MTA as root (mta start, postfix start, or its service unit).",
       refs=("master(8)",))
def test_master_root(host: Any) -> None:
    facts = mta_facts(host)
    masters = [p for p in facts.processes if p.name == "master"]
    if not masters:
        pytest.skip("the MTA's master process is not running")
    bad = [f"pid {p.pid} uid {p.uid}" for p in masters if p.uid != 0]
    assert not bad, "master not running as root: " + ", ".join(bad)
