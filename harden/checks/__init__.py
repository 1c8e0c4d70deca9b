"""The audit's checks: testinfra test modules in this package, each test carrying an ID and its texts.

A check is a test function of a ``test_*.py`` module here that takes
testinfra's ``host`` fixture and is decorated with ``@check(...)``:

    @check("MTA-CHROOT-01", "local, virtual and pipe are not chrooted", severity="high",
           rationale="...", remediation="...", refs=("CIS 2.1.22",))
    def test_delivery_agents_not_chrooted(host): ...

It passes by returning, fails with an AssertionError whose message says what
is wrong, and is skipped (never passed) with ``pytest.skip(reason)`` when it
cannot apply to the host. The same modules run two ways: under plain pytest
with testinfra (``pytest --hosts=ssh://gw1 harden/checks``), and under
``harden audit``, which calls the functions itself with a testinfra Host on
its own strict-host-key SSH connection (harden.audit). Checks read the host
through harden.checks.facts, which gathers everything in one command, so a
check costs no round trip of its own.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

SEVERITIES = ("critical", "high", "medium", "low")
ATTRIBUTE = "harden_check"


@dataclass(frozen=True)
class Check:
    """A check's identity and texts, and the test function that runs it."""

    id: str
    title: str
    severity: str
    rationale: str
    remediation: str
    refs: tuple[str, ...]
    function: Callable[..., Any]
    module: str

    @property
    def group(self) -> str:
        """The ID's prefix (``MTA-JAIL``), for grouping in reports."""
        return self.id.rsplit("-", 1)[0]


def check(check_id: str, title: str, *, severity: str, rationale: str, remediation: str,
          refs: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a test function as the check check_id (it stays a plain pytest test)."""
    if severity not in SEVERITIES:
        raise ValueError(f"{check_id}: severity must be one of {', '.join(SEVERITIES)}")

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        setattr(function, ATTRIBUTE, Check(check_id, title, severity, rationale, remediation, refs, function,
                                           function.__module__))
        return function

    return mark


def checks_all() -> list[Check]:
    """Every check of the package's test modules, in module then definition order; IDs are unique."""
    found: list[Check] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            marked = getattr(value, ATTRIBUTE, None)
            if isinstance(marked, Check) and marked.module == module.__name__:
                found.append(marked)
    found.sort(key=lambda c: (c.module, c.function.__code__.co_firstlineno))
    seen: set[str] = set()
    for one in found:
        if one.id in seen:
            raise ValueError(f"duplicate check ID {one.id} ({one.module})")
        seen.add(one.id)
    return found
