"""Tests for harden.journal: fsynced JSON lines, replay, a torn last line, the lock, what a new rollout may replace."""

from __future__ import annotations

from pathlib import Path

import pytest

from harden.journal import Journal, JournalError, journal_default, journal_read

START = {"id": "r1", "batches": [["a"], ["b"]], "targets": {}}


def test_records_replay_into_host_states(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml.rollout.jsonl"
    with Journal.create(path, START) as journal:
        journal.append({"type": "host", "host": "a", "step": "snapshot", "snapshot": {"files": {}, "version": "1"}})
        journal.append({"type": "host", "host": "a", "step": "applied"})
        journal.append({"type": "host", "host": "a", "step": "done", "status": "changed"})
        journal.append({"type": "batch", "index": 1, "failed": 0, "healthy": True})
        journal.append({"type": "host", "host": "b", "step": "snapshot", "snapshot": {"files": {"main.cf": None}}})
    state = journal_read(path)
    assert state.start["id"] == "r1" and state.status == "interrupted"  # no end line
    assert state.hosts["a"].finished and state.hosts["a"].status == "changed"
    assert state.hosts["a"].snapshot == {"files": {}, "version": "1"}
    assert state.hosts["b"].step == "snapshot" and not state.hosts["b"].finished
    assert [b["index"] for b in state.batches] == [1]
    assert path.stat().st_mode & 0o777 == 0o600  # snapshots hold configuration files


def test_a_line_cut_short_by_a_crash_is_ignored_a_bad_line_elsewhere_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.create(path, START) as journal:
        journal.append({"type": "host", "host": "a", "step": "applied"})
    good = path.read_text()
    path.write_text(good + '{"type": "host", "host": "a", "st')  # the crash came mid-write
    assert journal_read(path).hosts["a"].step == "applied"
    lines = good.splitlines()
    path.write_text("\n".join([lines[0], "garbage", lines[1]]) + "\n")
    with pytest.raises(JournalError, match=r"j\.jsonl:2: not a journal record"):
        journal_read(path)
    path.write_text('{"type": "batch"}\n')
    with pytest.raises(JournalError, match="no start record"):
        journal_read(path)


def test_one_rollout_at_a_time_and_what_a_new_one_may_replace(tmp_path: Path) -> None:
    path = journal_default(tmp_path / "inventory.yml")
    assert path == tmp_path / "inventory.yml.rollout.jsonl"
    journal = Journal.create(path, START)
    with pytest.raises(JournalError, match="another rollout of this inventory is running"):
        Journal.reopen(path)
    journal.close()
    # Interrupted (no end): a new rollout is refused, --resume is the way on.
    with pytest.raises(JournalError, match="--resume"):
        Journal.create(path, START)
    resumed, state = Journal.reopen(path)
    assert state.status == "interrupted"
    resumed.append({"type": "host", "host": "a", "step": "done", "status": "failed", "restored": False})
    resumed.append({"type": "end", "status": "halted"})
    resumed.close()
    # Halted with a host not restored: still refused.
    with pytest.raises(JournalError, match="a.*not restored"):
        Journal.create(path, START)
    with Journal.reopen(path)[0] as again:
        again.append({"type": "host", "host": "a", "step": "done", "status": "failed", "restored": True})
    # Now it may be replaced; the old journal is kept as .prev.
    Journal.create(path, dict(START, id="r2")).close()
    assert journal_read(path).start["id"] == "r2"
    assert journal_read(path.with_name(path.name + ".prev")).start["id"] == "r1"
    with pytest.raises(JournalError, match="no rollout journal to resume"):
        Journal.reopen(tmp_path / "other.jsonl")
