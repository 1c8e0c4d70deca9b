"""Checks of the chroot jail under queue_directory: ownership, completeness, freshness (seed 7.5.6, LINUX2)."""

from __future__ import annotations

from typing import Any

import pytest

from harden.checks import check
from harden.checks.facts import Facts, mta_facts


def _jailed(host: Any) -> Facts:
    facts = mta_facts(host)
    if not any(len(row) >= 8 and row[4] == "y" for row in facts.master):  # "-" is n since Postfix 3.0
        pytest.skip("no service in master.cf runs chrooted: there is no jail to check")
    return facts


@check("MTA-JAIL-01", "the jail's bin, etc, lib and usr are owned by root and not writable by others",
       severity="high",
       rationale="A chrooted daemon runs as mail_owner. If mail_owner (or anyone but root) owns or may write "
                 "a file the jail's libraries or name service read, a compromised daemon can replace it and "
                 "keep control across restarts; the usual mistake is a recursive chown postfix:postdrop.",
       remediation="chown -R root:root QUEUE/{bin,etc,lib,usr} and chmod go-w on them (harden provision "
                   "rebuilds the jail with the right owners).",
       refs=("Postfix examples/chroot-setup/LINUX2", "seed 7.5.6"))
def test_jail_owned_by_root(host: Any) -> None:
    facts = _jailed(host)
    bad = [f"{path} ({st.user}:{st.group} {st.mode:o})" for path, st in sorted(facts.jail.items())
           if st.uid != 0 or st.gid != 0 or (st.writable_by_others and st.kind != "l")]
    assert not bad, f"{len(bad)} jail path(s) not root:root or writable by others: " + ", ".join(bad[:5])


@check("MTA-JAIL-02", "every file the chrooted daemons need is in the jail", severity="medium",
       rationale="Without the LINUX2 files (etc/hosts, resolv.conf, nsswitch.conf, services, localtime, "
                 "passwd, the NSS and resolver libraries) a chrooted smtpd cannot name its clients, find "
                 "users or log in local time.",
       remediation="Copy the missing files from / into the jail (harden provision does).",
       refs=("Postfix examples/chroot-setup/LINUX2",))
def test_jail_complete(host: Any) -> None:
    facts = _jailed(host)
    missing = [p for p in facts.jail_expected() if p not in facts.jail]
    assert not missing, f"missing from {facts.queue_directory}: " + ", ".join(missing)


@check("MTA-JAIL-03", "the jail's copies match their counterparts in /", severity="medium",
       rationale="A stale copy (resolv.conf after a change of name servers is the classic one) makes the "
                 "chrooted daemons resolve, or trust, what the host no longer does.",
       remediation="Copy the files again after every change in /etc (Debian's init script does it at each "
                   "start; harden provision does it on every run).",
       refs=("Postfix examples/chroot-setup/LINUX2", "Debian configure-instance.sh"))
def test_jail_fresh(host: Any) -> None:
    facts = _jailed(host)
    assert not facts.jail_differs, ("differ from their counterpart in /: "
                                    + ", ".join(f"{facts.queue_directory}/{p}" for p in facts.jail_differs))
