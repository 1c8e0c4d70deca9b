"""The daemon side of master: the daemon registry, the context handed to each daemon, run_daemon.

CONTRACT. A daemon is a module named in skeleton.DAEMONS. It defines:

    SERVER: str                       "single" (one connection at a time), "multi" or "trigger"
    def pre_init(ctx) -> None         before chroot and privilege drop: import, open tables
    def post_init(ctx) -> None        after them
    def service(conn, ctx) -> None    SERVER == "single": serve one accepted connection
    def trigger(data, ctx) -> None    SERVER == "trigger": handle trigger bytes (b"W" on wakeup)
    def request(conn, ctx) -> bool    SERVER == "multi": answer one request of a connected client
    def closed(conn, ctx) -> None     SERVER == "multi": that client is gone
    def pre_exit(ctx) -> None         optional: the process is about to exit normally
    CHROOT_FORBIDDEN: bool            optional: True refuses a master.cf row with chroot = y

Daemons keep per-process state in ctx.state. After chroot the queue directory is
"/", so daemons build every queue path from ctx.queue_dir, never from main.cf.

LIFETIME (loops in mta.skeleton_loop). A single server exits after max_use
connections or max_idle seconds without one (0 means no limit), after SIGTERM once
the current connection is done, when the master goes away or retires it (its
lifeline pipe reaches end of file; a reload does that for services whose
configuration changed), and when the master shuts its listener down (service
removed, mail system stopping). A trigger server is long-lived, like Postfix's
qmgr: the master keeps one running and wakes it every `wakeup` seconds, so
max_use and max_idle do not apply. An exception escaping a hook is logged (with
its traceback) and ends the process with status 1, which the master logs and
counts towards throttling.

A master.cf command is looked up in DAEMONS by its base name; a command with a dot
in it is a module name (``tests.mta.master.daemons``), optionally followed by
``:NAME`` to take the contract from an object in that module (a class), so one
test module can hold several tiny daemons.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import posixpath
import pwd
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mta import log, profiling
from mta.config import MainConfig
from mta.errors import MtaError
from mta.maps import MAP_TYPES
from mta.service_table import ServiceRow
from mta.skeleton_loop import ServerDone, Signals, multi_server, single_server, trigger_server

# master.cf command -> module implementing it.
DAEMONS: dict[str, str] = {
    "smtpd": "mta.smtpd",
    "cleanup": "mta.cleanup",
    "pickup": "mta.pickup",
    "postdrop": "mta.postdrop",
    "qmgr": "mta.qmgr",
    "local": "mta.local",
    "showq": "mta.showq",
    "anvil": "mta.anvil",
    "error": "mta.error",
    "discard": "mta.discard",
    "bounce": "mta.bounce",
    "smtp": "mta.smtp",
    "pipe": "mta.pipe",
}


@dataclass
class DaemonContext:
    """What a daemon process knows about itself.

    + service: its master.cf row (name, type, columns, -o overrides).
    + cfg: main.cf with the row's -o overrides applied.
    + queue_dir: the queue directory as seen by this process ("/" once chrooted).
    + state: the daemon's own per-process data.
    """

    service: ServiceRow
    cfg: MainConfig
    queue_dir: Path
    state: dict[str, Any] = field(default_factory=dict)

    def private(self, name: str) -> str:
        """Path of a private service socket, e.g. ctx.private("local")."""
        return f"{self.queue_dir}/private/{name}"

    def public(self, name: str) -> str:
        """Path of a public service socket, e.g. ctx.public("qmgr")."""
        return f"{self.queue_dir}/public/{name}"


class DaemonError(MtaError):
    """A daemon cannot be loaded or set up (missing module or hook, chroot or setuid failure)."""


# -- finding daemons ---------------------------------------------------------


def daemon_module(command: str) -> tuple[str, str | None] | None:
    """The (module, object name or None) implementing a master.cf command; None when there is none.

    >>> daemon_module("smtpd"), daemon_module("tests.mta.master.daemons:Echo"), daemon_module("smtp")
    (('mta.smtpd', None), ('tests.mta.master.daemons', 'Echo'), None)
    """
    name = posixpath.basename(command)
    if name in DAEMONS:
        return DAEMONS[name], None
    if "." in name:
        module, _, attr = name.partition(":")
        return module, attr or None
    return None


def daemon_available(command: str) -> bool:
    """True when this MTA can run the command: its module exists (it is not imported)."""
    found = daemon_module(command)
    if found is None:
        return False
    try:
        return importlib.util.find_spec(found[0]) is not None
    except (ImportError, ValueError):
        return False


def daemon_preload(commands: list[str]) -> None:
    """Import the daemon modules for commands in the master, before it forks any child.

    Children are forked without exec, so a module the master has already
    imported costs a new process nothing: a local or cleanup process recycled
    after max_use requests starts in about a millisecond instead of re-importing
    its code (tens of milliseconds of CPU on every respawn), and the imported
    pages stay shared between processes. Besides the daemons, this loads every
    lookup table type (daemons open their tables in pre_init) and the codecs
    _jail_prepare() needs. An import error is left for the child to report with
    its own log tag.
    """
    names = [*_LAZY_MODULES, *(target.partition(":")[0] for target in MAP_TYPES.values())]
    for command in commands:
        found = daemon_module(command)
        if found is not None:
            names.append(found[0])
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the child reports it (see run_daemon)
            continue


def process_name(command: str) -> str:
    """The name a daemon logs under: ``smtpd``; for a dotted command its object or last module part."""
    name = posixpath.basename(command)
    if name in DAEMONS:
        return name
    module, _, attr = name.partition(":")
    return attr or module.rsplit(".", 1)[-1]


def daemon_load(command: str) -> Any:
    """Import the daemon for a master.cf command and return the module (or object) with the contract."""
    found = daemon_module(command)
    if found is None:
        raise DaemonError(f"command {command} is not available in this MTA")
    module_name, attr = found
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is a startup failure
        raise DaemonError(f"import {module_name}: {type(exc).__name__}: {exc}") from exc
    if attr is None:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise DaemonError(f"module {module_name} has no daemon {attr}") from None


# -- process setup -----------------------------------------------------------


_PR_SET_NAME = 15


def process_title(name: str) -> None:
    """Name this process after its daemon (``smtpd``) for ps, top and /proc/PID/comm, as Postfix's are.

    Linux keeps at most 15 bytes; elsewhere, or when libc cannot be loaded, this does nothing.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def chroot_check(daemon: Any, row: ServiceRow) -> None:
    """Refuse to run a daemon that declares CHROOT_FORBIDDEN (local, virtual, pipe) in a chroot row.

    They deliver as the recipient into the real file system (home directories,
    mail spool, commands); in the jail they would fail or, worse, write into it
    (master(5): "never chroot local, pipe, spawn, virtual").
    """
    if row.chroot and getattr(daemon, "CHROOT_FORBIDDEN", False):
        raise DaemonError(f"{process_name(row.command)}: refusing to run chrooted: set the chroot column of "
                          f"service {row.service} to n in master.cf ({process_name(row.command)} delivers "
                          "into the real file system as the recipient)")


def privileges_drop(uid: int, gid: int) -> None:
    """Become uid/gid for good: no supplementary groups, then group, then user (order matters)."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid or os.getegid() != gid:
        raise DaemonError(f"privilege drop to uid {uid} gid {gid} did not take effect")


def _verbose(row: ServiceRow) -> bool:
    """True when the row's daemon options include -v."""
    for arg in row.args:
        if not arg.startswith("-") or arg == "--":
            break
        if arg.startswith("-") and not arg.startswith("-o") and "v" in arg[1:]:
            return True
    return False


def run_daemon(row: ServiceRow, cfg: MainConfig, listen_fds: Sequence[int], status_fd: int, *,
               lifeline_fd: int = -1, maillog_fd: int | None = None) -> int:
    """Run one daemon process for a master.cf row; return its exit status.

    + row: the service; its command names the daemon, its columns say chroot and unpriv.
    + cfg: main.cf with the row's -o overrides applied.
    + listen_fds: the service's listening sockets, inherited from the master.
    + status_fd: write end of the service's status pipe (-1: none).
    + lifeline_fd: read end of a pipe only the master writes to; end of file means
      "exit when idle" (-1: none).
    + maillog_fd: the inherited maillog_file descriptor, or None to log to syslog.

    Order, as in Postfix's skeleton: log socket and daemon module, pre_init, then
    chroot to queue_directory and the drop to mail_owner (looked up before the
    chroot), then post_init and the server loop. Signals blocked by the master
    around fork() are unblocked once the SIGTERM handler is in place.
    """
    process_title(process_name(row.command))
    log.setup_daemon(log.daemon_tag(process_name(row.command), cfg), cfg, maillog_fd,
                     verbose=_verbose(row))
    signals = Signals()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signal.valid_signals())
    profile_save = profiling.profile_start(process_name(row.command))
    try:
        return _run(row, cfg, listen_fds, status_fd, lifeline_fd, signals)
    finally:
        if profile_save is not None:
            profile_save()


def _run(row: ServiceRow, cfg: MainConfig, listen_fds: Sequence[int], status_fd: int, lifeline_fd: int,
         signals: Signals) -> int:
    """run_daemon's body, between the log set-up and the profile save; returns the exit status."""
    ctx: DaemonContext | None = None
    daemon: Any = None
    try:
        daemon = daemon_load(row.command)
        chroot_check(daemon, row)
        queue_dir = Path(cfg.get("queue_directory"))
        ctx = DaemonContext(row, cfg, queue_dir)
        owner = None
        if row.unpriv:
            user = cfg.get("mail_owner")
            try:
                owner = pwd.getpwnam(user)
            except KeyError:
                raise DaemonError(f"unknown mail_owner user: {user}") from None
        _jail_prepare()
        pre_init = getattr(daemon, "pre_init", None)
        if pre_init is not None:
            pre_init(ctx)
        _enter(ctx, queue_dir, row.chroot)
        if owner is not None:
            privileges_drop(owner.pw_uid, owner.pw_gid)
        post_init = getattr(daemon, "post_init", None)
        if post_init is not None:
            post_init(ctx)
        _serve(daemon, ctx, listen_fds, status_fd, lifeline_fd, signals)
    except ServerDone:
        pass
    except DaemonError as exc:
        log.msg_fatal(str(exc))
        return 1
    except Exception as exc:  # noqa: BLE001 - report, then let the master see a failure
        _log_exception(exc)
        return 1
    pre_exit = getattr(daemon, "pre_exit", None)
    if pre_exit is not None and ctx is not None:
        pre_exit(ctx)
    return 0


def _serve(daemon: Any, ctx: DaemonContext, listen_fds: Sequence[int], status_fd: int, lifeline_fd: int,
           signals: Signals) -> None:
    """Run the server loop the daemon's SERVER names, with its service() or trigger()."""
    kind = getattr(daemon, "SERVER", "single")
    hooks = {"single": "service", "trigger": "trigger", "multi": "request"}
    if kind not in hooks:
        raise DaemonError(f"{ctx.service.command}: unknown SERVER kind {kind!r}")
    hook = getattr(daemon, hooks[kind], None)
    if hook is None:
        raise DaemonError(f"{ctx.service.command}: {kind} server has no {hooks[kind]}() function")
    if kind == "multi":
        gone = getattr(daemon, "closed", None)
        multi_server(lambda conn: hook(conn, ctx), lambda conn: gone(conn, ctx) if gone else None,
                     listen_fds, status_fd, lifeline_fd, signals)
    elif kind == "single":
        single_server(lambda conn: hook(conn, ctx), listen_fds, status_fd, lifeline_fd, signals,
                      ctx.cfg.get_int("max_use", minimum=0), ctx.cfg.get_time("max_idle", minimum=0))
    else:
        trigger_server(lambda data: hook(data, ctx), listen_fds, status_fd, lifeline_fd, signals)


# Modules the standard library imports lazily, on first use. After chroot, or
# after the drop to mail_owner when Python lives in a directory mail_owner cannot
# read, such an import fails, so every daemon gets them loaded beforehand:
# encodings.idna is what socket.getaddrinfo() and gethostbyaddr() need for a
# str host name.
_LAZY_MODULES = ("encodings.idna", "encodings.ascii", "encodings.latin_1", "encodings.utf_8")


def _jail_prepare() -> None:
    """Load what the standard library would otherwise load after chroot: lazy codecs, the time zone."""
    for name in _LAZY_MODULES:
        importlib.import_module(name)
    # glibc reads /etc/localtime on first use and keeps it; log time stamps need it.
    time.tzset()
    time.localtime()


def _enter(ctx: DaemonContext, queue_dir: Path, chroot: bool) -> None:
    """chdir to the queue directory, and chroot there when the row says so."""
    try:
        os.chdir(queue_dir)
        if chroot:
            os.chroot(queue_dir)
            os.chdir("/")
            ctx.queue_dir = Path("/")
    except OSError as exc:
        what = "chroot" if chroot else "chdir"
        raise DaemonError(f"{what}({queue_dir}): {os.strerror(exc.errno or 0)}") from None


def _log_exception(exc: BaseException) -> None:
    """An uncaught exception: one fatal line, then the traceback one frame a line."""
    log.msg_fatal(f"uncaught exception: {type(exc).__name__}: {exc}")
    for frame in traceback.extract_tb(exc.__traceback__):
        log.msg_error(f"traceback: {frame.filename}, line {frame.lineno}, in {frame.name}")
