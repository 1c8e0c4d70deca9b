"""|command and mailbox_command deliveries: run a shell command as an unprivileged user.

DELIVERY RIGHTS. The command runs with the rights of the user on whose behalf
the delivery is made (the recipient, the alias table or :include: file owner);
when those are root's, or there is no user context, it runs as default_privs.
It never runs as root: subprocess sets the groups, gid and uid in the child
before exec, and the parent refuses uid 0 outright.

ENVIRONMENT (local(8)). PATH is reset to /usr/bin:/bin; variables named in
export_environment are passed on; HOME, SHELL, USER, LOGNAME, LOCAL, DOMAIN,
EXTENSION, RECIPIENT, ORIGINAL_RECIPIENT, SENDER and the CLIENT_* / SASL_*
attributes describe the delivery, each filtered through
command_expansion_filter. The command is started with /bin/sh -c (or
local_command_shell) in its own process group, in command_execution_directory
when set, else the user's home directory (Postfix uses the queue directory), with
the message on standard input after a From_ line, Return-Path:,
X-Original-To: and Delivered-To:.

EXIT STATUS (Postfix's pipe_command() and sys_exits table). 0 is success. A
failed command whose output starts with an RFC 3463 code (``4.2.2 text``) gets
that code. Otherwise sysexits codes map as in sys_exits.c: EX_TEMPFAIL (75)
and EX_OSERR (71) defer, every other code bounces; a signal defers; running
past command_time_limit bounces. Up to 4096 bytes of output (stdout and
stderr) go into the reason.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time

from mta import proto
from mta.local.delivered import copy_headers
from mta.local.expand import local_expand, local_macros
from mta.local.state import Delivery, RcptState, Result, UserAttr, text_filter

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

# Message attribute -> environment variable (local(8) "EXTERNAL COMMAND DELIVERY").
_CLIENT_ENV = {
    "client_name": "CLIENT_HOSTNAME", "client_address": "CLIENT_ADDRESS", "helo": "CLIENT_HELO",
    "protocol": "CLIENT_PROTOCOL", "sasl_method": "SASL_METHOD", "sasl_sender": "SASL_SENDER",
    "sasl_username": "SASL_USERNAME",
}


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


def command_run(command: str, *, uid: int, gid: int, env: dict[str, str], cwd: str | None,
                stdin: bytes, time_limit: float, shell: str = "") -> tuple[str, str]:
    """Run command as uid/gid with stdin; return (DSN, text): text is the reason unless the DSN is 2.x.x.

    + cwd: working directory; None or an unusable one falls back to "/".
    + shell: local_command_shell (empty: /bin/sh -c).
    """
    if uid == 0 or gid == 0:
        raise ValueError(f"refusing to run a command with uid {uid} gid {gid}")
    argv = shell.split() + [command] if shell.strip() else ["/bin/sh", "-c", command]

    def start(directory: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, cwd=directory, user=uid, group=gid, extra_groups=[gid],
                                start_new_session=True, close_fds=True)
    try:
        try:
            proc = start(cwd or "/")
        except OSError:
            if not cwd or cwd == "/":
                raise
            proc = start("/")  # a home the user cannot enter
    except OSError as exc:
        return "4.3.0", f"Delivery failed: {os.strerror(exc.errno or 0)}"
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
    said = f". Command output: {output}" if output else ""
    if timed_out:
        return "5.3.0", f'Command time limit exceeded: "{command}"{said}'
    code = proc.returncode
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


def command_env(delivery: Delivery, rcpt: RcptState, usr: UserAttr | None) -> dict[str, str]:
    """The environment for a command delivered for rcpt with usr's home and shell."""
    settings = delivery.settings
    env = {"PATH": DEFAULT_PATH}
    for entry in settings.export_environment:
        name, eq, setting = entry.partition("=")
        if eq:
            env[name] = setting
        elif name in os.environ:
            env[name] = os.environ[name]
    exported: dict[str, str | None] = {
        "HOME": usr.home if usr else None, "SHELL": usr.shell if usr else None,
        "USER": rcpt.user, "LOGNAME": rcpt.user, "SENDER": delivery.message.sender,
        "RECIPIENT": rcpt.address, "LOCAL": rcpt.local, "DOMAIN": rcpt.domain,
        "EXTENSION": rcpt.extension, "ORIGINAL_RECIPIENT": rcpt.original or None,
    }
    for attr, variable in _CLIENT_ENV.items():
        exported[variable] = delivery.message.attrs.get(attr) or None
    for variable, value in exported.items():
        if value is not None:
            env[variable] = text_filter(value, settings.command_filter)
    return env


def deliver_command(delivery: Delivery, rcpt: RcptState, command: str, usr: UserAttr | None) -> None:
    """Deliver one copy to command with usr's rights (default_privs for root or no user)."""
    settings = delivery.settings
    runner = usr if usr is not None and usr.uid != 0 else settings.default_privs
    key = f"command {rcpt.user}:{runner.uid} {command}"
    if delivery.duplicate(key):
        return
    cwd = usr.home if usr else None
    if settings.exec_directory:
        try:
            expanded = local_expand(settings.exec_directory, local_macros(rcpt, usr, settings.recipient_delimiter),
                                    settings.exec_directory_filter)
        except ValueError:
            delivery.record(key, Result(proto.TEMPFAIL, "4.3.5", "mail system configuration error", rcpt.address))
            return
        cwd = expanded.text
    data = copy_headers(delivery, rcpt, "command", from_=True) + delivery.message.content
    dsn, text = command_run(command, uid=runner.uid, gid=runner.gid or settings.default_privs.gid,
                            env=command_env(delivery, rcpt, usr), cwd=cwd, stdin=data,
                            time_limit=settings.command_time_limit, shell=settings.local_command_shell)
    if dsn.startswith("2"):
        delivery.record(key, Result(proto.OK, "2.0.0", f"delivered to command: {command}", rcpt.address))
    else:
        status = proto.TEMPFAIL if dsn.startswith("4") else proto.PERMFAIL
        delivery.record(key, Result(status, dsn, text, rcpt.address))
