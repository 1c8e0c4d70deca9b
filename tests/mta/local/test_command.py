"""Tests for mta.local.command: shell commands through mta.pipe_command, exit status mapping, environment."""

from __future__ import annotations

import pwd

import pytest

from mta.local.command import command_run
from tests.mta.local.conftest import HOST, LocalEnv

NOBODY = pwd.getpwnam("nobody")


def run(command: str, stdin: bytes = b"", time_limit: float = 20) -> tuple[str, str]:
    return command_run(command, uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, env={"PATH": "/usr/bin:/bin"},
                       cwd="/", stdin=stdin, time_limit=time_limit)


@pytest.mark.parametrize("command, expected", [
    ("exit 0", ("2.0.0", "")),
    ("exit 75", ("4.3.0", "temporary failure")),
    ("echo busy; exit 75", ("4.3.0", "temporary failure. Command output: busy")),
    ("exit 71", ("4.3.0", "system resource problem")),
    ("exit 74", ("5.3.0", "input/output error")),
    ("exit 67", ("5.1.1", "user unknown")),
    ("printf 'oops\\tbad\\n'; exit 1", ("5.3.0", 'Command died with status 1: "printf \'oops\\tbad\\n\'; exit 1". '
                                                 "Command output: oops bad")),
    ("echo 4.2.2 mailbox full; exit 1", ("4.2.2", "mailbox full")),
    ("echo 5.7.1 go away >&2; exit 75", ("5.7.1", "go away")),
    ("kill -TERM $$", ("4.3.0", 'Command died with signal 15: "kill -TERM $$"')),
])
def test_exit_status_mapping(command: str, expected: tuple[str, str]) -> None:
    assert run(command) == expected


def test_stdin_is_the_message_and_output_is_limited() -> None:
    data = b"x" * 300000
    dsn, text = run("wc -c; head -c 10000 /dev/zero | tr '\\0' y; exit 1", stdin=data)
    assert dsn == "5.3.0"
    assert text.startswith('Command died with status 1: "wc -c; ')
    output = text.split("Command output: ", 1)[1]
    assert output.startswith("300000 yyy") and len(output) < 4100


def test_command_that_ignores_stdin_is_fine() -> None:
    assert run("exit 0", stdin=b"y" * 500000) == ("2.0.0", "")


def test_time_limit_kills_the_process_group() -> None:
    dsn, text = run("sleep 30 & sleep 30", time_limit=1)
    assert (dsn, text) == ("5.3.0", 'Command time limit exceeded: "sleep 30 & sleep 30"')


def test_never_runs_as_root() -> None:
    with pytest.raises(ValueError):
        command_run("true", uid=0, gid=0, env={}, cwd="/", stdin=b"", time_limit=5)


def test_pipe_alias_exit_status_defers_or_bounces(env: LocalEnv) -> None:
    env.aliases('tempfail: "|exit 75"\npermfail: "|echo no such list; exit 1"\n'
                f'envcheck: "|env > {env.pub}/env.txt"\n')
    replies = env.deliver(f"tempfail@{HOST}", f"permfail@{HOST}", f"envcheck@{HOST}",
                          attrs={"client_address": "192.0.2.1", "client_name": "evil;host"})
    assert [(r["status"], r["dsn"], r["reason"]) for r in replies] == [
        (4, "4.3.0", "temporary failure"),
        (5, "5.3.0", 'Command died with status 1: "echo no such list; exit 1". Command output: no such list'),
        (0, "2.0.0", f"delivered to command: env > {env.pub}/env.txt"),
    ]
    variables = dict(line.split("=", 1) for line in (env.pub / "env.txt").read_text().splitlines())
    assert variables["RECIPIENT"] == f"envcheck@{HOST}"
    assert variables["ORIGINAL_RECIPIENT"] == f"envcheck@{HOST}"
    assert variables["LOCAL"] == variables["USER"] == variables["LOGNAME"] == "envcheck"
    assert variables["DOMAIN"] == HOST
    assert variables["PATH"] == "/usr/bin:/bin"
    assert variables["CLIENT_ADDRESS"] == "192.0.2.1"
    assert variables["CLIENT_HOSTNAME"] == "evil_host"
    assert "HOME" not in variables  # a root-owned alias has no user context


def test_command_time_limit_setting(env: LocalEnv) -> None:
    env.aliases('slow: "|sleep 20"\n')
    env.start(command_time_limit="1s")
    [reply] = env.deliver(f"slow@{HOST}")
    assert (reply["status"], reply["dsn"], reply["reason"]) == (
        5, "5.3.0", 'Command time limit exceeded: "sleep 20"')
