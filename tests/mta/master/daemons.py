"""Tiny daemons for the master's tests, named in a test master.cf as ``tests.mta.master.daemons:NAME``."""

from __future__ import annotations

import json
import os
import signal
import socket

from mta import log
from mta.skeleton import DaemonContext


class Echo:
    """Single server: greets with ``PID GREETING`` (-o test_greeting), then echoes lines.

    Commands: ``exit N`` ends the process with status N, ``kill`` kills it with
    SIGKILL, ``raise`` raises an exception; the client closing ends the session.
    """

    SERVER = "single"

    @staticmethod
    def service(conn: socket.socket, ctx: DaemonContext) -> None:
        greeting = ctx.cfg.get("test_greeting") or "hello"
        log.msg_info(f"connect from {conn.getpeername() or 'unix'}")
        conn.sendall(f"{os.getpid()} {greeting}\n".encode())
        reader = conn.makefile("rb")
        for line in reader:
            words = line.split()
            if words[:1] == [b"exit"]:
                os._exit(int(words[1]))
            if words[:1] == [b"kill"]:
                os.kill(os.getpid(), signal.SIGKILL)
            if words[:1] == [b"raise"]:
                raise RuntimeError("raised on request")
            conn.sendall(line)


class Recorder:
    """Trigger server: appends each request's bytes, one line each, to -o test_record_file."""

    SERVER = "trigger"

    @staticmethod
    def trigger(data: bytes, ctx: DaemonContext) -> None:
        with open(ctx.cfg.get("test_record_file"), "ab") as fh:
            fh.write(data + b"\n")


class Whoami:
    """Single server: answers one JSON line describing the process (ids, queue_dir, cwd, environment)."""

    SERVER = "single"

    @staticmethod
    def pre_init(ctx: DaemonContext) -> None:
        ctx.state["pre_init_uid"] = os.getuid()

    @staticmethod
    def post_init(ctx: DaemonContext) -> None:
        ctx.state["post_init_uid"] = os.getuid()

    @staticmethod
    def service(conn: socket.socket, ctx: DaemonContext) -> None:
        report = {
            "pid": os.getpid(), "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
            "egid": os.getegid(), "groups": os.getgroups(), "cwd": os.getcwd(),
            "queue_dir": str(ctx.queue_dir), "sees_pid_dir": os.path.isdir("/pid"), "environ": dict(os.environ), **ctx.state,
        }
        conn.sendall(json.dumps(report).encode() + b"\n")


# Lower-case names for master.cf, so the processes log as mta/echo, mta/recorder, mta/whoami.
echo, recorder, whoami = Echo, Recorder, Whoami
