"""The pid file lock: who runs, a second master refused, a stale file ignored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mta.master.pidfile import AlreadyRunning, pidfile_lock, pidfile_owner, pidfile_path, pidfile_remove

HOLDER = """
import sys, time
from pathlib import Path
from mta.master.pidfile import pidfile_lock
pidfile_lock(Path(sys.argv[1]))
print("locked", flush=True)
sys.stdin.read()
"""


def test_lock_owner_and_refusal(tmp_path: Path) -> None:
    (tmp_path / "pid").mkdir()
    assert pidfile_owner(tmp_path) is None
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert pidfile_owner(tmp_path) == holder.pid
        assert pidfile_path(tmp_path).read_text() == f"{holder.pid:>10}\n"
        with pytest.raises(AlreadyRunning, match="the mail system is already running"):
            pidfile_lock(tmp_path)
    finally:
        holder.communicate("", timeout=10)
    # The holder is gone: its file stays behind, stale, and does not count.
    assert pidfile_path(tmp_path).exists()
    assert pidfile_owner(tmp_path) is None
    fd = pidfile_lock(tmp_path)
    pidfile_remove(tmp_path, fd)
    assert not pidfile_path(tmp_path).exists()
