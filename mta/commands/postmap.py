"""mta postmap: build indexed tables from access(5)-style text, or query and list any table.

  mta postmap [-fprw] [TYPE:]FILE ...          build FILE.db from each FILE
  mta postmap [-fprw] -i [TYPE:]FILE           add "key value" lines from stdin
  mta postmap [-f] -q KEY TYPE:NAME ...        print the first value found for KEY
  mta postmap [-f] -q - TYPE:NAME ...          read keys from stdin, print "key<TAB>value"
  mta postmap -s TYPE:NAME ...                 print every entry as "key<TAB>value"

A bare FILE has the type $default_database_type. Only hash: tables are built;
any type can be queried (hash, regexp, pcre, cidr, inline, static), and -s
lists hash and inline tables. A query is one literal lookup: no parent
domains, no address extensions, no shorter networks (smtpd does those). Keys
are lowercased for hash and inline tables unless -f is given. A regexp, pcre
or cidr table with a bad line is refused with its file and line, as the
daemons refuse it (Postfix warns and skips the rule).

BUILDING. Bad source lines are warnings naming file and line and are skipped;
the first of duplicate keys wins. The new table replaces FILE.db by an atomic
rename, so a reader sees the whole old table or the whole new one. A new
FILE.db gets mode 0600 plus the source file's group and other read bits (0644
with -p); an existing one keeps its mode, and its owner when run as root.
Unlike Postfix, postmap does not switch to the source file's owner when run
as root: the table belongs to the caller.

Exit status: 0 on success or when a query found something, 1 otherwise.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import IO, Sequence

from mta.config import load_config
from mta.errors import MapError
from mta.maps import MAP_TYPES, Map, maps_find, open_map, split_spec
from mta.maps.hash import HashMap, hash_build, hash_db_path, table_owner_mode
from mta.maps.source import Duplicates, source_read, source_read_stream

SUMMARY = "build indexed tables from access(5)-style files, or query any lookup table"

BUILD_TYPES = ("hash",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Postfix's postmap options that apply to our table types."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("-q", dest="query", metavar="KEY",
                      help="look KEY up (- reads keys from stdin); exit 0 if found")
    mode.add_argument("-s", dest="show", action="store_true",
                      help="print every entry as key<TAB>value")
    mode.add_argument("-i", dest="incremental", action="store_true",
                      help="add entries read from stdin to the existing table")
    parser.add_argument("-f", dest="no_fold", action="store_true",
                        help="do not fold keys to lowercase when building or querying")
    parser.add_argument("-p", dest="default_mode", action="store_true",
                        help="create a new table with mode 0644 instead of the source's read bits")
    dups = parser.add_mutually_exclusive_group()
    dups.add_argument("-r", dest="duplicates", action="store_const", const="replace",
                      help="duplicate keys: the last one wins, no warning")
    dups.add_argument("-w", dest="duplicates", action="store_const", const="ignore",
                      help="duplicate keys: the first one wins, no warning")
    parser.add_argument("tables", nargs="+", metavar="[TYPE:]FILE",
                        help="table source file or TYPE:NAME")


def postmap_spec(spec: str, default_type: str) -> tuple[str, str]:
    """Split a command-line table into (type, name), a bare name taking default_type.

    Raises MapError for a type this MTA does not know.
    """
    type_name, name = split_spec(spec, default_type)
    if type_name not in MAP_TYPES:
        raise MapError(f"unsupported dictionary type: {type_name}")
    return type_name, name


def postmap_mode(db_path: Path, source: Path | None, *,
                 inherit: bool = True) -> tuple[int, int | None, int | None]:
    """The (mode, uid, gid) a rebuilt table gets (see mta.maps.hash.table_owner_mode)."""
    try:
        source_mode = None if source is None else os.stat(source).st_mode
    except OSError:
        source_mode = None
    return table_owner_mode(db_path, source_mode, inherit)


def postmap_build(
    source: str | Path,
    *,
    fold: bool = True,
    duplicates: Duplicates = "warn",
    inherit_mode: bool = True,
    stdin: IO[bytes] | None = None,
) -> int:
    """Build ``SOURCE.db`` (a hash: table) from a text file; return the entry count.

    + source: the text file, e.g. /etc/postfix/access.
    + fold: lowercase the keys (postmap without -f).
    + duplicates: "warn" (first wins, warning), "replace" (-r) or "ignore" (-w).
    + inherit_mode: give a new table the source's read bits (False: 0644, -p).
    + stdin: incremental mode (-i): add the entries read from this stream to
      the existing table instead of reading the source file.
    Raises MapError when the source or the table cannot be read or written.
    """
    source = Path(source)
    db_path = hash_db_path(source)
    mode, uid, gid = postmap_mode(db_path, source, inherit=inherit_mode)
    if stdin is None:
        entries = [(e.key, e.value) for e in source_read(source, fold=fold, duplicates=duplicates)]
    else:
        existing: list[tuple[str, str]] = []
        if db_path.exists():
            table = HashMap(f"hash:{source}", str(source))
            try:
                existing = table.items()
            finally:
                table.close()
        parsed = source_read_stream(stdin, "stdin", fold=fold, duplicates=duplicates,
                                    existing=existing)
        entries = [(e.key, e.value) for e in parsed]
    return hash_build(db_path, entries, source=source, mode=mode, uid=uid, gid=gid)


def _write(out: IO[str], text: str) -> None:
    # Results of regexp tables may carry bytes that are not UTF-8 (as surrogate
    # escapes); write them back as the bytes they were.
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(text)
        return
    out.flush()
    buffer.write(text.encode("utf-8", "surrogateescape"))


def postmap_query(maps: Sequence[Map], key: str, stdin: IO[str], out: IO[str]) -> int:
    """postmap -q: print the value for key (or "key<TAB>value" per stdin line for ``-``); exit status."""
    if key != "-":
        value = maps_find(maps, key)
        if value is None:
            return 1
        _write(out, f"{value}\n")
        return 0
    found = False
    for line in stdin:
        name = line.rstrip("\n")
        value = maps_find(maps, name)
        if value is not None:
            _write(out, f"{name}\t{value}\n")
            found = True
    out.flush()
    return 0 if found else 1


def postmap_show(maps: Sequence[Map], out: IO[str]) -> int:
    """postmap -s: print every entry of each table as "key<TAB>value"."""
    for table in maps:
        items = getattr(table, "items", None)
        if items is None:
            raise MapError(f"table {table.spec}: sequence operation is not supported")
        for key, value in items():
            _write(out, f"{key}\t{value}\n")
    out.flush()
    return 0


def run(args: argparse.Namespace) -> int:
    """Build, query or list the tables named on the command line."""
    cfg = load_config(args.config_dir)
    default_type = cfg.get("default_database_type") or "hash"
    specs = [postmap_spec(spec, default_type) for spec in args.tables]
    fold = not args.no_fold
    if args.query is not None or args.show:
        maps: list[Map] = []
        try:
            for type_name, name in specs:
                table = open_map(f"{type_name}:{name}", cfg)
                maps.append(table)
                if not fold:
                    table.fold_case = False
            if args.show:
                return postmap_show(maps, sys.stdout)
            if args.query != "-":
                return postmap_query(maps, args.query, sys.stdin, sys.stdout)
            # Keys from stdin are bytes to us, as to Postfix: keep invalid UTF-8.
            stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8",
                                     errors="surrogateescape", newline="\n")
            try:
                return postmap_query(maps, "-", stdin, sys.stdout)
            finally:
                stdin.detach()
        finally:
            for table in maps:
                table.close()
    for type_name, _name in specs:
        if type_name not in BUILD_TYPES:
            raise MapError(f"unsupported dictionary type: {type_name} does not support "
                           "bulk-mode creation.")
    if args.incremental and len(specs) != 1:
        raise MapError("-i takes exactly one table")
    for _type_name, name in specs:
        postmap_build(name, fold=fold, duplicates=args.duplicates or "warn",
                      inherit_mode=not args.default_mode,
                      stdin=sys.stdin.buffer if args.incremental else None)
    return 0
