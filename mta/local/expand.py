"""$name expansion of forward_path, command_execution_directory and luser_relay (local_expand).

Macros (local(8)): $user, $home, $shell, $recipient, $extension, $domain,
$local, $mailbox and $recipient_delimiter, in the forms $name, ${name},
$(name), ${name?value}, ${name:value} and ${name?{value1}:{value2}}; ``$$`` is
a literal ``$``. Characters of a macro value that are not in the parameter's
expansion filter become ``_``. A plain reference to a macro without a value
(``$extension`` of an address that has none) marks the result undefined: a
forward_path entry that uses one is skipped, as Postfix's MAC_PARSE_UNDEF does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mta.local.state import RcptState, UserAttr, text_filter

_NAME = re.compile(r"[A-Za-z0-9_]+")


@dataclass
class Expansion:
    """The expanded text, whether a plain reference had no value, whether $extension was used."""

    text: str
    undefined: bool = False
    extension_used: bool = False


def local_macros(rcpt: RcptState, usr: UserAttr | None, delimiter: str) -> dict[str, str | None]:
    """Macro values for rcpt delivered with usr's rights (None: not defined)."""
    used_delim = rcpt.local[len(rcpt.user):len(rcpt.user) + 1] or delimiter[:1]
    return {
        "user": rcpt.user,
        "home": usr.home if usr else None,
        "shell": usr.shell if usr else None,
        "domain": rcpt.domain,
        "local": rcpt.local,
        "mailbox": rcpt.local,
        "recipient": rcpt.address,
        "extension": rcpt.extension,
        "recipient_delimiter": used_delim or None,
    }


def _closing(text: str, start: int) -> int:
    """Index of the bracket closing the one at text[start]."""
    pairs = {"{": "}", "(": ")"}
    opener, closer, depth = text[start], pairs[text[start]], 0
    for i in range(start, len(text)):
        if text[i] == opener:
            depth += 1
        elif text[i] == closer:
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced brackets in {text!r}")


def _unbrace(text: str) -> str:
    text = text.strip()
    return text[1:-1] if text.startswith("{") and text.endswith("}") else text


def local_expand(pattern: str, macros: dict[str, str | None], allowed: str | None) -> Expansion:
    """Expand pattern; raise ValueError for broken syntax.

    + macros: see local_macros().
    + allowed: characters kept in macro values (others become ``_``); None keeps all.

    >>> local_expand("$home/.forward${recipient_delimiter}${extension}",
    ...              {"home": "/h", "recipient_delimiter": "+", "extension": None}, None).undefined
    True
    >>> local_expand("${extension?+$extension}", {"extension": "a;b"}, "ab+").text
    '+a_b'
    """
    out = Expansion("")
    parts: list[str] = []

    def value(name: str, plain: bool) -> str:
        if name == "extension" and plain:
            out.extension_used = True
        found = macros.get(name)
        if found is None:
            if plain:
                out.undefined = True
            return ""
        return found if allowed is None else text_filter(found, allowed)

    i = 0
    while i < len(pattern):
        j = pattern.find("$", i)
        if j < 0:
            parts.append(pattern[i:])
            break
        parts.append(pattern[i:j])
        if pattern[j + 1:j + 2] == "$":
            parts.append("$")
            i = j + 2
        elif pattern[j + 1:j + 2] in ("{", "("):
            end = _closing(pattern, j + 1)
            inner = pattern[j + 2:end]
            m = _NAME.match(inner)
            if m is None:
                raise ValueError(f"bad macro name in {pattern!r}")
            rest = inner[m.end():]
            if not rest:
                parts.append(value(m.group(), True))
            elif rest[0] in "?:":
                defined = bool(macros.get(m.group()))
                first, _, second = rest[1:].partition("}:{") if rest[0] == "?" else (rest[1:], "", "")
                if second:
                    first, second = first + "}", "{" + second
                chosen = (first if defined else second) if rest[0] == "?" else (first if not defined else "")
                sub = local_expand(_unbrace(chosen), macros, allowed)
                out.undefined |= sub.undefined
                out.extension_used |= sub.extension_used
                parts.append(sub.text)
            else:
                raise ValueError(f"bad macro syntax in {pattern!r}")
            i = end + 1
        else:
            m = _NAME.match(pattern, j + 1)
            if m is None:
                raise ValueError(f"empty macro name in {pattern!r}")
            parts.append(value(m.group(), True))
            i = m.end()
    out.text = "".join(parts)
    return out
