"""Access-table search order for addresses, host names and IP addresses (Postfix's smtpd_check).

These functions decide which keys an access(5) table is asked for, in which
order; what the value found means (OK, REJECT, DUNNO, ...) is the caller's
business. The first key that any table has wins, whatever its value, so a
DUNNO stops the search at that key exactly as in Postfix: the caller gets it
back and moves on to its next restriction.

FULL AND PARTIAL KEYS. The first key of each search is the full string (the
whole address, host name or IP address); every other key is partial (user@domain
without the extension, a parent domain, ``user@``, a truncated network).
Pattern tables (regexp, pcre, cidr: Map.fixed is False) only ever see the full
key, as with Postfix's DICT_FLAG_FIXED. Within one key the tables are tried
in order (Postfix's maps_find).

ADDRESS ORDER (mail_addr_find_strategy as smtpd uses it, Postfix 3.7):
``user+ext@domain``, ``user@domain`` (recipient_delimiter set, extension
present), ``domain`` and its parents, ``user+ext@``, ``user@``. A parent
domain is ``example.com`` when "smtpd_access_maps" is listed in
parent_domain_matches_subdomains (the default), else ``.example.com``. A
local part that needs RFC 5322 quoting is looked up quoted first
(``"a b"@example.com``), then as is. The null sender is one full lookup of
smtpd_null_access_lookup_key (``<>``).

Sender-specified routing (``user%host@relay``) is not judged here: Postfix
turns an OK for such a recipient into DUNNO unless allow_untrusted_routing
is set; address_has_routing() helps the caller do the same.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, NamedTuple, Sequence

from mta import log
from mta.maps import Map

# Postfix 3.7 default of parent_domain_matches_subdomains.
DEFAULT_PARENT_DOMAIN_MATCHES_SUBDOMAINS: tuple[str, ...] = (
    "debug_peer_list", "fast_flush_domains", "mynetworks", "permit_mx_backup_networks",
    "qmqpd_authorized_clients", "relay_domains", "smtpd_access_maps",
)

# RFC 5322 atext, plus "." between atoms: the local parts that need no quotes.
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")


class AccessMatch(NamedTuple):
    """The key that matched and the table's value for it."""

    key: str
    value: str


def access_parent_style(parent_domain_matches_subdomains: Iterable[str]) -> bool:
    """True when ``domain.tld`` also matches subdomains in access tables.

    + parent_domain_matches_subdomains: the parameter's list value.
    """
    return "smtpd_access_maps" in set(parent_domain_matches_subdomains)


def access_lookup(maps: Sequence[Map], key: str, *, partial: bool = False) -> str | None:
    """Search the tables in order for one key (Postfix's maps_find).

    + partial: the key is a partial key, which pattern tables do not see.
    Keys are lowercased for tables that fold case.
    """
    if not key:
        return None
    for table in maps:
        if partial and not table.fixed:
            continue
        value = table.lookup(key.lower() if table.fold_case else key)
        if value is not None:
            return value
    return None


def _search(maps: Sequence[Map], keys: Iterable[tuple[str, bool]]) -> AccessMatch | None:
    for key, partial in keys:
        value = access_lookup(maps, key, partial=partial)
        if value is not None:
            return AccessMatch(key, value)
    return None


def domain_keys(domain: str, *, parent_style: bool = True) -> list[str]:
    """The name and its parent domains, in lookup order.

    + parent_style: parents as ``example.com`` (True) or ``.example.com`` (False).

    >>> domain_keys("a.b.example.com")
    ['a.b.example.com', 'b.example.com', 'example.com', 'com']
    >>> domain_keys("a.example.com", parent_style=False)
    ['a.example.com', '.example.com', '.com']
    """
    keys = [domain] if domain else []
    start = 0
    while domain:
        dot = domain.find(".", start + 1)
        if dot < 0:
            break
        start = dot + 1 if parent_style else dot
        if start >= len(domain):
            break
        keys.append(domain[start:])
    return keys


def ip_keys(address: str) -> list[str]:
    """An IP address and its truncations, one ``.octet`` or ``:pair`` at a time.

    >>> ip_keys("192.0.2.10")
    ['192.0.2.10', '192.0.2', '192.0', '192']
    >>> ip_keys("2001:db8::1")
    ['2001:db8::1', '2001:db8:', '2001:db8', '2001']
    """
    delim = ":" if ":" in address else "."
    keys = []
    key = address
    while key:
        keys.append(key)
        cut = key.rfind(delim)
        if cut < 0:
            break
        key = key[:cut]
    return keys


def _is_ip(text: str) -> bool:
    if not text or (":" not in text and not text[-1].isdigit()):
        return False  # a host name: skip the (slow) parse
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return "%" not in text


def access_find_host(
    maps: Sequence[Map],
    hostname: str,
    *,
    parent_domain_matches_subdomains: Iterable[str] = DEFAULT_PARENT_DOMAIN_MATCHES_SUBDOMAINS,
) -> AccessMatch | None:
    """Look up a host name (client name, HELO name): the name, then its parent domains.

    A name that is an IP address (HELO ``1.2.3.4``) gets no parent-domain
    lookups, as in Postfix. Returns the first match, or None.
    """
    if _is_ip(hostname):
        return _search(maps, [(hostname, False)])
    parent = access_parent_style(parent_domain_matches_subdomains)
    keys = domain_keys(hostname, parent_style=parent)
    return _search(maps, ((key, i > 0) for i, key in enumerate(keys)))


def access_find_ip(maps: Sequence[Map], address: str) -> AccessMatch | None:
    """Look up a client IP address: the address, then shorter networks (``1.2.3``, ``1.2``, ``1``)."""
    return _search(maps, ((key, i > 0) for i, key in enumerate(ip_keys(address))))


def access_find_client(
    maps: Sequence[Map],
    hostname: str,
    address: str,
    *,
    parent_domain_matches_subdomains: Iterable[str] = DEFAULT_PARENT_DOMAIN_MATCHES_SUBDOMAINS,
) -> AccessMatch | None:
    """check_client_access order: the host name and its parents, then the address and its networks."""
    return (access_find_host(maps, hostname,
                             parent_domain_matches_subdomains=parent_domain_matches_subdomains)
            or access_find_ip(maps, address))


def localpart_strip(
    localpart: str,
    recipient_delimiter: str,
    *,
    owner_request_special: bool = True,
    double_bounce_sender: str = "double-bounce",
) -> str | None:
    """The local part without its extension, or None when there is none to strip.

    + recipient_delimiter: the set of delimiter characters; the first one
      found splits (``user+foo`` -> ``user``).
    Never split: postmaster, mailer-daemon, the double-bounce sender, and
    (with ``-`` as a delimiter and owner_request_special) ``owner-*`` and
    ``*-request``; nor when the result would be empty.

    >>> localpart_strip("user+foo+bar", "+")
    'user'
    >>> localpart_strip("owner-list", "-") is None
    True
    """
    if not recipient_delimiter:
        return None
    lowered = localpart.lower()
    if lowered in ("postmaster", "mailer-daemon", double_bounce_sender.lower()):
        return None
    if "-" in recipient_delimiter and owner_request_special:
        if lowered.startswith("owner-") or (len(lowered) > 8 and lowered.endswith("-request")):
            return None
    for i, c in enumerate(localpart):
        if c in recipient_delimiter:
            return localpart[:i] if i > 0 else None
    return None


def localpart_quote(localpart: str) -> str:
    """RFC 5322 form of a local part: quoted when it is not a dot-atom.

    >>> localpart_quote('a b')
    '"a b"'
    >>> localpart_quote('first.last')
    'first.last'
    """
    atoms = localpart.split(".")
    if localpart and all(atom and set(atom) <= _ATEXT for atom in atoms):
        return localpart
    escaped = localpart.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _address_variants(localpart: str, suffix: str) -> list[str]:
    quoted = localpart_quote(localpart)
    plain = localpart + suffix
    return [quoted + suffix] if quoted == localpart else [quoted + suffix, plain]


def address_keys(
    address: str,
    *,
    recipient_delimiter: str = "",
    parent_domain_matches_subdomains: Iterable[str] = DEFAULT_PARENT_DOMAIN_MATCHES_SUBDOMAINS,
    owner_request_special: bool = True,
    double_bounce_sender: str = "double-bounce",
) -> list[tuple[str, bool]]:
    """The (key, partial) pairs searched for a fully qualified address, in order.

    >>> [k for k, _ in address_keys("u+x@a.example.com", recipient_delimiter="+")]
    ['u+x@a.example.com', 'u@a.example.com', 'a.example.com', 'example.com', 'com', 'u+x@', 'u@']
    """
    localpart, _, domain = address.rpartition("@")
    bare = localpart_strip(localpart, recipient_delimiter,
                           owner_request_special=owner_request_special,
                           double_bounce_sender=double_bounce_sender)
    keys: list[tuple[str, bool]] = []
    keys += [(key, False) for key in _address_variants(localpart, "@" + domain)]
    if bare is not None:
        keys += [(key, True) for key in _address_variants(bare, "@" + domain)]
    parent = access_parent_style(parent_domain_matches_subdomains)
    keys += [(key, True) for key in domain_keys(domain, parent_style=parent)]
    keys += [(key, True) for key in _address_variants(localpart, "@")]
    if bare is not None:
        keys += [(key, True) for key in _address_variants(bare, "@")]
    return keys


def access_find_address(
    maps: Sequence[Map],
    address: str,
    *,
    recipient_delimiter: str = "",
    parent_domain_matches_subdomains: Iterable[str] = DEFAULT_PARENT_DOMAIN_MATCHES_SUBDOMAINS,
    null_access_lookup_key: str = "<>",
    owner_request_special: bool = True,
    double_bounce_sender: str = "double-bounce",
) -> AccessMatch | None:
    """Look up a sender or recipient address in access tables, in smtpd's order.

    + address: the envelope address, fully qualified and without ``<>``; the
      empty string is the null sender.
    + recipient_delimiter: main.cf recipient_delimiter (a set of characters).
    + parent_domain_matches_subdomains: that parameter's list value.
    + null_access_lookup_key: smtpd_null_access_lookup_key; empty means the
      null sender is not looked up.
    + owner_request_special, double_bounce_sender: as in main.cf; they stop
      extension stripping for ``owner-*``, ``*-request`` and the double-bounce
      address.
    Returns the first match, or None. An address without ``@domain`` is not
    looked up (Postfix expects canonical addresses here) and draws a warning.
    """
    if address == "":
        if not null_access_lookup_key:
            return None
        return _search(maps, [(null_access_lookup_key, False)])
    if "@" not in address:
        log.msg_warn(f"access: no @domain in address: {address}")
        return None
    return _search(maps, address_keys(
        address, recipient_delimiter=recipient_delimiter,
        parent_domain_matches_subdomains=parent_domain_matches_subdomains,
        owner_request_special=owner_request_special, double_bounce_sender=double_bounce_sender))


def address_has_routing(address: str) -> bool:
    """True when the local part holds sender-specified routing (``%``, ``!`` or another ``@``).

    >>> address_has_routing("user%host@relay.example")
    True
    """
    localpart = address.rpartition("@")[0]
    return any(c in localpart for c in "%!@")
