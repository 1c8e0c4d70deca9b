"""Tests for mta.profiling: a daemon's profile, its threads included, lands in MTA_PROFILE_DIR."""

from __future__ import annotations

import os
import pstats
import threading
from pathlib import Path

import pytest

from mta import profiling


def _busy_in_thread() -> int:
    return sum(range(10000))


def _busy_in_main() -> int:
    return sum(range(10000))


def test_off_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(profiling.ENV, raising=False)
    assert profiling.profile_start("smtpd") is None


def test_profile_with_threads(tmp_path: Path) -> None:
    pid = os.fork()  # profile_start patches threading.Thread.run for the whole process
    if pid == 0:
        status = 1
        try:
            os.environ[profiling.ENV] = str(tmp_path)
            save = profiling.profile_start("qmgr")
            assert save is not None
            worker = threading.Thread(target=_busy_in_thread)
            worker.start()
            worker.join()
            _busy_in_main()
            save()
            status = 0
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    stats = pstats.Stats(str(tmp_path / f"qmgr.{pid}.prof"))
    names = {func[2] for func in stats.stats}  # type: ignore[attr-defined]
    assert {"_busy_in_thread", "_busy_in_main"} <= names
