"""A real MTA for end-to-end tests: config and queue in tmp, real users, `mta start` / `mta stop`."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
USERS = ("mtae2e1", "mtae2e2")
DOMAIN = "example.test"
HOST = f"gw.{DOMAIN}"


@pytest.fixture(scope="session")
def e2e_base() -> Iterator[Path]:
    """A directory every user can traverse (pytest's own tmp dirs are 0700 root)."""
    base = Path(tempfile.mkdtemp(prefix="mta-e2e-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def users(e2e_base: Path) -> Iterator[dict[str, pwd.struct_passwd]]:
    """Unprivileged local users with homes, created for the session and removed after it."""
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests run as root (they create users and switch to them)")
    homes = e2e_base / "homes"
    homes.mkdir(mode=0o755)
    for name in USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            pass
        else:  # left by an interrupted run, its home perhaps gone: start afresh
            subprocess.run(["userdel", "-r", name], capture_output=True)
        subprocess.run(["useradd", "--create-home", "--home-dir", str(homes / name),
                        "--shell", "/bin/sh", name], check=True)
    yield {name: pwd.getpwnam(name) for name in USERS}
    for name in USERS:
        subprocess.run(["userdel", "-r", name], capture_output=True)


@dataclass
class Mta:
    """A configured MTA instance: its directories, SMTP port and control commands."""

    base: Path
    etc: Path
    spool: Path
    port: int

    def run(self, *args: str, user: str | None = None, input: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(REPO / ".venv/bin/mta"), "-c", str(self.etc), *args]
        if user is not None:
            cmd = ["runuser", "-u", user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, input=input, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): "
                                 f"{done.stdout.decode()}{done.stderr.decode()}")
        return done

    def start(self) -> None:
        self.run("start")

    def stop(self) -> None:
        self.run("stop", check=False)

    def master_pid(self) -> int | None:
        try:
            return int((self.spool / "pid" / "master.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def log(self) -> str:
        path = self.base / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def queue_files(self, queue: str) -> list[Path]:
        return [p for p in (self.spool / queue).rglob("*") if p.is_file()]

    def kill_tree(self) -> None:
        """kill -9 the master and every process in its process group (a crash)."""
        pid = self.master_pid()
        if pid is None:
            return
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def home(user: str) -> str:
    """A test user's home directory."""
    return pwd.getpwnam(user).pw_dir


@pytest.fixture()
def clean_maildirs(users: dict[str, pwd.struct_passwd]) -> None:
    """Empty the test users' Maildirs before a test."""
    for user in users:
        for sub in ("new", "cur", "tmp"):
            directory = Path(home(user)) / "Maildir" / sub
            if directory.is_dir():
                for path in directory.iterdir():
                    path.unlink()


def maildir_messages(home: str) -> list[bytes]:
    new = Path(home) / "Maildir" / "new"
    if not new.is_dir():
        return []
    return [p.read_bytes() for p in sorted(new.iterdir())]


MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/spool
data_directory = {base}/data
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {host}
mydomain = {domain}
myorigin = $mydomain
mydestination = $myhostname, localhost.$mydomain, localhost, $mydomain
home_mailbox = Maildir/
mynetworks = 127.0.0.1/32
alias_maps = hash:{base}/etc/aliases
alias_database = hash:{base}/etc/aliases
queue_run_delay = 1s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
# Name lookups go to the resolver a test writes in etc/resolv.conf, never to the machine's.
import_environment = MAIL_CONFIG TZ LANG=C MTA_RESOLV_CONF={base}/etc/resolv.conf
"""

# No DNS server listens here: lookups fail fast (a test that needs DNS starts tests.dns_server
# and rewrites etc/resolv.conf).
NO_RESOLVER = "nameserver 127.0.0.54\noptions timeout:1 attempts:1\n"

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
local     unix  -       n       n       -       -       local
showq     unix  n       -       n       -       -       showq
anvil     unix  -       -       n       -       1       anvil
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
postdrop  unix  n       -       n       -       -       postdrop
"""


@pytest.fixture()
def scratch(e2e_base: Path, request: pytest.FixtureRequest) -> Path:
    """A per-test directory that the MTA's unprivileged processes can reach."""
    path = Path(tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=e2e_base))
    os.chmod(path, 0o755)
    return path


@pytest.fixture()
def make_mta(scratch: Path, users: dict[str, pwd.struct_passwd]) -> Iterator[Callable[..., Mta]]:
    """Factory: write a configuration (aliases text, extra main.cf lines) and return the Mta, not started."""
    made: list[Mta] = []

    def factory(aliases: str = "", main_extra: str = "") -> Mta:
        base = scratch / f"mta{len(made)}"
        etc = base / "etc"
        etc.mkdir(parents=True)
        (base / "data").mkdir()
        os.chmod(base, 0o755)
        port = free_port()
        (etc / "main.cf").write_text(MAIN_CF.format(base=base, host=HOST, domain=DOMAIN) + main_extra)
        (etc / "master.cf").write_text(MASTER_CF.format(port=port))
        (etc / "aliases").write_text("postmaster: root\n" + aliases)
        (etc / "resolv.conf").write_text(NO_RESOLVER)
        mta = Mta(base, etc, base / "spool", port)
        mta.run("newaliases")
        made.append(mta)
        return mta

    yield factory
    for mta in made:
        pid = mta.master_pid()
        mta.stop()
        if pid is not None and mta.master_pid() is not None:
            mta.kill_tree()


__all__ = ["NO_RESOLVER", "home", "Mta", "maildir_messages", "wait_for", "free_port", "DOMAIN", "HOST"]
