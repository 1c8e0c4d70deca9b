"""Address canonicalisation: append @$myorigin and .$mydomain, masquerading, header rewrite clients.

These are pure string functions over one address, usable on the internal form
(``john doe@example.test``) and on the external form found in headers
(``"john doe"@example.test``): an address is split at its last ``@`` outside
double quotes, and only the domain is ever changed or appended, so quoting in
the local part survives.

REWRITING follows Postfix's trivial-rewrite (``rewrite_tree``): strip a source
route, swap ``host!user`` to ``user@host`` (swap_bangpath), turn ``user%host``
into ``user@host`` (allow_percent_hack), append ``@origin`` to a bare local
part (append_at_myorigin), append ``.domain`` to a domain without a dot
(append_dot_mydomain; never to ``[literal]``), strip one trailing dot.
Envelope addresses always use the "local" context (origin $myorigin, domain
$mydomain); headers use it when header rewriting applies to the client, else
the "remote" context ($remote_header_rewrite_domain) when that is set.

MASQUERADING follows cleanup_masquerade_external: masquerade_domains is read left
to right and the first entry equal to the domain (leave it) or to a parent of it
(replace the domain with the entry, unless the entry has a ``!``) ends the search;
local parts in masquerade_exceptions are never masqueraded (reference §7).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Mapping

from mta.errors import ConfigError
from mta.maps import Map, open_map
from mta.match_list import NetworkList, StringList

MASQ_CLASSES = frozenset({"envelope_sender", "envelope_recipient", "header_sender", "header_recipient"})


@dataclass(frozen=True)
class RewriteContext:
    """What trivial-rewrite appends: origin to a bare local part, domain to a dotless domain.

    + origin: "" to append nothing (append_at_myorigin = no).
    + domain: "" to append nothing (append_dot_mydomain = no).
    """

    origin: str
    domain: str
    swap_bangpath: bool = True
    percent_hack: bool = True


def _find_outside_quotes(address: str, char: str, last: bool) -> int:
    """Index of the first (or last) char outside double quotes and backslash escapes, else -1."""
    found = -1
    quoted = False
    i = 0
    while i < len(address):
        c = address[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == char and not quoted:
            if not last:
                return i
            found = i
        i += 1
    return found


def address_split(address: str) -> tuple[str, str | None]:
    """Local part and domain, split at the last ``@`` outside quotes; domain None without ``@``.

    >>> address_split('"a@b"@example.test'), address_split("root")
    (('"a@b"', 'example.test'), ('root', None))
    """
    at = _find_outside_quotes(address, "@", last=True)
    if at < 0:
        return address, None
    return address[:at], address[at + 1:]


def local_unquote(local: str) -> str:
    """A local part without its quotes and backslash escapes (``"a b"`` -> ``a b``)."""
    if '"' not in local and "\\" not in local:
        return local
    out: list[str] = []
    i = 0
    while i < len(local):
        c = local[i]
        if c == "\\" and i + 1 < len(local):
            out.append(local[i + 1])
            i += 2
            continue
        if c != '"':
            out.append(c)
        i += 1
    return "".join(out)


_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")


def address_quote(address: str) -> str:
    """The external form of an internal address: quote a local part that is not a dot-atom.

    >>> address_quote("john doe@example.test"), address_quote("a.b@c")
    ('"john doe"@example.test', 'a.b@c')
    """
    at = address.rfind("@")
    local, rest = (address, "") if at < 0 else (address[:at], address[at:])
    words = local.split(".")
    if local and all(word and all(c in _ATEXT or ord(c) > 127 for c in word) for word in words):
        return address
    if not local:
        return address
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"' + rest


def address_rewrite(context: RewriteContext, address: str) -> str:
    """Canonicalise one address in context (Postfix's rewrite_tree).

    >>> ctx = RewriteContext("host.example.test", "example.test")
    >>> address_rewrite(ctx, "root"), address_rewrite(ctx, "u@gw"), address_rewrite(ctx, "u@x.test.")
    ('root@host.example.test', 'u@gw.example.test', 'u@x.test')
    >>> address_rewrite(ctx, "gw!u"), address_rewrite(ctx, "u%gw.test"), address_rewrite(ctx, "")
    ('u@gw.example.test', 'u@gw.test', '')
    """
    if address in ("", "@"):
        return ""
    # Source route: @a,@b:user@c -> user@c.
    if address.startswith("@"):
        colon = _find_outside_quotes(address, ":", last=False)
        if 0 < colon < len(address) - 1:
            address = address[colon + 1:]
    local, domain = address_split(address)
    if domain is None:
        bang = _find_outside_quotes(local, "!", last=False) if context.swap_bangpath else -1
        percent = _find_outside_quotes(local, "%", last=True) if context.percent_hack else -1
        if bang > 0 and bang < len(local) - 1:
            address = f"{local[bang + 1:]}@{local[:bang]}"
        elif percent > 0:
            address = f"{local[:percent]}@{local[percent + 1:]}"
        elif context.origin:
            address = f"{local}@{context.origin}"
        local, domain = address_split(address)
    if context.domain and domain and not domain.startswith("[") and "." not in domain:
        address = f"{address}.{context.domain}"
    if address.endswith(".") and len(address) > 1 and address[-2] not in ".@":
        address = address[:-1]
    return address


@dataclass(frozen=True)
class Masquerade:
    """masquerade_domains, masquerade_exceptions and masquerade_classes, ready to apply."""

    domains: tuple[str, ...]
    exceptions: StringList
    classes: frozenset[str]

    def applies(self, address_class: str) -> bool:
        """True when addresses of this class (e.g. "header_sender") are masqueraded."""
        return bool(self.domains) and address_class in self.classes


def masquerade_create(domains: list[str], exceptions: list[str], classes: list[str]) -> Masquerade:
    """Build the masquerading rules from the three main.cf lists; ConfigError for a bad class.

    Tables in masquerade_exceptions are opened here, so call this before chroot.
    """
    for name in classes:
        if name.lower() not in MASQ_CLASSES:
            raise ConfigError(f"masquerade_classes: unknown address class: {name}")
    return Masquerade(tuple(domains), StringList("masquerade_exceptions", exceptions),
                      frozenset(name.lower() for name in classes))


def masquerade_address(masq: Masquerade, address: str) -> str:
    """Strip host detail from address's domain per masquerade_domains (first match wins).

    >>> m = masquerade_create(["!keep.example.test", "example.test"], ["root"], list(MASQ_CLASSES))
    >>> masquerade_address(m, "user@host.sub.example.test"), masquerade_address(m, "root@h.example.test")
    ('user@example.test', 'root@h.example.test')
    >>> masquerade_address(m, "u@a.keep.example.test"), masquerade_address(m, "u@other.example.org")
    ('u@a.keep.example.test', 'u@other.example.org')
    """
    local, domain = address_split(address)
    if domain is None or not masq.domains:
        return address
    if masq.exceptions.patterns and masq.exceptions.match(local_unquote(local)):
        return address
    folded = domain.lower()
    for entry in masq.domains:
        truncate = True
        while entry.startswith("!"):
            truncate, entry = not truncate, entry[1:]
        entry = entry.lower()
        if not entry:
            continue
        if entry == folded:
            break
        if folded.endswith("." + entry):
            return f"{local}@{entry}" if truncate else address
    return address


class RewriteClients:
    """local_header_rewrite_clients: which SMTP clients get their headers rewritten.

    Entries: permit_inet_interfaces (the client is one of this host's addresses),
    permit_mynetworks, permit_sasl_authenticated, ``check_address_map type:table``
    (the table has the client address) and static:all. Others never match.
    + own: this host's addresses (inet_interfaces, proxy_interfaces, loopback).
    + mynetworks: the mynetworks list, needed only for permit_mynetworks.
    """

    def __init__(self, entries: list[str], own: Iterable[str], mynetworks: NetworkList | None = None) -> None:
        self.entries: list[str | Map] = []
        for index, entry in enumerate(entries):
            if entry.lower() == "check_address_map":
                continue
            if index and entries[index - 1].lower() == "check_address_map":
                self.entries.append(open_map(entry))
            else:
                self.entries.append(entry.lower())
        self.own = {_ip(a) for a in own} - {None}
        self.mynetworks = mynetworks

    def match(self, attrs: Mapping[str, str]) -> bool:
        """True when the client described by attrs (client_address, client_name, sasl_username) is listed."""
        text = attrs.get("client_address", "")
        address = _ip(text)
        for entry in self.entries:
            if entry in ("static:all", "static:yes"):
                return True
            if entry == "permit_sasl_authenticated" and attrs.get("sasl_username"):
                return True
            if address is None:
                continue
            if isinstance(entry, Map):
                if entry.lookup(str(address)) is not None:
                    return True
            elif entry == "permit_inet_interfaces" and (address in self.own or address.is_loopback):
                return True
            elif entry == "permit_mynetworks" and self.mynetworks is not None \
                    and self.mynetworks.match(str(address), attrs.get("client_name", "")):
                return True
        return False


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from client_address text (brackets, IPv6: prefix, zone, v4-mapped handled)."""
    text = text.strip().strip("[]")
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
