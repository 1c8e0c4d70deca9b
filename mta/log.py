"""Postfix's message ladder (info, warn, error, fatal, panic) over the logging module."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

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


def msg_info(text: str) -> None:
    """Log an informational message."""
    logger.info(text)


def msg_warn(text: str) -> None:
    """Log a warning: something is wrong but work goes on."""
    logger.warning(text)


def msg_error(text: str) -> None:
    """Log an error: this operation failed, the program goes on."""
    logger.error(text)


def msg_fatal(text: str) -> None:
    """Log a fatal message (bad configuration or environment); the caller then exits."""
    logger.critical(text)


def msg_panic(text: str) -> None:
    """Log a broken invariant; the caller then exits."""
    logger.critical(text, extra={"panic": True})
