"""Tests for mta.anvil: per-client counts and rates, released when the holder goes; served by a multi server."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from mta import anvil, proto
from mta.anvil import Anvil
from mta.clients import AnvilClient
from mta.skeleton_loop import multi_server


def test_counts_rates_and_release() -> None:
    a = Anvil(unit=60)
    assert (a.connect(1, "smtp:192.0.2.1", 1000).count, a.tallies["smtp:192.0.2.1"].rate) == (1, 1)
    assert a.connect(2, "smtp:192.0.2.1", 1001).count == 2
    assert a.connect(2, "smtp:192.0.2.2", 1001).count == 1  # another client has its own
    a.release(2)
    assert a.lookup("smtp:192.0.2.1", 1002).count == 1 and a.lookup("smtp:192.0.2.2", 1002).count == 0
    assert a.lookup("smtp:192.0.2.1", 1002).rate == 2  # the rate remembers what was closed
    # A new window once the unit has passed since the window started.
    assert a.lookup("smtp:192.0.2.1", 1060).rate == 0
    tally = a.connect(3, "smtp:192.0.2.1", 1060)
    assert (tally.count, tally.rate) == (2, 1)
    a.release(99)  # unknown holder: nothing happens
    assert a.lookup("nobody", 1060).count == 0


def test_forgets_idle_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(anvil, "PRUNE_EVERY", 10)
    a = Anvil(unit=60)
    for n in range(9):
        a.connect(n, f"smtp:192.0.2.{n}", 1000)
        a.release(n)
    a.connect(100, "smtp:198.51.100.1", 1061)  # the tenth request sweeps: the nine are closed and expired
    assert list(a.tallies) == ["smtp:198.51.100.1"]


def test_peaks_are_logged_at_exit(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = type("Ctx", (), {"state": {"anvil": Anvil(unit=60)}})()
    for holder in range(3):
        ctx.state["anvil"].connect(holder, "smtp:192.0.2.7", 1_700_000_000)
    monkeypatch.setattr(logging.getLogger("mta"), "propagate", True)
    caplog.set_level(logging.INFO, logger="mta")
    anvil.pre_exit(ctx)  # type: ignore[arg-type]
    assert "statistics: max connection rate 3/60s for (smtp:192.0.2.7) at " in caplog.text
    assert "statistics: max connection count 3 for (smtp:192.0.2.7) at " in caplog.text


class Stopper:
    """What multi_server needs of skeleton_loop.Signals, usable outside the main thread."""

    def __init__(self) -> None:
        self.stop = False
        self.wake_r, self.wake_w = os.pipe()

    def drain(self) -> None:
        os.read(self.wake_r, 100)

    def set(self) -> None:
        self.stop = True
        os.write(self.wake_w, b"x")


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """anvil's request()/closed() behind a real multi server on private/anvil."""
    (tmp_path / "private").mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "private" / "anvil"))
    listener.listen(16)
    ctx = type("Ctx", (), {"state": {"anvil": Anvil(unit=60), "channels": {}}})()
    stopper = Stopper()
    thread = threading.Thread(target=multi_server, args=(
        lambda conn: anvil.request(conn, ctx), lambda conn: anvil.closed(conn, ctx),  # type: ignore[arg-type]
        [os.dup(listener.fileno())], -1, -1, stopper), daemon=True)  # the loop's socket object owns the copy
    thread.start()
    yield tmp_path, ctx.state
    stopper.set()
    thread.join(5)
    assert not thread.is_alive()
    listener.close()
    os.close(stopper.wake_r)
    os.close(stopper.wake_w)


def test_smtpd_processes_and_one_that_dies(served: tuple[Path, dict[str, Any]]) -> None:
    """Each AnvilClient is one smtpd process: its sessions connect and disconnect over one channel."""
    queue_dir, state = served
    first, second, third = (AnvilClient(queue_dir) for _ in range(3))
    assert first.connect("smtp:192.0.2.1") == (1, 1)
    assert second.connect("smtp:192.0.2.1") == (2, 2)
    channel = second.channel
    assert second.connect("smtp:192.0.2.2") == (1, 1) and second.channel is channel  # one channel per process
    second.disconnect("smtp:192.0.2.1")  # a session ended
    assert third.connect("smtp:192.0.2.1") == (2, 3)
    third.close()  # a process that dies releases what it held
    assert first.connect("smtp:192.0.2.1") == (2, 4)
    # A client breaking the protocol is dropped, and what it held is released with it.
    rogue = proto.unix_connect(str(queue_dir / "private" / "anvil"))
    assert rogue.request({"op": "connect", "ident": "smtp:192.0.2.1"})["count"] == 3
    rogue.send({"op": "explode", "ident": "x"})
    assert rogue.receive() is None
    rogue.close()
    lookup = proto.unix_connect(str(queue_dir / "private" / "anvil"))
    assert lookup.request({"op": "lookup", "ident": "smtp:192.0.2.1"}) == {"status": 0, "count": 2, "rate": 5}
    lookup.close()
    first.close()
    second.close()
    deadline = time.monotonic() + 5
    while (state["anvil"].held or state["channels"]) and time.monotonic() < deadline:
        time.sleep(0.01)  # the server sees the last close on its next turn
    assert state["anvil"].held == {} and state["channels"] == {}
    assert state["anvil"].lookup("smtp:192.0.2.1", time.time()).count == 0


def test_a_stale_channel_is_made_again(tmp_path: Path) -> None:
    """anvil restarted: the process's old channel fails once, then a new one is made."""
    (tmp_path / "private").mkdir()
    path = str(tmp_path / "private" / "anvil")
    client = AnvilClient(tmp_path, timeout=5)
    with pytest.raises(OSError):
        client.connect("smtp:192.0.2.1")  # no anvil at all: the error reaches smtpd, which warns
    for generation in (1, 2):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)

        def answer_once() -> None:
            conn, _ = listener.accept()
            channel = proto.Channel(conn, timeout=5)
            received = channel.receive()
            assert received is not None and received[0]["op"] == "connect"
            channel.send({"status": 0, "count": generation, "rate": generation})
            if generation == 1:
                channel.close()  # then anvil goes away

        server = threading.Thread(target=answer_once)
        server.start()
        assert client.connect("smtp:192.0.2.1") == (generation, generation)
        server.join(5)
        listener.close()
        os.unlink(path)


def test_requests_sent_together_are_all_answered(served: tuple[Path, dict[str, Any]]) -> None:
    """A session's disconnect (no reply) and the next session's connect often arrive in one read."""
    queue_dir, _ = served
    channel = proto.unix_connect(str(queue_dir / "private" / "anvil"), timeout=2)
    assert channel.request({"op": "connect", "ident": "smtp:192.0.2.9"})["count"] == 1
    channel.sock.sendall(b'{"op":"disconnect","ident":"smtp:192.0.2.9"}\n{"op":"connect","ident":"smtp:192.0.2.9"}\n')
    started = time.monotonic()
    reply = channel.receive()  # within the channel's 2 s timeout, or TimeoutError
    assert reply is not None and reply[0]["count"] == 1 and reply[0]["rate"] == 2
    assert time.monotonic() - started < 1
    channel.close()
