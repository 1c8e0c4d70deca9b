"""harden audit: run every check of harden.checks against the inventory's hosts, in parallel, over SSH.

CONNECTION. Each host gets one SSH connection (harden.transport: Paramiko
with RejectPolicy, only the inventory's known_hosts trusted), wrapped in a
testinfra backend (AuditBackend), so the checks get testinfra's ``host``
object exactly as under plain pytest. The checks' facts come from one
command (harden.checks.facts) and the SMTP probes from one session
(harden.checks.probe); the audit of a host is a handful of round trips.

RESULTS. Each check ends as pass, fail (its assertion message), skip (why it
does not apply; never counted as a pass) or error (it could not run). A
failing check that a current waiver covers is ``waived``; an expired waiver
no longer applies and is reported (harden.waivers). A host that cannot be
reached is ``unreachable`` and its checks are not run.

EXIT STATUS (``harden audit``): 0 when every check passed, was skipped or
waived; 1 when a check failed; 2 when a host was unreachable or a check
errored (2 wins over 1).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable

import pytest
import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

from harden.checks import Check, checks_all
from harden.checks.facts import CACHE_ATTRIBUTE as FACTS_ATTRIBUTE
from harden.checks.facts import facts_command, facts_parse
from harden.checks.probe import ADDRESS_ATTRIBUTE
from harden.checks.test_smtp import INTERFACES_ATTRIBUTE
from harden.errors import HardenError
from harden.inventory import Host, Inventory
from harden.transport import Transport, transport_for
from harden.waivers import Waiver, waiver_for

PASS, FAIL, SKIP, ERROR, WAIVED = "pass", "fail", "skip", "error", "waived"
STATUSES = (PASS, FAIL, WAIVED, SKIP, ERROR)


class AuditBackend(BaseBackend):
    """A testinfra backend on a harden Transport: commands run over the host's one connection, as root."""

    NAME = "harden"

    def __init__(self, transport: Transport, **kwargs: Any) -> None:
        super().__init__(transport.host, **kwargs)
        self.transport = transport

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        cmd = self.get_command(command, *args)
        done = self.transport.run(cmd, check=False)
        return self.result(done.exit_code, self.encode(cmd), done.stdout, done.stderr)


@dataclass
class CheckResult:
    """One check on one host."""

    check: Check
    status: str
    message: str = ""
    seconds: float = 0.0
    waiver: Waiver | None = None


@dataclass
class HostAudit:
    """Every check's result on one host, or why the host could not be audited."""

    host: str
    address: str
    results: list[CheckResult] = field(default_factory=list)
    unreachable: str = ""
    seconds: float = 0.0
    expired: list[Waiver] = field(default_factory=list)  # waivers that would have applied but ran out

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)


def check_run(one: Check, host: Any) -> CheckResult:
    """Run one check function with a testinfra Host; pass, fail, skip or error."""
    started = time.monotonic()
    try:
        one.function(host)
    except AssertionError as exc:
        return CheckResult(one, FAIL, str(exc).split("\nassert ")[0].strip() or "assertion failed",
                           time.monotonic() - started)
    except pytest.skip.Exception as exc:
        return CheckResult(one, SKIP, str(exc.msg if hasattr(exc, "msg") else exc), time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - a check that cannot run is an error, reported, not fatal
        return CheckResult(one, ERROR, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    return CheckResult(one, PASS, "", time.monotonic() - started)


def audit_host(host: Host, checks: list[Check], waivers: list[Waiver], today: date,
               connect: Callable[[Host], Transport] = transport_for) -> HostAudit:
    """Audit one host over one connection of its own."""
    started = time.monotonic()
    try:
        transport = connect(host)
    except HardenError as exc:
        out = HostAudit(host.name, host.address())
        out.unreachable = str(exc)
        out.seconds = time.monotonic() - started
        return out
    try:
        out = audit_run(host, transport, checks, waivers, today)
    finally:
        transport.close()
    out.seconds = time.monotonic() - started
    return out


def audit_run(host: Host, transport: Transport, checks: list[Check], waivers: list[Waiver], today: date,
              tools_output: str | None = None) -> HostAudit:
    """Audit one host over a connection the caller opened (and closes): harden rollout verifies with it.

    + tools_output: what the bundled MTA's tools (facts.tools_command) said
      of the configuration now on the host, read by the caller under the
      same files (the rollout's validation): the facts reuse it instead of
      running the tools again.
    """
    started = time.monotonic()
    out = HostAudit(host.name, host.address())
    target = testinfra.host.Host(AuditBackend(transport))
    if tools_output is not None:
        gathered = transport.run(facts_command(tools_given=True), check=False, stdin=tools_output.encode())
        setattr(target, FACTS_ATTRIBUTE, facts_parse(gathered.stdout))
    setattr(target, ADDRESS_ATTRIBUTE, host.vars.get("ansible_host") or None)
    interfaces = host.vars.get("inet_interfaces")
    if interfaces:
        setattr(target, INTERFACES_ATTRIBUTE,
                [interfaces] if isinstance(interfaces, str) else [str(i) for i in interfaces])
    for one in checks:
        result = check_run(one, target)
        if result.status == FAIL:
            waiver, expired = waiver_for(waivers, one.id, host.name, today)
            if waiver is not None:
                result.status, result.waiver = WAIVED, waiver
            elif expired is not None:
                out.expired.append(expired)
        out.results.append(result)
    out.seconds = time.monotonic() - started
    return out


def audit(inventory: Inventory, limit: str | None = None, *, forks: int = 10, waivers: list[Waiver] | None = None,
          today: date | None = None, connect: Callable[[Host], Transport] = transport_for,
          on_done: Callable[[HostAudit], None] | None = None) -> list[HostAudit]:
    """Audit the selected hosts, forks at a time; results in inventory order."""
    hosts = inventory.select(limit)
    checks = checks_all()
    day = today or date.today()

    def one(host: Host) -> HostAudit:
        result = audit_host(host, checks, waivers or [], day, connect)
        if on_done is not None:
            on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, forks)) as pool:
        return list(pool.map(one, hosts))


def exit_status(audits: list[HostAudit]) -> int:
    """0 all passed, skipped or waived; 1 a check failed; 2 a host unreachable or a check errored."""
    if any(a.unreachable or a.count(ERROR) for a in audits):
        return 2
    return 1 if any(a.count(FAIL) for a in audits) else 0
