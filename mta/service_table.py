"""master.cf service table: parse rows as Postfix 3.7 master(8) does.

Each logical line of master.cf is one service: ``service type private unpriv chroot
wakeup maxproc command [args...]``. `parse_master_cf()` reads a file into `ServiceRow`
records with the ``-`` defaults resolved, the command arguments split the way master(8)
hands them to the daemon, and the ``-o name=value`` overrides the daemon will apply.
`mta.service_format` prints a row back byte for byte as ``postconf -M`` (or ``-Mf``) does.

Which program is the model where they differ:

- Syntax checks follow master(8) (``master_ent.c``), plus the ``-o`` checks that every
  daemon makes at start-up, because a row master(8) or its daemon refuses is a row that
  does not run. Messages keep master(8)'s wording, prefixed with ``path, line N:``.
  postconf(1) is laxer (it accepts wakeup ``?`` and ``-?``, a private inet service, a
  ``-`` command, unbalanced ``{``), and stricter in one place, which is copied: junk
  after a number (``10x``) is refused, where master(8)'s atoi() would read 10.
- Printing follows postconf(1) (``postconf_master.c``), quirks included: see
  `mta.service_format.format_row()`.

DUPLICATES. Like master(8), the last definition of a service wins and a warning is
logged. A service is named by its endpoint, not only by its name: ``foo unix y`` and
``foo unix n`` are two services (``private/foo`` and ``public/foo``), while
``smtp inet`` and ``25 inet`` are one. ``postconf -M`` shows every row as written; pass
``keep_duplicates=True`` for that view.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from mta.errors import ConfigError
from mta.log import msg_warn
from mta.service_address import _alldig, inet_service_split

SERVICE_TYPES = ("inet", "unix", "unix-dgram", "fifo", "pass")

# Commands that deliver on this host. They run as the recipient or a named user and
# read files outside the queue, so they are never chrooted (master(5), chroot column).
LOCAL_DELIVERY_COMMANDS = frozenset({"local", "virtual", "pipe"})

DEFAULT_PROCESS_LIMIT = 100

_ISSPACE = " \t\n\v\f\r"  # C isspace(): what makes a line blank or a continuation
_BLANKS = " \t\r\n"  # master(8)'s field delimiters
_VALUE_OPTIONS = "imnorst"  # daemon getopt() letters that take a value ("cdDi:lm:n:o:r:s:St:uvVz")


@dataclass(frozen=True)
class ServiceRow:
    """One master.cf service, with its ``-`` defaults resolved.

    + service, type: the name (for inet ``[host:]port``) and the transport type.
    + private, unpriv, chroot: the resolved y/n columns.
    + wakeup: seconds between wake-up triggers, 0 for never.
    + wakeup_conditional: the wakeup column ended in ``?`` (no trigger before first use).
    + maxproc: the process limit, 0 for unlimited.
    + command: the daemon, relative to daemon_directory.
    + args: the arguments master(8) passes after its own, ``{ }`` groups unwrapped.
    + overrides: the ``-o name=value`` settings the daemon applies, in order; a name
      given twice keeps its first place and its last value.
    + path, line: where the row was defined (the first line of the logical line).
    + raw: every field as written, braces kept: the seven columns, the command, the
      arguments. ``postconf -M`` prints from these, so ``-`` stays ``-``.
    """

    service: str
    type: str
    private: bool
    unpriv: bool
    chroot: bool
    wakeup: int
    wakeup_conditional: bool
    maxproc: int
    command: str
    args: tuple[str, ...]
    overrides: dict[str, str] = field(hash=False)
    path: str
    line: int
    raw: tuple[str, ...]

    @property
    def name_type(self) -> str:
        """``service/type``, the form ``postconf -M`` and ``-F`` select by."""
        return f"{self.service}/{self.type}"

    @property
    def endpoint(self) -> str:
        """master(8)'s internal name: ``private/foo``, ``public/foo``, ``25`` or ``[::1]:25``.

        A unix, unix-dgram, fifo or pass endpoint is also the socket path relative to
        queue_directory. An inet port name is turned into its number when the services
        database knows it; host names are not resolved (master(8) does resolve them).
        """
        if self.type != "inet":
            return f"{'private' if self.private else 'public'}/{self.service}"
        host, port = inet_service_split(self.service)
        if not _alldig(port):
            try:
                port = str(socket.getservbyname(port, "tcp"))
            except OSError:
                pass
        else:
            port = str(int(port))
        if host is None:
            return port
        try:
            host = ipaddress.ip_address(host).compressed
        except ValueError:
            host = host.lower()
        return f"[{host}]:{port}"


# LOGICAL LINES. This is readllines(3): a line whose first non-blank character is `#`
# is a comment, and a blank line is nothing; neither ends a logical line, so they may
# sit between a line and its continuation. A line that starts with whitespace continues
# the previous one. The pieces are concatenated as they are (the continuation keeps its
# leading whitespace), which matters only inside `{ }`: postconf -M shows `{ a⏎  b }`
# as `a   b`.


def logical_lines(text: str, path: str) -> Iterator[tuple[int, str]]:
    """Yield (first line number, text) for each logical line of a main.cf-style file.

    + text: the file's contents.
    + path: the file's name, for the warning about a leading continuation line.

    A continuation with nothing before it is dropped with a warning, as Postfix does.
    """
    buf = ""
    first = 0
    for number, physical in enumerate(text.split("\n"), start=1):
        content = physical.lstrip(_ISSPACE)
        if not content or content[0] == "#":
            continue
        if physical[0] in _ISSPACE and buf:
            buf += physical
            continue
        if buf:
            yield from _logical_done(buf, first, path)
        buf, first = physical, number
    if buf:
        yield from _logical_done(buf, first, path)


def _logical_done(buf: str, first: int, path: str) -> Iterator[tuple[int, str]]:
    """Yield a finished logical line, or warn when it starts with whitespace."""
    if buf[0] in _ISSPACE:
        more = "..." if len(buf) > 30 else ""
        msg_warn(f'{path}, line {first}: logical line must not start with whitespace: "{buf[:30]}{more}"')
        return
    yield first, buf


# FIELDS. The seven columns and the command are split on blanks only (mystrtok); the
# arguments after them are split outside `{ }` only (mystrtokq), and an argument that
# starts with `{` is unwrapped (extpar): the braces go, and so do blanks next to them.


def _token(text: str, pos: int, grouped: bool) -> tuple[str | None, int]:
    """Return the next field from pos and the position after it (None at the end)."""
    while pos < len(text) and text[pos] in _BLANKS:
        pos += 1
    if pos == len(text):
        return None, pos
    start, level = pos, 0
    while pos < len(text):
        ch = text[pos]
        if grouped and ch == "{":
            level += 1
        elif grouped and level > 0 and ch == "}":
            level -= 1
        elif level == 0 and ch in _BLANKS:
            break
        pos += 1
    return text[start:pos], pos


def _extpar(text: str) -> tuple[str, str | None]:
    """Unwrap ``{ text }``; return the text and an error (None when balanced)."""
    level = 0
    end = 0
    for end, ch in enumerate(text):
        if ch == "{":
            level += 1
        elif ch == "}":
            level -= 1
            if level == 0:
                break
    else:
        return text[1:].strip(_ISSPACE), f"missing '}}' in \"{text}\""
    err = f"syntax error after '}}' in \"{text}\"" if end + 1 < len(text) else None
    return text[1:end].strip(_ISSPACE), err


def _split_nameval(text: str) -> tuple[str, str] | str:
    """Split ``name = value`` as split_nameval(3) does; return (name, value) or an error."""
    stripped = text.lstrip(_ISSPACE)
    if not stripped or stripped[0] == "=":
        return "missing attribute name"
    match = re.match(rf"([^{_ISSPACE}=]+)[{_ISSPACE}]*=(.*)", stripped, re.DOTALL)
    if match is None:
        return "missing '=' after attribute name"
    return match.group(1), match.group(2).strip(_ISSPACE)


# ROW PARSING, in get_master_ent()'s order, so the first error reported is master(8)'s.


def compatibility_chroot(compatibility_level: str | int) -> bool:
    """Return the chroot column's ``-`` default: y below compatibility level 1, else n.

    + compatibility_level: main.cf's value, e.g. ``"0"`` (an empty main.cf) or ``"3.6"``.
    """
    text = str(compatibility_level).strip()
    if not re.fullmatch(r"[0-9]+(\.[0-9]+){0,2}", text):
        raise ConfigError(f'bad compatibility_level value: "{compatibility_level}"')
    return int(text.split(".")[0]) < 1


class _Fields:
    """The unread rest of one logical line, with master(8)'s per-field checks."""

    def __init__(self, text: str, path: str, line: int) -> None:
        self.text, self.pos, self.path, self.line = text, 0, path, line
        self.raw: list[str] = []

    def error(self, reason: str) -> ConfigError:
        return ConfigError(reason, self.path, self.line)

    def next(self, label: str) -> str:
        value, self.pos = _token(self.text, self.pos, grouped=False)
        if value is None:
            raise self.error(f'missing "{label}" field')
        self.raw.append(value)
        return value

    def flag(self, label: str, default: bool) -> bool:
        value = self.next(label)
        if value in ("y", "n"):
            return value == "y"
        if value == "-":
            return default
        raise self.error(f'field "{label}": bad value: "{value}"')

    def number(self, label: str, default: int, condition: bool = False) -> str:
        value = self.next(label)
        if value == "-":
            return str(default)
        if not re.fullmatch(r"[0-9]+\??" if condition else r"[0-9]+", value):
            raise self.error(f'field "{label}": bad value: "{value}"')
        return value


def row_parse(text: str, path: str = "master.cf", line: int = 1, compatibility_level: str | int = "0",
              default_process_limit: int = DEFAULT_PROCESS_LIMIT) -> ServiceRow:
    """Parse one logical master.cf line into a ServiceRow; raise ConfigError if it is bad.

    + text: the logical line (continuations already joined).
    + path, line: where it came from, for messages and for the row.
    + compatibility_level: decides the chroot default (see `compatibility_chroot`).
    + default_process_limit: the maxproc default.
    """
    fields = _Fields(text, path, line)
    service = fields.next("service")
    kind = fields.next("transport type")
    if kind == "-":
        raise fields.error('field "transport type" has no default value')
    if kind not in SERVICE_TYPES:
        raise fields.error(f"bad transport type: {kind}")
    if kind == "inet":
        try:
            inet_service_split(service)
        except ValueError as exc:
            raise fields.error(f'{exc} in "{service}"') from None
    private = fields.flag("private", True)
    if kind == "inet" and private:
        raise fields.error("inet service cannot be private")
    unpriv = fields.flag("unprivileged", True)
    chroot = fields.flag("chroot", compatibility_chroot(compatibility_level))
    wakeup_text = fields.number("wakeup_time", 0, condition=True)
    wakeup = int(wakeup_text.rstrip("?"))
    maxproc = int(fields.number("max_proc", default_process_limit))
    command = fields.next("command")
    if command == "-":
        raise fields.error('field "command" has no default value')
    args: list[str] = []
    while True:
        found, fields.pos = _token(text, fields.pos, grouped=True)
        if found is None:
            break
        token = found
        fields.raw.append(token)
        if token.startswith("{"):
            token, err = _extpar(token)
            if err:
                raise fields.error(err)
        args.append(token)
    return ServiceRow(service=service, type=kind, private=private, unpriv=unpriv, chroot=chroot,
                      wakeup=wakeup, wakeup_conditional=wakeup > 0 and wakeup_text.endswith("?"),
                      maxproc=maxproc, command=command, args=tuple(args),
                      overrides=_overrides(args, fields), path=path, line=line, raw=tuple(fields.raw))


def _options(args: Sequence[str]) -> tuple[list[tuple[str, str | None]], int]:
    """Scan the daemon's generic options the way its getopt("+...") loop does.

    Returns the (letter, value) pairs of the options that take a value, the
    value None when it is missing, and the index of the first operand. Options
    end at the first non-option; a ``--`` ends them and is skipped.
    """
    found: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args) and len(args[i]) > 1 and args[i][0] == "-" and args[i] != "--":
        arg = args[i]
        for j in range(1, len(arg)):
            if arg[j] not in _VALUE_OPTIONS:
                continue
            value: str | None = arg[j + 1:]
            if not value:
                i += 1
                value = args[i] if i < len(args) else None
            found.append((arg[j], value))
            break
        i += 1
    if i < len(args) and args[i] == "--":
        i += 1
    return found, i


def _overrides(args: list[str], fields: _Fields) -> dict[str, str]:
    """Collect ``-o name=value`` the way the daemon's getopt("+...") loop sees them.

    A ``-o`` value that is not ``name=value`` stops the daemon at start-up, so it
    is a ConfigError here.
    """
    overrides: dict[str, str] = {}
    for letter, value in _options(args)[0]:
        if value is None:
            raise fields.error(f"option requires an argument -- '{letter}'")
        if letter != "o":
            continue
        pair = _split_nameval(value)
        if isinstance(pair, str):
            raise fields.error(f'invalid "-o {value}" option value: {pair}')
        # The daemon sets whatever name it is given; "-o{a=b}" sets "{a" to "b}",
        # since master(8) unwraps only an argument that starts with "{".
        if not re.fullmatch(r"\w+", pair[0], re.ASCII):
            msg_warn(f'{fields.path}, line {fields.line}: "-o {value}": '
                     f'"{pair[0]}" is not a parameter name')
        overrides[pair[0]] = pair[1]
    return overrides


def daemon_operands(row: ServiceRow) -> tuple[str, ...]:
    """The row's arguments after the generic daemon options (``-o name=value``, ``-v``, ``--``).

    pipe(8) reads its command attributes (``flags=R user=cyrus argv=...``) from these.

    >>> daemon_operands(row_parse("p unix - n n - - pipe -o a=b -v flags=R argv=/bin/cat -x"))
    ('flags=R', 'argv=/bin/cat', '-x')
    """
    return row.args[_options(row.args)[1]:]


# THE TABLE


def parse_master_text(text: str, path: str = "master.cf", compatibility_level: str | int = "0",
                      default_process_limit: int = DEFAULT_PROCESS_LIMIT,
                      keep_duplicates: bool = False) -> list[ServiceRow]:
    """Parse master.cf text into rows, in file order.

    + text: the file's contents.
    + path: the name used in messages and recorded in each row.
    + compatibility_level: main.cf's compatibility_level; below 1 chroot ``-`` means y.
    + default_process_limit: main.cf's default_process_limit, the maxproc default.
    + keep_duplicates: return every row as written (``postconf -M``'s view) instead of
      letting the last definition of an endpoint replace the earlier one in its place.
    """
    rows: list[ServiceRow] = []
    where: dict[tuple[str, str], int] = {}
    for line, logical in logical_lines(text, path):
        row = row_parse(logical, path, line, compatibility_level, default_process_limit)
        key = (row.type, row.endpoint)
        if keep_duplicates or key not in where:
            where[key] = len(rows)
            rows.append(row)
            continue
        old = rows[where[key]]
        msg_warn(f'{path}, line {line}: duplicate master.cf entry for service "{old.service}" '
                 f"({row.endpoint}) -- using the last entry")
        rows[where[key]] = row
    return rows


def parse_master_cf(path: str | os.PathLike[str], compatibility_level: str | int = "0",
                    default_process_limit: int = DEFAULT_PROCESS_LIMIT,
                    keep_duplicates: bool = False) -> list[ServiceRow]:
    """Read a master.cf file; see `parse_master_text` for the arguments.

    Raises ConfigError when the file cannot be read or a row is bad.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8", errors="surrogateescape", newline="") as fp:
            text = fp.read()
    except OSError as exc:
        raise ConfigError(f"open {name}: {exc.strerror}") from exc
    return parse_master_text(text, name, compatibility_level, default_process_limit, keep_duplicates)


def service_names(path: str | os.PathLike[str]) -> list[str]:
    """Service names in a master.cf, for per-transport parameter names; [] when it is missing or broken.

    Callers that must report a broken master.cf parse it themselves; this one
    only answers "which transports exist" for postconf's unused-parameter check.
    """
    try:
        return [row.service for row in parse_master_cf(path)]
    except (ConfigError, OSError):
        return []


def find(rows: Iterable[ServiceRow], name: str, type: str) -> ServiceRow | None:
    """Return the last row with this service name and type, or None.

    + rows: parsed rows.
    + name, type: e.g. ``"smtp", "inet"``.
    """
    found = None
    for row in rows:
        if row.service == name and row.type == type:
            found = row
    return found


def select_rows(rows: Iterable[ServiceRow], patterns: Iterable[str]) -> list[ServiceRow]:
    """Select rows as ``postconf -M pattern...`` does.

    + rows: parsed rows, in the order to report them.
    + patterns: ``name`` or ``name/type``; ``*`` alone matches anything.

    A row is listed once for each pattern it matches. A pattern that matches nothing
    logs ``unmatched request: "pattern"``. A malformed pattern (empty, starting with
    ``/``, three parts, ``*`` inside a word) raises ValueError.
    """
    parsed: list[tuple[str, list[str]]] = []
    for pattern in patterns:
        parts = [part for part in pattern.split("/") if part]
        if (pattern.startswith("/") or not 1 <= len(parts) <= 2
                or any("*" in part and part != "*" for part in parts)):
            raise ValueError(f'bad service pattern "{pattern}": -M option requires service_name[/type]')
        parsed.append((pattern, parts + ["*"] * (2 - len(parts))))
    if not parsed:
        return list(rows)
    selected: list[ServiceRow] = []
    hits = {pattern: 0 for pattern, _ in parsed}
    for row in rows:
        for pattern, (name, kind) in parsed:
            if name in ("*", row.service) and kind in ("*", row.type):
                hits[pattern] += 1
                selected.append(row)
    for pattern, count in hits.items():
        if count == 0:
            msg_warn(f'unmatched request: "{pattern}"')
    return selected


def delivers_locally(row: ServiceRow) -> bool:
    """True when the row's command is local, virtual or pipe: never chroot these.

    + row: a parsed row; the command's basename is compared, as master(8) names processes.
    """
    return posixpath.basename(row.command) in LOCAL_DELIVERY_COMMANDS
