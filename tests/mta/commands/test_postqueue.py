"""Tests for ``mta postqueue``: -p in Postfix's exact format, -j JSON lines, -f and -s, queue-down paths."""

from __future__ import annotations

import os
import socket
import threading
import time
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
    with pytest.raises(SystemExit):
        postqueue(qfix, "-f", "-s", "example.test")
    assert postqueue(qfix) == 64
    assert capsys.readouterr().err.endswith(
        "mta/postqueue: fatal: usage: postqueue -f | postqueue -j | postqueue -p | postqueue -s site\n")


def test_config_directory_names_the_queue(qfix: QueueFixture, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "etc"
    other.mkdir()
    (other / "main.cf").write_text(f"queue_directory = {tmp_path / 'nowhere'}\n")
    build_queue(qfix)
    assert cli.main(["-c", str(other), "postqueue", "-p"]) == 0
    assert capsys.readouterr().out == "Mail queue is empty\n"


class Triggers:
    """Listeners on public/NAME that record the trigger bytes each receives."""

    def __init__(self, qfix: QueueFixture, *names: str) -> None:
        self.received: dict[str, bytes] = {}
        self.servers: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.stop = threading.Event()
        for name in names:
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(str(qfix.queue_dir / "public" / name))
            server.listen(1)
            server.settimeout(0.05)
            thread = threading.Thread(target=self._accept, args=(name, server), daemon=True)
            thread.start()
            self.servers.append(server)
            self.threads.append(thread)

    def _accept(self, name: str, server: socket.socket) -> None:
        while True:
            # A trigger sent before close() is queued on the socket by then, so an
            # accept() begun after stop was set still returns it.
            stopping = self.stop.is_set()
            try:
                conn, _ = server.accept()
            except TimeoutError:
                if stopping:
                    return
                continue
            except OSError:
                return
            conn.settimeout(5)
            self.received[name] = conn.recv(100)
            conn.close()
            return

    def close(self) -> dict[str, bytes]:
        """Stop listening (the command has returned: its triggers were sent); what each one received."""
        self.stop.set()
        for thread in self.threads:
            thread.join(2)
        for server in self.servers:
            server.close()
        return self.received


FUTURE = 4_000_000_000.0  # a retry time far ahead


def site_queue(qfix: QueueFixture) -> dict[str, Path]:
    """Deferred mail for several destinations, every retry time in the future."""
    paths = {
        "match": qfix.add("deferred", "A00000000001", "s@example.org",
                          [("a@remote.example", False), ("b@other.example", False)], 10),
        "upper": qfix.add("deferred", "A00000000002", "s@example.org", [("C@REMOTE.EXAMPLE.", False)], 10),
        "done": qfix.add("deferred", "A00000000003", "s@example.org",
                         [("a@remote.example", True), ("b@other.example", False)], 10),
        "other": qfix.add("deferred", "A00000000004", "s@example.org", [("a@sub.remote.example", False)], 10),
        "held": qfix.add("hold", "A00000000005", "s@example.org", [("a@remote.example", False)], 10),
    }
    for path in paths.values():
        os.utime(path, (FUTURE, FUTURE))
    return paths


@pytest.mark.parametrize("site", ["remote.example", "Remote.EXAMPLE", "[remote.example]"])
def test_s_makes_the_sites_deferred_mail_due_and_triggers_qmgr(qfix: QueueFixture, site: str) -> None:
    paths = site_queue(qfix)
    triggers = Triggers(qfix, "qmgr", "pickup")
    before = time.time()
    try:
        assert postqueue(qfix, "-s", site) == 0
    finally:
        received = triggers.close()
    assert received == {"qmgr": b"FD"}  # forget dead destinations, scan deferred; pickup is not involved
    for name in ("match", "upper"):
        assert before - 1 <= os.stat(paths[name]).st_mtime <= time.time() + 1, name
    for name in ("done", "other", "held"):  # delivered there already, a subdomain, on hold
        assert os.stat(paths[name]).st_mtime == FUTURE, name


def test_s_with_the_mail_system_down(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    site_queue(qfix)
    assert postqueue(qfix, "-s", "remote.example") == 69
    assert capsys.readouterr().err == "mta/postqueue: fatal: Cannot flush mail queue - mail system is down\n"


@pytest.mark.parametrize(("site", "message"), [("", "empty site name"), ("[]", "empty site name"),
                                               ("a b", 'Invalid request: "a b"'),
                                               ("../x/", 'Invalid request: "../x/"')])
def test_s_refuses_a_bad_site(qfix: QueueFixture, capsys: pytest.CaptureFixture[str], site: str,
                              message: str) -> None:
    paths = site_queue(qfix)
    triggers = Triggers(qfix, "qmgr")
    try:
        assert postqueue(qfix, "-s", site) == 64
    finally:
        assert triggers.close() == {}
    assert capsys.readouterr().err == f"mta/postqueue: fatal: {message}\n"
    assert os.stat(paths["match"]).st_mtime == FUTURE


def test_s_needs_root(qfix: QueueFixture, capsys: pytest.CaptureFixture[str]) -> None:
    site_queue(qfix)
    os.seteuid(65534)
    try:
        status = postqueue(qfix, "-s", "remote.example")
    finally:
        os.seteuid(0)
    assert status == 77
    err = capsys.readouterr().err
    assert err.startswith("mta/postqueue: fatal: Cannot flush mail queue for remote.example: ")
    assert err.endswith("Permission denied (postqueue -s needs root)\n")


def test_help_describes_s(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["postqueue", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "-s SITE" in out and "retry now the deferred mail for one destination" in out
