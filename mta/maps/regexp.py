"""regexp: and pcre: tables: ordered /pattern/flags rules, if/endif blocks and $n results.

TABLE FORMAT (regexp_table(5), pcre_table(5), checked against Postfix 3.7.11).
``/pattern/flags result``; ``!/pattern/flags result`` (each ``!`` toggles, and
a negated rule cannot use ``$n``); ``if /pattern/flags`` ... ``endif``, nested;
the keywords are case-insensitive. The delimiter is any character but a
letter, digit or whitespace; ``\\`` escapes it (the backslash stays in the
pattern). Results take ``$1``, ``${1}``, ``$(1)`` and ``$$``. Rules are tried
in order against the whole key as given (fold_case is False), and the first
match wins. Tables are read once, when opened; ``regexp:{ {rule}, {rule} }``
gives the rules inline (Postfix 3.7).

FLAGS. regexp: ``i`` (case-insensitive, on by default), ``x`` (extended
syntax, on; off means POSIX basic syntax), ``m`` (REG_NEWLINE). pcre: ``i``
(on), ``s`` (dotall, on), ``m``, ``x`` (verbose), ``A`` (anchored), ``E``
(dollar matches only at the end), ``U`` (ungreedy); ``X`` is ignored with a
warning, as Postfix built with PCRE2 does.

MATCHING. Both types match bytes, as Postfix does in its default C locale: the
key is encoded as UTF-8, ``.`` matches one byte, and case folding is ASCII
only. Patterns are translated to Python's re syntax by mta.maps.pattern, which
lists what is translated and what is not supported.

ERRORS. A problem Postfix would warn about while reading the table (no closing
delimiter, unknown flag, bad pattern, bad ``$n``, unmatched if/endif, ...)
is a ConfigError naming file and line: a table that would silently drop an
access rule is refused. With strict=False the same text is logged as a
warning and the rule is skipped or repaired as Postfix does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from mta import log
from mta.errors import ConfigError
from mta.maps import Map
from mta.maps.pattern import ere_translate, pcre_translate
from mta.maps.source import SPACE, LogicalLine, source_inline_lines, source_open_lines

if TYPE_CHECKING:
    from mta.config import MainConfig


@dataclass(slots=True)
class Rule:
    """One compiled table line.

    + test: the compiled pattern's search (or match, for pcre's A flag).
    + negate: the rule applies when the pattern does not match.
    + result: the replacement pieces (text, or a group number); None for ``if``.
    + skip: for ``if``, the rule index just after the matching ``endif``.
    + line: the source line, for messages.
    """

    test: Callable[[bytes], "re.Match[bytes] | None"]
    negate: bool
    result: list[str | int] | None
    skip: int
    line: int


class RuleError(ValueError):
    """A bad line, with what Postfix does about it (appended in lenient mode)."""

    def __init__(self, reason: str, action: str | None = "skipping this rule") -> None:
        super().__init__(reason)
        self.reason = reason
        self.action = action


def result_parse(text: str) -> list[str | int]:
    """Split a result into literal text and $n group numbers (``$$`` is a literal ``$``).

    Raises RuleError with Postfix's wording for bad syntax.

    >>> result_parse("550 use ${1}@$2 ($$)")
    ['550 use ', 1, '@', 2, ' ($)']
    """
    parts: list[str | int] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$":
            literal.append(c)
            i += 1
            continue
        if i + 1 < n and text[i + 1] == "$":
            literal.append("$")
            i += 2
            continue
        if i + 1 < n and text[i + 1] in "{(":
            close = "}" if text[i + 1] == "{" else ")"
            end = text.find(close, i + 2)
            if end < 0:
                raise RuleError(f"bad replacement syntax: truncated macro reference: \"{text}\"")
            name, i = text[i + 2:end], end + 1
        else:
            match = re.match(r"[A-Za-z0-9_]+", text[i + 1:])
            name = match.group(0) if match else ""
            i += 1 + len(name)
        if not name:
            raise RuleError(f"bad replacement syntax: empty macro name: \"{text}\"")
        if not (name.isascii() and name.isdigit()):
            raise RuleError(f"bad replacement syntax: non-numeric replacement index \"{name}\"")
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(int(name))
    if literal:
        parts.append("".join(literal))
    return parts


class RegexpMap(Map):
    """A ``regexp:`` table: POSIX regular expressions, tried in order.

    + spec, name: ``regexp:/etc/postfix/file`` and the file name (or ``{...}`` rules).
    + cfg: unused (the table format does not depend on main.cf).
    + strict: raise ConfigError on the first bad line (default), or warn and
      skip it as Postfix does.
    """

    type_name = "regexp"
    fold_case = False
    fixed = False
    flag_letters = "imx"

    def __init__(self, spec: str, name: str, cfg: "MainConfig | None" = None,
                 *, strict: bool = True) -> None:
        super().__init__(spec)
        self.strict = strict
        self.rules: list[Rule] = []
        self.path = name
        if name.lstrip(SPACE).startswith("{"):
            self._load(source_inline_lines(name, self.type_name))
        else:
            self._load(source_open_lines(name))

    # -- reading ----------------------------------------------------------

    def _problem(self, line: int, reason: str, action: str | None) -> None:
        if self.strict:
            raise ConfigError(reason, self.path, line)
        text = f"{self.path}, line {line}: {reason}"
        log.msg_warn(f"{text}: {action}" if action else text)

    def _note(self, line: int, reason: str) -> None:
        log.msg_warn(f"{self.path}, line {line}: {reason}")

    def _load(self, lines: Iterable[LogicalLine]) -> None:
        open_ifs: list[tuple[int, int]] = []          # (rule index, line)
        for logical in lines:
            try:
                self._load_line(logical, open_ifs)
            except RuleError as exc:
                self._problem(logical.line, exc.reason, exc.action)
        for index, line in reversed(open_ifs):
            self._problem(line, "IF has no matching ENDIF", None)
            self.rules[index].skip = len(self.rules)

    def _load_line(self, logical: LogicalLine, open_ifs: list[tuple[int, int]]) -> None:
        text = logical.text
        keyword = re.match(r"(if|endif)(?![A-Za-z0-9])", text, re.IGNORECASE)
        if keyword is not None and keyword.group(1).lower() == "endif":
            if not open_ifs:
                raise RuleError("ignoring ENDIF without matching IF", None)
            index, _ = open_ifs.pop()
            self.rules[index].skip = len(self.rules)
            if text[5:].strip(SPACE):
                # Postfix still closes the IF (3.7.11 [obs]).
                raise RuleError("ignoring extra text after ENDIF", None)
            return
        if keyword is not None:
            test, negate, rest, _ = self._pattern(text[2:].lstrip(SPACE), logical.line)
            if rest:
                self._problem(logical.line, f"ignoring extra text after IF statement: \"{rest}\"",
                              None)
                self._note(logical.line, "do not prepend whitespace to statements between "
                           "IF and ENDIF")
            open_ifs.append((len(self.rules), logical.line))
            self.rules.append(Rule(test, negate, None, 0, logical.line))
            return
        test, negate, rest, groups = self._pattern(text, logical.line)
        if not rest:
            if self.strict:
                raise RuleError("no replacement text")
            self._note(logical.line, "no replacement text: using empty string")
        result = result_parse(rest)
        for part in result:
            if isinstance(part, int):
                if negate:
                    raise RuleError("$number found in negative match replacement text")
                if not 1 <= part <= groups:
                    raise RuleError(f"out of range replacement index \"{part}\"")
        self.rules.append(Rule(test, negate, result, 0, logical.line))

    def _pattern(self, text: str, line: int) -> tuple[Callable[[bytes], "re.Match[bytes] | None"],
                                                       bool, str, int]:
        """Parse ``[!...]/pattern/flags`` at the start of text; return (test, negate, rest, groups)."""
        negate = False
        while text.startswith("!"):
            negate = not negate
            text = text[1:].lstrip(SPACE)
        if not text or text[0].isalnum() or text[0] in SPACE:
            raise RuleError("ignoring unrecognized request", None)
        delim = text[0]
        i = 1
        while i < len(text) and text[i] != delim:
            i += 2 if text[i] == "\\" else 1
        if i >= len(text):
            raise RuleError(f"no closing regexp delimiter \"{delim}\"")
        pattern = text[1:i]
        end = i + 1
        while end < len(text) and text[end] not in SPACE:
            end += 1
        flags = text[i + 1:end]
        for flag in flags:
            if flag not in self.flag_letters:
                raise RuleError(f"unknown regexp option \"{flag}\"")
        raw = pattern.encode("utf-8", "surrogateescape").decode("latin-1")
        try:
            regex, anchored = self._compile(raw, flags, line)
        except (ValueError, re.error, OverflowError, RecursionError) as exc:
            raise RuleError(self._pattern_error(exc)) from exc
        return (regex.match if anchored else regex.search), negate, text[end:].lstrip(SPACE), \
            regex.groups

    def _pattern_error(self, exc: Exception) -> str:
        if isinstance(exc, re.error):
            return f"bad regular expression: {exc.msg}"
        return str(exc)

    def _compile(self, raw: str, flags: str, line: int) -> tuple["re.Pattern[bytes]", bool]:
        icase, extended, newline = True, True, False
        for flag in flags:
            if flag == "i":
                icase = not icase
            elif flag == "x":
                extended = not extended
            else:
                newline = not newline
        text = ere_translate(raw, extended=extended, newline=newline, icase=icase,
                             warn=lambda note: self._note(line, note))
        options = (re.IGNORECASE if icase else 0) | (re.MULTILINE if newline else 0)
        return re.compile(text.encode("latin-1"), options), False

    # -- lookup -----------------------------------------------------------

    def lookup(self, key: str) -> str | None:
        """Apply the rules to key; return the first matching rule's result, or None."""
        data = key.encode("utf-8", "surrogateescape")
        rules = self.rules
        i, n = 0, len(rules)
        while i < n:
            rule = rules[i]
            match = rule.test(data)
            if rule.result is None:
                i = i + 1 if (match is None) == rule.negate else rule.skip
                continue
            if (match is None) == rule.negate:
                return _expand(rule.result, match)
            i += 1
        return None


def _expand(parts: list[str | int], match: "re.Match[bytes] | None") -> str:
    if len(parts) == 1 and isinstance(parts[0], str):
        return parts[0]
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif match is not None:
            group = match.group(part)
            if group:
                out.append(group.decode("utf-8", "surrogateescape"))
    return "".join(out)


class PcreMap(RegexpMap):
    """A ``pcre:`` table: Perl-compatible regular expressions, tried in order (see RegexpMap)."""

    type_name = "pcre"
    flag_letters = "imsxAEUX"

    def _pattern_error(self, exc: Exception) -> str:
        if isinstance(exc, re.error):
            where = f" at offset {exc.pos}" if exc.pos is not None else ""
            return f"error in regex{where}: {exc.msg}"
        return f"error in regex: {exc}"

    def _compile(self, raw: str, flags: str, line: int) -> tuple["re.Pattern[bytes]", bool]:
        state = {"i": True, "s": True, "m": False, "x": False, "A": False, "E": False, "U": False}
        for flag in flags:
            if flag == "X":
                self._note(line, "ignoring obsolete regexp option \"X\"")
                continue
            state[flag] = not state[flag]
        text = pcre_translate(raw, ungreedy=state["U"], dollar_endonly=state["E"],
                              multiline=state["m"], extended=state["x"])
        options = ((re.IGNORECASE if state["i"] else 0) | (re.DOTALL if state["s"] else 0)
                   | (re.MULTILINE if state["m"] else 0) | (re.VERBOSE if state["x"] else 0))
        return re.compile(text.encode("latin-1"), options), state["A"]
