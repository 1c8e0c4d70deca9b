"""MtaError and its children: every failure the MTA reports names the actor, object and cause."""

from __future__ import annotations


class MtaError(Exception):
    """Root of the MTA's own errors."""


class ConfigError(MtaError, ValueError):
    """A configuration file is wrong; the message names file, line and cause.

    + path: the file, when one is to blame.
    + line: its 1-based line number, when known.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.reason = message
        if path is not None and line is not None:
            message = f"{path}, line {line}: {message}"
        elif path is not None:
            message = f"{path}: {message}"
        super().__init__(message)


class MapError(MtaError):
    """A lookup table cannot be opened, built or read (missing file, bad format, unknown type)."""
