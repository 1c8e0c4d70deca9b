"""RFC 822 tokens as Postfix's tok822 scanner sees them: atoms, quoted strings, comments, literals, operators.

Used to parse aliases(5) lines (and later .forward files and addresses); the
rules were verified against Postfix 3.7.11's postalias -s output.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

# Characters that are tokens by themselves. "(", "[" and '"' open comments,
# domain literals and quoted strings; ")" and "]" on their own are operators.
_OPERATORS = frozenset("!%),.:;<>@]|")
# Characters an atom cannot hold: when one gets in through a backslash escape,
# the atom is written back as a quoted string.
_SPECIALS = _OPERATORS | frozenset('(["\\')
# Token separators. Vertical tab and form feed are not among them (they stay
# inside atoms), but they do count as blank at the start of a line.
_TOKEN_SPACE = frozenset(" \t\r\n")
LINE_SPACE = " \t\n\v\f\r"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class TokenKind(Enum):
    """What a token is; OPERATOR tokens are one character of _OPERATORS."""

    ATOM = "atom"
    QUOTED = "quoted-string"
    COMMENT = "comment"
    DOMAIN_LITERAL = "domain-literal"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Token:
    """One RFC 822 token.

    + kind: see TokenKind.
    + text: an atom's or operator's text; a quoted string's or domain literal's
      content without delimiters or escapes; a comment's raw text, parentheses included.
    """

    kind: TokenKind
    text: str


def _scan_delimited(text: str, start: int, close: str) -> tuple[str, int]:
    """Content of a quoted string or domain literal opened at start; backslash escapes removed.

    Tabs, CRs and newlines inside become spaces, escaped or not; a missing
    closing delimiter ends the token at the end of the text.
    """
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 < len(text):
                out.append(" " if text[i + 1] in _TOKEN_SPACE else text[i + 1])
            i += 2
            continue
        i += 1
        if ch == close:
            break
        out.append(" " if ch in _TOKEN_SPACE else ch)
    return "".join(out), i


def _scan_comment(text: str, start: int) -> tuple[str, int]:
    """A comment opened at start, kept raw; comments nest and backslash escapes a parenthesis."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        i += 1
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                break
    return text[start:i], min(i, len(text))


def _scan_atom(text: str, start: int) -> tuple[Token, int]:
    """An atom starting at start; one that holds an escaped special becomes a quoted string."""
    out: list[str] = []
    i = start
    while i < len(text):
        ch = text[i]
        if ch in _TOKEN_SPACE or ch in _OPERATORS or ch in '(["':
            break
        if ch == "\\":
            if i + 1 < len(text):
                out.append(" " if text[i + 1] in _TOKEN_SPACE else text[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    word = "".join(out)
    quoted = any(c == " " or c in _SPECIALS or ord(c) < 32 or ord(c) == 127 for c in word)
    return Token(TokenKind.QUOTED if quoted else TokenKind.ATOM, word), i


def tokens_scan(text: str) -> list[Token]:
    """Split text into RFC 822 tokens the way Postfix's tok822_scan does.

    >>> [t.text for t in tokens_scan('Bob <bob@x>, "a b"')]
    ['Bob', '<', 'bob', '@', 'x', '>', ',', 'a b']
    """
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in _TOKEN_SPACE:
            i += 1
        elif ch == "(":
            raw, i = _scan_comment(text, i)
            tokens.append(Token(TokenKind.COMMENT, raw))
        elif ch == '"':
            content, i = _scan_delimited(text, i, '"')
            tokens.append(Token(TokenKind.QUOTED, content))
        elif ch == "[":
            content, i = _scan_delimited(text, i, "]")
            tokens.append(Token(TokenKind.DOMAIN_LITERAL, content))
        elif ch in _OPERATORS:
            tokens.append(Token(TokenKind.OPERATOR, ch))
            i += 1
        else:
            token, i = _scan_atom(text, i)
            tokens.append(token)
    return tokens


def _tokens_join(tokens: Sequence[Token], external: bool) -> str:
    """Tokens back to text: external (quoted, for storage) or internal (unquoted, for names).

    SPACING. A comma is always followed by one space, even at the end; any
    other token gets a space before a following ``<`` and between two
    non-operators; operators otherwise stick to their neighbours.
    """
    out: list[str] = []
    for index, token in enumerate(tokens):
        if token.kind is TokenKind.QUOTED and external:
            out.append('"' + token.text.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif token.kind is TokenKind.DOMAIN_LITERAL:
            out.append("[" + (token.text.replace("\\", "\\\\") if external else token.text) + "]")
        else:
            out.append(token.text)
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.kind is TokenKind.OPERATOR and token.text == ",":
            out.append(" ")
        elif following is not None and (
            (following.kind is TokenKind.OPERATOR and following.text == "<")
            or (token.kind is not TokenKind.OPERATOR and following.kind is not TokenKind.OPERATOR)
        ):
            out.append(" ")
    return "".join(out)


def tokens_external(tokens: Sequence[Token]) -> str:
    """The quoted text form of tokens, as postalias stores a value (``x "a b", y``)."""
    return _tokens_join(tokens, external=True)


def tokens_internal(tokens: Sequence[Token]) -> str:
    """The unquoted text form of tokens, as postalias stores a name (``"odd name"`` -> ``odd name``)."""
    return _tokens_join(tokens, external=False)


def fold_ascii(text: str) -> str:
    """Lowercase ASCII letters only, as Postfix folds table keys (``ÉCOLE`` -> ``École``)."""
    return text.translate(_ASCII_LOWER)
