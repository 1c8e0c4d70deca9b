"""Shared fixtures and helpers: the real Debian Postfix 3.7 binaries, free ports, polling, leak checks."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """Poll predicate until it returns something true; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def find_postfix_root() -> Path | None:
    """The unpacked Debian postfix .deb: $MTA_POSTFIX_ROOT, else .cache/postfix-3.7/root."""
    candidates = [os.environ.get("MTA_POSTFIX_ROOT"), str(REPO / ".cache/postfix-3.7/root")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "usr/sbin/postconf").exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def postfix_root() -> Path:
    """Path of the real Postfix tree; skips locally, fails under CI, when it is missing."""
    root = find_postfix_root()
    if root is None:
        message = "real Postfix not unpacked: run scripts/fetch-postfix.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


def run_postfix(root: Path, tool: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run one of real Postfix's commands (postconf, postmap, postalias) from the unpacked tree."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/postfix"))
    env.pop("MAIL_CONFIG", None)
    return subprocess.run(
        [str(root / "usr/sbin" / tool), *args],
        capture_output=True, text=True, env=env, input=input, timeout=60,
    )


@pytest.fixture(autouse=True)
def _restore_mta_logger() -> Iterator[None]:
    """mta.cli.main() installs a stderr handler on the mta logger; undo that after each test."""
    logger = logging.getLogger("mta")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:] = saved[0]
    logger.propagate = saved[1]
    logger.setLevel(saved[2])


@pytest.fixture(autouse=True)
def _ids_unchanged() -> Iterator[None]:
    """No test (nor the code it runs in-process) may leave the process with other effective ids."""
    before = (os.geteuid(), os.getegid(), sorted(os.getgroups()))
    yield
    after = (os.geteuid(), os.getegid(), sorted(os.getgroups()))
    assert after == before, f"effective ids leaked: {before} -> {after}"


# -- the local lab (harden lab) -----------------------------------------------------

LAB_TEST_FIRST = "127.0.0.111"  # away from a user's own lab at 127.0.0.11...
LAB_TEST_HOSTS = 4


class LabFixture:
    """A lab for tests: its directory, hosts and helpers to run commands with the lab's pinned keys."""

    def __init__(self, lab_dir: Path) -> None:
        from harden.lab.fleet import lab_state

        self.dir = lab_dir
        self.hosts = lab_state(lab_dir).hosts

    def ssh(self, host: str, command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run command on host with OpenSSH and the lab's ssh_config (strict host key checking)."""
        from harden.lab.fleet import ssh_command

        done = subprocess.run(ssh_command(self.dir, host, [command]), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"ssh {host} {command!r}: exit {done.returncode}: {done.stderr.strip()}")
        return done

    def restart(self, *hosts: str) -> None:
        """Put hosts back in their initial state (a new writable layer and an empty /srv)."""
        from harden.lab.fleet import host_restart

        for name in hosts or [h.short for h in self.hosts]:
            host_restart(self.dir, name)


@pytest.fixture(scope="session")
def lab() -> Iterator[LabFixture]:
    """A lab of LAB_TEST_HOSTS hosts at 127.0.0.111... for the whole session (root only)."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    from harden.lab.fleet import lab_down, lab_up

    lab_dir = Path(f"/var/tmp/harden-lab-tests-{os.getpid()}")
    lab_up(LAB_TEST_HOSTS, lab_dir, first_address=LAB_TEST_FIRST)
    try:
        yield LabFixture(lab_dir)
    finally:
        lab_down(lab_dir)


@pytest.fixture
def fresh_lab(lab: LabFixture) -> LabFixture:
    """The session's lab with every host restarted in its initial state before the test."""
    lab.restart()
    return lab
