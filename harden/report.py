"""What ``harden provision`` shows: a live progress display while hosts run, diffs, a recap table, JSON lines.

rich draws the progress and the recap on a terminal and plain text
otherwise (a pipe or a CI log); ``--json`` prints one JSON object per host
and nothing else, for other programs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.syntax import Syntax
from rich.table import Table

from harden.provision import HostResult

STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "unreachable": "bold magenta"}


def fleet_progress(console: Console, disable: bool) -> Progress:
    """The progress bars of a fleet run (provision, rollout): spinner, text, bar, done/total, elapsed; gone at the end."""
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True, disable=disable)


class ProvisionReport:
    """Progress while provisioning, then the recap. Use as a context manager around the run."""

    def __init__(self, total: int, *, check: bool, diff: bool, as_json: bool, stream: TextIO | None = None) -> None:
        self.console = Console(file=stream or sys.stdout, highlight=False)
        self.check, self.diff, self.as_json = check, diff, as_json
        self.progress = fleet_progress(self.console, as_json or not self.console.is_terminal)
        self.task = self.progress.add_task("provisioning" + (" (check only)" if check else ""), total=total)

    def __enter__(self) -> "ProvisionReport":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def host_done(self, result: HostResult) -> None:
        """Called (from worker threads) as each host finishes."""
        self.progress.advance(self.task)
        if self.as_json:
            return
        style = STYLE.get(result.status, "")
        self.progress.console.print(f"[{style}]{result.status:11s}[/] {result.host} ({result.seconds:.1f}s)")

    def finish(self, results: list[HostResult]) -> None:
        """Print diffs (with --diff), errors, warnings and the recap table, or the JSON lines."""
        if self.as_json:
            for result in results:
                self.console.file.write(json.dumps(asdict(result)) + "\n")
            return
        for result in results:
            for warning in result.warnings:
                self.console.print(f"[yellow]warning[/]: {result.host}: {warning}")
            if result.error:
                self.console.print(f"[{STYLE[result.status]}]{result.status}[/]: {result.error}")
            for finding in result.findings:
                self.console.print(f"[bold red]audit[/]: {result.host}: {finding}")
            if self.diff:
                for change in result.changes:
                    if change.diff:
                        self.console.print(f"--- {result.host}: {change.what}")
                        self.console.print(Syntax(change.diff, "diff", theme="ansi_dark", background_color="default"))
        table = Table(title="would change (--check)" if self.check else "recap")
        for column in ("host", "status", "changes", "audit", "seconds"):
            table.add_column(column, justify="right" if column in ("changes", "seconds") else "left")
        for result in results:
            kinds: dict[str, int] = {}
            for change in result.changes:
                kinds[change.kind] = kinds.get(change.kind, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in kinds.items()) or "-"
            audit = "-" if result.audit is None else (
                f"[bold red]{len(result.findings)} failed[/]" if result.findings else f"{result.audit['pass']} passed")
            table.add_row(result.host, f"[{STYLE.get(result.status, '')}]{result.status}[/]", summary, audit,
                          f"{result.seconds:.1f}")
        self.console.print(table)
        counts = {s: sum(1 for r in results if r.status == s) for s in STYLE}
        self.console.print("  ".join(f"{s}={n}" for s, n in counts.items()))
