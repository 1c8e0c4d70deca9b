"""Tests for ``mta postqueue``: -p in Postfix's exact format, -j JSON lines, -f flush, queue-down paths."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest

from mta import cli
from tests.mta.test_showq import QueueFixture, build_queue, queue_fixture, showq_start

SPACES41 = " " * 41

EXPECTED_P = (
    "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
    "0A0B0C0D0E0F     300 Mon Nov 23 19:22:23  local@mail.example.test\n"
    f"{SPACES41}root@mail.example.test\n"
    "\n"
    "1A2B3C4D5E6F*     167 Mon Nov 23 19:22:23  sender@example.org\n"
    f"{SPACES41}alice@example.test\n"
    f"{SPACES41}bob@example.test\n"
    "\n"
    "3172221C1BF0#    2000 Mon Nov 23 19:22:23  MAILER-DAEMON\n"
    "               (connect to mx.example.test[192.0.2.25]:25: Connection refused)\n"
    f"{SPACES41}a@example.test\n"
    f"{SPACES41}b@example.test\n"
    "                                                          (reason unavailable)\n"
    f"{SPACES41}c@example.test\n"
    "\n"
    "4DEADBEEF000!     195 Mon Nov 23 19:22:23  \"odd name\"@example.org\n"
    f"{SPACES41}x@example.test\n"
    "\n"
    "-- 2 Kbytes in 4 Requests.\n"
)

EXPECTED_J = (
    '{"queue_name": "maildrop", "queue_id": "0A0B0C0D0E0F", "arrival_time": 1606159343, "message_size": 300, '
    '"forced_expire": false, "sender": "local@mail.example.test", '
    '"recipients": [{"address": "root@mail.example.test"}]}\n'
    '{"queue_name": "active", "queue_id": "1A2B3C4D5E6F", "arrival_time": 1606159343, "message_size": 167, '
    '"forced_expire": false, "sender": "sender@example.org", '
    '"recipients": [{"address": "alice@example.test"}, {"address": "bob@example.test"}]}\n'
    '{"queue_name": "deferred", "queue_id": "3172221C1BF0", "arrival_time": 1606159343, '
    '"message_size": 2000, "forced_expire": true, "sender": "MAILER-DAEMON", "recipients": ['
    '{"address": "a@example.test", "delay_reason": "connect to mx.example.test[192.0.2.25]:25: '
    'Connection refused"}, {"address": "b@example.test", "delay_reason": "connect to '
    'mx.example.test[192.0.2.25]:25: Connection refused"}, {"address": "c@example.test"}]}\n'
    '{"queue_name": "hold", "queue_id": "4DEADBEEF000", "arrival_time": 1606159343, "message_size": 195, '
    '"forced_expire": false, "sender": "\\"odd name\\"@example.org", '
    '"recipients": [{"address": "x@example.test"}]}\n'
)


@pytest.fixture
def qfix(monkeypatch: pytest.MonkeyPatch) -> Iterator[QueueFixture]:
    """An empty queue directory and its main.cf (tests.mta.test_showq.queue_fixture)."""
    with queue_fixture(monkeypatch) as fixture:
        yield fixture


def postqueue(q: QueueFixture, *args: str) -> int:
    return cli.main(["-c", str(q.config_dir), "postqueue", *args])


def test_p_through_showq_is_byte_exact(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    build_queue(qfix)
    server = showq_start(qfix)
    try:
        assert postqueue(qfix, "-p") == 0
    finally:
        server.close()
    out, err = capsys.readouterr()
    assert out == EXPECTED_P
    assert err == ""


def test_p_reads_the_queue_directly_when_the_system_is_down(
        qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    build_queue(qfix)
    assert postqueue(qfix, "-p") == 0
    out, err = capsys.readouterr()
    assert out == EXPECTED_P
    assert err == ("mta/postqueue: warning: Mail system is down -- accessing queue directly "
                   "(Connect to the mta showq service: No such file or directory)\n")


def test_j_json_lines(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    build_queue(qfix)
    server = showq_start(qfix)
    try:
        assert postqueue(qfix, "-j") == 0
    finally:
        server.close()
    assert capsys.readouterr().out == EXPECTED_J


def test_empty_queue(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    server = showq_start(qfix)
    try:
        assert postqueue(qfix, "-p") == 0
        assert capsys.readouterr().out == "Mail queue is empty\n"
        assert postqueue(qfix, "-j") == 0
        assert capsys.readouterr().out == ""
    finally:
        server.close()


def test_single_request_summary(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    qfix.add("deferred", "ABCDEF123456", "s@example.org", [("r@example.test", False)], 3000)
    qfix.defer("ABCDEF123456", ("r@example.test", "x" * 90))
    assert postqueue(qfix, "-p") == 0
    out = capsys.readouterr().out
    assert out.endswith("\n-- 2 Kbytes in 1 Request.\n")
    assert f"\n({'x' * 90})\n" in out  # a reason longer than the line gets no padding


def test_unprivileged_user_without_showq_gets_an_error(
        qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    os.seteuid(65534)
    try:
        status = postqueue(qfix, "-p")
    finally:
        os.seteuid(0)
    assert status == 69
    assert "fatal: Queue report unavailable - mail system is down" in capsys.readouterr().err


def test_f_triggers_qmgr_and_pickup(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    assert postqueue(qfix, "-f") == 69
    assert capsys.readouterr().err == "mta/postqueue: fatal: Cannot flush mail queue - mail system is down\n"

    received: dict[str, bytes] = {}

    def listen(name: str) -> socket.socket:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(qfix.queue_dir / "public" / name))
        server.listen(1)

        def accept() -> None:
            conn, _ = server.accept()
            received[name] = conn.recv(100)
            conn.close()
        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        threads.append(thread)
        return server

    threads: list[threading.Thread] = []
    servers = [listen("qmgr"), listen("pickup")]
    try:
        assert postqueue(qfix, "-f") == 0
        for thread in threads:
            thread.join(5)
    finally:
        for server in servers:
            server.close()
    assert received == {"qmgr": b"FADI", "pickup": b"W"}


def test_options_are_exclusive_and_required(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        postqueue(qfix, "-p", "-j")
    assert postqueue(qfix) == 64
    assert capsys.readouterr().err.endswith(
        "mta/postqueue: fatal: usage: postqueue -f | postqueue -j | postqueue -p\n")


def test_config_directory_names_the_queue(qfix: QueueFixture, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "etc"
    other.mkdir()
    (other / "main.cf").write_text(f"queue_directory = {tmp_path / 'nowhere'}\n")
    build_queue(qfix)
    assert cli.main(["-c", str(other), "postqueue", "-p"]) == 0
    assert capsys.readouterr().out == "Mail queue is empty\n"
