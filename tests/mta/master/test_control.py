"""mta start, status, stop and their failures, against a real master process."""

from __future__ import annotations

import os
import signal
import socket

from tests.conftest import free_port, wait_for
from tests.mta.master.conftest import DAEMONS, Instance, connect


def echo_cf(port: int, extra: str = "") -> str:
    return f"127.0.0.1:{port} inet n - n - 4 {DAEMONS}:echo\n{extra}"


def test_start_status_stop(instance: Instance) -> None:
    port = free_port()
    instance.configure(echo_cf(port))
    result = instance.mta("start")
    assert result.returncode == 0, result.stderr
    assert "mta/start: starting the mail system" in result.stderr
    pid = instance.pid()
    assert pid is not None
    assert (instance.queue_dir / "pid" / "master.pid").read_text().strip() == str(pid)
    assert os.getpgid(pid) == pid and os.getsid(pid) != pid  # own group, detached, not a session leader

    status = instance.mta("status")
    assert status.returncode == 0
    assert status.stderr == f"mta/status: the mail system is running: PID: {pid}\n"

    sock, greeting = connect(port)
    child_pid, word = greeting.split()
    assert word == "hello"
    sock.close()
    log = instance.wait_log(f"mta/echo[{child_pid}]: connect from ('127.0.0.1'")
    assert f"test.example mta/master[{pid}]: daemon started -- version" in log

    stop = instance.mta("stop")
    assert stop.returncode == 0, stop.stderr
    assert "mta/stop: stopping the mail system" in stop.stderr
    assert not (instance.queue_dir / "pid" / "master.pid").exists()
    assert instance.processes() == []
    assert f"mta/master[{pid}]: terminating on signal 15" in instance.log()
    status = instance.mta("status")
    assert (status.returncode, status.stderr) == (1, "mta/status: the mail system is not running\n")


def test_second_start_refused(instance: Instance) -> None:
    instance.configure(echo_cf(free_port()))
    pid = instance.start()
    again = instance.mta("start")
    assert again.returncode == 1
    assert "mta/start: fatal: the mail system is already running" in again.stderr
    assert instance.pid() == pid


def test_stale_pid_file_after_kill9(instance: Instance) -> None:
    port = free_port()
    instance.configure(echo_cf(port))
    pid = instance.start()
    sock, _ = connect(port)
    sock.close()
    os.kill(pid, signal.SIGKILL)
    # The children see their lifeline end and go, releasing the port.
    wait_for(lambda: not instance.processes(), what="the killed master's children to exit")
    assert (instance.queue_dir / "pid" / "master.pid").exists()
    assert instance.mta("status").returncode == 1
    new_pid = instance.start()
    assert new_pid != pid
    sock, greeting = connect(port)
    assert greeting.endswith(" hello")
    sock.close()


def test_bad_master_cf_reported_with_line(instance: Instance) -> None:
    instance.configure(echo_cf(free_port(), "foo inet n - n - x echo\n"))
    result = instance.mta("start")
    assert result.returncode == 1
    assert f"{instance.config_dir}/master.cf, line 2: field \"max_proc\": bad value: \"x\"" in result.stderr
    assert instance.pid() is None


def test_unknown_mail_owner_reported(instance: Instance) -> None:
    instance.configure(echo_cf(free_port()), "mail_owner = no-such-user-here\n")
    result = instance.mta("start")
    assert result.returncode == 1
    assert "line 9: parameter mail_owner: unknown user name value: no-such-user-here" in result.stderr


def test_listener_failure_reported_by_master(instance: Instance) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        instance.configure(echo_cf(port))
        result = instance.mta("start")
    assert result.returncode == 1
    assert f"mta/start: fatal: bind 127.0.0.1 port {port}: Address already in use" in result.stderr
    assert instance.pid() is None
    assert not (instance.queue_dir / "pid" / "master.pid").exists()
    assert "fatal: bind 127.0.0.1" in instance.log()


def test_unavailable_commands_are_disabled(instance: Instance) -> None:
    port = free_port()
    instance.configure(echo_cf(port, "rewrite unix - - y - - trivial-rewrite\n"
                                     "postlog unix-dgram n - n - 1 postlogd\n"))
    result = instance.mta("start")
    assert result.returncode == 0, result.stderr
    disabled = ("warning: service rewrite/unix: command trivial-rewrite is not available in this MTA; "
                "service disabled")
    assert disabled in result.stderr
    assert disabled in instance.log()
    assert "service postlog/unix-dgram: transport type unix-dgram is not supported" in instance.log()
    sock, greeting = connect(port)
    sock.close()


def test_commands_when_not_running(instance: Instance) -> None:
    instance.configure(echo_cf(free_port()))
    for command, message in (("stop", "fatal: the mail system is not running"),
                             ("reload", "fatal: the mail system is not running"),
                             ("flush", "fatal: Cannot flush mail queue - mail system is down")):
        result = instance.mta(command)
        assert result.returncode == 1, command
        assert f"mta/{command}: {message}" in result.stderr
