"""mta reload: sessions survive, listeners are kept, changed services get new processes."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from tests.conftest import free_port
from tests.mta.master.conftest import DAEMONS, Instance, connect, readline


def test_reload_keeps_session_and_applies_override(instance: Instance) -> None:
    port, removed_port, added_port = free_port(), free_port(), free_port()
    instance.configure(f"127.0.0.1:{port} inet n - n - - {DAEMONS}:echo -o test_greeting=one\n"
                       f"127.0.0.1:{removed_port} inet n - n - - {DAEMONS}:echo\n")
    master = instance.start()
    session, greeting = connect(port)
    old_pid, word = greeting.split()
    assert word == "one"
    idle, _ = connect(removed_port)  # a session on a service that goes away

    instance.configure(f"127.0.0.1:{port} inet n - n - - {DAEMONS}:echo -o test_greeting=two\n"
                       f"127.0.0.1:{added_port} inet n - n - - {DAEMONS}:echo\n")
    result = instance.mta("reload")
    assert result.returncode == 0, result.stderr
    assert "mta/reload: refreshing the mail system" in result.stderr
    instance.wait_log(f"mta/master[{master}]: reload -- version")

    # The session in progress goes on in its old process, with the old settings.
    session.sendall(b"still there\n")
    assert readline(session) == "still there"
    idle.sendall(b"me too\n")
    assert readline(idle) == "me too"
    # New clients get a new process with the new -o override, on the same listener.
    fresh, greeting = connect(port)
    new_pid, word = greeting.split()
    assert (word, new_pid != old_pid) == ("two", True)
    fresh.close()
    other, greeting = connect(added_port)
    other.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", removed_port), timeout=5)
    assert instance.pid() == master
    session.close()
    idle.close()


def test_reload_with_broken_config_is_refused(instance: Instance) -> None:
    port = free_port()
    instance.configure(f"127.0.0.1:{port} inet n - n - - {DAEMONS}:echo\n")
    master = instance.start()
    (instance.config_dir / "master.cf").write_text("broken inet\n")
    result = instance.mta("reload")
    assert result.returncode == 1
    assert "master.cf, line 1: missing \"private\" field" in result.stderr
    assert "reload --" not in instance.log()
    # A SIGHUP that bypasses the command's check: the master keeps its configuration.
    os.kill(master, signal.SIGHUP)
    log = instance.wait_log("error: reload failed: ")
    assert 'master.cf, line 1: missing "private" field; keeping the running configuration' in log
    sock, greeting = connect(port)
    sock.close()
    assert instance.pid() == master
