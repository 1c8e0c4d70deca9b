"""Fixtures for local(8) tests: real unprivileged users, alias tables, queue files and a local server.

The tests run as root (local must switch users). Two accounts, mtatest1 and
mtatest2, are created for the session with useradd under a world-searchable
directory in /tmp (pytest's own tmp_path is root-only, so unprivileged
delivery children could not reach it) and removed with userdel -r afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from mta import clients, local
from mta.aliases import alias_build
from mta.config import load_config
from mta.queue import ACTIVE, queue_path
from mta.record import Envelope, Recipient, record_encode
from mta.service_table import row_parse
from mta.skeleton import DaemonContext
from tests.unix_server import UnixServer

HOST = "mail.example.test"
USERS = ("mtatest1", "mtatest2")
SENDER = "sender@example.org"


def _getent(name: str) -> bool:
    return subprocess.run(["getent", "passwd", name], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def base() -> Iterator[Path]:
    """A world-searchable scratch directory for homes, spools and command output."""
    if os.geteuid() != 0:
        pytest.skip("local delivery tests need root")
    path = Path(tempfile.mkdtemp(prefix="mta-local-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def users(base: Path) -> Iterator[dict[str, pwd.struct_passwd]]:
    """The test accounts, created for the session (a stale one from a crashed run is replaced)."""
    created = []
    for name in USERS:
        if _getent(name):
            subprocess.run(["userdel", "-r", name], capture_output=True)
        subprocess.run(["useradd", "--create-home", "--home-dir", str(base / "home" / name),
                        "--shell", "/bin/sh", name], check=True, capture_output=True)
        created.append(name)
    try:
        yield {name: pwd.getpwnam(name) for name in USERS}
    finally:
        for name in created:
            subprocess.run(["userdel", "-r", name], capture_output=True)


@dataclass
class LocalEnv:
    """One test's mail system: config, alias table, a queue directory and a running local server."""

    root: Path
    pub: Path
    spool: Path
    users: dict[str, pwd.struct_passwd]
    params: dict[str, str] = field(default_factory=dict)
    ctx: DaemonContext | None = None
    _servers: list[UnixServer] = field(default_factory=list)
    _count: int = 0

    @property
    def queue_dir(self) -> Path:
        return self.root / "queue"

    def aliases(self, text: str, path: Path | None = None) -> Path:
        """Write and build an aliases file (root-owned unless path is given and chowned)."""
        path = path or self.root / "etc" / "aliases"
        path.write_text(text)
        alias_build(str(path), hostname=HOST)
        return path

    def start(self, **params: str) -> None:
        """Write main.cf (test defaults plus params) and start a local server on private/local."""
        settings = {
            "myhostname": HOST, "mydestination": f"{HOST}, localhost",
            "alias_maps": f"hash:{self.root / 'etc' / 'aliases'}", "home_mailbox": "Maildir/",
            "mail_spool_directory": str(self.spool), "deliver_lock_attempts": "2",
            "deliver_lock_delay": "1s", "queue_directory": str(self.queue_dir),
        }
        settings.update(params)
        (self.root / "etc" / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        cfg = load_config(self.root / "etc", hostname=HOST)
        self.ctx = DaemonContext(row_parse("local unix - n n - - local"), cfg, self.queue_dir)
        local.pre_init(self.ctx)
        local.post_init(self.ctx)
        sock_path = self.queue_dir / "private" / "local"
        sock_path.unlink(missing_ok=True)
        ctx = self.ctx
        self._servers.append(UnixServer(sock_path, lambda conn: local.service(conn, ctx)).start())

    def stop(self) -> None:
        for server in self._servers:
            server.close()

    def queue(self, recipients: list[str], content: bytes | None = None, sender: str = SENDER,
              attrs: dict[str, str] | None = None) -> str:
        """Write a ready queue file in active/ and return its ID."""
        self._count += 1
        queue_id = f"ABCDEF{self._count:06X}"
        if content is None:
            content = b"Subject: test\nFrom: " + sender.encode() + b"\n\nFrom the body\nhello\n"
        envelope = Envelope(sender, [Recipient(r, r) for r in recipients], time.time() - 5, attrs or {})
        path = queue_path(self.queue_dir, ACTIVE, queue_id)
        path.write_bytes(record_encode(envelope, content))
        path.chmod(0o700)
        return queue_id

    def deliver(self, *recipients: str, content: bytes | None = None, sender: str = SENDER,
                attrs: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Queue a message for recipients and have local deliver it; return the per-recipient replies."""
        if self.ctx is None:
            self.start()
        queue_id = self.queue(list(recipients), content, sender, attrs)
        request = {"queue_name": ACTIVE, "queue_id": queue_id, "sender": sender, "arrival": time.time(),
                   "attrs": attrs or {}, "nexthop": HOST,
                   "recipients": [{"address": r, "original": r, "offset": 0} for r in recipients]}
        reply = clients.deliver_request(self.queue_dir, "local", request, timeout=60)
        assert reply["status"] == 0, reply
        return list(reply["recipients"])

    def maildir(self, user: str) -> list[bytes]:
        """Messages in user's ~/Maildir/new, oldest first."""
        new = Path(self.users[user].pw_dir) / "Maildir" / "new"
        if not new.is_dir():
            return []
        return [p.read_bytes() for p in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)]


@pytest.fixture
def env(tmp_path: Path, base: Path, users: dict[str, pwd.struct_passwd]) -> Iterator[LocalEnv]:
    """A fresh LocalEnv; the users' Maildirs are emptied before each test."""
    for pw in users.values():
        shutil.rmtree(Path(pw.pw_dir) / "Maildir", ignore_errors=True)
        for name in (".forward", "Mailbox"):
            (Path(pw.pw_dir) / name).unlink(missing_ok=True)
    pub = Path(tempfile.mkdtemp(prefix="pub-", dir=base))
    pub.chmod(0o1777)
    spool = Path(tempfile.mkdtemp(prefix="spool-", dir=base))
    os.chown(spool, 0, 8)  # root:mail 2775, like Debian's /var/mail
    spool.chmod(0o2775)
    for sub in ("etc", "queue/active", "queue/private", "queue/public"):
        (tmp_path / sub).mkdir(parents=True)
    environment = LocalEnv(tmp_path, pub, spool, users)
    environment.aliases("postmaster: root\n")
    yield environment
    environment.stop()
    shutil.rmtree(pub, ignore_errors=True)
    shutil.rmtree(spool, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _ignore_sigxfsz() -> None:
    """As the local daemon does in post_init: a write past the size limit fails with EFBIG."""
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
