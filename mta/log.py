"""Postfix's message ladder (info, warn, error, fatal, panic) over the logging module, to stderr or the mail log."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, TextIO

from mta.errors import ConfigError

if TYPE_CHECKING:
    from mta.config import MainConfig

logger = logging.getLogger("mta")

_PREFIX = {
    logging.INFO: "",
    logging.WARNING: "warning: ",
    logging.ERROR: "error: ",
    logging.CRITICAL: "fatal: ",
}


class _PostfixFormatter(logging.Formatter):
    """Formats records as Postfix does on stderr: ``mta/postconf: warning: text``."""

    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def format(self, record: logging.LogRecord) -> str:
        prefix = "panic: " if getattr(record, "panic", False) else _PREFIX.get(record.levelno, "")
        return f"{self.program}: {prefix}{record.getMessage()}"


class _StderrHandler(logging.Handler):
    """Writes each record to a given stream, or to whatever sys.stderr is at that moment."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self._stream if self._stream is not None else sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never take the program down
            self.handleError(record)


def setup_stderr(program: str, stream: TextIO | None = None, verbose: bool = False) -> None:
    """Send the MTA's messages to stderr, prefixed with the program name (e.g. ``mta/postmap``).

    + program: the name shown before each message.
    + stream: where to write (default sys.stderr, looked up at write time).
    + verbose: also show debug messages.
    """
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _StderrHandler(stream)
    handler.setFormatter(_PostfixFormatter(program))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def _direct(level: int) -> "_DaemonHandler | None":
    """The daemon handler when it is the only one and level is enabled: the fast path, no LogRecord."""
    handlers = logger.handlers
    if len(handlers) == 1 and isinstance(handlers[0], _DaemonHandler) and logger.level <= level:
        return handlers[0]
    return None


def msg_info(text: str) -> None:
    """Log an informational message."""
    handler = _direct(logging.INFO)
    if handler is not None:
        handler.write(logging.INFO, text)
    else:
        logger.info(text)


def msg_warn(text: str) -> None:
    """Log a warning: something is wrong but work goes on."""
    handler = _direct(logging.WARNING)
    if handler is not None:
        handler.write(logging.WARNING, "warning: " + text)
    else:
        logger.warning(text)


def msg_error(text: str) -> None:
    """Log an error: this operation failed, the program goes on."""
    handler = _direct(logging.ERROR)
    if handler is not None:
        handler.write(logging.ERROR, "error: " + text)
    else:
        logger.error(text)


def msg_fatal(text: str) -> None:
    """Log a fatal message (bad configuration or environment); the caller then exits."""
    logger.critical(text)


def msg_panic(text: str) -> None:
    """Log a broken invariant; the caller then exits."""
    logger.critical(text, extra={"panic": True})


# DAEMON LOGGING. Daemons log as Postfix does: to syslog through /dev/log, or,
# when maillog_file is set, to that file, which the master opens once (O_APPEND)
# and every child inherits, so no process needs to reopen it after chroot. Both
# handlers hold a raw descriptor with no finaliser: a forked child that replaces
# them must never close a descriptor number that it has meanwhile reused.

SYSLOG_PATH = "/dev/log"

SYSLOG_FACILITIES: dict[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}

# logging level -> syslog severity (msg_info LOG_INFO ... msg_fatal and msg_panic LOG_CRIT).
_SEVERITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def _daemon_text(record: logging.LogRecord) -> str:
    """The message text with its severity prefix, on one line: ``warning: text``."""
    prefix = "panic: " if getattr(record, "panic", False) else _PREFIX.get(record.levelno, "")
    return prefix + record.getMessage()


_STAMP: list[object] = [-1, ""]
# This process's id, for log lines; a forked child refreshes it (no getpid() per line).
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def _timestamp() -> str:
    """syslog's time stamp, ``Nov  3 21:40:32`` (day padded with a space); made once a second."""
    now = int(time.time())
    if _STAMP[0] != now:
        _STAMP[0], _STAMP[1] = now, time.strftime("%b %e %H:%M:%S", time.localtime(now))
    return str(_STAMP[1])


class _DaemonHandler(logging.Handler):
    """A daemon's log sink. msg_info() and friends call write() directly when it is the
    only handler (no LogRecord: a daemon logs several lines per message); records
    from other loggers' paths arrive through emit()."""

    def write(self, level: int, text: str) -> None:
        """Write one message, its severity prefix included."""
        raise NotImplementedError

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(record.levelno, _daemon_text(record))
        except Exception:  # noqa: BLE001 - logging must never take the daemon down
            self.handleError(record)


class _MaillogHandler(_DaemonHandler):
    """Appends ``Nov 23 21:40:32 HOST tag[pid]: text`` lines to an inherited O_APPEND descriptor."""

    def __init__(self, fd: int, tag: str, hostname: str) -> None:
        super().__init__()
        self.fd, self.tag, self.hostname = fd, tag, hostname

    def write(self, level: int, text: str) -> None:
        line = f"{_timestamp()} {self.hostname} {self.tag}[{_PID[0]}]: {text.replace(chr(10), ' ')}\n"
        try:
            # One write(2) per line: O_APPEND makes it atomic among all processes.
            os.write(self.fd, line.encode("utf-8", "surrogateescape"))
        except OSError:
            pass  # logging must never take the daemon down


class _SyslogHandler(_DaemonHandler):
    """Sends RFC 3164 datagrams (``<PRI>Nov 23 21:40:32 tag[pid]: text``) to the syslog socket.

    The socket is connected when the handler is made (before chroot). When the
    syslog daemon restarts, a reconnect is tried; inside a chroot it fails and
    messages are dropped, as Postfix's are without a socket in the jail.
    """

    def __init__(self, path: str, facility: int, tag: str) -> None:
        super().__init__()
        self.path, self.facility, self.tag = path, facility, tag
        self.fd = -1
        self._connect()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            return
        self.fd = sock.detach()

    def write(self, level: int, text: str) -> None:
        pri = self.facility * 8 + _SEVERITY.get(level, 6)
        data = f"<{pri}>{_timestamp()} {self.tag}[{_PID[0]}]: {text.replace(chr(10), ' ')}"
        payload = data.encode("utf-8", "surrogateescape")
        for _attempt in range(2):
            if self.fd < 0:
                self._connect()
                if self.fd < 0:
                    return
            try:
                os.write(self.fd, payload)
                return
            except OSError:
                os.close(self.fd)
                self.fd = -1


def daemon_tag(process_name: str, cfg: "MainConfig") -> str:
    """The log tag of a daemon: ``$syslog_name/NAME`` when syslog_name is set, else ``mta/NAME``.

    + process_name: the program's name, e.g. ``smtpd`` or ``master``.
    + cfg: main.cf with the service's -o overrides applied.

    Postfix's default syslog_name is "postfix"; this MTA logs as "mta" unless told
    otherwise, so its lines are not mistaken for a real Postfix's.
    """
    name = cfg.get("syslog_name") if cfg.is_set("syslog_name") else ""
    return f"{name or 'mta'}/{process_name}"


def maillog_open(path: str) -> int:
    """Open maillog_file for appending (created 0600); the master does this once for all children.

    Raises OSError when the file cannot be opened.
    """
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def setup_daemon(tag: str, cfg: "MainConfig", maillog_fd: int | None,
                 syslog_path: str = SYSLOG_PATH, verbose: bool = False) -> None:
    """Send the MTA's messages to the mail log as daemon ``tag`` (e.g. ``mta/smtpd``).

    + tag: the program tag; the process id is added to each line.
    + cfg: gives syslog_facility and myhostname.
    + maillog_fd: an inherited descriptor open on maillog_file, or None for syslog.
    + syslog_path: the syslog socket, connected now (call this before chroot).
    + verbose: also log debug messages (master.cf ``-v``).

    The previous handlers are dropped without being closed: in a freshly forked
    child their descriptors belong to the parent's bookkeeping, not to this process.
    """
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handler: _DaemonHandler
    if maillog_fd is not None:
        handler = _MaillogHandler(maillog_fd, tag, cfg.get("myhostname"))
    else:
        facility_name = cfg.get("syslog_facility").strip().lower()
        if facility_name not in SYSLOG_FACILITIES:
            raise ConfigError(f'unknown syslog_facility value: "{facility_name}"', cfg.path)
        handler = _SyslogHandler(syslog_path, SYSLOG_FACILITIES[facility_name], tag)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
