"""Provision gateways: for each host connect, read facts, plan the difference, apply it, run handlers, verify.

DESIRED STATE AS A DIFF. Everything is compared before it is changed: the
MTA bundle by version, each configuration file by content, owner and mode,
the jail entry by entry (harden.chroot), the command links, the accounts.
A host that already matches gets no write at all and reports ``ok``.

HANDLERS run only when something they depend on changed: ``mta newaliases``
after aliases, ``mta postmap`` after access or transport, ``mta reload``
after main.cf or master.cf, a restart after a new bundle (the master forks
its daemons without exec, so new code needs a new master), ``mta start``
when the MTA is not running. Where systemd is PID 1 the MTA gets a unit
(mailgate-mta.service) and starts, restarts and reloads go through systemctl.

VERIFY. After applying, ``mta status`` must report a running master and the
host's smtpd must answer with a 220 banner on its first inet_interfaces
address, port 25, within VERIFY_SECONDS. Then every changed host is
audited (harden.audit, all checks, over a new connection): the result
carries the count of each status and the failures, and ``harden provision``
exits 1 when there is one.

RESULTS. Each host ends ``ok`` (nothing to change), ``changed``, ``failed``
(with the error) or ``unreachable``; hosts run in parallel (``forks``) and a
failure on one never stops the others.
"""

from __future__ import annotations

import difflib
import hashlib
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Protocol

from harden import bundle as bundle_mod
from harden import chroot
from harden.errors import HardenError, TransportError
from harden.inventory import Host, Inventory
from harden.render import (
    CONFIG_DIRECTORY,
    QUEUE_DIRECTORY,
    files_check,
    gateway_files,
    render,
    template_environment,
)
from harden.settings import GatewaySettings, settings_from_host
from harden.transport import Transport, transport_for
from harden.transport.base import file_get, file_put

MTA = f"{bundle_mod.PREFIX}/current/bin/mta"
UNIT = "/etc/systemd/system/mailgate-mta.service"
VERIFY_SECONDS = 30  # after a start or reload, how long smtpd may take to greet
CONFIG_MODE = 0o644  # configuration files: root:root, readable by the unprivileged daemons


def service_commands(init: str) -> dict[str, str]:
    """How to start, restart and reload the MTA: through systemd where it is PID 1, else with ``mta``."""
    if init == "systemd":
        return {"start": "systemctl enable --now mailgate-mta", "restart": "systemctl restart mailgate-mta",
                "reload": "systemctl reload mailgate-mta"}
    mta = f"{MTA} -c {CONFIG_DIRECTORY}"
    return {"start": f"{mta} start", "restart": f"{mta} stop && {mta} start", "reload": f"{mta} reload"}


@dataclass
class Change:
    """One difference found (and, unless --check, fixed): kind, what, and a unified diff for files."""

    kind: str
    what: str
    diff: str = ""


@dataclass
class HostResult:
    """How provisioning one host went."""

    host: str
    status: str = "ok"
    changes: list[Change] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    audit: dict[str, int] | None = None  # after a change: the audit's count of each status
    findings: list[str] = field(default_factory=list)  # the audit's failures and errors, "ID: message"


def config_diff(name: str, old: bytes | None, new: str) -> str:
    """A unified diff of configuration file name from its text on the host (old) to new."""
    before = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, new.splitlines(keepends=True),
                                        f"a{CONFIG_DIRECTORY}/{name}", f"b{CONFIG_DIRECTORY}/{name}"))


def file_state(text: str) -> str:
    """How host_facts reports a configuration file holding text, as provisioning writes it."""
    return f"{hashlib.sha256(text.encode()).hexdigest()} {CONFIG_MODE:o} root root"


def host_facts(t: Transport, s: GatewaySettings) -> dict[str, str]:
    """One command for the simple facts: python, accounts, bundle version, links, whether the MTA runs, files.

    Whether the MTA runs is read from the kernel's lock table: a live master
    holds a POSIX write lock on its pid file (mta.master.pidfile). Asking the
    ``mta status`` command would cost a Python start-up with the whole MTA per
    host and per run.
    """
    q = shlex.quote
    files = " ".join(q(f"{CONFIG_DIRECTORY}/{name}") for name in ("main.cf", "master.cf", "aliases", "access",
                                                                   "transport", "mydests"))
    pidfile = q(f"{QUEUE_DIRECTORY}/pid/master.pid")
    links = " ".join(q(p) for p in bundle_mod.LINKS)
    script = (
        # The version from the interpreter's name (python3 -> python3.11) costs no Python start.
        "v=$(readlink -f /usr/bin/python3 2>/dev/null); case ${v##*/python} in 3.1[1-9]|3.[2-9][0-9]) echo python=1;; "
        "3.*) echo python=0;; *) echo python=$(/usr/bin/python3 -c 'import sys; print(int(sys.version_info >= (3, 11)))'"
        " 2>/dev/null);; esac; "
        f"echo root_alias=$(getent passwd {q(s.root_alias)} | cut -d: -f3); "
        f"echo mail_owner=$(getent passwd {q(s.mail_owner)} | cut -d: -f3); "
        "echo postdrop=$(getent group postdrop | cut -d: -f3); "
        f"echo version=$(cat {q(bundle_mod.PREFIX)}/current/VERSION 2>/dev/null); "
        f"for l in {links}; do if [ -L \"$l\" ]; then echo \"link=$l $(readlink \"$l\")\"; "
        "elif [ -e \"$l\" ]; then echo \"link=$l OTHER\"; fi; done; "
        f"ino=$(stat -c %i {pidfile} 2>/dev/null) && grep -q \"POSIX *ADVISORY *WRITE .*:$ino \" /proc/locks "
        "&& echo running=1; "
        f"for f in {files}; do [ -f \"$f\" ] && echo \"file=$(basename $f) $(sha256sum < $f | cut -d' ' -f1) "
        "$(stat -c '%a %U %G' $f)\"; done; "
        f"for f in aliases access transport; do [ -f {CONFIG_DIRECTORY}/$f.db ] && echo db=$f; done; "
        f"echo init=$(cat /proc/1/comm); [ -f {UNIT} ] && echo \"unit=$(sha256sum < {UNIT} | cut -d' ' -f1)\"; true"
    )
    facts: dict[str, str] = {}
    for line in t.run(script).stdout.splitlines():
        key, _, value = line.partition("=")
        if key in ("file", "db", "link"):
            name, _, rest = value.partition(" ")
            facts[f"{key}:{name}"] = rest
        else:
            facts[key] = value
    return facts


class HostOutcome(Protocol):
    """What host_run fills in: provision's HostResult and drift's HostDrift."""

    status: str
    error: str
    seconds: float


def host_run(host: Host, result: HostOutcome, work: Callable[[Transport, GatewaySettings, dict[str, str]], str], *,
             connect: Callable[[Host], Transport] = transport_for, templates: Path | None = None,
             rendered: Callable[[dict[str, str]], None] | None = None) -> None:
    """Render host's files, connect, and run work on the connection; never raises.

    work returns the host's final status. A file that cannot be rendered, or a
    HardenError in work, makes the status ``failed``; a connection that cannot
    be made, ``unreachable``; error says why. rendered (may raise HardenError)
    sees the files before the connection is made. result.seconds is the time
    it all took.
    """
    start = time.monotonic()
    try:
        try:
            s = settings_from_host(host)
            files = gateway_files(s, env=template_environment(templates) if templates else None)
            if rendered is not None:
                rendered(files)
        except HardenError as exc:
            result.status, result.error = "failed", str(exc)
            return
        try:
            t = connect(host)
        except TransportError as exc:
            result.status, result.error = "unreachable", str(exc)
            return
        try:
            result.status = work(t, s, files)
        except HardenError as exc:
            result.status, result.error = "failed", str(exc)
        finally:
            t.close()
    finally:
        result.seconds = time.monotonic() - start


def provision_host(host: Host, bundle: bundle_mod.Bundle, *, check: bool = False, want_diff: bool = False,
                   connect: Callable[[Host], Transport] = transport_for,
                   templates: Path | None = None) -> HostResult:
    """Provision one host; never raises (the result says what happened).

    + templates: a directory of site templates replacing harden/templates/ (same file names).
    """
    result = HostResult(host.name)

    def rendered(files: dict[str, str]) -> None:
        result.warnings = files_check(host.name, files)

    def work(t: Transport, s: GatewaySettings, files: dict[str, str]) -> str:
        _provision(t, s, files, bundle, result, check, want_diff)
        return "changed" if result.changes else "ok"

    host_run(host, result, work, connect=connect, templates=templates, rendered=rendered)
    return result


def _provision(t: Transport, s: GatewaySettings, files: dict[str, str], bundle: bundle_mod.Bundle,
               result: HostResult, check: bool, want_diff: bool) -> None:
    facts = host_facts(t, s)
    if facts.get("python") != "1":
        raise HardenError(f"{t.host}: /usr/bin/python3 3.11 or newer is needed to run the MTA")
    alias_uid = facts.get("root_alias", "")
    if not alias_uid:
        raise HardenError(f"{t.host}: root_alias {s.root_alias!r} is not an account on the host; create it first "
                          "(root's mail must go to a person's unprivileged account)")
    if alias_uid == "0" or alias_uid == facts.get("mail_owner"):
        raise HardenError(f"{t.host}: root_alias {s.root_alias!r} has uid {alias_uid}: it must be an "
                          "unprivileged account, not root or mail_owner")
    changes = result.changes
    # Accounts the MTA runs as.
    accounts = []
    if not facts.get("postdrop"):
        accounts.append("groupadd --system postdrop")
        changes.append(Change("account", "group postdrop"))
    if not facts.get("mail_owner"):
        accounts.append(f"useradd --system --no-create-home --home-dir {QUEUE_DIRECTORY} "
                        f"--shell /usr/sbin/nologin {shlex.quote(s.mail_owner)}")
        changes.append(Change("account", f"user {s.mail_owner}"))
    # The bundle and its links.
    installed = facts.get("version", "")
    new_bundle = installed != bundle.version
    if new_bundle:
        changes.append(Change("bundle", f"MTA {installed or '(none)'} -> {bundle.version}"))
    links = bundle_mod.links_plan(t.host, {path: facts.get(f"link:{path}", "") for path in bundle_mod.LINKS})
    changes += [Change("link", f"{path} -> {bundle_mod.PREFIX}/current/bin/{bundle_mod.LINKS[path]}")
                for path in links]
    # Configuration files.
    changed_files = []
    for name, text in files.items():
        if facts.get(f"file:{name}") != file_state(text):
            changed_files.append(name)
            diff = config_diff(name, file_get(t, f"{CONFIG_DIRECTORY}/{name}"), text) if want_diff else ""
            changes.append(Change("file", f"{CONFIG_DIRECTORY}/{name}", diff))
    # The systemd unit, where systemd runs.
    service = service_commands(facts.get("init", ""))
    unit_text = ""
    if facts.get("init") == "systemd":
        unit_text = render("mailgate-mta.service.j2", {"s": s, "mta": MTA, "config_directory": CONFIG_DIRECTORY,
                                                       "queue_directory": QUEUE_DIRECTORY})
        if facts.get("unit") != hashlib.sha256(unit_text.encode()).hexdigest():
            changes.append(Change("file", UNIT))
        else:
            unit_text = ""
    # The jail.
    jail_actions = chroot.plan(QUEUE_DIRECTORY, chroot.facts_read(t, QUEUE_DIRECTORY))
    changes += [Change("jail", a.describe()) for a in jail_actions]
    # Handlers.
    handlers: list[str] = []
    if "aliases" in changed_files or "db:aliases" not in facts:
        handlers.append(f"{MTA} -c {CONFIG_DIRECTORY} newaliases")
    for table in ("access", "transport"):
        if table in files and (table in changed_files or f"db:{table}" not in facts):
            handlers.append(f"{MTA} -c {CONFIG_DIRECTORY} postmap hash:{CONFIG_DIRECTORY}/{table}")
    running = facts.get("running") == "1"
    if unit_text:
        handlers.append("systemctl daemon-reload")
    if not running:
        handlers.append(service["start"])
    elif new_bundle:
        handlers.append(service["restart"])
    elif {"main.cf", "master.cf", "mydests"} & set(changed_files) or jail_actions:
        handlers.append(service["reload"])
    changes += [Change("handler", h.replace(f"{MTA} -c {CONFIG_DIRECTORY} ", "mta ")) for h in handlers]
    if check:
        return
    if accounts:
        t.run(" && ".join(accounts))
    if new_bundle:
        bundle_mod.bundle_install(t, bundle)
    bundle_mod.links_install(t, links)
    if changed_files:
        t.run(f"mkdir -p {CONFIG_DIRECTORY} && chmod 755 {CONFIG_DIRECTORY}")
    for name in changed_files:
        file_put(t, files[name].encode(), f"{CONFIG_DIRECTORY}/{name}", mode=CONFIG_MODE)
    if unit_text:
        file_put(t, unit_text.encode(), UNIT, mode=0o644)
    if jail_actions:
        t.run(f"mkdir -p {QUEUE_DIRECTORY} && chown root:root {QUEUE_DIRECTORY} && chmod 755 {QUEUE_DIRECTORY}")
        chroot.apply(t, jail_actions)
    for handler in handlers:
        done = t.run(handler, check=False, timeout=120)
        if not done.ok:
            raise HardenError(f"{t.host}: handler `{handler}` failed (exit {done.exit_code}): {done.tail()}")
    if changes:
        service_verify(t, s)


def service_verify(t: Transport, s: GatewaySettings) -> None:
    """The MTA runs (its master holds the pid file lock) and smtpd answers 220 on the first listen address."""
    pidfile = shlex.quote(f"{QUEUE_DIRECTORY}/pid/master.pid")
    done = t.run(f"ino=$(stat -c %i {pidfile}) && grep -q \"POSIX *ADVISORY *WRITE .*:$ino \" /proc/locks",
                 check=False)
    if not done.ok:
        raise HardenError(f"{t.host}: verify: the MTA is not running after provisioning (no live master holds "
                          f"{QUEUE_DIRECTORY}/pid/master.pid)")
    address = next((a for a in s.inet_interfaces if a not in ("all", "loopback-only")), "127.0.0.1")
    # At most VERIFY_SECONDS in all: a master whose smtpd cannot start still accepts the
    # connection (the listener is the master's), so each try is bounded too.
    probe = (f"end=$((SECONDS + {VERIFY_SECONDS})); while [ $SECONDS -lt $end ]; do "
             f"timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/25 && head -n 1 <&3' 2>/dev/null && break; "
             "sleep 0.1; done")
    banner = t.run(probe, check=False).stdout.strip()
    if not banner.startswith("220 "):
        why = t.run(f"tail -n 500 {shlex.quote(s.maillog_file)} 2>/dev/null | grep -E ': (fatal|panic): ' | tail -n 1",
                    check=False).stdout.strip()
        raise HardenError(f"{t.host}: verify: no SMTP banner on {address}:25 within {VERIFY_SECONDS} s "
                          f"(got {banner[:80]!r})" + (f"; the MTA's log says: {why}" if why else ""))


def provision(inventory: Inventory, limit: str | None = None, *, check: bool = False, want_diff: bool = False,
              forks: int = 10, on_done: Callable[[HostResult], None] | None = None,
              connect: Callable[[Host], Transport] = transport_for,
              templates: Path | None = None, audit_after: bool = True) -> list[HostResult]:
    """Provision the selected hosts, forks at a time; results in inventory order.

    + audit_after: run harden audit on each host that was changed (not with check).
    """
    from harden.audit import ERROR, FAIL, STATUSES, audit_host
    from harden.checks import checks_all

    hosts = inventory.select(limit)
    built = bundle_mod.bundle_build()
    checks = checks_all() if audit_after and not check else []

    def one(host: Host) -> HostResult:
        result = provision_host(host, built, check=check, want_diff=want_diff, connect=connect, templates=templates)
        if checks and result.status == "changed":
            audited = audit_host(host, checks, [], date.today(), connect)
            if audited.unreachable:
                result.findings.append(f"audit: {audited.unreachable}")
            result.audit = {status: audited.count(status) for status in STATUSES}
            result.findings += [f"{r.check.id}: {r.message}" for r in audited.results if r.status in (FAIL, ERROR)]
        if on_done is not None:
            on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, forks)) as pool:
        return list(pool.map(one, hosts))
