"""Test helpers for cleanup, pickup, postdrop and sendmail: a queue directory, a daemon context,
a unix-socket server running a daemon's service() in a thread, and running code as ``nobody``.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Callable

from mta.config import MainConfig, load_config
from mta.service_table import row_parse
from mta.skeleton import DaemonContext
from tests.mta.test_derived import INTERFACES
from tests.unix_server import UnixServer

NOBODY = 65534
QUEUE_DIRS = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt", "public", "private", "submit")
BASE_CONFIG = "myhostname = mx.example.test\nmydomain = example.test\nmail_owner = nobody\n"


def world_dir() -> Path:
    """A fresh directory under /tmp that nobody can traverse (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="mta-test-", dir="/tmp"))
    path.chmod(0o755)
    return path


def queue_make(root: Path) -> Path:
    """A queue directory with the subdirectories the daemons use (plain mkdir, 0755)."""
    queue = root / "queue"
    queue.mkdir(mode=0o755)
    for name in QUEUE_DIRS:
        (queue / name).mkdir(mode=0o755)
    return queue


def config_make(root: Path, queue: Path, extra: str = "") -> MainConfig:
    """Write root/main.cf (queue_directory = queue, plus extra lines) and load it."""
    (root / "main.cf").write_text(BASE_CONFIG + f"queue_directory = {queue}\n" + extra)
    (root / "main.cf").chmod(0o644)
    return load_config(root, hostname="mx.example.test", interfaces=INTERFACES)


def ctx_make(command: str, cfg: MainConfig, queue: Path) -> DaemonContext:
    """A DaemonContext for command, as the master would build it (unchrooted)."""
    row = row_parse(f"{command} unix n - n - - {command}")
    return DaemonContext(row, cfg, queue)


class TriggerSink:
    """A fake trigger service (public/qmgr, public/pickup) that records the bytes it receives."""

    def __init__(self, path: Path) -> None:
        self.data = b""
        self.event = threading.Event()
        self.server = UnixServer(path, self._handle)

    def _handle(self, conn: socket.socket) -> None:
        while chunk := conn.recv(64):
            self.data += chunk
        self.event.set()

    def __enter__(self) -> "TriggerSink":
        self.server.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.__exit__(kind, value, tb)


def run_as_nobody(func: Callable[[], int]) -> tuple[int, str]:
    """Run func in a forked child that became nobody; return its exit status and its stderr.

    Everything func needs must already be imported: nobody cannot read this
    interpreter's files under /root.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.close(read_fd)
            sys.stderr = io.TextIOWrapper(os.fdopen(write_fd, "wb", buffering=0), write_through=True)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = func()
        except BaseException:  # noqa: BLE001 - the child must always exit here
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")
