"""The local transport: commands on this machine through /bin/sh, for the control host and the tests."""

from __future__ import annotations

import subprocess

from harden.errors import TransportError
from harden.transport.base import Result


class LocalTransport:
    """Runs commands here as the current user (root for provisioning).

    + host: the name used in messages (default ``localhost``).
    """

    def __init__(self, host: str = "localhost") -> None:
        self.host = host

    def run(self, command: str, *, check: bool = True, stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        try:
            done = subprocess.run(["/bin/sh", "-c", command], input=stdin if stdin is not None else b"",
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TransportError(f"{self.host}: command timed out after {timeout}s: {command[:200]}") from None
        result = Result(command, done.returncode, done.stdout.decode("utf-8", "replace"),
                        done.stderr.decode("utf-8", "replace"))
        if check and not result.ok:
            raise TransportError(f"{self.host}: exit {result.exit_code}: {command[:200]}: {result.tail()}")
        return result

    def close(self) -> None:
        pass
