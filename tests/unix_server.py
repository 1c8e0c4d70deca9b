"""A real unix-socket server in a thread for tests: each connection goes to one daemon's service()."""

from __future__ import annotations

import os
import socket
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Callable


class UnixServer:
    """Serve a unix socket in a thread; each connection goes to handler(conn), then is closed.

    Use as a context manager: ``with UnixServer(path, handler) as server: ...``;
    ``server.errors`` holds tracebacks of handler exceptions.
    """

    def __init__(self, path: Path, handler: Callable[[socket.socket], None], mode: int = 0o666) -> None:
        self.path = path
        self.handler = handler
        self.errors: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, mode)
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(None)
            try:
                self.handler(conn)
            except Exception:  # noqa: BLE001 - reported to the test through errors
                self.errors.append(traceback.format_exc())
            finally:
                conn.close()

    def start(self) -> "UnixServer":
        """Start serving (what entering the context does); close() stops."""
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close the socket and remove its path."""
        self._stop.set()
        self.thread.join(5)
        self.sock.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "UnixServer":
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
