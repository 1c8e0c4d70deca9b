"""Checks of aliases and lookup tables: root's mail, postmaster, compiled copies, file ownership (seed 7.5.5)."""

from __future__ import annotations

from typing import Any

import pytest

from harden.checks import check
from harden.checks.facts import Facts, mta_facts

MAX_DEPTH = 20  # alias expansion depth, as Postfix's local


def _expand(facts: Facts, name: str) -> set[str]:
    """The final recipients of a local name through every alias table (first table that has it wins)."""
    out: set[str] = set()
    seen: set[str] = set()

    def walk(local: str, depth: int) -> None:
        if depth > MAX_DEPTH or local in seen:
            out.add(local)
            return
        seen.add(local)
        value = next((table[local] for table in facts.aliases.values() if local in table), None)
        if value is None:
            out.add(local)
            return
        for target in (t.strip() for t in value.split(",")):
            if not target:
                continue
            bare = target.lower()
            if "@" in bare or bare.startswith(("|", "/", ":include:", '"')):
                out.add(target)
            else:
                walk(bare, depth + 1)

    walk(name, 0)
    return out


@check("MTA-ALIAS-01", "root's mail goes to an existing unprivileged account", severity="high",
       rationale="Nobody reads mail delivered to root on a gateway, and local delivery to root runs as "
                 "root; mail to a system account or to mail_owner is unread too. The seed redirects root (7.5.7).",
       remediation="Add 'root: <an admin account>' to the aliases file (inventory root_alias) and run "
                   "newaliases.",
       refs=("seed 7.5.7",))
def test_root_alias(host: Any) -> None:
    facts = mta_facts(host)
    if not facts.aliases:
        pytest.skip("no alias table could be read")
    owner = facts.params.get("mail_owner", "postfix")
    targets = _expand(facts, "root")
    problems = []
    for target in sorted(targets):
        account = target.lower()
        if account in ("root", owner):
            problems.append(f"{target} (privileged or mail_owner)")
        elif "@" in account or account.startswith(("|", "/", ":include:")):
            continue  # forwarded or delivered elsewhere: not a local privileged account
        elif account not in facts.passwd:
            problems.append(f"{target} (no such account)")
        elif facts.passwd[account][0] < facts.uid_min:
            problems.append(f"{target} (system account, uid {facts.passwd[account][0]})")
    assert not problems, "root's mail reaches " + ", ".join(problems)


@check("MTA-ALIAS-02", "postmaster reaches root's mailbox", severity="medium",
       rationale="RFC 5321 requires a working postmaster; bounces and complaints go there.",
       remediation="Keep 'postmaster: root' in the aliases file and run newaliases.",
       refs=("RFC 5321 section 4.5.1",))
def test_postmaster(host: Any) -> None:
    facts = mta_facts(host)
    if not facts.aliases:
        pytest.skip("no alias table could be read")
    targets = _expand(facts, "postmaster")
    assert targets & (_expand(facts, "root") | {"root"}), f"postmaster goes to {', '.join(sorted(targets))}"


@check("MTA-ALIAS-03", "compiled alias and access tables exist and are newer than their source", severity="medium",
       rationale="The MTA reads only the compiled .db file: an edit not followed by postmap/newaliases is "
                 "silently not in force (a forgotten REJECT, a removed relay permission).",
       remediation="Run newaliases and 'postmap hash:FILE' for each table (harden provision does).",
       refs=("postmap(1)", "newaliases(1)"))
def test_tables_compiled(host: Any) -> None:
    facts = mta_facts(host)
    if not facts.tables:
        pytest.skip("no indexed alias or access table in use")
    problems = []
    for spec in facts.tables:
        path, compiled = facts.table_files(spec)
        source, db = facts.stats.get(path), facts.stats.get(compiled)
        if db is None:
            problems.append(f"{compiled} is missing")
        elif source is not None and source.mtime > db.mtime:
            problems.append(f"{compiled} is older than {path}")
    assert not problems, "; ".join(problems)


@check("MTA-ALIAS-04", "alias and access files are owned by root and not writable by others", severity="high",
       rationale="Whoever can write the aliases file can run commands as the file's owner through a "
                 "|command alias, and whoever can write an access table can open a relay.",
       remediation="chown root:root and chmod 0644 (or stricter) the tables and their compiled copies.",
       refs=("aliases(5)", "local(8) SECURITY"))
def test_table_files_root_owned(host: Any) -> None:
    facts = mta_facts(host)
    if not facts.tables:
        pytest.skip("no indexed alias or access table in use")
    problems = []
    for spec in facts.tables:
        for candidate in facts.table_files(spec):
            st = facts.stats.get(candidate)
            if st is not None and (st.uid != 0 or st.writable_by_others):
                problems.append(f"{candidate} ({st.user}:{st.group} {st.mode:o})")
    assert not problems, "; ".join(problems)
