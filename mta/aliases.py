"""aliases(5) files: parse ``name: value, ...`` lines, build the indexed table, split values into items.

SYNTAX (aliases(5), checked against Postfix 3.7.11's postalias). A logical line
starts with non-whitespace text; a line that starts with whitespace continues
it. Blank lines and lines whose first non-blank character is ``#`` are skipped,
also inside a continued line, and do not end it. Physical lines are joined as
they are (the line break is dropped, nothing else), so whitespace inside a
quoted string that spans lines is kept. There are no trailing comments:
``a: b # c`` has the value ``b # c``. Messages name the first physical line of
the logical line.

Each logical line is read as RFC 822 tokens (atoms, quoted strings, comments,
domain literals, operators). The first ``:`` operator splits name from value.
"need name:value pair" when there is no such colon, nothing before or after
it, or a ``,`` before it; "name must be local" when an ``@`` or ``%`` operator
comes before it (a quoted or backslash-escaped ``@`` is fine). The name is
stored unquoted and folded to lowercase (ASCII letters only, as Postfix does);
the value is stored re-quoted with normalised spacing, which is what
``postalias -q`` prints: ``a: x ,y`` gives ``x, y``, ``a: "|cmd  -x"`` keeps
its quotes.

STRICT MODE (the default) makes every bad line an error: the whole file is
read, each problem is recorded as ``FILE, line N: cause``, and AliasFileError
is raised, so nothing is written and an existing table stays as it was.
Postfix instead warns and skips the line; ``strict=False`` does the same.
Duplicate names are not bad lines: the first entry wins, with the warning
``FILE, line N: duplicate entry: "name"`` (Postfix says ``FILE.db: duplicate
entry: "name"``, without the line).

COMPATIBILITY RECORDS. Like postalias, a build adds ``@`` -> ``@`` (sendmail's
"table is complete" marker) and the NIS records ``YP_LAST_MODIFIED`` (build
time, ten digits) and ``YP_MASTER_NAME`` ($myhostname). They go in after the
file's entries, under the same duplicate rule, and are never folded, so
``postalias -q YP_MASTER_NAME`` misses (the query is folded) as in Postfix.

DELIBERATE DIFFERENCES. Invalid UTF-8 and NUL bytes are bad lines (Postfix
stores the bytes). So are an empty name or value (``"": x``, ``a: \\``):
Postfix stores those records and then warns about them at every lookup. The
table is SQLite written beside the target and renamed over it
(mta.maps.hash), so the directory must be writable even when the old table
exists; Postfix truncates the old file in place.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from mta import log
from mta.errors import ConfigError, MapError
from mta.eugid import effective_ids
from mta.maps import Map, split_spec
from mta.maps.hash import hash_build, hash_db_path, table_owner_mode
from mta.tok822 import (
    LINE_SPACE,
    Token,
    TokenKind,
    fold_ascii,
    tokens_external,
    tokens_internal,
    tokens_scan,
)

# ---------------------------------------------------------------------------
# FILE SYNTAX

class AliasFileError(ConfigError):
    """An aliases file has bad lines; path, line and reason are the first one's.

    + problems: every bad line, each a ConfigError naming file and line.
    """

    def __init__(self, problems: Sequence[ConfigError]) -> None:
        first = problems[0]
        more = len(problems) - 1
        reason = first.reason + (f" (and {more} more bad line{'s' if more > 1 else ''})" if more else "")
        super().__init__(reason, first.path, first.line)
        self.problems = list(problems)


@dataclass(frozen=True)
class AliasEntry:
    """One ``name: value`` definition.

    + name: the lookup key: unquoted, folded to lowercase unless folding is off.
    + value: the stored text (re-quoted, spacing normalised), as postalias -q prints it.
    + path, line: where it was defined (line 0 for compatibility records).
    """

    name: str
    value: str
    path: str
    line: int


def logical_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Join continuation lines and drop comments and blank lines; yield (first line number, text).

    A first logical line that itself starts with whitespace is yielded as it
    is, for the caller to reject. Continuation lines are appended unchanged.
    """
    current: list[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        line = raw[:-1] if raw.endswith("\n") else raw
        stripped = line.lstrip(LINE_SPACE)
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in LINE_SPACE and current:
            current.append(line)
            continue
        if current:
            yield start, "".join(current)
        current, start = [line], number
    if current:
        yield start, "".join(current)


def alias_entry_parse(text: str, fold_case: bool = True) -> tuple[str, str]:
    """Parse one logical line into (name, stored value).

    + text: the logical line, continuation lines already joined.
    + fold_case: fold the name to lowercase (postalias -f turns this off).
    Raises ValueError whose text is the cause, in Postfix's words.

    >>> alias_entry_parse('"Odd Name": frank ,  "|/bin/cat  -n"')
    ('odd name', 'frank, "|/bin/cat  -n"')
    """
    if text and text[0] in LINE_SPACE:
        shown = text[:30] + ("..." if len(text) > 30 else "")
        raise ValueError(f'logical line must not start with whitespace: "{shown}"')
    tokens = tokens_scan(text)
    colon = next((i for i, t in enumerate(tokens)
                  if t.kind is TokenKind.OPERATOR and t.text == ":"), None)
    if colon is None or colon == 0 or colon == len(tokens) - 1 or any(
            t.kind is TokenKind.OPERATOR and t.text == "," for t in tokens[:colon]):
        raise ValueError("need name:value pair")
    if any(t.kind is TokenKind.OPERATOR and t.text in ("@", "%") for t in tokens[:colon]):
        raise ValueError("name must be local")
    name = tokens_internal(tokens[:colon])
    value = tokens_external(tokens[colon + 1:])
    if not name:
        raise ValueError("empty lookup key value is not allowed")
    if not value:
        raise ValueError("empty string result is not allowed")
    return (fold_ascii(name) if fold_case else name), value


def _physical_lines(data: bytes, path: str, problems: list[ConfigError]) -> Iterator[str]:
    """Decode each line as UTF-8; a line that is not valid UTF-8 or holds NUL is recorded and blanked."""
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(ConfigError(f"malformed UTF-8 at byte {exc.start + 1}", path, number))
            line = ""
        if "\0" in line:
            problems.append(ConfigError("NUL character in line", path, number))
            line = ""
        yield line


def alias_parse(
    data: bytes,
    path: str,
    *,
    strict: bool = True,
    fold_case: bool = True,
    duplicates: str = "warn",
) -> list[AliasEntry]:
    """Parse the bytes of an aliases file into entries, one per distinct name, in file order.

    + data: the file's contents.
    + path: the file name used in messages.
    + strict: raise AliasFileError for bad lines (default) instead of warning and skipping them.
    + fold_case: fold names to lowercase (postalias -f turns this off).
    + duplicates: "warn" (first wins, with a warning), "ignore" (first wins
      silently, postalias -w) or "replace" (last wins silently, postalias -r).
    """
    problems: list[ConfigError] = []
    entries: dict[str, AliasEntry] = {}
    for number, text in logical_lines(_physical_lines(data, path, problems)):
        try:
            name, value = alias_entry_parse(text, fold_case)
        except ValueError as exc:
            problems.append(ConfigError(str(exc), path, number))
            continue
        entry_add(entries, AliasEntry(name, value, path, number), duplicates)
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        if strict:
            raise AliasFileError(problems)
        for problem in problems:
            log.msg_warn(str(problem))
    return list(entries.values())


def entry_add(entries: dict[str, AliasEntry], entry: AliasEntry, duplicates: str = "warn") -> None:
    """Add entry to entries (name -> entry) under the duplicate rule of alias_parse()."""
    if entry.name not in entries or duplicates == "replace":
        entries[entry.name] = entry
    elif duplicates == "warn":
        where = f"{entry.path}, line {entry.line}" if entry.line else entry.path
        log.msg_warn(f'{where}: duplicate entry: "{entry.name}"')


def compat_records(hostname: str, now: float | None = None) -> list[tuple[str, str]]:
    """The records postalias adds to every table: ``@``, ``YP_LAST_MODIFIED``, ``YP_MASTER_NAME``."""
    stamp = int(time.time() if now is None else now)
    return [("@", "@"), ("YP_LAST_MODIFIED", f"{stamp:010d}"), ("YP_MASTER_NAME", hostname)]


# ---------------------------------------------------------------------------
# BUILD

def alias_build(
    spec: str,
    *,
    hostname: str,
    strict: bool = True,
    fold_case: bool = True,
    duplicates: str = "warn",
    inherit_mode: bool = True,
    keep_root: bool = False,
    now: float | None = None,
) -> int:
    """Build ``FILE.db`` from the aliases file FILE named by spec; return the number of records.

    + spec: ``FILE`` or ``hash:FILE``; other types raise MapError (only hash tables can be built).
    + hostname: $myhostname, for the YP_MASTER_NAME record.
    + strict, fold_case, duplicates: as for alias_parse().
    + inherit_mode: give a new table the source's group/other read bits
      (default) or mode 0644 (postalias -p). An existing table keeps its mode
      and, when run as root, its owner, as when Postfix truncates it.
    + keep_root: when run as root, keep root privileges (postalias -o); by
      default the build runs as the source file's owner and group, as in Postfix.
    + now: the time for YP_LAST_MODIFIED (tests).
    Raises AliasFileError for bad lines and MapError when a file cannot be read
    or written; in both cases the old table is left untouched.
    """
    type_name, name = split_spec(spec)
    if type_name != "hash":
        raise MapError(f"unsupported map type for this operation: {type_name} (in {spec!r}; "
                       f"only hash: alias tables can be built)")
    source = Path(name)
    db_path = hash_db_path(name)
    try:
        with open(source, "rb") as handle:
            st = os.fstat(handle.fileno())
            data = handle.read()
    except OSError as exc:
        raise MapError(f"open {source}: {os.strerror(exc.errno or 0)}") from exc
    entries = alias_parse(data, str(source), strict=strict, fold_case=fold_case, duplicates=duplicates)
    table = {entry.name: entry for entry in entries}
    for key, value in compat_records(hostname, now):
        entry_add(table, AliasEntry(key, value, str(db_path), 0), duplicates)
    records = [(entry.name, entry.value) for entry in table.values()]

    mode, uid, gid = table_owner_mode(db_path, st.st_mode, inherit_mode)
    old = db_path.exists()
    if os.geteuid() == 0 and not keep_root:
        # PRIVILEGES. Postfix drops to the source file's owner and group, so a
        # user's table is built with that user's rights and belongs to them.
        with effective_ids(st.st_uid, st.st_gid):
            if old and not os.access(db_path, os.W_OK, effective_ids=True):
                raise MapError(f"open database {db_path}: Permission denied")
            if st.st_uid != 0:
                # Not root any more: the new file simply belongs to the source's owner.
                uid = gid = None
            return hash_build(db_path, records, source=source, mode=mode, uid=uid, gid=gid)
    return hash_build(db_path, records, source=source, mode=mode, uid=uid, gid=gid)


def alias_spec(spec: str, default_type: str = "hash") -> str:
    """``FILE`` -> ``default_type:FILE`` ($default_database_type); a ``type:FILE`` spec is kept."""
    type_name, name = split_spec(spec, default_type)
    return f"{type_name}:{name}"


def alias_build_all(
    specs: Iterable[str],
    *,
    hostname: str,
    fold_case: bool = True,
    duplicates: str = "warn",
    inherit_mode: bool = True,
    keep_root: bool = False,
) -> list[str]:
    """Build each table in specs with alias_build() (strict); log every failure; return the failed specs.

    One bad table does not stop the others (one error per table, collected, as
    Fabric does per host); Postfix stops at the first. For bad lines each one
    is logged as ``error: FILE, line N: cause``, then ``error: FILE: N bad
    line(s); FILE.db not updated``.
    """
    failed: list[str] = []
    for spec in specs:
        try:
            alias_build(spec, hostname=hostname, fold_case=fold_case, duplicates=duplicates,
                        inherit_mode=inherit_mode, keep_root=keep_root)
        except AliasFileError as exc:
            for problem in exc.problems:
                log.msg_error(str(problem))
            count = len(exc.problems)
            source = split_spec(spec)[1]
            log.msg_error(f"{source}: {count} bad line{'s' if count > 1 else ''}; "
                          f"{hash_db_path(source)} not updated")
            failed.append(spec)
        except MapError as exc:
            log.msg_error(str(exc))
            failed.append(spec)
    return failed


# ---------------------------------------------------------------------------
# VALUES AND LOOKUP

class AliasKind(Enum):
    """What one item of an alias value delivers to (aliases(5))."""

    ADDRESS = "address"
    INCLUDE = "include"
    FILE = "file"
    COMMAND = "command"


@dataclass(frozen=True)
class AliasItem:
    """One destination of an alias value.

    + kind: see AliasKind.
    + target: the address; the file or :include: path; or the command without its ``|``.
    """

    kind: AliasKind
    target: str

    @property
    def maildir(self) -> bool:
        """True for a file destination ending in ``/``: Maildir delivery."""
        return self.kind is AliasKind.FILE and self.target.endswith("/")


def _item_classify(text: str) -> AliasItem:
    """Classify one unquoted value item the way local(8) does."""
    if text.startswith("|"):
        return AliasItem(AliasKind.COMMAND, text[1:])
    if text[:9].lower() == ":include:":
        return AliasItem(AliasKind.INCLUDE, text[9:].strip())
    if text.startswith("/"):
        return AliasItem(AliasKind.FILE, text)
    return AliasItem(AliasKind.ADDRESS, text)


def alias_items(value: str) -> list[AliasItem]:
    """Split an alias value into its items (RFC 822 list syntax); empty items are dropped.

    Commas inside quotes, comments, domain literals and ``<...>`` do not
    split. Comments are dropped, ``Name <addr>`` gives ``addr``, and quotes are
    removed, so ``"|/usr/bin/procmail -a foo"`` is the command
    ``/usr/bin/procmail -a foo``.

    >>> [(i.kind.value, i.target) for i in alias_items('bob (Bob), :include:/etc/l, "|cat -n"')]
    [('address', 'bob'), ('include', '/etc/l'), ('command', 'cat -n')]
    """
    groups: list[list[Token]] = [[]]
    depth = 0
    for token in tokens_scan(value):
        if token.kind is TokenKind.OPERATOR:
            if token.text == "<":
                depth += 1
            elif token.text == ">":
                depth = max(0, depth - 1)
            elif token.text == "," and depth == 0:
                groups.append([])
                continue
        groups[-1].append(token)
    items: list[AliasItem] = []
    for group in groups:
        tokens = [t for t in group if t.kind is not TokenKind.COMMENT]
        opens = [i for i, t in enumerate(tokens) if t.kind is TokenKind.OPERATOR and t.text == "<"]
        if opens:
            closes = [i for i, t in enumerate(tokens) if t.kind is TokenKind.OPERATOR and t.text == ">"]
            end = next((i for i in closes if i > opens[0]), len(tokens))
            tokens = tokens[opens[0] + 1:end]
        text = tokens_internal(tokens)
        if text:
            items.append(_item_classify(text))
    return items


def alias_lookup(maps: Iterable[Map], name: str) -> list[AliasItem] | None:
    """Look name up in alias tables, in order; return the first value's items, None when absent.

    + maps: the open alias_maps tables.
    + name: the local part; it is folded to lowercase first, as local(8)
      always does, whatever the table type.
    """
    key = fold_ascii(name)
    for table in maps:
        value = table.lookup(key)
        if value is not None:
            return alias_items(value)
    return None
