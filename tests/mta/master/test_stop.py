"""mta stop lets work in progress finish, and kills what will not stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import free_port, wait_for
from tests.mta.master.conftest import DAEMONS, Instance, connect, readline


def test_stop_lets_inflight_connection_finish(instance: Instance) -> None:
    port = free_port()
    instance.configure(f"127.0.0.1:{port} inet n - n - - {DAEMONS}:echo\n")
    instance.start()
    session, _ = connect(port)
    idle_pid = connect(port)[1].split()[0]  # a second session, closed: its process goes idle
    stopper = subprocess.Popen([sys.executable, "-m", "mta", "-c", str(instance.config_dir), "stop"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        instance.wait_log("terminating on signal 15")
        # No new clients ...
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        time.sleep(0.3)
        assert stopper.poll() is None  # ... but the session in progress goes on.
        session.sendall(b"finishing\n")
        assert readline(session) == "finishing"
        session.close()
        _, stderr = stopper.communicate(timeout=20)
    finally:
        if stopper.poll() is None:
            stopper.kill()
    assert stopper.returncode == 0, stderr
    assert instance.processes() == []
    assert idle_pid
    assert "warning: process" not in instance.log()  # nothing died or was killed


def test_stop_timeout_kills_process_group(instance: Instance) -> None:
    port = free_port()
    instance.configure(f"127.0.0.1:{port} inet n - n - - {DAEMONS}:echo\n")
    instance.start()
    session, _ = connect(port)
    result = instance.mta("stop", "--timeout", "1")
    assert result.returncode == 0
    assert "did not stop within 1s; killing its process group" in result.stderr
    assert instance.pid() is None
    assert not (instance.queue_dir / "pid" / "master.pid").exists()
    wait_for(lambda: not instance.processes(), timeout=5, what="all processes to be gone")
    assert session.recv(100) == b""
    session.close()
