"""Shared by the benchmark scripts: run a command and return its wall time, or stop with its output."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def timed(cmd: list[str], what: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    """Seconds cmd took; SystemExit with the tail of its output when it fails."""
    start = time.monotonic()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed
