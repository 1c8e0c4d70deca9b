"""cidr: tables: ordered network/prefix rules for IPv4 and IPv6 keys, with if/endif blocks.

TABLE FORMAT (cidr_table(5), checked against Postfix 3.7.11). ``pattern
result``, ``!pattern result`` (each ``!`` toggles), ``if pattern`` ...
``endif`` (nested, keywords case-insensitive). A pattern is ``address`` or
``address/prefix``, optionally in brackets (``[2001:db8::]/32`` or
``[2001:db8::/32]``); the prefix is decimal, at most 32 or 128, and the host
bits past it must be zero. Rules are tried in order, first match wins; a key
matches only patterns of its own family, negated ones included. A key that is
not a plain IP address (brackets, a scope id, leading zeros) matches nothing.
``cidr:{ {rule}, {rule} }`` gives the rules inline (Postfix 3.7).

ERRORS. Bad lines are ConfigErrors naming file and line, with the reason
Postfix gives (``non-null host address bits in "192.168.1.1/24", perhaps you
should use "192.168.1.0/24" instead``). With strict=False they are logged as
warnings and the rule is skipped, as Postfix does.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from mta import log
from mta.errors import ConfigError
from mta.maps import Map
from mta.maps.source import SPACE, LogicalLine, source_inline_lines, source_open_lines

if TYPE_CHECKING:
    from mta.config import MainConfig

_KEYWORD = re.compile(r"(if|endif)(?=[ \t\n\r\v\f]|$)", re.IGNORECASE)


@dataclass(slots=True)
class CidrRule:
    """One compiled table line.

    + version: 4 or 6.
    + network, mask: the network address and netmask as integers.
    + negate: the rule applies to keys of this family outside the network.
    + result: the lookup result; None for ``if``.
    + skip: for ``if``, the rule index just after the matching ``endif``.
    + line: the source line, for messages.
    """

    version: int
    network: int
    mask: int
    negate: bool
    result: str | None
    skip: int
    line: int


class CidrError(ValueError):
    """A bad pattern; the reason is Postfix's wording, without "skipping this rule"."""


def cidr_parse(pattern: str) -> tuple[int, int, int]:
    """Parse ``address[/prefix]`` (brackets allowed) into (version, network, mask).

    Raises CidrError with Postfix's wording.

    >>> cidr_parse("[192.168.0.0]/16") == (4, 0xC0A80000, 0xFFFF0000)
    True
    """
    text = pattern
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise CidrError(f"missing ']' character after \"{pattern}\"")
        text = text[1:close] + text[close + 1:]
    address, slash, prefix = text.partition("/")
    parsed = address_parse(address)
    if parsed is None:
        raise CidrError(f"bad address pattern: \"{pattern}\"")
    bits = 32 if parsed.version == 4 else 128
    if slash:
        if not (prefix.isascii() and prefix.isdigit()):
            raise CidrError(f"bad mask value in \"{pattern}\"")
        length = int(prefix)
        if length > bits:
            raise CidrError(f"bad mask length in \"{pattern}\"")
    else:
        length = bits
    mask = ((1 << bits) - 1) ^ ((1 << (bits - length)) - 1)
    value = int(parsed)
    if value & ~mask:
        kind = ipaddress.IPv4Network if parsed.version == 4 else ipaddress.IPv6Network
        network = kind((value & mask, length))
        raise CidrError(f"non-null host address bits in \"{pattern}\", perhaps you should "
                        f"use \"{network}\" instead")
    return parsed.version, value, mask


def address_parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A plain IPv4 or IPv6 address (no brackets, no scope id), or None.

    >>> address_parse("2001:DB8::1")
    IPv6Address('2001:db8::1')
    >>> address_parse("010.1.1.1") is None
    True
    """
    if not text or "%" in text or text.strip(SPACE) != text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class CidrMap(Map):
    """A ``cidr:`` table, tried in order.

    + spec, name: ``cidr:/etc/postfix/clients`` and the file name (or ``{...}`` rules).
    + cfg: unused.
    + strict: raise ConfigError on the first bad line (default), or warn and
      skip it as Postfix does.
    """

    type_name = "cidr"
    fold_case = True
    fixed = False

    def __init__(self, spec: str, name: str, cfg: "MainConfig | None" = None,
                 *, strict: bool = True) -> None:
        super().__init__(spec)
        self.path = name
        self.strict = strict
        self.rules: list[CidrRule] = []
        if name.lstrip(SPACE).startswith("{"):
            self._load(source_inline_lines(name, self.type_name))
        else:
            self._load(source_open_lines(name))

    def _problem(self, line: int, reason: str, action: str | None = "skipping this rule") -> None:
        if self.strict:
            raise ConfigError(reason, self.path, line)
        text = f"{self.path}, line {line}: {reason}"
        log.msg_warn(f"{text}: {action}" if action else text)

    def _load(self, lines: Iterable[LogicalLine]) -> None:
        open_ifs: list[tuple[int, int]] = []
        for logical in lines:
            try:
                self._load_line(logical, open_ifs)
            except CidrError as exc:
                self._problem(logical.line, str(exc))
        for index, line in reversed(open_ifs):
            self._problem(line, "IF has no matching ENDIF", None)
            self.rules[index].skip = len(self.rules)

    def _load_line(self, logical: LogicalLine, open_ifs: list[tuple[int, int]]) -> None:
        text = logical.text
        keyword = _KEYWORD.match(text)
        if keyword is not None and keyword.group(1).lower() == "endif":
            if text[5:].strip(SPACE):
                raise CidrError("garbage after ENDIF")
            if not open_ifs:
                raise CidrError("ENDIF without IF")
            index, _ = open_ifs.pop()
            self.rules[index].skip = len(self.rules)
            return
        if keyword is not None:
            pattern, negate = _negation(text[2:].strip(SPACE))
            if not pattern:
                raise CidrError("no address pattern")
            version, network, mask = cidr_parse(pattern)
            open_ifs.append((len(self.rules), logical.line))
            self.rules.append(CidrRule(version, network, mask, negate, None, 0, logical.line))
            return
        pattern, negate = _negation(text)
        end = 0
        while end < len(pattern) and pattern[end] not in SPACE:
            end += 1
        result = pattern[end:].strip(SPACE)
        pattern = pattern[:end]
        if not pattern:
            raise CidrError("no address pattern")
        version, network, mask = cidr_parse(pattern)
        if not result:
            raise CidrError("no lookup result")
        self.rules.append(CidrRule(version, network, mask, negate, result, 0, logical.line))

    def lookup(self, key: str) -> str | None:
        """Return the result of the first rule that matches the address key, or None."""
        address = address_parse(key)
        if address is None:
            return None
        version, value = address.version, int(address)
        rules = self.rules
        i, n = 0, len(rules)
        while i < n:
            rule = rules[i]
            hit = rule.version == version and ((value & rule.mask) == rule.network) != rule.negate
            if rule.result is None:
                i = i + 1 if hit else rule.skip
                continue
            if hit:
                return rule.result
            i += 1
        return None


def _negation(text: str) -> tuple[str, bool]:
    negate = False
    while text.startswith("!"):
        negate = not negate
        text = text[1:].lstrip(SPACE)
    return text, negate
