"""What the admin commands do to a master: start it detached, find it, signal it, wait for it to go.

DAEMONIZING. ``mta start`` needs no init system: it forks, the child calls setsid()
and forks again, and the grandchild (no controlling terminal, not a session
leader but leader of its own process group, cwd /, umask 022, stdio on
/dev/null, no other inherited descriptor) becomes the master. A pipe runs back to the command, which returns only when the
master has written ``ok`` (every listener open, pid file written) or the reason it
could not start, so ``mta start && smtp-client`` is race-free.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from mta.config import load_config
from mta.errors import MtaError
from mta.master.pidfile import pidfile_owner, pidfile_path
from mta.master.spawn import fds_close

READY_TIMEOUT = 60.0  # longest wait for a starting master's report


def superuser_require(command: str) -> None:
    """Refuse a command that signals or starts the master unless run by root (as postfix(1) does)."""
    if os.geteuid() != 0:
        raise MtaError(f"the mta {command} command is reserved for the superuser")


def queue_dir_find(config_dir: Path) -> Path:
    """queue_directory from config_dir/main.cf (ConfigError when main.cf does not parse)."""
    return Path(load_config(config_dir).get("queue_directory"))


def master_pid(queue_dir: Path) -> int | None:
    """The running master's pid (the holder of the pid file lock), or None."""
    return pidfile_owner(queue_dir)


def master_signal(pid: int, sig: int) -> None:
    """Send a signal to the master; MtaError when it is gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise MtaError("the mail system is not running") from None


def master_wait(queue_dir: Path, timeout: float) -> bool:
    """Wait until no master holds the pid file lock; False when timeout seconds pass first."""
    deadline = time.monotonic() + timeout
    while master_pid(queue_dir) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def master_kill(queue_dir: Path, pid: int) -> None:
    """Last resort of ``stop``: SIGKILL the master's process group, then remove its pid file."""
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile_path(queue_dir).unlink(missing_ok=True)


def daemonize(run: Callable[[int], int]) -> tuple[bool, str]:
    """Run run(ready_fd) in a detached grandchild; wait for its report.

    + run: the master; it writes ``ok`` or ``error: REASON`` to ready_fd, and
      its return value is the grandchild's exit status.

    Returns (True, "") once the grandchild reported ready, else (False, reason).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(ready_r)
            os.setsid()
            if os.fork():
                os._exit(0)
            # Not a session leader (so it can never acquire a terminal), but the
            # leader of its own process group, which holds all its children.
            os.setpgid(0, 0)
            os.chdir("/")
            os.umask(0o022)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            fds_close([ready_w])
            status = run(ready_w)
        except BaseException as exc:  # noqa: BLE001 - report anything to the waiting command
            try:
                os.write(ready_w, f"error: {type(exc).__name__}: {exc}".encode("utf-8", "replace"))
            except OSError:
                pass
        finally:
            os._exit(status)
    os.close(ready_w)
    os.waitpid(pid, 0)
    try:
        return _ready_wait(ready_r)
    finally:
        os.close(ready_r)


def _ready_wait(fd: int) -> tuple[bool, str]:
    """Read the master's report until it closes the pipe (or READY_TIMEOUT passes)."""
    data = b""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, f"the master did not report start-up within {READY_TIMEOUT:.0f}s; see the mail log"
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    text = data.decode("utf-8", "replace")
    if text == "ok":
        return True, ""
    if text.startswith("error: "):
        return False, text[len("error: "):]
    return False, "the master exited during start-up; see the mail log"
