"""What ``harden diff`` shows: each drifted file's unified diff, then a line per host; or JSON lines."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TextIO

from rich.console import Console
from rich.syntax import Syntax

from harden.drift import HostDrift

STYLE = {"same": "green", "drifted": "yellow", "failed": "bold red", "unreachable": "bold magenta"}


def drift_print(results: list[HostDrift], *, as_json: bool = False, stream: TextIO | None = None) -> None:
    """Print the diffs and the per-host summary (colour on a terminal), or one JSON object per host."""
    out = stream or sys.stdout
    if as_json:
        for result in results:
            out.write(json.dumps(asdict(result)) + "\n")
        return
    console = Console(file=out, highlight=False)
    for result in results:
        for found in result.files:
            console.print(f"[bold]{result.host}[/bold]: {found.path}" + (f" ({found.note})" if found.note else ""))
            if found.diff:
                if console.is_terminal:
                    console.print(Syntax(found.diff, "diff", theme="ansi_dark"))
                else:
                    out.write(found.diff if found.diff.endswith("\n") else found.diff + "\n")
    for result in results:
        if result.status == "drifted":
            detail = f"{len(result.files)} file(s) differ from the inventory"
        elif result.status == "same":
            detail = "matches the inventory"
        else:
            detail = result.error
        console.print(f"[{STYLE[result.status]}]{result.status:11s}[/] {result.host} ({result.seconds:.1f}s): "
                      f"{detail}", markup=True)
    counts = {status: sum(1 for r in results if r.status == status) for status in STYLE}
    console.print("  ".join(f"{status}={count}" for status, count in counts.items()))
