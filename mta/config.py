"""main.cf: parse Postfix's parameter file and give typed, expanded values over Postfix 3.7 defaults.

SYNTAX (postconf(5)). A logical line is ``name = value``; a line that starts
with whitespace continues the previous logical line (joined with one space);
lines whose first non-blank character is ``#`` are comments and blank lines are
skipped, also inside a continued line. There are no trailing comments:
``foo = bar # x`` has the value ``bar # x``. The last definition of a name wins,
with a warning naming file and line. Values are expanded lazily, so order does
not matter (see mta.expand).

TYPES. Lists split on commas and/or whitespace, honouring ``{ }`` grouping;
in match lists (mydestination, relay_domains, mynetworks, ...) a ``/file/name``
entry is replaced by the file's entries. Booleans are yes/no; time values are
an integer with an optional unit s m h d w (the default unit is the one in the
parameter's default value: ``maximal_queue_lifetime = 5d`` means days); sizes
and counts are integers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from mta import defaults as _defaults
from mta.derived import (
    Interface,
    default_mydomain,
    default_myhostname,
    default_mynetworks,
    interface_addresses,
    system_hostname,
)
from mta.errors import ConfigError
from mta.expand import Expander, referenced_names

MAIN_CF = "main.cf"
_NAME_RE = re.compile(r"[A-Za-z0-9_]+$")
_TIME_RE = re.compile(r"(\d+)([smhdw]?)$")
_SIZE_RE = re.compile(r"-?\d+$")
_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LIST_SEPARATORS = ", \t\r\n"

# Per-transport parameters that Postfix accepts for every master.cf service name
# (e.g. relay_destination_concurrency_limit), so they are not "unused".
TRANSPORT_SUFFIXES: tuple[str, ...] = (
    "_delivery_slot_cost", "_delivery_slot_discount", "_delivery_slot_loan",
    "_destination_concurrency_failed_cohort_limit", "_destination_concurrency_limit",
    "_destination_concurrency_negative_feedback", "_destination_concurrency_positive_feedback",
    "_destination_rate_delay", "_destination_recipient_limit", "_extra_recipient_limit",
    "_initial_destination_concurrency", "_minimum_delivery_slots", "_recipient_limit",
    "_recipient_refill_delay", "_recipient_refill_limit", "_transport_rate_delay",
    "_time_limit",
)


@dataclass(frozen=True)
class Definition:
    """One ``name = value`` logical line of main.cf.

    + line: the 1-based number of the line where the definition starts.
    """

    name: str
    value: str
    path: str
    line: int


@dataclass
class MainCfFile:
    """The parsed file: effective definitions (last wins) and what parsing warned about."""

    path: str
    definitions: dict[str, Definition] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def logical_lines(lines: Iterable[str]) -> Iterable[tuple[int, str]]:
    """Join physical lines into Postfix logical lines; yield (first line number, text).

    Comment and blank lines are skipped, also between a line and its continuation,
    and continuations are joined with one space. A continuation with no line to
    continue (at the top of a file) is yielded as it is, leading whitespace
    included, so the caller can warn about it as Postfix does.
    """
    current: list[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        text = raw.rstrip("\r\n")
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if text[0].isspace():
            if current:
                current.append(stripped)
                continue
            yield number, text
            continue
        if current:
            yield start, " ".join(current)
        current = [text.rstrip()]
        start = number
    if current:
        yield start, " ".join(current)


def parse_main_cf_text(text: str, path: str) -> MainCfFile:
    """Parse main.cf content; raises ConfigError naming file:line for a line Postfix rejects."""
    result = MainCfFile(path=path)
    for number, line in logical_lines(text.splitlines()):
        if line[0].isspace():
            result.warnings.append(f'{path}: logical line must not start with whitespace: "{line}"')
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(f"missing '=' after attribute name: \"{line}\"", path, number)
        if not name:
            raise ConfigError(f'missing attribute name: "{line}"', path, number)
        if any(ch.isspace() for ch in name):
            raise ConfigError(f"missing '=' after attribute name: \"{line}\"", path, number)
        value = value.strip()
        previous = result.definitions.get(name)
        if previous is not None:
            result.warnings.append(
                f"{path}, line {number}: overriding earlier entry: {name}={previous.value}"
            )
            del result.definitions[name]  # keep file order of the winning definition
        result.definitions[name] = Definition(name, value, path, number)
    return result


def parse_main_cf(path: str | Path) -> MainCfFile:
    """Read and parse a main.cf file; a missing file is an empty configuration."""
    path = str(path)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    except FileNotFoundError:
        return MainCfFile(path=path)
    except OSError as exc:
        raise ConfigError(f"open {path}: {os.strerror(exc.errno or 0)}") from exc
    return parse_main_cf_text(text, path)


def split_list(value: str) -> list[str]:
    """Split a list value on commas and/or whitespace, keeping ``{ ... }`` groups whole.

    >>> split_list("a, b  c,,d")
    ['a', 'b', 'c', 'd']
    >>> split_list("CONNECT regexp:{{/^[^A-Z]/ Bogus}}")
    ['CONNECT', 'regexp:{{/^[^A-Z]/ Bogus}}']
    """
    items: list[str] = []
    token: list[str] = []
    depth = 0
    for ch in value:
        if ch == "{":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        if depth == 0 and ch in _LIST_SEPARATORS:
            if token:
                items.append("".join(token))
                token = []
            continue
        token.append(ch)
    if token:
        items.append("".join(token))
    return items


# ---------------------------------------------------------------------------

class MainConfig:
    """The effective main.cf: definitions over Postfix 3.7 defaults, expanded on demand.

    + config_dir: the configuration directory (main.cf lives there).
    + parsed: the parsed main.cf.
    + overrides: ``-o name=value`` settings of a master.cf service, which win over main.cf.
    + hostname: gethostname() result to derive myhostname from (tests pass their own).
    + interfaces: interface addresses to derive mynetworks from (tests pass their own).
    """

    def __init__(
        self,
        config_dir: Path,
        parsed: MainCfFile,
        overrides: Mapping[str, str] | None = None,
        hostname: str | None = None,
        interfaces: list[Interface] | None = None,
        defaults_only: bool = False,
    ) -> None:
        self.config_dir = Path(config_dir)
        self.parsed = parsed
        self.overrides = dict(overrides or {})
        self._hostname = hostname
        self._interfaces = interfaces
        self.defaults_only = defaults_only
        self.undefined: list[str] = []
        self._expander = Expander(self.raw, self._note_undefined)
        self._list_cache: dict[str, list[str]] = {}

    # -- raw values ---------------------------------------------------------

    @property
    def path(self) -> str:
        """The main.cf path."""
        return self.parsed.path

    @property
    def warnings(self) -> list[str]:
        """Warnings from parsing main.cf (duplicates, stray continuation lines)."""
        return self.parsed.warnings

    def _note_undefined(self, name: str) -> None:
        if name not in self.undefined:
            self.undefined.append(name)

    def is_set(self, name: str) -> bool:
        """True when main.cf (or a service override) defines name."""
        if self.defaults_only:
            return False
        return name in self.overrides or name in self.parsed.definitions

    def defined(self, name: str) -> bool:
        """True when name has a value: set in main.cf, a default, or derived."""
        return self.is_set(name) or name in _defaults.DEFAULTS or name in _defaults.DERIVED

    def default(self, name: str) -> str | None:
        """The default (raw) value of name, computing derived ones; None for an unknown name."""
        if name == "config_directory" and not self.defaults_only:
            # Like Postfix, the directory in use (-c, MAIL_CONFIG) is config_directory.
            return str(self.config_dir)
        if name in _defaults.DEFAULTS:
            return _defaults.DEFAULTS[name]
        if name == "myhostname":
            mydomain = None if self.defaults_only else self._setting("mydomain")
            return default_myhostname(self._hostname or system_hostname(), mydomain)
        if name == "mydomain":
            return default_mydomain(self.get("myhostname"))
        if name == "mynetworks":
            interfaces = self._interfaces
            if interfaces is None:
                interfaces = interface_addresses(self.get("inet_protocols"))
            return default_mynetworks(self.get("mynetworks_style"), interfaces)
        if name == "process_id":
            return str(os.getpid())
        if name == "process_name":
            return "mta"
        return None

    def _setting(self, name: str) -> str | None:
        if name in self.overrides:
            return self.overrides[name]
        definition = self.parsed.definitions.get(name)
        return None if definition is None else definition.value

    def raw(self, name: str) -> str | None:
        """The unexpanded effective value: override, main.cf, else default; None if unknown."""
        if not self.defaults_only:
            value = self._setting(name)
            if value is not None:
                return value
        return self.default(name)

    # -- expanded and typed values -------------------------------------------

    def expand(self, text: str) -> str:
        """Expand ``$name`` references in text against this configuration."""
        try:
            return self._expander.expand(text)
        except ConfigError as exc:
            raise ConfigError(exc.reason, self.path) from None

    def get(self, name: str) -> str:
        """The expanded value of name ("" for an undefined name).

        Parameters in mta.defaults.RAW are returned as written: their daemon
        expands them later with macros of its own.
        """
        if name in _defaults.RAW:
            return self.raw(name) or ""
        try:
            return self._expander.value(name)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc.reason}", *self._where(name)) from None

    def _where(self, name: str) -> tuple[str, int | None]:
        """(file, line) of name's definition, for messages; just main.cf for a default."""
        definition = self.parsed.definitions.get(name)
        if definition is not None and not self.defaults_only:
            return definition.path, definition.line
        return self.path, None

    def _bad(self, name: str, what: str) -> ConfigError:
        return ConfigError(f"bad {what} configuration: {name} = {self.raw(name)}", *self._where(name))

    def get_list(self, name: str) -> list[str]:
        """The expanded value split into entries; match lists also read ``/file/name`` entries.

        For a match list (mta.defaults.MATCH_LISTS) each ``/file/name`` entry is
        replaced by the entries in that file (comments and blank lines skipped,
        continuation lines joined, as Postfix reads it); ``type:table`` and
        ``!pattern`` entries are kept for the matcher to interpret.
        """
        cached = self._list_cache.get(name)
        if cached is not None:
            return list(cached)
        items = split_list(self.get(name))
        if name in _defaults.MATCH_LISTS:
            items = self.expand_list_files(items, name)
        self._list_cache[name] = items
        return list(items)

    def expand_list_files(self, items: list[str], name: str, _seen: tuple[str, ...] = ()) -> list[str]:
        """Replace each ``/file/name`` entry (also ``!/file/name``) with the file's entries."""
        out: list[str] = []
        for item in items:
            negate = item.startswith("!")
            target = item[1:] if negate else item
            if not target.startswith("/"):
                out.append(item)
                continue
            if target in _seen:
                raise ConfigError(f"{name}: file {target} includes itself", *self._where(name))
            try:
                with open(target, encoding="utf-8", errors="surrogateescape") as fh:
                    lines = fh.read().splitlines()
            except OSError as exc:
                raise ConfigError(
                    f"{name}: open file {target}: {os.strerror(exc.errno or 0)}", *self._where(name)
                ) from None
            entries: list[str] = []
            for _, text in logical_lines(lines):
                entries.extend(split_list(text))
            entries = self.expand_list_files(entries, name, _seen + (target,))
            if negate:
                entries = [e[1:] if e.startswith("!") else "!" + e for e in entries]
            out.extend(entries)
        return out

    def get_bool(self, name: str) -> bool:
        """A yes/no parameter (case-insensitive, as Postfix)."""
        value = self.get(name).strip().lower()
        if value == "yes":
            return True
        if value == "no":
            return False
        raise self._bad(name, "boolean")

    def get_int(self, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
        """An integer parameter (counts and sizes), optionally bounded."""
        value = self.get(name).strip()
        if not _SIZE_RE.match(value):
            raise self._bad(name, "numerical")
        number = int(value)
        self._check_range(name, number, minimum, maximum)
        return number

    get_size = get_int

    def default_time_unit(self, name: str) -> str:
        """The unit of a time parameter without one: the unit in its default value, else s."""
        default = _defaults.DEFAULTS.get(name, "")
        return default[-1] if default and default[-1] in _TIME_UNITS else "s"

    def get_time(self, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
        """A time parameter in seconds: integer plus optional unit s, m, h, d or w."""
        value = self.get(name).strip()
        m = _TIME_RE.match(value)
        if m is None:
            raise self._bad(name, "time")
        unit = m.group(2) or self.default_time_unit(name)
        seconds = int(m.group(1)) * _TIME_UNITS[unit]
        self._check_range(name, seconds, minimum, maximum)
        return seconds

    def _check_range(self, name: str, number: int, minimum: int | None, maximum: int | None) -> None:
        if minimum is not None and number < minimum:
            raise ConfigError(f"invalid {name} parameter value {number} < {minimum}", *self._where(name))
        if maximum is not None and number > maximum:
            raise ConfigError(f"invalid {name} parameter value {number} > {maximum}", *self._where(name))

    # -- derived views -------------------------------------------------------

    def with_overrides(self, overrides: Mapping[str, str]) -> "MainConfig":
        """A copy where ``-o name=value`` settings (from a master.cf service) win over main.cf."""
        merged = dict(self.overrides)
        merged.update(overrides)
        return MainConfig(self.config_dir, self.parsed, merged, self._hostname, self._interfaces)

    def defaults_view(self) -> "MainConfig":
        """The same machine's defaults only, ignoring main.cf (postconf -d)."""
        return MainConfig(self.config_dir, self.parsed, None, self._hostname, self._interfaces,
                          defaults_only=True)

    def known_names(self, service_names: Iterable[str] = ()) -> set[str]:
        """Parameters that are in use: defaults, per-transport names, and what they reference.

        A main.cf name outside this set gets postconf's "unused parameter" warning.
        + service_names: master.cf service names, which make ``<service>_<suffix>``
          parameters valid (relay_destination_concurrency_limit, ...).
        """
        known = set(_defaults.DEFAULTS) | set(_defaults.DERIVED)
        for service in service_names:
            known.update(service + suffix for suffix in TRANSPORT_SUFFIXES)
        # Restriction classes are user-defined parameters named in another one.
        for entry in split_list(self.raw("smtpd_restriction_classes") or ""):
            known.add(entry)
        # A name referenced from any main.cf value or service override is used,
        # as postconf decides (foo = $bar makes bar used even when foo is not).
        for value in [d.value for d in self.parsed.definitions.values()] + list(self.overrides.values()):
            known.update(referenced_names(value))
        return known

    def unused(self, service_names: Iterable[str] = (), extra_used: Iterable[str] = ()) -> list[Definition]:
        """main.cf definitions that nothing uses, in file order (postconf's warning)."""
        known = self.known_names(service_names) | set(extra_used)
        return [d for d in self.parsed.definitions.values() if d.name not in known]


def environment_select(entries: Iterable[str]) -> dict[str, str]:
    """The environment an import_environment or export_environment list asks for.

    ``NAME`` keeps the variable's current value (when it is set), ``NAME=VALUE``
    sets it (Postfix's clean_env).
    """
    selected: dict[str, str] = {}
    for entry in entries:
        name, eq, value = entry.partition("=")
        if eq:
            selected[name] = value
        elif name in os.environ:
            selected[name] = os.environ[name]
    return selected


def load_config(
    config_dir: str | Path,
    hostname: str | None = None,
    interfaces: list[Interface] | None = None,
) -> MainConfig:
    """Load config_dir/main.cf over Postfix 3.7 defaults.

    + config_dir: the configuration directory (Postfix's -c / MAIL_CONFIG).
    + hostname, interfaces: stand-ins for gethostname() and the interface list (tests).
    A missing main.cf gives the defaults; a malformed one raises ConfigError naming file:line.
    """
    config_dir = Path(config_dir)
    parsed = parse_main_cf(config_dir / MAIN_CF)
    return MainConfig(config_dir, parsed, hostname=hostname, interfaces=interfaces)


def warn_all(cfg: MainConfig, emit: Callable[[str], None]) -> None:
    """Pass each parse warning of cfg to emit (e.g. mta.log.msg_warn)."""
    for text in cfg.warnings:
        emit(text)
