"""Translate POSIX ERE (regexp:) and PCRE (pcre:) patterns into Python re syntax.

A pattern and its translation are both latin-1 text standing for bytes: regexp:
and pcre: tables match the UTF-8 encoded key byte by byte, as Postfix does in its
default C locale (see mta.maps.regexp), which compiles the translation with the
table's flags.

Translated (regexp_table(5), pcre_table(5), checked against Postfix 3.7.11):

- regexp: POSIX ERE and BRE (GNU flavour: ``\\w \\s \\b \\< \\> \\` \\'``,
  back-references, ``\\+ \\? \\|`` in BRE), bracket expressions with
  ``[:class:]``, ``[.c.]`` and ``[=c=]`` for single characters, backslash
  literal inside brackets, ``$`` only at the end of the key, stacked
  quantifiers (``a*?`` is ``(a*)?``, greedy, not Python's lazy ``*?``).
  Unsupported: POSIX leftmost-longest submatch rules (Python takes the
  leftmost-first alternative; whether a rule matches is the same, only $n may
  differ) and multi-character collating elements. An escaped ordinary letter
  such as ``\\d`` means that letter and draws a warning (glibc, with the
  default i flag, never matches it at all).
- pcre: Python's syntax is close to PCRE's; translated are ``[:class:]``,
  ``\\z \\Z \\e \\h \\H \\v \\V \\R \\N \\Q...\\E \\x{..} \\o{..} \\cX \\g \\k``,
  ``(?<name>`` and ``(?'name'``, inline flags in mid-pattern, and ``{,n}``
  (a literal in PCRE2 10.42). Unsupported, and reported as bad patterns:
  ``\\p``, ``\\K``, ``\\X``, ``\\G``, recursion, branch reset ``(?|``,
  backtracking verbs and callouts.

ERRORS. Both translators raise ValueError: ere_translate with glibc's wording
(``Unmatched ( or \\(``), pcre_translate naming what is wrong or unsupported.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

RE_DUP_MAX = 0x7FFF

# POSIX character classes in the C locale, as sets of byte values.
_CLASSES: dict[str, frozenset[int]] = {
    "alpha": frozenset(range(65, 91)) | frozenset(range(97, 123)),
    "digit": frozenset(range(48, 58)),
    "upper": frozenset(range(65, 91)),
    "lower": frozenset(range(97, 123)),
    "space": frozenset(b" \t\n\r\v\f"),
    "blank": frozenset(b" \t"),
    "punct": frozenset(c for c in range(33, 127) if not chr(c).isalnum()),
    "print": frozenset(range(32, 127)),
    "graph": frozenset(range(33, 127)),
    "cntrl": frozenset(range(0, 32)) | {127},
    "xdigit": frozenset(b"0123456789abcdefABCDEF"),
    "word": frozenset(b"_") | frozenset(range(48, 58)) | frozenset(range(65, 91))
    | frozenset(range(97, 123)),
}
_CLASSES["alnum"] = _CLASSES["alpha"] | _CLASSES["digit"]

_INTERVAL = re.compile(r"(\d*)(,(\d*))?")


def _set_text(values: Iterable[int]) -> str:
    """Python character-class text for a set of byte values (latin-1 view)."""
    out: list[str] = []
    ordered = sorted(set(values))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(f"\\x{ordered[i]:02x}" if i == j else f"\\x{ordered[i]:02x}-\\x{ordered[j]:02x}")
        i = j + 1
    return "".join(out)


def _class_set(name: str) -> frozenset[int]:
    if name not in _CLASSES:
        raise ValueError("Invalid character class name")
    return _CLASSES[name]


class _Emitter:
    """Output of a pattern translation, tracking the last atom for quantifiers."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.atom: int | None = None
        self.quantified = False

    def add_atom(self, text: str) -> None:
        self.atom = len(self.out)
        self.out.append(text)
        self.quantified = False

    def add_anchor(self, text: str) -> None:
        self.atom = None
        self.out.append(text)
        self.quantified = False

    def add_quantifier(self, text: str) -> None:
        if self.atom is None:
            raise ValueError("Invalid preceding regular expression")
        if self.quantified:
            # POSIX allows a*? or a** (a quantified quantified atom); Python reads
            # *? as lazy and ** as an error, so group the first one.
            self.out[self.atom:] = ["(?:" + "".join(self.out[self.atom:]) + ")"]
        self.out.append(text)
        self.quantified = True

    def text(self) -> str:
        return "".join(self.out)


def _posix_bracket(pattern: str, i: int, newline: bool, icase: bool = False) -> tuple[str, int]:
    """Translate a POSIX bracket expression starting after its ``[``; return (text, next index).

    With icase (REG_ICASE), a letter in the set stands for both of its cases
    before negation, as in glibc: ``[^A-Z]`` then excludes a-z too. Python's
    re.IGNORECASE alone would let ``b`` match the expanded negated set.
    """
    n = len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    members: set[int] = set()
    first = True
    while True:
        if i >= n:
            raise ValueError("Unmatched [, [^, [:, [., or [=")
        c = pattern[i]
        if c == "]" and not first:
            i += 1
            break
        first = False
        if c == "[" and i + 1 < n and pattern[i + 1] in ":.=":
            kind = pattern[i + 1]
            end = pattern.find(kind + "]", i + 2)
            if end < 0:
                raise ValueError("Unmatched [, [^, [:, [., or [=")
            name = pattern[i + 2:end]
            i = end + 2
            if kind == ":":
                members |= _class_set(name)
                continue
            if len(name) != 1:
                raise ValueError("Invalid collation character")
            value = ord(name)
        else:
            value = ord(c)
            i += 1
        # A range: this character, '-', and a character other than the closing ']'.
        if i + 1 < n and pattern[i] == "-" and pattern[i + 1] != "]":
            hi_char = pattern[i + 1]
            i += 2
            if hi_char == "[" and i < n and pattern[i] in ".=":
                end = pattern.find(pattern[i] + "]", i + 1)
                if end < 0 or end - i - 1 != 1:
                    raise ValueError("Invalid range end")
                hi_char = pattern[i + 1]
                i = end + 2
            hi = ord(hi_char)
            if hi < value:
                raise ValueError("Invalid range end")
            members.update(range(value, hi + 1))
            continue
        members.add(value)
    if icase:
        members |= {c ^ 0x20 for c in members if 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A}
    if negate:
        if newline:
            members.add(10)
        members = set(range(256)) - members
    if not members:
        return "(?!)", i
    return "[" + _set_text(members) + "]", i


def ere_translate(pattern: str, *, extended: bool = True, newline: bool = False, icase: bool = False,
                  warn: Callable[[str], None] | None = None) -> str:
    """Translate a POSIX regular expression to Python re syntax (both as latin-1 text).

    + extended: ERE (regexp flag x, the default) or BRE.
    + newline: REG_NEWLINE (regexp flag m); the caller compiles with
      re.MULTILINE, and without re.DOTALL.
    + warn: called with a note about escapes that differ from Perl habits.
    Raises ValueError with glibc's wording for a bad pattern.
    """
    em = _Emitter()
    groups: list[int] = []
    closed = 0
    i, n = 0, len(pattern)
    prev_kind = "start"          # start / open / alt / other: BRE anchor context
    while i < n:
        c = pattern[i]
        kind = "other"
        if c == "\\":
            if i + 1 >= n:
                raise ValueError("Trailing backslash")
            d = pattern[i + 1]
            i += 2
            if not extended and d in "(){}|+?":
                if d == "(":
                    groups.append(len(em.out))
                    em.add_anchor("(")
                    kind = "open"
                elif d == ")":
                    if not groups:
                        raise ValueError("Unmatched ) or \\)")
                    start = groups.pop()
                    em.out.append(")")
                    em.atom, em.quantified = start, False
                    closed += 1
                elif d == "|":
                    em.add_anchor("|")
                    kind = "alt"
                elif d in "+?":
                    em.add_quantifier(d)
                else:
                    end = pattern.find("\\}", i)
                    if end < 0:
                        raise ValueError("Unmatched \\{")
                    em.add_quantifier(_interval(pattern[i:end]))
                    i = end + 2
            elif d in "123456789":
                if int(d) > closed:
                    raise ValueError("Invalid back reference")
                em.add_atom(f"(?:\\{d})")
            elif d in "wWsS":
                em.add_atom("\\" + d)
            elif d in "bB":
                em.add_anchor("\\" + d)
            elif d == "<":
                em.add_anchor(r"\b(?=\w)")
            elif d == ">":
                em.add_anchor(r"\b(?<=\w)")
            elif d == "`":
                em.add_anchor(r"\A")
            elif d == "'":
                em.add_anchor(r"\Z")
            else:
                if d.isascii() and d.isalpha() and warn is not None:
                    warn(f"\"\\{d}\" is not a POSIX escape: it matches the letter \"{d}\"")
                em.add_atom(re.escape(d))
        elif c == "[":
            text, i = _posix_bracket(pattern, i + 1, newline, icase)
            em.add_atom(text)
        elif c == ".":
            em.add_atom("." if newline else "(?s:.)")
            i += 1
        elif extended and c == "(":
            groups.append(len(em.out))
            em.add_anchor("(")
            i += 1
        elif extended and c == ")" and groups:
            start = groups.pop()
            em.out.append(")")
            em.atom, em.quantified = start, False
            closed += 1
            i += 1
        elif extended and c == "|":
            em.add_anchor("|")
            i += 1
        elif c == "*" and (extended or em.atom is not None):
            em.add_quantifier("*")
            i += 1
        elif extended and c in "+?":
            em.add_quantifier(c)
            i += 1
        elif extended and c == "{":
            end = pattern.find("}", i)
            if em.atom is None:
                raise ValueError("Invalid preceding regular expression")
            if end < 0:
                raise ValueError("Unmatched \\{")
            em.add_quantifier(_interval(pattern[i + 1:end]))
            i = end + 1
        elif c == "^" and (extended or prev_kind in ("start", "open", "alt")):
            em.add_anchor("^")
            i += 1
        elif c == "$" and (extended or i + 1 == n or pattern.startswith(("\\)", "\\|"), i + 1)):
            em.add_anchor("$" if newline else r"\Z")
            i += 1
        else:
            em.add_atom(re.escape(c))
            i += 1
        prev_kind = kind
    if groups:
        raise ValueError("Unmatched ( or \\(")
    return em.text()


def _interval(body: str) -> str:
    """Python text for the inside of a POSIX interval ``{m,n}``."""
    match = _INTERVAL.fullmatch(body)
    if match is None or (not match.group(1) and match.group(2) is None):
        raise ValueError("Invalid content of \\{\\}")
    low = int(match.group(1) or 0)
    if match.group(2) is None:
        high: int | None = low
    else:
        high = int(match.group(3)) if match.group(3) else None
    if low > RE_DUP_MAX or (high is not None and high > RE_DUP_MAX):
        raise ValueError("Regular expression too big")
    if high is not None and high < low:
        raise ValueError("Invalid content of \\{\\}")
    if high == low:
        return f"{{{low}}}"
    return f"{{{low},{'' if high is None else high}}}"


# ---------------------------------------------------------------------------
# PCRE

_PCRE_QUANT_INTERVAL = re.compile(r"\{(\d+)(,(\d*))?\}")
_PCRE_FLAGS = set("imsx")
_VSPACE = "[\\n\\x0b\\x0c\\r\\x85]"


def _pcre_bracket(pattern: str, i: int) -> tuple[str, int]:
    """Copy a PCRE character class starting after ``[``, translating [:class:] items."""
    n = len(pattern)
    out = ["["]
    if i < n and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while True:
        if i >= n:
            raise ValueError("missing terminating ] for character class")
        c = pattern[i]
        if c == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        first = False
        if c == "\\" and i + 1 < n:
            d = pattern[i + 1]
            if d == "h":
                out.append("\\t \\xa0")
            elif d == "v":
                out.append(_VSPACE[1:-1])
            elif d in "pPXRNHV":
                raise ValueError(f"\\{d} inside a character class is not supported")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[" and i + 1 < n and pattern[i + 1] == ":":
            end = pattern.find(":]", i + 2)
            if end >= 0:
                name = pattern[i + 2:end]
                negate = name.startswith("^")
                members = _class_set(name.lstrip("^"))
                if negate:
                    members = frozenset(range(256)) - members
                out.append(_set_text(members))
                i = end + 2
                continue
        out.append("\\[" if c == "[" else c)
        i += 1


def pcre_translate(pattern: str, *, ungreedy: bool = False, dollar_endonly: bool = False,
                   multiline: bool = False, extended: bool = False) -> str:
    """Translate a PCRE pattern to Python re syntax (both as latin-1 text).

    + ungreedy: the U flag (swap greedy and lazy quantifiers).
    + dollar_endonly: the E flag (``$`` only at the very end; ignored with multiline).
    + multiline, extended: the m and x flags, which change what ``$`` and ``#`` mean.
    Raises ValueError naming what is wrong or unsupported.
    """
    out: list[str] = []
    stack: list[int] = []     # per open group: scoped-flag groups to close with it
    extra_top = 0
    i, n = 0, len(pattern)

    def quantifier(text: str, j: int) -> int:
        # j: index after the quantifier; handle a following ? (lazy) or + (possessive).
        suffix = pattern[j] if j < n else ""
        if suffix == "+":
            out.append(text + "+")
            return j + 1
        lazy = suffix == "?"
        if ungreedy:
            lazy = not lazy
        out.append(text + ("?" if lazy else ""))
        return j + 1 if suffix == "?" else j

    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError("\\ at end of pattern")
            d = pattern[i + 1]
            i += 2
            if d == "Q":
                end = pattern.find("\\E", i)
                end = n if end < 0 else end
                out.append(re.escape(pattern[i:end]))
                i = end + 2
            elif d == "E":
                pass
            elif d == "z":
                out.append(r"\Z")
            elif d == "Z":
                out.append(r"(?=\n?\Z)")
            elif d == "e":
                out.append(r"\x1b")
            elif d == "h":
                out.append(r"[\t \xa0]")
            elif d == "H":
                out.append(r"[^\t \xa0]")
            elif d == "v":
                out.append(_VSPACE)
            elif d == "V":
                out.append("[^" + _VSPACE[1:])
            elif d == "R":
                out.append(r"(?:\r\n|" + _VSPACE + ")")
            elif d == "N":
                out.append(r"[^\n]")
            elif d == "x" and i < n and pattern[i] == "{":
                end = pattern.find("}", i)
                value = int(pattern[i + 1:end], 16) if end > i + 1 else -1
                if end < 0 or not 0 <= value <= 255:
                    raise ValueError("character code point value in \\x{} is too large")
                out.append(f"\\x{value:02x}")
                i = end + 1
            elif d == "o" and i < n and pattern[i] == "{":
                end = pattern.find("}", i)
                value = int(pattern[i + 1:end], 8) if end > i + 1 else -1
                if end < 0 or not 0 <= value <= 255:
                    raise ValueError("bad \\o{} escape")
                out.append(f"\\x{value:02x}")
                i = end + 1
            elif d == "c":
                if i >= n:
                    raise ValueError("\\c at end of pattern")
                out.append(f"\\x{ord(pattern[i].upper()) ^ 0x40:02x}")
                i += 1
            elif d in "gk":
                i = _pcre_backref(pattern, i, d, out, _groups_so_far(out))
            elif d in "pPXKGC":
                raise ValueError(f"\\{d} is not supported")
            else:
                out.append("\\" + d)
        elif c == "[":
            text, i = _pcre_bracket(pattern, i + 1)
            out.append(text)
        elif c == "(":
            i = _pcre_group(pattern, i, out, stack)
            if i < 0:
                # a mid-pattern (?flags): scoped to the rest of the enclosing group
                i = -i
                if stack:
                    stack[-1] += 1
                else:
                    extra_top += 1
        elif c == ")":
            out.append(")" * (1 + (stack.pop() if stack else 0)))
            i += 1
        elif c in "*+?":
            i = quantifier(c, i + 1)
        elif c == "{":
            match = _PCRE_QUANT_INTERVAL.match(pattern, i)
            if match is None:
                out.append("\\{")
                i += 1
            else:
                i = quantifier(match.group(0), match.end())
        elif c == "$" and dollar_endonly and not multiline:
            out.append(r"\Z")
            i += 1
        elif c == "#" and extended:
            end = pattern.find("\n", i)
            end = n if end < 0 else end
            out.append(pattern[i:end])
            i = end
        else:
            out.append(c)
            i += 1
    out.append(")" * extra_top)
    return "".join(out)


def _groups_so_far(out: list[str]) -> int:
    """Capturing groups opened so far in translated text (for relative back-references)."""
    return len(re.findall(r"(?<!\\)\((?![?*])|\(\?P<", "".join(out)))


def _pcre_backref(pattern: str, i: int, kind: str, out: list[str], groups: int) -> int:
    """Translate \\g and \\k back-references starting at index i (after the letter)."""
    n = len(pattern)
    if i < n and pattern[i] in "{<'":
        close = {"{": "}", "<": ">", "'": "'"}[pattern[i]]
        end = pattern.find(close, i + 1)
        if end < 0:
            raise ValueError(f"malformed \\{kind} reference")
        ref, i = pattern[i + 1:end], end + 1
    else:
        match = re.match(r"-?\d+", pattern[i:])
        if match is None or kind == "k":
            raise ValueError(f"malformed \\{kind} reference")
        ref, i = match.group(0), i + match.end()
    if re.fullmatch(r"-?\d+", ref):
        number = int(ref)
        if number < 0:
            number = groups + 1 + number
        if number <= 0:
            raise ValueError("reference to non-existent subpattern")
        out.append(f"(?:\\{number})")
    else:
        out.append(f"(?P={ref})")
    return i


def _pcre_group(pattern: str, i: int, out: list[str], stack: list[int]) -> int:
    """Translate a group opener at index i; returns the next index (negated for a mid-pattern (?flags))."""
    rest = pattern[i:]
    if rest.startswith("(*"):
        raise ValueError("backtracking verbs (*...) are not supported")
    if not rest.startswith("(?"):
        out.append("(")
        stack.append(0)
        return i + 1
    if rest.startswith("(?#"):
        end = pattern.find(")", i)
        if end < 0:
            raise ValueError("missing ) after (?# comment")
        return end + 1
    for prefix, python in (("(?<=", "(?<="), ("(?<!", "(?<!"), ("(?=", "(?="), ("(?!", "(?!"),
                           ("(?:", "(?:"), ("(?>", "(?>"), ("(?P<", "(?P<"), ("(?P=", "(?P="),
                           ("(?<", "(?P<"), ("(?'", "(?P<"), ("(?(", "(?(")):
        if rest.startswith(prefix):
            if prefix == "(?'":
                end = pattern.find("'", i + 3)
                if end < 0:
                    raise ValueError("syntax error in subpattern name (missing terminator)")
                out.append("(?P<" + pattern[i + 3:end] + ">")
                stack.append(0)
                return end + 1
            out.append(python)
            stack.append(0)
            return i + len(prefix)
    match = re.match(r"\(\?([a-zA-Z]*)(-[a-zA-Z]*)?([:)])", rest)
    if match is None:
        raise ValueError(f"unsupported group syntax \"{rest[:4]}\"")
    letters = set(match.group(1)) | set((match.group(2) or "-")[1:])
    if not letters <= _PCRE_FLAGS:
        raise ValueError(f"inline flags \"{''.join(sorted(letters - _PCRE_FLAGS))}\" are not supported")
    flags = match.group(1) + (match.group(2) or "")
    if match.group(3) == ":":
        out.append(f"(?{flags}:")
        stack.append(0)
        return i + match.end()
    if not out and "-" not in flags:
        out.append(f"(?{flags})")
        return i + match.end()
    out.append(f"(?{flags}:")
    return -(i + match.end())
