"""Postfix's ``$name`` macro expansion for main.cf values (mac_expand semantics of Postfix 3.7).

Forms understood, as postconf(5) documents them:

    $name  ${name}  $(name)           value of name, expanded recursively
    ${name?value}  ${name?{value}}    value when $name is non-empty, else empty
    ${name:value}  ${name:{value}}    value when $name is empty, else empty
    ${name?{value1}:{value2}}         value1 when $name is non-empty, else value2
    ${{text1} OP {text2} ? {v1} : {v2}}   relational form; OP is == != < <= > >=
                                      (numeric when both sides are all digits) or
                                      <level <=level >level >=level (compatibility
                                      levels, compared per dotted component)
    $$                                a literal $

A name that is not defined expands to the empty string and is reported through
the ``undefined`` callback. A parameter that refers to itself, directly or
through others, is an error ("unreasonable macro call nesting").
"""

from __future__ import annotations

import re
from typing import Callable

from mta.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9_]+")
_CLOSE = {"{": "}", "(": ")"}
_OPERATORS = ("==", "!=", "<=level", ">=level", "<level", ">level", "<=", ">=", "<", ">")

# name -> its raw value, or None when undefined.
Lookup = Callable[[str], "str | None"]


class ExpandError(ConfigError):
    """A value has broken macro syntax or a reference loop."""


def _matching(text: str, start: int, open_char: str, whole: str) -> int:
    """Index of the bracket that closes the one at text[start], honouring nesting."""
    close_char = _CLOSE[open_char]
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch == open_char:
            depth += 1
        elif ch == close_char:
            depth -= 1
            if depth == 0:
                return i
    raise ExpandError(f'truncated macro reference: "{whole}"')


def _braced(text: str, pos: int, whole: str, what: str) -> tuple[str, int]:
    """Read ``{...}`` at text[pos:] after optional whitespace; return its inside and the next index."""
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text) or text[pos] != "{":
        raise ExpandError(f'"{{" expected for {what} at: "...{text[:pos]}>>>{text[pos:]}" in "{whole}"')
    end = _matching(text, pos, "{", whole)
    return text[pos + 1:end], end + 1


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _level_key(level: str) -> tuple[int, ...]:
    """Compatibility levels compare per dotted component: 3.6 < 3.10."""
    try:
        return tuple(int(part) for part in level.split("."))
    except ValueError as exc:
        raise ExpandError(f'invalid compatibility level: "{level}"') from exc


def _compare(left: str, op: str, right: str) -> bool:
    if op.endswith("level"):
        a: object = _level_key(left)
        b: object = _level_key(right)
        op = op[: -len("level")]
    elif left.isdigit() and right.isdigit():
        a, b = int(left), int(right)
    else:
        a, b = left, right
    return {
        "==": a == b, "!=": a != b,
        "<": a < b, "<=": a <= b,  # type: ignore[operator]
        ">": a > b, ">=": a >= b,  # type: ignore[operator]
    }[op]


class Expander:
    """Expands main.cf values against a name lookup, memoising each parameter's result.

    + lookup: returns a parameter's raw (unexpanded) value, or None when undefined.
    + undefined: called with the name of each undefined parameter that is referenced.
    """

    def __init__(self, lookup: Lookup, undefined: Callable[[str], None] | None = None) -> None:
        self._lookup = lookup
        self._undefined = undefined
        self._cache: dict[str, str] = {}
        self._active: list[str] = []

    def value(self, name: str) -> str:
        """The fully expanded value of parameter name ("" when undefined)."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        if name in self._active:
            raise ExpandError(f'unreasonable macro call nesting: "{name}"')
        raw = self._lookup(name)
        if raw is None:
            if self._undefined is not None:
                self._undefined(name)
            return ""
        self._active.append(name)
        try:
            result = self.expand(raw)
        finally:
            self._active.pop()
        self._cache[name] = result
        return result

    def expand(self, text: str) -> str:
        """Expand every macro in text."""
        out: list[str] = []
        i = 0
        n = len(text)
        while i < n:
            j = text.find("$", i)
            if j < 0:
                out.append(text[i:])
                break
            out.append(text[i:j])
            if j + 1 >= n:
                raise ExpandError(f'empty macro name: "{text}"')
            nxt = text[j + 1]
            if nxt == "$":
                out.append("$")
                i = j + 2
            elif nxt in _CLOSE:
                end = _matching(text, j + 1, nxt, text)
                out.append(self._braced_macro(text[j + 2:end], text))
                i = end + 1
            else:
                m = _NAME.match(text, j + 1)
                if m is None:
                    raise ExpandError(f'empty macro name: "{text}"')
                out.append(self.value(m.group()))
                i = m.end()
        return "".join(out)

    def _braced_macro(self, inner: str, whole: str) -> str:
        """Evaluate the inside of ``${...}`` / ``$(...)``."""
        pos = _skip_space(inner, 0)
        if pos < len(inner) and inner[pos] == "{":
            return self._relational(inner, pos, whole)
        m = _NAME.match(inner, pos)
        if m is None:
            raise ExpandError(f'attribute name syntax error at: "...>>>{inner[pos:]}" in "{whole}"')
        name = m.group()
        pos = _skip_space(inner, m.end())
        if pos >= len(inner):
            return self.value(name)
        op = inner[pos]
        if op not in "?:":
            raise ExpandError(f'attribute name syntax error at: "...{name}>>>{inner[pos:]}" in "{whole}"')
        nonempty = self.value(name) != ""
        rest = inner[pos + 1:]
        if rest.strip().startswith("{"):
            first, after = _braced(rest, 0, whole, "value")
            after = _skip_space(rest, after)
            second = None
            if after < len(rest):
                if op != "?" or rest[after] != ":":
                    raise ExpandError(f'":" expected at: "...{rest[:after]}>>>{rest[after:]}" in "{whole}"')
                second, after = _braced(rest, after + 1, whole, "value")
                if _skip_space(rest, after) < len(rest):
                    raise ExpandError(f'garbage after "}}" at: "...>>>{rest[after:]}" in "{whole}"')
        else:
            first, second = rest.strip(), None
        if op == "?":
            chosen = first if nonempty else (second or "")
        else:
            chosen = first if not nonempty else ""
        return self.expand(chosen)

    def _relational(self, inner: str, pos: int, whole: str) -> str:
        """``{text1} OP {text2} [? {v1} [: {v2}]]``: texts are expanded, then compared."""
        left, pos = _braced(inner, pos, whole, "left operand")
        pos = _skip_space(inner, pos)
        op = next((o for o in _OPERATORS if inner.startswith(o, pos)), None)
        if op is None:
            raise ExpandError(
                f'"==" or "!=" or "<" or "<=" or ">=" or ">" expected at: '
                f'"...{inner[:pos]}>>>{inner[pos:]}" in "{whole}"'
            )
        right, pos = _braced(inner, pos + len(op), whole, "right operand")
        truth = _compare(self.expand(left), op, self.expand(right))
        pos = _skip_space(inner, pos)
        if pos >= len(inner):
            return "true" if truth else ""
        if inner[pos] != "?":
            raise ExpandError(f'"?" expected at: "...{inner[:pos]}>>>{inner[pos:]}" in "{whole}"')
        first, pos = _braced(inner, pos + 1, whole, "value")
        pos = _skip_space(inner, pos)
        second = ""
        if pos < len(inner):
            if inner[pos] != ":":
                raise ExpandError(f'":" expected at: "...{inner[:pos]}>>>{inner[pos:]}" in "{whole}"')
            second, pos = _braced(inner, pos + 1, whole, "value")
            if _skip_space(inner, pos) < len(inner):
                raise ExpandError(f'garbage after "}}" at: "...>>>{inner[pos:]}" in "{whole}"')
        return self.expand(first if truth else second)


def referenced_names(text: str) -> set[str]:
    """Names that a raw value refers to with ``$name``, ``${name...}`` or ``$(name...)``.

    Used to decide which user-defined parameters are "used" (postconf's unused warning).
    Syntax errors are ignored here; expansion reports them.
    """
    names = set(re.findall(r"\$(?:[{(]\s*)?([A-Za-z0-9_]+)", text.replace("$$", "")))
    return names
