"""mta postalias: build Postfix alias tables from aliases(5) files, or query them.

  mta postalias [-fop] [-r|-w] [TYPE:]FILE ... build FILE.db from each FILE
  mta postalias [-f] -q KEY [TYPE:]FILE ...    print the first value found for KEY
  mta postalias [-f] -q - [TYPE:]FILE ...      read keys from stdin, print "key:<TAB>value"
  mta postalias -s [TYPE:]FILE                 print every record as "key:<TAB>value"

A query exits 0 when something was found, 1 otherwise. A bare FILE has the
type $default_database_type; only hash: tables can be built.

STRICT. A bad line (no name:value pair, a name with a domain, leading
whitespace on the first line, an empty name or value, invalid UTF-8) is an
error naming FILE and line: the table is not written and the old FILE.db stays
in use. Postfix 3.7 warns and skips such lines. Duplicate names are warnings
(the first one wins), as in Postfix.

The new FILE.db gets the source file's group and other read bits (0644 with
-p); an existing one keeps its mode. Run as root, the build runs as the source
file's owner and group unless -o is given. The table also holds the records
"@", YP_LAST_MODIFIED and YP_MASTER_NAME that Postfix adds.
"""

from __future__ import annotations

import argparse
import sys

from mta.aliases import alias_build_all, alias_spec, fold_ascii
from mta.config import load_config
from mta.errors import MapError
from mta.maps import Map, open_map

SUMMARY = "build or query alias tables (aliases(5) -> FILE.db)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Postfix's postalias options that apply to hash tables."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("-q", dest="query", metavar="KEY",
                      help="look KEY up (- reads keys from stdin); exit 0 if found")
    mode.add_argument("-s", dest="show", action="store_true",
                      help="print every record as key:<TAB>value")
    parser.add_argument("-f", dest="no_fold", action="store_true",
                        help="do not fold names and query keys to lowercase")
    parser.add_argument("-p", dest="default_mode", action="store_true",
                        help="create a new table with mode 0644 instead of the source's read bits")
    parser.add_argument("-o", dest="keep_root", action="store_true",
                        help="when run as root, do not switch to the source file's owner")
    dups = parser.add_mutually_exclusive_group()
    dups.add_argument("-r", dest="duplicates", action="store_const", const="replace",
                      help="duplicate names: the last one wins, no warning")
    dups.add_argument("-w", dest="duplicates", action="store_const", const="ignore",
                      help="duplicate names: the first one wins, no warning")
    parser.add_argument("tables", nargs="+", metavar="[TYPE:]FILE",
                        help="aliases(5) source file, optionally with its table type")


def _find(maps: list[Map], key: str, fold: bool) -> str | None:
    """The first value for key in maps (a single literal lookup, no extension stripping)."""
    for table in maps:
        value = table.lookup(fold_ascii(key) if fold else key)
        if value is not None:
            return value
    return None


def _query(maps: list[Map], key: str, fold: bool) -> int:
    if key != "-":
        value = _find(maps, key, fold)
        if value is None:
            return 1
        print(value)
        return 0
    found = False
    for line in sys.stdin:
        name = line.rstrip("\n")
        if not name:
            continue
        value = _find(maps, name, fold)
        if value is not None:
            print(f"{name}:\t{value}")
            found = True
    return 0 if found else 1


def _show(table: Map) -> int:
    # Postfix 3.7 dumps only the first table named, and so do we.
    items = getattr(table, "items", None)
    if items is None:
        raise MapError(f"table {table.spec}: cannot list its records (-s)")
    for key, value in items():
        print(f"{key}:\t{value}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Build, query or dump the tables; exit 1 when a build or a query fails."""
    cfg = load_config(args.config_dir)
    default_type = cfg.get("default_database_type") or "hash"
    specs = [alias_spec(spec, default_type) for spec in args.tables]
    if args.query is not None or args.show:
        maps = [open_map(spec, cfg) for spec in specs]
        try:
            if args.show:
                return _show(maps[0])
            return _query(maps, args.query, not args.no_fold)
        finally:
            for table in maps:
                table.close()
    failed = alias_build_all(
        specs,
        hostname=cfg.get("myhostname"),
        fold_case=not args.no_fold,
        duplicates=args.duplicates or "warn",
        inherit_mode=not args.default_mode,
        keep_root=args.keep_root,
    )
    return 1 if failed else 0
