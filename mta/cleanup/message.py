"""Message headers: split, count hops, drop, rewrite addresses in place, add what is missing.

The message is never re-serialised. Headers are kept as the bytes that came
in (folding included) unless an address in them is rewritten, and then only
that address's characters change; the body is copied untouched. cleanup
prepends one Received: header and appends the headers Postfix adds when they
are missing: (Resent-)Message-Id, (Resent-)Date and (Resent-)From
(cleanup_message.c). Header names follow Postfix's header_opts table.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass, field
from email.header import Header

from mta.cleanup.rewrite import Masquerade, RewriteContext, address_quote, address_rewrite, masquerade_address

# Postfix's header_opts: headers whose addresses are sender or recipient addresses,
# and the Resent- headers that switch the added headers to their Resent- form.
SENDER_HEADERS = frozenset({
    "disposition-notification-to", "errors-to", "from", "mail-followup-to", "reply-to",
    "resent-from", "resent-sender", "return-path", "return-receipt-to", "sender",
})
RECIPIENT_HEADERS = frozenset({
    "apparently-to", "bcc", "cc", "resent-bcc", "resent-cc", "resent-reply-to", "resent-to", "to",
})
RESENT_HEADERS = frozenset({
    "resent-bcc", "resent-cc", "resent-date", "resent-from", "resent-message-id",
    "resent-reply-to", "resent-sender", "resent-to",
})
SOFTWARE = "mta"  # the name in Received: headers (Postfix writes its $mail_name there)

_HEADER_RE = re.compile(rb"[!-9;-~]+[ \t]*:")
_STRUCTURE = frozenset("<>,;:")
_WORDS = frozenset({"word", "literal"})
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class Message:
    """A message cut at the end of its primary header.

    + headers: one entry per header, continuation lines and line end included.
    + body: the rest, starting with the empty separator line (one is supplied
      when the header ended on a line that is not a header, as Postfix does).
    """

    headers: list[bytes]
    body: bytes


def message_split(content: bytes) -> Message:
    """Split content (LF line ends) into its primary header and the rest.

    >>> m = message_split(b"Subject: hi\\n  there\\nTo: a\\n\\nbody\\n")
    >>> m.headers, m.body
    ([b'Subject: hi\\n  there\\n', b'To: a\\n'], b'\\nbody\\n')
    """
    headers: list[bytes] = []
    pos = 0
    size = len(content)
    while pos < size:
        end = content.find(b"\n", pos)
        stop = size if end < 0 else end + 1
        line = content[pos:stop]
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1] += line
        elif line.rstrip(b"\r\n") and _HEADER_RE.match(line):
            headers.append(line)
        else:
            break
        pos = stop
    body = content[pos:]
    if headers and not headers[-1].endswith(b"\n"):
        headers[-1] += b"\n"
    if body and body.rstrip(b"\r\n") and not body.startswith((b"\n", b"\r\n")):
        body = b"\n" + body
    return Message(headers, body)


def header_name(header: bytes) -> str:
    """The lower-case field name of one header."""
    return header.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def header_value(header: bytes) -> str:
    """The unfolded field value, without surrounding white space."""
    value = header.split(b":", 1)[1].decode("utf-8", "surrogateescape")
    return " ".join(value.split())


# -- addresses inside a header value ----------------------------------------------

@dataclass(frozen=True)
class _Token:
    kind: str  # "word" (atom or quoted string), "comment", "literal", or an operator character
    start: int
    end: int


def _tokens(value: str) -> list[_Token]:
    """RFC 5322 tokens of a header value, with their positions."""
    tokens: list[_Token] = []
    i, size = 0, len(value)
    while i < size:
        c = value[i]
        start = i
        if c in " \t\r\n":
            i += 1
            continue
        if c in '("[':
            close, depth, kind = {"(": (")", 0, "comment"), '"': ('"', 0, "word"),
                                  "[": ("]", 0, "literal")}[c]
            i += 1
            while i < size:
                ch = value[i]
                i += 1
                if ch == "\\":
                    i += 1
                elif c == "(" and ch == "(":
                    depth += 1
                elif ch == close:
                    if depth == 0:
                        break
                    depth -= 1
            tokens.append(_Token(kind, start, min(i, size)))
        elif c in "<>@,;:.)]\\":
            tokens.append(_Token(c, start, i + 1))
            i += 1
        else:
            while i < size and value[i] not in ' \t\r\n()<>@,;:\\".[]':
                i += 1
            tokens.append(_Token("word", start, i))
    return tokens


# A value that is one plain address, bare or in <>: most From:/To: headers. Its
# span is known without tokenising (the general parser finds the same one).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_VALUE = re.compile(rf"[ \t\r\n]*(<?)({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(>?)[ \t\r\n]*")


def header_addresses(value: str) -> list[tuple[int, int]]:
    """Where the addresses are in an address-list header value: (start, end) pairs.

    Display names, group names and comments are skipped; in ``<...>`` only the
    address counts (a source route is skipped); an element made of two words
    in a row is a phrase, not an address, and is skipped.

    >>> v = 'Joe <joe>, "a b"@x (c), undisclosed:;'
    >>> [v[s:e] for s, e in header_addresses(v)]
    ['joe', '"a b"@x']
    """
    simple = _SIMPLE_VALUE.fullmatch(value)
    if simple is not None and bool(simple.group(1)) == bool(simple.group(3)):
        return [simple.span(2)]
    return header_addresses_parsed(value)


def header_addresses_parsed(value: str) -> list[tuple[int, int]]:
    """header_addresses for any value, by RFC 5322 tokens."""
    spans: list[tuple[int, int]] = []
    element: list[_Token] = []
    depth = 0
    group = False

    def finish() -> None:
        toks = [t for t in element if t.kind != "comment"]
        element.clear()
        kinds = [t.kind for t in toks]
        if "<" in kinds:
            first = kinds.index("<")
            last = kinds.index(">", first) if ">" in kinds[first:] else len(toks)
            toks = toks[first + 1:last]
            kinds = [t.kind for t in toks]
            if kinds[:1] == ["@"] and ":" in kinds:
                toks = toks[kinds.index(":") + 1:]
        elif any(a.kind in _WORDS and b.kind in _WORDS for a, b in zip(toks, toks[1:])):
            return
        if toks and not any(t.kind in _STRUCTURE for t in toks):
            spans.append((toks[0].start, toks[-1].end))

    for tok in _tokens(value):
        if depth == 0 and tok.kind == ",":
            finish()
        elif depth == 0 and tok.kind == ":" and not group:
            group = True
            element.clear()
        elif depth == 0 and tok.kind == ";" and group:
            finish()
            group = False
        else:
            depth += tok.kind == "<"
            depth -= tok.kind == ">" and depth > 0
            element.append(tok)
    finish()
    return spans


def header_rewrite(header: bytes, context: RewriteContext, masq: Masquerade | None) -> bytes:
    """Rewrite each address in an address header; unchanged text stays byte for byte."""
    text = header.decode("utf-8", "surrogateescape")
    colon = text.index(":") + 1
    value = text[colon:]
    changed = False
    for start, end in reversed(header_addresses(value)):
        span = value[start:end]
        simple = _SIMPLE_VALUE.fullmatch(span)
        if simple is not None and not simple.group(1) and not simple.group(3):
            old = simple.group(2)
        else:
            old = "".join(span[t.start:t.end] for t in _tokens(span) if t.kind != "comment").replace("\n", "")
        new = address_rewrite(context, old)
        if masq is not None:
            new = masquerade_address(masq, new)
        if new != old:
            value = value[:start] + new + value[end:]
            changed = True
    if not changed:
        return header
    return (text[:colon] + value).encode("utf-8", "surrogateescape")


# -- the primary header -------------------------------------------------------------

@dataclass
class HeaderPolicy:
    """What to do with headers for one message.

    + context: rewrite addresses in sender/recipient headers in this context,
      None when header rewriting does not apply to the client.
    + masq: masquerading rules (applied per class when context is set).
    + drop: lower-case names of headers to remove (message_drop_headers).
    """

    context: RewriteContext | None
    masq: Masquerade | None
    drop: frozenset[str] = frozenset()


@dataclass
class Headers:
    """The primary header after processing, and what was seen in it."""

    lines: list[bytes] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    hops: int = 0
    resent: bool = False
    message_ids: list[tuple[str, str]] = field(default_factory=list)  # (name, value) to log


def headers_process(headers: list[bytes], policy: HeaderPolicy) -> Headers:
    """Count Received: headers, note Message-Id/Resent- headers, drop and rewrite as policy says."""
    out = Headers()
    masq = policy.masq
    for raw in headers:
        name = header_name(raw)
        if name == "received":
            out.hops += 1
        out.seen.add(name)
        out.resent = out.resent or name in RESENT_HEADERS
        if name in ("message-id", "resent-message-id"):
            out.message_ids.append((name, header_value(raw)))
        if name in policy.drop:
            continue
        if policy.context is not None and (name in SENDER_HEADERS or name in RECIPIENT_HEADERS):
            klass = "header_sender" if name in SENDER_HEADERS else "header_recipient"
            raw = header_rewrite(raw, policy.context, masq if masq and masq.applies(klass) else None)
        out.lines.append(raw)
    return out


def mail_date(when: float) -> str:
    """Postfix's mail_date(): ``Mon,  9 Dec 1996 05:38:26 -0500 (EST)`` in local time."""
    return _mail_date(int(when))


@functools.lru_cache(maxsize=4)  # a busy cleanup formats the same second for many messages
def _mail_date(when: int) -> str:
    lt = time.localtime(when)
    offset = (lt.tm_gmtoff or 0) // 60
    sign = "-" if offset < 0 else "+"
    return (f"{_DAYS[lt.tm_wday]}, {lt.tm_mday:2d} {_MONTHS[lt.tm_mon - 1]} {lt.tm_year} "
            f"{lt.tm_hour:02d}:{lt.tm_min:02d}:{lt.tm_sec:02d} "
            f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d} ({lt.tm_zone})")


def _printable(text: str) -> str:
    """Text safe inside a header comment: anything but visible ASCII becomes '?'."""
    return "".join(c if 32 < ord(c) < 127 and c not in "()" else "?" for c in text) or "unknown"


def received_header(attrs: dict[str, str], myhostname: str, queue_id: str,
                    recipients: list[str], when: float) -> str:
    """The Received: header cleanup prepends, in smtpd's or pickup's format (no final newline).

    + attrs: origin, uid (local submission) or client_name, client_address, helo, protocol
      (ESMTPS or SMTPS after STARTTLS, RFC 3848), tls (the session's TLS, when smtpd reports it).
    + recipients: the envelope recipients as the client gave them ("for <...>" when just one).
    """
    date = mail_date(when)
    if attrs.get("origin") in ("pickup", "sendmail"):
        uid = attrs.get("uid", "")
        who = f", from userid {uid}" if uid.isdigit() else ""
        return f"Received: by {myhostname} ({SOFTWARE}{who})\n\tid {queue_id}; {date}"
    address = attrs.get("client_address", "")
    if not address:
        return f"Received: by {myhostname} ({SOFTWARE})\n\tid {queue_id}; {date}"
    name = _printable(attrs.get("client_name", ""))
    helo = _printable(attrs.get("helo", "")) if attrs.get("helo") else name
    rfc_addr = _printable(("IPv6:" + address) if ":" in address else address)
    protocol = _printable(attrs.get("protocol", "") or "ESMTP")
    first = f"Received: from {helo} ({name} [{rfc_addr}])"
    if attrs.get("tls"):  # smtpd_tls_received_header = yes: Postfix's comment line
        first += f"\n\t(using {_printable(attrs['tls'])})"
    first += f"\n\tby {myhostname} ({SOFTWARE}) with {protocol}"
    if len(recipients) == 1:
        return f"{first} id {queue_id}\n\tfor <{address_quote(recipients[0])}>; {date}"
    return f"{first} id {queue_id};\n\t{date}"


def _phrase(name: str, standard: bool) -> str:
    """A full name as an RFC 5322 phrase (standard) or comment text; RFC 2047 when not ASCII."""
    name = " ".join("".join(c if c.isprintable() else " " for c in name).split())
    if not name.isascii():
        return Header(name, "utf-8").encode()
    if standard:
        if re.fullmatch(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+", name):
            return name
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return re.sub(r"([()\\])", r"\\\1", name)


def from_header(prefix: str, sender: str, fullname: str, standard: bool = True) -> str:
    """The (Resent-)From: header made from the envelope sender (MAILER-DAEMON for <>).

    >>> from_header("", "joe@example.test", "Joe Q. User")
    'From: "Joe Q. User" <joe@example.test>'
    """
    if not sender:
        return f"{prefix}From: MAILER-DAEMON"
    address = address_quote(sender)
    phrase = _phrase(fullname, standard) if fullname else ""
    if not phrase:
        return f"{prefix}From: {address}"
    text = f"{prefix}From: {phrase} <{address}>" if standard else f"{prefix}From: {address} ({phrase})"
    if len(text) > 78:
        text = text.replace(" <", "\n\t<", 1) if standard else text.replace(" (", "\n\t(", 1)
    return text


def headers_missing(found: Headers, queue_id: str, created: float, arrival: float, myhostname: str,
                    sender: str, fullname: str, standard_from: bool = True) -> list[str]:
    """The (Resent-)Message-Id, Date and From headers that found lacks, in Postfix's order.

    The message ID is the queue file's creation time in UTC plus the queue ID.
    """
    prefix = "Resent-" if found.resent else ""
    added: list[str] = []
    if prefix.lower() + "message-id" not in found.seen:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(created))
        added.append(f"{prefix}Message-Id: <{stamp}.{queue_id}@{myhostname}>")
    if prefix.lower() + "date" not in found.seen:
        added.append(f"{prefix}Date: {mail_date(arrival)}")
    if prefix.lower() + "from" not in found.seen:
        added.append(from_header(prefix, sender, fullname, standard_from))
    return added


def message_render(received: str, headers: list[bytes], added: list[str], body: bytes) -> bytes:
    """The final content: our Received:, the kept headers, the added headers, the body."""
    parts = [received.encode("utf-8", "surrogateescape") + b"\n", *headers]
    parts.extend(text.encode("utf-8", "surrogateescape") + b"\n" for text in added)
    parts.append(body)
    return b"".join(parts)
