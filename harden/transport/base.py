"""The Transport protocol every way of reaching a host implements, its Result, and atomic file writes.

A transport runs shell commands as root on its host (``run``) and writes
files atomically (``put``): the data goes to a temporary file beside the
target, which gets its owner and mode and is fsynced before it is renamed
over the target, and the directory is fsynced after; a reader never sees a
half-written file, and a crash leaves either the old file or the new one.
``put`` compares the SHA-256 of the wanted content with the file's first and
writes nothing when they match, so a second run changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from dataclasses import dataclass
from typing import Protocol

from harden.errors import TransportError


@dataclass
class Result:
    """What a command did (Invoke's Result): the command, its exit code and output."""

    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 5) -> str:
        """The last lines of stderr (or stdout), for messages."""
        text = (self.stderr or self.stdout).strip().splitlines()
        return " | ".join(text[-lines:])


class Transport(Protocol):
    """A connection to one host. Commands run as root (through sudo when the login user is not root)."""

    host: str

    def run(self, command: str, *, check: bool = True, stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        """Run a shell command; with check, a non-zero exit raises TransportError with the stderr tail."""
        ...

    def close(self) -> None:
        """Release the connection (idempotent)."""
        ...


def file_put(transport: Transport, data: bytes, dest: str, *, mode: int = 0o644, owner: str = "root",
             group: str = "root") -> bool:
    """Write data to dest atomically with owner, group and mode; return True when the file changed.

    Nothing is written when dest already holds exactly data with that owner,
    group and mode. Raises TransportError when the host refuses.
    """
    digest = hashlib.sha256(data).hexdigest()
    q = shlex.quote
    want = f"{mode:o} {owner} {group}"
    probe = transport.run(f"if [ -f {q(dest)} ] && [ ! -L {q(dest)} ]; then "
                          f"sha256sum < {q(dest)} | cut -d' ' -f1; stat -c '%a %U %G' {q(dest)}; fi",
                          check=False)
    lines = probe.stdout.split("\n")
    if probe.ok and len(lines) >= 2 and lines[0] == digest and lines[1] == want:
        return False
    script = (
        f"set -e; umask 077; d=$(dirname {q(dest)}); "
        f"t=$(mktemp \"$d/.harden.XXXXXX\"); trap 'rm -f \"$t\"' EXIT; "
        f"cat > \"$t\"; chown {q(owner)}:{q(group)} \"$t\"; chmod {mode:o} \"$t\"; "
        f"sync \"$t\"; mv -f \"$t\" {q(dest)}; trap - EXIT; sync \"$d\""
    )
    done = transport.run(script, check=False, stdin=data)
    if not done.ok:
        raise TransportError(f"{transport.host}: write {dest}: {done.tail()}")
    return True


def file_get(transport: Transport, path: str) -> bytes | None:
    """The content of a file on the host, or None when it does not exist."""
    done = transport.run(f"if [ -e {shlex.quote(path)} ]; then base64 -w0 < {shlex.quote(path)}; "
                         f"else echo MISSING; fi")
    if done.stdout.strip() == "MISSING":
        return None
    return base64.b64decode(done.stdout.strip())
