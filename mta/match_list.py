"""Postfix match lists: string, domain and network lists with ``!negation`` and ``type:table`` entries.

A match list is an ordered list of patterns taken from a list parameter
(already split by MainConfig.get_list, which also replaced ``/file/name``
entries with the file's entries). The first pattern that matches decides: a
plain pattern says "yes", a pattern with an odd number of leading ``!`` says
"no"; when nothing matches the answer is "no". Patterns are compared
case-insensitively (Postfix casefolds both sides).

KINDS (Postfix's match_ops.c, 3.7):

- StringList (string_list): exact string, or a table that has the string as a key
  (smtpd_forbidden_commands, authorized_*_users).
- DomainList (domain_list): host or domain names (mydestination, relay_domains).
  ``example.com`` matches that name; when the parameter is named in
  parent_domain_matches_subdomains it also matches every subdomain, else only
  ``.example.com`` matches subdomains. A table is asked for the name and then,
  if it holds fixed strings (hash, inline), for each parent domain
  (``sub.example.com``, ``example.com`` in parent style; ``.example.com``,
  ``.com`` otherwise); pattern tables (regexp, pcre, cidr) see only the name.
- NetworkList (namadr_list): client name or address (mynetworks). Each pattern
  is tried as a domain pattern against the client name, then as an address
  pattern against the client address: a bare address (``192.0.2.1``,
  ``[2001:db8::1]``), a network (``192.0.2.0/24``, ``[2001:db8::]/32``), or a
  table asked for the address. IPv6 patterns need brackets: ``:`` otherwise
  means ``type:table``.

ERRORS. A table that cannot be opened is logged as a warning and kept as a
failing table, as Postfix does with its surrogate tables; a lookup that fails
makes match() return False with ``error`` set, so a caller can answer "try
again later" instead of "no". A malformed network pattern (host bits set past
the prefix, a bad prefix) is a ConfigError when the list is built: Postfix
only warns at match time and then fails every lookup, which hides the typo.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from mta import log
from mta.access import DEFAULT_PARENT_DOMAIN_MATCHES_SUBDOMAINS
from mta.errors import ConfigError, MapError
from mta.maps import MAP_TYPES, Map, open_map, split_spec
from mta.maps.cidr import CidrError, address_parse, cidr_parse

if TYPE_CHECKING:
    from mta.config import MainConfig

_V4_CHARS = frozenset("0123456789.")
_V6_CHARS = _V4_CHARS | frozenset("abcdefABCDEF:")
_V6_PATTERN_CHARS = _V6_CHARS | frozenset("[]/")


class FailedMap(Map):
    """A table that could not be opened: every lookup fails (Postfix's surrogate dictionary)."""

    fixed = True

    def __init__(self, spec: str, reason: str) -> None:
        super().__init__(spec)
        self.reason = reason

    def lookup(self, key: str) -> str | None:
        raise MapError(self.reason)


@dataclass(frozen=True)
class Pattern:
    """One list entry.

    + negate: an odd number of leading ``!``.
    + text: the casefolded pattern without the ``!``.
    + table: the open table for a ``type:table`` entry, else None.
    + network: (version, network, mask) for an address or network pattern, else None.
    """

    negate: bool
    text: str
    table: Map | None = None
    network: tuple[int, int, int] | None = None


def is_table_pattern(pattern: str) -> bool:
    """True for a ``type:table`` entry: it has a colon and does not start with ``[``."""
    return not pattern.startswith("[") and ":" in pattern


def parent_style_for(name: str, cfg: "MainConfig | None") -> bool:
    """True when name is listed in parent_domain_matches_subdomains (cfg's value, else the default)."""
    if cfg is None:
        return name in DEFAULT_PARENT_DOMAIN_MATCHES_SUBDOMAINS
    return name in cfg.get_list("parent_domain_matches_subdomains")


MEMO_SIZE = 1024  # answers a list remembers before it starts over


class MatchList:
    """Patterns of one list parameter, matched in order; the first match wins.

    + pname: the parameter name, used in messages and for the parent-domain style.
    + items: the entries, as MainConfig.get_list returns them.
    + cfg: the configuration for tables that need it, and for the parent style.
    + parent: override the parent-domain style (default: from cfg).
    """

    def __init__(self, pname: str, items: Iterable[str], cfg: "MainConfig | None" = None,
                 *, parent: bool | None = None) -> None:
        self.pname = pname
        self.parent = parent_style_for(pname, cfg) if parent is None else parent
        self.error = False
        self.patterns: list[Pattern] = [self._compile(item, cfg) for item in items]
        # Answers by key. An open table never changes (a daemon is restarted to
        # see a rebuilt one), so an answer stays right; a failed lookup is not kept.
        self._memo: dict[tuple[str, str], bool] = {}

    def _remember(self, key: tuple[str, str], answer: bool) -> bool:
        if not self.error:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = answer
        return answer

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.pname}: {len(self.patterns)} patterns>"

    def _compile(self, item: str, cfg: "MainConfig | None") -> Pattern:
        text = item
        negate = False
        while text.startswith("!"):
            negate = not negate
            text = text[1:]
        if not text:
            raise ConfigError(f"{self.pname}: no pattern after '!'")
        if is_table_pattern(text):
            spec = text[len("proxy:"):] if text.startswith("proxy:") else text
            if split_spec(spec)[0] not in MAP_TYPES:
                raise ConfigError(f"{self.pname}: unsupported dictionary type: {spec}")
            try:
                table: Map = open_map(spec, cfg)
            except (MapError, OSError) as exc:
                log.msg_warn(f"{self.pname}: {text}: {exc}")
                table = FailedMap(text, str(exc))
            return Pattern(negate, text, table=table)
        return Pattern(negate, text.lower(), network=self._network(text))

    def _network(self, text: str) -> tuple[int, int, int] | None:
        """Only NetworkList patterns have an address part; see there."""
        return None

    def _lookup(self, table: Map, key: str) -> bool | None:
        """True/False for found/not found; None (with self.error set) when the lookup failed.

        The key is already casefolded, as Postfix folds it before any lookup.
        """
        try:
            return table.lookup(key) is not None
        except (MapError, OSError, sqlite3.Error) as exc:
            log.msg_warn(f"{self.pname}: {table.spec}: table lookup problem: {exc}")
            self.error = True
            return None

    def _match_string(self, string: str, pattern: Pattern) -> bool | None:
        if pattern.table is not None:
            return self._lookup(pattern.table, string)
        return string == pattern.text

    def _match_hostname(self, name: str, pattern: Pattern) -> bool | None:
        """Postfix's match_hostname(): the name, its parents through tables, or a parent pattern."""
        if pattern.table is not None:
            pos = 0
            while pos < len(name):
                if pos == 0 or pattern.table.fixed:
                    found = self._lookup(pattern.table, name[pos:])
                    if found is not False:
                        return found
                dot = name.find(".", pos + 1)
                if dot < 0:
                    break
                pos = dot + 1 if self.parent else dot
            return False
        text = pattern.text
        if name == text:
            return True
        if self.parent:
            return len(name) > len(text) + 1 and name.endswith(text) and name[-len(text) - 1] == "."
        return text.startswith(".") and len(name) > len(text) and name.endswith(text)

    def _first(self, results: Iterable[tuple[Pattern, bool | None]]) -> bool:
        self.error = False
        for pattern, hit in results:
            if hit is None:
                return False
            if hit:
                return not pattern.negate
        return False


class StringList(MatchList):
    """A string_list: exact (casefolded) strings or table keys."""

    def match(self, string: str) -> bool:
        """True when the first matching pattern is not negated."""
        key = string.lower()
        return self._first((p, self._match_string(key, p)) for p in self.patterns)


class DomainList(MatchList):
    """A domain_list (mydestination, relay_domains): names and their parent domains."""

    def match(self, name: str) -> bool:
        """True when the first matching pattern for the host or domain name is not negated."""
        key = name.lower().rstrip(".")
        known = self._memo.get((key, ""))
        if known is not None:
            self.error = False
            return known
        return self._remember((key, ""), self._first((p, self._match_hostname(key, p)) for p in self.patterns))


class NetworkList(MatchList):
    """A namadr_list (mynetworks): client name patterns and address or network patterns."""

    def _network(self, text: str) -> tuple[int, int, int] | None:
        # The light-weight filters of Postfix's match_hostaddr(): a name, or an
        # IPv4 address without a prefix, is never parsed as a network.
        if not any(c in text for c in ":/") or set(text) <= _V4_CHARS:
            return None
        if not set(text) <= _V6_PATTERN_CHARS:
            return None
        try:
            return cidr_parse(text)
        except CidrError as exc:
            raise ConfigError(f"{self.pname}: {exc}") from None

    def _match_hostaddr(self, addr: str, pattern: Pattern) -> bool | None:
        if not addr or not set(addr) <= _V6_CHARS:
            return False
        if pattern.table is not None:
            return self._lookup(pattern.table, addr)
        text = pattern.text
        if text == addr or text == f"[{addr}]":
            return True
        if pattern.network is None:
            return False
        version, network, mask = pattern.network
        parsed = address_parse(addr)
        return parsed is not None and parsed.version == version and (int(parsed) & mask) == network

    def match(self, address: str, name: str = "") -> bool:
        """True when the first pattern that matches the client name or address is not negated.

        + address: the client IP address (IPv4, or IPv6 without brackets).
        + name: the client host name; empty or ``unknown`` when it was not looked up.
        """
        key_addr = address.lower()
        key_name = name.lower().rstrip(".")
        known = self._memo.get((key_addr, key_name))
        if known is not None:
            self.error = False
            return known

        def results() -> Iterable[tuple[Pattern, bool | None]]:
            for pattern in self.patterns:
                hit = self._match_hostname(key_name, pattern) if key_name else False
                if hit is False:
                    hit = self._match_hostaddr(key_addr, pattern)
                yield pattern, hit

        return self._remember((key_addr, key_name), self._first(results()))


def domain_list(cfg: "MainConfig", name: str) -> DomainList:
    """The DomainList of a main.cf parameter (e.g. ``mydestination``)."""
    return DomainList(name, cfg.get_list(name), cfg)


def network_list(cfg: "MainConfig", name: str) -> NetworkList:
    """The NetworkList of a main.cf parameter (e.g. ``mynetworks``)."""
    return NetworkList(name, cfg.get_list(name), cfg)


def string_list(cfg: "MainConfig", name: str) -> StringList:
    """The StringList of a main.cf parameter (e.g. ``smtpd_forbidden_commands``)."""
    return StringList(name, cfg.get_list(name), cfg)

