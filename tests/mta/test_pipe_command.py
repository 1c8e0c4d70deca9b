"""Tests for mta.pipe_command: real commands run as nobody; exit status to DSN, output, time limit, rights."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from mta.eugid import effective_ids
from mta.pipe_command import SYS_EXITS, command_status, export_env, pipe_command

NOBODY = pwd.getpwnam("nobody")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="running a command as another user needs root")


def run(*argv: str, stdin: bytes = b"", time_limit: float = 20, cwd: str = "/") -> tuple[str, str]:
    return pipe_command(list(argv), uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, env={"PATH": "/usr/bin:/bin"},
                        cwd=cwd, stdin=stdin, time_limit=time_limit)


@pytest.mark.parametrize("script, expected", [
    ("exit 0", ("2.0.0", "")),
    ("echo fine", ("2.0.0", "fine")),
    ("exit 75", ("4.3.0", "temporary failure")),
    ("echo busy; exit 75", ("4.3.0", "temporary failure. Command output: busy")),
    ("exit 71", ("4.3.0", "system resource problem")),
    ("exit 67", ("5.1.1", "user unknown")),
    ("exit 78", ("5.3.5", "local configuration error")),
    ("printf 'oops\\tbad\\n'; exit 1",
     ("5.3.0", 'Command died with status 1: "/bin/sh". Command output: oops bad')),
    ("echo 4.2.2 mailbox full; exit 1", ("4.2.2", "mailbox full")),
    ("echo 5.7.1 go away >&2; exit 75", ("5.7.1", "go away")),
    ("echo 4.2.2 ignored on success", ("2.0.0", "4.2.2 ignored on success")),
    ("kill -TERM $$", ("4.3.0", 'Command died with signal 15: "/bin/sh"')),
])
def test_exit_status_mapping(script: str, expected: tuple[str, str]) -> None:
    assert run("/bin/sh", "-c", script) == expected


def test_sys_exits_table_follows_postfix() -> None:
    transient = {code for code, (dsn, _) in SYS_EXITS.items() if dsn.startswith("4")}
    assert transient == {71, 75}
    assert set(SYS_EXITS) == set(range(64, 79))
    assert command_status(1, "", "x") == ("5.3.0", 'Command died with status 1: "x"')


def test_argv_is_executed_without_a_shell(tmp_path: Path) -> None:
    """Shell metacharacters in an argument are data: nothing expands them."""
    dsn, text = run("/bin/echo", "$HOME", "a;b", "*", "{ x }")
    assert (dsn, text) == ("2.0.0", "$HOME a;b * { x }")


def test_runs_as_the_user_with_only_its_group() -> None:
    dsn, text = run("/usr/bin/id")
    assert dsn == "2.0.0"
    assert text.startswith(f"uid={NOBODY.pw_uid}(nobody) gid={NOBODY.pw_gid}(")
    assert text.count("(") == 3  # uid, gid and one group: no supplementary groups inherited from root


def test_stdin_is_the_message_and_output_is_limited() -> None:
    dsn, text = run("/bin/sh", "-c", "wc -c; head -c 10000 /dev/zero | tr '\\0' y; exit 1", stdin=b"x" * 300000)
    assert dsn == "5.3.0"
    output = text.split("Command output: ", 1)[1]
    assert output.startswith("300000 yyy") and len(output) < 4100


def test_command_that_ignores_stdin_is_fine() -> None:
    assert run("/bin/true", stdin=b"y" * 500000) == ("2.0.0", "")


def test_time_limit_kills_the_process_group(tmp_path: Path) -> None:
    dsn, text = run("/bin/sh", "-c", "sleep 30 & sleep 30", time_limit=1)
    assert (dsn, text) == ("5.3.0", 'Command time limit exceeded: "/bin/sh"')


def test_a_program_that_cannot_run_defers() -> None:
    assert run("/nonexistent/procmail") == (
        "4.3.0", 'cannot run command "/nonexistent/procmail": No such file or directory')
    assert run("/bin/true", cwd="/nonexistent") == (
        "4.3.0", 'cannot run command "/bin/true" in /nonexistent: No such file or directory')


def test_never_runs_as_root() -> None:
    with pytest.raises(ValueError):
        pipe_command(["/bin/true"], uid=0, gid=0, env={}, cwd="/", stdin=b"", time_limit=5)
    with pytest.raises(ValueError):
        pipe_command(["/bin/true"], uid=NOBODY.pw_uid, gid=0, env={}, cwd="/", stdin=b"", time_limit=5)


def test_a_caller_with_dropped_effective_ids_can_still_run_it() -> None:
    """pipe keeps mail_owner's effective ids: the fork gets root back, the caller's ids are kept."""
    postfix = pwd.getpwnam("postfix") if _exists("postfix") else NOBODY
    with effective_ids(postfix.pw_uid, postfix.pw_gid):
        dsn, text = run("/usr/bin/id", "-u")
        assert os.geteuid() == postfix.pw_uid
    assert (dsn, text) == ("2.0.0", str(NOBODY.pw_uid))


def test_export_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("LANG", raising=False)
    assert export_env(["TZ", "LANG", "MAIL_CONFIG=/etc/x"]) == {
        "PATH": "/usr/bin:/bin", "TZ": "UTC", "MAIL_CONFIG": "/etc/x"}


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
