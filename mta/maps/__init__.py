"""Lookup tables behind one interface: open_map("type:name") -> Map with lookup(key).

Types are registered in MAP_TYPES (testinfra's small-registry shape); each lives in
its own module under mta/maps/. Daemons open their tables before chroot and
privilege drop (pre_init), then only call lookup().
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Iterable

from mta.errors import MapError

if TYPE_CHECKING:
    from mta.config import MainConfig


class Map:
    """One open lookup table.

    + spec: the ``type:name`` text it was opened from, used in messages.
    + fold_case: True for fixed-string tables (hash, inline, cidr keys are IPs);
      the caller's key is lowercased before lookup, as Postfix does. False for
      regexp and pcre, which match the key as given.
    + fixed: True when keys are fixed strings (hash, inline, static). Pattern
      tables (regexp, pcre, cidr) set it False: smtpd-style searches give them
      only the full key, never the partial keys (parent domains, user@,
      truncated networks), as Postfix's DICT_FLAG_FIXED does.
    + stable: True when an open table's answers never change (every type here:
      each is read once, or opened immutable); callers may then remember them.
    """

    type_name: str = ""
    fold_case: bool = True
    fixed: bool = True
    stable: bool = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def lookup(self, key: str) -> str | None:
        """Return the value for key, or None when the table has no entry."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files held by the table (no-op by default)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


# type name -> "module:Class"; the class takes (spec, name, cfg).
MAP_TYPES: dict[str, str] = {
    "hash": "mta.maps.hash:HashMap",
    "regexp": "mta.maps.regexp:RegexpMap",
    "pcre": "mta.maps.regexp:PcreMap",
    "cidr": "mta.maps.cidr:CidrMap",
    "inline": "mta.maps.inline:InlineMap",
    "static": "mta.maps.inline:StaticMap",
}


def split_spec(spec: str, default_type: str = "hash") -> tuple[str, str]:
    """Split ``type:name`` into its parts; a bare name gets default_type (postmap's rule).

    >>> split_spec("hash:/etc/postfix/access")
    ('hash', '/etc/postfix/access')
    >>> split_spec("/etc/aliases")
    ('hash', '/etc/aliases')
    """
    if ":" in spec and not spec.startswith("/"):
        type_name, _, name = spec.partition(":")
        return type_name, name
    return default_type, spec


def open_map(spec: str, cfg: "MainConfig | None" = None) -> Map:
    """Open one ``type:name`` table.

    + spec: e.g. ``hash:/etc/postfix/access``, ``cidr:/etc/postfix/clients``,
      ``inline:{a=b, c=d}``.
    + cfg: the main.cf configuration, for types whose behaviour depends on it.
    Raises MapError for an unknown type or a table that cannot be opened.
    """
    type_name, name = split_spec(spec)
    target = MAP_TYPES.get(type_name)
    if target is None:
        raise MapError(f"unsupported dictionary type: {type_name} (in {spec!r})")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(spec, name, cfg)


def open_maps(specs: Iterable[str], cfg: "MainConfig | None" = None) -> list[Map]:
    """Open each table of a list parameter (alias_maps, transport_maps, ...), in order."""
    return [open_map(spec, cfg) for spec in specs]


def maps_find(maps: Iterable[Map], key: str) -> str | None:
    """Search tables in order and return the first value found (Postfix's maps_find)."""
    for table in maps:
        value = table.lookup(key.lower() if table.fold_case else key)
        if value is not None:
            return value
    return None
