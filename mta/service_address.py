"""Split and check inet service names ``[host:]port`` as Postfix's host_port(3) does.

The forms are ``port``, ``host:port``, ``:port``, ``[addr]:port`` and
``[ipv6:addr]:port``, with no default host or port. Host names are checked for
syntax only (valid_hostname(3), valid_hostaddr(3)); nothing is resolved here.
"""

from __future__ import annotations

import ipaddress
import re

_DIGITS = "0123456789"


def inet_service_split(name: str) -> tuple[str | None, str]:
    """Split an inet service name ``[host:]port`` into (host, port); host None means all.

    + name: the service column of an inet row.

    Raises ValueError with host_port(3)'s reason, e.g. ``missing service information``.

    >>> inet_service_split("[::1]:10025")
    ('::1', '10025')
    >>> inet_service_split("smtp")
    (None, 'smtp')
    """
    host: str | None
    if name.startswith("["):
        rest = name[1:]
        ipv6 = rest[:5].lower() == "ipv6:"
        if ipv6:
            rest = rest[5:]
        host, bracket, rest = rest.partition("]")
        if not bracket:
            raise ValueError('missing "]"')
        if rest and rest[0] != ":":
            raise ValueError('garbage after "]"')
        if ipv6 and not _valid_ipv6(host):
            raise ValueError("malformed IPv6 address")
        port = rest[1:] or None
    elif ":" in name:
        host, _, port_text = name.rpartition(":")
        port = port_text or None
    else:
        host, port = "", name
    if port is None:
        raise ValueError("missing service information")
    # An omitted host means all; "[]" is a host, and not a valid one.
    if (host or name.startswith("[")) and not (_valid_hostname(host) or _valid_hostaddr(host)):
        raise ValueError("valid hostname or network address required")
    if port[0] in _DIGITS and not _alldig(port):
        raise ValueError("garbage after numerical service")
    return host or None, port


def _alldig(text: str) -> bool:
    """ASCII digits only, and at least one (str.isdigit() also takes other scripts' digits)."""
    return bool(text) and all(ch in _DIGITS for ch in text)


def _valid_hostname(name: str) -> bool:
    """valid_hostname(3): labels of letters, digits and `_`, inner hyphens, not all digits."""
    if len(name) > 255 or not re.fullmatch(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                                           r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*", name):
        return False
    return not re.fullmatch(r"[0-9.]+", name)


def _valid_hostaddr(addr: str) -> bool:
    """valid_hostaddr(3): a dotted quad, or an IPv6 address when there is a colon."""
    if ":" in addr:
        return _valid_ipv6(addr)
    parts = addr.split(".")
    return len(parts) == 4 and all(_alldig(p) and int(p) <= 255 for p in parts)


def _valid_ipv6(addr: str) -> bool:
    """An IPv6 address without a zone suffix."""
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        return False
    return "%" not in addr
