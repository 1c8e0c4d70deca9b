"""Run a delivery command as an unprivileged user with the message on its input (Postfix's pipe_command.c).

Shared by local(8) (``|command`` and mailbox_command, through /bin/sh -c) and
pipe(8) (the master.cf argv=, executed directly). The caller chooses the
argument vector, the user, the environment and the working directory;
pipe_command() runs it and turns the outcome into a DSN and a reason.

RIGHTS. The command never runs as root: the caller's uid and gid must not be
0, and subprocess sets the groups (only gid), gid and uid in the child before
exec, for good. A caller that runs with another user's effective ids and
root's real ids (pipe keeps mail_owner's, as Postfix does) gets root's
effective uid back for the fork only, because the child needs it to change
ids. The command runs in its own session and process group, so a time-out
kills its children too.

EXIT STATUS (sys_exits.c and pipe_command.c). 0 is success. A failed command
whose output starts with an RFC 3463 code (``4.2.2 text``) gets that code.
Otherwise sysexits codes map as in SYS_EXITS: EX_TEMPFAIL (75) and EX_OSERR
(71) defer, every other code bounces; a signal defers; running past the time
limit bounces. Up to OUTPUT_LIMIT bytes of output (stdout and stderr
together) go into the reason, tabs and newlines as spaces. A command that
cannot be started at all (no such program, a bad working directory) defers
with 4.3.0: Postfix's child would exit with status 1 and bounce, but that is a
configuration mistake the mail should survive.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from typing import Sequence

from mta.config import environment_select
from mta.eugid import root_ids

OUTPUT_LIMIT = 4096
DEFAULT_PATH = "/usr/bin:/bin"

# <sysexits.h> code -> (DSN, text), as Postfix's sys_exits_table.
SYS_EXITS: dict[int, tuple[str, str]] = {
    64: ("5.3.0", "command line usage error"),
    65: ("5.6.0", "data format error"),
    66: ("5.3.0", "cannot open input"),
    67: ("5.1.1", "user unknown"),
    68: ("5.1.2", "host name unknown"),
    69: ("5.3.0", "service unavailable"),
    70: ("5.3.0", "internal software error"),
    71: ("4.3.0", "system resource problem"),
    72: ("5.3.0", "critical OS file missing"),
    73: ("5.2.0", "can't create user output file"),
    74: ("5.3.0", "input/output error"),
    75: ("4.3.0", "temporary failure"),
    76: ("5.5.0", "remote error in protocol"),
    77: ("5.7.0", "permission denied"),
    78: ("5.3.5", "local configuration error"),
}

_DSN = re.compile(r"([245])\.\d{1,3}\.\d{1,3}(?=\s|$)")


def export_env(export_environment: Sequence[str]) -> dict[str, str]:
    """The base environment of a command: PATH, then export_environment (``NAME`` or ``NAME=value``).

    Postfix passes only export_environment; PATH=/usr/bin:/bin is added so
    that a command's own scripts find the usual tools.
    """
    return {"PATH": DEFAULT_PATH, **environment_select(export_environment)}


def _printable(data: bytes) -> str:
    """Command output as Postfix shows it: tabs and newlines become spaces, other controls ``_``."""
    text = data.decode("utf-8", "replace").replace("\t", " ").replace("\n", " ").replace("\r", " ")
    return "".join(ch if ch.isprintable() else "_" for ch in text).strip()


def _talk(proc: subprocess.Popen[bytes], data: bytes, deadline: float) -> tuple[bytes, bool]:
    """Feed data to the command and keep the first OUTPUT_LIMIT bytes of its output.

    Returns (output, timed_out). A command that stops reading early is not an
    error (EPIPE is ignored, as in Postfix).
    """
    if proc.stdin is None or proc.stdout is None:
        raise ValueError("command started without pipes")
    stdin_fd, stdout_fd = proc.stdin.fileno(), proc.stdout.fileno()
    os.set_blocking(stdin_fd, False)
    sel = selectors.DefaultSelector()
    sel.register(stdout_fd, selectors.EVENT_READ)
    view = memoryview(data)
    if view:
        sel.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    output = bytearray()
    try:
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(output), True
            for key, _ in sel.select(remaining):
                if key.fd == stdin_fd:
                    try:
                        view = view[os.write(stdin_fd, view[:65536]):]
                    except BrokenPipeError:
                        view = view[:0]
                    except BlockingIOError:
                        continue
                    if not view:
                        sel.unregister(stdin_fd)
                        proc.stdin.close()
                else:
                    chunk = os.read(stdout_fd, 65536)
                    if not chunk:
                        sel.unregister(stdout_fd)
                    elif len(output) < OUTPUT_LIMIT:
                        output += chunk[:OUTPUT_LIMIT - len(output)]
    finally:
        sel.close()
        if not proc.stdin.closed:
            proc.stdin.close()
    return bytes(output), False


def _start(argv: Sequence[str], uid: int, gid: int, env: dict[str, str], cwd: str) -> subprocess.Popen[bytes]:
    with root_ids():  # the child needs root's rights to change its ids
        return subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd, user=uid, group=gid,
                                extra_groups=[gid], start_new_session=True, close_fds=True)


def pipe_command(argv: Sequence[str], *, uid: int, gid: int, env: dict[str, str], cwd: str, stdin: bytes,
                 time_limit: float, command: str | None = None,
                 cwd_fallback: str | None = None) -> tuple[str, str]:
    """Run argv as uid/gid with stdin; return (DSN, text): text is the reason unless the DSN is 2.x.x.

    + argv: the program and its arguments, executed directly (PATH from env finds a bare name).
    + env: the whole environment (see export_env).
    + cwd: working directory; when it cannot be used, cwd_fallback (None: defer).
    + time_limit: seconds for the whole run; past it the process group is killed.
    + command: how messages name the command (default argv[0]).

    2.0.0 comes with the (printable) output as text, for callers that want it.
    """
    if uid == 0 or gid == 0:
        raise ValueError(f"refusing to run a command with uid {uid} gid {gid}")
    if not argv:
        raise ValueError("empty command")
    command = argv[0] if command is None else command
    try:
        try:
            proc = _start(argv, uid, gid, env, cwd)
        except OSError:
            if cwd_fallback is None or cwd == cwd_fallback or not os.path.isdir(cwd_fallback):
                raise
            proc = _start(argv, uid, gid, env, cwd_fallback)  # e.g. a home the user cannot enter
    except OSError as exc:
        where = f" in {exc.filename}" if exc.filename == cwd else ""
        return "4.3.0", f'cannot run command "{command}"{where}: {os.strerror(exc.errno or 0)}'
    deadline = time.monotonic() + time_limit
    raw, timed_out = b"", True
    try:
        raw, timed_out = _talk(proc, stdin, deadline)
        if not timed_out:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        if timed_out or proc.poll() is None:
            # Kill the whole process group: the command's own children too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    output = _printable(raw)
    return command_status(proc.returncode, output, command, timed_out)


def command_status(code: int, output: str, command: str, timed_out: bool = False) -> tuple[str, str]:
    """(DSN, text) for a command's exit: code as from Popen.returncode (negative for a signal).

    >>> command_status(75, "busy", "/bin/x")
    ('4.3.0', 'temporary failure. Command output: busy')
    >>> command_status(1, "5.1.1 no such mailbox", "/bin/x")
    ('5.1.1', 'no such mailbox')
    """
    said = f". Command output: {output}" if output else ""
    if timed_out:
        return "5.3.0", f'Command time limit exceeded: "{command}"{said}'
    if code == 0:
        return "2.0.0", output
    if code < 0:
        return "4.3.0", f'Command died with signal {-code}: "{command}"{said}'
    found = _DSN.match(output)
    if found:
        return found.group(), output[found.end():].strip()
    if code in SYS_EXITS:
        dsn, text = SYS_EXITS[code]
        return dsn, f"{text}{said}"
    return "5.3.0", f'Command died with status {code}: "{command}"{said}'
