"""inline: and static: tables: contents given in the table name itself.

``inline:{ key=value, { key = text with spaces } }`` (Postfix 3.0): items are
separated by whitespace or commas; a braced item may hold both, and the
whitespace around its ``=`` is dropped. A name cannot contain whitespace; a
later duplicate replaces an earlier one (Postfix 3.7.11 [obs]). Keys are
folded to lowercase unless the table is opened without case folding (postmap
-f sets fold_case False after opening; both spellings are kept for that).

``static:value`` returns value for every key; ``static:{ text with spaces }``
gives a value with spaces (the braces and the whitespace just inside them go).

Syntax errors raise MapError with Postfix's wording, e.g. ``bad syntax:
"inline:{}"; need "inline:{name=value...}"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mta.errors import MapError
from mta.maps import Map
from mta.maps.source import SPACE, brace_body, brace_tokens

if TYPE_CHECKING:
    from mta.config import MainConfig


def inline_parse(spec: str, name: str) -> list[tuple[str, str]]:
    """Parse the ``{...}`` part of an inline: table into (key, value) pairs, keys as written.

    + spec: the whole ``inline:{...}`` text, quoted in messages.
    + name: the part after ``inline:``.
    Raises MapError for bad syntax.

    >>> inline_parse("inline:{a=b, { c = d e }}", "{a=b, { c = d e }}")
    [('a', 'b'), ('c', 'd e')]
    """
    need = 'need "inline:{name=value...}"'
    body = brace_body(name)
    if body is None:
        raise MapError(f"bad syntax: \"{spec}\"; {need}")
    try:
        items = brace_tokens(body)
    except ValueError as exc:
        raise MapError(f"{exc}: \"{spec}\"; {need}") from exc
    if not items:
        raise MapError(f"bad syntax: \"{spec}\"; {need}")
    pairs: list[tuple[str, str]] = []
    for text, _braced in items:
        if text.count('"') % 2:
            raise MapError(f"unbalanced '\"': \"{spec}\"; {need}")
        key, equals, value = text.partition("=")
        key = key.strip(SPACE)
        if not equals or any(c in SPACE for c in key):
            raise MapError(f"missing '=' after attribute name: \"{spec}\"; {need}")
        pairs.append((key, value.strip(SPACE)))
    return pairs


class InlineMap(Map):
    """An ``inline:{key=value, ...}`` table.

    + spec, name: ``inline:{a=b}`` and ``{a=b}``.
    + cfg: unused.
    """

    type_name = "inline"
    fold_case = True

    def __init__(self, spec: str, name: str, cfg: "MainConfig | None" = None) -> None:
        super().__init__(spec)
        self._exact: dict[str, str] = {}
        self._folded: dict[str, str] = {}
        for key, value in inline_parse(spec, name):
            self._exact[key] = value
            self._folded.pop(key.lower(), None)
            self._folded[key.lower()] = value

    def lookup(self, key: str) -> str | None:
        """Return the value for key (lowercased first when fold_case is set), or None."""
        if self.fold_case:
            return self._folded.get(key.lower())
        return self._exact.get(key)

    def items(self) -> list[tuple[str, str]]:
        """All entries in the order given (postmap -s)."""
        return list((self._folded if self.fold_case else self._exact).items())


class StaticMap(Map):
    """A ``static:value`` table: every lookup returns value.

    + spec, name: ``static:{text}`` and ``{text}`` (or ``static:text`` and ``text``).
    + cfg: unused.
    """

    type_name = "static"
    fold_case = False

    def __init__(self, spec: str, name: str, cfg: "MainConfig | None" = None) -> None:
        super().__init__(spec)
        if not name:
            raise MapError(f"open dictionary: expecting \"type:name\" form instead of \"{spec}\"")
        if name.startswith("{"):
            body = brace_body(name)
            if body is None:
                reason = (f"syntax error after '}}' in \"{name}\"" if name.count("}") >= name.count("{")
                          else f"missing '}}' in \"{name}\"")
                raise MapError(f"bad static:name syntax: {reason}")
            name = body.strip(SPACE)
        self.value = name

    def lookup(self, key: str) -> str | None:
        """Return the table's value, whatever the key."""
        return self.value
