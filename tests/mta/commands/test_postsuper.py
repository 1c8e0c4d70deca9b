"""Tests for ``mta postsuper``: -d, -h, -H, -r by ID, ALL and stdin; queue selection; ID validation."""

from __future__ import annotations

import io
import os
import pwd
import stat
import sys
import time
from typing import Iterator

import pytest

from mta import bounce_log, cli, queue
from mta.record import record_read
from tests.mta.test_showq import QueueFixture, build_queue, queue_fixture

POSTFIX = pwd.getpwnam("postfix")


@pytest.fixture
def qfix(monkeypatch: pytest.MonkeyPatch) -> Iterator[QueueFixture]:
    """An empty queue directory and its main.cf (tests.mta.test_showq.queue_fixture)."""
    with queue_fixture(monkeypatch) as fixture:
        yield fixture


def postsuper(q: QueueFixture, *args: str) -> int:
    return cli.main(["-c", str(q.config_dir), "postsuper", *args])


def present(q: QueueFixture, queue_name: str, queue_id: str) -> bool:
    return queue.queue_path(q.queue_dir, queue_name, queue_id).exists()


def test_delete_one_with_its_logs(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    build_queue(qfix)
    assert postsuper(qfix, "-d", "3172221C1BF0") == 0
    assert capsys.readouterr().err == ("mta/postsuper: 3172221C1BF0: removed\n"
                                       "mta/postsuper: Deleted: 1 message\n")
    assert not present(qfix, "deferred", "3172221C1BF0")
    assert not bounce_log.log_exists(qfix.queue_dir, bounce_log.DEFER, "3172221C1BF0")
    assert os.geteuid() == 0 and os.getegid() == 0


def test_delete_all_in_named_queue_only(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    build_queue(qfix)
    assert postsuper(qfix, "-d", "ALL", "hold", "active") == 0
    assert capsys.readouterr().err == ("mta/postsuper: 4DEADBEEF000: removed\n"
                                       "mta/postsuper: 1A2B3C4D5E6F: removed\n"
                                       "mta/postsuper: Deleted: 2 messages\n")
    assert present(qfix, "deferred", "3172221C1BF0") and present(qfix, "maildrop", "0A0B0C0D0E0F")


def test_delete_default_queues_skip_maildrop_and_unfinished_files(
        qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    build_queue(qfix)
    assert postsuper(qfix, "-d", "ALL") == 0
    assert capsys.readouterr().err.endswith("mta/postsuper: Deleted: 3 messages\n")
    assert present(qfix, "maildrop", "0A0B0C0D0E0F")
    assert present(qfix, "incoming", "5555555555AA")  # embryonic (0600): not touched


def test_ids_from_stdin_and_invalid_ids(qfix: QueueFixture, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    build_queue(qfix)
    monkeypatch.setattr(sys, "stdin", io.StringIO("1A2B3C4D5E6F\n\n4DEADBEEF000\n../../etc/passwd\n"))
    assert postsuper(qfix, "-d", "-", "-d", "all", "-d", "FFFFFFFFFFFF") == 0
    assert capsys.readouterr().err == (
        "mta/postsuper: 1A2B3C4D5E6F: removed\n"
        "mta/postsuper: 4DEADBEEF000: removed\n"
        "mta/postsuper: warning: invalid mail queue id: ../../etc/passwd\n"
        "mta/postsuper: warning: invalid mail queue id: all\n"
        "mta/postsuper: Deleted: 2 messages\n")


def test_hold_and_release(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    build_queue(qfix)
    assert postsuper(qfix, "-h", "1A2B3C4D5E6F", "-h", "0A0B0C0D0E0F") == 0
    assert capsys.readouterr().err == ("mta/postsuper: 1A2B3C4D5E6F: placed on hold\n"
                                       "mta/postsuper: Placed on hold: 1 message\n")
    assert present(qfix, "hold", "1A2B3C4D5E6F") and not present(qfix, "active", "1A2B3C4D5E6F")
    assert present(qfix, "maildrop", "0A0B0C0D0E0F")  # maildrop mail is never put on hold

    before = time.time()
    assert postsuper(qfix, "-H", "ALL") == 0
    assert capsys.readouterr().err == ("mta/postsuper: 1A2B3C4D5E6F: released from hold\n"
                                       "mta/postsuper: 4DEADBEEF000: released from hold\n"
                                       "mta/postsuper: Released from hold: 2 messages\n")
    released = queue.queue_path(qfix.queue_dir, "deferred", "1A2B3C4D5E6F")
    assert released.parent.name == "1" and released.stat().st_mtime >= before - 1
    assert list((qfix.queue_dir / "hold").iterdir()) == []


def test_requeue_writes_pending_recipients_to_maildrop(
        qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    build_queue(qfix)
    assert postsuper(qfix, "-r", "3172221C1BF0") == 0
    assert capsys.readouterr().err == ("mta/postsuper: 3172221C1BF0: requeued\n"
                                       "mta/postsuper: Requeued: 1 message\n")
    assert not present(qfix, "deferred", "3172221C1BF0")
    assert not bounce_log.log_exists(qfix.queue_dir, bounce_log.DEFER, "3172221C1BF0")
    [new] = [p for p in (qfix.queue_dir / "maildrop").iterdir() if p.name != "0A0B0C0D0E0F"]
    st = new.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (POSTFIX.pw_uid, 0o700)
    envelope, content = record_read(new)
    assert envelope.sender == "" and content == b"x" * 2000
    assert [(r.address, r.done) for r in envelope.recipients] == [
        ("a@example.test", False), ("b@example.test", False), ("c@example.test", False)]


def test_bad_queue_name_and_missing_action(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    assert postsuper(qfix, "-d", "ALL", "../etc") == 1
    assert capsys.readouterr().err == "mta/postsuper: fatal: invalid directory name: ../etc\n"
    assert postsuper(qfix) == 1


def test_only_root_may_run_it(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    build_queue(qfix)
    os.seteuid(65534)
    try:
        status = postsuper(qfix, "-d", "ALL")
    finally:
        os.seteuid(0)
    assert status == 1
    assert capsys.readouterr().err == "mta/postsuper: fatal: use of this command is reserved for the superuser\n"
    assert present(qfix, "active", "1A2B3C4D5E6F")
