"""Audit reports: a terminal table (rich), JSON, JUnit XML and HTML, from harden.audit's HostAudit results.

JSON: ``{"generated": ISO time, "summary": {status: count}, "hosts": [{"host",
"address", "unreachable", "seconds", "expired_waivers": [...], "checks": [{"id",
"title", "severity", "status", "message", "remediation", "refs", "waiver"}]}]}``.

JUnit: one <testsuite> per host, one <testcase> per check (classname = the
check's group, name = ID and title); fail is <failure>, error and unreachable
are <error>, skip and waived are <skipped> with the reason or justification.

HTML (templates/audit.html.j2): one self-contained file, no script and no
external resource: summary counts, a fleet matrix of checks x hosts coloured
by status (each cell links to its finding), then per host every result with
what was found and, for failures, the remediation and the rationale.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from typing import Any, TextIO

import jinja2
from rich.console import Console
from rich.table import Table

from harden.audit import ERROR, FAIL, PASS, SKIP, STATUSES, WAIVED, HostAudit
from harden.checks import checks_all
from harden.render import TEMPLATES

STYLE = {PASS: "green", FAIL: "bold red", WAIVED: "yellow", SKIP: "dim", ERROR: "magenta"}
SYMBOLS = {PASS: "✓", FAIL: "✗", WAIVED: "W", SKIP: "–", ERROR: "!"}


def summary(audits: list[HostAudit]) -> dict[str, int]:
    """Counts of each status over every host, plus unreachable hosts."""
    out = {status: sum(a.count(status) for a in audits) for status in STATUSES}
    out["unreachable"] = sum(1 for a in audits if a.unreachable)
    return out


def report_dict(audits: list[HostAudit]) -> dict[str, Any]:
    """The JSON report as Python data."""
    return {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "summary": summary(audits),
        "hosts": [{
            "host": a.host, "address": a.address, "unreachable": a.unreachable, "seconds": round(a.seconds, 3),
            "expired_waivers": [{"id": w.id, "hosts": w.hosts, "expires": w.expires.isoformat(),
                                 "where": w.where} for w in a.expired],
            "checks": [{
                "id": r.check.id, "title": r.check.title, "severity": r.check.severity, "status": r.status,
                "message": r.message, "remediation": r.check.remediation, "rationale": r.check.rationale,
                "refs": list(r.check.refs),
                "waiver": None if r.waiver is None else {"justification": r.waiver.justification,
                                                         "expires": r.waiver.expires.isoformat()},
            } for r in a.results],
        } for a in audits],
    }


def report_json(audits: list[HostAudit]) -> str:
    return json.dumps(report_dict(audits), indent=2) + "\n"


def report_junit(audits: list[HostAudit]) -> str:
    """JUnit XML, as CI systems read it."""
    suites = ET.Element("testsuites", name="harden audit")
    for a in audits:
        suite = ET.SubElement(suites, "testsuite", name=a.host, hostname=a.address,
                              tests=str(max(1, len(a.results))), failures=str(a.count(FAIL)),
                              errors=str(a.count(ERROR) + (1 if a.unreachable else 0)),
                              skipped=str(a.count(SKIP) + a.count(WAIVED)), time=f"{a.seconds:.3f}")
        if a.unreachable:
            case = ET.SubElement(suite, "testcase", classname="HOST", name="reachable")
            ET.SubElement(case, "error", message=a.unreachable)
        for r in a.results:
            case = ET.SubElement(suite, "testcase", classname=r.check.group, name=f"{r.check.id} {r.check.title}",
                                 time=f"{r.seconds:.3f}")
            if r.status == FAIL:
                ET.SubElement(case, "failure", message=r.message).text = r.check.remediation
            elif r.status == ERROR:
                ET.SubElement(case, "error", message=r.message)
            elif r.status == SKIP:
                ET.SubElement(case, "skipped", message=r.message)
            elif r.status == WAIVED and r.waiver is not None:
                ET.SubElement(case, "skipped", message=f"waived until {r.waiver.expires}: {r.waiver.justification}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def report_table(audits: list[HostAudit], stream: TextIO | None = None) -> None:
    """The terminal report: failures and errors in detail, then a host x status summary."""
    console = Console(file=stream, highlight=False)
    details = Table(title="findings", show_lines=False)
    for column in ("host", "check", "severity", "status", "message"):
        details.add_column(column, overflow="fold")
    for a in audits:
        if a.unreachable:
            details.add_row(a.host, "-", "-", "[magenta]unreachable[/]", a.unreachable)
        for r in a.results:
            if r.status in (FAIL, ERROR, WAIVED):
                text = r.message if r.status != WAIVED or r.waiver is None else \
                    f"waived until {r.waiver.expires}: {r.waiver.justification}"
                details.add_row(a.host, f"{r.check.id} {r.check.title}", r.check.severity,
                                f"[{STYLE[r.status]}]{r.status}[/]", text)
        for w in a.expired:
            details.add_row(a.host, w.id, "-", "[red]expired waiver[/]", f"expired {w.expires} ({w.where})")
    if details.row_count:
        console.print(details)
    recap = Table(title="audit")
    recap.add_column("host")
    for status in STATUSES:
        recap.add_column(status, justify="right")
    recap.add_column("seconds", justify="right")
    for a in audits:
        if a.unreachable:
            recap.add_row(a.host, *["-"] * len(STATUSES), f"{a.seconds:.1f}", style="magenta")
            continue
        cells = [f"[{STYLE[s]}]{a.count(s)}[/]" if a.count(s) else "0" for s in STATUSES]
        recap.add_row(a.host, *cells, f"{a.seconds:.1f}")
    console.print(recap)
    total = summary(audits)
    console.print("  ".join(f"{k}={v}" for k, v in total.items()))


def report_html(audits: list[HostAudit]) -> str:
    """The single-file HTML report (see the module docstring)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    hosts = []
    for a in audits:
        hosts.append({"host": a.host, "address": a.address, "unreachable": a.unreachable, "seconds": a.seconds,
                      "expired": a.expired, "results": a.results, "anchor": re.sub(r"[^A-Za-z0-9_-]", "-", a.host)})
    seen = {r.check.id for a in audits for r in a.results}
    checks = [c for c in checks_all() if c.id in seen] or checks_all()
    cells = {a.host: {r.check.id: r for r in a.results} for a in audits}
    return env.get_template("audit.html.j2").render(
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), summary=summary(audits), hosts=hosts, checks=checks,
        cells=cells, symbols=SYMBOLS)
