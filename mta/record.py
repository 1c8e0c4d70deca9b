"""Queue-file records: write a message's envelope and content, read it back, mark recipients done.

Format (docs/mail-path.md): a magic line, then one text record per line
(``T`` arrival time, ``W`` delay warning time, ``S`` sender, ``A`` name=value
attribute, ``O`` original recipient, ``R`` pending / ``D`` done recipient),
then ``C <length>``, the content bytes, and a final ``X`` line. Marking a
recipient done rewrites its one type byte in place, and so does marking the
delay warning sent (its fixed-width time becomes 0, as Postfix's
REC_TYPE_WARN), so progress survives a crash without rewriting the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MAGIC = b"mta-queue 1\n"
PENDING = ord("R")
DONE = ord("D")
# The W record's value is space-padded to a fixed width (Postfix's "%15ld"),
# so record_mark_warned() can overwrite it in place.
_WARN_FORMAT = b"W %15d\n"


class RecordError(ValueError):
    """A queue file is malformed (truncated, bad record, wrong length): it is corrupt."""


@dataclass
class Recipient:
    """One envelope recipient and where its type byte sits in the file."""

    address: str
    original: str = ""
    offset: int = -1
    done: bool = False


@dataclass
class Envelope:
    """What a queue file says about a message, besides its content.

    + warn_time: when the sender gets a delay warning if the message is still
      queued (arrival + delay_warning_time, set by cleanup); 0 for none, or
      once it was sent.
    + warn_offset: where the W record sits in the file (-1: none).
    """

    sender: str
    recipients: list[Recipient]
    arrival: float
    attrs: dict[str, str] = field(default_factory=dict)
    warn_time: float = 0.0
    warn_offset: int = -1

    def pending(self) -> list[Recipient]:
        """Recipients not yet delivered or bounced."""
        return [r for r in self.recipients if not r.done]


def _clean(value: str, what: str) -> bytes:
    if "\n" in value or "\r" in value or "\0" in value:
        raise RecordError(f"{what} contains a line break or NUL: {value!r}")
    return value.encode("utf-8", "surrogateescape")


def record_encode(envelope: Envelope, content: bytes) -> bytes:
    """The whole file for envelope and content (content uses LF line ends)."""
    parts = [MAGIC, b"T %.6f\n" % envelope.arrival]
    if envelope.warn_time > 0:
        parts.append(_WARN_FORMAT % int(envelope.warn_time))
    parts.append(b"S " + _clean(envelope.sender, "sender") + b"\n")
    for name, value in envelope.attrs.items():
        if "=" in name:
            raise RecordError(f"attribute name contains '=': {name!r}")
        parts.append(b"A " + _clean(name, "attribute") + b"=" + _clean(value, "attribute") + b"\n")
    for rcpt in envelope.recipients:
        if rcpt.original:
            parts.append(b"O " + _clean(rcpt.original, "recipient") + b"\n")
        kind = b"D " if rcpt.done else b"R "
        parts.append(kind + _clean(rcpt.address, "recipient") + b"\n")
    parts.append(b"C %d\n" % len(content))
    parts.append(content)
    parts.append(b"\nX\n")
    return b"".join(parts)


def record_write(fd: int, envelope: Envelope, content: bytes) -> None:
    """Write the whole file to fd (from offset 0); the caller fsyncs and finishes it."""
    data = record_encode(envelope, content)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def record_parse(data: bytes) -> tuple[Envelope, bytes]:
    """Parse a whole queue file; RecordError when it is corrupt.

    Recipient offsets are filled in so record_mark_done() can update the file.
    """
    if not data.startswith(MAGIC):
        raise RecordError("bad magic line")
    pos = len(MAGIC)
    sender: str | None = None
    arrival: float | None = None
    warn_time, warn_offset = 0.0, -1
    attrs: dict[str, str] = {}
    recipients: list[Recipient] = []
    original = ""
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise RecordError("truncated file (no content record)")
        line = data[pos:end]
        if len(line) < 1 or (len(line) > 1 and line[1:2] != b" "):
            raise RecordError(f"bad record at offset {pos}")
        kind, value = line[:1], line[2:].decode("utf-8", "surrogateescape")
        if kind == b"C":
            try:
                length = int(value)
            except ValueError:
                raise RecordError(f"bad content length {value!r}") from None
            start = end + 1
            content = data[start:start + length]
            if len(content) != length or data[start + length:] != b"\nX\n":
                raise RecordError("truncated file (content length or end marker wrong)")
            break
        if kind == b"T":
            try:
                arrival = float(value)
            except ValueError:
                raise RecordError(f"bad arrival time {value!r}") from None
        elif kind == b"W":
            try:
                warn_time, warn_offset = float(int(value)), pos
            except ValueError:
                raise RecordError(f"bad warning time {value!r}") from None
        elif kind == b"S":
            sender = value
        elif kind == b"A":
            name, sep, attr = value.partition("=")
            if not sep:
                raise RecordError(f"bad attribute record {value!r}")
            attrs[name] = attr
        elif kind == b"O":
            original = value
        elif kind in (b"R", b"D"):
            recipients.append(Recipient(value, original, pos, kind == b"D"))
            original = ""
        else:
            raise RecordError(f"unknown record type {kind!r} at offset {pos}")
        pos = end + 1
    if sender is None or arrival is None:
        raise RecordError("missing sender or arrival time record")
    return Envelope(sender, recipients, arrival, attrs, warn_time, warn_offset), content


def record_read(path: str | os.PathLike[str]) -> tuple[Envelope, bytes]:
    """Read and parse a queue file (RecordError when corrupt, OSError when unreadable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return record_parse(fd_read(fd))
    finally:
        os.close(fd)


def fd_read(fd: int, size_hint: int = 65536) -> bytes:
    """Everything from fd's offset to its end (size_hint: the expected size, for fewer reads)."""
    chunks: list[bytes] = []
    while chunk := os.read(fd, max(size_hint, 65536)):
        chunks.append(chunk)
    return b"".join(chunks)


def record_mark_done(fd: int, recipient: Recipient) -> None:
    """Mark one recipient delivered (or bounced) in an open queue file; the caller fsyncs."""
    if recipient.offset < 0:
        raise RecordError(f"recipient {recipient.address} has no file offset")
    os.pwrite(fd, bytes([DONE]), recipient.offset)
    recipient.done = True


def record_mark_warned(fd: int, envelope: Envelope) -> None:
    """Record in an open queue file that the delay warning was sent (W time 0); the caller fsyncs."""
    if envelope.warn_offset < 0:
        raise RecordError("queue file has no delay warning record")
    os.pwrite(fd, _WARN_FORMAT % 0, envelope.warn_offset)
    envelope.warn_time = 0.0
