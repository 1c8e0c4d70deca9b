"""What ``harden rollout`` shows: batches and each host's current step while it runs, then a recap; or JSON lines.

On a terminal rich draws a progress display (one line for the rollout, one
per host in progress with its step); elsewhere (a pipe, a CI log) each
event is a plain line. ``--json`` prints nothing while running, then one
JSON object per host and a last one, ``{"rollout": ...}``, for the whole.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import asdict
from typing import TextIO

from rich.console import Console
from rich.progress import TaskID
from rich.syntax import Syntax
from rich.table import Table

from harden.report import fleet_progress
from harden.rollout import BatchOutcome, HostRollout, RolloutResult

STYLE = {"changed": "yellow", "ok": "green", "failed": "bold red", "unreachable": "bold magenta",
         "untouched": "dim"}
END_STYLE = {"finished": "green", "checked": "green", "halted": "bold red", "interrupted": "bold yellow",
             "restored": "yellow"}


class RolloutReport:
    """Progress while rolling out (RolloutEvents), then the recap. Use as a context manager around the run."""

    def __init__(self, total: int, *, check: bool, diff: bool, as_json: bool, stream: TextIO | None = None) -> None:
        self.console = Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)
        self.check, self.diff, self.as_json = check, diff, as_json
        self.live = not as_json and self.console.is_terminal
        self.progress = fleet_progress(self.console, not self.live)
        self.overall = self.progress.add_task("rollout" + (" (check only)" if check else ""), total=total)
        self.tasks: dict[str, TaskID] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> "RolloutReport":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _line(self, text: str) -> None:
        if not self.as_json:
            self.progress.console.print(text)

    def batch_start(self, index: int, total: int, hosts: list[str]) -> None:
        with self.lock:
            what = "canary" if index == 1 and total > 1 else f"{len(hosts)} host(s)"
            self.progress.update(self.overall, description=f"batch {index}/{total} ({what})")
            self._line(f"[bold]batch {index}/{total}[/] ({what}): {', '.join(hosts)}")
            for host in hosts:
                self.tasks[host] = self.progress.add_task(f"  {host}: waiting", total=None)

    def host_step(self, host: str, step: str) -> None:
        with self.lock:
            task = self.tasks.get(host)
            if task is not None:
                self.progress.update(task, description=f"  {host}: {step}")

    def host_done(self, result: HostRollout) -> None:
        with self.lock:
            task = self.tasks.pop(result.host, None)
            if task is not None:
                self.progress.remove_task(task)
            self.progress.advance(self.overall)
            extra = ""
            if result.status == "failed" and result.restored is not None:
                extra = ", restored" if result.restored and not result.rollback_error else ", NOT RESTORED" \
                    if not result.restored else ", restored but it does not verify"
            self._line(f"[{STYLE.get(result.status, '')}]{result.status:11s}[/] {result.host} "
                       f"({result.seconds:.1f}s{extra})")

    def batch_done(self, outcome: BatchOutcome) -> None:
        state = "healthy" if outcome.healthy else "[bold red]NOT healthy[/]"
        self._line(f"batch {outcome.index}: {outcome.failed} of {len(outcome.hosts)} failed: {state}")

    def stopping(self) -> None:
        self._line("[bold yellow]interrupted[/]: no new host starts; hosts in progress finish (restored if they "
                   "fail). Ctrl-C again to leave at once.")

    def finish(self, result: RolloutResult) -> None:
        """Print diffs (with --diff), errors and the recap table, or the JSON lines."""
        if self.as_json:
            for host in result.hosts:
                self.console.file.write(json.dumps(asdict(host)) + "\n")
            summary = {"status": result.status, "reason": result.reason, "journal": result.journal,
                       "batches": [asdict(b) for b in result.batches],
                       "counts": {s: sum(1 for h in result.hosts if h.status == s) for s in STYLE}}
            self.console.file.write(json.dumps({"rollout": summary}) + "\n")
            return
        for host in result.hosts:
            if self.diff:
                for change in host.changes:
                    if change.diff:
                        self.console.print(f"--- {host.host}: {change.what}")
                        self.console.print(Syntax(change.diff, "diff", theme="ansi_dark",
                                                  background_color="default"))
            if host.error and not host.earlier:
                self.console.print(f"[{STYLE.get(host.status, '')}]{host.status}[/]: {host.error}")
            if host.rollback_error:
                self.console.print(f"[bold red]rollback[/]: {host.host}: {host.rollback_error}")
        table = Table(title="would change (--check)" if self.check else "rollout recap")
        for column in ("batch", "host", "status", "changes", "verified", "seconds"):
            table.add_column(column, justify="right" if column in ("batch", "seconds") else "left")
        for host in result.hosts:
            changes = ", ".join(c.what.rsplit("/", 1)[-1] for c in host.changes) or "-"
            verified = "-"
            if host.probe:
                verified = f"audit {host.audit['pass'] if host.audit else 0} passed, mail delivered"
            if host.status == "failed":
                verified = {True: "restored", False: "[bold red]NOT restored[/]", None: "-"}[host.restored]
                if host.restored and host.rollback_error:
                    verified = "[bold red]restored, does not verify[/]"
            if host.earlier:
                verified = f"{verified} (earlier run)" if verified != "-" else "(earlier run)"
            table.add_row(str(host.batch), host.host, f"[{STYLE.get(host.status, '')}]{host.status}[/]", changes,
                          verified, f"{host.seconds:.1f}" if host.seconds else "-")
        self.console.print(table)
        counts = {s: sum(1 for h in result.hosts if h.status == s) for s in STYLE}
        self.console.print("  ".join(f"{s}={n}" for s, n in counts.items()))
        line = f"[{END_STYLE.get(result.status, '')}]{result.status}[/]"
        if result.reason:
            line += f": {result.reason}"
        self.console.print(line)
        untouched = [h.host for h in result.hosts if h.status == "untouched"]
        if untouched and result.status in ("halted", "interrupted"):
            self.console.print(f"not reached (untouched): {', '.join(untouched)}")
        if result.journal:
            self.console.print(f"journal: {result.journal}")
