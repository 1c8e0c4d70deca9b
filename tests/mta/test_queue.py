"""Tests for mta.queue: IDs, hashing, mode-bit state, atomic moves, quarantine, backoff."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from mta import queue
from mta.queue import QueueError


@pytest.fixture()
def qdir(tmp_path: Path) -> Path:
    for name in queue.MESSAGE_QUEUES + queue.LOG_QUEUES + (queue.CORRUPT,):
        (tmp_path / name).mkdir()
    return tmp_path


def make(qdir: Path, name: str = queue.INCOMING, data: bytes = b"x") -> queue.QueueFile:
    qf = queue.queue_create(qdir, name)
    os.write(qf.fd, data)
    return qf


def test_create_is_embryonic_until_finished(qdir: Path) -> None:
    qf = make(qdir)
    assert stat.S_IMODE(os.stat(qf.path).st_mode) == queue.MODE_EMBRYONIC
    assert not queue.queue_ready(qf.path)
    path = qf.path
    queue.queue_finish(qf)
    assert stat.S_IMODE(os.stat(path).st_mode) == queue.MODE_READY
    assert queue.queue_ready(path)
    assert path.read_bytes() == b"x"
    assert [p.name for p in (qdir / queue.INCOMING).iterdir()] == [qf.queue_id]


def test_ids_are_unique_across_threads(qdir: Path) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            qf = make(qdir)
            queue.queue_finish(qf)
            with lock:
                ids.append(qf.queue_id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 800 == len(set(ids))
    assert all(queue.queue_id_valid(i) for i in ids)
    assert len(list(queue.queue_scan(qdir, queue.INCOMING))) == 800


def test_abort_leaves_nothing(qdir: Path) -> None:
    qf = make(qdir)
    queue.queue_abort(qf)
    assert list((qdir / queue.INCOMING).iterdir()) == []


def test_deferred_is_hashed_one_level(qdir: Path) -> None:
    qf = make(qdir)
    queue.queue_finish(qf)
    new = queue.queue_move(qdir, qf.queue_id, queue.INCOMING, queue.DEFERRED)
    assert new == str(qdir / "deferred" / qf.queue_id[0] / qf.queue_id)
    assert list(queue.queue_scan(qdir, queue.DEFERRED)) == [qf.queue_id]
    assert queue.queue_find(qdir, qf.queue_id) == queue.DEFERRED
    assert not (qdir / "incoming" / qf.queue_id).exists()


def test_move_of_missing_file_names_queue_and_id(qdir: Path) -> None:
    with pytest.raises(QueueError, match="rename ABCDEF123456 from incoming to active: No such file"):
        queue.queue_move(qdir, "ABCDEF123456", queue.INCOMING, queue.ACTIVE)


@pytest.mark.parametrize("bad", ["../etc/passwd", "abc", "ABCDEF/12345", "", "G12345678901"])
def test_invalid_ids_never_become_paths(qdir: Path, bad: str) -> None:
    assert not queue.queue_id_valid(bad)
    with pytest.raises(QueueError, match="invalid queue id"):
        queue.queue_path(qdir, queue.INCOMING, bad)


def test_quarantine_keeps_the_file(qdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    qf = make(qdir, data=b"garbage")
    queue.queue_finish(qf)
    queue.queue_quarantine(qdir, queue.INCOMING, qf.queue_id, "bad magic line")
    kept = qdir / "corrupt" / qf.queue_id
    assert kept.read_bytes() == b"garbage"
    assert stat.S_IMODE(os.stat(kept).st_mode) == queue.MODE_CORRUPT
    assert f"{qf.queue_id}: saving corrupt file from incoming: bad magic line" in caplog.text


def test_retry_time_in_mtime(qdir: Path) -> None:
    qf = make(qdir)
    queue.queue_finish(qf)
    path = queue.queue_move(qdir, qf.queue_id, queue.INCOMING, queue.DEFERRED)
    when = time.time() + 600
    queue.set_retry_time(path, when)
    assert abs(os.stat(path).st_mtime - when) < 1


@pytest.mark.parametrize(
    ("age", "expected"),
    [(0, 300), (299, 300), (301, 301), (1200, 1200), (3999, 3999), (4001, 4000), (10**6, 4000)],
)
def test_backoff_is_age_clamped(age: float, expected: int) -> None:
    assert queue.backoff_delay(age, 300, 4000) == expected


def test_queue_dirs_create_modes(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    qdir = tmp_path / "spool"
    created = queue.queue_dirs_create(qdir, mail_uid=65534, setgid_gid=65534)
    assert set(created) == {name for name, *_ in queue.QUEUE_DIRS}
    modes = {name: stat.S_IMODE(os.stat(qdir / name).st_mode) for name, *_ in queue.QUEUE_DIRS}
    assert modes["maildrop"] == 0o1730 and modes["public"] == 0o2710 and modes["incoming"] == 0o700
    st = os.stat(qdir / "public")
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    st = os.stat(qdir / "incoming")
    assert (st.st_uid, st.st_gid) == (65534, 0)
    assert os.stat(qdir).st_uid == 0 and stat.S_IMODE(os.stat(qdir).st_mode) == 0o755
    assert queue.queue_dirs_create(qdir, mail_uid=65534, setgid_gid=65534) == []
