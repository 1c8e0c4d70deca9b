"""A message copy for a mailbox or a command: envelope lines, then the content (Postfix's mail_copy.c).

ENVELOPE LINES (mail_copy() flags). In this order, each optional: the mbox
``From sender  date`` line, ``Return-Path: <sender>``, ``X-Original-To:
<original recipient>`` and ``Delivered-To: <recipient>``. Addresses are
written with their local part quoted as RFC 822 requires (quote_822_local:
``"a b"@example.com``); a null sender is ``MAILER-DAEMON`` in the From_ line
and ``<>`` in Return-Path:, unless the caller substitutes its own (pipe's
null_sender=).

CONTENT (pipe(8) flags). Queue files keep LF line ends; copy_lines() ends
each line with the chosen end-of-line string instead, prepends ``.`` to a
line starting with ``.`` (dot-stuffing, flag ``.``) and ``>`` to a line
starting with ``From `` (flag ``>``), and may append a blank line (flag B).
"""

from __future__ import annotations

import time

MAILER_DAEMON = "MAILER-DAEMON"

# RFC 822 specials, space and controls make a local part need quoting; 8-bit
# characters do not (Postfix's quote_822_local is 8-bit transparent).
_SPECIALS = frozenset('()<>@,;:\\".[] ') | frozenset(chr(c) for c in range(32)) | {"\x7f"}


def quote_822_local(address: str) -> str:
    """address with its local part (left of the rightmost ``@``) quoted when RFC 822 needs it.

    >>> quote_822_local("a b@example.com"), quote_822_local("first.last@x"), quote_822_local('.x"y')
    ('"a b"@example.com', 'first.last@x', '".x\\\\"y"')
    """
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if not local or all(atom and not (set(atom) & _SPECIALS) for atom in local.split(".")):
        return address
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"{at}{domain}'


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def from_line(sender: str, now: float | None = None, eol: bytes = b"\n") -> bytes:
    """The mbox ``From sender  Day Mon dd hh:mm:ss yyyy`` line (two spaces, as Postfix)."""
    stamp = time.asctime(time.localtime(time.time() if now is None else now))
    return _encode(f"From {quote_822_local(sender) if sender else MAILER_DAEMON}  {stamp}") + eol


def envelope_headers(sender: str, *, from_: bool = False, return_path: bool = False,
                     original: str | None = None, delivered: str | None = None, eol: bytes = b"\n") -> bytes:
    """The lines to put before the message: From_, Return-Path:, X-Original-To:, Delivered-To:.

    + from_, return_path: write the From_ line, the Return-Path: header.
    + original, delivered: the X-Original-To: and Delivered-To: addresses (None: no header).
    """
    lines = [from_line(sender, eol=eol)] if from_ else []
    if return_path:
        lines.append(_encode(f"Return-Path: <{quote_822_local(sender)}>") + eol)
    if original is not None:
        lines.append(_encode(f"X-Original-To: {quote_822_local(original)}") + eol)
    if delivered is not None:
        lines.append(_encode(f"Delivered-To: {quote_822_local(delivered)}") + eol)
    return b"".join(lines)


def copy_lines(content: bytes, *, eol: bytes = b"\n", dot: bool = False, quote_from: bool = False,
               blank: bool = False) -> bytes:
    """The content with eol line ends: dot-stuffed (dot), ``>From `` quoted (quote_from), a blank line added (blank).

    >>> copy_lines(b"From me\\n.\\nx", eol=b"\\r\\n", dot=True, quote_from=True, blank=True)
    b'>From me\\r\\n..\\r\\nx\\r\\n\\r\\n'
    """
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the last line's own LF
    out = []
    for line in lines:
        if dot and line.startswith(b"."):
            line = b"." + line
        if quote_from and line.startswith(b"From "):
            line = b">" + line
        out.append(line)
    if blank:
        out.append(b"")
    return b"".join(line + eol for line in out)
