"""Table source text: logical lines, "key whitespace value" entries and 3.7 inline rule lists.

FORMAT (postmap(1), access(5)). A logical line starts with non-whitespace
text; a line that starts with whitespace continues it. Blank lines and lines
whose first non-blank character is ``#`` are skipped, also in the middle of a
logical line. Continuation is verbatim, as in Postfix 3.7.11 [obs]: the
newline goes, the continuation line's leading whitespace stays, and trailing
whitespace of the whole logical line is dropped (``k a`` + ``  b`` gives the
value ``a  b``). regexp, pcre and cidr tables use the same logical lines.

ENTRIES. The key ends at the first whitespace outside double quotes; inside
quotes, ``\\"`` and ``\\\\`` escape. The quotes stay part of the key, as in
Postfix, which looks up RFC 5322-quoted local parts (``"a b"@example.com``).
Problems are warnings naming file and line, and the line is skipped: no value,
an unbalanced quote, invalid UTF-8. A duplicate key keeps the first entry
(postmap -r: the last, -w: the first, both silently). A key ending in ``:``
draws the warning Postfix gives for an aliases file fed to postmap.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import IO, Iterable, Iterator, Literal, NamedTuple

from mta import log
from mta.errors import MapError

Duplicates = Literal["warn", "replace", "ignore"]

# Postfix's ISSPACE set; str.isspace() would also take Unicode spaces.
SPACE = " \t\n\r\v\f"

# Fast path for the common unquoted line: key, whitespace, value.
_PLAIN = re.compile(r"([^ \t\n\r\v\f\"]+)[ \t\n\r\v\f]+(.*)", re.DOTALL)


# Records are NamedTuples rather than frozen dataclasses: postmap makes one per
# line, and a frozen dataclass costs several times more to create.
class LogicalLine(NamedTuple):
    """One logical line of a table source.

    + text: continuation lines joined, trailing whitespace removed; invalid
      UTF-8 bytes are kept as surrogate escapes.
    + line: the 1-based number of its first physical line.
    """

    text: str
    line: int


class SourceEntry(NamedTuple):
    """One ``key value`` entry of an indexed table's source, with its line number."""

    key: str
    value: str
    line: int


def source_lines(raw: Iterable[bytes], path: str) -> Iterator[LogicalLine]:
    """Join physical lines into logical lines, dropping blank and comment lines.

    + raw: the physical lines, as read from a binary file (newlines included or not).
    + path: the file name, for the warning about a first line that starts
      with whitespace (which Postfix skips).
    """
    return _join((data.decode("utf-8", "surrogateescape") for data in raw), path)


def _join(texts: Iterable[str], path: str) -> Iterator[LogicalLine]:
    """source_lines() over decoded physical lines."""
    parts: list[str] | None = None
    start = 0
    for number, text in enumerate(texts, 1):
        if text[-1:] == "\n":
            text = text[:-1]
        if not text:
            continue
        first = text[0]
        if first == "#":
            continue
        if first in SPACE:
            body = text.lstrip(SPACE)
            if not body or body[0] == "#":
                continue
            if parts is None:
                log.msg_warn(f"{path}, line {number}: logical line must not start "
                             f"with whitespace: \"{text.rstrip(SPACE)}\"")
                continue
            parts.append(text)
            continue
        if parts is not None:
            yield LogicalLine("".join(parts).rstrip(SPACE) if len(parts) > 1
                              else parts[0].rstrip(SPACE), start)
        parts = [text]
        start = number
    if parts is not None:
        yield LogicalLine("".join(parts).rstrip(SPACE), start)


def source_printable(text: str) -> str:
    """Show text in a message, with invalid UTF-8 bytes as ``?`` (as Postfix does)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\ufffd", "?")


def source_split(text: str) -> tuple[str, str]:
    """Split a logical line into key and value (the value may be empty).

    Raises ValueError("unbalanced ...") when a double quote in the key is not closed.

    >>> source_split('"a b"@example.com  HOLD  it')
    ('"a b"@example.com', 'HOLD  it')
    """
    match = _PLAIN.match(text)
    if match is not None:
        return match.group(1), match.group(2)
    quoted = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quoted:
            if c == "\\" and i + 1 < n:
                i += 2
                continue
            if c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in SPACE:
            break
        i += 1
    if quoted:
        raise ValueError(f"unbalanced '\"' in '{text}' -- ignoring this line")
    return text[:i], text[i:].lstrip(SPACE)


def source_entries(
    lines: Iterable[LogicalLine],
    path: str,
    *,
    fold: bool = True,
    duplicates: Duplicates = "warn",
    existing: Iterable[tuple[str, str]] = (),
) -> list[SourceEntry]:
    """Parse logical lines into entries, in input order, one per key.

    + path: the file name used in warnings (``stdin`` for postmap -i).
    + fold: lowercase keys (postmap without -f).
    + duplicates: "warn" keeps the first entry and warns, "replace" keeps the
      last (postmap -r), "ignore" keeps the first silently (postmap -w).
    + existing: entries already in the table (postmap -i); they come first,
      carry line number 0, and count as earlier for duplicates.
    """
    table: dict[str, SourceEntry] = {key: SourceEntry(key, value, 0) for key, value in existing}
    plain = _PLAIN.match
    for text, line in lines:
        match = plain(text)
        if match is not None:
            key, value = match.group(1), match.group(2)
        else:
            try:
                key, value = source_split(text)
            except ValueError as exc:
                log.msg_warn(f"{path}, line {line}: {exc}")
                continue
            if not value:
                log.msg_warn(f"{path}, line {line}: expected format: key whitespace value")
                continue
        if not text.isascii() and _has_surrogates(text):
            log.msg_warn(f"{path}, line {line}: non-UTF-8 input \"{source_printable(text)}\""
                         " -- ignoring this line")
            continue
        if key.endswith(":"):
            log.msg_warn(f"{path}, line {line}: record is in \"key: value\" format; "
                         "is this an alias file?")
        if fold:
            key = key.lower()
        if key in table:
            if duplicates == "warn":
                log.msg_warn(f"{path}, line {line}: duplicate entry: \"{key}\"")
            if duplicates != "replace":
                continue
            del table[key]
        table[key] = SourceEntry(key, value, line)
    return list(table.values())


def source_open_lines(path: str | Path) -> list[LogicalLine]:
    """Read a table source file into logical lines; MapError names the file when it cannot be read."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise MapError(f"open {path}: {os.strerror(exc.errno or 0)}") from exc
    # One decode and split for the whole file is much cheaper than per line.
    return list(_join(data.decode("utf-8", "surrogateescape").split("\n"), str(path)))


def source_read(
    path: str | Path,
    *,
    fold: bool = True,
    duplicates: Duplicates = "warn",
) -> list[SourceEntry]:
    """Read and parse one postmap source file (see source_entries for the options)."""
    return source_entries(source_open_lines(path), str(path), fold=fold, duplicates=duplicates)


def source_read_stream(
    stream: IO[bytes],
    name: str,
    *,
    fold: bool = True,
    duplicates: Duplicates = "warn",
    existing: Iterable[tuple[str, str]] = (),
) -> list[SourceEntry]:
    """Parse entries from an open binary stream (postmap -i reads stdin, named ``stdin``)."""
    return source_entries(source_lines(stream, name), name, fold=fold,
                          duplicates=duplicates, existing=existing)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# ---------------------------------------------------------------------------
# BRACE LISTS (Postfix 3.0 inline:, 3.7 regexp:{...}, pcre:{...}, cidr:{...})

def brace_tokens(text: str) -> list[tuple[str, bool]]:
    """Split the inside of ``{ ... }`` into items, as Postfix's inline syntax does.

    Items are separated by whitespace and commas; an item that starts with
    ``{`` runs to its matching ``}`` and may contain both. Returns (text,
    braced) pairs; a braced item has its braces and the whitespace just inside
    them removed. Raises ValueError with Postfix's wording for a missing ``}``
    or text after one.

    >>> brace_tokens(" a=b, { c = d e },f")
    [('a=b', False), ('c = d e', True), ('f', False)]
    """
    items: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in SPACE or c == ",":
            i += 1
            continue
        if c == "{":
            depth, j = 0, i
            while j < n:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if j >= n:
                raise ValueError(f"missing '}}' in \"{text[i:]}\"")
            end = j + 1
            if end < n and text[end] not in SPACE and text[end] != ",":
                stop = end
                while stop < n and text[stop] not in SPACE and text[stop] != ",":
                    stop += 1
                raise ValueError(f"syntax error after '}}' in \"{text[i:stop]}\"")
            items.append((text[i + 1:j].strip(SPACE), True))
            i = end
            continue
        j = i
        while j < n and text[j] not in SPACE and text[j] != ",":
            j += 1
        items.append((text[i:j], False))
        i = j
    return items


def brace_body(text: str) -> str | None:
    """The text inside one outer ``{ ... }`` pair, or None when text is not exactly one such pair."""
    if len(text) < 2 or text[0] != "{" or text[-1] != "}":
        return None
    depth = 0
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and i != len(text) - 1:
                return None
    return text[1:-1] if depth == 0 else None


def source_inline_lines(name: str, type_name: str) -> list[LogicalLine]:
    """Rules given in the table name, ``{ {rule-1}, {rule-2} }`` (Postfix 3.7).

    Each braced item becomes one logical line, numbered from 1, as Postfix
    writes them to an in-memory file. Raises MapError for bad syntax.
    """
    body = brace_body(name)
    if body is None:
        raise MapError(f"{type_name} map: bad syntax: \"{type_name}:{name}\"; "
                       f"need \"{type_name}:{{{{rule}}...}}\"")
    try:
        items = brace_tokens(body)
    except ValueError as exc:
        raise MapError(f"{type_name} map: {exc}: \"{type_name}:{name}\"") from exc
    lines: list[LogicalLine] = []
    for number, (text, braced) in enumerate(items, 1):
        if not braced:
            raise MapError(f"{type_name} map: no '{{' at start of text in \"{text}\"")
        lines.append(LogicalLine(text, number))
    return lines
