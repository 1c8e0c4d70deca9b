"""mta postconf: show or edit main.cf parameters and master.cf services, as Postfix's postconf(1).

Without options, print every parameter's effective value (main.cf over the
defaults), unexpanded and sorted by name. Output folds whitespace to single
spaces, as Postfix does.

  -n            only parameters set in main.cf
  -d            compiled-in defaults (Postfix 3.7) instead of main.cf values
  -x            expand $name references in the printed values
  -h            print values only, without "name = "
  -e NAME=VALUE edit main.cf: replace each definition of NAME in place (keeping
                comments and order) or append it; written to a new file and
                renamed into place, so main.cf is never half-written
  -X NAME       remove NAME's definitions from main.cf
  -M [SERVICE[/TYPE] ...]  print master.cf services, normalised; -f folds long lines
  NAME ...      only these parameters (or services with -M)

Warnings name main.cf parameters that nothing uses ("unused parameter") and,
with -x, references to undefined parameters.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from mta import log
from mta.config import MAIN_CF, MainConfig, load_config, warn_all
from mta.errors import ConfigError, MtaError
from mta.service_format import format_row
from mta.service_table import parse_master_cf, select_rows, service_names

SUMMARY = "show or edit main.cf parameters and master.cf services (Postfix's postconf)"
ADD_HELP = False  # -h means "values only", as in Postfix; help is --help


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Postfix's postconf flags."""
    parser.add_argument("--help", action="help", help="show this help message and exit")
    parser.add_argument("-n", dest="non_default", action="store_true",
                        help="only parameters set in main.cf")
    parser.add_argument("-d", dest="defaults", action="store_true", help="show default values")
    parser.add_argument("-x", dest="expand", action="store_true", help="expand $name in values")
    parser.add_argument("-h", dest="values_only", action="store_true", help="values only")
    parser.add_argument("-e", dest="edit", action="store_true",
                        help="edit main.cf: arguments are name=value")
    parser.add_argument("-X", dest="remove", action="store_true",
                        help="remove the named parameters from main.cf")
    parser.add_argument("-M", dest="master", action="store_true", help="show master.cf services")
    parser.add_argument("-f", dest="fold", action="store_true", help="fold long lines (with -M)")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="parameter names (name=value with -e; service[/type] with -M)")


def normalise(value: str) -> str:
    """Postfix prints values with runs of whitespace folded to one space."""
    return " ".join(value.split())


def format_param(name: str, value: str, values_only: bool) -> str:
    """One output line: ``name = value`` (``name =`` when empty), or the value alone with -h."""
    value = normalise(value)
    if values_only:
        return value
    return f"{name} = {value}" if value else f"{name} ="


def _service_names(cfg: MainConfig) -> list[str]:
    """master.cf service names, which make per-transport parameters valid."""
    return service_names(cfg.config_dir / "master.cf")


def _warn_unused(cfg: MainConfig, services: list[str]) -> None:
    for definition in cfg.unused(services):
        log.msg_warn(f"{cfg.path}: unused parameter: {definition.name}={definition.value}")


def _show(args: argparse.Namespace, cfg: MainConfig, services: list[str], out: "TextOut") -> int:
    view = cfg.defaults_view() if args.defaults else cfg
    if args.names:
        names = list(args.names)
    elif args.non_default:
        known = cfg.known_names(services)
        names = sorted(n for n in cfg.parsed.definitions if n in known)
        if args.config_dir_explicit and "config_directory" not in names:
            names = sorted(names + ["config_directory"])
    else:
        names = sorted(n for n in cfg.known_names(services) if view.defined(n))
    for name in names:
        value = None
        if view.defined(name):
            value = view.get(name) if args.expand else view.raw(name)
        if value is None:
            log.msg_warn(f"{name}: unknown parameter")
            continue
        out.write(format_param(name, value, args.values_only))
    if args.expand:
        for name in view.undefined:
            log.msg_warn(f"{cfg.path}: undefined parameter: {name}")
    return 0


class TextOut:
    """Collects output lines and writes them at the end, so an error prints no partial listing."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        if self.lines:
            sys.stdout.write("\n".join(self.lines) + "\n")
            sys.stdout.flush()


def parse_edit(text: str) -> tuple[str, str]:
    """``name = value`` -> (name, value) for -e; Postfix's rules for the name."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise ConfigError(f"missing '=' after attribute name: \"{text}\"")
    if not name or any(ch.isspace() for ch in name):
        raise ConfigError(f'missing attribute name: "{text}"')
    return name, value.strip()


def edit_main_cf(path: Path, edits: dict[str, str | None]) -> None:
    """Rewrite main.cf with edits applied: name -> new value, or None to remove.

    Every definition of an edited name is replaced in place (its continuation
    lines dropped); names not yet defined are appended in order. The new file is
    written beside the old one, fsynced, given the old file's mode and owner,
    and renamed over it.
    """
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as exc:
        raise MtaError(f"open {path}: {os.strerror(exc.errno or 0)}") from None
    output: list[str] = []
    done: set[str] = set()
    skipping = False
    for line in lines:
        stripped = line.strip()
        is_comment = not stripped or stripped.startswith("#")
        if skipping:
            if is_comment:
                output.append(line)
                continue
            if line[:1].isspace():
                continue
            skipping = False
        if not is_comment and not line[:1].isspace():
            name = line.partition("=")[0].strip()
            if name in edits:
                value = edits[name]
                if value is not None:
                    output.append(f"{name} = {value}")
                done.add(name)
                skipping = True
                continue
        output.append(line)
    for name, value in edits.items():
        if name not in done and value is not None:
            output.append(f"{name} = {value}")
    text = "\n".join(output) + ("\n" if output else "")
    _replace_file(path, text)


def _replace_file(path: Path, text: str) -> None:
    """Write text to a temporary file in path's directory and rename it over path."""
    directory = path.parent
    try:
        st = os.stat(path)
        mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    except FileNotFoundError:
        mode, uid, gid = 0o644, -1, -1
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            if uid != -1 and os.geteuid() == 0:
                os.fchown(fh.fileno(), uid, gid)
            os.fsync(fh.fileno())
        os.rename(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise MtaError(f"write {path}: {os.strerror(exc.errno or 0)}") from None
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _show_master(args: argparse.Namespace, cfg: MainConfig, out: TextOut) -> int:
    path = cfg.config_dir / "master.cf"
    if not path.exists():
        raise ConfigError(f"open {path}: No such file or directory")
    # postconf -M shows every row as written, duplicates included (master
    # itself uses the last one).
    rows = parse_master_cf(
        path,
        compatibility_level=cfg.get("compatibility_level"),
        default_process_limit=cfg.get_int("default_process_limit"),
        keep_duplicates=True,
    )
    if args.names:
        try:
            rows = select_rows(rows, args.names)
        except ValueError as exc:
            raise MtaError(f"-M {' '.join(args.names)}: {exc}") from None
    for row in rows:
        out.write(format_row(row, fold=args.fold))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run postconf."""
    main_cf = Path(args.config_dir) / MAIN_CF
    if args.edit or args.remove:
        if args.edit and args.remove:
            raise MtaError("-e and -X are mutually exclusive")
        edits: dict[str, str | None] = {}
        for text in args.names:
            if args.edit:
                name, value = parse_edit(text)
                edits[name] = value
            else:
                edits[text.strip()] = None
        if not edits:
            raise MtaError("-e and -X need at least one parameter")
        # Refuse to edit a file we cannot parse: the edit would hide the error.
        load_config(args.config_dir)
        edit_main_cf(main_cf, edits)
        return 0
    if not args.defaults and not main_cf.exists():
        raise ConfigError(f"open {main_cf}: No such file or directory")
    cfg = load_config(args.config_dir)
    warn_all(cfg, log.msg_warn)
    out = TextOut()
    if args.master:
        status = _show_master(args, cfg, out)
    else:
        services = _service_names(cfg)
        status = _show(args, cfg, services, out)
        if not args.defaults:
            _warn_unused(cfg, services)
    out.flush()
    return status

