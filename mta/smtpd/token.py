"""SMTP command words and envelope addresses: Postfix's smtpd_token() and extract_addr() rules.

TOKENS. A command line splits on whitespace, except inside ``<...>`` (which
nests ``<`` and quoted strings) and ``"..."``; a backslash escapes the next
character (both are kept); ``FROM:`` and ``TO:`` end a word, so ``MAIL
FROM:<a@b>`` and ``MAIL FROM: <a@b>`` give the same words. An unterminated
``<`` or ``"`` makes an error token (``501 ... Bad sender address syntax``).

ADDRESSES. An argument in angle brackets loses them; a source route
``@a,@b:user@dom`` is cut to ``user@dom`` (RFC 5321 section 4.1.1.3 lets a
server ignore it). The rest is parsed as RFC 822 text, so comments and a phrase
around the address are dropped (strict_rfc821_envelopes = no, the default),
and the result is the address in internal (unquoted) form. It is refused when
it holds more than one address, when its domain is neither a host name nor an
address literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``), when the domain is
not ASCII (no SMTPUTF8 here), or when it holds a control character (the queue
file stores one address per line) or bytes that are not UTF-8 (surrogate
escapes: the inter-daemon protocol is JSON).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from mta.tok822 import Token, TokenKind, tokens_internal, tokens_scan

_SPACE = " \t\r\n\v\f"

# Fast paths for what nearly every client sends; anything else takes the general
# scanner. A line without <, >, ", backslash or colon is plain words; a MAIL/RCPT
# line is "VERB FROM:<addr> PARAM..." with nothing special in the address or after it.
_WORD = re.compile(r"[^ \t\r\n\v\f]+")
_PLAIN_LINE = re.compile(r'[^<>"\\:]*')
_ADDR_LINE = re.compile(r'([ \t\r\n\v\f]*[A-Za-z]+[ \t\r\n\v\f]+(?i:from|to):)[ \t\r\n\v\f]*'
                        r'(<[^<>"\\]*>)((?:[ \t\r\n\v\f][^<>"\\:]*)?)')
# A dot-atom local part at a host name: the address is the text itself.
_SIMPLE_ADDR = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                          r"@[A-Za-z0-9_.-]+")
_HOSTNAME = re.compile(r"(?:(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\.)*(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


@dataclass(frozen=True, slots=True)
class SmtpToken:
    """One command word; error is True when a ``<`` or ``"`` was not closed."""

    text: str
    error: bool = False


def _quoted(line: str, i: int, out: list[str], last: str) -> tuple[int, bool]:
    """Copy a ``<...>`` or ``"..."`` group starting after its opener; return (index, closed)."""
    stack = [last]
    n = len(line)
    while i < n:
        c = line[i]
        i += 1
        out.append(c)
        if c == "\\":
            if i >= n:
                break
            out.append(line[i])
            i += 1
        elif c == stack[-1]:
            stack.pop()
            if not stack:
                return i, True
        elif c == '"':
            stack.append('"')
        elif c == "<" and stack[-1] == ">":
            stack.append(">")
    return i, False


def smtpd_token(line: str) -> list[SmtpToken]:
    """Split an SMTP command line into words.

    >>> [t.text for t in smtpd_token('MAIL FROM:<"a b"@x> SIZE=10')]
    ['MAIL', 'FROM:', '<"a b"@x>', 'SIZE=10']
    """
    if _PLAIN_LINE.fullmatch(line):
        return [SmtpToken(word) for word in _WORD.findall(line)]
    match = _ADDR_LINE.fullmatch(line)
    if match:
        return [*(SmtpToken(word) for word in _WORD.findall(match[1])), SmtpToken(match[2]),
                *(SmtpToken(word) for word in _WORD.findall(match[3]))]
    return smtpd_token_scan(line)


def smtpd_token_scan(line: str) -> list[SmtpToken]:
    """smtpd_token() without the fast paths: the general scanner."""
    words: list[SmtpToken] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            break
        out: list[str] = []
        error = False
        while i < n:
            c = line[i]
            if c in _SPACE:
                break
            i += 1
            if c == "<" or c == '"':
                out.append(c)
                i, closed = _quoted(line, i, out, ">" if c == "<" else '"')
                error = error or not closed
            elif c == ":":
                out.append(c)
                if "".join(out).lower() in ("to:", "from:"):
                    break
            elif c == "\\":
                out.append(c)
                if i < n:
                    out.append(line[i])
                    i += 1
            else:
                out.append(c)
        words.append(SmtpToken("".join(out), error))
    return words


def valid_hostname(name: str) -> bool:
    """A syntactically valid host name, not a bare numeric address (Postfix's valid_hostname).

    >>> valid_hostname("mx.example.com"), valid_hostname("192.0.2.1"), valid_hostname("a..b")
    (True, False, False)
    """
    if not name or len(name) > 255 or not _HOSTNAME.fullmatch(name):
        return False
    return not all(label.isdigit() for label in name.split("."))


def valid_address_literal(text: str) -> bool:
    """``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` (Postfix's valid_mailhost_literal)."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    inner = text[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def address_domain_valid(address: str) -> bool:
    """True when the part after the last ``@`` is empty, a host name or an address literal."""
    at = address.rfind("@")
    if at < 0:
        return True
    domain = address[at + 1:]
    if domain.endswith(".") and not domain.endswith(".."):
        domain = domain[:-1]
    if not domain:
        return True
    return valid_address_literal(domain) if domain[0] == "[" else valid_hostname(domain)


def _address_tokens(tokens: list[Token]) -> tuple[list[list[Token]], int]:
    """Group tokens into addresses (split at commas); return (groups, number of non-address tokens)."""
    groups: list[list[Token]] = []
    current: list[Token] = []
    junk = 0
    for token in tokens:
        if token.kind is TokenKind.COMMENT:
            junk += 1
        elif token.kind is TokenKind.OPERATOR and token.text == ",":
            if current:
                groups.append(current)
            current = []
        else:
            current.append(token)
    if current:
        groups.append(current)
    out: list[list[Token]] = []
    for group in groups:
        texts = [t.text if t.kind is TokenKind.OPERATOR else "" for t in group]
        # The last "<" that a ">" follows opens the address (a stray "<" after it is junk).
        opens = [i for i, text in enumerate(texts) if text == "<" and ">" in texts[i + 1:]]
        if opens:
            start = opens[-1]
            end = texts.index(">", start)
            junk += len(group) - (end - start + 1)
            group = group[start + 1:end]
        out.append(group)
    return out, junk


def extract_addr(arg: str, *, allow_empty: bool, strict: bool = False) -> str | None:
    """The envelope address in an argument (``<user@example.com>``), or None when it is malformed.

    + allow_empty: the null address ``<>`` is acceptable (MAIL, not RCPT).
    + strict: strict_rfc821_envelopes: the address must be in ``<>`` with nothing else.

    >>> extract_addr("<@relay.example:user@example.com>", allow_empty=False)
    'user@example.com'
    >>> extract_addr('<"John Doe" <john@example.com>>', allow_empty=False)
    'john@example.com'
    >>> extract_addr("<a@x, b@y>", allow_empty=False) is None
    True
    """
    text = arg[1:-1] if len(arg) >= 2 and arg[0] == "<" and arg[-1] == ">" else arg
    if _SIMPLE_ADDR.fullmatch(text) and (not strict or arg[0] == "<"):
        return text if address_domain_valid(text) else None
    return extract_addr_scan(arg, text, allow_empty=allow_empty, strict=strict)


def extract_addr_scan(arg: str, text: str, *, allow_empty: bool, strict: bool) -> str | None:
    """extract_addr() without the fast path; text is arg without its angle brackets."""
    if text.startswith("@") and ":" in text:
        text = text[text.index(":") + 1:]
    groups, junk = _address_tokens(tokens_scan(text))
    if len(groups) > 1 or (strict and (junk or not arg.startswith("<"))):
        return None
    address = tokens_internal(groups[0]) if groups else ""
    if not address and not allow_empty:
        return None
    if strict and address.startswith("@"):
        return None
    if any(ord(c) < 32 or ord(c) == 127 or "\udc80" <= c <= "\udcff" for c in address):
        return None
    return address if address_domain_valid(address) else None
