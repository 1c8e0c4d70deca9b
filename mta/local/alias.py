"""System-wide aliases (alias_maps) and :include: files.

TABLES. alias_maps is opened once, before any delivery; only compiled tables
are read (``hash:/etc/aliases`` reads ``/etc/aliases.db``, built by
newaliases or postalias). ``proxy:`` is bypassed and ``nis:`` skipped with a
warning, as local(8) does. A table that cannot be opened is remembered, and
every delivery then defers with "alias database unavailable" until it is
fixed (Postfix's local(8) exits with a fatal error, which defers too).

DELIVERY RIGHTS. |command and /file destinations of an alias run with the
rights of the table's owner (the owner of the .db file), or default_privs
when that is root. An :include: file named by a root-owned alias is read as
root and its destinations run as the include file's owner (default_privs if
that is root); named from a user context it is read, and its destinations
run, with that user's rights.

LOOPS. A name found in its own expansion is delivered to the user of that
name (``bob: bob, carol``). Deeper cycles (``a: b`` with ``b: a``) end at the
nesting limit with ``5.4.6 alias database loop for NAME``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from mta import log
from mta.aliases import AliasItem, alias_items, logical_lines
from mta.config import MainConfig
from mta.errors import MapError
from mta.local import privs
from mta.local.state import NESTING_LIMIT, AliasTable, Delivery, RcptState, user_by_uid
from mta.maps import open_map, split_spec

if TYPE_CHECKING:
    TokenFunc = Callable[[Delivery, RcptState, AliasItem], None]


def alias_tables_open(cfg: MainConfig) -> tuple[list[AliasTable], str]:
    """Open alias_maps; return the tables and the first error ("" when all opened)."""
    tables: list[AliasTable] = []
    error = ""
    for spec in cfg.get_list("alias_maps"):
        type_name, name = split_spec(spec, cfg.get("default_database_type") or "hash")
        if type_name == "proxy":
            spec = name
            type_name, name = split_spec(name, cfg.get("default_database_type") or "hash")
        if type_name == "nis":
            log.msg_warn(f"alias_maps: {spec}: NIS is not supported -- ignoring this table")
            continue
        try:
            table = open_map(f"{type_name}:{name}", cfg)
        except MapError as exc:
            log.msg_error(f"alias_maps: {exc}")
            error = error or str(exc)
            continue
        path = getattr(table, "path", None)
        try:
            owner = os.stat(path).st_uid if path else 0
        except OSError:
            owner = 0
        tables.append(AliasTable(table, owner))
    return tables, error


def deliver_alias(delivery: Delivery, rcpt: RcptState, name: str, token: "TokenFunc") -> bool:
    """Expand name through alias_maps; False when it has no alias (or is its own expansion).

    + name: the folded local part, with or without its extension.
    + token: delivers one destination of the expansion (recipient.deliver_token).
    """
    settings = delivery.settings
    if rcpt.exp_from and rcpt.exp_from.lower() == name:
        return False
    if settings.alias_error:
        delivery.fail(rcpt, "4.3.0", "alias database unavailable")
        return True
    for table in settings.alias_tables:
        try:
            value = table.map.lookup(name)
        except Exception as exc:  # noqa: BLE001 - a broken table defers, never crashes local
            log.msg_warn(f"{table.map.spec}: lookup of {name} failed: {exc}")
            delivery.fail(rcpt, "4.3.0", "alias database unavailable")
            return True
        if value is None:
            continue
        if rcpt.level >= NESTING_LIMIT:
            log.msg_warn(f"alias database loop for {name}")
            delivery.fail(rcpt, "5.4.6", f"alias database loop for {name}")
            return True
        usr = None
        if table.owner != 0:
            usr = user_by_uid(table.owner)
            if usr is None:
                log.msg_warn(f"cannot find alias database owner for {table.map.spec}")
                delivery.fail(rcpt, "4.3.0", "cannot find alias database owner")
                return True
        items = alias_items(value)
        if not items:
            log.msg_warn(f"no recipient in alias lookup result for {name}")
            delivery.fail(rcpt, "4.3.0", "alias database unavailable")
            return True
        child = replace(rcpt, exp_type="alias", exp_from=name, usr=usr, level=rcpt.level + 1)
        for item in items:
            token(delivery, child, item)
        return True
    return False


def table_items(text: str) -> list[AliasItem]:
    """Destinations in a .forward or :include: file: each logical line is an alias value."""
    items: list[AliasItem] = []
    for _, line in logical_lines(text.splitlines()):
        items.extend(alias_items(line))
    return items


def deliver_include(delivery: Delivery, rcpt: RcptState, path: str, token: "TokenFunc") -> None:
    """Deliver to every destination listed in the :include: file at path."""
    if rcpt.level >= NESTING_LIMIT:
        log.msg_warn(f":include: nesting limit exceeded for {path}")
        delivery.fail(rcpt, "5.4.6", ":include: nesting limit exceeded")
        return
    usr = rcpt.usr
    reader_uid = usr.uid if usr is not None else 0
    key = f"include {reader_uid} {path}"
    if key in delivery.seen:
        return
    delivery.seen.add(key)
    if not path.startswith("/"):
        log.msg_warn(f":include:{path} uses a relative path")
        delivery.fail(rcpt, "5.3.5", "mail system configuration error")
        return
    forbid = 0o002
    if usr is None or usr.uid == 0:
        found = privs.table_file_read(path, None, True, forbid)
    else:
        try:
            found = privs.run_as(privs.creds_of(usr.uid, usr.gid), privs.table_file_read, path, None, True, forbid)
        except privs.PrivsError as exc:
            found = {"warning": f"cannot read :include: file {path}: {exc}"}
    if "uid" not in found:
        log.msg_warn(found.get("warning") or f"unable to lookup :include: file {path}: No such file or directory")
        delivery.fail(rcpt, "5.3.5", "mail system configuration error")
        return
    if usr is None or usr.uid == 0:
        # A root-owned alias lends its include file the file owner's rights, not root's.
        owner = found["uid"]
        if owner != 0:
            usr = user_by_uid(owner)
            if usr is None:
                log.msg_warn(f"{path}: cannot find :include: file owner username")
                delivery.fail(rcpt, "4.3.5", "mail system configuration error")
                return
    child = replace(rcpt, exp_type="include", exp_from=rcpt.local, usr=usr, level=rcpt.level + 1)
    for item in table_items(found["text"]):
        token(delivery, child, item)
