"""Checks of configuration files, the queue directory's owners and modes, and the MTA's own check command."""

from __future__ import annotations

from typing import Any

import pytest

from harden.checks import check
from harden.checks.facts import CONFIG_DIRECTORY, mta_facts

# Reference §11.3 (postfix-files): queue subdirectory -> (owner is mail_owner, group, highest mode).
QUEUE_MODES = {
    "active": (True, None, 0o700), "bounce": (True, None, 0o700), "corrupt": (True, None, 0o700),
    "defer": (True, None, 0o700), "deferred": (True, None, 0o700), "flush": (True, None, 0o700),
    "hold": (True, None, 0o700), "incoming": (True, None, 0o700), "saved": (True, None, 0o700),
    "trace": (True, None, 0o700), "private": (True, None, 0o700),
    "maildrop": (True, "setgid_group", 0o1730), "public": (True, "setgid_group", 0o2710),
    "pid": (False, None, 0o755),
}
# `mta check` / `postfix check` findings that a dedicated check already reports.
COVERED = ("not owned by root: ", "group or other writable: ", " differ", "is chrooted", "mynetworks = ",
           "chroot jail file missing", "database ", "smtpd_banner = ", "disable_vrfy_command",
           "neither smtpd_relay_restrictions", "not owned by {owner}: {queue}/", "not owned by group ")


@check("MTA-CONF-01", "main.cf and master.cf are root:root, 0644 or stricter, in a directory only root writes",
       severity="critical",
       rationale="A writable main.cf or master.cf, or a writable directory holding them, is as good as root: "
                 "master.cf names the programs the root master starts.",
       remediation="chown root:root /etc/postfix /etc/postfix/main.cf /etc/postfix/master.cf; chmod 0755 the "
                   "directory and 0644 the files.",
       refs=("postfix-files", "reference §11.3"))
def test_config_files(host: Any) -> None:
    facts = mta_facts(host)
    problems = []
    for path in (CONFIG_DIRECTORY, f"{CONFIG_DIRECTORY}/main.cf", f"{CONFIG_DIRECTORY}/master.cf"):
        st = facts.stats.get(path)
        if st is None:
            problems.append(f"{path} is missing")
        elif st.uid != 0 or st.gid != 0 or st.writable_by_others:
            problems.append(f"{path} ({st.user}:{st.group} {st.mode:o})")
    assert not problems, "; ".join(problems)


@check("MTA-QUEUE-01", "the queue directory has Postfix's owners and modes", severity="high",
       rationale="Queue files hold mail and its envelope; public/ and maildrop/ are the only ways in for "
                 "local users, through the setgid group. Wider modes leak mail or let users forge it.",
       remediation="Run 'postfix set-permissions' (Postfix) or 'harden provision' (this MTA).",
       refs=("postfix-files", "reference §11.3"))
def test_queue_modes(host: Any) -> None:
    facts = mta_facts(host)
    queue = facts.queue_directory
    top = facts.stats.get(queue)
    problems = []
    if top is None:
        pytest.skip(f"{queue} does not exist")
    if top.uid != 0 or top.writable_by_others:
        problems.append(f"{queue} ({top.user}:{top.group} {top.mode:o}), want root 755")
    owner = facts.params.get("mail_owner", "postfix")
    for name, (owned_by_mail, group, highest) in QUEUE_MODES.items():
        st = facts.stats.get(f"{queue}/{name}")
        if st is None:
            continue  # saved/ and others are made on first use
        want_owner = owner if owned_by_mail else "root"
        want_group = facts.params.get(group, "postdrop") if group else None
        if st.user != want_owner or (want_group and st.group != want_group) or st.mode & ~highest & 0o7777:
            problems.append(f"{queue}/{name} ({st.user}:{st.group} {st.mode:o}), want {want_owner}"
                            f"{':' + want_group if want_group else ''} {highest:o} or stricter")
    assert not problems, "; ".join(problems)


@check("MTA-CHECK-01", "the MTA's own check reports no other problem", severity="medium",
       rationale="'mta check' and 'postfix check' know more than this audit (damaged queue files, stale "
                 "compiled tables, symlinks leaving the configuration directory); what another check "
                 "already reports is left to it.",
       remediation="Run 'mta check' (or 'postfix check') on the host and fix each line it prints.",
       refs=("postfix(1) check",))
def test_mta_check(host: Any) -> None:
    facts = mta_facts(host)
    covered = tuple(c.format(queue=facts.queue_directory, owner=facts.params.get("mail_owner", "postfix"))
                    for c in COVERED)
    lines = [line for line in facts.check_output if "warning:" in line or "fatal:" in line]
    rest = [line for line in lines if not any(c in line for c in covered)]
    assert not rest, f"{len(rest)} finding(s): " + " | ".join(line.split(": ", 1)[-1] for line in rest[:5])
    if not lines:
        assert facts.check_status == 0, f"the check command failed (exit {facts.check_status})"
